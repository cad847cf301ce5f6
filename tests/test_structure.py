"""The shape of the project: srkit's layers import only downwards and know no model family (code or data), the
families' front-ends stay thin, every console script answers --help and runs, the docs quote the tolerances
the tests use, and nothing in the repository speaks of how it was made."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import ROOT
from srkit.core import registry, tolerances

FRONT_ENDS = ["carn/sample.py", "carn/train.py", "overnet/sample.py", "overnet/train.py"]
FRONT_END_MAX_LINES = 30
# srkit's layers, lowest first; a module may import its own layer's package and those of lower ranks
# (integrations: bridges to other tools' loaders, built on the API and everything below it)
LAYERS = {"core": 0, "data": 1, "weights": 1, "inference": 2, "report": 3, "training": 3, "cli": 4, "api": 4,
          "integrations": 5}
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _srkit_imports(path: Path) -> set[str]:
    """The srkit layers a module imports (``srkit.<layer>...``), from its syntax tree."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "srkit" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


def _layer(path: Path) -> str | None:
    rel = path.relative_to(ROOT / "srkit").parts
    return rel[0].removesuffix(".py") if rel[0].removesuffix(".py") in LAYERS else None


def test_srkit_has_layer_subpackages_and_imports_only_go_down():
    top = sorted(p.name for p in (ROOT / "srkit").iterdir() if not p.name.startswith(("_", ".")) and p.name != "py.typed")
    assert top == sorted([*(k for k in LAYERS if k != "api"), "api.py"]), top
    wrong = []
    for path in (ROOT / "srkit").rglob("*.py"):
        layer = _layer(path)
        if layer is None or path.name == "__main__.py":  # an entry point may call its command line
            continue
        for used in _srkit_imports(path):
            if used != layer and LAYERS[used] >= LAYERS[layer]:
                wrong.append(f"{path.relative_to(ROOT)} ({layer}) imports srkit.{used}")
    assert wrong == []


def _family_words() -> set[str]:
    words = set()
    for fam in registry.families():
        words |= {fam.name, *fam.models, *(p.name for p in fam.pretrained), *(e.name for e in fam.examples)}
        words |= {w for w in re.split(r"[^A-Za-z0-9_-]+", fam.title) if len(w) > 2}
    return {w.lower() for w in words}


def test_no_file_of_the_engine_names_a_model_family():
    """Code and data alike: the engine learns of families only through the registry."""
    pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, sorted(_family_words(), key=len,
                                                                                   reverse=True))) + r")(?![a-z0-9])",
                         re.IGNORECASE)
    hits = []
    for path in (ROOT / "srkit").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".c", ".json", ".md", ".txt", ".html"):
            for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if m := pattern.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {m.group(0)}")
    assert hits == []


def test_front_ends_are_thin():
    lines = {f: len((ROOT / f).read_text().splitlines()) for f in FRONT_ENDS}
    print(f"front-end lines: {lines}")
    assert max(lines.values()) < FRONT_END_MAX_LINES, lines


def test_no_sys_path_edits_and_no_module_named_like_its_package():
    code = [p for p in ROOT.rglob("*.py") if not {".venv", "tests", "build"} & set(p.relative_to(ROOT).parts)]
    assert [str(p) for p in code if "sys.path" in p.read_text()] == []
    for pkg in ("srkit", "carn", "overnet"):
        assert not (ROOT / pkg / f"{pkg}.py").exists()


def test_no_library_code_changes_the_allocator():
    """Process-wide allocator tricks (glibc's mallopt) are never made by the engine."""
    assert [str(p.relative_to(ROOT)) for p in (ROOT / "srkit").rglob("*.py") if "mallopt" in p.read_text()] == []


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_console_script_answers_help_in_process(name, capsys):
    module, func = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


def _doc_command_lines() -> list[str]:
    """Command lines the README (```sh blocks) and docs/ (indented blocks) show."""
    lines = [line for lang, body in re.findall(r"```(\w+)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
             if lang == "sh" for line in body.splitlines()]
    for doc in (ROOT / "docs").glob("*.md"):
        lines += [line[4:] for line in doc.read_text().splitlines() if line.startswith("    ")]
    return [line.strip() for line in lines if line.strip()]


def _programs() -> list[list[str]]:
    """What each documented command runs: a script, a module (-m) or a console script."""
    found = []
    for line in _doc_command_lines():
        words = [w for w in line.split() if not re.fullmatch(r"[A-Z_]+=\S*", w)]
        for i, w in enumerate(words):
            if w.endswith("python") or w.endswith("python3"):
                nxt = words[i + 1:i + 3]
                if nxt[:1] == ["-m"] and len(nxt) == 2 and nxt[1] not in ("venv", "pytest"):
                    found.append(["-m", nxt[1]])
                elif nxt and nxt[0].endswith(".py"):
                    found.append([nxt[0]])
                break
            if w.rsplit("/", 1)[-1].startswith("srkit-"):  # a console script, bare or as .venv/bin/srkit-...
                found.append([w.rsplit("/", 1)[-1]])
                break
            if w.endswith(".py") and i and words[0] in ("torchrun", "srun"):
                found.append([w])
                break
    return found


def test_every_command_in_the_docs_exists():
    cmds = {tuple(c) for c in _programs()}
    assert len(cmds) >= 6, cmds
    for cmd in cmds:
        if cmd[0].startswith("srkit-"):
            assert cmd[0] in SCRIPTS, cmd
        elif cmd[0] == "-m":
            assert importlib.util.find_spec(cmd[1]) is not None, cmd
        else:
            assert (ROOT / cmd[0]).is_file(), cmd


@pytest.mark.slow
def test_the_python_script_front_ends_answer_help():
    """The paper packages' scripts and the top-level tools, as users run them (a process each: few)."""
    for script in ["carn/sample.py", "carn/train.py", "overnet/sample.py", "overnet/train.py", "div2h5.py",
                   "checkpoint/download.py", "datasets/download.py"]:
        r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0 and "usage:" in r.stdout, (script, r.stderr[-800:])


@pytest.mark.parametrize("name", sorted(tolerances.ALL))
def test_the_docs_state_each_tolerance_the_tests_use(name):
    """docs/reproduction.md's tolerance table quotes srkit.core.tolerances (name and value) and a test uses it."""
    rows = [line for line in (ROOT / "docs" / "reproduction.md").read_text().splitlines()
            if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"docs/reproduction.md has no row for {name}"
    value = tolerances.ALL[name]
    shown = rows[0].split("|")[2].strip()
    assert float(Fraction(shown)) == pytest.approx(value), (shown, value)  # e.g. "1e-5", "1/255"
    assert any(name in p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_structure.py")


# words about the making of the project, not the project: nothing in the repository may say them
# (a word, not an identifier or a quoted API key: pytest's scope="session" and ONNX Runtime's "session.*" are not)
MAKING = re.compile(r"(?<![\w.\"'])(sessions?|(?:AI|coding|software) agents?|tickets?|issue #?\d+|the CEO|"
                    r"developers' guide)(?![\w\"'.])", re.IGNORECASE)


def test_nothing_in_the_repository_speaks_of_how_it_was_made():
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    hits = []
    for f in files:
        path = ROOT / f
        if path.suffix in (".png", ".jpg", ".so") or not path.is_file() or f == "tests/test_structure.py":
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if m := MAKING.search(line):
                hits.append(f"{f}:{i}: {m.group(0)}")
    assert hits == []
