"""Where a job's memes come from: the request's own items (the batch body), or a server-side path
the deployment allows (``MEMOTION_JOBS_ALLOWED_PATHS``): a folder of images, a CSV/TSV/JSONL table
or a Memotion-format data set, read by :func:`service.scoring.local.discover_items`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from service.api.batch import BatchItem
from service.core.errors import ApiError
from service.jobs.store import JobInput
from service.scoring.local import ScoreItem, discover_items
from service.store.jobs_schema import ITEM_ID_CHARS
from service.text.unicode_gate import require_unicode, unicode_problem

OBJECT_STORE_SCHEMES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "http://", "https://", "file://")


def inline_inputs(items: Sequence[BatchItem]) -> list[JobInput]:
    """The job's items as stored: their text and image strings through the text gate first (the
    database holds no lone surrogate or NUL), a 422 naming the item's field."""
    for i, item in enumerate(items):
        for field, value in (("text", item.text), ("image", item.image)):
            if value is not None:
                require_unicode(value, f"items[{i}].{field}")
    return [JobInput(item.id if item.id is not None else str(i), item.image, item.text) for i, item in enumerate(items)]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def allowed_roots(configured: Sequence[Path]) -> list[Path]:
    return [Path(root).resolve() for root in configured]


def check_allowed(source: str, roots: Sequence[Path]) -> Path:
    """The resolved path of ``source`` (absolute, links followed) if it lies in an allowed folder."""
    if source.lower().startswith(OBJECT_STORE_SCHEMES):
        raise ApiError(422, "unsupported_source", "object-store and URL sources are not supported here; give a path")
    if not roots:
        raise ApiError(
            403, "source_not_allowed", "this gateway allows no server-side sources (MEMOTION_JOBS_ALLOWED_PATHS)"
        )
    if "\x00" in source or not source.startswith("/"):
        raise ApiError(422, "invalid_source", "source must be an absolute path")
    try:
        resolved = Path(source).resolve()
    except (OSError, RuntimeError, ValueError) as err:
        raise ApiError(422, "invalid_source", f"source cannot be resolved: {err}") from err
    if not _inside(resolved, roots):
        raise ApiError(403, "source_not_allowed", f"{source} is outside the folders this gateway allows")
    return resolved


def _check_text(item: ScoreItem) -> None:
    """The text gate for a found item's id, image path and text: they are stored in the database."""
    if len(item.id) > ITEM_ID_CHARS:
        raise ApiError(
            422,
            "invalid_source",
            f"item {item.id[:40]!r}...: its id has {len(item.id)} characters; at most {ITEM_ID_CHARS}",
        )
    for field, value in (("id", item.id), ("image", item.image), ("text", item.text)):
        problem = unicode_problem(value) if value is not None else None
        if problem is not None:
            raise ApiError(422, "invalid_source", f"item {item.id!r}: its {field} is not valid text ({problem})")


def path_inputs(source: str, configured_roots: Sequence[Path], max_items: int) -> list[JobInput]:
    """The memes found at ``source``; every image must lie in an allowed folder too (a table may name
    any file: one outside is refused as a whole, before anything is read)."""
    roots = allowed_roots(configured_roots)
    resolved = check_allowed(source, roots)
    try:
        found = discover_items(resolved)
    except FileNotFoundError as err:
        raise ApiError(422, "source_not_found", str(err)) from err
    except (ValueError, OSError, UnicodeError) as err:
        raise ApiError(422, "invalid_source", str(err)) from err
    if not found:
        raise ApiError(422, "empty_source", f"{source} holds no memes")
    if len(found) > max_items:
        raise ApiError(413, "too_many_items", f"{source} holds {len(found)} memes; a job may have at most {max_items}")
    inputs = []
    for item in found:
        _check_text(item)
        if item.image is not None and not _inside(Path(item.image).resolve(), roots):
            raise ApiError(403, "source_not_allowed", f"item {item.id!r} names an image outside the allowed folders")
        inputs.append(JobInput(item.id, item.image, item.text))
    return inputs
