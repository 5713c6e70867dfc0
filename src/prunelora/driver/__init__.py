"""The stage driver: one component runs, resumes, measures and records every stage of every command, on both tasks.

- stages.py: the Experiment (the stages of a run, their fingerprints, verified reuse, records and warnings)
- task.py: what a task offers the driver; image_task.py (image classification) and causal_lm.py (causal LMs)
- subject.py: what a model being unlearned offers the driver; registry.py: registry models (the user's own
  image models: user_run.py; causal LMs: causal_lm.py)
- preflight.py: what is refused before anything is written (device, methods, layer plans)
- record.py: the record beside every delivered model; stage_store.py: finished stages on disk
- evaluation.py: measuring one image model; results.py: the image task's results files
"""
from __future__ import annotations

import time
from typing import Any

from ..config import RunConfig
from .image_task import ImageTask
from .preflight import check_config, normalise_methods, select_device
from .registry import RegistrySubject, describe_model, model_meta
from .results import finish
from .stages import Experiment
from .subject import Delivery, Outcome, StagePlace, Subject


def reproduce(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """The paper's experiment: every model x method x seed; returns {"config", "rows", ...}."""
    started = time.perf_counter()
    exp = Experiment(config, select_device(config.device), ImageTask, progress)
    return finish(exp, exp.reproduce_rows(), started)


__all__ = ["Delivery", "Experiment", "ImageTask", "Outcome", "RegistrySubject", "StagePlace", "Subject", "check_config",
           "describe_model", "finish", "model_meta", "normalise_methods", "reproduce", "select_device"]
