"""docs/architecture.md's folder map and README's "The parts" match the packages in the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("memotion", "memotion_cli", "service", "training")


def package_folders() -> set[str]:
    """Every folder below the top packages that holds Python modules or configs (no caches, no assets)."""
    found = set()
    for top in TOP_PACKAGES:
        for folder in [ROOT / top, *(ROOT / top).rglob("*")]:
            if not folder.is_dir() or "__pycache__" in folder.parts or "static" in folder.parts:
                continue
            if any(folder.glob("*.py")) or any(folder.glob("*.json")):
                found.add(folder.relative_to(ROOT).as_posix() + "/")
    return found


def mapped_folders(text: str) -> set[str]:
    """The folder paths at the start of the lines of the map's code block."""
    block = text.split("<!-- folder-map", 1)[1].split("```", 2)[1]
    return {m.group(1) for m in re.finditer(r"^([a-z_]+(?:/[a-z_]+)*/)\s", block, re.MULTILINE)}


def test_the_architecture_folder_map_lists_every_package_and_nothing_else() -> None:
    mapped = mapped_folders((ROOT / "docs/architecture.md").read_text())
    actual = package_folders()
    assert mapped - actual == set(), f"docs/architecture.md maps folders that do not exist: {sorted(mapped - actual)}"
    assert actual - mapped == set(), f"docs/architecture.md misses folders: {sorted(actual - mapped)}"


def test_the_module_paths_named_in_the_architecture_page_exist() -> None:
    text = (ROOT / "docs/architecture.md").read_text()
    named = set(re.findall(r"\b((?:memotion|memotion_cli|service|training)/[\w/]+\.py)\b", text))
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert named and missing == [], f"docs/architecture.md names files that do not exist: {missing}"


def test_readme_parts_name_the_top_level_folders() -> None:
    parts = (ROOT / "README.md").read_text().split("## The parts", 1)[1].split("```", 2)[1]
    listed = {
        name
        for line in re.findall(r"^((?:[a-z0-9_]+/,? )+)", parts, re.MULTILINE)
        for name in re.findall(r"([a-z0-9_]+)/", line)
    }
    for top in (*TOP_PACKAGES, "tests", "bench", "docs", "docker", "k8s", "model_repository"):
        assert top in listed, f"README's 'The parts' does not list {top}/"


def test_relative_links_in_the_readme_and_docs_point_inside_the_repository() -> None:
    """A newcomer's clone has only the repository: every relative markdown link must resolve in it."""
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.exists() or ROOT not in resolved.parents:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == [], f"links that do not resolve inside the repository: {broken}"
