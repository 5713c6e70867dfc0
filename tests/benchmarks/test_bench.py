"""The speed/memory harness: every column for every method, files written, FLOP counts that mean something.

Tiny models on digits, 1 warm-up + 1 timed epoch. Timings are never compared (the machine is
shared); FLOP counts are deterministic and are.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from prunelora import bench
from prunelora.bench import BenchOptions
from prunelora.config import resolve
from prunelora.errors import UserError

TINY = {"resnet18": {"width": 2}, "vit": {"depth": 1, "dim": 16, "heads": 2, "mlp_dim": 32}}
METHODS = ["finetune", "prune-finetune", "lora", "prunelora"]
ALWAYS = ["sec_per_epoch", "images_per_sec", "sec_ratio_vs_finetune", "flops_per_image",
          "achieved_flops_per_sec", "mfu", "trainable_params"]


def run_benchmark(models=("resnet18", "vit"), methods=None, *, model_args=None, dataset="digits", train_per_class=None,
                  device="auto", batch_size=None, out=None, log=None, overwrite=False, **options):
    """bench.run on the config these settings resolve to (over the preset), with bench's options."""
    overrides = {"models": list(models), "data": {"dataset": dataset}, "device": device}
    if train_per_class is not None:
        overrides["data"]["train_per_class"] = train_per_class
    if model_args:
        overrides["model_args"] = model_args
    if batch_size is not None:
        overrides["unlearn"] = {"batch_size": batch_size}
    if methods is not None:
        options["methods"] = list(methods)
    return bench.run(resolve(overrides=overrides), BenchOptions(**options), out=out, log=log, overwrite=overwrite)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_benchmark(["resnet18", "vit"], METHODS, model_args=TINY, dataset="digits",
                                  train_per_class=10, device="cpu", warmup_epochs=1, timed_epochs=1,
                                  min_timed_epochs=1, matmul_size=128, matmul_repeats=2, out=out,
                                  log=lambda message: None)
    finally:
        torch.set_num_threads(threads)
    res["out"] = out
    return res


def _row(results, model, method, mode=None):
    return next(r for r in results["rows"] if (r["model"], r["method"], r["prune_mode"]) == (model, method, mode))


@pytest.mark.slow
def test_every_column_for_every_method(results):
    rows = results["rows"]
    expected = {(m, meth, mode) for m in TINY for meth in METHODS
                for mode in (("mask", "remove") if bench.prunes(meth) else (None,))}
    assert {(r["model"], r["method"], r["prune_mode"]) for r in rows} == expected
    for row in rows:
        for key, _, _ in bench.COLUMNS:
            assert key in row, (row["model"], row["method"], key)
            value = row[key]
            if value is None:
                assert row["na"].get(key), f"{row['model']} {row['method']} {key}: n/a without a reason"
            else:
                assert math.isfinite(value) and value >= 0, (row["model"], row["method"], key, value)
        if row["status"] != "ok":
            continue
        for key in ALWAYS:
            assert row[key] is not None and row[key] > 0, (row["model"], row["method"], key)
        assert row["peak_memory_mb"] > 0 and row["memory_kind"] == "cpu_tensor_peak"
        assert row["rss_growth_mb"] is not None and row["rss_growth_mb"] >= 0
        assert len(row["timed_epoch_seconds"]) == 1 and len(row["warmup_epoch_seconds"]) == 1
        assert row["images_per_sec"] == pytest.approx(row["retain_images"] / row["sec_per_epoch"])
        assert row["achieved_flops_per_sec"] == pytest.approx(row["flops_per_image"] * row["images_per_sec"])
        assert row["mfu"] == pytest.approx(row["achieved_flops_per_sec"] / results["matmul"]["flops_per_sec"])
        assert row["mfu"] <= 1.0  # the reference is the measured peak, raised to any rate that beat it


def test_remove_mode_is_na_on_the_vit_with_a_reason(results):
    for method in ("prune-finetune", "prunelora"):
        row = _row(results, "vit", method, "remove")
        assert row["status"] == "n/a" and "remove" in row["reason"]
        assert all(row[key] is None for key, _, _ in bench.COLUMNS)
        assert _row(results, "resnet18", method, "remove")["status"] == "ok"


def test_prefix_columns_only_where_the_prefix_is_cached(results):
    for row in results["rows"]:
        if row["status"] != "ok":
            continue
        cached = row["model"] == "vit" and row["method"] in ("lora", "prunelora")
        assert (row["prefix_cache"] is not None) == cached, (row["model"], row["method"])
        assert (row["prefix_flops_per_image"] is not None) == cached
        if cached:
            assert row["prefix_flops_per_image"] > 0 and row["prefix_seconds"] > 0


def test_ratios_are_against_finetune_of_the_same_model(results):
    for model in TINY:
        ft = _row(results, model, "finetune")
        assert ft["sec_ratio_vs_finetune"] == pytest.approx(1.0)
        lora = _row(results, model, "lora")
        assert lora["sec_ratio_vs_finetune"] == pytest.approx(lora["sec_per_epoch"] / ft["sec_per_epoch"])
        if ft["peak_memory_mb"] > 0:
            assert lora["memory_ratio_vs_finetune"] == pytest.approx(lora["peak_memory_mb"] / ft["peak_memory_mb"])
        else:
            assert lora["memory_ratio_vs_finetune"] is None and lora["na"]["memory_ratio_vs_finetune"]


