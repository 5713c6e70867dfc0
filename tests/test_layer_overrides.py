"""unlearn.prune_layers / lora_layers override the model's plan (e.g. the seed's pruning of the ViT head)."""
import json

import pytest

from prunelora.cli import main

SMOKE = ["reproduce", "--preset", "smoke", "--models", "vit", "--no-progress"]


@pytest.mark.slow
def test_pruning_the_vit_head_as_the_seed_did(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(SMOKE + ["--methods", "prune-finetune", "--out", str(out),
                         "--set", r"unlearn.prune_layers=blocks\.1\.attn\.out_proj|head"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())["rows"]
    pruned = [r for r in rows if r["method"] == "prune-finetune"]
    # out_proj (32 rows of width 32) and the 10-way head: half of each, 16 + 5 channels
    assert {r["pruned_channels"] for r in pruned} == {21}
    from prunelora import load

    model = load(out / "seed0" / "models" / "vit" / "prune-finetune_e2.safetensors")
    zero_rows = (model.head.weight.abs().sum(dim=1) == 0).sum().item()
    assert zero_rows == 5  # the mask kept five class rows at zero, as trap 6 warns


@pytest.mark.slow
def test_layer_patterns_are_checked_before_anything_is_written(tmp_path, capsys):
    for pattern in ("nothing_matches_this", "blocks[("):
        out = tmp_path / "bad"
        code = main(SMOKE + ["--methods", "prunelora", "--out", str(out), "--set", f"unlearn.lora_layers={pattern}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert "lora_layers" in err[0] or "matches" in err[0]
        assert not out.exists()
