"""Every command and Python block of the README and the docs (docs/*.md, the MkDocs site) runs as written.

The README's commands run first, then each page's in the order of mkdocs.yml's navigation, all in one workspace
(tests/test_readme.py's Workspace), every distinct command once per session, so a page may use what the README or
an earlier page wrote (runs/orig, runs/pl). The tests share this file so that pytest-xdist (`--dist loadfile`)
keeps them on one worker. Commands with a <PLACEHOLDER> are shown, not run; their flags are still checked
against the parser.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .test_readme import (
    PLACEHOLDER,
    ROOT,
    SHARED,
    Workspace,
    _block,
    inline_commands,
    page_blocks,
    page_commands,
)

DOCS = ROOT / "docs"


def _nav_files(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    return [f for item in nav for f in _nav_files(item)]


def docs_pages() -> list[Path]:
    """The pages in the navigation's order, then any page the navigation leaves out."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = [DOCS / name for name in _nav_files(config["nav"]) if name.endswith(".md")]
    return pages + sorted(p for p in DOCS.glob("*.md") if p not in pages)


@pytest.fixture(scope="session")
def doc_workspace(tmp_path_factory):
    """One workspace per session (per worker): the README's outputs are the docs' inputs."""
    return Workspace(tmp_path_factory.mktemp("doc_commands"))


@pytest.mark.slow
def test_every_readme_command_runs_as_written(doc_workspace):
    """Each block in order, in one fresh folder beside ../shared, at smoke sizes ($PRUNELORA_PRESET)."""
    doc_workspace.run_page(ROOT / "README.md")
    work = doc_workspace.work
    assert (work / "runs" / "digits" / "results.md").is_file()
    assert (work / "runs" / "orig" / "seed0" / "models" / "resnet18" / "original.safetensors").is_file()


def test_every_page_in_the_navigation_exists():
    missing = [p.name for p in docs_pages() if not p.is_file()]
    assert not missing, missing


def test_the_docs_show_whole_commands_only_in_blocks():
    """As in the README: inline code never holds a runnable command, only placeholders."""
    for page in docs_pages():
        inline = inline_commands(page)
        assert all("<" in span for span in inline), (page.name, inline)


def test_the_docs_repeat_the_readme_set_up_lines_exactly():
    for page in ("index.md", "getting-started.md"):
        text = (DOCS / page).read_text()
        for marker in ("main-command", "test-command"):
            assert _block(marker) in text, (page, marker)


def test_docs_commands_parse():
    kinds = [kind for page in docs_pages() for kind, _ in page_commands(page)]
    assert kinds.count("python") >= 4 and kinds.count("shell") >= 15


def test_placeholder_commands_name_real_flags():
    """A command that is shown but not run still names a real subcommand and only flags it accepts."""
    from prunelora.cli import build_lm_parser, build_parser, task_of

    def subcommands_of(parser):
        return {name: sub for action in parser._actions if isinstance(getattr(action, "choices", None), dict)
                for name, sub in action.choices.items()}

    parsers = {"image-classification": subcommands_of(build_parser()), "causal-lm": subcommands_of(build_lm_parser())}
    shown = [(page.name, command) for page in docs_pages() for kind, command in page_blocks(page)
             if kind == "shell" and PLACEHOLDER.search(command)]
    assert shown, "the docs show no placeholder command (a GPU preset, torchrun, a hub model)"
    for page, command in shown:
        words = command.split()
        if words[0] == "torchrun":
            words = words[words.index("prunelora"):]
        subcommands = parsers[task_of(words)]
        assert words[0] == "prunelora" and words[1] in subcommands, (page, command)
        known = {s for action in subcommands[words[1]]._actions for s in action.option_strings}
        flags = [w.split("=")[0] for w in words if w.startswith("--")]
        assert set(flags) <= known, (page, command, set(flags) - known)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "cifar-10-batches-py").is_dir(),
                    reason="the docs' CIFAR-10 commands name ../shared/data, absent here")
@pytest.mark.slow
@pytest.mark.parametrize("page", [p.name for p in docs_pages() if page_commands(p)])
def test_every_docs_command_runs_as_written(page, doc_workspace):
    """The README's commands and the earlier pages' first (each once per session), then this page's."""
    pages = docs_pages()
    earlier = [ROOT / "README.md", *pages[:[p.name for p in pages].index(page)]]
    failed_before = [failure for path in earlier for failure in doc_workspace.prepare(path)]
    try:
        doc_workspace.run_page(DOCS / page)
    except AssertionError as error:
        if failed_before:
            raise AssertionError(f"{error}\n(earlier commands that failed, which this page may need: "
                                 f"{'; '.join(failed_before)})") from None
        raise


# -- no references to the project's own tracker or working process ---------------------------------------------------
import re  # noqa: E402

