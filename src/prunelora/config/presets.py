"""Presets (sizes) and protocols (published settings): YAML files in this package, loaded at import.

A preset or protocol only states what differs from the dataclass defaults and the model registry's own
architecture arguments; each file starts with the command it is for. A protocol's `without_cuda` section
replaces its values where the run will not have CUDA (the same setting at a size a CPU finishes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import UserError
from .parsing import merge

HERE = Path(__file__).parent
CPU_SECTION = "without_cuda"


def _load(folder: Path) -> dict[str, dict[str, Any]]:
    """name -> the mapping of each YAML file in folder (sorted by name; the files ship with the package)."""
    return {path.stem: yaml.safe_load(path.read_text()) or {} for path in sorted(folder.glob("*.yaml"))}


SIZES = ("smoke", "cpu", "gpu", "paper")  # the order --help lists them in, smallest first; other files follow
_presets = _load(HERE / "presets")
PRESETS: dict[str, dict[str, Any]] = {name: _presets[name] for name in SIZES if name in _presets} | _presets

_protocols = _load(HERE / "protocols")
# The field's published settings, one flag each (--protocol NAME): applied over the preset, under YAML and flags.
PROTOCOLS: dict[str, dict[str, Any]] = {name: {k: v for k, v in values.items() if k != CPU_SECTION}
                                        for name, values in _protocols.items()}
# Without CUDA the same protocol at a size 2 CPU cores finish: these replace the above there.
PROTOCOLS_ON_CPU: dict[str, dict[str, Any]] = {name: values.get(CPU_SECTION, {}) for name, values in _protocols.items()}


def protocol_values(name: str | None, device: str) -> dict[str, Any]:
    """The overlay of a protocol (its CPU size when the run will not have CUDA); {} for none."""
    if name is None:
        return {}
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol '{name}' (choose from: {', '.join(PROTOCOLS)})")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return PROTOCOLS[name] if cuda else merge(PROTOCOLS[name], PROTOCOLS_ON_CPU.get(name, {}))
