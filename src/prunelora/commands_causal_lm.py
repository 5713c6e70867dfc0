"""The causal-LM task's commands (`--task causal-lm`): resolve the config, check, then run its stages through
the one stage driver (driver/stages.py with driver/causal_lm.py's task), or describe the plan."""
from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from . import run_folder
from .config.causal_lm import LMConfig, resolve
from .driver import Experiment, select_device
from .driver.causal_lm import CausalLMTask
from .errors import UserError
from .methods.causal_lm.plan import describe
from .models.causal_lm.loading import load_causal_lm, quiet_transformers
from .report.causal_lm_table import table

DEFAULT_METHODS = {"unlearn": ["npo@prune+lora"]}  # reproduce: the config's table


def config_for(command: str, yaml_path: str | None, flags: dict[str, Any]) -> LMConfig:
    if command in DEFAULT_METHODS and "methods" not in flags:
        flags = {**flags, "methods": DEFAULT_METHODS[command]}
    config = resolve(yaml_path, flags)
    if command == "unlearn" and not config.model.model:
        raise UserError("unlearn --task causal-lm needs --model hf:DIR (your causal LM and its tokenizer); "
                        "'reproduce --task causal-lm' trains the embedded benchmark's model")
    if command == "unlearn" and config.data.dataset == "people" and not config.data.forget:
        raise UserError("unlearn --task causal-lm needs --dataset train.jsonl and --forget FILE")
    return config


def run(command: str, yaml_path: str | None, flags: dict[str, Any], overwrite: bool = False,
        progress: bool = True) -> tuple[dict[str, Any], str]:
    """(results, the table as text) of reproduce or unlearn."""
    config = config_for(command, yaml_path, flags)
    quiet_transformers()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecations inside peft
        exp = Experiment(config, select_device(config.device), lambda exp: CausalLMTask(exp, command), progress)
        task = exp.task
        task.check_memorised()  # before anything is written
        run_folder.claim(exp.out, f"{command}-causal-lm", task.identity(), overwrite,
                         reads=((config.model.model or "").removeprefix("hf:"), config.data.dataset,
                                config.data.holdout, config.data.forget))
        task.write_data()
        subject = task.subject()
        rows = exp.method_rows([subject], task.original, started)
        results = task.finish(exp, rows, started)
    return results, table(results)


def plan(yaml_path: str | None, flags: dict[str, Any]) -> str:
    config = resolve(yaml_path, flags)
    if not config.model.model:
        raise UserError("plan --task causal-lm needs --model hf:DIR")
    quiet_transformers()
    model, _ = load_causal_lm(config.model.model, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        return describe(model, config.unlearn)
