"""The import direction of the packages (docs/architecture.md): the contract ``memotion/`` at the
bottom, the gateway ``service/`` and ``training/`` on it and never on each other, the CLI
``memotion_cli/`` on top; inside the gateway core < store < text < inference < access < moderation < api = jobs =
scoring < the entry points (launchers, and the modules right under service/: cli, server, ...).

Every ``import`` in every module counts, lazy ones inside functions too, and so does
``importlib.import_module("...")`` with a literal name. A failure lists each offending file:line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("memotion", "memotion_cli", "service", "training")

# Between the top packages: who may not import whom. memotion_cli may import them all.
FORBIDDEN = {
    "memotion": {"memotion_cli", "service", "training"},
    "service": {"memotion_cli", "training"},
    "training": {"memotion_cli", "service"},
}
# Inside the gateway: a subpackage imports only subpackages of lower or equal rank.
# store (the database: engine, tables, migrations) needs only core; moderation (policies, the review
# queue) works on the store; the API layer uses both. jobs (async jobs: routes, worker) sits beside api
# (it runs api's batch code, app starts its worker), and scoring (the batch scorer it runs) with them.
SERVICE_RANK = {
    "core": 0,
    "store": 1,
    "text": 2,
    "inference": 3,
    "access": 4,
    "moderation": 5,
    "api": 6,
    "jobs": 6,
    "scoring": 6,
}
ENTRY_RANK = 7  # launchers/ and the modules right under service/ (cli, server, ...)


@dataclass(frozen=True)
class Import:
    source: Path  # relative to the repository root
    line: int
    module: str  # absolute dotted name

    def __str__(self) -> str:
        return f"{self.source.as_posix()}:{self.line} imports {self.module}"

    @property
    def package(self) -> str:
        return self.source.parts[0]

    @property
    def target(self) -> str:
        return self.module.split(".", 1)[0]


def _module_name(source: Path) -> list[str]:
    parts = list(source.with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _resolve(source: Path, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import``, relative levels resolved against ``source``."""
    if node.level == 0:
        return node.module or ""
    package = _module_name(source) if source.name == "__init__.py" else _module_name(source)[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )


def imports_in(code: str, source: Path) -> Iterator[Import]:
    """Every import in ``code`` (the module at ``source``, relative to the root), at any depth."""
    for node in ast.walk(ast.parse(code, filename=str(source))):
        if isinstance(node, ast.Import):
            yield from (Import(source, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(source, node)
            yield Import(source, node.lineno, module)
            # ``from service import api`` imports service.api: each name may be a submodule.
            yield from (Import(source, node.lineno, f"{module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield Import(source, node.lineno, first.value)


def all_imports() -> list[Import]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found.extend(imports_in(path.read_text(encoding="utf-8"), path.relative_to(ROOT)))
    return found


def _service_part(dotted: str) -> str:
    """``service.api.app`` -> ``api``; ``service.cli`` -> ``cli``; ``service`` -> ``""``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_in_gateway(imp: Import) -> bool:
    """A service subpackage importing a higher one (or core importing any other part)."""
    if imp.package != "service" or imp.target != "service" or len(imp.source.parts) < 3:
        return False  # modules right under service/ are entry points: they may import any part
    own, target = imp.source.parts[1], _service_part(imp.module)
    if not target or target == own:
        return False
    if own == "core":
        return True
    return SERVICE_RANK.get(target, ENTRY_RANK) > SERVICE_RANK.get(own, ENTRY_RANK)


def violations(imports: Iterable[Import]) -> dict[str, list[Import]]:
    """Offending imports per rule (only rules with offences)."""
    rules = {
        "against the direction contract <- service, training <- memotion_cli": lambda i: (
            i.target in FORBIDDEN.get(i.package, set())
        ),
        "memotion_cli is the top: only memotion_cli imports it": lambda i: (
            i.target == "memotion_cli" and i.package != "memotion_cli"
        ),
        "gateway upwards (core < store < text < inference < access < moderation < api = jobs = scoring < entry)": (
            upward_in_gateway
        ),
    }
    found = {rule: [i for i in imports if check(i)] for rule, check in rules.items()}
    return {rule: bad for rule, bad in found.items() if bad}


def report(found: dict[str, list[Import]]) -> str:
    return "\n".join(f"imports {rule}:\n  " + "\n  ".join(sorted({str(i) for i in bad})) for rule, bad in found.items())


def test_the_packages_import_in_one_direction() -> None:
    imports = all_imports()
    assert {i.package for i in imports} == set(PACKAGES)  # the scan sees every package
    found = violations(imports)
    assert not found, report(found)


def test_the_scan_catches_lazy_relative_and_dynamic_imports() -> None:
    code = (
        "import importlib\n"
        "from . import thresholds\n"
        "from ..api import app\n"
        "def later():\n"
        "    import training.trainer\n"
        "    return importlib.import_module('memotion_cli.main')\n"
    )
    imports = list(imports_in(code, Path("service/inference/probe.py")))
    modules = {i.module for i in imports}
    assert {"service.inference.thresholds", "service.api.app", "training.trainer", "memotion_cli.main"} <= modules
    found = violations(imports)
    assert len(found) == 3, report(found)
    assert "service/inference/probe.py:5 imports training.trainer" in report(found)


def test_core_may_import_no_other_part_of_the_gateway() -> None:
    imports = list(imports_in("from service.text import cleaning\n", Path("service/core/probe.py")))
    assert [str(i) for bad in violations(imports).values() for i in bad] == [
        "service/core/probe.py:1 imports service.text",
        "service/core/probe.py:1 imports service.text.cleaning",
    ]
