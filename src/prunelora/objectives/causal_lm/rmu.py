"""Representation misdirection for unlearning (Li et al. 2024, "The WMDP Benchmark", RMU): at one decoder
layer, push the forget set's activations towards a fixed random direction scaled by the steering
coefficient, and hold the retain set's to the frozen model's; only the MLPs of that layer and the two below
train (the paper's choice) unless a LoRA surgery decides what trains. Defaults as open-unlearning's RMU
(configs/trainer/RMU.yaml: steering coefficient 2, alpha 1, gamma 1); the layer defaults to a quarter of the
depth (the paper's layer 7 of 32). The control vector is drawn once from the run's generator. Activations
count on every non-padding token (the prompt's too: the representation, not the answer, is misdirected)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...models.causal_lm.structure import infer_plan
from .base import LMObjective, LMRecipe


@dataclass
class RMUArgs(LMRecipe):
    layer: int | None = field(default=None, metadata={"help": "decoder block whose output is misdirected "
                                                              "(None: a quarter of the depth)"})
    steering_coeff: float = field(default=2.0, metadata={"help": "norm of the random target activation"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain activations' MSE"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget activations' MSE"})


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _masked_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per example: the mean over its tokens of the squared error averaged over the width; then the mean."""
    per_token = ((hidden.float() - target.float()) ** 2).mean(-1)
    return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


class Activations:
    """The output of one decoder block, captured by a forward hook while a forward runs."""

    def __init__(self, block: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.handle = block.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.value = output[0] if isinstance(output, tuple) else output

    def of(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return self.value


class RMU(LMObjective):
    name = "rmu"
    label = "RMU"
    Args = RMUArgs

    def layer(self, model: nn.Module) -> int:
        depth = len(infer_plan(model).blocks)
        layer = self.args.layer if self.args.layer is not None else depth // 4
        if not 0 <= layer < depth:
            raise ValueError(f"RMU layer {layer} is outside the model's {depth} blocks")
        return layer

    def prepare(self, model: nn.Module) -> None:
        if hasattr(model, "get_base_model"):  # LoRA: the adapters train, as the surgery set them
            return
        plan = infer_plan(model)
        layer = self.layer(model)
        chosen = {b.mlp for b in plan.blocks[max(0, layer - 2):layer + 1]}
        for name, p in model.named_parameters():
            p.requires_grad_(any(name.startswith(m + ".") for m in chosen))

    def start(self, model, feed):
        super().start(model, feed)
        plan = infer_plan(model)
        block = plan.blocks[self.layer(model)].name
        self.hidden = Activations(_base(model).get_submodule(block))
        self.frozen = Activations(_base(self.original).get_submodule(block))
        width = plan.hidden
        direction = torch.rand(width, generator=feed.generator)
        self.control = (direction / direction.norm() * self.args.steering_coeff).to(feed.sets["forget"].labels.device)

    def loss(self, batch, retain):
        forget_hidden = self.hidden.of(self.model, batch)
        loss = self.args.gamma * _masked_mse(forget_hidden, self.control.expand_as(forget_hidden),
                                             batch["attention_mask"])
        retain_hidden = self.hidden.of(self.model, retain)
        with torch.no_grad():
            target = self.frozen.of(self.original, retain)
        return loss + self.args.alpha * _masked_mse(retain_hidden, target, retain["attention_mask"])

    def finish(self) -> None:
        self.hidden.handle.remove()
        self.frozen.handle.remove()
