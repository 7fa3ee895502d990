"""The evidence experiment: a table like the paper's Table 4 on synthetic memes, with gradient
blending and PMR on and off, mean and spread over seeds (``memotion experiment``).

For every data setting (synthetic memes, one of them with a dominant modality) and seed: train
CLIP-text and CLIP-image, then five CLIP-multi models initialised from them (no GB, GB with
OGR-estimated weights, GB with the authors' fixed weights; each of the first two also with PMR), then
two majority-vote ensembles searched per head on validation (the paper's three models; all seven). Every row
is scored on a held-out test split that nothing was selected on (checkpoints and
ensemble voters are chosen on validation). Diagnostics per CLIP-multi: PMR's rho over the last epoch
(> 1: the text learns faster), the final blend weights, and how well each encoder's features alone
classify the test memes (nearest class prototype, the PMR paper's measure of an under-trained
modality). Writes ``table4.md``, ``table4.json`` and ``rho.png`` into the output folder.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from memotion.data_format import load_split
from memotion.labels import ALL_TASKS
from memotion.progress import progress_bar
from training.backbone import create_clip
from training.data.synthetic import SyntheticConfig, make_synthetic_dataset
from training.dataset import MemeTensors, build_tensors
from training.ensemble_search import TaskBMode, ensemble_scores, search_ensemble
from training.factory import build_multi, build_unimodal
from training.gradient_blending import GBMode
from training.metrics import memotion_scores
from training.pmr import PMRConfig, class_prototypes, prototype_logits
from training.recipe import RecipeConfig, prepare_data, tiny_recipe
from training.trainer import TrainResult, argmax_labels, encoder_features, predict_probabilities, train_model

TABLE_FILE = "table4"


@dataclass(frozen=True)
class DataSetting:
    name: str
    description: str
    synthetic: dict[str, object]


DATA_SETTINGS: dict[str, DataSetting] = {
    "balanced": DataSetting(
        "balanced", "labels need both the caption and the picture (dominant=none)", {"dominant": "none"}
    ),
    "text-dominant": DataSetting(
        "text-dominant",
        "the caption also renders each picture factor with probability 0.7; the "
        "picture is needed for the rest (dominant=text, dominant_coverage=0.7)",
        {"dominant": "text", "dominant_coverage": 0.7},
    ),
    "text-only": DataSetting(
        "text-only",
        "the caption renders every factor, the picture shows unrelated ones "
        "(dominant=text): nothing for a rebalancing method to recover",
        {"dominant": "text"},
    ),
}

UNIMODAL = {"CLIP-text": "clip_text", "CLIP-image": "clip_image"}
# CLIP-multi variants: (gradient-blending mode, PMR on). "+GB": weights estimated from each
# branch's OGR (Wang et al.); "+GB fixed": the authors' fixed weights (text 0.2, image 0.4, multi 0.4).
MULTI_VARIANTS: dict[str, tuple[GBMode, bool]] = {
    "CLIP-multi": ("off", False),
    "CLIP-multi +GB": ("estimated", False),
    "CLIP-multi +GB fixed": ("fixed", False),
    "CLIP-multi +PMR": ("off", True),
    "CLIP-multi +GB +PMR": ("estimated", True),
}
ENSEMBLES = {
    "Ensemble (text, image, multi +GB fixed)": ("CLIP-text", "CLIP-image", "CLIP-multi +GB fixed"),
    "Ensemble (all seven)": (*UNIMODAL, *MULTI_VARIANTS),
}
# Table 4's columns: Task A ("Overall"), the Task C emotions, then the Memotion 3 averages.
COLUMNS = {
    "task_a": "Task A",
    "task_c_humour": "Humour",
    "task_c_motivational": "Motivation",
    "task_c_offensive": "Offensive",
    "task_c_sarcasm": "Sarcasm",
    "task_b": "Task B",
    "task_c": "Task C",
}


@dataclass(frozen=True)
class ExperimentConfig:
    settings: tuple[str, ...] = ("balanced", "text-dominant")
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 480
    n_val: int = 160
    n_test: int = 240
    image_size: int = 96
    data_seed: int = 0
    unimodal_epochs: int = 6
    multi_epochs: int = 8
    pmr: PMRConfig = field(default_factory=lambda: PMRConfig(enabled=True))
    task_b: TaskBMode = "from_task_c"
    recipe: RecipeConfig = field(default_factory=tiny_recipe)
    # One thread per process is the most CPU-efficient for tiny models; ``workers`` processes run
    # (setting, seed) jobs side by side.
    threads: int | None = 1
    workers: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.settings) - set(DATA_SETTINGS)
        if unknown:
            raise ValueError(f"unknown data settings {sorted(unknown)}; choose from {sorted(DATA_SETTINGS)}")
        if not self.seeds or not self.settings:
            raise ValueError("the experiment needs at least one seed and one data setting")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")


def quick_config() -> ExperimentConfig:
    """A few-second version (tests): one setting, two seeds, tiny data, one epoch each."""
    return ExperimentConfig(
        settings=("text-dominant",),
        seeds=(0, 1),
        n_train=48,
        n_val=24,
        n_test=24,
        image_size=64,
        unimodal_epochs=1,
        multi_epochs=1,
    )


def _tensors(directory: Path, split: str, data) -> MemeTensors:
    return build_tensors(load_split(directory / f"{split}.csv"), data.tokenize, data.preprocessing)


def make_data(out: Path, config: ExperimentConfig, setting: DataSetting) -> tuple[Path, Path]:
    """(train/val data set, test data set): the test memes come from another generator seed."""
    base = dict(image_size=config.image_size, **setting.synthetic)
    data_dir, test_dir = out / "data" / setting.name, out / "data" / f"{setting.name}-test"
    for directory, sizes in (
        (data_dir, dict(n_train=config.n_train, n_val=config.n_val, seed=config.data_seed)),
        (test_dir, dict(n_train=0, n_val=config.n_test, seed=config.data_seed + 1)),
    ):
        synthetic = SyntheticConfig(**sizes, **base)
        marker = directory / "synthetic_config.json"
        if not (marker.is_file() and json.loads(marker.read_text()) == asdict(synthetic)):
            make_synthetic_dataset(directory, synthetic)
    return data_dir, test_dir


def encoder_probe_scores(model: torch.nn.Module, train: MemeTensors, test: MemeTensors) -> dict[str, dict[str, float]]:
    """Each encoder's features alone, classified by the nearest class prototype (eq. 6-7) built on
    the training set: how much each modality learnt inside the multi-modal model."""
    train_text, train_image = encoder_features(model, train)
    test_text, test_image = encoder_features(model, test)
    y_true = test.target_columns()
    scores = {}
    for modality, fit, probe in (("text", train_text, test_text), ("image", train_image, test_image)):
        predicted = {}
        for index, spec in enumerate(ALL_TASKS):
            prototypes, _ = class_prototypes(fit, train.targets[:, index], spec.num_classes)
            predicted[spec.name] = prototype_logits(probe, prototypes).argmax(dim=-1).numpy()
        full = memotion_scores(y_true, predicted)
        scores[modality] = {"task_a": full["task_a"], "task_c": full["task_c"]}
    return scores


def _last_epoch_rho(result: TrainResult) -> float | None:
    last = [s for s in result.rho_steps if s["epoch"] == result.history[-1]["epoch"]]
    if not last:
        return None
    values = [v for s in last for v in s["rho"].values()]
    return float(np.exp(np.mean(np.log(np.clip(values, 1e-12, None)))))


def _log_model(log: Callable[[str], None], seed: int, name: str, result: TrainResult) -> None:
    log(
        f"seed {seed}: {name} trained in {result.seconds:.0f} s, best epoch {result.best_epoch}, "
        f"validation task A {result.scores['task_a']:.3f}, task C {result.scores['task_c']:.3f}"
    )


def _quiet(_: str) -> None:
    """Swallow a per-epoch line (they would drown the experiment's own)."""


def _train_unimodal(
    data, run_dir: Path, config: ExperimentConfig, base, seed: int, log: Callable[[str], None]
) -> dict[str, TrainResult]:
    """Train CLIP-text and CLIP-image from scratch for one seed."""
    recipe = config.recipe
    results: dict[str, TrainResult] = {}
    for name, kind in UNIMODAL.items():
        model = build_unimodal(kind, create_clip(recipe.clip, data.pretrained), recipe.model)
        results[name] = train_model(
            model,
            kind,
            data.train,
            data.val,
            replace(base, epochs=config.unimodal_epochs),
            run_dir / kind,
            recipe.clip,
            recipe.model,
            False,
            _quiet,
        )
        _log_model(log, seed, name, results[name])
    return results


def _train_multi_variants(
    data,
    test: MemeTensors,
    run_dir: Path,
    config: ExperimentConfig,
    base,
    results: dict[str, TrainResult],
    seed: int,
    log: Callable[[str], None],
) -> dict[str, dict]:
    """Train every CLIP-multi variant into ``results``; return each one's diagnostics."""
    recipe = config.recipe
    diagnostics = {}
    for name, (gb_mode, pmr) in MULTI_VARIANTS.items():
        train_config = replace(base, epochs=config.multi_epochs, gb_mode=gb_mode, pmr=replace(config.pmr, enabled=pmr))
        multi = build_multi(results["CLIP-text"].model, results["CLIP-image"].model, recipe.model)
        folder = run_dir / name.lower().replace(" +", "_").replace("-", "_")
        results[name] = result = train_model(
            multi, "clip_multi", data.train, data.val, train_config, folder, recipe.clip, recipe.model, False, _quiet
        )
        _log_model(log, seed, name, result)
        diagnostics[name] = {
            "rho_last_epoch": _last_epoch_rho(result),
            "blend_weights": result.blend_weights,
            "encoder_probe": encoder_probe_scores(result.model, data.train, test),
        }
    return diagnostics


def _score_rows(data, test: MemeTensors, results: dict[str, TrainResult], config: ExperimentConfig) -> dict[str, dict]:
    """Validation and test scores of every model, then of each ensemble searched on validation."""
    val_truth, test_truth = data.val.target_columns(), test.target_columns()
    val_probabilities = {name: r.val_probabilities for name, r in results.items()}
    test_probabilities = {name: predict_probabilities(r.model, r.kind, test) for name, r in results.items()}
    rows = {
        name: {"validation": r.scores, "test": memotion_scores(test_truth, argmax_labels(test_probabilities[name]))}
        for name, r in results.items()
    }
    for name, members in ENSEMBLES.items():
        selection = search_ensemble({m: val_probabilities[m] for m in members}, val_truth, config.task_b)
        rows[name] = {
            "validation": ensemble_scores(val_probabilities, val_truth, selection),
            "test": ensemble_scores(test_probabilities, test_truth, selection),
            "selection": selection.to_json(),
        }
    return rows


def run_seed(
    data,
    test: MemeTensors,
    run_dir: Path,
    config: ExperimentConfig,
    seed: int,
    log: Callable[[str], None],
) -> dict:
    """Train the seven models of one seed; score them and the ensembles on validation and test."""
    base = replace(config.recipe.train, seed=seed, pmr=replace(config.pmr, enabled=False))
    torch.manual_seed(seed)
    results = _train_unimodal(data, run_dir, config, base, seed, log)
    diagnostics = _train_multi_variants(data, test, run_dir, config, base, results, seed, log)
    rows = _score_rows(data, test, results, config)
    log(
        f"seed {seed}: test task A / C "
        + ", ".join(f"{name} {row['test']['task_a']:.3f}/{row['test']['task_c']:.3f}" for name, row in rows.items())
    )
    rho = {name: [s["rho"] for s in results[name].rho_steps] for name in MULTI_VARIANTS}
    return {
        "rows": rows,
        "diagnostics": diagnostics,
        "rho_steps": rho,
        "seconds": {name: round(r.seconds, 1) for name, r in results.items()},
    }


def aggregate(per_seed: list[dict], split: str) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sample standard deviation over seeds, per row and column."""
    table = {}
    for name in per_seed[0]["rows"]:
        table[name] = {}
        for key in COLUMNS:
            values = np.array([seed["rows"][name][split][key] for seed in per_seed])
            table[name][key] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            }
    return table


def aggregate_diagnostics(per_seed: list[dict]) -> dict[str, dict]:
    out = {}
    for name in MULTI_VARIANTS:
        entries = [seed["diagnostics"][name] for seed in per_seed]
        rhos = [e["rho_last_epoch"] for e in entries if e["rho_last_epoch"] is not None]
        weights = [e["blend_weights"] for e in entries if e["blend_weights"]]
        out[name] = {
            "rho_last_epoch": float(np.exp(np.mean(np.log(rhos)))) if rhos else None,
            "blend_weights": ({b: float(np.mean([w[b] for w in weights])) for b in weights[0]} if weights else {}),
            "encoder_probe": {
                m: {k: float(np.mean([e["encoder_probe"][m][k] for e in entries])) for k in ("task_a", "task_c")}
                for m in ("text", "image")
            },
        }
    return out


def run_job(
    out: Path, config: ExperimentConfig, setting_name: str, seed: int, log: Callable[[str], None] = print
) -> dict:
    """One (setting, seed): its seven models, ensembles and diagnostics (data already made)."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        setting = DATA_SETTINGS[setting_name]
        data_dir, test_dir = make_data(out, config, setting)
        data = prepare_data(data_dir, config.recipe, progress=False, log=lambda _: None)
        test = _tensors(test_dir, "val", data)
        return run_seed(
            data,
            test,
            out / "runs" / setting.name / f"seed{seed}",
            config,
            seed,
            lambda line: log(f"[{setting.name}] {line}"),
        )
    finally:
        torch.set_num_threads(threads)


def _flushed_print(line: str) -> None:
    print(line, flush=True)


def _prepare_settings(out: Path, config: ExperimentConfig, log: Callable[[str], None]) -> None:
    """Make (or reuse) every setting's data sets and log what each setting is."""
    for name in config.settings:
        setting = DATA_SETTINGS[name]
        make_data(out, config, setting)
        log(f"[{name}] {setting.description}: {config.n_train} train / {config.n_val} val / {config.n_test} test memes")


def _run_jobs(
    out: Path, config: ExperimentConfig, jobs: list[tuple[str, int]], progress: bool, log: Callable[[str], None]
) -> dict[tuple[str, int], dict]:
    """Run every (setting, seed) job, in this process or in ``config.workers`` spawned ones."""
    bar = progress_bar(total=len(jobs), desc="experiment", disable=not progress, unit="run")
    results: dict[tuple[str, int], dict] = {}
    if config.workers == 1:
        for name, seed in jobs:
            results[name, seed] = run_job(out, config, name, seed, log)
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {
                pool.submit(run_job, out, config, name, seed, _flushed_print): (name, seed) for name, seed in jobs
            }
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    bar.close()
    return results


def _setting_report(setting: DataSetting, per_seed: list[dict]) -> dict:
    """One setting's part of the report: aggregates over seeds, per-seed rows and seed 1's rho."""
    return {
        "description": setting.description,
        "test": aggregate(per_seed, "test"),
        "validation": aggregate(per_seed, "validation"),
        "diagnostics": aggregate_diagnostics(per_seed),
        "per_seed": [{k: v for k, v in s.items() if k != "rho_steps"} for s in per_seed],
        "rho_steps": per_seed[0]["rho_steps"],
    }


def run_experiment(
    out: Path,
    config: ExperimentConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every setting and seed; write ``table4.md``, ``table4.json`` and ``rho.png``."""
    out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    report: dict = {"config": _jsonable(asdict(config)), "settings": {}}
    jobs = [(name, seed) for name in config.settings for seed in config.seeds]
    _prepare_settings(out, config, log)
    results = _run_jobs(out, config, jobs, progress, log)
    for setting_name in config.settings:
        setting = DATA_SETTINGS[setting_name]
        per_seed = [results[setting_name, seed] for seed in config.seeds]
        report["settings"][setting.name] = _setting_report(setting, per_seed)
    report["seconds"] = round(time.perf_counter() - started, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report["cpu_seconds"] = round(time.process_time() - cpu_started + children.ru_utime + children.ru_stime, 1)
    write_report(out, report, config)
    return report


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _markdown_intro(report: dict, config: ExperimentConfig) -> list[str]:
    """The title and the paragraph describing the run's settings."""
    seeds = len(config.seeds)
    return [
        f"# Table 4 on synthetic memes: weighted F1, mean ± std over {seeds} seed{'s' if seeds > 1 else ''}",
        "",
        f"Tiny random-initialised CLIP (`{config.recipe.clip}`); {config.n_train} train / "
        f"{config.n_val} validation / {config.n_test} test memes per setting; uni-modal models "
        f"{config.unimodal_epochs} epochs, CLIP-multi {config.multi_epochs} epochs from them. "
        "GB = gradient blending with weights estimated from each branch's OGR on 10% of train "
        "held out; GB fixed = the authors' fixed weights (text 0.2, image 0.4, multi 0.4); "
        "PMR = prototypical modal rebalance "
        f"(alpha {config.pmr.alpha}, mu {config.pmr.mu}, E_r {config.pmr.per_epochs}, "
        f"{'hard switch' if config.pmr.hard_switch else 'continuous coefficients'}). "
        "Scores on the held-out test split; checkpoints and ensemble voters were chosen on "
        "validation. Task B is from Task C"
        + (" (voted directly)" if config.task_b == "direct" else "")
        + f". Run time {report['seconds'] / 60:.1f} min ({report['cpu_seconds'] / 60:.1f} CPU-min, "
        f"{config.workers} worker process{'es' if config.workers > 1 else ''}).",
    ]


def _score_table(name: str, setting: dict) -> list[str]:
    """A setting's heading and its test-score table, one row per model and ensemble."""
    lines = [
        "",
        f"## {name}: {setting['description']}",
        "",
        "| model | " + " | ".join(COLUMNS.values()) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for row, cells in setting["test"].items():
        lines.append(f"| {row} | " + " | ".join(_cell(cells[k]) for k in COLUMNS) + " |")
    return lines


def _diagnostic_row(row: str, d: dict) -> str:
    """One CLIP-multi's diagnostics as a table row: rho, blend weights, encoder probes."""
    rho = f"{d['rho_last_epoch']:.2f}" if d["rho_last_epoch"] is not None else "-"
    weights = (
        "/".join(f"{d['blend_weights'][b]:.2f}" for b in ("text", "image", "multi")) if d["blend_weights"] else "-"
    )
    probe = d["encoder_probe"]
    return (
        f"| {row} | {rho} | {weights} | {probe['text']['task_a']:.3f} / "
        f"{probe['text']['task_c']:.3f} | {probe['image']['task_a']:.3f} / "
        f"{probe['image']['task_c']:.3f} |"
    )


def _diagnostics_table(setting: dict) -> list[str]:
    """A setting's diagnostics table, one row per CLIP-multi variant."""
    lines = [
        "",
        "| CLIP-multi | rho, last epoch | blend weights text/image/multi | "
        "text encoder alone (A / C) | image encoder alone (A / C) |",
        "|---|---|---|---|---|",
    ]
    return lines + [_diagnostic_row(row, d) for row, d in setting["diagnostics"].items()]


_MARKDOWN_FOOTER = [
    "",
    "rho > 1: the text's prototypes fit the labels better than the image's (eq. 8). "
    "Encoder alone: nearest-class-prototype weighted F1 of that encoder's features inside "
    "the trained CLIP-multi (Task A / Task C average).",
    "",
]


def markdown(report: dict, config: ExperimentConfig) -> str:
    """The report as Markdown: intro, then per setting a score table and a diagnostics table."""
    lines = _markdown_intro(report, config)
    for name, setting in report["settings"].items():
        lines += _score_table(name, setting) + _diagnostics_table(setting)
    lines += _MARKDOWN_FOOTER
    return "\n".join(lines)


def write_report(out: Path, report: dict, config: ExperimentConfig) -> None:
    (out / f"{TABLE_FILE}.json").write_text(json.dumps(report, indent=2))
    (out / f"{TABLE_FILE}.md").write_text(markdown(report, config))
    plot_rho(report, out / "rho.png")


def plot_rho(report: dict, path: Path) -> Path:
    """rho per step (mean over tasks, geometric) for every setting and CLIP-multi variant, seed 1."""
    from training.plots import plt, save_figure

    settings = report["settings"]
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
    for ax, (name, setting) in zip(axes[0], settings.items()):
        for variant, steps in setting["rho_steps"].items():
            rho = [float(np.exp(np.mean(np.log(np.clip(list(s.values()), 1e-12, None))))) for s in steps]
            ax.plot(range(1, len(rho) + 1), rho, lw=1, label=variant)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("rho (eq. 8), geometric mean over tasks")
        ax.set_title(name)
        ax.legend(fontsize=8)
    return save_figure(fig, path)
