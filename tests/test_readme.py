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
