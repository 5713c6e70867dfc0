"""Speed and memory of each unlearning method: python -m benchmarks.unlearn_speed [options].

A thin entry point: the harness lives in prunelora.bench (also `prunelora bench`). See --help.
"""
from __future__ import annotations

import sys

from prunelora.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
