"""Tests that need an external tool (chromium, kustomize, hadolint ...) skip without it on a
developer's machine, but fail in CI (``CI`` set), where `.ci/run` installs every tool: a green CI
must not hide a missing install step."""

from __future__ import annotations

import os

import pytest


def tool_missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: see .ci/run and the Makefile)")
    pytest.skip(reason)
