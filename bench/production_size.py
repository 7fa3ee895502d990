"""The paper's size end to end (issue 21): CLIP ViT-B-32 members trained on real memes, exported in
FP32 and INT8, served by the real gateway with OCR over HTTP -- measured side by side in one run.

    python bench/production_size.py              # ~15 min on 2 busy cores
    python bench/production_size.py --quick      # ~6 min: fewer memes, 1 and 8 clients, 8 s per point

Steps: (1) `memotion train --clip ViT-B-32 --pretrained none --no-ensemble-search` (random init:
weights cannot be fetched here; every member votes) for a few steps on real memes
(../shared/data/memotion1-train-128px); (2) `memotion export` twice, FP32 and `--quantize int8`;
(3) per member: parameters, GFLOP per meme (PyTorch, batch 1), ONNX size, session load time and
resident memory (a fresh process per graph), ms per meme at batch 8 and the fraction of the
machine's matmul roofline in the member's precision (bench/roofline.py, same run); (4) INT8
against FP32 on the validation memes (caption given): label agreement per head of the ensemble's
vote and each one's macro F1; (5) both repositories served by `memotion serve` at once
(start-up time, RSS), real Hindi-English memes (../shared/data/cm-off-meme-sample, text read by
OCR) at 1 / 8 / 32 clients, FP32 and INT8 (and each ``--variant``: a gateway with other settings)
interleaved point by point: memes/s, p50, p99; (6) start-up and memory with MEMOTION_PROCESSES=N
(``--processes 1,2``), FP32 and INT8: seconds until every process is ready, resident memory per
process at start and after 8 clients. ``--reuse --serving-only`` serves the repositories a
previous run left in ``--workdir`` and measures (5) and (6) only.
Prints a table, writes JSON (default bench/results/production_size.json). The machine is shared:
compare FP32 with INT8 (ratios), not with other runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.roofline import cpu_flags, measure_roofline  # noqa: E402
from memotion.data_format import MemeRecord, load_split, write_split  # noqa: E402
from memotion.manifest import Manifest, ModelEntry, load_manifest  # noqa: E402
from memotion.tokenizer import ClipTokenizer  # noqa: E402
from memotion.voting import majority_vote  # noqa: E402
from training.quantize import records_feeds  # noqa: E402

SHARED = Path(os.environ.get("MEMOTION_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRAIN_MEMES = SHARED / "memotion1-train-128px" / "labels.csv"
OCR_MEMES = SHARED / "cm-off-meme-sample" / "labels.csv"
DEFAULT_OUT = ROOT / "bench" / "results" / "production_size.json"
GATEWAY_ENV = {  # every request reaches the models: no cache, no rate limit; 8 classifications at once
    "MEMOTION_RESULT_CACHE": "none",
    "MEMOTION_RATE_LIMIT_PER_MINUTE": "1000000",
    "MEMOTION_RATE_LIMIT_BURST": "100000",
    "MEMOTION_WORKERS": "8",
    "MEMOTION_MAX_QUEUE": "64",
}
PROBE = """
import json, sys, time
def rss():
    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) / 1024
