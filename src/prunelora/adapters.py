"""Saved adapters that reproduce the evaluated model: PEFT adapter + the base it applies to + a card.

A LoRA adapter holds only the low-rank matrices and the trained head. What else the method
changed lives in the base: PruneLoRA's pruned (or removed) channels, the batch norms recalibrated
after pruning, and the running statistics that training updated. So the folder also holds that
base as a prunelora checkpoint, `adapter_config.json` names it in `base_model_name_or_path`
(relative to the folder), and README.md says what was forgotten, with which method and result,
and how to load it. `PeftModel.from_pretrained(load(base), folder)` then gives the merged model's
logits (a test checks it for every adapter method, model and prune mode).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from . import storage
from .errors import UserError
from .methods.reinflate import reinflate, reinflated_state
from .metrics.spec import specs
from .models.outputs import PREFIX, unwrap

BASE_FILE = "base_model.safetensors"
BASE_SUFFIX = " (adapter base)"  # the base checkpoint's method: "<method> (adapter base)"


def metric_labels() -> list[tuple[str, str]]:
    """The model card's metrics and how it names them (metrics/spec.py: the specs marked card)."""
    return [(s.key, s.card_label) for s in specs(card=True)]


METRIC_LABELS = tuple(metric_labels())


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold equal tensors under the same names (buffers included)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def base_description(info: dict[str, Any], base_is_original: bool) -> str:
    """What the base is, and whether the adapter may be applied to the original instead."""
    if info.get("prune_mode") == "remove":
        return (f"the original with the pruned channels physically removed ({info.get('params_before')} -> "
                f"{info.get('params_after')} parameters) and its batch norms recalibrated. The adapter's shapes "
                "fit only this base: by design it cannot be applied to the original model.")
    if info.get("prune_mode") == "mask":
        return (f"the original with {info.get('pruned_channels')} output channels of the pruned layers set to "
                "zero and its batch-norm statistics recalibrated and updated by training. The adapter loads "
                "onto the original too (the shapes match) but does NOT reproduce the unlearned model there: "
                "the pruning lives in this base.")
    if base_is_original:
        return "identical to the original model: the adapter applies to the original as well."
    return ("the original's weights with the batch-norm running statistics that training updated. Applied to "
            "the original itself the adapter gives different predictions: load it onto this base.")


def model_card(meta: dict[str, Any], metrics: dict[str, Any], description: str, merged_file: str) -> str:
    """README.md of an adapter folder: what was forgotten, how, with what result, how to load it."""
    method, model = meta.get("method"), meta.get("model")
    lines = [f"# {model} without class {meta.get('forget_class')}: `{method}` unlearning (prunelora)", "",
             f"An unlearned `{model}` ({meta.get('model_args') or 'default arguments'}): class "
             f"{meta.get('forget_class')} of {meta.get('dataset')} was removed with prunelora's `{method}` method "
             f"({meta.get('epochs')} epochs, seed {meta.get('seed')}).", "",
             "## Files", "",
             "- `adapter_config.json`, `adapter_model.safetensors`: the PEFT LoRA adapter (and the trained head).",
             f"- `{BASE_FILE}`: the base the adapter applies to (`base_model_name_or_path`, relative to this "
             f"folder): {description}",
             f"- `../{merged_file}`: the same model with the adapter merged in (what was evaluated).", "",
             "## Result", "", "| metric | % |", "|---|---|"]
    lines += [f"| {label} | {metrics[key]:.2f} |" for key, label in metric_labels()
              if isinstance(metrics.get(key), (int, float))]
    conclusive = metrics.get("mia_attack_conclusive")
    lines += ["", ("The membership attacker was significantly above chance, so MIA-Efficacy is evidence."
                   if conclusive else "The membership attacker was not significantly above chance: MIA-Efficacy "
                   "is inconclusive here and says nothing either way."), "",
              "## Load", "", "```python", "import prunelora", "",
              'model = prunelora.load("path/to/this/folder")  # the base with the adapter, as a PEFT model',
              "", "# or with PEFT alone:", "from peft import PeftModel", "",
              f'base = prunelora.load("path/to/this/folder/{BASE_FILE}")',
              'model = PeftModel.from_pretrained(base, "path/to/this/folder")', "```", "",
              "The model takes float images in [0, 1] of shape (N, {c}, {s}, {s}) and normalises them itself.".format(
                  c=meta.get("in_channels"), s=meta.get("image_size")), ""]
    return "\n".join(lines)


