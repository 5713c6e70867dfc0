"""The commands behind every measured table of docs/results.md: python -m benchmarks.tables --list | --check | NAME.

Each entry names one table (or figure) of docs/results.md and the `prunelora` command or commands that measured
it. `NAME` runs them, in order, through `prunelora.cli.main` with exactly those arguments (the installed
command's code path), at the preset the command names, else `$PRUNELORA_PRESET`, else the default `cpu` preset
the tables were measured at; a time compares only with one measured on the same machine on the same day. The one
thing done besides is writing the request file a command names, from the seeded draw its table states, so that
the command runs as written.

`--list` prints each entry as docs/results.md shows it, one line a step (`NAME: prunelora ARGS`). `--check`
confirms that the page shows every one of those lines in a code block and that this version accepts each
command (parsed by prunelora's own parser and its configuration resolved, nothing run): the docs' tests run it,
so the page, this module and the command line cannot drift apart without a failing test. The commands
themselves take minutes to hours at the default preset and are not run by the tests.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

RESULTS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "results.md"
CIFAR = "--dataset cifar10 --data-root ../shared/data"


@dataclass(frozen=True)
class Request:
    """A request file of `size` training-set row indices, drawn once as numpy.random.default_rng(seed)
    .choice(population, size, replace=False) and written one a line in the draw's order."""

    path: str
    seed: int
    population: int
    size: int

    def lines(self) -> str:
        import numpy as np

        ids = np.random.default_rng(self.seed).choice(self.population, self.size, replace=False)
        return "".join(f"{int(i)}\n" for i in ids)

    def write(self) -> None:
        """Writes the file where it is missing; an existing file must hold the same draw (it is never replaced)."""
        path = Path(self.path)
        if path.exists():
            if path.read_text() != self.lines():
                raise SystemExit(f"benchmarks.tables: {path} exists and is not the draw this table names "
                                 f"(default_rng({self.seed}).choice({self.population}, {self.size})): move it away")
            return
        path.write_text(self.lines())


@dataclass(frozen=True)
class Table:
    """One table of docs/results.md: its name here, the heading it sits under, the commands that measured it."""

    name: str
    heading: str
    commands: tuple[str, ...]  # each the words after `prunelora`, as docs/results.md shows them
    request: Request | None = None

    def argv(self) -> list[list[str]]:
        return [shlex.split(command) for command in self.commands]


