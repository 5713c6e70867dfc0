"""The README's set-up commands are what CI runs, and they install torch's CPU build first."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    lines = [line for line in body.splitlines() if line.strip() and not line.startswith("```")]
    assert len(lines) == 1, f"the README's {marker} must be one line"
    return lines[0].strip()


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert _block("test-command") in ci_lines


def test_both_commands_pin_the_cpu_torch_before_the_package():
    for marker in ("test-command", "main-command"):
        line = _block(marker)
        assert line.index("pip install torch==2.13.0") < line.index("pip install -e")


# -- every command the README (and docs/, tests/test_docs.py) shows runs as written ---------------------------------
import contextlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

SHARED = ROOT.parent / "shared"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
RUNNABLE = ("prunelora ", "python -m benchmarks", "torchrun ", "seq ")  # seq: writes a request file
# A command holding a <PLACEHOLDER> is the reader's to fill in (a GPU preset, several processes, a model from
# the hub): it is shown, not run, and its page says why. Every other command runs as written.
PLACEHOLDER = re.compile(r"<[A-Za-z][^<>\s]*>")


def page_blocks(path: Path) -> list[tuple[str, str]]:
    """("shell", line) or ("python", code) for every command block of a markdown page, in the page's order,
    placeholder commands included.

    Set-up lines keep only their prunelora part (the venv and pip steps are what CI itself runs);
    the test command is CI's own line and is not run again here.
    """
    test_line = _block("test-command")
    commands = []
    for lang, body in FENCE.findall(path.read_text()):
        if lang == "python":
            commands.append(("python", body))
            continue
        for line in body.splitlines():
            line = line.strip()
            if line == test_line:
                continue
            for part in line.split(" && "):
                if part.startswith(RUNNABLE):
                    commands.append(("shell", part))
    return commands


def page_commands(path: Path) -> list[tuple[str, str]]:
    """The commands of a page that run as written: every block's, but those with a placeholder."""
    return [(kind, command) for kind, command in page_blocks(path)
            if not (kind == "shell" and PLACEHOLDER.search(command))]


def readme_commands() -> list[tuple[str, str]]:
    return page_commands(ROOT / "README.md")


def inline_commands(path: Path) -> list[str]:
    """Inline code spans that start like a command (outside the fenced blocks)."""
    prose = FENCE.sub("", path.read_text())
    return re.findall(r"`((?:prunelora|python -m|torchrun) [^`]*)`", prose)


def test_the_readme_shows_whole_commands_only_in_blocks():
    """Inline code never holds a runnable command (it would escape the test below), only placeholders."""
    inline = inline_commands(ROOT / "README.md")
    assert all("<" in span for span in inline), inline


def test_readme_commands_parse():
    kinds = [kind for kind, _ in readme_commands()]
    assert kinds.count("python") >= 1 and kinds.count("shell") >= 2


