"""Retrain: the exact baseline, from scratch on the retain set with the original's recipe."""
from torch import nn

from .base import Method, MethodContext, Prepared


class Retrain(Method):
    name = "retrain"
    prunes, adapts, trains_all, reinitializes = False, False, True, True
    exact = True

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        return Prepared(model=ctx.fresh_model(), optim=ctx.pretrain, epochs=[ctx.pretrain_epochs])
