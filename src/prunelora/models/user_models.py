"""Users' models from where they keep them: a Hugging Face `save_pretrained` folder, or their own code.

- `hf:DIR` (or a hub id, online): `AutoModelForImageClassification.from_pretrained`, safetensors
  weights only (a `pytorch_model.bin` is a pickle: refused, not unpickled); the image processor's
  mean/std (preprocessor_config.json) come with it, since HF models expect normalised `pixel_values`.
- `py:package.module:factory` with a safetensors weights file: the factory builds the
  architecture, the weights are loaded strictly (safetensors only: nothing is unpickled).
"""
from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import UserError
from ..progress import progress_bars

HF_EXTRA = 'pip install "prunelora[hf]"'
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # weights torch.load would unpickle: never loaded
SAVE_SAFE = "load it where you trust it and save it again: model.save_pretrained(NEW_DIR, safe_serialization=True)"


@dataclass
class UserModel:
    """A loaded user model and what prunelora must know to feed it and to save it back."""

    model: nn.Module
    kind: str  # hf | py
    source: str  # the folder, hub id or factory path
    name: str  # a short label for tables
    mean: list[float] | None = None  # the model's input normalisation (HF image processor)
    std: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None  # the square side its image processor (or config) feeds it; None: any

    def describe(self) -> dict[str, Any]:
        size = {"image_size": self.image_size} if self.image_size else {}
        return {"kind": self.kind, "source": self.source, "name": self.name, "mean": self.mean, "std": self.std,
                **size, **self.extra}


def load_user_model(spec: str, weights: str | None = None, progress: bool = True) -> UserModel:
    """progress: False hides transformers' own progress bars while a Hugging Face model loads."""
    kind, _, target = spec.partition(":")
    if kind == "hf" and target:
        if weights is not None:
            raise UserError("--weights goes with --model py:...; a Hugging Face folder holds its own weights")
        return load_hf(target, progress)
    if kind == "py" and target:
        return load_factory(target, weights)
    raise UserError(f"--model must be hf:DIR (a save_pretrained folder) or py:package.module:factory, got '{spec}'")


def load_hf(target: str, progress: bool = True) -> UserModel:
    """A save_pretrained folder or hub id, its weights from safetensors only (progress: transformers' bars)."""
    try:
        import transformers.utils.logging
        from transformers import AutoModelForImageClassification
    except ImportError:
        raise UserError(f"Hugging Face models need the hf extra: {HF_EXTRA}") from None

    path = Path(target).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise UserError(f"{path} is not a saved Hugging Face model (no config.json); pass a folder written by "
                        "save_pretrained")
    pickled = sorted(f.name for f in path.glob("*") if f.suffix in PICKLED) if path.is_dir() else []
    if pickled and not any(path.glob("*.safetensors")):
        raise UserError(f"{path} holds {pickled[0]}, a pickle, and no .safetensors weights: only safetensors are "
                        f"loaded, nothing is unpickled ({SAVE_SAFE})")
    try:
        with progress_bars(transformers.utils.logging, progress):
            model = AutoModelForImageClassification.from_pretrained(str(path) if path.exists() else target,
                                                                    use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        hint = f"; only safetensors weights are loaded ({SAVE_SAFE})" if "safetensors" in str(exc) else ""
        raise UserError(f"cannot load a Hugging Face image classifier from {target} "
                        f"({str(exc).splitlines()[0]}){hint}") from None
    mean = std = None
    settings: dict[str, Any] = {}
    processor = path / "preprocessor_config.json"
    if processor.is_file():
        try:
            settings = json.loads(processor.read_text())
        except ValueError:
            raise UserError(f"{processor} is not valid JSON") from None
        if not isinstance(settings, dict):
            raise UserError(f"{processor} holds {type(settings).__name__}, not an image processor's settings")
        if settings.get("do_normalize", True) and settings.get("image_mean") is not None:
            mean, std = list(settings["image_mean"]), list(settings["image_std"])
    return UserModel(model, "hf", target, type(model).__name__, mean, std,
                     image_size=processor_side(settings))


def processor_side(settings: dict[str, Any]) -> int | None:
    """The square side a Hugging Face image processor hands its model: its center crop where it crops, else its
    resize (height = width, or a shortest edge); None without one, or where it is not square. Never the model
    config's image_size: a ConvNeXt's says 224 whatever it was trained on."""
    def side(size: Any) -> int | None:
        if isinstance(size, bool):
            return None
        if isinstance(size, int) and size > 0:
            return size
        if isinstance(size, dict):
            height, width = size.get("height"), size.get("width")
            if height is not None:
                return side(height) if height == width else None
            return side(size.get("shortest_edge"))
        if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
            return side(size[0])
        return None

    if settings.get("do_center_crop") and settings.get("crop_size") is not None:
        return side(settings["crop_size"])
    if settings.get("do_resize", True) and settings.get("size") is not None:
        return side(settings["size"])
    return None


def load_factory(target: str, weights: str | None) -> UserModel:
    module_name, _, factory_name = target.partition(":")
    if not module_name or not factory_name:
        raise UserError(f"--model py: needs package.module:factory, got 'py:{target}'")
    if weights is None:
        raise UserError("--model py:... needs --weights FILE.safetensors (the trained weights)")
    sys.path.insert(0, str(Path.cwd()))  # a module beside the user, as `python -m` would find it
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import {module_name} ({exc}); is it on PYTHONPATH?") from None
    finally:
        sys.path.pop(0)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UserError(f"{module_name} has no callable '{factory_name}'")
    model = factory()
    if not isinstance(model, nn.Module):
        raise UserError(f"{target}() returned a {type(model).__name__}, not a torch nn.Module")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(weights)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")
        raise UserError(f"the weights in {path} do not fit {target}(): {first} {detail}".strip()) from None
    return UserModel(model, "py", target, factory_name, extra={"weights": str(path)})
