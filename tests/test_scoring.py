"""`memotion score`: inputs (folder, CSV, Memotion data set), JSONL and Parquet output, per-item
errors kept as records, and resuming after a kill (no meme scored twice or lost)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memotion.manifest import load_manifest
from service.core.settings import GatewaySettings
from service.scoring.local import JsonlSink, ParquetSink, discover_items, record_columns, score
from tests.gateway_fixtures import truncated_jpeg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_csv(synthetic_data: Path, tmp_path_factory) -> Path:
    """8 memes of the synthetic validation split as a plain CSV (id, image path, text), plus a
    broken image and a missing one."""
    folder = tmp_path_factory.mktemp("score-input")
    with (synthetic_data / "val.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))[:8]
    (folder / "broken.jpg").write_bytes(truncated_jpeg())
    with (folder / "memes.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "text"])
        for row in rows:
            writer.writerow([row["id"], str(synthetic_data / row["image_url"]), row["ocr_text"]])
        writer.writerow(["broken", "broken.jpg", "some text"])
        writer.writerow(["missing", "no-such-file.jpg", "some text"])
    return folder / "memes.csv"


def _settings(repository: Path) -> GatewaySettings:
    return GatewaySettings(model_repository=repository, ocr="none")


def test_discover_inputs(synthetic_data: Path, small_csv: Path, tmp_path: Path) -> None:
    items = discover_items(small_csv)
    assert [i.id for i in items][-2:] == ["broken", "missing"] and len(items) == 10
    assert items[0].text and Path(items[0].image).is_file()
    assert all(i.text is None for i in discover_items(small_csv, ignore_text=True))
    dataset = discover_items(synthetic_data)  # Memotion format: train + val files
    assert len(dataset) == 144 and dataset[0].id == "syn_train_000001" and dataset[-1].id == "syn_val_000048"
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(items[0].image, folder / "b.jpg")
    shutil.copy(items[1].image, folder / "sub" / "a.jpg")
    (folder / "notes.txt").write_text("not an image")
    assert [(i.id, i.text) for i in discover_items(folder)] == [("b.jpg", None), ("sub/a.jpg", None)]
    duplicated = tmp_path / "dup.csv"
    duplicated.write_text("id,image\na,x.jpg\na,y.jpg\n")
    with pytest.raises(ValueError, match="'a' appears more than once"):
        discover_items(duplicated)
    with pytest.raises(FileNotFoundError):
        discover_items(tmp_path / "nothing-here")


def test_jsonl_scoring_keeps_errors_and_resumes(model_repository: Path, small_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    summary = score(small_csv, out, _settings(model_repository), chunk_size=3, progress=False)
    assert (summary.total, summary.skipped, summary.scored, summary.errors) == (10, 0, 10, 2)
    assert summary.error_codes == {"corrupt_image": 1, "unreadable_file": 1}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records][-2:] == ["broken", "missing"]
    manifest = json.loads((model_repository / "manifest.json").read_text())
    good = records[0]
    assert good["status"] == "ok" and good["model_version"] == manifest["repository_version"]
    (task_a,) = [t for t in manifest["tasks"] if t["name"] not in manifest["task_b_names"]]
    assert good["sentiment"] in task_a["labels"] and 0 < good["sentiment_score"] <= 1
    assert {f"b_{e}" for e in manifest["task_b_names"].values()} <= set(good)
    assert {f"c_{h}" for h in manifest["task_b_names"]} <= set(good)
    assert records[-1]["status"] == "error" and records[-1]["error_code"] == "unreadable_file"
    # The same scores as the HTTP API's in-process path.
    from service.classify_file import classify_file

    answer = classify_file(Path(good["source"]), text=good["text"], settings=_settings(model_repository))
    assert good["sentiment"] == answer["task_a"]["label"]
    assert good["b_offensive_score"] == pytest.approx(answer["task_b_scores"]["offensive"])

    again = score(small_csv, out, _settings(model_repository), progress=False)
    assert (again.skipped, again.scored) == (10, 0)
    assert len(out.read_text().splitlines()) == 10


def test_jsonl_sink_drops_a_line_cut_short(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text('{"id": "a", "status": "ok"}\n{"id": "b", "status": "ok"}\n{"id": "c", "sta')
    sink = JsonlSink(out)
    assert sink.done_ids() == {"a", "b"}
    sink.write([{"id": "c", "status": "ok"}])
    sink.finish()
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]


def test_parquet_output_resumes_from_its_parts(model_repository: Path, small_csv: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "results.parquet"
    columns = record_columns(load_manifest(model_repository))
    # A job that died after its first chunk: one complete part and one half-written one.
    first = ParquetSink(out, columns)
    first.write([{"id": "broken", "status": "error", "error_code": "corrupt_image", "error_message": "x"}])
    (first.parts / "part-000002.tmp").write_bytes(b"half a file")
    summary = score(small_csv, out, _settings(model_repository), chunk_size=4, progress=False)
    assert (summary.skipped, summary.scored) == (1, 9)
    table = pq.read_table(out)
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 10
    assert list(table.schema.names) == list(columns)
    assert not first.parts.exists()
    assert score(small_csv, out, _settings(model_repository), progress=False).scored == 0


def test_a_killed_job_restarts_where_it_stopped(model_repository: Path, synthetic_data: Path, tmp_path: Path) -> None:
    """The real command, killed with SIGKILL mid-way (OCR makes each meme slow), then run again."""
    folder = tmp_path / "memes"
    folder.mkdir()
    for path in sorted((synthetic_data / "image" / "val").glob("*.jpg"))[:6]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "results.jsonl"
    command = [
        sys.executable,
        "-m",
        "memotion_cli",
        "score",
        str(folder),
        "--out",
        str(out),
        "--repository",
        str(model_repository),
        "--chunk-size",
        "1",
        "--no-progress",
    ]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out.exists() and len(out.read_bytes().splitlines()) >= 2):
        assert job.poll() is None, job.stdout.read().decode() if job.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    done_before = len(out.read_bytes().splitlines())
    assert 2 <= done_before < 6, "the job was not killed mid-way"

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"6 memes: {done_before} already done, {6 - done_before} scored now (0 errors)" in rerun.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(p.name for p in folder.iterdir())
    assert all(r["status"] == "ok" and r["text_source"] == "ocr" for r in records)


def test_score_rejects_bad_arguments(model_repository: Path, small_csv: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "memotion_cli",
            "score",
            str(small_csv),
            "--out",
            str(tmp_path / "r.csv"),
            "--repository",
            str(model_repository),
            "--ocr",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "must end in .jsonl or .parquet" in done.stderr
