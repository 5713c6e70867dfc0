"""results.md: inconclusive MIA values marked, what the Gap averages, the run's warnings, method order."""
from __future__ import annotations

from prunelora.config import RunConfig, to_dict
from prunelora.report.tables import markdown_table, write_tables

BUSY = {"cores": 2, "threads": 1, "loadavg_start": [2.0, 1.5, 1.0], "loadavg_end": [2.5, 2.0, 1.2],
        "others_cpu_share": 0.63, "busy": True}
MISMATCH = "the checkpoint forgot class 3 but this evaluation's forget class is 5"


def _row(method: str, epochs: int | None, mia: float, **extra) -> dict:
    row = {"model": "vit", "method": method, "epochs": epochs, "ua": 90.0, "mia_efficacy": mia, "ra": 80.0,
           "ta": 70.0, "avg_gap": 1.0, "mia_attack_acc": 55.0, "mia_loss_lr": 12.34, "mia_loss_lr_acc": 51.0,
           "sec_per_epoch": 1.0, "total_sec": 2.0, "cost_vs_retrain": 0.5, "peak_memory_mb": 10.0,
           "trainable_params": 100, "seed": 0}
    return {**row, **extra}


def new_rows() -> list[dict]:
    """Rows as the newer pipeline writes them: Finetune's default attacker and LoRA's loss attacker were at chance."""
    full = ["ua", "mia_efficacy", "ra", "ta"]
    return [_row("retrain", None, 40.0, mia_attack_conclusive=True, avg_gap=0.0, avg_gap_metrics=full),
            _row("finetune", 1, 41.0, mia_attack_conclusive=False, avg_gap_metrics=["ua", "ra", "ta"]),
            _row("lora", 1, 30.0, mia_attack_conclusive=True, avg_gap_metrics=full, mia_loss_lr_conclusive=False)]


def _line(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


def test_rows_alone_still_work_for_old_rows():
    rows = [{k: v for k, v in r.items() if "conclusive" not in k and k != "avg_gap_metrics"} for r in new_rows()]
    text = markdown_table(rows)
    assert "inconclusive" not in text and "Warning" not in text
    assert "Gap = mean |difference from Retrain| over UA, MIA-Efficacy, RA and TA." in text
    assert "closest to Retrain" in text


def test_inconclusive_mia_marked_with_its_note():
    text = markdown_table(new_rows())
    assert "| inconclusive (41.00) |" in _line(text, "Finetune")
    assert "| 30.00 |" in _line(text, "LoRA") and "inconclusive" not in _line(text, "LoRA")
    assert "MIA-Efficacy marked inconclusive: the attacker's accuracy on held-out" in text
    assert "left out of the Gap" in text
    assert "over UA, RA, TA for Finetune (vit, 1 ep)" in text


def test_an_aggregated_inconclusive_cell_keeps_its_spread():
    rows = [dict(r, seed=None, n_seeds=3, mia_efficacy_std=1.5) for r in new_rows()]
    assert "| inconclusive (41.00 ± 1.50) |" in _line(markdown_table(rows), "Finetune")


def test_attack_table_marks_each_inconclusive_attack():
    text = markdown_table(new_rows())
    attacks = text.split("Membership-inference attacks")[1]
    finetune, lora = _line(attacks, "vit | Finetune"), _line(attacks, "vit | LoRA")
    assert "| inconclusive (41.0) (55.0) |" in finetune and "| 12.3 (51.0) |" in finetune
    assert "| 30.0 (55.0) |" in lora and "| inconclusive (12.3) (51.0) |" in lora
    assert "interval on held-out samples includes chance" in attacks


def test_busy_machine_and_run_warnings_under_the_table():
    text = markdown_table(new_rows(), results={"machine_load": BUSY, "warnings": [MISMATCH]})
    assert ("**Warning:** Timings were taken on a busy machine (other processes used 63 % of the CPU time "
            "of its 2 cores") in text
    assert f"**Warning:** {MISMATCH}" in text
    assert text.index("**Warning:**") < text.index("Membership-inference attacks")
    assert text.index(_line(text, "LoRA")) < text.index("**Warning:**")


def test_idle_machine_not_warned():
    text = markdown_table(new_rows(), results={"machine_load": dict(BUSY, busy=False, others_cpu_share=0.0)})
    assert "busy machine" not in text and "Warning" not in text


def test_unknown_method_after_the_known_ones():
    rows = [_row("my-method", 1, 35.0)] + new_rows()
    labels = [line.split(" | ")[0][2:] for line in markdown_table(rows).splitlines()
              if line.startswith("| ") and not line.startswith(("| Method", "| Model", "| vit"))]
    assert labels == ["Retrain", "Finetune", "LoRA", "my-method"]


def test_write_tables_passes_the_results(tmp_path):
    results = {"config": to_dict(RunConfig()), "rows": new_rows(), "machine_load": BUSY, "warnings": [MISMATCH]}
    write_tables(results, tmp_path)
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "busy machine" in text and MISMATCH in text and "inconclusive (41.00)" in text


def test_evidence_table_gives_verdicts_and_tolerances():
    rows = new_rows()
    rows[0].update(verdict="matches Retrain", tow=1.0, probe_forget_acc=60.0, relearn_steps=12, relearn_reached=True,
                   verdict_tolerances="ua 2.0, probe_forget_acc 5.0")
    rows[1].update(verdict="hides", tow=0.98, probe_forget_acc=90.0, relearn_steps=50, relearn_reached=False)
    text = markdown_table(rows)
    evidence = text.split("Evidence beyond the outputs")[1].split("Membership-inference")[0]
    assert "| vit | Finetune | 1 | hides | 0.980 | 90.0 | > 50 |" in evidence
    assert "| vit | Retrain | - | matches Retrain | 1.000 | 60.0 | 12 |" in evidence
    assert "this run: ua 2.0, probe_forget_acc 5.0" in evidence


def test_a_method_that_costs_more_than_retraining_is_flagged_and_never_shipped_over_it():
    from prunelora.report.answer import answers
    from prunelora.report.html_tables import table_notes

    rows = [_row("retrain", None, 40.0, total_sec=10.0, cost_vs_retrain=1.0, verdict="matches Retrain"),
            _row("lora", 1, 40.0, total_sec=4.0, cost_vs_retrain=0.4, verdict="still recognised"),
            _row("lora", 2, 40.0, total_sec=13.0, cost_vs_retrain=1.3, verdict="matches Retrain"),
            _row("finetune", 1, 40.0, total_sec=5.0, cost_vs_retrain=0.5, verdict="still recognised")]
    text = markdown_table(rows)
    assert "Costs more than retraining (total time over Retrain's): LoRA (vit, 1.30x)" in text
    assert "Finetune (vit" not in text.split("Costs more than retraining")[1].split("\n")[0]
    assert "costlier-note" in table_notes(rows)
    (answer,) = answers(rows)
    assert answer.startswith("vit: ship Retrain")  # LoRA matches Retrain at 1.3x its cost: Retrain is cheaper
    cheap = [dict(r, total_sec=None, cost_vs_retrain=None) if r["method"] == "lora" else r for r in rows]
    assert answers(cheap)[0].startswith("vit: ship Retrain")  # an unmeasured cost is never shipped over Retrain
    assert "Costs more than retraining" not in markdown_table([r for r in rows if r["epochs"] != 2])