TABLES: tuple[Table, ...] = (
    Table("main-command", "The main command's time", ("reproduce --out runs/tables/main-command",)),
    Table("digits-class", "Class-wise forgetting on digits, every method",
          ("reproduce --methods all --seeds 0,1,2 --out runs/tables/digits-class",)),
    Table("digits-random", "Random forgetting on digits",
          ("reproduce --scenario random --methods all --seeds 0,1,2 --out runs/tables/digits-random",)),
    Table("digits-sequential", "Sequential requests on digits",
          ("reproduce --scenario sequential --requests 3,5,7 --methods all --out runs/tables/digits-sequential",)),
    Table("digits-ulira", "U-LiRA on digits",
          ("reproduce --methods retrain,finetune,prunelora,rl,logit-mask --seeds 0,1,2 --ulira 4 "
           "--out runs/tables/digits-ulira",)),
    Table("cifar10-class", "Class-wise forgetting on CIFAR-10, every method",
          (f"reproduce {CIFAR} --methods all --seeds 0,1,2 --out runs/tables/cifar10-class",)),
    Table("cifar10-random", "Random forgetting on CIFAR-10",
          (f"reproduce {CIFAR} --scenario random --methods all --seeds 0,1,2 --out runs/tables/cifar10-random",)),
    Table("cifar10-request", "500 named CIFAR-10 images, with and without Retrain",
          (f"reproduce {CIFAR} --forget request-cifar10-500.txt --models resnet18 "
           "--methods retrain,finetune,prunelora,rl,salun --seeds 0,1,2 --out runs/tables/cifar10-request",),
          request=Request("request-cifar10-500.txt", seed=2026, population=50000, size=500)),
    Table("speed", "Speed and memory",
          (f"bench {CIFAR} --out runs/tables/speed",
           f"bench {CIFAR} --models resnet18 --methods finetune,prunelora --prune-modes remove "
           "--set unlearn.lora_dropout=0 --out runs/tables/speed-dropout0",
           f"bench {CIFAR} --models resnet18 --methods finetune,prunelora --prune-modes remove "
           "--set model_args.resnet18.width=16 --out runs/tables/speed-width16")),
    Table("speed-cpu-preset", "PruneLoRA's epoch against Finetune's at the CPU preset",
          ("bench --models resnet18 --methods finetune,prunelora --prune-modes mask,remove --out runs/tables/speed-cpu",
           "bench --models resnet18 --methods prunelora --prune-modes mask,remove --set unlearn.lora_dropout_on=rank "
           "--out runs/tables/speed-cpu-rank")),
    Table("outside-training", "Time outside training steps",
          ("reproduce --out runs/tables/outside-training-digits",
           f"reproduce {CIFAR} --out runs/tables/outside-training-cifar10")),
    Table("lora-dropout", "LoRA dropout: speed against what PruneLoRA converges to",
          (f"reproduce {CIFAR} --models resnet18 --methods lora,prunelora --seeds 0,1,2 "
           "--out runs/tables/lora-dropout",
           f"reproduce {CIFAR} --models resnet18 --methods lora,prunelora --seeds 0,1,2 "
           "--set unlearn.lora_dropout=0 --out runs/tables/lora-dropout0")),
    Table("causal-lm", "Causal LM: the embedded benchmark",
          ("reproduce --task causal-lm --seeds 0,1,2 --out runs/tables/causal-lm",)),
    Table("bench-causal-lm", "Causal LM: surgeries at 0.5 B parameters",
          ("bench --task causal-lm --out runs/tables/bench-causal-lm",)),
    Table("default-prune-mode", "The default prune mode and the CPU preset's width",
          ("reproduce --out runs/tables/main-default", "reproduce --prune-mode mask --out runs/tables/main-mask")),
    Table("search-digits-auto", "The default prune mode and the CPU preset's width",
          ("search --models resnet18 --seeds 0,1,2 --prune-mode remove --out runs/tables/search-digits-remove",
           "search --models resnet18 --seeds 0,1,2 --prune-mode remove --patience 0 "
           "--out runs/tables/search-digits-remove-p0")),
    Table("speed-widths", "The default prune mode and the CPU preset's width",
          tuple(f"bench --models resnet18 --methods finetune,prune-finetune,lora,prunelora --prune-modes remove{w} "
                f"--out runs/tables/speed-w{n}" for n, w in
                (("8", ""), ("16", " --set model_args.resnet18.width=16"),
                 ("32", " --set model_args.resnet18.width=32")))),
    Table("speed-widths-mask", "The default prune mode and the CPU preset's width",
          ("bench --models resnet18 --methods finetune,lora,prunelora --prune-modes mask "
           "--out runs/tables/speed-mask-w8",
           *(f"bench --models resnet18 --methods finetune,prunelora --prune-modes mask "
             f"--set model_args.resnet18.width={w} --out runs/tables/speed-mask-w{w}" for w in (16, 32)))),
    Table("speed-vit-paper", "The default prune mode and the CPU preset's width",
          ("bench --models vit --methods finetune,lora,prunelora --set model_args.vit.depth=12 "
           "--set model_args.vit.dim=384 --set model_args.vit.heads=6 --set model_args.vit.mlp_dim=1536 "
           "--out runs/tables/speed-vit-paper",)),
    Table("speed-paper-widths", "The default prune mode and the CPU preset's width",
          ("bench --models resnet18,resnet50 --methods finetune,prunelora --prune-modes mask,remove "
           "--set model_args.resnet18.width=64 --set model_args.resnet50.width=64 "
           "--out runs/tables/speed-paper-widths",)),
    Table("search-digits", "Search", ("search --models resnet18,vit --seeds 0,1,2 --out runs/tables/search-digits",)),
    Table("search-causal-lm", "Search", ("search --task causal-lm --seeds 0 --trials 30 --out runs/tables/search-causal-lm",
                                         "search --task causal-lm --seeds 1,2 --trials 30 "
                                         "--out runs/tables/search-causal-lm-seeds12")),
    Table("search-cifar10", "Search", (f"search {CIFAR} --models resnet18 --out runs/tables/search-cifar10-class",
                                       f"search {CIFAR} --models resnet18 --scenario random --prune-mode mask "
                                       "--out runs/tables/search-cifar10-random")),
)


