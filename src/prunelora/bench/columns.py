"""The benchmark's row: its columns, in table order, and how each is scaled for the table."""
from __future__ import annotations

BENCH_FILE = "bench.json"
TABLE_FILE = "bench.md"

# (key, Markdown header, digits); None values print as n/a, with the reason in the JSON row.
COLUMNS: list[tuple[str, str, int]] = [
    ("sec_per_epoch", "s/epoch", 3),
    ("images_per_sec", "img/s", 0),
    ("sec_ratio_vs_finetune", "time x finetune", 2),
    ("peak_memory_mb", "tensor peak MB", 1),
    ("memory_ratio_vs_finetune", "mem x finetune", 2),
    ("rss_growth_mb", "RSS growth MB", 1),
    ("flops_per_image", "train MFLOP/img", 2),
    ("prefix_flops_per_image", "prefix MFLOP/img (once)", 2),
    ("prefix_seconds", "prefix s (once)", 3),
    ("achieved_flops_per_sec", "achieved GFLOP/s", 2),
    ("mfu", "MFU %", 2),
    ("trainable_params", "trainable", 0),
]
SCALE = {"flops_per_image": 1e-6, "prefix_flops_per_image": 1e-6, "achieved_flops_per_sec": 1e-9, "mfu": 100.0}
