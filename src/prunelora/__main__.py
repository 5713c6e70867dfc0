"""`python -m prunelora ...` (and `torchrun --nproc-per-node N -m prunelora ...`): the command line."""
import sys

from .cli import main

sys.exit(main())
