"""report.html's page: the run's configuration and environment, then every table and figure, in order.

It shows the paper's Figure 1 table with the best value per column marked (for UA, MIA-Efficacy, RA,
TA: the one closest to Retrain) and MIA values whose attacker was not clearly above chance marked
inconclusive, the Figure 2 loss histograms, a bar chart per metric, avg_gap against cost_vs_retrain,
the evidence beyond the outputs and every membership attack beside its attacker's accuracy. Every
piece of text goes through html.escape.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from ..metrics.attacks import attacks_in
from ..metrics.finite import finite
from .answer import answers
from .basics import display_rows, method_label, methods_of, models_of, request_heading, requests_of_rows
from .figures import figure_block, figure_data_uri, figure_html, gap_cost_figure, metric_bars_figure, png_data_uri
from .html_tables import attack_table, evidence_html, results_table, table_notes
from .markup import kv_table, para, plain, section, tag
from .plots import figure2_rows, histogram_file, loss_histogram_figure
from .search import search_html
from .style import CSS
from .tables import published_rows, run_warnings, settings_rows


def config_pairs(config: dict, data_sizes: dict | None = None) -> list[tuple[str, Any]]:
    """The main configuration fields; the splits' real sizes (when the run recorded them) beside the caps asked for."""
    data, pre, un = config.get("data", {}), config.get("pretrain", {}), config.get("unlearn", {})
    args = config.get("model_args", {})
    models = [f"{m} ({plain(args[m])})" if args.get(m) else m for m in config.get("models", [])]
    pairs = [("preset", config.get("preset")), ("dataset", data.get("dataset")),
             ("forget request", forget_description(data, {})),
             *_size_pairs(data, data_sizes),
             ("models", models), ("methods", config.get("methods")), ("seeds", config.get("seeds")),
             ("pretrain epochs", pre.get("epochs")), ("unlearn epochs (budgets)", un.get("epochs")),
             ("unlearn optimizer / lr", f"{plain(un.get('optimizer'))} / {plain(un.get('lr'))}"),
             ("unlearn batch size", un.get("batch_size")),
             ("prune amount / mode", f"{plain(un.get('prune_amount'))} / {plain(un.get('prune_mode'))}"),
             ("keep sparsity", un.get("keep_sparsity")),
             ("LoRA r / alpha / dropout",
              " / ".join(plain(un.get(k)) if un.get(k) is not None else "default"
                         for k in ("lora_r", "lora_alpha", "lora_dropout"))),
             ("device / precision", f"{plain(config.get('device'))} / {plain(config.get('precision'))}"),
             ("MIA shadow cap per side", config.get("mia_max_per_side")),
             ("method settings", plain(config.get("method_args")) if config.get("method_args") else None)]
    return [(k, v) for k, v in pairs if v is not None]


def _size_pairs(data: dict, sizes: dict | None) -> list[tuple[str, Any]]:
    """Real split sizes first (the caps are upper bounds: a small dataset has fewer), then the caps."""
    caps = " / ".join("all" if data.get(k) is None else plain(data.get(k))
                      for k in ("train_per_class", "test_per_class"))
    pairs = [("caps per class, train / test", caps)]
    if sizes:
        real = " / ".join(plain(sizes.get(k)) for k in ("forget_train", "retain_train", "test_retain", "test_forget"))
        pairs.insert(0, ("samples: forget-train / retain-train / test-retain / test-forget", real))
    return pairs


def wall_time_text(results: dict) -> str | None:
    """Wall seconds, saying how much of them earlier invocations spent on stages this one reused."""
    if not finite(results.get("wall_sec")):
        return None
    text = f"{results['wall_sec']:.1f}"
    reused = results.get("reused") or {}
    if finite(reused.get("stages")) and reused["stages"] > 0:
        parts = [f"{reused['sec']:.1f} s reused" if finite(reused.get("sec")) else "partly reused",
                 f"from {int(reused['stages'])} finished stage{'s' if reused['stages'] != 1 else ''}"]
        own = results.get("elapsed_sec")
        text += f" ({' '.join(parts)}" + (f"; this invocation {own:.1f} s)" if finite(own) else ")")
    return text


