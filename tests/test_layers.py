"""The package's layering holds: import-linter's contracts (pyproject.toml) pass, and they catch a cycle when one
is added; no module imports another module's private names."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "prunelora"
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))

needs_linter = pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is not installed")


def lint(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports with the project's contracts on the package under src/ (a copy, or the real one)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([LINT, str(cwd / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@needs_linter
def test_the_contracts_hold():
    result = lint(ROOT / "src", ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " 0 broken" in result.stdout


@needs_linter
def test_a_cycle_hidden_in_a_function_is_caught(tmp_path):
    """storage sits at the bottom and cli on top: a function-level import of cli from storage closes a cycle."""
    shutil.copytree(PACKAGE, tmp_path / "src" / "prunelora", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    storage = tmp_path / "src" / "prunelora" / "storage.py"
    storage.write_text(storage.read_text() + "\n\ndef _uses_the_cli():\n    from . import cli\n\n    return cli\n")
    result = lint(tmp_path / "src", tmp_path)
    assert result.returncode != 0
    assert "prunelora.storage -> prunelora.cli" in result.stdout


def private_imports(path: Path) -> list[str]:
    """`from prunelora.x import _name` (absolute or relative) in one file, as 'file: module._name' strings."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            inside = node.level > 0 or (node.module or "").startswith("prunelora")
            for alias in node.names:
                if inside and alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}: {'.' * node.level}{node.module or ''}.{alias.name}")
    return found


def test_no_module_imports_another_modules_private_names():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in private_imports(path)]
    assert not found, "\n".join(found)