import onnxruntime as ort
before, started = rss(), time.perf_counter()
ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])
print(json.dumps({'load_s': time.perf_counter() - started, 'rss_mib': rss() - before}))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def memotion(*args: str) -> tuple[float, list[str]]:
    """Run the `memotion` command (this checkout's); its wall time in seconds and its output lines."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "memotion_cli", *args], check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    return time.perf_counter() - started, done.stdout.splitlines()


def write_splits(workdir: Path, train: int, val: int) -> Path:
    records = load_split(TRAIN_MEMES)
    data = workdir / "data"
    write_split(data / "train.csv", records[:train])
    write_split(data / "val.csv", records[train : train + val])
    return data


def train_and_export(workdir: Path, args: argparse.Namespace) -> dict:
    data = write_splits(workdir, args.train, args.val)
    run = workdir / "run"
    log(f"training three ViT-B-32 members on {args.train} real memes, {args.steps} step(s) of {args.batch}")
    seconds, output = memotion(
        "train", "--data", str(data), "--out", str(run), "--clip", "ViT-B-32", "--pretrained", "none",
        "--no-ensemble-search", "--epochs", "1", "--max-steps", str(args.steps), "--batch-size", str(args.batch),
        "--threads", "2",
    )  # fmt: skip
    report = {
        "train_s": seconds,
        "train_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "train_estimate": [line for line in output if line.startswith(("estimated cost", "WARNING"))],
    }
    log(f"{' '.join(report['train_estimate'])}; measured peak RSS {report['train_peak_rss_mib']:.0f} MiB")
    for precision in repositories(args):
        extra = [] if precision == "fp32" else ["--quantize", precision]
        log(f"exporting {precision}")
        report[f"export_{precision}_s"], output = memotion(
            "export", "--run", str(run), "--out", str(workdir / precision), *extra
        )
        report[f"export_{precision}_log"] = [
            line for line in output if "int8" in line or line.startswith(("serving", " "))
        ]
    return report


def repositories(args: argparse.Namespace) -> tuple[str, ...]:
    """The exports the run serves: FP32, ONNX Runtime's dynamic INT8 and, with ``--openvino``, the
    static INT8 made for OpenVINO (each ``memotion export --quantize`` choice, a folder of --workdir)."""
    return ("fp32", "int8", "int8-static") if args.openvino else ("fp32", "int8")


def count_member_flops(run: Path, member: ModelEntry, feeds: dict[str, np.ndarray]) -> tuple[int, float]:
    """(parameters, GFLOP per meme) of ``member`` on PyTorch, batch 1."""
    import torch

    from training.compute import count_flops
    from training.factory import load_checkpoint

    model, _ = load_checkpoint(run / member.name / "checkpoint.pt")
    args = [torch.from_numpy(feeds[name][:1]) for name in member.inputs]
    with torch.no_grad():
        flops = count_flops(lambda: model(*args))
    return sum(p.numel() for p in model.parameters()), flops / 1e9


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ms_per_meme(path: Path, member: ModelEntry, feeds: dict[str, np.ndarray], seconds: float, batch: int = 8) -> float:
    runner = session(path)
    feed = {name: np.ascontiguousarray(feeds[name][:batch]) for name in member.inputs}
    runner.run(None, feed)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        runner.run(None, feed)
        runs += 1
    return (time.perf_counter() - started) / runs / batch * 1000


def load_probe(path: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, str(path)], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def member_rows(workdir: Path, feeds: dict[str, np.ndarray], roofline: dict, seconds: float) -> list[dict]:
    rows = []
    for member in load_manifest(workdir / "fp32").members():
        params, gflop = count_member_flops(workdir / "run", member, feeds)
        for precision in ("fp32", "int8"):
            path = workdir / precision / member.file
            ms = ms_per_meme(path, member, feeds, seconds)
            achieved = gflop / (ms / 1000)
            rows.append(
                {
                    "member": member.name, "precision": precision, "parameters_m": params / 1e6,
                    "gflop_per_meme": gflop, "onnx_mb": path.stat().st_size / 1e6, **load_probe(path),
                    "ms_per_meme_batch8": ms, "achieved_gflops": achieved,
                    "roofline_fraction": achieved / roofline["best"][precision],
                    "ort_roofline_fraction": achieved / roofline[precision]["onnxruntime"],
                }
            )  # fmt: skip
            log(f"{member.name} {precision}: {ms:.0f} ms/meme at batch 8, {achieved:.0f} GFLOP/s")
    return rows


def memes_and_feeds(manifest: Manifest, repository: Path, records: list[MemeRecord]) -> dict[str, np.ndarray]:
    tokenizer = ClipTokenizer(repository / manifest.tokenizer.file, manifest.tokenizer.context_length)
    return records_feeds(records, tokenizer, manifest.preprocessing)


def member_logits(
    repository: Path, member: ModelEntry, feeds: dict[str, np.ndarray], engine: str, precision: str = "auto"
) -> list[np.ndarray]:
    """``member``'s logits per head on ``feeds``, 8 memes a call as the gateway runs them
    (``trimmed_feed``: ids cut to each batch's longest text where the manifest allows it), on
    ``engine`` (openvino: the gateway's OpenVINO engine with ``precision``, MEMOTION_OPENVINO_PRECISION)."""
    from service.inference.backends.base import trimmed_feed
    from service.inference.backends.openvino_backend import OpenVinoBackend

    batches = [{n: feeds[n][i : i + 8] for n in member.inputs} for i in range(0, len(feeds["input_ids"]), 8)]
    if engine == "openvino":
        backend = OpenVinoBackend(repository, [member], threads=2, precision=precision)
        parts = [[backend.infer(member, batch)[k] for k in member.outputs] for batch in batches]
    else:
        runner = session(repository / member.file)
        parts = [runner.run(list(member.outputs), trimmed_feed(member, batch)) for batch in batches]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(member.outputs))]


