"""Typed configuration: the schema (schema.py), presets and protocols (presets.py and its YAML files),
YAML files and `--set` (parsing.py), checks (checks.py) and the layered resolution (resolve.py).

Precedence, lowest first: dataclass defaults < preset < protocol < YAML file < command-line flags.
The resolved config is saved with every result so that a run can be reproduced from it.
"""
from .checks import METHOD_ARG_RULES, require_finite_settings, validate, validate_evidence, validate_method_args
from .parsing import build, coerce, load_yaml, merge, nest, parse_dotted
from .presets import PRESETS, PROTOCOLS, PROTOCOLS_ON_CPU, protocol_values
from .resolve import PRESET_ENV, preset_name, resolve
from .schema import (
    MIA_MAX_PER_SIDE,
    MIA_PROTOCOLS,
    PRECISIONS,
    PRUNE_MODES,
    DataConfig,
    EvidenceConfig,
    RecipeConfig,
    RunConfig,
    UnlearnConfig,
    data_key,
    fingerprint,
    to_dict,
    to_yaml,
)

__all__ = ["METHOD_ARG_RULES", "MIA_MAX_PER_SIDE", "MIA_PROTOCOLS", "PRECISIONS", "PRESETS", "PRESET_ENV", "PROTOCOLS", "PROTOCOLS_ON_CPU",
           "PRUNE_MODES", "DataConfig", "EvidenceConfig", "RecipeConfig", "RunConfig", "UnlearnConfig", "build",
           "coerce", "data_key", "fingerprint", "load_yaml", "merge", "nest", "parse_dotted", "preset_name", "protocol_values",
           "require_finite_settings", "resolve", "to_dict", "to_yaml", "validate", "validate_evidence",
           "validate_method_args"]
