"""`prunelora unlearn --model hf:DIR | py:module:factory` on the user's data files, and its bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from prunelora.data import class_splits, load_dataset, to_float

from .helpers import run_cli
from .zoo import TorchvisionResNet18, hf_models

QUIET = ["--no-progress", "--preset", "smoke"]


def saved_hf(family: str, tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf") / family
    hf_models()[family].save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5], "image_std": [0.5]}))
    return folder


@pytest.fixture(scope="module")
def hf_vit_dir(tmp_path_factory) -> Path:
    return saved_hf("vit", tmp_path_factory)


@pytest.fixture(scope="module")
def tv_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "resnet.safetensors"
    save_file(TorchvisionResNet18().state_dict(), str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vit", "resnet", "convnext"])
def test_unlearn_a_saved_hf_model_writes_a_reloadable_folder_and_adapter(family, tmp_path_factory, tmp_path,
                                                                         capsys):
    from peft import PeftModel
    from transformers import AutoModelForImageClassification as Auto

    source = saved_hf(family, tmp_path_factory)
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["unlearn", "--model", f"hf:{source}", "--method", "finetune,lora,prunelora",
                               "--epochs", "2", "--keep-sparsity", "--out", out, *QUIET], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == ["original", "finetune", "lora", "prunelora"]
    name = results["rows"][0]["model"]
    assert results["user_model"]["mean"] == [0.5] and "prunelora" in results["plans"][name]["methods"]
    assert (out / "report.html").is_file() and "| PruneLoRA |" in stdout
    splits = class_splits(load_dataset("digits"), 3, 24, 12, 0)
    x = (to_float(splits.test_retain.images) - 0.5) / 0.5  # the processor's normalisation, as recorded
    for row in results["rows"][1:]:
        folder = out / row["model_dir"]
        with np.load(out / row["logits_file"]) as saved:
            expected = torch.from_numpy(saved["test_retain_logits"])
        reloaded = Auto.from_pretrained(folder / "model").eval()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(pixel_values=x).logits, expected, atol=1e-4, rtol=0)
        if row["method"] != "finetune":
            adapted = PeftModel.from_pretrained(Auto.from_pretrained(folder / "adapter" / "base"),
                                                str(folder / "adapter")).eval()
            with torch.no_grad():
                torch.testing.assert_close(adapted(pixel_values=x).logits, expected, atol=1e-4, rtol=0)
        else:
            assert not (folder / "adapter").exists()
        record = json.loads((folder / "prunelora.json").read_text())
        assert record["forget_class"] == 3 and record["method"] == row["method"]


@pytest.mark.slow
def test_unlearn_a_py_factory_model_on_an_image_folder_by_class_name(tv_weights, tmp_path, capsys):
    from PIL import Image

    raw = load_dataset("digits")
    names = ["zero", "one", "two"]
    for split, images, labels in (("train", raw.train_images, raw.train_labels), ("test", raw.test_images,
                                                                                 raw.test_labels)):
        for label, name in enumerate(names):
            folder = tmp_path / "digits" / split / name
            folder.mkdir(parents=True)
            for i, image in enumerate(images[labels == label][:12]):
                Image.fromarray(image[0]).save(folder / f"{i}.png")
    out = tmp_path / "run"
    rc, _, err = run_cli(["unlearn", "--model", "py:tests.zoo:TorchvisionResNet18", "--weights", tv_weights,
                          "--method", "finetune", "--dataset", tmp_path / "digits", "--forget-class", "two",
                          "--epochs", "1", "--out", out, *QUIET], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["data"]["forget_class"] == sorted(names).index("two")  # class folders, sorted
    assert results["data_sizes"]["forget_train"] == 12
    saved = out / results["rows"][1]["model_dir"] / "model.safetensors"
    from safetensors.torch import load_file

    TorchvisionResNet18().load_state_dict(load_file(str(saved)), strict=True)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["resnet", "convnext"])
def test_remove_mode_on_a_hf_conv_net_saves_the_original_architecture(family, tmp_path_factory, tmp_path, capsys):
    """--prune-mode remove takes channels out; the saved folder is the original architecture with those channels
    as exact zeros: from_pretrained reloads it (the config's widths) and gives the unlearned model's logits, and so
    does the adapter on its base."""
    from peft import PeftModel
    from transformers import AutoModelForImageClassification as Auto

    source = saved_hf(family, tmp_path_factory)
    out = tmp_path / "run"
    rc, _, err = run_cli(["unlearn", "--model", f"hf:{source}", "--method", "prune-finetune,prunelora",
                          "--prune-mode", "remove", "--epochs", "1", "--out", out, *QUIET], capsys)
    if family == "convnext" and rc == 2:  # a layer norm over pruned channels: refused before anything ran
        assert "--prune-mode mask" in err and not out.exists()
        return
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    splits = class_splits(load_dataset("digits"), 3, 24, 12, 0)
    x = (to_float(splits.test_retain.images) - 0.5) / 0.5
    original = Auto.from_pretrained(source)
    for row in results["rows"][1:]:
        assert row["prune_mode"] == "remove" and row["params_after"] < row["params_before"]
        folder = out / row["model_dir"]
        with np.load(out / row["logits_file"]) as saved:
            expected = torch.from_numpy(saved["test_retain_logits"])
        reloaded = Auto.from_pretrained(folder / "model").eval()
        assert sum(p.numel() for p in reloaded.parameters()) == sum(p.numel() for p in original.parameters())
        with torch.no_grad():
            torch.testing.assert_close(reloaded(pixel_values=x).logits, expected, atol=1e-4, rtol=0)
        if row["method"] == "prunelora":
            adapted = PeftModel.from_pretrained(Auto.from_pretrained(folder / "adapter" / "base"),
                                                str(folder / "adapter")).eval()
            with torch.no_grad():
                torch.testing.assert_close(adapted(pixel_values=x).logits, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_sequential_requests_on_a_py_model_chain_each_method(tv_weights, tmp_path, capsys):
    """--scenario sequential with --model: each request starts from the previous request's model; the rows,
    logits and saved folders are per request, and after the last the model forgets both classes."""
    out = tmp_path / "seq"
    rc, _, err = run_cli(["unlearn", "--model", "py:tests.zoo:TorchvisionResNet18", "--weights", tv_weights,
                          "--method", "finetune,logit-mask", "--scenario", "sequential", "--requests", "3,5",
                          "--epochs", "1", "--out", out, *QUIET], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and len(results["requests"]) == 2
    rows = {(r["method"], r["request"]): r for r in results["rows"]}
    assert set(rows) == {(m, k) for m in ("original", "finetune", "logit-mask") for k in (1, 2)}
    for k in (1, 2):
        assert (out / rows["finetune", k]["model_dir"] / "model.safetensors").is_file()
        assert rows["finetune", k]["model_dir"].endswith(f"r{k}")
    # logit-mask after the second request masks both classes: the chain carried the first request's mask
    assert rows["logit-mask", 2]["forget_acc_r1"] == 0.0 and rows["logit-mask", 2]["forget_acc_r2"] == 0.0


@pytest.mark.slow
def test_an_npz_is_data_too_in_memory_or_streamed(tmp_path, tv_weights, capsys):
    raw = load_dataset("digits")
    np.savez(tmp_path / "d.npz", images=raw.train_images[:200].transpose(0, 2, 3, 1), labels=raw.train_labels[:200],
             test_images=raw.test_images[:100], test_labels=raw.test_labels[:100])
    rows = []
    for stream in ([], ["--stream"]):  # --stream memory-maps the .npz and reads each batch from it
        out = tmp_path / f"run{len(stream)}"
        rc, _, err = run_cli(["unlearn", "--model", "py:tests.zoo:TorchvisionResNet18", "--weights", tv_weights,
                              "--method", "lora", "--dataset", tmp_path / "d.npz", "--epochs", "1", "--out", out,
                              *stream, *QUIET], capsys)
        assert rc == 0, err
        rows.append([(r["method"], r["ua"], r["ra"], r["ta"]) for r in json.loads((out / "results.json").read_text())["rows"]])
    assert rows[0] == rows[1]


@pytest.mark.slow
def test_a_datasets_folder_is_data_too(tmp_path, tv_weights, capsys):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    raw = load_dataset("digits")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])})

    def split(images, labels):
        return datasets.Dataset.from_dict({"image": [Image.fromarray(i[0]) for i in images[:150]],
                                           "label": labels[:150].tolist()}, features=features)

    datasets.DatasetDict(train=split(raw.train_images, raw.train_labels),
                         test=split(raw.test_images, raw.test_labels)).save_to_disk(str(tmp_path / "ds"))
    rc, _, err = run_cli(["unlearn", "--model", "py:tests.zoo:TorchvisionResNet18", "--weights", tv_weights,
                          "--method", "finetune", "--dataset", tmp_path / "ds", "--forget-class", "7", "--epochs", "1",
                          "--out", tmp_path / "run", *QUIET], capsys)
    assert rc == 0, err


def test_plan_prints_each_methods_layers(hf_vit_dir, capsys):
    rc, stdout, err = run_cli(["plan", "--model", f"hf:{hf_vit_dir}", "--methods", "prunelora"], capsys)
    assert rc == 0, err
    assert "prunes  vit.layers.1.attention.o_proj" in stdout and "classifier" in stdout


@pytest.fixture
def bad_inputs(tmp_path, tv_weights):
    from PIL import Image

    (tmp_path / "not_hf").mkdir()
    (tmp_path / "not_hf" / "weights.bin").write_bytes(b"x")
    one = tmp_path / "one_class" / "only"
    one.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(one / "a.png")
    broken = tmp_path / "broken"
    for name in ("a", "b"):
        (broken / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(broken / name / "ok.png")
    (broken / "b" / "bad.png").write_bytes(b"not an image")
    small = tmp_path / "small.safetensors"
    save_file(TorchvisionResNet18(width=4).state_dict(), str(small))
    return {"tmp": tmp_path, "weights": tv_weights, "small": small}


BAD = [
    ("not-a-hf-folder", ["--model", "hf:{tmp}/not_hf"], "is not a saved Hugging Face model"),
    ("factory-does-not-import", ["--model", "py:no_such_module:build", "--weights", "{weights}"], "cannot import"),
    ("weights-do-not-fit", ["--model", "py:tests.zoo:TorchvisionResNet18", "--weights", "{small}"], "do not fit"),
    ("no-logits", ["--model", "py:tests.zoo:NoLogits", "--weights", "{weights}"], "holds no logits"),
    ("one-class", ["--model", "py:tests.zoo:TorchvisionResNet18", "--weights", "{weights}", "--dataset",
                   "{tmp}/one_class"], "at least two"),
    ("unreadable-image", ["--model", "py:tests.zoo:TorchvisionResNet18", "--weights", "{weights}", "--dataset",
                          "{tmp}/broken"], "cannot read image"),
    ("unknown-class-name", ["--model", "py:tests.zoo:TorchvisionResNet18", "--weights", "{weights}",
                            "--forget-class", "cat"], "class 'cat' is not in digits"),
    ("until-out-of-range", ["--model", "py:tests.zoo:TorchvisionResNet18", "--weights", "{weights}",
                            "--until-forget-acc", "120"], "[0, 100]"),
]


@pytest.mark.parametrize("argv,message", [pytest.param(a, m, id=i) for i, a, m in BAD])
def test_bad_user_model_input_is_one_line_and_writes_nothing(argv, message, bad_inputs, capsys):
    if "NoLogits" in " ".join(argv):  # its weights: the right shapes for the model that has no logits
        from .zoo import NoLogits

        save_file(NoLogits().state_dict(), str(bad_inputs["tmp"] / "nologits.safetensors"))
        bad_inputs = {**bad_inputs, "weights": bad_inputs["tmp"] / "nologits.safetensors"}
    if "hf:" in " ".join(argv):
        pytest.importorskip("transformers")
    out = bad_inputs["tmp"] / "out"
    args = ["unlearn", "--method", "lora", *[a.format(**bad_inputs) for a in argv], "--out", out, *QUIET]
    rc, stdout, err = run_cli(args, capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err + stdout
    assert not out.exists()


@pytest.mark.slow
def test_evaluate_a_py_model_gives_the_original_row(tv_weights, tmp_path, capsys):
    out = tmp_path / "ev"
    rc, _, err = run_cli(["evaluate", "--model", "py:tests.zoo:TorchvisionResNet18", "--weights", tv_weights,
                          "--out", out, *QUIET], capsys)
    assert rc == 0, err
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["method"] == "original" and row["model"] == "TorchvisionResNet18" and 0 <= row["ta"] <= 100


@pytest.mark.parametrize("settings, side", [
    ({"do_resize": True, "size": {"height": 224, "width": 224}}, 224),
    ({"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}}, 224),
    ({"size": {"shortest_edge": 64}, "do_center_crop": False, "crop_size": 32}, 64),
    ({"size": {"height": 30, "width": 40}}, None),  # not square: no side to adopt
    ({"do_resize": False, "size": 224}, None),
    ({"image_mean": [0.5], "image_std": [0.5]}, None),  # normalises only
    ({"size": True}, None),
])
def test_the_processors_side_is_what_it_feeds_the_model(settings, side):
    from prunelora.models.user_models import processor_side

    assert processor_side(settings) == side


@pytest.mark.slow
def test_a_hf_model_is_fed_its_own_input_size_from_a_folder_of_mixed_sizes(tmp_path, capsys):
    """The user's image folder as it is kept (class folders, several sizes and modes, no test split) and a ViT
    that takes 16 x 16: the images are resized to the processor's side, recorded, and --image-size still wins."""
    transformers = pytest.importorskip("transformers")
    from .data.test_files import write_mixed_folder

    data = write_mixed_folder(tmp_path / "mixed")
    folder = tmp_path / "vit"
    transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3)).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_resize": True, "size": {"height": 16, "width": 16}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    out = tmp_path / "run"
    rc, _, err = run_cli(["unlearn", "--model", f"hf:{folder}", "--dataset", data, "--forget-class", "k1",
                          "--method", "prunelora", "--out", out, *QUIET], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["data"]["image_size"] == 16 and results["user_model"]["image_size"] == 16
    rc, _, err = run_cli(["unlearn", "--model", f"hf:{folder}", "--dataset", data, "--forget-class", "k1",
                          "--method", "prunelora", "--image-size", "20", "--out", tmp_path / "other", *QUIET], capsys)
    assert rc == 2 and "the model cannot run on the given images" in err and "--image-size N resizes" in err
    assert "Traceback" not in err
    assert not (tmp_path / "other").exists()
