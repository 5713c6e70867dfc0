"""Command line: argument parsing and the exit-2 boundary for user mistakes, nothing else."""
from __future__ import annotations

import argparse
import contextlib
import errno
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


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def _class(text: str) -> int | str:
    """A class index ("3") or a class name ("cat")."""
    return int(text) if text.strip().lstrip("-").isdigit() else text.strip()


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _general(parser: argparse.ArgumentParser, training: bool) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--config", help="YAML file with any RunConfig fields")
    g.add_argument("--preset", help="smoke | cpu (default, or $PRUNELORA_PRESET) | gpu | paper")
    if training:
        g.add_argument("--protocol", help="a published setting in one flag: salun (SalUn's CIFAR-10 ResNet-18 table: "
                                          "45 000 / 5 000 split, random 10 %%, SVC_MIA; reduced size without CUDA)")
    g.add_argument("--device", help="auto (default) | cpu | cuda")
    if training:
        g.add_argument("--precision", help="fp32 (default) | bf16 (CUDA autocast)")
    g.add_argument("--threads", type=int, help="torch threads (default: the cores available to this process)")
    g.add_argument("--out", help="output folder (default: the command's own folder under runs/)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the results of another run in --out (default: refuse)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field by dotted name, e.g. --set unlearn.lora_dropout=0")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _data(parser: argparse.ArgumentParser, from_checkpoint: bool) -> None:
    note = " (default: the checkpoint's)" if from_checkpoint else ""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", help=f"digits (default) | cifar10 | cifar100{note}")
    g.add_argument("--data-root", help="folder holding the dataset (default $PRUNELORA_DATA or "
                                       f"~/.cache/prunelora/data){note}")
    g.add_argument("--no-download", action="store_true", help="never fetch a missing dataset")
    g.add_argument("--stream", action="store_true",
                   help="read images per batch from where they are kept (your files, host memory) instead of "
                        "holding them on the device: data larger than memory; the same results, slower")
    g.add_argument("--forget-class", type=_class, help=f"class to forget, an index or a name (default 3){note}")
    g.add_argument("--train-per-class", type=int, help=f"class-balanced training subset size per class{note}")
    g.add_argument("--test-per-class", type=int, help=f"class-balanced test subset size per class{note}")
    g.add_argument("--seed", type=int, help=f"one seed (default 0){note}")
    g.add_argument("--seeds", type=_ints, help="several seeds, e.g. 0,1,2")


def _request(parser: argparse.ArgumentParser) -> None:
    from .config import SCENARIOS

    g = parser.add_argument_group("what to forget")
    g.add_argument("--scenario", help=f"{' | '.join(SCENARIOS)}: one class (default), a random share of the "
                                      "training set, or a sequence of requests")
    g.add_argument("--forget-ratio", type=float, help="random: the share forgotten (default 0.1); sequential: the "
                                                      "share of each random request")
    g.add_argument("--requests", type=_requests, help="sequential: classes in order (3,5,7 or names), or with "
                                                     "--forget-ratio the number of random requests (3)")


def _requests(text: str) -> list[int | str]:
    return [_class(v) for v in text.split(",") if v.strip()]


