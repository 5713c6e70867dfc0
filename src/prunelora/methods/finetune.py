"""Finetune: every weight trains on the retain set (paper: Adam 1e-3, batch 128)."""
from torch import nn

from .base import Method, MethodContext, Prepared, unlearn_optim, working_copy


class Finetune(Method):
    name = "finetune"
    prunes, adapts, trains_all = False, False, True

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        return Prepared(model=working_copy(original, True), optim=unlearn_optim(ctx.unlearn), epochs=ctx.unlearn.epochs)
