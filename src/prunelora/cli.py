"""Command line: each command's parser (generated from the config's field metadata, plus each command's own
flags) and the exit-2 boundary for user mistakes, nothing else."""
from __future__ import annotations

import argparse
import contextlib
import errno
import sys
import time
from pathlib import Path
from typing import Any

from . import bench, commands, distributed, run_folder, signing
from .bench.options import BenchOptions
from .config import PRESETS, PROTOCOLS, RunConfig, merge, parse_dotted
from .data.scenarios import SCENARIOS
from .errors import UserError, UserErrorParser
from .flags import add_options, given, names, options
from .methods import GROUPS as METHOD_GROUPS
from .methods import METHODS, grid_name
from .metrics.mia import PROTOCOLS as MIA_PROTOCOLS
from .models import model_names
from .objectives import OBJECTIVES
from .registry import CAUSAL_LM, IMAGE
from .report import markdown_table
from .verify import DEFAULT_TOLERANCE, check_tolerance, verify

# Help sections in the order --help lists them.
GROUPS = ("run", "data", "what to forget", "models", "methods", "pre-training", "unlearning",
          "evidence (evaluation only: changing it re-evaluates a finished run, never retrains)", "benchmark")


def registry_choices() -> dict[str, list[str]]:
    """The names each registry holds, for the help (an unknown name is refused by the registry, with its own
    message)."""
    return {"methods": [*METHODS.names(IMAGE), *METHOD_GROUPS, "OBJECTIVE@SURGERY"], "models": model_names(),
            "causal_lm_methods": [*METHODS.names(CAUSAL_LM), *METHOD_GROUPS, "OBJECTIVE@SURGERY"],
            "scenarios": list(SCENARIOS), "presets": list(PRESETS), "protocols": list(PROTOCOLS),
            "mia_protocols": list(MIA_PROTOCOLS)}


def _sections(parser: argparse.ArgumentParser, command: str, roots: list[type]) -> dict[str, Any]:
    """The help sections this command's flags go into, made in GROUPS order (the others follow as met)."""
    used = {"run"} | {o.group for root in roots for o in options(root) if o.takes(command)}
    return {title: parser.add_argument_group(title) for title in GROUPS if title in used}


def _command(sub, command: str, help: str, config: type, choices: dict[str, list[str]],
             own: Any = None) -> argparse.ArgumentParser:
    """A command's parser: its own flags (own(parser, groups)), then the config's flags that it takes."""
    parser = sub.add_parser(command, help=help)
    groups = _sections(parser, command, [config, BenchOptions] if command == "bench" else [config])
    if command in LM_COMMANDS:
        _task_flag(parser)
    if own is not None:
        own(parser, groups)
    if command != "plan":  # plan reads a model and writes nothing: no run options
        run = groups["run"]
        run.add_argument("--config", help="YAML file with any RunConfig fields")
    add_options(parser, command, root=config, choices=choices, groups=groups)
    if command == "bench":
        add_options(parser, command, root=BenchOptions, name="bench", choices=choices, groups=groups)
    if command != "plan":
        run.add_argument("--overwrite", action="store_true",
                         help="replace the results of another run in --out (default: refuse)")
        if command in SIGNED:
            _sign_key(run)
        run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="any config field by dotted name, e.g. --set unlearn.lora_dropout=0")
        run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


SIGNED = ("reproduce", "unlearn", "search")  # the commands that write records, which --sign-key signs


def _sign_key(parser) -> None:
    parser.add_argument("--sign-key", metavar="KEY", help="sign every record with this Ed25519 private key (PEM; "
                                                          "'prunelora keygen' writes one); not part of the run's "
                                                          f"identity. An encrypted key: ${signing.PASSPHRASE_ENV}")


def _tolerance(text: str) -> float:
    try:
        return check_tolerance(float(text))
    except (ValueError, UserError):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got '{text}'") from None


