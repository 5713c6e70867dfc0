"""Speed and memory of each unlearning method: python -m benchmarks.unlearn_speed [options].

A thin entry point: the harness lives in prunelora.bench and runs as `prunelora bench` (see --help).
"""
from __future__ import annotations

import sys

from prunelora.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
