"""--protocol salun: the published setting in one flag, its CPU size, and the report beside the published figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from prunelora.config import PROTOCOLS, resolve
from prunelora.report.published import PUBLISHED, differences

from .helpers import run_cli


def test_the_protocol_sets_the_published_setting_on_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = resolve(overrides={"protocol": "salun"})
    assert config.data.dataset == "cifar10" and config.data.train_per_class is None
    assert config.data.holdout_per_class == 500  # 45 000 / 5 000
    assert (config.data.scenario, config.data.forget_ratio) == ("random", 0.1)
    assert config.models == ["resnet18"] and config.model_args["resnet18"]["width"] == 64
    assert config.evidence.mia_protocol == "liu" and 10 in config.unlearn.epochs
    assert differences(json.loads(json.dumps(_as_dict(config)))) == PUBLISHED["salun"]["always_differs"]


def test_without_cuda_the_protocol_runs_smaller_and_says_where(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = resolve(overrides={"protocol": "salun"})
    assert config.model_args["resnet18"]["width"] < 64 and config.data.train_per_class is not None
    said = differences(_as_dict(config))
    assert any("model_args.resnet18.width" in d for d in said) and any("train_per_class" in d for d in said)
    # flags still win over the protocol
    assert resolve(overrides={"protocol": "salun", "data": {"scenario": "class"}}).data.scenario == "class"


def test_an_unknown_protocol_is_a_user_error():
    from prunelora import UserError

    with pytest.raises(UserError, match="unknown protocol 'salun2'"):
        resolve(overrides={"protocol": "salun2"})


def test_holdout_is_never_trained_on(digits_raw):
    from prunelora.data.splits import subsets

    full, _ = subsets(digits_raw, None, 5, seed=0, device="cpu")
    held, _ = subsets(digits_raw, None, 5, seed=0, device="cpu", holdout_per_class=10)
    counts = np.bincount(digits_raw.train_labels)
    assert len(full) - len(held) == 10 * len(counts)
    assert np.array_equal(np.bincount(held.labels.numpy()), counts - 10)


def _as_dict(config) -> dict:
    from prunelora.config import to_dict

    return to_dict(config)


@pytest.mark.slow
def test_reproduce_with_the_protocol_at_smoke_size(fake_cifar10_root, tmp_path, capsys):
    out = tmp_path / "salun"
    rc, _, err = run_cli(["reproduce", "--protocol", "salun", "--preset", "smoke", "--data-root", fake_cifar10_root,
                          "--no-download", "--threads", "1", "--no-progress", "--set", "data.holdout_per_class=2",
                          "--set", "evidence.relearn=false", "--out", out], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["protocol"] == "salun"
    assert {r["method"] for r in results["rows"]} >= {"retrain", "salun", "ga", "rl", "ft-l1"}
    assert results["data_sizes"]["forget_train"] + results["data_sizes"]["retain_train"] == 10 * 8  # 2 held out
    assert set(results["method_settings"]) == set(PROTOCOLS["salun"]["methods"])
    table = (out / "results.md").read_text()
    assert "Beside the published figures" in table and "5.24" in table and "Method settings" in table
    assert "Beside the published figures" in (out / "report.html").read_text()
