"""The shape of the project: the engine knows no family, front-ends stay thin, the package installs with its
console scripts, and the README states the tolerances the tests use and only commands that run."""
from __future__ import annotations

import ast
import re
from fractions import Fraction
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from srkit import registry, tolerances

BIN = Path(sys.executable).parent
FRONT_ENDS = ["carn/sample.py", "carn/train.py", "overnet/sample.py", "overnet/train.py"]
FRONT_END_MAX_LINES = 30


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_engine_imports_no_model_family():
    families = {f.name for f in registry.families()}
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & families) for p in (ROOT / "srkit").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_sys_path_edits_and_no_module_named_like_its_package():
    code = [p for p in ROOT.rglob("*.py") if not {".venv", "tests", "build"} & set(p.relative_to(ROOT).parts)]
    assert [str(p) for p in code if "sys.path" in p.read_text()] == []
    for pkg in ("srkit", "carn", "overnet"):
        assert not (ROOT / pkg / f"{pkg}.py").exists()


def test_front_ends_are_thin():
    lines = {f: len((ROOT / f).read_text().splitlines()) for f in FRONT_ENDS}
    print(f"front-end lines: {lines}")
    assert max(lines.values()) < FRONT_END_MAX_LINES, lines


def test_console_scripts_run():
    for name in ("srkit-sample", "srkit-upscale", "srkit-train", "srkit-export", "srkit-download", "srkit-convert",
                 "srkit-benchmarks"):
        r = subprocess.run([str(BIN / name), "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage:" in r.stdout, (name, r.stderr[-500:])
    r = subprocess.run([str(BIN / "srkit-complexity")], capture_output=True, text=True, check=True)
    assert "| carn_m | x4 | 414,811 | 32.5 G |" in r.stdout and "| overnet_x4 | x4 |" in r.stdout


def _readme_commands() -> list[list[str]]:
    """Each `.venv/bin/python X.py ...` / `-m module` / console-script command the README shows."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "README.md").read_text())
    found = []
    for m in re.finditer(r"^\s{4}(?:\.venv/bin/)?(python|srkit-[a-z]+|torchrun [^\n]*?)\s+(-m \S+|\S+\.py)?", text, re.M):
        prog, target = m.group(1), m.group(2)
        if prog.startswith("torchrun"):
            line = text[m.start():text.find("\n", m.start())]
            prog, target = "python", re.search(r"\S+\.py", line).group(0)
        if prog == "python" and target:
            found.append([sys.executable, *target.split()])
        elif prog.startswith("srkit-"):
            found.append([str(BIN / prog)])
    return found


def test_every_command_in_the_readme_exists():
    cmds = _readme_commands()
    assert len(cmds) >= 10, cmds
    for cmd in {tuple(c) for c in cmds}:
        r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, (cmd, r.stderr[-800:])


@pytest.mark.parametrize("name", sorted(tolerances.ALL))
def test_readme_states_each_tolerance_the_tests_use(name):
    """The README's tolerance table quotes srkit.tolerances (name and value) and the tests use the name."""
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README has no row for {name}"
    value = tolerances.ALL[name]
    shown = rows[0].split("|")[2].strip()
    assert float(Fraction(shown)) == pytest.approx(value), (shown, value)  # e.g. "1e-5", "1/255"
    assert any(name in p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_structure.py")