def _checkpoint(parser: argparse.ArgumentParser, what: str) -> None:
    """--checkpoint, or your own model (--model with --weights, --mean, --std)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", help=f"{what} (.safetensors or adapter folder written by prunelora); its "
                                            "dataset, model and forget class are used unless given")
    group.add_argument("--model", help="your own model: hf:DIR (a save_pretrained folder, or a hub id when online) "
                                       "or py:package.module:factory (with --weights)")
    g = parser.add_argument_group("your own model (--model)")
    g.add_argument("--weights", help="the trained weights of a py: model (.safetensors)")
    g.add_argument("--mean", type=_floats, help="input normalisation per channel (default: the HF image processor's)")
    g.add_argument("--std", type=_floats, help="input normalisation per channel (default: the HF image processor's)")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def build_parser(config: type = RunConfig) -> argparse.ArgumentParser:
    """Each subcommand takes only the flags it uses (the config fields whose metadata names it, and its own);
    --help lists only those. config: the root dataclass whose fields give the flags."""
    parser = UserErrorParser(prog="prunelora",
                             description="Machine unlearning: PruneLoRA and the paradigms it is compared with.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UserErrorParser)
    choices = registry_choices()
    methods = ", ".join(choices["methods"])

    def unlearn_own(parser: argparse.ArgumentParser, groups: dict) -> None:
        _checkpoint(parser, "original model")
        parser.add_argument("--method", help=f"{methods} (default prunelora; with --model, several: "
                                             "comma-separated)")
        parser.add_argument("--surgery", help="instead of --method: none | prune | lora | prune+lora (default "
                                              "none) ...")
        parser.add_argument("--objective", help=f"... with an objective: {' | '.join(OBJECTIVES.names(IMAGE))} (default retain)")

    def evaluate_own(parser: argparse.ArgumentParser, groups: dict) -> None:
        _checkpoint(parser, "model")
        parser.add_argument("--dump-logits", help="write every split's logits and labels to this .npz")

    def plan_own(parser: argparse.ArgumentParser, groups: dict) -> None:
        _checkpoint(parser, "model")
        parser.add_argument("--methods", type=names, dest="config:methods",
                            help=f"{methods}: comma-separated (default: all, plan's own)")
        parser.add_argument("--config", help="YAML file with any RunConfig fields")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="any config field by dotted name")

    _command(sub, "reproduce", "original -> every method -> evaluate -> the paper's table", config, choices)
    _command(sub, "train", "train (or reuse) the original model", config, choices)
    _command(sub, "unlearn", "run a method on a checkpoint or on your own model", config, choices, unlearn_own)
    _command(sub, "evaluate", "the metrics of a checkpoint or of your own model", config, choices, evaluate_own)
    _command(sub, "plan", "which layers each method prunes, adapts and trains on a model (writes nothing)", config,
             choices, plan_own)
    _command(sub, "bench", "seconds, memory and FLOPs of every method (benchmarks/)", config, choices)
    def search_own(parser: argparse.ArgumentParser, groups: dict) -> None:
        search_options(parser)
        g = parser.add_argument_group("your own model (instead of --models)")
        g.add_argument("--model", help="hf:DIR or py:package.module:factory (with --weights)")
        g.add_argument("--weights", help="the trained weights of a py: model (.safetensors)")
        g.add_argument("--mean", type=_floats, help="input normalisation per channel (default: the model's)")
        g.add_argument("--std", type=_floats, help="input normalisation per channel (default: the model's)")

    _command(sub, "search", "the cheapest setting of the methods that passes the evidence on held-out data, within "
                            "Retrain's cost (or: none does, retrain)", config, choices, search_own)
    check = sub.add_parser("verify", help="check a record: the delivered model and the forgotten data are the ones "
                                          "tested, and the evidence measures the same (exit 0 yes, 1 no)")
    check.add_argument("record", help="a record.json (or <model>.record.json) written beside a delivered model")
    check.add_argument("--model", help="the delivered model, where it is now (default: the record's path)")
    check.add_argument("--dataset", help="the data, where it is now (default: the record's dataset)")
    check.add_argument("--data-root", help="folder holding a built-in dataset (default: the record's)")
    check.add_argument("--tolerance", type=_tolerance, default=DEFAULT_TOLERANCE,
                       help=f"largest difference of a figure measured again, in its unit (default {DEFAULT_TOLERANCE:g})")
    check.add_argument("--public-key", metavar="KEY", help="the signer's Ed25519 public key (PEM): the record must be "
                                                           "signed by it (default: say whether it is signed)")
    check.add_argument("--model-factory", metavar="py:module:factory",
                       help="a py: model's architecture, from your own code (verify never runs code a record names)")
    check.add_argument("--factory-path", action="append", default=[], metavar="FOLDER",
                       help="a folder to import --model-factory's module from (the working directory and the "
                            "record's folder are never searched)")
    keygen = sub.add_parser("keygen", help="write a new Ed25519 key pair to sign records with (--sign-key) and "
                                           "check them (verify --public-key)")
    keygen.add_argument("private", help="the private key file to create (PEM, mode 0600; never replaced)")
    keygen.add_argument("public", help="the public key file to create (PEM): give it to the auditors")
    return parser


TASKS = ("image-classification", "causal-lm")
LM_COMMANDS = {"reproduce": "the embedded benchmark (or your .jsonl): original -> every method -> the table",
               "unlearn": "unlearn named examples from your causal LM (--model hf:DIR)",
               "plan": "what each surgery touches in a causal LM, with parameter counts (writes nothing)",
               "search": "the cheapest setting that passes the evidence on held-out data within Retrain's cost",
               "bench": "seconds per step and tensor peak of each surgery at a realistic width, against full "
                        "finetuning"}


def task_of(argv: list[str]) -> str:
    """The --task an argument list gives (image-classification when none)."""
    for i, arg in enumerate(argv):
        if arg == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
    return "image-classification"


def search_options(parser: argparse.ArgumentParser, groups: dict | None = None) -> None:
    """`prunelora search`'s own options (both tasks)."""
    g = parser.add_argument_group("search")
    g.add_argument("--budget", default="retrain", help="retrain: at most Retrain's cost in training samples (its "
                                                       "recipe: epochs passes over the retain set); or SECONDS of "
                                                       "training (default: retrain)")
    g.add_argument("--trials", type=int, help="at most this many trials (default: until the budget is spent)")
    g.add_argument("--patience", type=int, help="stop once N trials after the cheapest passing one found nothing "
                                                "cheaper; 0 stops at the first pass (default: until the budget or "
                                                "--trials is spent)")
    g.add_argument("--storage", help="an Optuna storage URL for the study (default: sqlite:///OUT/search.db); "
                                     "several processes or machines may share one")
    g.add_argument("--retrain", action="store_true", help="judge against Retrain (a researcher's run: Retrain is "
                                                           "trained, its cost is not the search's); default: the "
                                                           "Retrain-free verdict with the utility kept")


