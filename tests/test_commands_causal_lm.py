"""The causal-LM task from the command line: the workflow end to end, and bad input in one line, exit 2,
nothing written."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli

SMALL = ["--preset", "smoke", "--no-progress"]  # 8 people, 2 questions each, a 2-block model


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """reproduce --task causal-lm on a small embedded benchmark: Retrain, NPO and PruneLoRA-NPO."""
    out = tmp_path_factory.mktemp("lm") / "run"
    from prunelora.cli import main

    code = main(["reproduce", "--task", "causal-lm", "--methods", "retrain,npo,npo@prune+lora,rmu@lora",
                 "--forget-ratio", "0.25", "--out", str(out), *SMALL])
    assert code == 0
    return out


@pytest.mark.slow
def test_reproduce_writes_the_table_models_records_and_examples(benchmark_run):
    results = json.loads((benchmark_run / "results.json").read_text())
    assert results["task"] == "causal-lm"
    rows = {r["method"]: r for r in results["rows"]}
    assert list(rows) == ["original", "retrain", "npo", "npo@prune+lora", "rmu@lora"]
    original = rows.pop("original")  # before unlearning: it knows the forget set
    assert original["forget_prob"] > 0.5 and original["label"] == "Original" and "verdict" not in original
    for name, row in rows.items():
        assert row["forget_n"] == 4 and row["retain_n"] == 12 and row["holdout_n"] == 8
        for field in ("retain_utility", "forget_rouge_l", "retain_rouge_l", "mia_min_k_auc", "sec_per_step",
                      "peak_memory_mb", "forget_quality", "privleak", "standalone_verdict"):
            assert field in row, (name, field)
        for field in ("forget_prob_bare", "forget_prob_question", "forget_rouge_l_worst", "relearn_prob",
                      "relearn_gain"):  # the robustness measures: other formats, the attack
            assert field in row, (name, field)
        assert "forget_prob_cue" not in row  # the run's own format (the plain cue) is measured once
        assert row["forget_prob_worst"] >= max(row["forget_prob"], row["forget_prob_bare"])
        if name != "retrain":
            assert 0.0 <= row["forget_quality"] <= 1.0
            assert row["verdict"].split(", ")[0] in ("matches Retrain", "differs from Retrain", "hides")
    assert rows["npo@prune+lora"]["trainable_params"] < rows["npo"]["trainable_params"] / 4
    assert rows["npo@prune+lora"]["params"] < rows["npo"]["params"]  # pruned
    assert "npo" in results["method_settings"] and results["method_settings"]["npo"]["own"]["beta"] == 0.1
    table = (benchmark_run / "results.md").read_text()
    assert "| NPO@PruneLoRA |" in table and "| Original |" in table and "Forget quality" in table
    record = json.loads((benchmark_run / "seed0" / "models" / "llama" / "npo_at_prune+lora" / "record.json").read_text())
    assert record["task"] == "causal-lm" and record["request"]["samples"] == 4 and len(record["request"]["ids"]) == 4
    assert record["model_after"]["weight_files"] and record["verdict"]["standalone"]
    lines = (benchmark_run / "seed0" / "examples" / "llama" / "npo.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert {"split", "id", "avg_nll", "truth_ratio", "rouge_l", "generated", "mia_min_k"} <= set(first)
    assert sum(json.loads(line)["split"] == "forget" for line in lines) == 4
    splits = {json.loads(line)["split"] for line in lines}
    assert {"forget@bare", "forget@question", "relearned"} <= splits and "forget@cue" not in splits  # its own format


@pytest.mark.slow
def test_report_html_answers_and_shows_every_method_and_config_yaml_reruns(benchmark_run):
    from prunelora.config.causal_lm import resolve
    from prunelora.report.causal_lm_page import closest
    from prunelora.report.causal_lm_page import main as page_main

    results = json.loads((benchmark_run / "results.json").read_text())
    page = (benchmark_run / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "http" not in page.split("<body>")[1].split("Full configuration")[0]
    for row in results["rows"]:
        assert row["label"] in page and row["standalone_verdict"] in page
    assert page.count("data:image/png;base64,") == 2  # the trade-off and the truth-ratio histograms
    answer = closest(results)
    assert any("NPO" in line for line in answer) and page.count(answer[0].split(":")[0]) >= 1
    # the page is rebuilt from results.json alone, identically
    before = page
    assert page_main([str(benchmark_run)]) == 0
    assert (benchmark_run / "report.html").read_text() == before
    assert page_main([str(benchmark_run / "nothing")]) == 2
    # config.yaml resolves to the run's configuration
    again = resolve(str(benchmark_run / "config.yaml"), {})
    assert dataclasses.asdict(again) == results["config"]


def test_answer_names_matching_methods_first_and_says_when_none_matches():
    from prunelora.report.causal_lm_page import closest

    def row(method, label, objective, verdict, fq, seed):
        return {"method": method, "label": label, "objective": objective, "verdict": verdict, "seed": seed,
                "forget_quality": fq, "model_utility": 0.5, "peak_memory_mb": 10.0, "mia_min_k_auc": 0.5}

    rows = [row("retrain", "Retrain", "retrain", None, 1.0, 0), row("ga", "GA", "ga", "differs from Retrain", 0.9, 0),
            row("npo", "NPO", "npo", "matches Retrain", 0.2, 0)]
    lines = closest({"rows": rows})
    assert lines[0].startswith("Matches Retrain") and "NPO on 1/1 seeds" in lines[0] and "GA" not in lines[0]
    assert lines[1].index("NPO") < lines[1].index("GA")  # a match ranks before a higher p that does not match
    rows[2]["verdict"] = "differs from Retrain"
    assert closest({"rows": rows})[0] == "No method matches Retrain on any of the 1 seed."
    assert closest({"rows": rows[:1]}) == ["Only Retrain ran: there is nothing to compare with it."]


@pytest.mark.slow
def test_delivered_model_and_adapter_reload_to_the_evaluated_numbers(benchmark_run):
    import transformers as T
    from peft import PeftModel

    from prunelora.config.causal_lm import LMDataConfig
    from prunelora.data.text.examples import read_examples
    from prunelora.metrics.causal_lm.measure import measure_examples

    folder = benchmark_run / "seed0" / "models" / "llama" / "npo_at_prune+lora"
    tokenizer = T.AutoTokenizer.from_pretrained(folder / "model")
    model = T.AutoModelForCausalLM.from_pretrained(folder / "model")
    adapted = PeftModel.from_pretrained(T.AutoModelForCausalLM.from_pretrained(folder / "adapter" / "base"),
                                        folder / "adapter")
    _, train = read_examples(benchmark_run / "data" / "train.jsonl", LMDataConfig())
    ids = {json.loads(line)["id"]: json.loads(line) for line in
           (benchmark_run / "seed0" / "examples" / "llama" / "npo_at_prune+lora.jsonl").read_text().splitlines()
           if json.loads(line)["split"] == "forget"}
    forget = [ex for ex in train if ex.id in ids]
    for net in (model, adapted):
        again = measure_examples(net, tokenizer, forget, 128, torch.device("cpu"), generate=False)
        for ident, nll in zip(again["id"], again["avg_nll"]):
            assert nll == pytest.approx(ids[ident]["avg_nll"], abs=1e-4)


@pytest.mark.slow
def test_rerun_reuses_every_stage_and_unlearn_takes_the_users_model(benchmark_run, tmp_path, capsys):
    from prunelora.cli import main

    stages = sorted((benchmark_run / "seed0" / "stages" / "llama").glob("*.json"))
    assert len(stages) == 4
    stamps = {p: p.stat().st_mtime_ns for p in stages}
    assert main(["reproduce", "--task", "causal-lm", "--methods", "retrain,npo,npo@prune+lora,rmu@lora",
                 "--forget-ratio", "0.25", "--out", str(benchmark_run), *SMALL]) == 0
    assert {p: p.stat().st_mtime_ns for p in stages} == stamps
    # the original, as a user's folder; the benchmark's files as the user's data; two ids forgotten
    original = next((benchmark_run / "cache").glob("original-*"))
    request = tmp_path / "forget.txt"
    rows = [json.loads(line) for line in (benchmark_run / "data" / "train.jsonl").read_text().splitlines()]
    request.write_text("# two facts\n" + "\n".join(r["id"] for r in rows[:2]) + "\n")
    code, out, err = run_cli(["unlearn", "--task", "causal-lm", "--model", f"hf:{original}", "--dataset",
                              str(benchmark_run / "data" / "train.jsonl"), "--holdout",
                              str(benchmark_run / "data" / "holdout.jsonl"), "--forget", str(request),
                              "--out", str(tmp_path / "mine"), "--epochs", "1", "--no-progress",
                              "--set", "data.eval_retain=4"], capsys)
    assert code == 0, err
    assert "NPO@PruneLoRA" in out
    row = json.loads((tmp_path / "mine" / "results.json").read_text())["rows"][1]
    assert row["method"] == "npo@prune+lora" and row["forget_n"] == 2
    assert (tmp_path / "mine" / "seed0" / "models" / original.name / "npo_at_prune+lora" / "model" /
            "config.json").is_file()


def _bad(argv: list[str], capsys, tmp_path: Path, match: str) -> None:
    code, out, err = run_cli(argv + ["--out", str(tmp_path / "out")], capsys)
    assert code == 2, err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()




def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, user_model, people):
    data = _jsonl(tmp_path / "train.jsonl", people[0])
    forget = tmp_path / "forget.txt"
    forget.write_text(people[0][0]["id"] + "\n")
    base = ["unlearn", "--task", "causal-lm", "--model", f"hf:{user_model}"]
    # a jsonl without the named fields
    _bad(base + ["--dataset", str(_jsonl(tmp_path / "x.jsonl", [{"input": "a", "output": "b"}])), "--forget",
                 str(forget)], capsys, tmp_path, "neither 'question' and 'answer', 'messages' nor 'text'")
    # TRL's prompt-completion rows: the flags that read them as they are
    _bad(base + ["--dataset", str(_jsonl(tmp_path / "x.jsonl", [{"prompt": "a", "completion": "b"}])), "--forget",
                 str(forget)], capsys, tmp_path, "--set data.question_field=prompt --set data.answer_field=completion "
                                                 "--prompt-template \"{question}\"")
    # an empty forget file
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    _bad(base + ["--dataset", str(data), "--forget", str(empty)], capsys, tmp_path, "names nothing")
    # ids that name nothing
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nobody\n")
    _bad(base + ["--dataset", str(data), "--forget", str(wrong)], capsys, tmp_path, "match no training example")
    # a question longer than the context
    _bad(base + ["--dataset", str(data), "--forget", str(forget), "--max-length", "4"], capsys, tmp_path,
         "longer than --max-length 4")
    # no --forget
    _bad(base + ["--dataset", str(data)], capsys, tmp_path, "--forget FILE")
    # an unknown method
    _bad(base + ["--dataset", str(data), "--forget", str(forget), "--methods", "npo@magic"], capsys, tmp_path,
         "unknown surgery")
    # an unknown parallel mode
    _bad(base + ["--dataset", str(data), "--forget", str(forget), "--parallel", "zero3"], capsys, tmp_path,
         "--parallel zero3: choose data, fsdp")
    # a line that is not JSON
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(people[0][0]) + "\n{oops\n")
    _bad(base + ["--dataset", str(broken), "--forget", str(forget)], capsys, tmp_path, "line 2 is not JSON")


def test_a_model_that_is_not_a_causal_lm_is_refused(tmp_path, capsys, people):
    import transformers as T

    folder = tmp_path / "vit"
    T.ViTForImageClassification(T.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=16, image_size=8, patch_size=4)).save_pretrained(folder)
    data = _jsonl(tmp_path / "train.jsonl", people[0])
    forget = tmp_path / "forget.txt"
    forget.write_text(people[0][0]["id"] + "\n")
    _bad(["unlearn", "--task", "causal-lm", "--model", f"hf:{folder}", "--dataset", str(data), "--forget",
          str(forget)], capsys, tmp_path, "not a causal language model")
    _bad(["unlearn", "--task", "causal-lm", "--model", f"hf:{tmp_path / 'none'}", "--dataset", str(data),
          "--forget", str(forget)], capsys, tmp_path, "not found")


def test_plan_prints_what_each_surgery_touches(user_model, capsys):
    code, out, err = run_cli(["plan", "--task", "causal-lm", "--model", f"hf:{user_model}"], capsys)
    assert code == 0, err
    assert "2 decoder blocks" in out and "q_proj, k_proj, v_proj, o_proj" in out
    for surgery in ("none ", "lora ", "prune ", "prune+lora "):
        assert any(line.startswith(surgery) for line in out.splitlines()), surgery


@pytest.mark.slow
def test_verify_checks_a_language_models_record(benchmark_run, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    record = benchmark_run / "seed0" / "models" / "llama" / "npo_at_prune+lora" / "record.json"
    code, out, err = run_cli(["verify", str(record)], capsys)
    assert code == 0, out + err
    assert "ok: model" in out and "ok: data" in out and "ok: evidence" in out and "ok: verdict" in out
    # one weight changed in a copy: the model no longer has the recorded hash
    copy = tmp_path / "copy"
    shutil.copytree(record.parent, copy)
    weights = copy / "model" / "model.safetensors"
    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 1e-3
    save_file(state, weights)
    code, out, err = run_cli(["verify", str(copy / "record.json")], capsys)
    assert code == 1 and "DIFFERS: model" in out and "NOT verified" in out


@pytest.mark.slow
def test_a_damaged_stage_or_cached_original_is_redone_never_trusted(benchmark_run, tmp_path, capsys):
    """The image driver's rule (driver/stage_store.py) for causal-LM runs too: a truncated model, a damaged
    stage record or an edited cached original runs that stage again (and says so); the intact stages are reused."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(benchmark_run, run)
    stages = run / "seed0" / "stages" / "llama"
    before = json.loads((run / "results.json").read_text())["rows"]
    weights = run / "seed0" / "models" / "llama" / "npo" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    (stages / "rmu@lora.json").write_text('{"fingerprint": ')  # damaged
    stamps = {p.name: p.stat().st_mtime_ns for p in stages.glob("*.json")}
    code, out, err = run_cli(["reproduce", "--task", "causal-lm", "--methods", "retrain,npo,npo@prune+lora,rmu@lora",
                              "--forget-ratio", "0.25", "--out", str(run), *SMALL], capsys)
    assert code == 0, err
    redone = {name for name, stamp in stamps.items() if (stages / name).stat().st_mtime_ns != stamp}
    assert redone == {"npo.json", "rmu@lora.json"}
    results = json.loads((run / "results.json").read_text())
    assert any("npo.json" not in w and "model.safetensors" in w for w in results["warnings"])
    assert any("rmu@lora.json is damaged" in w for w in results["warnings"])
    assert "**Warning:**" in out
    import transformers

    transformers.AutoModelForCausalLM.from_pretrained(str(weights.parent))  # whole again
    for old, new in zip(before, results["rows"]):
        assert old["method"] == new["method"]
        assert new["forget_prob"] == pytest.approx(old["forget_prob"], abs=1e-6)
    # an edited cached original is trained again, not loaded
    cached = next((run / "cache").glob("original-*")) / "model.safetensors"
    cached.write_bytes(cached.read_bytes() + b"\0")
    code, out, err = run_cli(["reproduce", "--task", "causal-lm", "--methods", "retrain",
                              "--forget-ratio", "0.25", "--out", str(run), "--overwrite", *SMALL], capsys)
    assert code == 0, err
    warnings = json.loads((run / "results.json").read_text())["warnings"]
    assert any("seed 0 original" in w and "model.safetensors" in w for w in warnings), warnings
    transformers.AutoModelForCausalLM.from_pretrained(str(cached.parent))


