"""MkDocs hook: the CLI reference page, generated from the parser at build time.

docs/cli.md holds the marker `<!-- cli-reference -->`; this hook replaces it with each command's
`--help` text, taken from `prunelora.cli.build_parser()` through argparse's own API only (the
parser's actions and, for a subparsers action, its `choices`), so it follows whatever the parser
accepts without knowing how the parser is built.
"""
from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"
WIDTH = "100"  # argparse wraps help to $COLUMNS: a fixed width keeps the page the same on every machine


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of every subcommand, in the order they were added; aliases once."""
    found, seen = [], set()
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if not isinstance(choices, dict):
            continue
        for name, sub in choices.items():
            if isinstance(sub, argparse.ArgumentParser) and id(sub) not in seen:
                seen.add(id(sub))
                found.append((name, sub))
    return found


def _section(title: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    lines = [f"{'#' * level} `{title}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in _subcommands(parser):
        lines += _section(f"{title} {name}", sub, level + 1)
    return lines


def cli_reference() -> str:
    """Markdown for every command: the top-level help, then each subcommand's (recursively)."""
    from prunelora.cli import build_lm_parser, build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        parser.prog = "prunelora"
        language = build_lm_parser()  # `--task causal-lm`: the same commands with the language-model task's flags
        language.prog = "prunelora"
        return "\n".join(_section("prunelora", parser, 2) + _section("prunelora --task causal-lm", language, 2))
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
