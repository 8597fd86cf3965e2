"""Every third-party module surgsim imports is declared in pyproject.toml, torch only in extras.

A module that arrives only as another package's dependency (click through ray, once) works in
the dev install and breaks a user's plain ``pip install .``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_distributions() -> dict[str, set[str]]:
    """distribution -> the surgsim files that import it (module or function level)."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (ROOT / "surgsim").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "surgsim" or top in sys.stdlib_module_names:
                    continue
                for dist in owners.get(top, [top]):
                    found.setdefault(dist.lower().replace("_", "-"), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    declared = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra in PYPROJECT["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    undeclared = {dist: files for dist, files in _imported_distributions().items() if dist not in declared}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_core_install_has_no_torch_or_training_stack():
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    assert not core & {"torch", "stable-baselines3", "tensorboard", "ray", "safetensors"}
    extras = PYPROJECT["optional-dependencies"]
    assert {"stable-baselines3", "torch", "tensorboard"} <= {_name(r) for r in extras["train"]}
    assert "torch" in {_name(r) for r in extras["predictor"]}
