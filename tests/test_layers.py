"""The package's layering holds: imports point one way (import-linter contract in pyproject.toml), and no
module imports the project's own code inside a function (where a cycle or an upward import would hide)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tanet_lightning"


def test_import_layers_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports (import-linter) is not installed: pip install -e .[dev]")
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _function_level_own_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                own = node.level > 0 or (node.module or "").startswith("tanet_lightning")
            else:
                own = isinstance(node, ast.Import) and any(a.name.startswith("tanet_lightning") for a in node.names)
            if own:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_function_level_imports_of_the_project():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _function_level_own_imports(path)]
    assert not found, "the project's own modules imported inside functions (move to the top):\n" + "\n".join(found)
