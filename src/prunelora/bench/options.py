"""The benchmark's own settings (the run's, sizes and data, come from the RunConfig like every command's)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..methods import METHODS
from ..registry import IMAGE

BENCH = ("bench",)
PRUNE_MODES = ("mask", "remove")


def paper_unlearning() -> list[str]:
    """The paper's unlearning methods (every paradigm but Retrain), from the registry: bench's default."""
    return [m.name for m in METHODS.of(IMAGE).values() if m.paper and not m.exact]


@dataclass
class BenchOptions:
    """What is measured and how: each field with a flag is an option of `prunelora bench`."""

    methods: list[str] = field(default_factory=paper_unlearning, metadata={
        "help": "comma-separated retain-only methods", "flag": "--methods", "commands": BENCH,
        "group": "benchmark"})
    prune_modes: list[str] = field(default_factory=lambda: list(PRUNE_MODES), metadata={
        "help": "prune modes of the pruning methods", "flag": "--prune-modes", "commands": BENCH,
        "group": "benchmark"})
    timed_epochs: int = field(default=3, metadata={
        "help": "timed epochs, median reported (at least min_timed_epochs)", "flag": "--epochs",
        "commands": BENCH, "group": "benchmark"})
    min_timed_epochs: int = field(default=3, metadata={"help": "the fewest timed epochs a median is taken of"})
    warmup_epochs: int = field(default=1, metadata={
        "help": "untimed warm-up epochs", "flag": "--warmup-epochs", "commands": BENCH, "group": "benchmark"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the prepared model (failures are reported)", "flag": "--compile",
        "commands": BENCH, "group": "benchmark"})
    matmul_size: int = field(default=2048, metadata={
        "help": "side of the square matmuls of the fp32 peak (MFU reference)", "flag": "--matmul-size",
        "commands": BENCH, "group": "benchmark"})
    matmul_repeats: int = field(default=5, metadata={"help": "timed repeats of each peak kernel (median)"})
