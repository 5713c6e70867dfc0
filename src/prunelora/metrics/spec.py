"""Every metric a results row carries, on either task, declared once: label, unit, what is best, format, where.

Rows, the gap to Retrain, the verdicts, results.md / results.csv, report.html, the adapters' model cards
and `verify` read this registry, so a metric's label or floor is changed here and nowhere else. Each spec
names the tasks whose rows carry it (the image task's here, the causal-LM task's in metrics/causal_lm/
specs.py; cost columns on both). Evidence beyond the paper's four metrics registers its own specs
(metrics/registry.py: `register`); they are appended, so a new metric shows up after the built-in ones in
every table.
"""
from __future__ import annotations

from dataclasses import dataclass

# The membership attacks' sample cap is a setting (RunConfig.mia_max_per_side): its default, declared there.
from ..config.schema import MIA_MAX_PER_SIDE as MIA_MAX_PER_SIDE
from ..registry import CAUSAL_LM, IMAGE

# What is best in a column: closest to Retrain (exact unlearning), lowest, highest, or nothing (shown only).
CLOSEST, LOWER, HIGHER = "closest to retrain", "lower", "higher"
# Where a metric is shown: the Figure 1 table (per budget), its cost columns (longest budget), the evidence
# table (longest budget), or the results files only.
FIGURE1, COST, EVIDENCE, ROW = "figure1", "cost", "evidence", "row"
# What the verdict reads a metric for (metrics/verdict.py): the forget accuracy (UA), utility (RA, TA), a
# membership attack compared with Retrain's, or evidence that hides the data when above / below Retrain's.
FORGET, UTILITY, MEMBERSHIP, HIDES_ABOVE, HIDES_BELOW = "forget", "utility", "membership", "hides above", "hides below"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how it is named, read and shown."""

    key: str  # the results row's key
    label: str  # column header in results.md and report.html
    unit: str = "%"  # "%", "steps", "s", "MB", "" (a count or a ratio)
    best: str | None = CLOSEST  # CLOSEST, LOWER, HIGHER, or None (never marked)
    section: str = ROW  # FIGURE1, COST, EVIDENCE or ROW
    digits: int = 2  # decimals shown (and compared at)
    integer: bool = False  # shown as a whole number
    adaptive: bool = False  # where room allows (report.html): more decimals for small values, 3 below 1, 2 below 10
    in_gap: bool = False  # averaged into avg_gap, |row - Retrain|
    floor: float | None = None  # the verdict's smallest tolerance (None: the verdict does not read it)
    verdict: str | None = None  # FORGET, UTILITY, MEMBERSHIP, HIDES_ABOVE, HIDES_BELOW
    reason: str = ""  # how a verdict reason names it (default: the label)
    description: str = ""  # the longer reading, for the model card: "UA (100 - forget-train accuracy)"
    card: bool = False  # listed in an adapter's model card
    chart: str = ""  # title of its panel in the report's bar chart ("": not drawn)
    against_retrain: bool = False  # measured against Retrain: Retrain is the reference, never a candidate for best
    conclusive: str | None = None  # row flag: the value is evidence only where this is True (both rows)
    censored: str | None = None  # row flag: False means the value is a cap not reached (shown "> value")
    detail: str | None = None  # row key shown in brackets after the value (a verdict's count per seed)
    note: str | None = None  # row key whose text explains the cell (report.html's title)
    text: bool = False  # a word, not a number
    tasks: tuple[str, ...] = (IMAGE,)  # the tasks whose rows carry it

    @property
    def card_label(self) -> str:
        return f"{self.label} ({self.description})" if self.description else self.label

    @property
    def reason_label(self) -> str:
        return self.reason or self.label


METRICS: dict[str, MetricSpec] = {}


def register_metric(*specs: MetricSpec) -> None:
    """Add specs at the end of the registry; a key already there must not be declared twice."""
    for spec in specs:
        if spec.key in METRICS and METRICS[spec.key] != spec:
            raise ValueError(f"metric {spec.key!r} is declared twice")
        METRICS[spec.key] = spec


def unregister_metric(*keys: str) -> None:
    for key in keys:
        METRICS.pop(key, None)


def spec_of(key: str) -> MetricSpec:
    return METRICS[key]


def specs(section: str | None = None, task: str = IMAGE, **flags) -> list[MetricSpec]:
    """The registered specs of `task` in a section (all when None), in registry order, whose fields equal
    `flags`."""
    return [s for s in METRICS.values() if task in s.tasks and (section is None or s.section == section)
            and all(getattr(s, k) == v for k, v in flags.items())]


def gap_keys() -> list[str]:
    """The metrics avg_gap averages (when none is left out): UA, MIA-Efficacy, RA, TA."""
    return [s.key for s in METRICS.values() if s.in_gap]


def verdict_specs(*roles: str) -> list[MetricSpec]:
    """The specs the verdict reads in these roles: in the order of `roles`, then registry order within each
    (a tuple of roles counts as one: its specs in registry order)."""
    groups = [role if isinstance(role, tuple) else (role,) for role in roles]
    return [s for group in groups for s in METRICS.values() if s.verdict in group]


HIDES = (HIDES_ABOVE, HIDES_BELOW)
VERDICT_ORDER = (FORGET, UTILITY, MEMBERSHIP, HIDES)  # what happened to the data, then what hides it


def floors() -> dict[str, float]:
    """Each verdict metric's smallest tolerance: UA, RA, TA, then the MIA, then the hiding evidence."""
    return {s.key: s.floor for s in verdict_specs(*VERDICT_ORDER) if s.floor is not None}


