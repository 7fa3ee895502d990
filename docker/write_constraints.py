"""Write the pip constraints file the images install with: the versions this environment tested.

    python docker/write_constraints.py serve batch > docker/gateway-constraints.txt

Reads `memotion[EXTRAS]`'s requirements from pyproject.toml, walks their installed dependency tree
(no network) and pins every distribution in it at the version installed here, so an image gets what the test
suite ran against. CUDA wheels
and ``triton`` (the GPU kernel compiler torch's CUDA build pulls in) are left out: the gateway image
installs torch's CPU build, which needs neither.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LEFT_OUT_PREFIXES = ("nvidia-", "cuda-")
LEFT_OUT = {"triton", "memotion"}
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def project_requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[Requirement]:
    """The project's own requirements with ``extras`` (memotion[...] self-references expanded)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    requirements, pending, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r}")
        for line in optional[extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == "memotion":
                pending += sorted(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def closure(requirements: list[Requirement]) -> dict[str, str]:
    """{canonical name: installed version} for ``requirements`` and everything they need."""
    pins: dict[str, str] = {}
    environment = default_environment()
    pending = [
        (r.name, tuple(sorted(r.extras)))
        for r in requirements
        if not r.marker or r.marker.evaluate({**environment, "extra": ""})
    ]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while pending:
        name, wanted = pending.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a dependency for another platform or Python
        pins[canonicalize_name(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            environments = [{**environment, "extra": e} for e in wanted or ("",)]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, tuple(sorted(requirement.extras))))
    return pins


def main(argv: list[str]) -> int:
    extras = argv[1:] or ["serve"]
    pins = closure(project_requirements(extras))
    print(f"# pip constraints for memotion[{','.join(extras)}]: the versions the tests ran with.")
    print("# Regenerate: python docker/write_constraints.py " + " ".join(extras))
    for name in sorted(pins):
        if name in LEFT_OUT or name.startswith(LEFT_OUT_PREFIXES):
            continue
        print(f"{name}=={pins[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