def _unlearning(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("unlearning")
    g.add_argument("--epochs", type=_ints, help="unlearning budgets evaluated in one run (default 5,10)")
    g.add_argument("--prune-amount", type=float, help="share of output channels pruned (default 0.5)")
    g.add_argument("--prune-mode", help="mask (paper, default) | remove (torch-pruning)")
    g.add_argument("--keep-sparsity", action="store_true", help="mask the LoRA update of pruned channels")
    g.add_argument("--lora-r", type=int, help="LoRA rank (default ResNet 8, ViT 16)")
    g.add_argument("--lr", type=float, help="learning rate of the retain-only methods (default 1e-3); forget-aware "
                                            "methods take their paper's, set with --set method_args.NAME.lr=...")


def _evidence(parser: argparse.ArgumentParser, shadows: bool) -> None:
    g = parser.add_argument_group("evidence (evaluation only: changing it re-evaluates a finished run, never retrains)")
    g.add_argument("--mia-protocol", help="balanced (default: seeded shadow draws with hold-out) | liu (the field's "
                                          "reference protocol, Unlearn-Sparse's SVC_MIA)")
    g.add_argument("--mia-draws", type=int, help="shadow draws per attack, reported as mean ± std (default 5)")
    if shadows:
        g.add_argument("--ulira", type=int, metavar="K", help="U-LiRA with K shadow pairs (at least 2; default off): "
                                                              "K originals, each unlearned and retrained")


def _pretraining(parser: argparse.ArgumentParser) -> None:
    parser.add_argument_group("pre-training").add_argument(
        "--pretrain-epochs", type=int, help="epochs of the original model and of Retrain")


def _models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument_group("models").add_argument(
        "--models", type=_names, help="comma-separated: resnet18, resnet50, vit")


def _checkpoint(parser: argparse.ArgumentParser, what: str, user_models: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=True) if user_models else parser
    group.add_argument("--checkpoint", required=not user_models,
                       help=f"{what} (.safetensors or adapter folder written by prunelora); its dataset, "
                            "model and forget class are used unless given")
    if not user_models:
        return
    group.add_argument("--model", help="your own model: hf:DIR (a save_pretrained folder, or a hub id when online) "
                                       "or py:package.module:factory (with --weights)")
    g = parser.add_argument_group("your own model (--model)")
    g.add_argument("--weights", help="the trained weights of a py: model (.safetensors)")
    g.add_argument("--mean", type=_floats, help="input normalisation per channel (default: the HF image processor's)")
    g.add_argument("--std", type=_floats, help="input normalisation per channel (default: the HF image processor's)")


def build_parser() -> argparse.ArgumentParser:
    """Each subcommand takes only the flags it uses; --help lists only those."""
    from .methods import METHODS

    parser = UserErrorParser(prog="prunelora", description="Machine unlearning: PruneLoRA and the paradigms it is compared with.")
    from .objectives import OBJECTIVES

    sub = parser.add_subparsers(dest="command", required=True, parser_class=UserErrorParser)
    methods = ", ".join(METHODS) + ", all, or OBJECTIVE@SURGERY"

    p = sub.add_parser("reproduce", help="original -> every method -> evaluate -> the paper's table")
    _general(p, training=True)
    _data(p, from_checkpoint=False)
    _request(p)
    _models(p)
    p.add_argument_group("methods").add_argument("--methods", type=_names, help=f"comma-separated: {methods}")
    _pretraining(p)
    _unlearning(p)
    _evidence(p, shadows=True)

    p = sub.add_parser("train", help="train (or reuse) the original model")
    _general(p, training=True)
    _data(p, from_checkpoint=False)
    _models(p)
    _pretraining(p)

    p = sub.add_parser("unlearn", help="run a method on a checkpoint or on your own model")
    _checkpoint(p, "original model", user_models=True)
    p.add_argument("--method", help=f"{methods} (default prunelora; with --model, several: comma-separated)")
    p.add_argument("--surgery", help="instead of --method: none | prune | lora | prune+lora (default none) ...")
    p.add_argument("--objective", help=f"... with an objective: {' | '.join(OBJECTIVES)} (default retain)")
    p.add_argument("--until-forget-acc", type=float, metavar="X",
                   help="stop at the first epoch whose forget-set accuracy is at most X %%")
    _general(p, training=True)
    _data(p, from_checkpoint=True)
    _request(p)
    _pretraining(p)
    _unlearning(p)
    _evidence(p, shadows=False)

    p = sub.add_parser("evaluate", help="the metrics of a checkpoint or of your own model")
    _checkpoint(p, "model", user_models=True)
    p.add_argument("--dump-logits", help="write every split's logits and labels to this .npz")
    _general(p, training=False)
    _data(p, from_checkpoint=True)
    _evidence(p, shadows=False)

    p = sub.add_parser("plan", help="which layers each method prunes, adapts and trains on a model (writes nothing)")
    _checkpoint(p, "model", user_models=True)
    p.add_argument("--methods", type=_names, help=f"comma-separated (default all): {methods}")
    p.add_argument("--config", help="YAML file with any RunConfig fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field by dotted name")
    _data(p, from_checkpoint=True)
    from .bench import build_arg_parser

    build_arg_parser(sub.add_parser("bench", help="seconds, memory and FLOPs of every method (benchmarks/)"))
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Named flags as a nested dict for config.resolve (only the flags that were given)."""
    from .config import _merge, parse_dotted

    out: dict[str, Any] = {}

    def put(path: str, flag: str, value: Any = None) -> None:
        value = getattr(args, flag, None) if value is None else value
        if value is None:
            return
        node = out
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    put("preset", "preset")
    put("protocol", "protocol")
    put("data.dataset", "dataset")
    put("data.data_root", "data_root")
    put("data.download", "no_download", False if getattr(args, "no_download", False) else None)
    put("data.stream", "stream", True if getattr(args, "stream", False) else None)
    put("data.forget_class", "forget_class")
    put("data.train_per_class", "train_per_class")
    put("data.test_per_class", "test_per_class")
    put("data.scenario", "scenario")
    put("data.forget_ratio", "forget_ratio")
    put("data.requests", "requests")
    put("models", "models")
    put("methods", "methods")
    put("unlearn.epochs", "epochs")
    put("pretrain.epochs", "pretrain_epochs")
    seed = getattr(args, "seed", None)
    put("seeds", "seeds", [seed] if getattr(args, "seeds", None) is None and seed is not None else None)
    put("unlearn.prune_amount", "prune_amount")
    put("unlearn.prune_mode", "prune_mode")
    put("unlearn.keep_sparsity", "keep_sparsity", True if getattr(args, "keep_sparsity", False) else None)
    put("unlearn.lora_r", "lora_r")
    put("unlearn.lr", "lr")
    put("unlearn.until_forget_acc", "until_forget_acc")
    put("evidence.mia_protocol", "mia_protocol")
    put("evidence.mia_draws", "mia_draws")
    put("evidence.ulira", "ulira")
    put("device", "device")
    put("precision", "precision")
    put("threads", "threads")
    put("out", "out")
    return _merge(out, parse_dotted(args.set))


def chosen_method(args: argparse.Namespace) -> str | None:
    """unlearn's method: --method, or the grid point of --surgery and --objective (prunelora when none is given)."""
    if args.command != "unlearn":
        return None
    surgery, objective = getattr(args, "surgery", None), getattr(args, "objective", None)
    if surgery is None and objective is None:
        return args.method or "prunelora"
    if args.method is not None:
        raise UserError("give --method, or --surgery and --objective, not both")
    from .methods import grid_name

    return grid_name(surgery or "none", objective or "retain")


def _run(argv: list[str] | None) -> int:
    from . import distributed

    args = build_parser().parse_args(argv)
    if distributed.launched() and args.command in ("bench", "plan"):
        raise UserError(f"'{args.command}' runs in one process: start it without torchrun")
    distributed.setup(getattr(args, "device", None) or "auto")
    if args.command == "bench":
        from .bench import report, run_from_args

        return report(run_from_args(args))
    from . import commands
    from .report import markdown_table

    started = time.perf_counter()
    if args.command == "plan":
        print(commands.plan(args.config, overrides(args), checkpoint=args.checkpoint, model=args.model,
                            weights=args.weights, mean=args.mean, std=args.std))
        return 0
    with settled_imports(args.command):
        results = commands.run(args.command, args.config, overrides(args),
                               checkpoint=getattr(args, "checkpoint", None), method=chosen_method(args),
                               dump_logits=getattr(args, "dump_logits", None), overwrite=args.overwrite,
                               progress=not args.no_progress, model=getattr(args, "model", None),
                               weights=getattr(args, "weights", None), mean=getattr(args, "mean", None),
                               std=getattr(args, "std", None))
    if not distributed.is_main():  # rank 0 reports
        return 0
    for warning in results.get("warnings", []):
        print(f"prunelora: warning: {warning}", file=sys.stderr)
    print(markdown_table(results["rows"], results=results))
    print(f"wrote {Path(results['out']) / 'results.json'} in {time.perf_counter() - started:.1f} s")
    return 0


@contextlib.contextmanager
def settled_imports(command: str):
    """While a command runs, what is loaded before it (modules, classes, functions) sits in the garbage
    collector's permanent generation. Each stage's memory meter collects garbage before it measures, and a
    full collection over the half-million objects torch, peft and transformers define took 0.4 s a stage: 7 %
    of a digits `reproduce`, sampled with py-spy. Unfrozen afterwards, for callers in the same process."""
    import gc

    if command in ("reproduce", "unlearn"):
        import peft  # noqa: F401 - loaded by every adapter method anyway; its objects are frozen with the rest
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def one_line_warnings():
    """prunelora's own warnings as one `prunelora: warning:` line each (Python's default shows a file and a source
    line); an unlearning result's warning is left to the results' warnings, printed after the table."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not category.__module__.startswith("prunelora"):
            return shown(message, category, filename, lineno, file, line)
        if category.__name__ != "UnlearningWarning" and distributed.is_main():
            print(f"prunelora: warning: {message}", file=sys.stderr)

    from . import distributed

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


# Failures of the machine rather than of the user's request: exit 1 (a full disk, an I/O error).
NOT_THE_USERS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


def os_failure(exc: OSError) -> str:
    """One line naming the path, what the system said, and what to do; earlier results are untouched."""
    where = f"{exc.filename}: " if exc.filename else ""
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
            errno.EROFS: "choose a writable --out", errno.EACCES: "choose a writable --out (or fix its permissions)",
            errno.EPERM: "choose a writable --out (or fix its permissions)",
            errno.ENOTDIR: "a file stands where a folder is needed: choose another --out",
            errno.EISDIR: "a folder stands where a file is needed: choose another path",
            errno.EEXIST: "something is in the way: choose another --out"}.get(exc.errno, "check the path")
    return (f"{where}{exc.strerror or exc}; {hint}, then rerun: finished stages are kept and the run resumes "
            "from them")


def main(argv: list[str] | None = None) -> int:
    from . import distributed, run_folder

    try:
        with one_line_warnings():
            return _run(argv)
    except UserError as exc:
        if distributed.is_main():
            print(f"prunelora: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the operating system refused a read or a write: one line, never a traceback
        if distributed.is_main():
            print(f"prunelora: error: {os_failure(exc)}", file=sys.stderr)
        return 1 if exc.errno in NOT_THE_USERS else 2
    except KeyboardInterrupt:
        print("prunelora: interrupted; finished stages are kept and a rerun resumes from them", file=sys.stderr)
        return 130
    finally:
        run_folder.release()
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
