"""The run's config from its layers: defaults < preset < protocol < checkpoint context < YAML < flags."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from .checks import refuse_given_together, validate
from .parsing import build, load_yaml, merge
from .presets import PRESETS, protocol_values
from .schema import RunConfig

# The preset used when neither a flag nor the config file names one (the README's tests set it to smoke).
PRESET_ENV = "PRUNELORA_PRESET"


def preset_name(explicit: str | None = None) -> str:
    """The preset a run uses when `explicit` (a flag's or a file's) is None: $PRUNELORA_PRESET, else the default;
    an unknown name is a UserError."""
    name = explicit or os.environ.get(PRESET_ENV) or RunConfig.preset
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}' (choose from: {', '.join(PRESETS)})")
    return name


def resolve(preset: str | None = None, yaml_path: str | Path | None = None,
            overrides: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> RunConfig:
    """Build the run's config: defaults < preset < protocol < context < YAML < overrides (nested dicts).

    context: what a checkpoint says about itself (its dataset, model, forget class), which a
    command on that checkpoint takes unless the user says otherwise.
    """
    file_values = load_yaml(yaml_path)
    overrides = overrides or {}
    explicit = overrides.get("preset") or preset or file_values.get("preset") or os.environ.get(PRESET_ENV)
    name = preset_name(explicit)
    protocol = protocol_values(overrides.get("protocol") or file_values.get("protocol"),
                               overrides.get("device") or file_values.get("device") or RunConfig.device)
    # A protocol sets the published sizes over the default preset; a preset named explicitly sizes it instead
    # (--protocol salun --preset smoke: the protocol's settings at the smoke preset's size).
    layers = [protocol, PRESETS[name]] if explicit and protocol else [PRESETS[name], protocol]
    values = dataclasses.asdict(RunConfig())
    for layer in layers:
        values = merge(values, layer)
    values = merge(values, context or {})
    values = merge(values, file_values)
    values = merge(values, overrides)
    refuse_given_together(merge(file_values, overrides))
    values["preset"] = name
    config = build(RunConfig, values)
    validate(config)
    return config
