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


# -- every command the README shows runs as written -----------------------------------------------------------------
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

SHARED = ROOT.parent / "shared"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def readme_commands() -> list[tuple[str, str]]:
    """("shell", line) or ("python", code) for every command block, in the README's order.

    Set-up lines keep only their prunelora part (the venv and pip steps are what CI itself runs);
    the test command is CI's own line and is not run again here.
    """
    text = (ROOT / "README.md").read_text()
    test_line = _block("test-command")
    commands = []
    for lang, body in FENCE.findall(text):
        if lang == "python":
            commands.append(("python", body))
            continue
        for line in body.splitlines():
            line = line.strip()
            if line == test_line:
                continue
            for part in line.split(" && "):
                if part.startswith(("prunelora ", "python -m benchmarks", "torchrun ")):
                    commands.append(("shell", part))
    return commands


def test_the_readme_shows_whole_commands_only_in_blocks():
    """Inline code never holds a runnable command (it would escape the test below), only placeholders."""
    prose = FENCE.sub("", (ROOT / "README.md").read_text())
    inline = re.findall(r"`((?:prunelora|python -m) [^`]*)`", prose)
    assert all("<" in span for span in inline), inline


def test_readme_commands_parse():
    kinds = [kind for kind, _ in readme_commands()]
    assert kinds.count("python") >= 1 and kinds.count("shell") >= 8


@pytest.mark.skipif(not (SHARED / "data" / "cifar-10-batches-py").is_dir(),
                    reason="the README's CIFAR-10 commands name ../shared/data, absent here")
def test_every_readme_command_runs_as_written(tmp_path):
    """Each block in order, in one fresh folder beside ../shared, at smoke sizes ($PRUNELORA_PRESET)."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    env = {**os.environ, "PRUNELORA_PRESET": "smoke", "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for kind, command in readme_commands():
        argv = [sys.executable, "-c", command] if kind == "python" else ["bash", "-c", command]
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert (work / "runs" / "pl" / "seed0" / "models" / "resnet18" / "prunelora_e10_adapter").is_dir()
    assert (work / "runs" / "eval-logits.npz").is_file()
