"""``memotion score INPUT --out results.jsonl|parquet``: classify a whole folder, CSV or Memotion
data set offline, resumably.

* INPUT: a folder of images (text read by OCR), a CSV/TSV/JSONL with an image column and optionally
  id and text columns (the Memotion column names and aliases of ``memotion.data_format``),
  or a Memotion-format data set folder (its ``train``/``val``/``test`` files).
* Output: one flat record per meme (:func:`flatten_response`; errors are records too, never lost).
  JSONL is appended and fsynced chunk by chunk; Parquet is written as part files
  (``OUT.parts/part-NNNNNN.parquet``, each renamed into place when complete) merged into OUT at the end.
* Resume: a killed job run again skips every id already in the output (a JSONL line cut short by the
  kill is dropped first; a garbled line elsewhere is skipped with a warning, the rows after it still
  count), so no meme is scored twice or lost. The output is read line by line (at most
  :data:`MAX_LINE_BYTES` each), never whole, and Parquet parts are merged one at a time: memory stays
  bounded by one chunk, whatever the output's size.
* Output problems (not a regular file, such as a link to /dev/full; a read-only folder; a full disk)
  end the job with :class:`ScoreOutputError`, one line saying what and where; the output written so
  far stays consistent (a failed append is rolled back), so the same command resumes after the fix.
* ``--ray ADDRESS``: the same, with Ray Data ``map_batches`` on an actor pool (``service.scoring.ray_cluster``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memotion.manifest import Manifest
from memotion.progress import progress_bar
from service.core.errors import ApiError
from service.core.settings import GatewaySettings
from service.inference.imaging import ImageLimits

logger = logging.getLogger("memotion.score")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".json")
SPLITS = ("train", "val", "dev", "test")
DEFAULT_CHUNK = 16
MAX_LINE_BYTES = 4 * 1024 * 1024  # a JSONL record is a few KiB; anything longer is garbage


class ScoreOutputError(RuntimeError):
    """The output cannot be read or written (what and why in one line)."""


def _output_error(path: Path, action: str, err: OSError) -> ScoreOutputError:
    return ScoreOutputError(f"cannot {action} {path}: {err.strerror or err}")


def check_output_path(path: Path) -> None:
    """Refuse an output that is not a regular file (a device such as /dev/full never ends)."""
    if path.exists() and not path.is_file():
        raise ScoreOutputError(
            f"{path} exists and is not a regular file (a folder, device, pipe or a link to one); "
            "--out must name a .jsonl or .parquet file"
        )


@dataclass(frozen=True)
class ScoreItem:
    id: str
    image: str | None  # path of the image file (None: text-only)
    text: str | None  # None: read by OCR


# --- input ---------------------------------------------------------------------------------------


def _table_items(path: Path, ignore_text: bool) -> list[ScoreItem]:
    """Rows of a CSV/TSV/JSONL: id, image and text columns found by their Memotion names/aliases."""
    from memotion.data_format import cell, find_column, image_candidates, read_rows

    columns, rows = read_rows(path)
    id_column, image_column, text_column = (find_column(name, columns) for name in ("id", "image", "text"))
    if id_column is None and image_column is None:
        raise ValueError(
            f"{path}: needs an image column (image, image_path, image_url, image_name) or an id "
            f"column with images at image/{path.stem}/<id>.jpg; columns found: {columns}"
        )
    items = []
    for number, row in rows:
        image_value = cell(row, image_column)
        record_id = cell(row, id_column) or Path(image_value).stem or f"row{number}"
        candidates = image_candidates(image_value, record_id, path.parent, path.stem)
        image = next((c for c in candidates if c.is_file()), candidates[0])
        text = None if ignore_text or text_column is None else (cell(row, text_column) or None)
        items.append(ScoreItem(record_id, str(image), text))
    return items


def _dataset_files(folder: Path) -> list[Path]:
    return [
        folder / f"{split}{suffix}"
        for split in SPLITS
        for suffix in (".csv", ".tsv", ".jsonl", ".json")
        if (folder / f"{split}{suffix}").is_file()
    ]


def discover_items(source: Path, ignore_text: bool = False) -> list[ScoreItem]:
    """The memes of ``source`` in a stable order; ids must be unique."""
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(f"{source}: expected a folder, or a .csv/.tsv/.jsonl/.json table")
        items = _table_items(source, ignore_text)
    elif source.is_dir():
        tables = _dataset_files(source)
        if tables:  # a Memotion-format data set: every split, ids prefixed by the split on a clash
            per_split = {table.stem: _table_items(table, ignore_text) for table in tables}
            ids = [item.id for split_items in per_split.values() for item in split_items]
            clash = len(set(ids)) != len(ids)
            items = [
                ScoreItem(f"{split}/{item.id}" if clash else item.id, item.image, item.text)
                for split, split_items in per_split.items()
                for item in split_items
            ]
        else:
            images = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            items = [ScoreItem(p.relative_to(source).as_posix(), str(p), None) for p in images]
    elif source.exists():
        raise ValueError(f"{source} is neither a regular file nor a folder (a device or a pipe?)")
    else:
        raise FileNotFoundError(f"{source} does not exist")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"{source}: id {item.id!r} appears more than once; ids must be unique")
        seen.add(item.id)
    return items


# --- records -------------------------------------------------------------------------------------


def record_columns(manifest: Manifest) -> dict[str, str]:
    """Column -> type (string, double, bool) of a flat record, from the manifest's tasks."""
    columns = {
        "id": "string",
        "source": "string",
        "status": "string",
        "error_code": "string",
        "error_message": "string",
        "model_version": "string",
        "text": "string",
        "text_source": "string",
        "language": "string",
        "sentiment": "string",
        "sentiment_score": "double",
    }
    for emotion in manifest.task_b_names.values():
        columns[f"b_{emotion}"] = "bool"
        columns[f"b_{emotion}_score"] = "double"
    for head in manifest.task_b_names:
        columns[f"c_{head}"] = "string"
        columns[f"c_{head}_code"] = "string"
    return columns