# A reference to another project's issue or pull request is allowed where that project is named right before it.
OTHER_PROJECTS = ("open-unlearning", "tofu", "muse_bench", "wmdp", "peft", "transformers", "pytorch", "torch",
                  "torch-pruning", "scikit-learn", "numpy", "safetensors", "mkdocs", "mkdocstrings", "rouge-score",
                  "datasets")
OTHER_PROJECT_REFERENCE = re.compile(
    r"(?:\b[\w.-]+/[\w.-]+|(?<![\w.-])(?:" + "|".join(map(re.escape, OTHER_PROJECTS)) + r"))(?:'s)?"
    r"\s+(?:issue|pull request|PR)s?\s*#?\s*\d+"
    r"|\b[\w.-]+/[\w.-]+#\d+", re.I)
# Words of the operating system's vocabulary that read like process words: (phrase, what it means there).
TECHNICAL_PHRASES = (("started in its own session", "a POSIX session (setsid), in src/prunelora/machine.py"),)
PROCESS_REFERENCES = (
    (re.compile(r"\b(?:issue|pull request|PR)s?\s*#?\s*\d+", re.I), "an issue or pull-request number"),
    (re.compile(r"(?:^|(?<=[\s(\[,;]))#\d+(?![\w-])", re.M), "a #N tracker reference"),
    (re.compile(r"\bstop\s+#?\d+\b", re.I), "a numbered stop"),
    (re.compile(r"\bsessions?\b", re.I), "a working session"),
    (re.compile(r"\bthe\s+lead\b|\blead\s+engineer\b", re.I), "the lead"),
    (re.compile(r"\(helpers?\)|\bhelpers?(?:'s)?\s+(?:sessions?|tasks?|briefs?|reports?)\b"
                r"|\b(?:another|the other|a|one)\s+helper\s+(?:owns|wrote|writes|measured|edits|edited)\b", re.I),
     "a helper of the working process"),
)


def process_references(text: str) -> list[tuple[int, str, str]]:
    """(line, what, the matched text) of every reference to the project's own tracker or process in `text`."""
    allowed = [m.span() for m in OTHER_PROJECT_REFERENCE.finditer(text)]
    allowed += [m.span() for phrase, _ in TECHNICAL_PHRASES for m in re.finditer(re.escape(phrase), text)]
    found = []
    for pattern, what in PROCESS_REFERENCES:
        for m in pattern.finditer(text):
            if not any(start <= m.start() and m.end() <= end for start, end in allowed):
                found.append((text.count("\n", 0, m.start()) + 1, what, " ".join(m.group().split())))
    return sorted(found)


def test_no_internal_issue_numbers_or_process_words():
    """The README, the changelog, the docs (with the hooks that generate pages) and the package's code and
    configuration say what is true of this version, never where it came from in the project's own tracker or
    process: no issue or pull-request number ("issue 20", "issue #20", "PR 3"), no bare "#20" after a space or
    an opening bracket (markdown anchors such as "#500-named-images" and colours such as "#999" are not), no
    numbered stop ("stop 3"), no "session", no "the lead" or "lead engineer", no helper of the process
    ("(helper)", "a helper wrote", "helper session"; a helper command or function is ordinary code).

    Allowed: another project's issue or pull request named right before its number ("open-unlearning issue
    #178", "huggingface/peft issue 123", "locuslab/tofu#12"; the projects: OTHER_PROJECTS or any owner/name), and
    the phrases of TECHNICAL_PHRASES, where such a word means something else. The rule is first checked on
    sentences written for it, then each finding in the files is named with its file and line.
    """
    flagged = ["Measured after issue 20's change.", "see Issue #21", "(#22)", "PR 7 added it", "stop 3: the table",
               "as the lead re-measures", "over two sessions", "a note (helper)", "another helper wrote it",
               "prunelora issue 4", "issue\n20"]
    allowed = ["open-unlearning issue #178", "huggingface/peft issue 123", "locuslab/tofu#12", "[x](#500-named-cifar)",
               'color="#999"', "a helper command rewrites the page", "the issues of the field", "trap 8",
               "started in its own session, where nice does not reach"]
    assert all(process_references(text) for text in flagged), [t for t in flagged if not process_references(t)]
    assert not any(process_references(text) for text in allowed), [t for t in allowed if process_references(t)]

    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md")), *sorted((DOCS / "hooks").glob("*.py")),
             *sorted((ROOT / "src" / "prunelora").rglob("*.py")), *sorted((ROOT / "src" / "prunelora").rglob("*.yaml"))]
    findings = [f"{path.relative_to(ROOT)}:{line}: {what}: {match!r}"
                for path in files if path.is_file() for line, what, match in process_references(path.read_text())]
    assert not findings, "references to the project's own tracker or process:\n" + "\n".join(findings)
