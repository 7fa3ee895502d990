"""A job's records as JSON Lines (streamed page by page from the database) or Parquet (written page
by page to a temporary file): memory stays bounded by one page, whatever the job's size. Each record
is the flat shape of `memotion score` (service/scoring/local.py) with the item's ``index`` and its
``decision`` block (JSON Lines: the block as in a single answer; Parquet: ``decision_*`` columns)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memotion.manifest import Manifest
from service.jobs.store import result_records
from service.scoring.local import record_columns
from service.store.engine import Database

PAGE = 500
# Parquet: the decision block as flat columns (type as in record_columns) plus the whole block as JSON.
DECISION_COLUMNS = {
    "decision_action": "string",
    "decision_policy": "string",
    "decision_policy_version": "int",
    "decision_review_id": "int",
    "decision_json": "string",
}


def decision_fields(record: dict[str, Any]) -> dict[str, Any]:
    block = record.get("decision")
    if not block:
        return dict.fromkeys(DECISION_COLUMNS)
    return {
        "decision_action": block.get("action"),
        "decision_policy": block.get("policy"),
        "decision_policy_version": block.get("policy_version"),
        "decision_review_id": block.get("review_id"),
        "decision_json": json.dumps(block, ensure_ascii=False),
    }


def records(db: Database, job_id: str) -> Iterator[dict[str, Any]]:
    after = -1
    while True:
        page = result_records(db, job_id, after, PAGE)
        for position, record in page:
            yield {"index": position, **record}
        if len(page) < PAGE:
            return
        after = page[-1][0]


def jsonl_chunks(db: Database, job_id: str) -> Iterator[bytes]:
    lines: list[str] = []
    for record in records(db, job_id):
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if len(lines) >= PAGE:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


def write_parquet(db: Database, job_id: str, manifest: Manifest) -> Path:
    """A temporary Parquet file of the job's records (the caller removes it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "double": pa.float64(), "bool": pa.bool_(), "int": pa.int64()}
    columns = record_columns(manifest) | DECISION_COLUMNS
    schema = pa.schema([("index", pa.int64())] + [(n, types[t]) for n, t in columns.items()])
    handle, name = tempfile.mkstemp(prefix="memotion-job-", suffix=".parquet")
    os.close(handle)
    path = Path(name)
    try:
        with pq.ParquetWriter(path, schema) as writer:
            page: list[dict[str, Any]] = []
            for record in records(db, job_id):
                flat = record | decision_fields(record)
                page.append({column: flat.get(column) for column in schema.names})
                if len(page) >= PAGE:
                    writer.write_table(pa.Table.from_pylist(page, schema=schema))
                    page = []
            writer.write_table(pa.Table.from_pylist(page, schema=schema))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