@pytest.mark.slow
def test_bf16_weights_train_measure_and_save_as_bf16(tmp_path, monkeypatch):
    """--precision bf16's path (CUDA's in a run; here its dtype on the CPU, which torch computes too): the
    original, Retrain, a LoRA method and RMU train in bf16 with fp32 losses, every measure is finite and the
    delivered models are bf16 on disk and reload."""
    import transformers

    from prunelora.cli import main
    from prunelora.driver import causal_lm as lm_run

    monkeypatch.setattr(lm_run, "weight_dtype",
                        lambda precision, device: torch.bfloat16 if precision == "bf16" else torch.float32)
    out = tmp_path / "bf16"
    assert main(["reproduce", "--task", "causal-lm", "--methods", "retrain,npo@prune+lora,rmu", "--precision", "bf16",
                 "--forget-ratio", "0.25", "--out", str(out), *SMALL]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    import math

    for row in rows:
        for key in ("forget_loss", "retain_loss", "holdout_loss", "retain_utility", "forget_truth_ratio"):
            assert math.isfinite(row[key]), (row["method"], key)
    from safetensors.torch import load_file

    for method in ("retrain", "npo_at_prune+lora", "rmu"):
        folder = out / "seed0" / "models" / "llama" / method / "model"
        assert {t.dtype for t in load_file(folder / "model.safetensors").values()} == {torch.bfloat16}, method
        assert transformers.AutoModelForCausalLM.from_pretrained(str(folder)).config.vocab_size > 0  # reloads


@pytest.mark.slow
def test_other_data_or_model_under_the_same_paths_is_another_run(tmp_path, capsys, user_model, people):
    """The run's identity holds the data's and the model's content: editing train.jsonl or the model folder and
    rerunning into the same --out is refused (one line, exit 2), and --overwrite measures the new content."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(user_model, model)
    data = _jsonl(tmp_path / "train.jsonl", people[0])
    forget = tmp_path / "forget.txt"
    forget.write_text(people[0][0]["id"] + "\n")
    argv = ["unlearn", "--task", "causal-lm", "--model", f"hf:{model}", "--dataset", str(data), "--forget",
            str(forget), "--methods", "ga", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "out"),
            "--force"]  # a randomly initialised model knows nothing: the memorisation check would stop it
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "results.json").read_text())["rows"][0]["retain_n"] == len(people[0]) - 1
    _jsonl(data, people[0][:-1])  # one example fewer, same path
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "different configuration" in err and "Traceback" not in err, err
    code, _, err = run_cli(argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "results.json").read_text())["rows"][0]["retain_n"] == len(people[0]) - 2
    # other weights in the same model folder
    from safetensors.torch import load_file, save_file

    weights = model / "model.safetensors"
    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 1e-3
    save_file(state, weights, metadata={"format": "pt"})
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "different configuration" in err, err


def test_trl_prompt_completion_rows_run_with_the_flags_the_refusal_names(tmp_path, capsys, user_model, people):
    """The fix the refusal of prompt-completion rows gives is a command that runs: the prompt read as it is."""
    rows = [{"id": r["id"], "prompt": f"Q: {r['question']} A:", "completion": " " + r["answer"]} for r in people[0]]
    data = _jsonl(tmp_path / "train.jsonl", rows)
    (tmp_path / "forget.txt").write_text(rows[0]["id"] + "\n")
    out = tmp_path / "run"
    code, _, err = run_cli(["unlearn", "--task", "causal-lm", "--model", f"hf:{user_model}", "--dataset", str(data),
                            "--forget", str(tmp_path / "forget.txt"), "--set", "data.question_field=prompt", "--set",
                            "data.answer_field=completion", "--prompt-template", "{question}", "--force", "--methods",
                            "ga", "--epochs", "1", "--max-new-tokens", "4", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["prompt_format"] == "{question}" and results["config"]["data"]["question_field"] == "prompt"
