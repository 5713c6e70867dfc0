"""Command line: argument parsing and the exit-2 boundary for user mistakes, nothing else."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .errors import UserError, UserErrorParser


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--config", help="YAML file with any RunConfig fields")
    g.add_argument("--preset", choices=None, help="smoke | cpu (default) | paper")
    g.add_argument("--dataset", help="digits (default) | cifar10 | cifar100")
    g.add_argument("--data-root", help="folder holding the dataset (default $PRUNELORA_DATA or ~/.cache/prunelora/data)")
    g.add_argument("--no-download", action="store_true", help="never fetch a missing dataset")
    g.add_argument("--forget-class", type=int, help="class to forget (default 3)")
    g.add_argument("--train-per-class", type=int, help="class-balanced training subset size per class")
    g.add_argument("--test-per-class", type=int, help="class-balanced test subset size per class")
    g.add_argument("--models", type=_names, help="comma-separated: resnet18, resnet50, vit")
    g.add_argument("--methods", type=_names, help="comma-separated: retrain, finetune, prune-finetune, lora, prunelora")
    g.add_argument("--epochs", type=_ints, help="unlearning budgets evaluated in one run (default 5,10)")
    g.add_argument("--pretrain-epochs", type=int, help="epochs of the original model and of Retrain")
    g.add_argument("--seed", type=int, help="one seed (default 0)")
    g.add_argument("--seeds", type=_ints, help="several seeds, e.g. 0,1,2")
    g.add_argument("--prune-amount", type=float, help="share of output channels pruned (default 0.5)")
    g.add_argument("--prune-mode", help="mask (paper, default) | remove (torch-pruning)")
    g.add_argument("--keep-sparsity", action="store_true", help="mask the LoRA update of pruned channels")
    g.add_argument("--lora-r", type=int, help="LoRA rank (default ResNet 8, ViT 16)")
    g.add_argument("--lr", type=float, help="unlearning learning rate (default 1e-3)")
    g.add_argument("--device", help="auto (default) | cpu | cuda")
    g.add_argument("--precision", help="fp32 (default) | bf16 (CUDA autocast)")
    g.add_argument("--out", help="output folder (default runs/prunelora)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field by dotted name, e.g. --set unlearn.lora_dropout=0")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = UserErrorParser(prog="prunelora", description="Machine unlearning: PruneLoRA and the paradigms it is compared with.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UserErrorParser)
    p = sub.add_parser("reproduce", help="original -> every method -> evaluate -> the paper's table")
    _common(p)
    p = sub.add_parser("train", help="train (or reuse) the original model")
    _common(p)
    p = sub.add_parser("unlearn", help="run one method on a checkpoint")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="original model (.safetensors written by prunelora)")
    p.add_argument("--method", required=True, help="retrain | finetune | prune-finetune | lora | prunelora")
    p = sub.add_parser("evaluate", help="the metrics of a checkpoint")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="model (.safetensors written by prunelora)")
    p.add_argument("--dump-logits", help="write every split's logits and labels to this .npz")
    from .bench import build_arg_parser

    build_arg_parser(sub.add_parser("bench", help="seconds, memory and FLOPs of every method (benchmarks/)"))
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Named flags as a nested dict for config.resolve (only the flags that were given)."""
    from .config import parse_dotted

    out: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        if value is None:
            return
        node = out
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    put("preset", args.preset)
    put("data.dataset", args.dataset)
    put("data.data_root", args.data_root)
    put("data.download", False if args.no_download else None)
    put("data.forget_class", args.forget_class)
    put("data.train_per_class", args.train_per_class)
    put("data.test_per_class", args.test_per_class)
    put("models", args.models)
    put("methods", getattr(args, "methods", None))
    put("unlearn.epochs", args.epochs)
    put("pretrain.epochs", args.pretrain_epochs)
    put("seeds", args.seeds if args.seeds is not None else ([args.seed] if args.seed is not None else None))
    put("unlearn.prune_amount", args.prune_amount)
    put("unlearn.prune_mode", args.prune_mode)
    put("unlearn.keep_sparsity", True if args.keep_sparsity else None)
    put("unlearn.lora_r", args.lora_r)
    put("unlearn.lr", args.lr)
    put("device", args.device)
    put("precision", args.precision)
    put("out", args.out)
    from .config import _merge

    return _merge(out, parse_dotted(args.set))


def _run(argv: list[str] | None) -> int:
    from .config import resolve

    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from .bench import report, run_from_args

        return report(run_from_args(args))
    config = resolve(yaml_path=args.config, overrides=overrides(args))
    progress = not args.no_progress
    from . import commands

    started = time.perf_counter()
    if args.command == "reproduce":
        results = commands.reproduce(config, progress)
    elif args.command == "train":
        results = commands.train(config, progress)
    elif args.command == "unlearn":
        results = commands.unlearn(config, Path(args.checkpoint), args.method, progress)
    else:
        results = commands.evaluate(config, Path(args.checkpoint), args.dump_logits, progress)
    from .report import markdown_table

    print(markdown_table(results["rows"]))
    print(f"wrote {Path(config.out) / 'results.json'} in {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except UserError as exc:
        print(f"prunelora: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunelora: interrupted; finished stages are kept and a rerun resumes from them", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
