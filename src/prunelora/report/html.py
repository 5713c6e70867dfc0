"""report.html: one self-contained page (no network, images inlined as PNG data: URIs) of a run.

The page is assembled in page.py from the shared tables (grid.py, html_tables.py), the figures
(figures.py, plots.py) and the stylesheet (style.py); this module writes it.

    python -m prunelora.report.html OUT_DIR      # (re)writes OUT_DIR/report.html from results.json
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from .. import run_folder, storage
from ..errors import UserError
from .html_tables import results_table
from .page import render_html

__all__ = ["main", "render_html", "results_table", "rewrite_main", "write_html_report"]


def write_html_report(results: dict, out: Path) -> Path:
    """Write out/report.html atomically and return its path."""
    out = Path(out)
    path = out / "report.html"
    page = render_html(results, out)
    with storage.atomic_path(path, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def rewrite_main(argv: list[str] | None, module: str, task: str | None,
                 write: Callable[[dict, Path], Path]) -> int:
    """`python -m MODULE OUT_DIR`: rewrite OUT_DIR's page from its results.json with `write`, for a run of `task`
    (results.json's "task"; None: an image-classification run, which has none). A wrong folder is one line on
    stderr and exit 2, nothing written. It writes as a run does (run_folder.rewriting): it replaces only a page the
    run wrote and nobody changed since, and records the new page in run.json; a page the user wrote or edited is
    refused (one line, exit 2)."""
    args = sys.argv[1:] if argv is None else argv
    usage = f"usage: python -m {module} OUT_DIR   (a run's folder, holding results.json)"
    if len(args) != 1:
        print(usage, file=sys.stderr)
        return 2
    out = Path(args[0])
    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError) as error:
        print(f"{out / 'results.json'}: cannot be read ({error.__class__.__name__}); {usage}", file=sys.stderr)
        return 2
    found = results.get("task") if isinstance(results, dict) else "unknown"
    if found != task:
        print(f"{out} holds a {found or 'image-classification'} run's results, not a {task or 'image-classification'} "
              f"run's", file=sys.stderr)
        return 2
    try:
        with run_folder.rewriting(out):
            print(write(results, out))
    except UserError as error:
        print(f"prunelora: error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return rewrite_main(argv, "prunelora.report.html", None, write_html_report)


if __name__ == "__main__":
    raise SystemExit(main())
