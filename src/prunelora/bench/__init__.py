"""Speed and memory benchmark of the unlearning methods (`prunelora bench`): where the time and the memory go.

For each model and method (and prune mode) the harness runs the project's own pieces, never a
second training loop: the method's ``prepare`` builds the model, ``fit`` trains it on the retain
set (with the cached frozen prefix where the method allows it, as ``run_method`` does), and
``MemoryMeter`` watches prepare + fit. It reports

* seconds per unlearning epoch: the median of the timed epochs of ``History.epoch_seconds``,
  after the warm-up epochs (excluded); the one-off prefix pass is ``History.setup_seconds``;
* images per second: retain images / median seconds per epoch;
* peak memory of prepare + fit: CUDA's max allocated, or on the CPU the peak of live tensor bytes
  (metrics/tensor_memory.py), measured in a one-epoch run of its own so that its per-op bookkeeping
  never slows the timed epochs; beside it the resident-set growth of the timed run (``rss_growth_mb``);
* FLOPs per training image, counted by ``torch.utils.flop_counter.FlopCounterMode`` over one
  ``fit`` epoch on a single batch of a freshly prepared model, minus the FLOPs of building the
  prefix cache for that batch (reported apart, as a one-off cost per image);
* achieved FLOP/s (FLOPs per image x images per second), the machine's fp32 peak measured in the same
  run (the best of several matmul shapes and layouts and a convolution: machine.matmul_flops_per_sec),
  and their ratio (model FLOP utilisation), never above 100 %: a row that beats every kernel measured
  becomes the peak, and the table says so;
* the ratios of seconds per epoch and peak memory to finetune of the same model, in the same run.

FLOP counts are deterministic (they depend on shapes only); timings and memory are not, so final
numbers belong to a quiet machine. The original model is freshly initialised: the cost of an
unlearning epoch does not depend on what the weights hold.

Modules: options.py (the bench's own settings), flops.py (counting), measure.py (one variant),
columns.py (the row), report.py (bench.md), run.py (the whole benchmark).
"""
from .columns import COLUMNS
from .flops import flop_counter
from .measure import Variant, add_ratios, cap_utilisation, measure_variant, prunes
from .options import PRUNE_MODES, BenchOptions, paper_unlearning
from .report import markdown, peak_line, report
from .run import BENCH_FILE, DEFAULT_OUT, TABLE_FILE, check, model_args, run, run_from_flags

__all__ = ["BENCH_FILE", "COLUMNS", "DEFAULT_OUT", "PRUNE_MODES", "TABLE_FILE", "BenchOptions", "Variant",
           "add_ratios", "cap_utilisation", "check", "flop_counter", "markdown", "measure_variant", "model_args",
           "paper_unlearning", "peak_line", "prunes", "report", "run", "run_from_flags"]
