"""logit-mask: no training; the forgotten classes' logits are set to minus infinity.

A sanity row for class-wise forgetting: it scores UA 100 and MIA-Efficacy about 100 at no cost,
while every weight still holds the class. What it shows is what those two numbers alone cannot
tell apart: a model that removed the class from one that only hides it.
"""
from __future__ import annotations

import copy

from torch import nn

from ..errors import UserError
from ..models.masked import LogitMasked
from .base import MethodContext, Prepared
from .method import Method


class LogitMask(Method):
    def __init__(self) -> None:
        super().__init__(name="logit-mask", label="Logit mask", surgery="none", objective="retain",
                         class_only=True)

    @property
    def trains_all(self) -> bool:
        return False

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        if not ctx.forget_classes:
            raise UserError("logit-mask forgets whole classes: use it with --scenario class (or sequential class "
                            "requests)")
        model = LogitMasked(copy.deepcopy(original), ctx.forget_classes)
        for param in model.parameters():
            param.requires_grad_(False)
        return Prepared(model=model, epochs=[0], info={"masked_classes": ",".join(map(str, model.classes))})
