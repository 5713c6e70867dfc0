"""MkDocs hook: the package layout on the design page, generated from the modules' own docstrings at build time.

docs/design.md holds the marker `<!-- package-layout -->`; this hook replaces it with a tree of src/prunelora,
each module or package beside the first sentence of its docstring, read with `ast` (nothing is imported), so
the page always shows the layout of the code it was built from.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

MARKER = "<!-- package-layout -->"
PACKAGE = Path(__file__).resolve().parents[2] / "src" / "prunelora"
WIDTH = 34  # the column where the summaries start


def summary(path: Path) -> str:
    """The first sentence of a module's docstring, on one line ("" without one)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z(])", first)[0].rstrip(".")


def tree(folder: Path, depth: int = 1) -> list[str]:
    lines = []
    for path in sorted(folder.iterdir(), key=lambda p: (p.is_dir(), p.name)):
        if path.name.startswith("__"):  # __init__.py (its package's line), __main__.py, __pycache__
            continue
        indent = "  " * depth
        if path.is_dir() and (path / "__init__.py").is_file():
            name = f"{indent}{path.name}/"
            lines.append(f"{name:<{WIDTH}} {summary(path / '__init__.py')}".rstrip())
            lines += tree(path, depth + 1)
        elif path.suffix == ".py":
            name = f"{indent}{path.name}"
            lines.append(f"{name:<{WIDTH}} {summary(path)}".rstrip())
    return lines


def package_layout() -> str:
    return "\n".join(["```text", "src/prunelora/", *tree(PACKAGE), "```"])


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, package_layout())