def load_pairs(load: dict | None) -> list[tuple[str, Any]]:
    """The machine's load while the run was timed: how far its timings can be compared with others."""
    if not load:
        return []
    avg = [(f"load average at {when} (1 / 5 / 15 min)",
            " / ".join(f"{v:.2f}" for v in load[key] if finite(v)) if isinstance(load.get(key), list) else None)
           for when, key in (("start", "loadavg_start"), ("end", "loadavg_end"))]
    share = load.get("others_cpu_share")
    pairs = [("machine cores / threads used", f"{plain(load.get('cores'))} / {plain(load.get('threads'))}"), *avg,
             ("CPU share of other processes", f"{100 * share:.0f} %" if finite(share) else None),
             ("machine busy", None if load.get("busy") is None
              else "yes: timings not comparable" if load["busy"] else "no")]
    return [(k, v) for k, v in pairs if v is not None]


def warnings_html(results: dict) -> str:
    """The run's warnings (busy machine, mismatched checkpoint) as a box a reader cannot miss."""
    found = run_warnings(results)
    return tag("div", "".join(para("Warning: " + w) for w in found), class_="warning") if found else ""


def forget_description(data: dict, results: dict) -> str:
    """What was forgotten: a class, a random share, or a sequence of requests."""
    scenario = data.get("scenario", "class")
    if scenario == "random":
        return f"random {100 * (data.get('forget_ratio') or 0.1):g} % of the training set"
    if scenario == "named":
        described = {r.get("request_desc") for r in results.get("rows", []) if r.get("request_desc")}
        return "; ".join(sorted(described)) or "named samples"
    if scenario == "sequential":
        return "sequential requests: " + "; ".join(results.get("requests") or map(str, data.get("requests") or []))
    return f"forget class {data.get('forget_class', '?')}"