def _search_options(args: argparse.Namespace):
    from .search.command import SearchOptions

    return SearchOptions(args.budget, args.trials, args.storage, args.retrain, args.patience)


def _task_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, default="image-classification",
                        help="image-classification, or causal-lm: a Hugging Face causal LM and question/answer data "
                             "(`prunelora unlearn --task causal-lm --help`)")


def build_lm_parser() -> argparse.ArgumentParser:
    """The causal-LM task's commands, their flags generated from lm.config.LMConfig's metadata."""
    from .config.causal_lm import LMConfig

    parser = UserErrorParser(prog="prunelora", description="Machine unlearning for causal language models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UserErrorParser)
    for command, text in LM_COMMANDS.items():
        own = sub.add_parser(command, help=text)
        _task_flag(own)
        if command == "bench":
            lm_bench_options(own)
            continue
        groups: dict = {}
        add_options(own, command, root=LMConfig, choices=registry_choices(), groups=groups)
        own.add_argument("--config", help="YAML file with any LMConfig fields")
        own.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="any config field by dotted name, e.g. --set method_args.npo.beta=0.2")
        if command != "plan":
            own.add_argument("--overwrite", action="store_true",
                             help="replace the results of another run in --out (default: refuse)")
            own.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if command in SIGNED:
            _sign_key(own)
        if command == "search":
            search_options(own)
    return parser


