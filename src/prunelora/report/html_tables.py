"""report.html's tables: the grid (grid.py) that results.md renders too, in HTML with the best cells
marked, and the membership attacks beside their attackers' accuracy."""
from __future__ import annotations

from html import escape
from typing import Any

from ..metrics.attacks import attacks_in
from ..metrics.finite import finite
from ..metrics.spec import FIGURE1, METRICS, MetricSpec
from .basics import (
    INCONCLUSIVE,
    budgets_of,
    fmt,
    inconclusive,
    longest,
    method_label,
    method_rank,
    methods_of,
    models_of,
)
from .grid import Cell, at_budget, cell, evidence_columns, figure1_columns, figure1_rows
from .markup import para, tag
from .tables import costlier_note, evidence_caption, gap_note, inconclusive_note, memory_note


def cell_html(c: Cell) -> str:
    """The cell's text, escaped, with a "± std" part on its own smaller line (keeps wide tables narrow);
    an MIA value whose attacker was not clearly above chance reads "inconclusive", its value below it."""
    text = escape(c.mean) + (f'<span class="sd"> ± {escape(c.std)}</span>' if c.std else "")
    return f'{INCONCLUSIVE}<span class="sd">({text})</span>' if c.inconclusive else text


def _inconclusive_title(row: dict) -> str:
    n = row.get("mia_holdout_n")
    on = f" on {int(n)} held-out samples per draw" if finite(n) else " on held-out samples"
    return f"inconclusive: the 95 % interval of the attacker's accuracy{on} includes chance (50 %)"


def td(row: dict | None, c: Cell, key: str, **attrs: Any) -> str:
    """A numeric cell: bold and shaded when best, marked inconclusive (with a title) when its MIA attacker is."""
    text, classes = cell_html(c), ["num"]
    if c.best:
        text, classes = f"<strong>{text}</strong>", classes + ["best"]
    if c.inconclusive:
        classes.append("inconclusive")
        attrs["title"] = _inconclusive_title(row)
    elif key == "avg_gap" and row and isinstance(row.get("avg_gap_metrics"), list):
        attrs["title"] = "mean |difference from Retrain| over " + ", ".join(row["avg_gap_metrics"])
    return tag("td", text, class_=" ".join(classes), **attrs)


def results_table(rows: list[dict]) -> str:
    """The Figure 1 table (grid.figure1_columns): a column group per metric over the budgets, best marked."""
    budgets = budgets_of(rows) or [None]
    columns = figure1_columns(budgets)
    groups = [c for c in columns if c.budget == budgets[0] and c.spec.section == FIGURE1]
    singles = [c for c in columns if c.spec.section != FIGURE1]
    ep = [f"{b} ep" if b is not None else "" for b in budgets]
    head1 = tag("th", "Method", rowspan=2) + "".join(
        tag("th", escape(c.spec.label), colspan=len(budgets)) for c in groups) + "".join(
        tag("th", escape(c.spec.label), rowspan=2) for c in singles)
    head2 = "".join(tag("th", escape(e)) for _ in groups for e in ep)
    bodies = []
    for model in models_of(rows):
        mine = [r for r in rows if r["model"] == model]
        desc = next((r.get("model_desc") for r in mine if r.get("model_desc")), model)
        lines = [tag("tr", tag("th", escape(str(desc)), colspan=1 + len(columns)), class_="model")]
        for method, cells in figure1_rows(mine, columns, roomy=True):
            shown = [at_budget(mine, method, c.budget) if c.spec.section == FIGURE1 else longest(mine, model, method)
                     for c in columns]
            tds = [td(r, c, col.spec.key, data_col=col.id) for r, c, col in zip(shown, cells, columns)]
            lines.append(tag("tr", tag("th", escape(method_label(method)), scope="row") + "".join(tds),
                             data_model=model, data_method=method))
        bodies.append(tag("tbody", "".join(lines)))
    has_gap = any(finite(r.get("avg_gap")) for r in rows)
    has_cost = any(finite(r.get("cost_vs_retrain")) for r in rows)
    caption = _results_caption(rows, has_gap, has_cost)
    return tag("table", tag("caption", escape(caption)) + tag("thead", tag("tr", head1) + tag("tr", head2))
               + "".join(bodies), class_="results")


