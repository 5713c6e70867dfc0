"""Presets resolve to typed configs; the gpu preset's recipe runs on the CPU (a few steps)."""
import torch

from prunelora.config import resolve
from prunelora.data import class_splits, load_dataset
from prunelora.methods import resolve_recipe
from prunelora.models import build_model, get_spec
from prunelora.train import fit


def test_gpu_preset_resolves_to_the_real_accuracy_recipe():
    config = resolve(preset="gpu")
    assert config.data.dataset == "cifar10" and config.data.train_per_class is None  # all of CIFAR-10
    assert config.model_args["resnet18"]["width"] == 64
    vit = config.model_args["vit"]
    assert 6 <= vit["depth"] <= 8 and 256 <= vit["dim"] <= 384
    assert config.precision == "bf16" and config.channels_last
    recipe = resolve_recipe(config.pretrain, "resnet")
    assert recipe.schedule == "cosine" and recipe.augment
    assert "channels_last" not in config.identity()  # a compute detail, like the thread count


def test_gpu_preset_recipe_runs_a_few_steps_on_the_cpu():
    """The preset's ResNet-18 at full width with its recipe (bf16 autocast is CUDA-only: fp32 here)."""
    config = resolve(preset="gpu", overrides={"data": {"dataset": "digits", "train_per_class": 4}})
    raw = load_dataset("digits", None, allow_download=False)
    splits = class_splits(raw, 3, 4, 4, 0, torch.device("cpu"))
    channels, size, _ = splits.image_shape
    model = build_model("resnet18", splits.num_classes, channels, size, splits.mean, splits.std,
                        config.model_args["resnet18"])
    settings = resolve_recipe(config.pretrain, get_spec("resnet18").family)
    settings.batch_size = 16
    before = [p.detach().clone() for p in model.parameters()]
    history = fit(model, splits.retain_train, settings, 1, seed=0, precision=config.precision,
                  channels_last=config.channels_last, progress=False)
    assert len(history.epoch_seconds) == 1 and torch.isfinite(torch.tensor(history.epoch_loss)).all()
    conv = model.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_presets_and_protocols_load_from_the_package_and_name_their_command():
    from pathlib import Path

    import prunelora.config.presets as presets
    from prunelora.config import PRESETS, PROTOCOLS, PROTOCOLS_ON_CPU

    assert list(PRESETS) == ["smoke", "cpu", "gpu", "paper"] and list(PROTOCOLS) == ["salun"]
    assert "without_cuda" not in PROTOCOLS["salun"] and PROTOCOLS_ON_CPU["salun"]["model_args"]["resnet18"]["width"] == 16
    for folder in ("presets", "protocols"):
        for path in Path(presets.__file__).parent.joinpath(folder).glob("*.yaml"):
            assert path.read_text().startswith("# prunelora "), path  # the command it is for


def test_the_paper_preset_leaves_the_architectures_to_the_model_registry():
    config = resolve(preset="paper")
    assert config.models == ["resnet50", "vit"] and config.model_args == {}
    assert config.pretrain.epochs == 200


def test_methods_default_to_the_paper_group_and_yaml_and_set_keep_their_errors(tmp_path):
    import pytest

    from prunelora import UserError
    from prunelora.config import parse_dotted

    assert resolve().methods == ["paper"]
    path = tmp_path / "run.yaml"
    path.write_text("unlearn:\n  lr: fast\n")
    with pytest.raises(UserError, match="'unlearn.lr' must be float, got 'fast'"):
        resolve(yaml_path=path)
    with pytest.raises(UserError, match="--set expects KEY=VALUE"):
        parse_dotted(["unlearn.lr"])
    assert parse_dotted(["unlearn.lr=0.0005", "data.forget_class=cat", "unlearn.epochs=[1,2]"]) == {
        "unlearn": {"lr": 0.0005, "epochs": [1, 2]}, "data": {"forget_class": "cat"}}
    with pytest.raises(UserError, match="unknown scenario 'stream'"):
        resolve(overrides={"data": {"scenario": "stream"}})