def save_adapter_folder(folder: Path, save_adapter, base: nn.Module, base_meta: dict[str, Any],
                        card: str) -> None:
    """Write the adapter, its base and its card into `folder`, atomically."""
    with storage.atomic_dir(folder) as tmp:
        save_adapter(tmp)
        storage.save_model(base, tmp / BASE_FILE, base_meta)
        update_config(tmp, base_model_name_or_path=BASE_FILE)
        storage.write_text(tmp / "README.md", card)


def update_config(folder: Path, **fields: Any) -> None:
    """Set fields of a saved adapter's adapter_config.json (its base, the user's own layer names)."""
    path = folder / "adapter_config.json"
    storage.write_json(path, {**json.loads(path.read_text()), **fields})


def is_adapter_folder(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file()


def base_path(folder: str | Path) -> Path:
    """The base checkpoint an adapter folder names (base_model_name_or_path, relative to the folder)."""
    folder = Path(folder)
    if not is_adapter_folder(folder):
        raise UserError(f"{folder} is not an adapter folder (it has no adapter_config.json)")
    try:
        base_name = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except ValueError:
        raise UserError(f"{folder / 'adapter_config.json'} is not valid JSON") from None
    path = folder / (base_name or BASE_FILE)
    if not base_name or not path.is_file():
        raise UserError(f"{folder} names no base checkpoint beside the adapter (expected {path}); "
                        "load its base yourself and use peft.PeftModel.from_pretrained")
    return path


def adapter_meta(folder: str | Path) -> dict[str, Any]:
    """The description of the model an adapter folder gives: its base's, as the unlearned model."""
    meta = storage.read_meta(base_path(folder))
    meta["method"] = str(meta.get("method", "")).removesuffix(BASE_SUFFIX)
    meta.pop("adapter_base", None)
    return meta


def checkpoint_meta(path: Path) -> dict[str, Any]:
    """The description of a checkpoint file or of a saved adapter folder."""
    return adapter_meta(path) if is_adapter_folder(path) else storage.read_meta(path)


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A plain model and its description from a checkpoint file, or from an adapter folder (merged onto its base:
    the same function)."""
    if is_adapter_folder(path):
        return load_adapter(path).merge_and_unload(), adapter_meta(path)
    return storage.load_model(path)


def load_adapter(folder: str | Path) -> nn.Module:
    """The PEFT model of a saved adapter folder: its base (a prunelora checkpoint) with the adapter."""
    from peft import PeftModel

    base, _ = storage.load_model(base_path(folder))
    return PeftModel.from_pretrained(base, str(folder))


def save_user_adapter(folder: Path, prepared, plan, wrapped: bool, template: nn.Module | None = None,
                      removed: dict | None = None) -> None:
    """A user model's adapter under the user's own layer names, with its base, atomically.

    prunelora trains the user's model inside a wrapper (`inner.`): the adapter's keys and targets
    are renamed back so that PEFT loads it onto the user's own class.
    """
    base = unwrap(prepared.adapter_base())
    if removed:  # remove mode: base and adapter back in the original shapes (methods/reinflate.py)
        base = reinflate(base, copy.deepcopy(template), removed)
    with storage.atomic_dir(folder) as tmp:
        prepared.save_adapters(tmp)
        weights = tmp / "adapter_model.safetensors"
        if wrapped or removed:
            tensors = {k.replace(f"base_model.model.{PREFIX}", "base_model.model.", 1): v
                       for k, v in load_file(str(weights)).items()}
            if removed:
                tensors = reinflated_state(tensors, removed)
            storage.save_tensors(tensors, weights)
        if hasattr(base, "save_pretrained"):
            base.save_pretrained(str(tmp / "base"))
            base_name = "base"
        else:
            storage.save_tensors({k: v.detach().contiguous().cpu() for k, v in base.state_dict().items()}, tmp / BASE_FILE)
            base_name = BASE_FILE
        update_config(tmp, target_modules=plan.lora_layers, modules_to_save=list(plan.train_modules) or None,
                      base_model_name_or_path=base_name)
