"""Representation misdirection for unlearning (Li et al. 2024, "The WMDP Benchmark", RMU): at one decoder
layer, push the forget set's activations towards a fixed random direction scaled by the steering
coefficient, and hold the retain set's to the frozen model's.

References: WMDP's rmu/unlearn.py (centerforaisafety/wmdp, read in its fork ruidazeng/mu-hazard-evaluation at
commit 22b7859b0fe2bfa07da7e4c2e06b8273473f9c65; open-unlearning cites wmdp commit bc5e1ba) and open-unlearning's
RMU (src/trainer/unlearn/rmu.py and configs/trainer/RMU.yaml, commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a).

- Loss, as open-unlearning's: gamma * d(h_forget, c) + alpha * d(h_retain, h_frozen), where h is the output of
  the chosen decoder block, c = steering_coeff * u / |u| with u ~ U[0, 1)^width drawn once (from the run's
  generator), and d is open-unlearning's compute_activation_loss: per example, the squared error averaged
  over the width and summed over the answer tokens (labels != -100, the end-of-sequence token included; the
  prompt and padding are left out), over their count; then the mean over examples. Defaults as its
  configs/trainer/RMU.yaml: steering coefficient 2, alpha 1, gamma 1 (WMDP's 20 and 100 are tuned for
  Zephyr-7B).
- Layer: WMDP's and open-unlearning's layer 7 of a 32-block model, scaled to the model's depth L and rounded
  to the nearest block, halves up: (7 L + 16) // 32 (7 of 32, 4 of 16, 5 of 24, 0 of 2).
- Trained weights (`params`): "wmdp" (the default, WMDP's choice: layer_ids layer-2..layer, param_ids [6], the
  MLP's down projection weight, open-unlearning's commented regex model.layers.(5|6|7).mlp.down_proj.weight and
  its RMU class's default) trains the contracting projection's weight of the chosen block and the two below;
  "all" (open-unlearning's RMU.yaml, trainable_params_regex .*) trains every weight. Under a LoRA surgery the
  adapters train, as the surgery set them.
- The frozen original runs in eval mode (dropout off), as WMDP's frozen_model.eval() and open-unlearning's
  reference model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...data.text.tokens import IGNORE
from ...errors import UserError
from ...models.causal_lm.structure import infer_plan
from .base import LMObjective, LMRecipe, global_mean, rows

PARAMS = ("wmdp", "all")


@dataclass
class RMUArgs(LMRecipe):
    layer: int | None = field(default=None, metadata={"help": "decoder block whose output is misdirected "
                                                              "(None: WMDP's 7 of 32 scaled to the depth)"})
    steering_coeff: float = field(default=2.0, metadata={"help": "norm of the random target activation"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain activations' MSE"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget activations' MSE"})
    params: str = field(default="wmdp", metadata={"help": "what trains: wmdp (the down projections of the layer "
                                                          "and the two below, WMDP's) or all (open-unlearning's)"})


def default_layer(depth: int) -> int:
    """WMDP's layer 7 of 32 at `depth` blocks, to the nearest block (halves up)."""
    return (7 * depth + 16) // 32


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _masked_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per example: the squared error averaged over the width, summed over the masked tokens, over their count
    (open-unlearning's compute_activation_loss before its mean over the batch)."""
    per_token = ((hidden.float() - target.float()) ** 2).mean(-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)


def answer_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The answer tokens' positions (open-unlearning: labels != -100, unshifted)."""
    return batch["labels"] != IGNORE


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
    reference = "centerforaisafety/wmdp rmu/unlearn.py; locuslab/open-unlearning src/trainer/unlearn/rmu.py (d3d7cf9)"
    space = {"lr": ("log", 1e-6, 1e-3), "steering_coeff": ("log", 1.0, 100.0), "alpha": ("log", 0.1, 100.0)}  # what `prunelora search` may set (its Args fields)
    Args = RMUArgs

    def layer(self, model: nn.Module) -> int:
        depth = len(infer_plan(model).blocks)
        layer = self.args.layer if self.args.layer is not None else default_layer(depth)
        if not 0 <= layer < depth:
            raise ValueError(f"RMU layer {layer} is outside the model's {depth} blocks")
        return layer

    def trained(self, model: nn.Module) -> set[str]:
        """The names of the parameters RMU trains (params "wmdp": the down projections' weights)."""
        if self.args.params not in PARAMS:
            raise UserError(f"method_args.rmu.params '{self.args.params}' is not one of {', '.join(PARAMS)}: "
                            "give wmdp (the MLP down projections of the layer and the two below) or all")
        names = {name for name, _ in model.named_parameters()}
        if self.args.params == "all":
            return names
        plan = infer_plan(model)
        layer = self.layer(model)
        return {b.contract + ".weight" for b in plan.blocks[max(0, layer - 2):layer + 1]} & names

    def prepare(self, model: nn.Module) -> None:
        if hasattr(model, "get_base_model"):  # LoRA: the adapters train, as the surgery set them
            return
        chosen = self.trained(model)
        for name, p in model.named_parameters():
            p.requires_grad_(name in chosen)

    def start(self, model, feed):
        super().start(model, feed)
        if self.original is None:
            raise ValueError("RMU needs the model before unlearning as its frozen reference")
        plan = infer_plan(model)
        block = plan.blocks[self.layer(model)].name
        self.hidden = Activations(_base(model).get_submodule(block))
        self.frozen = Activations(_base(self.original).get_submodule(block))
        self.original_was_training = self.original.training
        self.original.eval()
        width = plan.hidden
        direction = torch.rand(width, generator=feed.generator)
        self.control = (direction / direction.norm() * self.args.steering_coeff).to(feed.sets["forget"].labels.device)

    def loss(self, batch, retain):
        forget_hidden = self.hidden.of(self.model, batch)
        forget = _masked_mse(forget_hidden, self.control.expand_as(forget_hidden), answer_mask(batch)).mean()
        retain_hidden = self.hidden.of(self.model, retain)
        with torch.no_grad():
            target = self.frozen.of(self.original, retain)
        kept = _masked_mse(retain_hidden, target, answer_mask(retain))
        return self.args.gamma * forget + self.args.alpha * global_mean(kept.sum(), len(kept), rows(batch))

    def finish(self) -> None:
        self.hidden.handle.remove()
        self.frozen.handle.remove()
        self.original.train(self.original_was_training)
