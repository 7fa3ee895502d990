"""Write a model repository beside its target and move it into place only when it is complete.

``memotion export`` builds the whole repository (every member exported and checked against
PyTorch, OCR, Triton configs, manifest) in a hidden folder next to ``--out``; only then the old
repository (if any) is moved aside and the new one renamed into place, so a gateway or Triton
pointed at ``--out`` never sees a half-written repository, and a failed export leaves the old one
untouched. Top-level files that are not the export's own (a README, a .gitignore) are carried over.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MANIFEST_FILE = "manifest.json"


class RepositoryTargetError(RuntimeError):
    pass


def check_target(target: Path) -> None:
    """``target`` may be absent, a previous export (has manifest.json), or a folder of plain files."""
    if not target.exists():
        return
    if not target.is_dir():
        raise RepositoryTargetError(f"{target} exists and is not a folder")
    if (target / MANIFEST_FILE).is_file():
        return
    folders = sorted(p.name for p in target.iterdir() if p.is_dir())
    if folders:
        raise RepositoryTargetError(
            f"{target} is not a model repository (no {MANIFEST_FILE}) but holds folders {folders}; "
            "export would replace it: choose a new or empty --out"
        )


def carry_over(old: Path, new: Path) -> list[str]:
    """Copy ``old``'s top-level plain files that ``new`` lacks (not the manifest) into ``new``."""
    carried = []
    for path in sorted(old.iterdir()):
        if path.is_file() and path.name != MANIFEST_FILE and not (new / path.name).exists():
            shutil.copy2(path, new / path.name)
            carried.append(path.name)
    return carried


def swap_into_place(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; a previous ``target`` is moved aside first, then removed."""
    if not target.exists():
        staged.rename(target)
        return
    carry_over(target, staged)
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    retired.rmdir()
    target.rename(retired)
    try:
        staged.rename(target)
    except OSError:
        retired.rename(target)  # put the old repository back
        raise
    shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def staged_repository(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` to write into; swapped into place when the block succeeds,
    removed when it raises (``target`` is then as it was)."""
    target = Path(target)
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staged
        swap_into_place(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
