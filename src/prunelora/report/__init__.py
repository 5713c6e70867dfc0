"""Writers for a run's results: tables, plots."""
from __future__ import annotations

from pathlib import Path

from .html import write_html_report
from .plots import loss_histograms
from .tables import csv_text, markdown_table, write_tables


def write_results(results: dict, out: Path) -> None:
    out = Path(out)
    write_tables(results, out)
    loss_histograms(results["rows"], out)
    write_html_report(results, out)


__all__ = ["csv_text", "write_html_report", "loss_histograms", "markdown_table", "write_results", "write_tables"]
