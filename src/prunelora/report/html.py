"""report.html: one self-contained page (no network, images inlined as PNG data: URIs) of a run.

The page is assembled in page.py from the shared tables (grid.py, html_tables.py), the figures
(figures.py, plots.py) and the stylesheet (style.py); this module writes it.

    python -m prunelora.report.html OUT_DIR      # (re)writes OUT_DIR/report.html from results.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import storage
from .html_tables import results_table
from .page import render_html

__all__ = ["main", "render_html", "results_table", "write_html_report"]


def write_html_report(results: dict, out: Path) -> Path:
    """Write out/report.html atomically and return its path."""
    out = Path(out)
    path = out / "report.html"
    page = render_html(results, out)
    with storage.atomic_path(path, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m prunelora.report.html OUT_DIR   (the folder holding results.json)", file=sys.stderr)
        return 2
    out = Path(args[0])
    print(write_html_report(json.loads((out / "results.json").read_text()), out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
