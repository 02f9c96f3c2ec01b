"""The README's promises: its two opening commands, and every Python snippet runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def _opening_commands() -> list[str]:
    lines = README.splitlines()
    assert lines[0].startswith("# "), "README must start with its title"
    commands = []
    for line in lines[1:]:
        if not line.strip():
            if commands:
                break
            continue
        assert line.startswith("    "), f"expected an indented command line, got {line!r}"
        commands.append(line.strip())
    return commands


def test_readme_opens_with_exactly_two_commands():
    install_run, install_test = _opening_commands()
    assert install_run.endswith("jaxzip run")
    assert "pip install" in install_run and "pip install" in install_test
    assert install_test.endswith("-m pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    _, install_test = _opening_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install_test in ci.splitlines()


def test_packaged_default_config_is_the_one_documented():
    assert "jaxzip/config/default.toml" in README
    assert (ROOT / "jaxzip" / "config" / "default.toml").is_file()


def test_there_are_snippets():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index, capsys):
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), {})
    printed = capsys.readouterr().out
    # A "# ..." comment line right after a print(...) line states what it prints.
    expected = re.findall(r"^print\(.*\n# (.*)$", SNIPPETS[index], flags=re.MULTILINE)
    for line in expected:
        assert line in printed.splitlines()
