"""`memotion demo`: synthetic data -> tiny models -> export -> HTTP gateway -> three memes classified."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memotion.cli_args import positive_int

BANNER = """\
==============================================================================
 memotion demo: TINY, RANDOM-INITIALISED CLIP MODELS TRAINED ON SYNTHETIC MEMES
 The answers below show the whole system working end to end (data, training,
 ONNX export, HTTP gateway, OCR, ensemble vote). They are NOT a useful meme
 classifier: for real use train on Memotion 3 with --clip ViT-B-32 --pretrained openai.
=============================================================================="""


@dataclass(frozen=True)
class DemoConfig:
    workdir: Path = Path("demo-run")
    repository: Path = Path("model_repository")
    # Sized to finish in well under 10 minutes on 2 CPU cores (training is most of it).
    n_train: int = 1000
    n_val: int = 250
    epochs: int = 6
    port: int = 0
    seed: int = 0
    samples: int = 3


def _stage(name: str, timings: dict[str, float], started: float) -> None:
    timings[name] = round(time.perf_counter() - started, 1)
    print(f"--- {name} done in {timings[name]:.1f} s\n", flush=True)


def _describe(result: dict, truth: dict[str, str]) -> str:
    task_c = ", ".join(f"{head} {v['code']}" for head, v in result["task_c"].items())
    emotions = [name for name, present in result["task_b"].items() if present] or ["none"]
    votes = "; ".join(f"{model}: {v['sentiment']}" for model, v in result["votes"].items())
    return (
        f"  OCR text : {result['text']['value']!r}\n"
        f"  Task A   : {result['task_a']['label']}  (truth: {truth['sentiment']})\n"
        f"  Task B   : {', '.join(emotions)}\n"
        f"  Task C   : {task_c}\n"
        f"  truth C  : {', '.join(f'{k} {v}' for k, v in truth.items() if k != 'sentiment')}\n"
        f"  votes A  : {votes}\n"
        f"  timings  : " + ", ".join(f"{k} {v:.0f} ms" for k, v in result["timings_ms"].items())
    )


def run_demo(config: DemoConfig) -> int:
    """Every stage in turn, each timed; the answers and the validation F1 printed."""
    from service.core.logging_config import quiet_console

    quiet_console()  # library warnings once each, one line each (not six "No pretrained weights loaded")
    print(BANNER, flush=True)
    wall = time.perf_counter()
    timings: dict[str, float] = {}
    data_dir, run_dir = config.workdir / "data", config.workdir / "run"
    _render_data(config, data_dir, timings)
    results = _train(config, data_dir, run_dir, timings)
    _export(config, run_dir, timings)
    _classify_over_http(config, data_dir, timings)
    _print_scores(results, run_dir)
    print(f"\nstage times (s): {json.dumps(timings)}; total {time.perf_counter() - wall:.0f} s")
    print(f"training curves and confusion matrices: {run_dir}/*/*.png")
    print(BANNER)
    return 0


def _render_data(config: DemoConfig, data_dir: Path, timings: dict[str, float]) -> None:
    from training.data.synthetic import SyntheticConfig, make_synthetic_dataset

    print(f"[1/5] rendering {config.n_train} + {config.n_val} synthetic memes into {data_dir}")
    started = time.perf_counter()
    make_synthetic_dataset(
        data_dir, SyntheticConfig(n_train=config.n_train, n_val=config.n_val, seed=config.seed), progress=True
    )
    _stage("data", timings, started)


def _train(config: DemoConfig, data_dir: Path, run_dir: Path, timings: dict[str, float]) -> dict[str, Any]:
    from training.recipe import tiny_recipe, train_recipe

    print(f"[2/5] training CLIP-text, CLIP-image, CLIP-multi (tiny) into {run_dir}")
    started = time.perf_counter()
    results = train_recipe(data_dir, run_dir, tiny_recipe(epochs=config.epochs, seed=config.seed))
    _stage("train", timings, started)
    return results


def _export(config: DemoConfig, run_dir: Path, timings: dict[str, float]) -> None:
    from training.export import export_run

    print(f"[3/5] exporting ONNX models + manifest into {config.repository}")
    started = time.perf_counter()
    export_run(run_dir, config.repository, log=print)
    _stage("export", timings, started)


def _classify_over_http(config: DemoConfig, data_dir: Path, timings: dict[str, float]) -> None:
    import httpx

    from memotion.data_format import load_split
    from service.launchers.gateway_process import GatewayProcess

    print("[4/5] starting the HTTP gateway (ONNX Runtime in-process, easyocr)")
    started = time.perf_counter()
    samples = load_split(data_dir / "val.csv")[: config.samples]
    with GatewayProcess(config.repository, port=config.port) as base_url:
        _stage("gateway start", timings, started)
        print(
            f"[5/5] classifying {len(samples)} validation memes over HTTP at {base_url} "
            "(no text sent: the gateway reads it with OCR)"
        )
        started = time.perf_counter()
        with httpx.Client(base_url=base_url, timeout=120) as client:
            for record in samples:
                with open(record.image_path, "rb") as handle:
                    response = client.post("/v1/classify", files={"image": handle})
                response.raise_for_status()
                print(f"\n{record.image_path.name} (caption: {record.text!r})")
                print(_describe(response.json(), _truth(record.labels())))
        _stage("classify", timings, started)


def _truth(labels: dict[str, int]) -> dict[str, str]:
    """A record's labels as the answers print them: sentiment by name, Task C by code."""
    from memotion.labels import TASKS_BY_NAME

    return {
        name: TASKS_BY_NAME[name].labels[index] if name == "sentiment" else TASKS_BY_NAME[name].codes[index]
        for name, index in labels.items()
    }


def _print_scores(results: dict[str, Any], run_dir: Path) -> None:
    print("Validation weighted F1 (Memotion 3 scoring; Task B/C = mean over the 4 emotions):")
    print(f"  {'model':<12} {'task A':>7} {'task B':>7} {'task C':>7}")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = {kind: r.scores for kind, r in results.items()}
    rows["ensemble"] = summary["ensemble"]["validation"]
    for name, scores in rows.items():
        print(f"  {name:<12} {scores['task_a']:>7.3f} {scores['task_b']:>7.3f} {scores['task_c']:>7.3f}")


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="end to end: synthetic data -> train tiny models -> export -> serve -> classify",
        description="Generate synthetic memes, train tiny CLIP models on them, export the model "
        "repository, start the HTTP gateway on loopback, classify three memes over HTTP and print "
        "the answers and the validation F1. The models are tiny and random-initialised: the demo "
        "shows the system working, not a useful classifier.",
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("demo-run"),
        help="where data, checkpoints and logs go (default: ./demo-run)",
    )
    demo.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="where the exported model repository goes (default: ./model_repository)",
    )
    demo.add_argument(
        "--train", type=positive_int, default=DemoConfig.n_train, help="synthetic training memes (default %(default)s)"
    )
    demo.add_argument(
        "--val", type=positive_int, default=DemoConfig.n_val, help="synthetic validation memes (default %(default)s)"
    )
    demo.add_argument(
        "--epochs", type=positive_int, default=DemoConfig.epochs, help="training epochs per model (default %(default)s)"
    )
    demo.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_run_from_args)


def _run_from_args(args: argparse.Namespace) -> int:
    return run_demo(
        DemoConfig(
            workdir=args.workdir,
            repository=args.repository,
            n_train=args.train,
            n_val=args.val,
            epochs=args.epochs,
            port=args.port,
            seed=args.seed,
        )
    )
