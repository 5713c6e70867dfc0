"""One adapter from whatever a user's classifier returns to a logits tensor, and the wrapper that uses it.

prunelora's loop, evaluation, attacks and prefix cache all take `model(images) -> logits`. A
Hugging Face classifier returns an `ImageClassifierOutput`, expects normalised `pixel_values`
and is called by keyword; other models return tuples or mappings. `Classifier` wraps any of them
so that everything downstream sees the plain contract, and `unwrap` gives the user's own object
back (a HF model stays a HF model, so `save_pretrained` works on the result).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import UserError
from .layers import Normalize


def logits_of(output) -> torch.Tensor:
    """The logits in a model's output: a tensor, `.logits`, a mapping's "logits", or a tuple's first item."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if logits is None and isinstance(output, Sequence) and not isinstance(output, (str, bytes)) and output:
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise UserError(f"the model's output ({type(output).__name__}) holds no logits: return a tensor, an object "
                        "with .logits, a mapping with 'logits' or a tuple whose first item is the logits")
    return logits


class Classifier(nn.Module):
    """A user's model behind prunelora's contract: float images in -> logits out.

    normalize: per-channel mean/std applied first (HF models expect normalised pixel_values; None
    when the data already is on the model's own scale). input_name: the keyword the model takes
    its images by (`pixel_values` for HF models), or None for a positional call.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 input_name: str | None = None):
        super().__init__()
        self.inner = model
        self.normalize = Normalize(tuple(mean), tuple(std)) if mean is not None and std is not None else None
        self.input_name = input_name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.normalize is not None:
            images = self.normalize(images)
        output = self.inner(**{self.input_name: images}) if self.input_name else self.inner(images)
        return logits_of(output)


PREFIX = "inner."  # where the user's layers sit inside a Classifier


def input_name(model: nn.Module) -> str | None:
    """The keyword a model takes its images by: HF models name it in `main_input_name`."""
    name = getattr(model, "main_input_name", None)
    return name if isinstance(name, str) else None


def run_once(model: nn.Module, example: torch.Tensor):
    """One forward pass in eval mode without gradients (the mode is restored); a failure is the user's input."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(example)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UserError(f"the model cannot run on the given images ({str(exc).splitlines()[0]}): check their "
                        "shape, channels and size (--image-size N resizes an image folder's, a datasets folder's or "
                        "digits' images)") from None
    finally:
        model.train(was_training)


def needs_wrapper(model: nn.Module, example: torch.Tensor, normalized: bool) -> bool:
    """Whether the model breaks the plain contract (keyword input, non-tensor output, normalisation)."""
    if normalized or input_name(model) is not None:
        return True
    return not isinstance(run_once(model, example), torch.Tensor)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's own model inside a Classifier (anything else is returned as it is)."""
    return model.inner if isinstance(model, Classifier) else model