def lm_bench_options(parser: argparse.ArgumentParser) -> None:
    """`prunelora bench --task causal-lm`'s options (bench/causal_lm.py)."""
    from .bench.causal_lm import DEFAULT_METHODS, SHAPES, LMBenchOptions

    d = LMBenchOptions()
    parser.add_argument("--shape", default=d.shape, choices=list(SHAPES),
                        help=f"a published model shape built with random weights (default: {d.shape})")
    parser.add_argument("--model", help="your own causal LM instead (hf:DIR)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="comma-separated OBJECTIVE@SURGERY methods; each is compared with its objective on no "
                             "surgery (default: NPO and GradDiff on every surgery)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"timed steps per method (default: {d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"rows per step (default: {d.batch_size})")
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help=f"tokens per row (default: {d.seq_len})")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--out", default=d.out, help=f"output folder (default: {d.out})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another run in --out (default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _lm_bench(args: argparse.Namespace) -> int:
    from .bench.causal_lm import LMBenchOptions, bench_from_flags, markdown

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    options = LMBenchOptions(args.shape, args.model, methods, args.steps, args.batch_size, args.seq_len,
                             out=args.out)
    result = bench_from_flags(options, args.device, args.overwrite, not args.no_progress)
    print(markdown(result))
    print(f"wrote {Path(options.out) / 'bench.md'}")
    return 0


def _run_lm(argv: list[str]) -> int:
    from . import commands_causal_lm as lm

    args = build_lm_parser().parse_args(argv)
    if args.command == "bench":
        if distributed.launched():
            raise UserError("'bench' runs in one process: start it without torchrun")
        return _lm_bench(args)
    flags = config_flags(args)
    if distributed.launched() and args.command == "plan":
        raise UserError("'plan' runs in one process: start it without torchrun")
    distributed.setup(given(args).get("device") or "auto")
    if args.command == "plan":
        print(lm.plan(args.config, flags))
        return 0
    started = time.perf_counter()
    if args.command == "search":
        from .search.causal_lm import lm_search

        with signing.signing_with(args.sign_key):
            results = lm_search(args.config, flags, _search_options(args), overwrite=args.overwrite,
                                progress=not args.no_progress)
        print(f"wrote {Path(results['out']) / 'results.json'} in {time.perf_counter() - started:.1f} s")
        return 0
    with signing.signing_with(args.sign_key):
        results, text = lm.run(args.command, args.config, flags, overwrite=args.overwrite,
                               progress=not args.no_progress)
    if not distributed.is_main():  # rank 0 reports
        return 0
    print(text)
    print(f"wrote {Path(results['out']) / 'results.json'} in {time.perf_counter() - started:.1f} s")
    return 0


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags given and every --set, as the nested dict config.resolve takes (--set wins)."""
    return merge(given(args), parse_dotted(getattr(args, "set", None) or []))


def chosen_method(args: argparse.Namespace) -> str | None:
    """unlearn's method: --method, or the grid point of --surgery and --objective (prunelora when none is given)."""
    if args.command != "unlearn":
        return None
    surgery, objective = getattr(args, "surgery", None), getattr(args, "objective", None)
    if surgery is None and objective is None:
        return args.method or "prunelora"
    if args.method is not None:
        raise UserError("give --method, or --surgery and --objective, not both")
    return grid_name(surgery or "none", objective or "retain")


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if task_of(argv) == "causal-lm":
        return _run_lm(argv)
    args = build_parser().parse_args(argv)
    if distributed.launched() and args.command in ("bench", "plan"):
        raise UserError(f"'{args.command}' runs in one process: start it without torchrun")
    if args.command == "verify":
        return 0 if verify(args.record, model=args.model, dataset=args.dataset, data_root=args.data_root,
                           tolerance=args.tolerance, public_key=args.public_key, model_factory=args.model_factory,
                           factory_path=tuple(args.factory_path)) else 1
    if args.command == "keygen":
        print(f"wrote {args.private} (private: keep it secret) and {args.public} (public: give it to the auditors); "
              f"fingerprint {signing.keygen(args.private, args.public)}")
        return 0
    flags = config_flags(args)
    distributed.setup(given(args).get("device") or "auto")
    if args.command == "bench":
        return bench.report(bench.run_from_flags(args.config, flags, given(args, "bench"), overwrite=args.overwrite,
                                                 progress=not args.no_progress))
    started = time.perf_counter()
    if args.command == "search":
        from .search.command import image_search

        with settled_imports(args.command), signing.signing_with(args.sign_key):
            results = image_search(args.config, flags, _search_options(args), overwrite=args.overwrite,
                                   progress=not args.no_progress, model=args.model, weights=args.weights,
                                   mean=args.mean, std=args.std)
        for warning in results.get("warnings", []):
            print(f"prunelora: warning: {warning}", file=sys.stderr)
        print("\n".join(block["answer"] for block in results.get("search", [])))
        print(f"wrote {Path(results['out']) / 'results.json'} in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "plan":
        print(commands.plan(args.config, flags, checkpoint=args.checkpoint, model=args.model,
                            weights=args.weights, mean=args.mean, std=args.std))
        return 0
    with settled_imports(args.command), signing.signing_with(getattr(args, "sign_key", None)):
        results = commands.run(args.command, args.config, flags,
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