def joined(labels: list[str], last: str = " and ") -> str:
    """'UA, MIA-Efficacy, RA and TA'."""
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + last + labels[-1]


register_metric(
    # The paper's Figure 1 (the results contract): percent, closest to Retrain is best.
    MetricSpec("ua", "UA", section=FIGURE1, in_gap=True, floor=2.0, verdict=FORGET,
               description="100 - forget-train accuracy", card=True, chart="UA (%)"),
    MetricSpec("mia_efficacy", "MIA-Efficacy", section=FIGURE1, in_gap=True, floor=5.0, verdict=MEMBERSHIP,
               card=True, chart="MIA-Efficacy (%)", conclusive="mia_attack_conclusive"),
    MetricSpec("mia_attack_acc", "MIA attacker accuracy", best=None, description="50 = chance", card=True),
    MetricSpec("ra", "RA", section=FIGURE1, in_gap=True, floor=2.0, verdict=UTILITY,
               description="retain-train accuracy", card=True, chart="RA (%)"),
    MetricSpec("ta", "TA", section=FIGURE1, in_gap=True, floor=2.0, verdict=UTILITY,
               description="test accuracy, retained classes", card=True, chart="TA (%)"),
    MetricSpec("avg_gap", "Gap", unit="points", best=LOWER, section=FIGURE1, against_retrain=True),
    MetricSpec("forget_test_acc", "Forget-test accuracy", best=None),
    # Cost, at each method's longest budget.
    MetricSpec("sec_per_epoch", "RTE (s/epoch)", unit="s", best=LOWER, section=COST, digits=1, adaptive=True,
               chart="RTE (s/epoch)"),
    MetricSpec("total_sec", "Total (s)", unit="s", best=LOWER, section=COST, digits=1, adaptive=True),
    MetricSpec("cost_vs_retrain", "Cost vs retrain", unit="", best=LOWER, section=COST, against_retrain=True),
    MetricSpec("peak_memory_mb", "Peak mem (MB)", unit="MB", best=LOWER, section=COST, digits=0,
               chart="Peak memory (MB)", tasks=(IMAGE, CAUSAL_LM)),
    MetricSpec("trainable_params", "Trainable", unit="", best=None, section=COST, digits=0, integer=True,
               tasks=(IMAGE, CAUSAL_LM)),
    # The evidence beyond the outputs, at each method's longest budget.
    MetricSpec("verdict", "Verdict", unit="", best=None, section=EVIDENCE, text=True, detail="verdict_by_seed",
               note="verdict_reasons"),
    MetricSpec("tow", "ToW", unit="", best=None, section=EVIDENCE, digits=3),
    MetricSpec("probe_acc", "Probe on held-out test", best=None, digits=1),
    MetricSpec("probe_forget_acc", "Probe on forgotten (%)", best=None, section=EVIDENCE, digits=1, floor=5.0,
               verdict=HIDES_ABOVE, reason="probe on forgotten data"),
    MetricSpec("probe_forget_test_acc", "Probe on forgotten classes' test (%)", best=None, section=EVIDENCE,
               digits=1),
    MetricSpec("relearn_steps", "Relearn steps", unit="steps", best=None, section=EVIDENCE, digits=1, floor=1.0,
               verdict=HIDES_BELOW, reason="relearn steps", censored="relearn_reached"),
    MetricSpec("head_response", "Head response (%)", best=None, section=EVIDENCE, digits=1, floor=10.0,
               verdict=HIDES_BELOW, reason="forgotten classes' logit response"),
    MetricSpec("challenge_mia_acc", "Challenge MIA acc (%)", best=None, section=EVIDENCE, digits=1),
    MetricSpec("ulira_acc", "U-LiRA acc (%)", best=None, section=EVIDENCE, digits=1, floor=5.0,
               verdict=HIDES_ABOVE, reason="U-LiRA accuracy"),
    MetricSpec("ulira_auc", "U-LiRA AUC (%)", best=None, section=EVIDENCE, digits=1),
    MetricSpec("ulira_tpr_1fpr", "U-LiRA TPR@1%FPR", best=None, section=EVIDENCE, digits=1),
)