def test_flops_per_image(results):
    flops = {(r["model"], r["method"], r["prune_mode"]): r["flops_per_image"] for r in results["rows"]}
    # LoRA's backward stops at the last block, and the cached prefix is not re-run (FINDINGS 5, 13)
    assert flops["vit", "finetune", None] > flops["vit", "lora", None]
    assert flops["vit", "finetune", None] > flops["vit", "prunelora", "mask"]
    # removed channels are fewer FLOPs; masked ones are exactly as many (FINDINGS 2)
    assert flops["resnet18", "prune-finetune", "remove"] < flops["resnet18", "finetune", None]
    assert flops["resnet18", "prune-finetune", "mask"] == flops["resnet18", "finetune", None]
    assert flops["resnet18", "prunelora", "remove"] < flops["resnet18", "prunelora", "mask"]


def test_files_and_machine(results):
    out = results["out"]
    saved = json.loads((out / bench.BENCH_FILE).read_text())
    assert len(saved["rows"]) == len(results["rows"])
    for key in ("cpu", "threads", "torch", "device_name", "peft"):
        assert saved["machine"][key]
    assert saved["matmul"]["flops_per_sec"] > 0
    assert saved["matmul"]["kernel"] in saved["matmul"]["kernels"] and len(saved["matmul"]["kernels"]) >= 5
    table = (out / bench.TABLE_FILE).read_text()
    assert table == results["markdown"]
    for _, label, _ in bench.COLUMNS:
        assert label in table
    for method in METHODS:
        assert f"| {method} |" in table
    assert "n/a" in table and "Notes:" in table
    assert "fp32 peak (MFU reference)" in table


def test_flop_counter_counts_cpu_attention():
    q = torch.randn(2, 2, 16, 8, requires_grad=True)
    with bench.flop_counter() as counter:
        F.scaled_dot_product_attention(q, q, q).sum().backward()
    assert counter.get_total_flops() > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"models": ["nope"]}, "unknown model"),
    ({"methods": ["nope"]}, "unknown method"),
    ({"train_per_class": 0}, "train_per_class"),
    ({"timed_epochs": 2}, "at least 3"),
    ({"prune_modes": ["half"]}, "prune mode"),
    ({"model_args": {"vit": {"depth": 1}}, "models": ["resnet18"]}, "not benchmarked"),
    ({"model_args": {"resnet18": {"depth": 3}}, "models": ["resnet18"]}, "no argument"),
    ({"batch_size": 0}, "batch size"),
    ({"device": "tpu"}, "device"),
])
def test_user_mistakes_raise_user_error(kwargs, match, tmp_path):
    args = {"dataset": "digits", "train_per_class": 10, "out": tmp_path, "log": lambda m: None, **kwargs}
    with pytest.raises(UserError, match=match):
        run_benchmark(**args)
    assert not any(tmp_path.iterdir())


def test_cli_shares_the_commands_options_and_exit_code(capsys):
    """bench parses with the same run/data/model options as every command, plus its own."""
    from prunelora.cli import build_parser, config_flags, main
    from prunelora.flags import given

    args = build_parser().parse_args(["bench", "--models", "vit", "--set", "model_args.vit.depth=2",
                                      "--channels-last", "--preset", "smoke", "--seed", "1"])
    flags, options = config_flags(args), BenchOptions(**given(args, "bench"))
    assert flags["models"] == ["vit"] and flags["channels_last"] and flags["seeds"] == [1]
    assert options.timed_epochs == 3 and options.warmup_epochs == 1
    assert flags["model_args"] == {"vit": {"depth": 2}} and "unlearn" not in flags
    assert main(["bench", "--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["bench", "--bogus"]) == 2


def test_default_dataset_is_the_configs_and_no_checkout_path_is_baked_in(monkeypatch):
    """The installed package never looks for data relative to its own source checkout."""
    import inspect

    from prunelora.bench import measure, options, report, run
    from prunelora.cli import build_parser, config_flags

    for module in (bench, measure, options, report, run):
        source = inspect.getsource(module)
        assert "parents[" not in source and "shared/data" not in source and "\"shared\"" not in source
    monkeypatch.delenv("PRUNELORA_DATA", raising=False)
    assert "data" not in config_flags(build_parser().parse_args(["bench"]))  # -> config's digits


@pytest.mark.slow
def test_bench_records_the_load_and_never_writes_over_another_run(tmp_path):
    args = {"models": ["resnet18"], "methods": ["finetune"], "dataset": "digits", "train_per_class": 10,
            "device": "cpu", "warmup_epochs": 0, "timed_epochs": 1, "min_timed_epochs": 1, "matmul_size": 64,
            "out": tmp_path, "log": lambda m: None}
    results = run_benchmark(**args)
    assert {"busy", "others_cpu_share", "threads"} <= set(results["machine_load"])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(UserError, match="already holds a 'bench' run"):
        run_benchmark(**{**args, "methods": ["lora"]})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    replaced = run_benchmark(**{**args, "methods": ["lora"], "overwrite": True})
    assert [r["method"] for r in replaced["rows"]] == ["lora"]