def render_html(results: dict, out: Path) -> str:
    """The page as a string; `out` is the run folder the rows' logits_file paths are relative to."""
    out = Path(out)
    all_rows = list(results.get("rows", []))
    every_request = display_rows(all_rows)
    requests = requests_of_rows(every_request)
    last = requests[-1]  # figures and attacks show the latest request; the table shows each
    rows = [r for r in every_request if r.get("request") == last]
    all_rows = [r for r in all_rows if r.get("request") == last]
    config, env = results.get("config", {}) or {}, results.get("environment", {}) or {}
    models = models_of(rows)
    data = config.get("data") or {}
    dataset = data.get("dataset", "?")
    title = f"prunelora report: {dataset}, {forget_description(data, results)}"
    n_seeds = max((r.get("n_seeds", 1) for r in rows if finite(r.get("n_seeds"))), default=1)

    env_pairs = list(env.items()) + [("seeds", config.get("seeds"))] + load_pairs(results.get("machine_load"))
    wall = wall_time_text(results)
    if wall:
        env_pairs.append(("wall time (s)", wall))
    run = section("Run",
                   tag("div", kv_table(config_pairs(config, results.get("data_sizes")), "Configuration (main fields)")
                        + kv_table(env_pairs, "Environment"), class_="side"),
                   tag("details", tag("summary", "Full configuration (JSON)")
                        + tag("pre", escape(json.dumps(config, indent=2, default=str)))))

    parts = [para("The paper's Figure 1: unlearning metrics and cost of every method"
                   + (f" (aggregated over {n_seeds} seeds)." if n_seeds > 1 else "."))]
    parts.append(warnings_html(results))
    for request in requests:
        mine = [r for r in every_request if r.get("request") == request]
        heading = request_heading(every_request, request)
        if heading:
            parts.append(tag("h3", escape(heading)))
        parts.append(tag("div", results_table(mine), class_="scroll") + table_notes(mine) if mine
                     else para("No result rows.", "note"))
    table = section("Results (Figure 1)", *parts)

    # Figure 2 needs per-sample logits: those of one seed (aggregated rows have none).
    seed, with_logits = figure2_rows(all_rows)
    hist_parts = []
    if not with_logits:
        hist_parts.append(para("No per-sample logits were saved with these rows, so no loss histograms.", "note"))
    for model in models:
        mine = [r for r in with_logits if r["model"] == model]
        if mine:
            drawn = histogram_file(out, model)  # plots/ holds it when write_results drew it just before
            img = (png_data_uri(drawn.read_bytes()) if drawn.is_file()
                   else figure_data_uri(loss_histogram_figure(mine, model, out)))
            hist_parts.append(figure_block(
                img, f"loss histograms, {model}",
                f"{model}, seed {seed}: per-sample cross-entropy of the forget-train samples against the "
                "test samples of the retained classes, one panel per method at its longest budget; forgetting "
                "shows as forget losses lying above (to the right of) test losses."))
    hists = section("Loss histograms (Figure 2)", *hist_parts)

    bars = section("Metrics per method", *[figure_html(
        metric_bars_figure(rows, model), f"metric bars, {model}",
        f"{model}: UA, MIA-Efficacy, RA, TA, run time per epoch and peak memory of each method at its longest "
        "budget" + (", with error bars of one standard deviation over seeds." if n_seeds > 1 else "."))
        for model in models])

    if any(finite(r.get("avg_gap")) and finite(r.get("cost_vs_retrain")) for r in rows):
        trade = figure_html(gap_cost_figure(rows), "avg gap against cost vs retrain",
                            "Each method row (one point per budget) placed by its total time relative to Retrain "
                            "(x) and its avg gap to Retrain as in the table (y): "
                            "the lower left is closest to exact unlearning for the least time.")
    else:
        trade = para("These rows carry no avg_gap / cost_vs_retrain (the gap to Retrain was not computed, "
                      "or no Retrain row ran), so the gap-against-cost plot is left out.", "note")
    tradeoff = section("Gap to Retrain against cost", trade)

    attacks = section("Membership attacks", tag("div", attack_table(rows), class_="scroll")) if attacks_in(rows) else ""
    compared = published_rows(results)
    published = section("Beside the published figures", para(escape(compared[0]) + ".", "note"), tag(
        "div", tag("table", tag("tr", "".join(tag("th", escape(h)) for h in compared[1])) + "".join(
            tag("tr", "".join(tag("td", escape(c)) for c in row)) for row in compared[2])), class_="scroll"),
        para("Where this run differs from the published setting: " + escape("; ".join(compared[3]) or "nowhere")
              + ".", "note")) if compared else ""
    head, settings = settings_rows(results)
    methods_run = section("Method settings", para(
        "Each method's settings as it ran (resolved from its defaults, the preset and the run's overrides).", "note"),
        tag("div", tag("table", tag("tr", "".join(tag("th", escape(h)) for h in head)) + "".join(
            tag("tr", "".join(tag("td", escape(c)) for c in row)) for row in settings)), class_="scroll")
    ) if settings else ""
    evidence = evidence_html(rows)
    evidence = section("Evidence beyond the outputs", tag("div", evidence, class_="scroll")) if evidence else ""

    answer = section("Answer", *[para(line) for line in answers(all_rows)]) if rows else ""
    searched = search_html(results)  # a search's answer and trials come first
    body = (tag("h1", escape(title))
            + para(f"Models: {', '.join(models) or '-'}; methods: "
                    f"{', '.join(method_label(m) for m in methods_of(rows)) or '-'}; preset {config.get('preset', '-')}."
                    " UA, MIA-Efficacy, RA, TA are percentages; the best unlearning is the one closest to "
                    "Retrain (exact unlearning), not the highest.", "note")
            + searched + answer + run + table + published + evidence + hists + bars + tradeoff + attacks + methods_run)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n")
