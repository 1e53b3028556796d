"""The README's two set-up commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    return [line.strip() for b in blocks for line in b.splitlines()
            if line.strip().startswith("pip install")]


def test_ci_runs_the_readme_test_command():
    commands = readme_commands()
    test_cmd = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines(), (test_cmd, ci)


def test_readme_main_command_runs_an_example_that_exists():
    commands = readme_commands()
    main_cmd = next(c for c in commands if "pytest" not in c)
    script = re.search(r"python (examples/\S+\.py)", main_cmd).group(1)
    assert (ROOT / script).is_file()