def ensemble_labels(
    repository: Path, feeds: dict[str, np.ndarray], engine: str = "onnxruntime", precision: str = "auto"
) -> dict[str, np.ndarray]:
    """The repository's voted label per head (every member's softmax, majority vote; ``member_logits``)."""
    manifest = load_manifest(repository)
    probabilities: dict[str, dict[str, np.ndarray]] = {}
    for member in manifest.members():
        logits = member_logits(repository, member, feeds, engine, precision)
        exps = [np.exp(v - v.max(-1, keepdims=True)) for v in logits]
        probabilities[member.name] = {head: e / e.sum(-1, keepdims=True) for head, e in zip(member.outputs, exps)}
    return {
        task.name: majority_vote([probabilities[m][task.name] for m in manifest.ensemble.members_for(task.name)])
        for task in manifest.tasks
    }


def vote_quality(
    reference: Path,
    candidate: Path,
    records: list[MemeRecord],
    feeds: dict[str, np.ndarray],
    engine: str = "onnxruntime",
    precision: str = "auto",
) -> dict:
    """``candidate``'s ensemble vote (on ``engine``, OpenVINO's ``precision``) against
    ``reference``'s (ONNX Runtime) on ``records``: agreement and macro F1 per head."""
    from training.metrics import macro_f1

    ref, got = ensemble_labels(reference, feeds), ensemble_labels(candidate, feeds, engine, precision)
    truth = {head: np.array([r.labels()[head] for r in records]) for head in ref}
    classes = {t.name: len(t.labels) for t in load_manifest(reference).tasks}
    heads = {
        head: {
            "agreement": float(np.mean(ref[head] == got[head])),
            "macro_f1_reference": macro_f1(truth[head], ref[head], classes[head]),
            "macro_f1": macro_f1(truth[head], got[head], classes[head]),
        }
        for head in ref
    }
    return {
        "memes": len(records),
        "heads": heads,
        "min_agreement": min(h["agreement"] for h in heads.values()),
        "max_macro_f1_diff": max(abs(h["macro_f1_reference"] - h["macro_f1"]) for h in heads.values()),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def drive(url: str, payloads: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads post memes (no text: OCR reads it) for ``seconds``; memes/s and latency."""
    import httpx

    latencies: list[float] = []
    errors: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    meme = {"image": ("meme.jpg", payloads[index % len(payloads)])}
                    status = http.post("/v1/classify", files=meme).status_code
                except httpx.HTTPError:  # counted, never a client thread lost silently
                    status = 0
                with lock:
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[status] = errors.get(status, 0) + 1
                index += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "clients": clients,
        "memes": len(ordered),
        "errors": sum(errors.values()),
        "error_statuses": errors,
        "memes_per_s": len(ordered) / elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


def start_gateway(repository: Path, env: dict[str, str], processes: int = 1) -> tuple[object, dict]:
    """`memotion serve` with ``processes`` worker processes: (the gateway, its start-up: seconds
    until every process logged it was ready, resident memory per process and in all)."""
    from service.launchers.gateway_process import GatewayProcess

    gateway = GatewayProcess(
        repository, env={**GATEWAY_ENV, **env, "MEMOTION_PROCESSES": str(processes)}, ready_timeout_s=600
    )
    started = time.perf_counter()
    gateway.start()
    while gateway.log_text().count("ready in") < processes and time.perf_counter() - started < 600:
        time.sleep(0.2)
    pid = gateway._process.pid if gateway._process else 0
    return gateway, {"ready_s": time.perf_counter() - started, "pid": pid, **process_memory(pid, processes)}


def process_memory(pid: int, processes: int) -> dict:
    """Resident MiB of the gateway: each process serving requests (the workers when there are
    several, else the one), and the whole tree (with uvicorn's supervisor)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()] if pid else []
    # the workers: the largest children (uvicorn's supervisor also starts a small helper process)
    serving = sorted(children, key=rss_mib)[-processes:] if processes > 1 else [pid]
    per_process = [rss_mib(p) for p in serving]
    return {"rss_mib": sum(per_process), "rss_per_process_mib": per_process, "pids": serving,
            "rss_tree_mib": sum(rss_mib(p) for p in {pid, *children})}  # fmt: skip


def stage_seconds(url: str) -> dict[str, tuple[float, float]]:
    """The gateway's per-stage totals so far (its ``memotion_stage_seconds`` histogram): stage ->
    (seconds, requests)."""
    import re

    import httpx

    totals: dict[str, list[float]] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        found = re.match(r'memotion_stage_seconds_(sum|count)\{.*?stage="([^"]+)".*?\} ([0-9.e+-]+)$', line)
        if found:
            kind, stage, value = found.groups()
            totals.setdefault(stage, [0.0, 0.0])[kind == "count"] += float(value)
    return {stage: (sums[0], sums[1]) for stage, sums in totals.items()}


def stage_ms(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean milliseconds per request of each stage between two ``stage_seconds`` readings."""
    means = {}
    for stage, (seconds, count) in after.items():
        old_seconds, old_count = before.get(stage, (0.0, 0.0))
        if count > old_count:
            means[stage] = (seconds - old_seconds) / (count - old_count) * 1000
    return means


def start_triton(repository: Path, report: dict) -> tuple[object, dict[str, str]]:
    """A real tritonserver serving ``repository`` (its python-backend instances run ONNX Runtime);
    the environment of a gateway that uses it. Its start-up and memory (with the stubs) go in ``report``."""
    from service.launchers.triton_server import TritonServerProcess

    started = time.perf_counter()
    server = TritonServerProcess(repository, ready_timeout_s=600).start()
    pid = server.pid or 0
    tree = [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    report["triton"] = {"ready_s": time.perf_counter() - started, "rss_tree_mib": sum(rss_mib(p) for p in tree)}
    log(f"tritonserver ready in {report['triton']['ready_s']:.1f} s, RSS {report['triton']['rss_tree_mib']:.0f} MiB")
    return server, {"MEMOTION_BACKEND": "triton", "MEMOTION_TRITON_URL": server.grpc_url}


OPENVINO_CONFIGS = {  # --openvino: the same-engine FP32 baseline, the static INT8 made for it,
    # the INT8 repository with OpenVINO BF16 where it runs (the OCR recogniser; the members'
    # dynamic INT8 and the INT8 OCR detector stay on ONNX Runtime: openvino_backend.openvino_mismatch),
    # and the FP32 repository with every member and both OCR networks on OpenVINO BF16
    "fp32-openvino": ("fp32", {"MEMOTION_ENGINE": "openvino", "MEMOTION_OPENVINO_PRECISION": "f32"}),
    # precision auto: the members' bf16 hint, which the FP32 OCR networks follow (repository_precision)
    "int8-static-openvino": ("int8-static", {"MEMOTION_ENGINE": "openvino"}),
    "int8-openvino-bf16": ("int8", {"MEMOTION_ENGINE": "openvino", "MEMOTION_OPENVINO_PRECISION": "bf16"}),
    "fp32-openvino-bf16": ("fp32", {"MEMOTION_ENGINE": "openvino", "MEMOTION_OPENVINO_PRECISION": "bf16"}),
}
OPENVINO_BASELINES = {  # ratio label -> the configuration it divides by
    "fp32-openvino": "fp32-openvino",
    "fp32 (onnxruntime)": "fp32",
    "int8 (onnxruntime)": "int8",
}
OPENVINO_QUALITY = {  # report key -> (repository, MEMOTION_OPENVINO_PRECISION): ensemble votes as served
    "int8_static_openvino_vs_fp32": ("int8-static", "auto"),
    "fp32_openvino_bf16_vs_fp32": ("fp32", "bf16"),
}


def serve_and_load(
    workdir: Path, payloads: list[bytes], levels: list[int], seconds: float, variants: dict, triton: str | None = None
) -> dict:
    """Every configuration served at once (FP32, INT8, the variants -- with ``--openvino`` the
    OpenVINO ones -- and, with ``triton``, a gateway on a tritonserver serving that precision's
    repository); driven in turn at each client level, the order reversed every other level."""
    configs = {"fp32": ("fp32", {}), "int8": ("int8", {}), **variants}
    gateways, report, server = {}, {"start": {}, "load": []}, None
    try:
        if triton:
            try:
                server, env = start_triton(workdir / triton, report)
                configs[f"{triton}-triton"] = (triton, env)
            except Exception as err:  # the embedded rows are still worth having
                report["triton"] = {"error": str(err)[-2000:]}
                log(f"tritonserver did not start: {str(err)[-500:]}")
        for name, (precision, env) in configs.items():
            gateways[name], report["start"][name] = start_gateway(workdir / precision, env)
            log(f"gateway {name} ready in {report['start'][name]['ready_s']:.1f} s")
        for level_index, clients in enumerate(levels):
            order = list(configs) if level_index % 2 == 0 else list(reversed(configs))
            for name in order:
                url = gateways[name].base_url
                drive(url, payloads[:2], clients, min(2.0, seconds))  # warm-up
                before = stage_seconds(url)
                point = {"config": name, "precision": configs[name][0], **drive(url, payloads, clients, seconds)}
                point["stage_ms"] = stage_ms(before, stage_seconds(url))  # where a meme's time went
                point["rss_mib"] = rss_mib(report["start"][name]["pid"])
                report["load"].append(point)
                log(f"{name} {clients} clients: {point['memes_per_s']:.2f} memes/s, p99 {point['p99_ms']:.0f} ms")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    return report


def processes_rows(workdir: Path, payloads: list[bytes], counts: list[int], seconds: float) -> list[dict]:
    """Start-up and memory with MEMOTION_PROCESSES=N, FP32 and INT8, one gateway at a time: ready
    time, RSS per process at start and after ``seconds`` of 8 clients (and their memes/s)."""
    rows = []
    for precision in ("fp32", "int8"):
        for processes in counts:
            gateway, start = start_gateway(workdir / precision, {}, processes)
            try:
                load = drive(gateway.base_url, payloads, 8, seconds)  # type: ignore[attr-defined]
                loaded = process_memory(start["pid"], processes)
            finally:
                gateway.stop()  # type: ignore[attr-defined]
            row = {
                "precision": precision,
                "processes": processes,
                "ready_s": start["ready_s"],
                "rss_start_mib": start["rss_mib"],
                "rss_start_per_process_mib": max(start["rss_per_process_mib"]),
                "rss_loaded_mib": loaded["rss_mib"],
                "rss_loaded_per_process_mib": max(loaded["rss_per_process_mib"]),
                "memes_per_s_8_clients": load["memes_per_s"],
            }
            rows.append(row)
            log(f"{precision} x{processes}: ready {row['ready_s']:.1f} s, RSS {row['rss_start_mib']:.0f} -> "
                f"{row['rss_loaded_mib']:.0f} MiB, {row['memes_per_s_8_clients']:.2f} memes/s")  # fmt: skip
    return rows


def ocr_memes(count: int) -> list[bytes]:
    """Real memes with their caption in the picture (CM-Off-Meme; no Memotion labels needed)."""
    import csv

    with OCR_MEMES.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:count]
    return [(OCR_MEMES.parent / row["image_path"]).read_bytes() for row in rows]


MEMBER_COLUMNS = (  # header, width, row key, format
    ("member", 12, "member", ""),
    ("prec", 6, "precision", ""),
    ("params M", 9, "parameters_m", ".1f"),
    ("GFLOP", 7, "gflop_per_meme", ".2f"),
    ("MB", 6, "onnx_mb", ".0f"),
    ("load s", 7, "load_s", ".2f"),
    ("RSS MiB", 8, "rss_mib", ".0f"),
    ("ms/meme", 8, "ms_per_meme_batch8", ".0f"),
    ("GFLOP/s", 8, "achieved_gflops", ".0f"),
    ("roof", 7, "roofline_fraction", ".1%"),
    ("ORT roof", 9, "ort_roofline_fraction", ".1%"),
)
LOAD_COLUMNS = (
    ("clients", 8, "clients", ""),
    ("config", 16, "config", ""),
    ("memes/s", 8, "memes_per_s", ".2f"),
    ("p50 ms", 8, "p50_ms", ".0f"),
    ("p99 ms", 8, "p99_ms", ".0f"),
    ("errors", 7, "errors", ""),
    ("RSS MiB", 8, "rss_mib", ".0f"),
)


PROCESS_COLUMNS = (
    ("prec", 6, "precision", ""),
    ("procs", 6, "processes", ""),
    ("ready s", 8, "ready_s", ".1f"),
    ("RSS start", 10, "rss_start_mib", ".0f"),
    ("per proc", 9, "rss_start_per_process_mib", ".0f"),
    ("RSS load", 9, "rss_loaded_mib", ".0f"),
    ("per proc", 9, "rss_loaded_per_process_mib", ".0f"),
    ("memes/s@8", 10, "memes_per_s_8_clients", ".2f"),
)


def table(rows: list[dict], columns: tuple) -> str:
    lines = ["".join(f"{title:>{width}}" for title, width, _, _ in columns)]
    lines += ["".join(f"{row[key]:>{width}{fmt}}" for _, width, key, fmt in columns) for row in rows]
    return "\n".join(lines)


def print_table(report: dict) -> None:
    if "members" in report:
        roof = report["roofline_gflops"]["best"]
        print(f"\nroofline, 2 threads, best engine (GFLOP/s): {', '.join(f'{k} {v:.0f}' for k, v in roof.items())}")
        print(table(report["members"], MEMBER_COLUMNS))
        for key in ("int8_vs_fp32", *OPENVINO_QUALITY):
            quality = report.get(key)
            if quality:
                print(
                    f"\n{key} (ensemble) on {quality['memes']} real memes: min label agreement "
                    f"{quality['min_agreement']:.1%}, max macro F1 difference {quality['max_macro_f1_diff']:.3f}"
                )
    for name, start in report["serving"]["start"].items():
        print(f"gateway {name}: ready in {start['ready_s']:.1f} s, RSS {start['rss_mib']:.0f} MiB")
    print(table(report["serving"]["load"], LOAD_COLUMNS))
    stages = [
        p for p in report["serving"]["load"] if p["clients"] == min(q["clients"] for q in report["serving"]["load"])
    ]
    print(f"\nms per meme by stage at {stages[0]['clients']} client(s) (the gateway's memotion_stage_seconds)")
    for point in stages:
        print(f"{point['config']:>16} " + ", ".join(f"{k} {v:.0f}" for k, v in point["stage_ms"].items()))
    for clients, ratio in report["int8_speedup_by_clients"].items():
        print(f"INT8 / FP32 memes/s at {clients} clients: {ratio:.2f}x")
    for clients, ratios in report.get("openvino_speedup_by_clients", {}).items():
        print(f"at {clients} clients: " + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items()))
    if report.get("processes"):
        print("\nMEMOTION_PROCESSES=N, one gateway at a time (RSS in MiB; per proc: the largest process)")
        print(table(report["processes"], PROCESS_COLUMNS))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer memes, 1 and 8 clients, shorter points")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/memotion-production-size"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train", type=int, default=32, help="real memes to train on")
    parser.add_argument("--val", type=int, default=64, help="real memes for INT8 vs FP32 quality")
    parser.add_argument("--steps", type=int, default=2, help="training steps per member")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="per load point and per member timing")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--reuse", action="store_true", help="serve the FP32 / INT8 repositories already in --workdir")
    parser.add_argument("--serving-only", action="store_true", help="skip the roofline, members and INT8 quality")
    parser.add_argument(
        "--processes", default="1,2", help="MEMOTION_PROCESSES values for start-up and memory ('' none)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:PRECISION:KEY=VALUE,...",
        help="one more gateway in the load table, e.g. int8-1thread:int8:MEMOTION_ORT_INTRA_OP_THREADS=1",
    )
    parser.add_argument("--triton", choices=("fp32", "int8"), help="also a gateway on tritonserver (that precision)")
    parser.add_argument(
        "--openvino",
        action="store_true",
        help="also export --quantize int8-static and serve it and FP32 with MEMOTION_ENGINE=openvino",
    )
    parser.add_argument(
        "--openvino-configs",
        nargs="*",
        choices=list(OPENVINO_CONFIGS),
        help="with --openvino: only these OpenVINO gateways (default: all of them)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.val, args.steps, args.seconds, args.clients = 8, 24, 1, 8.0, "1,8"
    return args


def openvino_configs(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, str]]]:
    """The OpenVINO gateways ``--openvino`` serves (``--openvino-configs``: a subset)."""
    if not args.openvino:
        return {}
    return {
        name: config for name, config in OPENVINO_CONFIGS.items() if name in (args.openvino_configs or OPENVINO_CONFIGS)
    }


def parse_variants(specs: list[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """``NAME:PRECISION:KEY=VALUE,...`` -> {name: (precision, environment)}."""
    variants = {}
    for spec in specs:
        name, precision, assignments = (spec.split(":", 2) + [""])[:3]
        if precision not in ("fp32", "int8", "int8-static"):
            raise SystemExit(f"--variant {spec!r}: the precision must be fp32, int8 or int8-static")
        variants[name] = (precision, dict(a.split("=", 1) for a in assignments.split(",") if a))
    return variants


def measure_models(report: dict, args: argparse.Namespace) -> None:
    """Roofline, the members one by one, INT8 against FP32 on the validation memes (into ``report``)."""
    log("matmul roofline")
    report["roofline_gflops"] = measure_roofline(1024, 2.0, 2)
    manifest = load_manifest(args.workdir / "fp32")
    records = load_split(args.workdir / "data" / "val.csv")
    feeds = memes_and_feeds(manifest, args.workdir / "fp32", records)
    report["members"] = member_rows(args.workdir, feeds, report["roofline_gflops"], min(args.seconds, 10.0))
    report["int8_vs_fp32"] = vote_quality(args.workdir / "fp32", args.workdir / "int8", records, feeds)
    if args.openvino:  # as served: on the gateway's OpenVINO engine
        for key, (repository, precision) in OPENVINO_QUALITY.items():
            report[key] = vote_quality(
                args.workdir / "fp32", args.workdir / repository, records, feeds, "openvino", precision
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not TRAIN_MEMES.is_file() or not OCR_MEMES.is_file():
        print(f"real memes not found under {SHARED} (MEMOTION_SHARED_DATA)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(), "args": vars(args)}
    report["args"] = {k: str(v) for k, v in vars(args).items()}
    built = all((args.workdir / p / "manifest.json").is_file() for p in repositories(args))
    report["pipeline"] = {"reused": True} if args.reuse and built else train_and_export(args.workdir, args)
    if not args.serving_only:
        measure_models(report, args)
    payloads = ocr_memes(64)
    levels = [int(c) for c in args.clients.split(",")]
    variants = {**openvino_configs(args), **parse_variants(args.variant)}
    report["serving"] = serve_and_load(args.workdir, payloads, levels, args.seconds, variants, args.triton)
    rates = {(p["config"], p["clients"]): p["memes_per_s"] for p in report["serving"]["load"]}
    report["int8_speedup_by_clients"] = {c: rates[("int8", c)] / rates[("fp32", c)] for c in levels}
    if args.openvino:  # the honest baseline is the same engine's FP32; ONNX Runtime FP32 beside it
        report["openvino_speedup_by_clients"] = {
            c: {
                f"{fast} / {label}": rates[(fast, c)] / rates[(base, c)]
                for fast in openvino_configs(args)
                if fast != "fp32-openvino"
                for label, base in OPENVINO_BASELINES.items()
                if (base, c) in rates
            }
            for c in levels
        }
    counts = [int(n) for n in args.processes.split(",") if n]
    report["processes"] = processes_rows(args.workdir, payloads, counts, min(args.seconds, 8.0))
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out} (models under {args.workdir}: remove it when done)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
