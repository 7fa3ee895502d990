"""The tree stays lint-clean, formatted and type-checked: ``ruff check``, ``ruff format --check``
and ``mypy`` (configured in pyproject.toml: the contract ``memotion/`` and the gateway ``service/``),
run from the repository root with the binaries of the venv running the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tooling import tool_missing

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_tool(name: str, *args: str, timeout_s: float = 600) -> None:
    """Run ``BIN/name args`` in the repository root; fail with its output unless it exits 0."""
    binary = BIN / name
    if not binary.is_file():
        tool_missing(f"{binary} is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [str(binary), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"`{name} {' '.join(args)}` exited {done.returncode}:\n{done.stdout}{done.stderr}", pytrace=False)


def test_ruff_lint_is_clean() -> None:
    run_tool("ruff", "check", ".")


def test_ruff_format_is_clean() -> None:
    run_tool("ruff", "format", "--check", ".")


@pytest.mark.slow
def test_mypy_is_clean_on_the_contract_and_the_gateway() -> None:
    run_tool("mypy")