def by_name(name: str) -> Table:
    for table in TABLES:
        if table.name == name:
            return table
    raise SystemExit(f"benchmarks.tables: no table {name!r}; choose one of {', '.join(t.name for t in TABLES)} "
                     "(--list shows their commands)")


def listing(table: Table) -> list[str]:
    """The table's lines as docs/results.md shows them, one a step: `NAME: prunelora ARGS` (and `NAME: writes FILE
    = ...` where a request file comes first)."""
    lines = []
    if table.request:
        r = table.request
        lines.append(f"{table.name}: writes {r.path} = default_rng({r.seed}).choice({r.population}, {r.size}, "
                     "replace=False)")
    return lines + [f"{table.name}: prunelora {command}" for command in table.commands]


def command_problems(table: Table) -> list[str]:
    """Each command parsed by prunelora's own parser and its configuration resolved, without running anything:
    a flag, a --set key or a value this version refuses is named here."""
    from prunelora.cli import build_lm_parser, build_parser, config_flags, task_of
    from prunelora.commands_causal_lm import config_for
    from prunelora.config.resolve import resolve
    from prunelora.errors import UserError

    problems = []
    for words in table.argv():
        try:
            if task_of(words) == "causal-lm":
                args = build_lm_parser().parse_args(words)
                if args.command != "bench":  # the bench's options are its own, not a run's configuration
                    config_for(args.command, None, config_flags(args))
            else:
                resolve(overrides=config_flags(build_parser().parse_args(words)))
        except (UserError, SystemExit) as error:
            problems.append(f"{table.name}: prunelora {shlex.join(words)}: {error}")
    return problems


def page_problems(page: Path = RESULTS_PAGE) -> list[str]:
    """Where docs/results.md and TABLES disagree: a table's line (listing) that is not a line of a code block of
    the page."""
    text = page.read_text()
    shown = {line.strip() for block in text.split("```")[1::2] for line in block.splitlines()}
    return [f"{table.name}: {page.name} does not show the line '{line}' in a code block"
            for table in TABLES for line in listing(table) if line not in shown]


def run(table: Table) -> int:
    """Runs the table's commands in order through the installed command's code path; the first failure stops."""
    from prunelora.cli import main

    if table.request:
        table.request.write()
    for words in table.argv():
        print(f"benchmarks.tables {table.name}: prunelora {shlex.join(words)}", file=sys.stderr, flush=True)
        code = main(words)
        if code:
            return code
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help="the table to measure again (see --list)")
    parser.add_argument("--list", action="store_true", help="print every table's name and commands")
    parser.add_argument("--check", action="store_true",
                        help="confirm that docs/results.md shows every table's commands as written")
    args = parser.parse_args(argv)
    if sum([bool(args.name), args.list, args.check]) != 1:
        parser.error("give one of: a table's name, --list, --check")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.list:
        print("\n".join(line for table in TABLES for line in listing(table)))
        return 0
    if args.check:
        problems = page_problems() + [p for table in TABLES for p in command_problems(table)]
        print("\n".join(problems) if problems else
              f"{RESULTS_PAGE.name} shows all {len(TABLES)} tables' commands, and this version accepts each")
        return 1 if problems else 0
    return run(by_name(args.name))


if __name__ == "__main__":
    sys.exit(main())
