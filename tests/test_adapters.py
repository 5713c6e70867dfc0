"""Saved adapters reproduce the evaluated (merged) model when loaded the way their format promises."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import prunelora
from prunelora.adapters import BASE_FILE
from prunelora.data import class_splits, load_dataset, to_float

from .helpers import run_cli

SMOKE = ["--preset", "smoke", "--no-progress"]


@pytest.fixture(scope="module")
def digits_images():
    """Every digits image (all 1797, train and test) and its label."""
    raw = load_dataset("digits")
    splits = class_splits(raw, 3)
    parts = list(splits.named().values())
    images = torch.cat([to_float(p.images) for p in parts])
    labels = torch.cat([p.labels for p in parts])
    return images, labels


@pytest.fixture(scope="module")
def remove_mode_run(tmp_path_factory, smoke_run) -> Path:
    """PruneLoRA in remove mode on the smoke run's original ResNet (channels physically taken out)."""
    out = tmp_path_factory.mktemp("remove") / "run"
    original = next((smoke_run / "cache").glob("resnet18-*.safetensors"))
    from prunelora.cli import main

    assert main(["unlearn", "--checkpoint", str(original), "--method", "prunelora", "--prune-mode", "remove",
                 "--out", str(out), *SMOKE]) == 0
    return out


def _logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(images)


def _peft_loaded(adapter: Path) -> torch.nn.Module:
    """What a PEFT user does: the base named in adapter_config.json, then PeftModel.from_pretrained."""
    from peft import PeftModel

    config = json.loads((adapter / "adapter_config.json").read_text())
    base = prunelora.load(adapter / config["base_model_name_or_path"])
    return PeftModel.from_pretrained(base, str(adapter))


CASES = [("resnet18", "lora", "mask"), ("resnet18", "prunelora", "mask"), ("resnet18", "prunelora", "remove"),
         ("vit", "lora", "mask"), ("vit", "prunelora", "mask")]


@pytest.mark.slow
@pytest.mark.parametrize("model,method,mode", CASES, ids=["-".join(c) for c in CASES])
def test_peft_loaded_adapter_reproduces_the_merged_model(model, method, mode, smoke_run, remove_mode_run,
                                                         digits_images):
    run = remove_mode_run if mode == "remove" else smoke_run
    folder = run / "seed0" / "models" / model
    merged_file = max(folder.glob(f"{method}_e*.safetensors"), key=lambda p: int(p.stem.split("_e")[1]))
    adapter = folder / f"{merged_file.stem}_adapter"
    images, labels = digits_images
    merged = _logits(prunelora.load(merged_file), images)
    for loaded in (_peft_loaded(adapter), prunelora.load(adapter)):
        through_peft = _logits(loaded, images)
        assert torch.allclose(through_peft, merged, atol=1e-4, rtol=0), (through_peft - merged).abs().max()
        forget = labels == 3
        assert torch.equal(through_peft.argmax(1)[forget], merged.argmax(1)[forget])


@pytest.mark.parametrize("model,method,mode", CASES, ids=["-".join(c) for c in CASES])
def test_adapter_folder_names_its_base_and_has_a_model_card(model, method, mode, smoke_run, remove_mode_run):
    run = remove_mode_run if mode == "remove" else smoke_run
    adapter = next((run / "seed0" / "models" / model).glob(f"{method}_e*_adapter"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE_FILE
    card = (adapter / "README.md").read_text()
    assert "without class 3" in card and f"`{method}`" in card and "PeftModel.from_pretrained" in card
    assert "| UA (100 - forget-train accuracy) |" in card
    assert "Model Card for" not in card  # PEFT's blank template is replaced
    if mode == "remove":
        assert "cannot be applied to the original" in card
    elif method == "prunelora":
        assert "does NOT reproduce the unlearned model there" in card


def test_the_vit_lora_base_is_the_original_and_says_so(smoke_run):
    """The ViT has no batch norm: LoRA leaves its base untouched, and the card tells the user so."""
    adapter = next((smoke_run / "seed0" / "models" / "vit").glob("lora_e*_adapter"))
    original = prunelora.load(next((smoke_run / "cache").glob("vit-*.safetensors")))
    base = prunelora.load(adapter / BASE_FILE)
    for key, value in original.state_dict().items():
        assert torch.equal(base.state_dict()[key], value), key
    assert "identical to the original" in (adapter / "README.md").read_text()


def test_the_resnet_lora_adapter_alone_on_the_original_differs(smoke_run, digits_images):
    """Why the base is saved: training moved the batch-norm statistics, which the adapter does not hold."""
    folder = smoke_run / "seed0" / "models" / "resnet18"
    adapter = next(folder.glob("lora_e*_adapter"))
    from peft import PeftModel

    original = prunelora.load(next((smoke_run / "cache").glob("resnet18-*.safetensors")))
    on_original = _logits(PeftModel.from_pretrained(original, str(adapter)), digits_images[0])
    on_base = _logits(_peft_loaded(adapter), digits_images[0])
    assert not np.allclose(on_original.numpy(), on_base.numpy(), atol=1e-3)
    assert "load it onto this base" in (adapter / "README.md").read_text()


@pytest.mark.slow
def test_evaluate_takes_an_adapter_folder_and_measures_the_merged_model(smoke_run, tmp_path, capsys):
    folder = smoke_run / "seed0" / "models" / "resnet18"
    adapter = next(folder.glob("prunelora_e*_adapter"))
    results = {}
    for name, checkpoint in (("adapter", adapter), ("merged", folder / f"{adapter.name[:-len('_adapter')]}.safetensors")):
        rc, _, err = run_cli(["evaluate", "--checkpoint", checkpoint, "--out", tmp_path / name, *SMOKE], capsys)
        assert rc == 0, err
        (results[name],) = json.loads((tmp_path / name / "results.json").read_text())["rows"]
    assert results["adapter"]["method"] == "prunelora"
    for key in ("ua", "ra", "ta", "mia_efficacy"):
        assert results["adapter"][key] == pytest.approx(results["merged"][key], abs=1e-6), key