class Workspace:
    """One fresh folder beside ../shared where the README's and the docs' commands run, in order, at smoke sizes
    ($PRUNELORA_PRESET). A command (or Python block) that already ran here is not run again: pages repeat the
    README's commands, and later pages build on the outputs of earlier ones."""

    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.work.mkdir()
        if SHARED.is_dir():
            (root / "shared").symlink_to(SHARED)
        self.env = {**os.environ, "PRUNELORA_PRESET": "smoke", "PYTHONPATH": str(ROOT),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.done: set[tuple[str, str]] = set()
        self.failed: dict[tuple[str, str], str] = {}  # command -> why, reported again by the pages that need it
        self.seconds: dict[str, float] = {}  # command -> its run time, for the slowest-commands summary

    def run(self, kind: str, command: str, where: str) -> None:
        key = (kind, " ".join(command.split()) if kind == "shell" else command)
        if key in self.done:
            return
        started = time.perf_counter()
        words = in_process_words(command) if kind == "shell" else None
        if words is not None:
            returncode, stderr = self.run_in_process(words)
        elif kind == "python":
            returncode, stderr = self.run_python_in_process(command)
        elif in_process_module(command) is not None:
            returncode, stderr = self.run_module_in_process(*in_process_module(command))
        else:
            argv = [sys.executable, "-c", command] if kind == "python" else ["bash", "-c", command]
            done = subprocess.run(argv, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=600)
            returncode, stderr = done.returncode, done.stderr
        self.seconds[f"{where}: {command.splitlines()[0]}"] = time.perf_counter() - started
        print(f"{time.perf_counter() - started:6.1f} s  {where}: {command.splitlines()[0]}")  # shown with -s / -rP
        if returncode != 0:
            self.failed[key] = f"{where}: {command}\n{stderr[-3000:]}"
            raise AssertionError(self.failed[key])
        self.failed.pop(key, None)
        self.done.add(key)

    def run_in_process(self, words: list[str]) -> tuple[int, str]:
        """`prunelora ARGS` as its console script runs it (`prunelora.cli.main(ARGS)`), in this process: in the
        workspace folder, with the workspace's environment, its output captured. The same code path as the
        installed command, without importing torch and its companions again for every command (3-4 s each)."""
        from prunelora.cli import main

        with self.inside() as stderr:
            returncode = main(words[1:])
        return returncode, stderr.getvalue()

    @contextlib.contextmanager
    def inside(self):
        """In the workspace folder with its preset, output captured (stderr returned); restored afterwards."""
        stderr, saved_env, saved_cwd = io.StringIO(), dict(os.environ), os.getcwd()
        os.environ.update({k: v for k, v in self.env.items() if k == "PRUNELORA_PRESET"})
        os.chdir(self.work)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
                yield stderr
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)

    def run_python_in_process(self, code: str) -> tuple[int, str]:
        """A Python block as `python -c` runs it, in this process (torch, peft and transformers are imported
        once per session, not per block): in the workspace folder, as __main__, its output captured. What a
        block registers (the methods page adds a method and an objective) is taken out again afterwards."""
        from prunelora.methods import METHODS
        from prunelora.methods.surgery import SURGERIES
        from prunelora.metrics.registry import EVIDENCE
        from prunelora.metrics.spec import METRICS
        from prunelora.objectives import OBJECTIVES

        registries = [(registry, registry.snapshot()) for registry in (METHODS, OBJECTIVES, SURGERIES)]
        metrics, evidence = dict(METRICS), dict(EVIDENCE)
        with self.inside() as stderr:
            try:
                exec(compile(code, "<block>", "exec"), {"__name__": "__main__"})
                returncode = 0
            except SystemExit as exc:
                returncode = exc.code if isinstance(exc.code, int) else 1
            except Exception:
                traceback.print_exc(file=stderr)
                returncode = 1
            finally:
                for registry, saved in registries:
                    registry.restore(saved)
                METRICS.clear()
                METRICS.update(metrics)
                EVIDENCE.clear()
                EVIDENCE.update(evidence)
        return returncode, stderr.getvalue()

    def run_module_in_process(self, module: str, args: list[str]) -> tuple[int, str]:
        """`python -m MODULE ARGS` (the repository's benchmarks) as runpy runs it, in this process."""
        import runpy

        saved_argv, saved_path = list(sys.argv), list(sys.path)
        sys.argv, sys.path = [module, *args], [str(ROOT), *sys.path]
        with self.inside() as stderr:
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                returncode = 0
            except SystemExit as exc:
                returncode = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:
                traceback.print_exc(file=stderr)
                returncode = 1
            finally:
                sys.argv, sys.path = saved_argv, saved_path
        return returncode, stderr.getvalue()

    def run_page(self, path: Path) -> None:
        for kind, command in page_commands(path):
            self.run(kind, command, path.relative_to(ROOT).as_posix())

    def prepare(self, path: Path) -> list[str]:
        """Run what an earlier page shows, for the pages after it: a command that failed is that page's failure
        (reported by its own test), tried once, and listed here for the later page's message."""
        failures = []
        for kind, command in page_commands(path):
            key = (kind, " ".join(command.split()) if kind == "shell" else command)
            if key in self.failed:
                failures.append(self.failed[key].splitlines()[0])
                continue
            try:
                self.run(kind, command, path.relative_to(ROOT).as_posix())
            except AssertionError:
                failures.append(self.failed[key].splitlines()[0])
        return failures


# Shell syntax a command would need bash for (pipes, redirects, variables, globs, several commands).
SHELL_SYNTAX = re.compile(r"[|&;<>$`*?(){}]")


def in_process_words(command: str) -> list[str] | None:
    """A plain `prunelora ...` command's words (quotes resolved as bash would), or None when it needs a shell."""
    words = shlex.split(command)
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", command)
    if not words or words[0] != "prunelora" or SHELL_SYNTAX.search(unquoted):
        return None
    return words


def in_process_module(command: str) -> tuple[str, list[str]] | None:
    """(module, args) of a plain `python -m benchmarks.X ...` command, or None when it needs a shell."""
    words = shlex.split(command)
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", command)
    if len(words) < 3 or words[:2] != ["python", "-m"] or not words[2].startswith("benchmarks.") or \
            SHELL_SYNTAX.search(unquoted):
        return None
    return words[2], words[3:]