def flatten_response(item_id: str, source: str | None, response: dict[str, Any]) -> dict[str, Any]:
    """The API's answer as one flat record (the dashboard's batch viewer reads the same shape)."""
    record: dict[str, Any] = {
        "id": item_id,
        "source": source,
        "status": "ok",
        "error_code": None,
        "error_message": None,
        "model_version": response["model_version"],
        "text": response["text"]["value"],
        "text_source": response["text"]["source"],
        "language": response.get("language"),
        "sentiment": response["task_a"]["label"],
        "sentiment_score": response["task_a"]["scores"][response["task_a"]["label"]],
    }
    for emotion, present in response["task_b"].items():
        record[f"b_{emotion}"] = bool(present)
        record[f"b_{emotion}_score"] = response.get("task_b_scores", {}).get(emotion)
    for head, prediction in response["task_c"].items():
        record[f"c_{head}"] = prediction["label"]
        record[f"c_{head}_code"] = prediction["code"]
    return record


def error_record(item_id: str, source: str | None, code: str, message: str) -> dict[str, Any]:
    return {"id": item_id, "source": source, "status": "error", "error_code": code, "error_message": message}


class _Collect:
    """An OutcomeSink that keeps flat records (and the answered items' responses) by item index."""

    def __init__(self, items: Sequence[ScoreItem]) -> None:
        self.items = items
        self.records: dict[int, dict[str, Any]] = {}
        self.responses: dict[int, Any] = {}

    def ok(self, index: int, response: Any) -> None:
        item = self.items[index]
        self.responses[index] = response
        self.records[index] = flatten_response(item.id, item.image, response.model_dump(mode="json"))

    def fail(self, index: int, status: int, code: str, message: str) -> None:
        item = self.items[index]
        self.records[index] = error_record(item.id, item.image, code, message)


def score_chunk_answers(
    classifier: Any,
    items: Sequence[ScoreItem],
    *,
    max_pixels: ImageLimits | int,
    max_text_chars: int,
    thresholds: dict[str, float] | None = None,
    max_request_pixels: int | None = None,
    decode_budget: Any = None,
) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    """Classify ``items`` (one model call for the good ones): their flat records, in order, and the
    answered items' full responses (:class:`~service.api.schemas.ClassifyResponse`) by index (the
    jobs' policy decisions read them). Their images are charged to one pixel budget
    (``max_request_pixels``; default: ``max_pixels`` each) from their headers, and decoded chunk by
    chunk as they are classified (within ``decode_budget``, a
    :class:`~service.inference.decode_budget.DecodeBudget`, when given)."""
    from service.api.batch import Prepared, classify_prepared, prepare_item
    from service.api.classification import ClassifyOptions, check_text
    from service.inference.decode_budget import RequestBudget
    from service.inference.imaging import as_limits

    sink = _Collect(items)
    budget = RequestBudget(max_request_pixels or max(1, len(items)) * as_limits(max_pixels).max_pixels)
    with_image: list[Prepared] = []
    text_only: list[Prepared] = []
    for index, item in enumerate(items):
        try:
            text = check_text(item.text, max_text_chars)
            data = _read_image(item.image) if item.image is not None else None
            prepared = prepare_item(classifier, index, data, text, max_pixels, budget)
            (text_only if prepared.image is None else with_image).append(prepared)
        except ApiError as err:
            sink.fail(index, err.status, err.code, err.message)
    options = ClassifyOptions(thresholds=thresholds or {}, decode_budget=decode_budget)
    never = lambda: False  # noqa: E731 - batch scoring is never abandoned midway
    classify_prepared(classifier, with_image, options, sink, never, text_only=False)
    classify_prepared(classifier, text_only, options, sink, never, text_only=True)
    return [sink.records[i] for i in range(len(items))], sink.responses


