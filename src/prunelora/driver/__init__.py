"""The stage driver: one component runs, resumes, evaluates and records every stage of every command.

- preflight.py: what is refused before anything is written (device, methods, layer plans)
- subject.py: the interface a model being unlearned offers the driver; registry.py: registry models
  (the user's own models: user_run.py)
- stages.py: the Experiment (data, stages, their fingerprints and reuse, the originals' cache)
- evaluation.py: measuring one model; results.py: the results files
"""
from __future__ import annotations

import time
from typing import Any

from ..config import RunConfig
from .preflight import check_config, normalise_methods, select_device
from .registry import RegistrySubject, describe_model, model_meta
from .results import finish
from .stages import Experiment
from .subject import Delivery, Outcome, StagePlace, Subject


def reproduce(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """The paper's experiment: every model x method x seed; returns {"config", "rows", ...}."""
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), progress)
    return finish(exp, exp.reproduce_rows(), started)


__all__ = ["Delivery", "Experiment", "Outcome", "RegistrySubject", "StagePlace", "Subject", "check_config",
           "describe_model", "finish", "model_meta", "normalise_methods", "reproduce", "select_device"]
