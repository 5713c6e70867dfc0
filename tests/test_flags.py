"""The command line generated from the config's field metadata: flags, where their values go, their help."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from prunelora.bench import BenchOptions
from prunelora.cli import build_parser, config_flags
from prunelora.config import MIA_PROTOCOLS, RunConfig, resolve
from prunelora.flags import default_text, given, options

# Every command's flags: none may appear or disappear unnoticed.
FLAGS = {
    "reproduce": "--allow-empty-class --config --data-root --dataset --device --epochs --forget --forget-class "
                 "--forget-ratio --help --id-column --image-size --keep-sparsity --lora-r --lr --methods --mia-draws --mia-protocol "
                 "--models --no-download --no-progress --out --overwrite --precision --preset --pretrain-epochs "
                 "--protocol --prune-amount --prune-mode --prune-score --requests --scenario --seed --seeds --set "
                 "--sign-key --stream --task --test-per-class --threads --train-per-class --ulira -h",
    "train": "--allow-empty-class --config --data-root --dataset --device --forget --forget-class --help "
             "--id-column --image-size --models --no-download --no-progress --out --overwrite --precision --preset "
             "--pretrain-epochs --protocol --seed --seeds --set --stream --test-per-class --threads "
             "--train-per-class -h",
    "unlearn": "--allow-empty-class --checkpoint --config --data-root --dataset --device --epochs --forget "
               "--forget-class --forget-ratio --help --id-column --image-size --keep-sparsity --lora-r --lr --mean --method "
               "--mia-draws --mia-protocol --model --no-download --no-progress --objective --out --overwrite "
               "--precision --preset --pretrain-epochs --protocol --prune-amount --prune-mode --prune-score "
               "--requests --scenario --seed --seeds --set --sign-key --std --stream --surgery --task "
               "--test-per-class --threads --train-per-class --until-forget-acc --weights -h",
    "evaluate": "--allow-empty-class --checkpoint --config --data-root --dataset --device --dump-logits --forget "
                "--forget-class --help --id-column --image-size --mean --mia-draws --mia-protocol --model --no-download "
                "--no-progress --out --overwrite --preset --seed --seeds --set --std --stream --test-per-class "
                "--threads --train-per-class --weights -h",
    "plan": "--allow-empty-class --checkpoint --config --data-root --dataset --forget --forget-class --help "
            "--id-column --image-size --mean --methods --model --no-download --seed --seeds --set --std --stream --task "
            "--test-per-class --train-per-class --weights -h",
    "bench": "--allow-empty-class --channels-last --compile --config --data-root --dataset --device --epochs "
             "--forget --forget-class --help --id-column --image-size --matmul-size --methods --models --no-download "
             "--no-progress --out --overwrite --precision --preset --protocol --prune-modes --seed --seeds --set "
             "--stream --task --test-per-class --threads --train-per-class --warmup-epochs -h",
    "search": "--allow-empty-class --budget --config --data-root --dataset --device --epochs --forget "
              "--forget-class --forget-ratio --help --id-column --image-size --keep-sparsity --lora-r --lr --mean --methods "
              "--mia-draws --mia-protocol --model --models --no-download --no-progress --out --overwrite "
              "--patience --precision --preset --pretrain-epochs --protocol --prune-amount --prune-mode --prune-score "
              "--requests --retrain --scenario --seed --seeds --set --sign-key --std --storage --stream --task "
              "--test-per-class --threads --train-per-class --trials --weights -h",
    "verify": "--data-root --dataset --factory-path --help --model --model-factory --public-key --tolerance -h",
    "keygen": "--help -h",
}


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_keeps_its_flags():
    for name, parser in commands(build_parser()).items():
        assert sorted(o for a in parser._actions for o in a.option_strings) == FLAGS[name].split(), name


@dataclass
class Gizmo:
    teeth: int = field(default=7, metadata={"help": "how many", "flag": "--gizmo-teeth",
                                            "commands": ("reproduce", "unlearn")})
    hidden: float = field(default=0.5, metadata={"help": "set with --set only"})


@dataclass
class Extended(RunConfig):
    """A config with one new section and one new root field, as a contributor would add them."""

    gizmo: Gizmo = field(default_factory=Gizmo, metadata={"group": "gizmo"})
    shine: bool = field(default=False, metadata={"help": "polish it", "flag": "--shine", "commands": ("train",)})


def test_a_field_with_metadata_is_a_flag_of_its_commands_mapped_to_its_dotted_path():
    """One field, no other edit: the flag appears on the commands it names (only those) and lands at its path."""
    parser = build_parser(Extended)
    args = parser.parse_args(["reproduce", "--gizmo-teeth", "3", "--lr", "0.01"])
    assert config_flags(args) == {"gizmo": {"teeth": 3}, "unlearn": {"lr": 0.01}}
    assert config_flags(parser.parse_args(["train", "--shine"])) == {"shine": True}
    assert config_flags(parser.parse_args(["train"])) == {}
    with pytest.raises(Exception, match="unrecognized arguments: --gizmo-teeth"):
        parser.parse_args(["train", "--gizmo-teeth", "3"])
    help_text = commands(parser)["reproduce"].format_help()
    assert "gizmo:" in help_text and "how many (default: 7)" in help_text and "--hidden" not in help_text


def test_every_generated_flags_help_shows_the_dataclass_default():
    """The help's default is computed from the field (or the field's `none` text): never restated by hand."""
    for root in (RunConfig, BenchOptions):
        for option in options(root):
            assert "default" not in option.meta.get("help", "").lower(), (option.path, "restates a default")
            text = default_text(option, "reproduce", root)
            if option.default is None:
                assert text.startswith(option.meta["none"]), option.path
            else:
                value = option.default
                shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
                if isinstance(value, bool):
                    shown = f"{option.path} {'on' if value else 'off'}"
                assert text.startswith(shown), (option.path, text)
    for parser in commands(build_parser()).values():
        for action in parser._actions:
            if action.dest.startswith(("config:", "bench:")):
                assert "(default: " in (action.help or ""), action.option_strings


def test_help_shows_the_default_presets_value_and_the_checkpoints():
    by_path = {o.path: o for o in options(RunConfig)}
    assert default_text(by_path["pretrain.epochs"], "reproduce") == f"15; the cpu preset's {60}"
    assert default_text(by_path["data.dataset"], "evaluate") == "the checkpoint's"


def test_seeds_wins_over_seed_and_switches_set_their_field():
    parser = build_parser()
    assert config_flags(parser.parse_args(["train", "--seed", "4"])) == {"seeds": [4]}
    assert config_flags(parser.parse_args(["train", "--seed", "4", "--seeds", "1,2"])) == {"seeds": [1, 2]}
    assert config_flags(parser.parse_args(["train", "--no-download", "--stream"])) == {
        "data": {"download": False, "stream": True}}
    args = parser.parse_args(["reproduce", "--forget-class", "cat", "--requests", "3,dog", "--set", "unlearn.lr=0.0005",
                              "--lr", "0.1"])
    assert config_flags(args) == {"data": {"forget_class": "cat", "requests": [3, "dog"]}, "unlearn": {"lr": 0.0005}}
    assert given(parser.parse_args(["bench", "--epochs", "4"]), "bench") == {"timed_epochs": 4}


def test_the_generated_flags_resolve_like_the_file_and_set():
    config = resolve(preset="smoke", overrides=config_flags(build_parser().parse_args(
        ["reproduce", "--keep-sparsity", "--epochs", "3,1", "--seeds", "1,1,2"])))
    assert config.unlearn.keep_sparsity and config.unlearn.epochs == [1, 3] and config.seeds == [1, 2]


def test_config_knows_the_mia_protocols_metrics_implements():
    from prunelora.metrics.mia import PROTOCOLS

    assert tuple(PROTOCOLS) == MIA_PROTOCOLS


def test_no_flag_without_a_command_line_form():
    for option in options(RunConfig):
        assert option.meta.get("commands"), option.path
    assert all(dataclasses.is_dataclass(c) for c in (RunConfig, BenchOptions))