def _read_image(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ApiError(400, "unreadable_file", f"cannot read {path}: {err.strerror or err}") from err


# --- output --------------------------------------------------------------------------------------


class JsonlSink:
    """Appends records as JSON lines; a line cut short by a kill is removed on open."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        check_output_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._done = self._repair_and_read()
            self._handle = self.path.open("ab")
        except OSError as err:
            raise _output_error(self.path, "open the output", err) from err

    def _repair_and_read(self) -> set[str]:
        if not self.path.exists():
            return set()
        done: set[str] = set()
        garbled = 0
        with self.path.open("rb") as handle:
            good = 0  # where the complete lines end
            for length, line, complete in _lines(handle):
                if not complete:
                    break  # the last line was being written when the job died
                good += length
                if line is not None and not line.strip():
                    continue
                try:
                    done.add(str(json.loads(line or b"")["id"]))
                except (ValueError, KeyError, TypeError):
                    garbled += 1  # its meme is scored again; the records after it still count
            size = handle.seek(0, os.SEEK_END)
        if garbled:
            logger.warning("%s: skipped %d garbled line(s); their memes are scored again", self.path, garbled)
        if good < size:
            logger.warning("%s: dropping %d bytes of an incomplete last record", self.path, size - good)
            with self.path.open("r+b") as handle:
                handle.truncate(good)
        return done

    def done_ids(self) -> set[str]:
        return set(self._done)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        start = os.fstat(self._handle.fileno()).st_size
        try:
            self._handle.write(data)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:
            self._roll_back(start)
            raise _output_error(self.path, "write to", err) from err

    def _roll_back(self, size: int) -> None:
        """Best effort: the file ends with the last complete chunk again (resume re-scores the rest)."""
        with contextlib.suppress(OSError):  # the buffered data could not be written either
            self._handle.close()
        try:
            with self.path.open("r+b") as handle:
                handle.truncate(size)
        except OSError:
            logger.warning("%s: could not remove a partly written chunk; the next run drops it", self.path)

    def finish(self) -> Path:
        try:
            self._handle.close()
        except OSError as err:
            raise _output_error(self.path, "close", err) from err
        return self.path


def _lines(handle: Any, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None, bool]]:
    """(bytes, the line or None when longer than ``limit``, ends with a newline) for each line of a
    binary file, reading at most ``limit`` bytes at a time: an over-long line is never held whole."""
    while True:
        line = handle.readline(limit)
        if not line:
            return
        if line.endswith(b"\n") or len(line) < limit:
            yield len(line), line, line.endswith(b"\n")
            continue
        length = len(line)  # longer than any record: skip to its end without keeping it
        while line and not line.endswith(b"\n"):
            line = handle.readline(limit)
            length += len(line)
        yield length, None, line.endswith(b"\n")


class ParquetSink:
    """Part files in ``OUT.parts/`` (each complete or absent), merged into OUT by :meth:`finish`."""

    def __init__(self, path: Path, columns: dict[str, str]) -> None:
        import pyarrow as pa

        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".parts")
        check_output_path(self.path)
        types = {"string": pa.string(), "double": pa.float64(), "bool": pa.bool_()}
        self.schema = pa.schema([(name, types[kind]) for name, kind in columns.items()])
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
            for stale in self.parts.glob("*.tmp"):
                stale.unlink()  # a part being written when the job died
        except OSError as err:
            raise _output_error(self.parts, "create the part folder", err) from err
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in self.parts.glob("part-*.parquet")), default=0)

    def _existing(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) + ([self.path] if self.path.is_file() else [])

    def done_ids(self) -> set[str]:
        import pyarrow.parquet as pq

        return {
            str(i) for path in self._existing() for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()
        }

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [{name: record.get(name) for name in self.schema.names} for record in records]
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=self.schema)
        final = self.parts / f"part-{self._next:06d}.parquet"
        temporary = final.with_suffix(".tmp")
        try:
            pq.write_table(table, temporary)
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
            temporary.replace(final)  # atomic: a part is complete or absent
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise _output_error(final, "write", err) from err
        self._next += 1

    def finish(self) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        temporary = self.path.with_name(self.path.name + ".tmp")
        try:  # one part in memory at a time
            with pq.ParquetWriter(temporary, self.schema) as writer:
                for path in self._existing():
                    for batch in pq.ParquetFile(path).iter_batches():
                        writer.write_table(pa.Table.from_batches([batch]).cast(self.schema))
            temporary.replace(self.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise _output_error(self.path, "write", err) from err
        for part in self.parts.glob("part-*.parquet"):
            part.unlink()
        self.parts.rmdir()
        return self.path


def open_sink(out: Path, columns: dict[str, str]) -> JsonlSink | ParquetSink:
    suffix = Path(out).suffix.lower()
    if suffix == ".jsonl":
        return JsonlSink(out)
    if suffix == ".parquet":
        return ParquetSink(out, columns)
    raise ValueError(f"--out must end in .jsonl or .parquet, not {suffix or '(nothing)'}")


# --- the job -------------------------------------------------------------------------------------


@dataclass
class ScoreSummary:
    out: Path
    total: int
    skipped: int  # already in the output (resumed)
    scored: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        rate = self.scored / self.seconds if self.seconds > 0 else 0.0
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(self.error_codes.items()))
        return (
            f"{self.total} memes: {self.skipped} already done, {self.scored} scored now "
            f"({self.errors} errors{': ' + codes if codes else ''}) in {self.seconds:.1f} s "
            f"({rate:.1f} memes/s) -> {self.out}"
        )


def chunks(items: Sequence[ScoreItem], size: int) -> Iterator[list[ScoreItem]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def score(
    source: Path,
    out: Path,
    settings: GatewaySettings,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    ignore_text: bool = False,
    ray_address: str | None = None,
    ray_actors: int = 2,
    progress: bool = True,
) -> ScoreSummary:
    """Score every meme of ``source`` not yet in ``out``; returns what was done."""
    from memotion.manifest import load_manifest

    if chunk_size < 1:
        raise ValueError("chunk size must be positive")
    from service.inference.thresholds import resolve_thresholds

    items = discover_items(source, ignore_text)
    manifest = load_manifest(settings.model_repository)
    thresholds = resolve_thresholds(None, settings.task_thresholds, manifest.task_b_names)
    sink = open_sink(out, record_columns(manifest))
    done = sink.done_ids()
    pending = [item for item in items if item.id not in done]
    summary = ScoreSummary(Path(out), len(items), len(items) - len(pending))
    start = time.perf_counter()
    with progress_bar(
        total=len(items), initial=summary.skipped, unit="meme", desc="scoring", disable=not progress
    ) as bar:
        if ray_address is not None:
            from service.scoring.ray_cluster import score_records_with_ray

            batches = score_records_with_ray(
                pending, settings, ray_address, chunk_size=chunk_size, actors=ray_actors, thresholds=thresholds
            )
        else:
            batches = _score_local(pending, settings, chunk_size, thresholds)
        for records in batches:
            sink.write(records)
            for record in records:
                summary.scored += 1
                if record["status"] != "ok":
                    summary.errors += 1
                    summary.error_codes[record["error_code"]] = summary.error_codes.get(record["error_code"], 0) + 1
            bar.update(len(records))
    summary.out = sink.finish()
    summary.seconds = time.perf_counter() - start
    return summary


def _score_local(
    pending: Sequence[ScoreItem],
    settings: GatewaySettings,
    chunk_size: int,
    thresholds: dict[str, float],
) -> Iterator[list[dict[str, Any]]]:
    if not pending:
        return
    from service.inference.classifier import MemeClassifier

    classifier = MemeClassifier.from_settings(settings)
    try:
        for chunk in chunks(pending, chunk_size):
            records, _ = score_chunk_answers(
                classifier,
                chunk,
                max_pixels=ImageLimits.from_settings(settings),
                max_text_chars=settings.max_text_chars,
                thresholds=thresholds,
            )
            yield records
    finally:
        classifier.close()