def _results_caption(rows: list[dict], has_gap: bool, has_cost: bool) -> str:
    """What the results table shows and how its best cells were chosen (the rule differs per column)."""
    aggregated = any(r.get("seed", 0) is None for r in rows)
    return ("Rows: methods per model; UA, MIA-Efficacy, RA and TA in percent at each unlearning budget "
            "(Original and Retrain run their own recipe and are repeated in every budget column). "
            "RTE, total time, peak memory" + (" and cost vs Retrain" if has_cost else "") +
            " are those of the longest budget. "
            + ("Cells show mean ± sample std over seeds. " if aggregated else "")
            + "Best per column (bold, shaded): for UA, MIA-Efficacy, RA and TA the value closest to Retrain's "
            "(absolute difference; Retrain is exact unlearning, so a value above it is no better than one "
            "below it); lowest RTE, total time, peak memory" + (", avg gap" if has_gap else "")
            + (", cost vs Retrain" if has_cost else "") + "; compared at the shown precision, all tied values "
            "marked, nothing marked when every candidate ties, fewer than two compete, or (UA, MIA-Efficacy, "
            "RA, TA) no Retrain row ran. Original never competes; Retrain is the reference and does not "
            "compete on the accuracy columns" + (" or on avg gap / cost vs Retrain" if has_gap or has_cost else "")
            + "." + (" An inconclusive MIA-Efficacy never competes, nor does any in a column whose Retrain "
                     "value is inconclusive." if any(inconclusive(r, "mia_efficacy") for r in rows) else "")
            + (f" {gap_note(rows).replace('Gap', 'Avg gap', 1)}" if has_gap else "")
            + f" Peak memory: {memory_note(rows)}.")


def table_notes(rows: list[dict]) -> str:
    """What "inconclusive" means, as a visible paragraph under the table (empty when no value is)."""
    note, costlier = inconclusive_note(rows), costlier_note(rows)
    return ((para(note, "note inconclusive-note") if note else "")
            + (para(costlier, "note costlier-note") if costlier else ""))


def attack_table(rows: list[dict]) -> str:
    attacks = attacks_in(rows)
    head1 = tag("th", "Model", rowspan=2) + tag("th", "Method", rowspan=2) + tag("th", "Epochs", rowspan=2) + "".join(
        tag("th", escape(a.label), colspan=2) for a in attacks)
    head2 = "".join(tag("th", "efficacy %") + tag("th", "attacker acc %") for _ in attacks)
    body = []
    ordered = sorted(rows, key=lambda r: (models_of(rows).index(r["model"]), method_rank(r["method"]), r["epochs"] or 0))
    for r in ordered:
        cells = [tag("td", escape(str(r["model"]))), tag("th", escape(method_label(r["method"])), scope="row"),
                 tag("td", escape("-" if r["epochs"] is None else str(r["epochs"])), class_="num")]
        for a in attacks:
            cells.append(td(r, _attack_cell(r, a.efficacy), a.efficacy))
            cells.append(tag("td", cell_html(_attack_cell(r, a.acc)), class_="num"))
        body.append(tag("tr", "".join(cells)))
    caption = ("Each attack's MIA-Efficacy (% of forget-train samples it calls non-members) beside the attacker's "
               "own accuracy at telling retain-train from test-retain on held-out shadow samples, mean over its "
               "shadow draws: an efficacy from an attacker near 50% accuracy says little about what the model "
               "remembers" + ("; inconclusive marks an efficacy whose attacker's accuracy interval includes chance, "
                              "which is no evidence either way." if any(inconclusive(r, a.efficacy) for r in rows
                                                                         for a in attacks) else "."))
    return tag("table", tag("caption", escape(caption)) + tag("thead", tag("tr", head1) + tag("tr", head2))
                + tag("tbody", "".join(body)), class_="attacks")


def _attack_cell(row: dict, key: str) -> Cell:
    """An attack's efficacy or attacker accuracy (2 decimals; the suite's keys beyond the paper's have no spec)."""
    return cell(row, METRICS.get(key) or MetricSpec(key, key))


def evidence_html(rows: list[dict]) -> str:
    """The evidence table (grid.evidence_columns, each method at its longest budget), or "" without evidence."""
    columns = evidence_columns(rows)
    if not columns:
        return ""
    head = tag("tr", "".join(tag("th", escape(h)) for h in ["Model", "Method", "Epochs", *(c.header for c in columns)]))
    body = []
    for model in models_of(rows):
        for method in methods_of([r for r in rows if r["model"] == model]):
            r = longest(rows, model, method)
            cells = [tag("td", escape(model)), tag("th", escape(method_label(method)), scope="row"),
                     tag("td", escape(fmt(r["epochs"])), class_="num")]
            for col in columns:
                c = cell(r, col.spec)
                cells.append(tag("td", escape(c.text), class_=None if col.spec.text else "num", title=c.title))
            body.append(tag("tr", "".join(cells)))
    return tag("table", tag("caption", escape(evidence_caption(rows))) + tag("thead", head)
               + tag("tbody", "".join(body)), class_="evidence")
