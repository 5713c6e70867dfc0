"""The causal-LM task's figures as metric specs: how each is named, read and shown (metrics/spec.py's registry).

The table (results.md), report.html, results.csv, the verdicts and `verify` read these; the per-split figures
(probability, loss, ROUGE-L, truth ratio) are declared once per split.
"""
from __future__ import annotations

from ...registry import CAUSAL_LM
from ..spec import CLOSEST, COST, FIGURE1, HIGHER, LOWER, ROW, MetricSpec, register_metric

LM = (CAUSAL_LM,)
SPLITS = {"forget": "forget", "retain": "retain", "holdout": "holdout"}


def _per_split() -> list[MetricSpec]:
    out = []
    for split in SPLITS:
        shown = split == "forget"
        out += [
            MetricSpec(f"{split}_prob", f"P(answer) {split}", unit="", best=CLOSEST if shown else None,
                       section=FIGURE1 if shown else ROW, digits=3, tasks=LM,
                       description=f"exp(-mean answer-token NLL) on the {split} set (TOFU)"),
            MetricSpec(f"{split}_loss", f"Answer NLL {split}", unit="", best=None, digits=3, tasks=LM),
            MetricSpec(f"{split}_rouge_l", f"ROUGE-L {split}", unit="", best=CLOSEST if shown else HIGHER,
                       section=FIGURE1 if split != "holdout" else ROW, digits=3, tasks=LM),
            MetricSpec(f"{split}_truth_ratio", f"Truth ratio {split}", unit="", best=None, digits=3, tasks=LM),
        ]
    return out


SPECS = (
    MetricSpec("forget_quality", "Forget quality (KS p)", unit="", best=HIGHER, section=FIGURE1, digits=3,
               against_retrain=True, tasks=LM,
               description="TOFU: KS test p of the forget set's truth ratios against Retrain's"),
    MetricSpec("model_utility", "Model utility", unit="", best=HIGHER, section=FIGURE1, digits=3, tasks=LM,
               description="TOFU: harmonic mean of probability, ROUGE-L and truth-ratio score on the retain, "
                           "real-author and world-fact sets (tofu:DIR data)"),
    MetricSpec("retain_utility", "Retain utility", unit="", best=HIGHER, section=FIGURE1, digits=3, tasks=LM,
               description="harmonic mean of the retain set's probability, ROUGE-L and truth-ratio score"),
    *_per_split(),
    *(MetricSpec(f"forget_{kind}_{form}", f"{label} forget, {name}", unit="", digits=3, tasks=LM)
      for form, name in (("cue", "plain cue"), ("bare", "bare question"), ("chat", "chat template"),
                         ("question", "paraphrased question"))
      for kind, label in (("prob", "P(answer)"), ("rouge_l", "ROUGE-L"))),
    MetricSpec("forget_prob_worst", "P(answer) forget, any way of asking", unit="", best=CLOSEST, digits=3,
               tasks=LM, description="the highest over the run's prompt format, other formats and paraphrased "
                                     "questions"),
    MetricSpec("forget_rouge_l_worst", "ROUGE-L forget, any way", unit="", best=CLOSEST, section=FIGURE1,
               digits=3, tasks=LM, description="the highest ROUGE-L over every way of asking"),
    MetricSpec("relearn_prob", "P(answer) after relearning", unit="", best=CLOSEST, section=FIGURE1, digits=3,
               tasks=LM, description="the forget set's other half after finetuning on one half (the relearning "
                                     "attack)"),
    MetricSpec("relearn_rouge_l", "ROUGE-L after relearning", unit="", digits=3, tasks=LM),
    MetricSpec("relearn_gain", "Relearning gain", unit="", digits=3, tasks=LM,
               description="how much the attack raised the other half's P(answer)"),
    MetricSpec("mia_min_k_auc", "MIA AUC (Min-K %)", unit="", best=CLOSEST, section=FIGURE1, digits=3, tasks=LM,
               description="Min-K % attack, forget (members) against holdout"),
    MetricSpec("mia_min_k_plus_plus_auc", "MIA AUC (Min-K %++)", unit="", digits=3, tasks=LM),
    MetricSpec("mia_loss_auc", "MIA AUC (loss)", unit="", digits=3, tasks=LM),
    MetricSpec("mia_zlib_auc", "MIA AUC (zlib)", unit="", digits=3, tasks=LM),
    MetricSpec("privleak", "PrivLeak %", unit="%", best=CLOSEST, section=FIGURE1, digits=1, against_retrain=True,
               tasks=LM, description="MUSE: the Min-K % AUC's distance from Retrain's"),
    MetricSpec("sec_per_step", "s / step", unit="s", best=LOWER, section=COST, digits=4, tasks=LM),
)

register_metric(*SPECS)
