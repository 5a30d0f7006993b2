"""The package graph: one installed namespace, and floors that import only downwards.

Floors (ARCHITECTURE.md), lowest first: ``core`` (plumbing) → ``imaging`` → ``store`` →
``generators`` | ``validation`` → ``workers`` / ``api`` → the front door (``synthcohort/``
itself: cli, demo, client, cohort_dataset). ``generators`` and ``validation`` are independent of
each other (a gate must not know how a cohort was made), and ``workers`` does not know the HTTP
API, though the API hands jobs to the workers. Imports inside functions count as much as those
at the top: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]

FLOOR = {"core": 0, "imaging": 1, "store": 2, "generators": 3, "validation": 3, "workers": 4, "api": 4, "front": 5}
FORBIDDEN_SIDEWAYS = {("generators", "validation"), ("validation", "generators"), ("workers", "api")}


def _floor_of_module(module: str) -> str | None:
    """The floor of an absolute module name, None outside synthcohort."""
    parts = module.split(".")
    if parts[0] != "synthcohort":
        return None
    if len(parts) > 1 and parts[1] in FLOOR and parts[1] != "front":
        return parts[1]
    return "front"


def _source_files() -> dict[Path, str]:
    """Every installed source file with the dotted name of the module it becomes."""
    files = {}
    for package, folder in PACKAGE_DIR.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("")
            files[path] = ".".join((package, *rel.parts)).removesuffix(".__init__")
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; use the absolute synthcohort.… name"
            found += [(node.lineno, node.module or "")]
    return found


def test_lower_floors_never_import_higher_ones():
    violations = []
    for path, module in _source_files().items():
        here = _floor_of_module(module)
        for line, imported in _imports(path):
            there = _floor_of_module(imported)
            if there is None or there == here:
                continue
            if FLOOR[there] > FLOOR[here] or (here, there) in FORBIDDEN_SIDEWAYS:
                violations.append(f"{path.relative_to(REPO)}:{line} ({here}) imports {imported} ({there})")
    assert not violations, "imports against the floors:\n" + "\n".join(violations)


def test_the_check_sees_a_violation(tmp_path):
    """The layer rule itself: core importing the API, generators importing validation are caught."""
    assert FLOOR[_floor_of_module("synthcohort.api.app")] > FLOOR[_floor_of_module("synthcohort.core.errors")]
    assert ("generators", "validation") in FORBIDDEN_SIDEWAYS
    assert _floor_of_module("synthcohort") == "front" and _floor_of_module("synthcohort.demo") == "front"
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from synthcohort.api.app import create_app\n")
    assert _imports(bad) == [(2, "synthcohort.api.app")]


def test_the_api_and_the_cli_start_without_torch():
    """torch is imported at one boundary (CLI commands, the generator registry, the worker's stage
    functions): the API process and the CLI's start stay light."""
    code = ("import sys, synthcohort.api.app, synthcohort.workers.tasks, synthcohort.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'monai', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_no_old_top_level_names_are_imported():
    """Nothing imports ``api``, ``store``, … as top-level packages any more."""
    old = re.compile(r"^\s*(?:from|import)\s+(api|store|validation|workers|imaging|generators)\b", re.M)
    offenders = [str(p.relative_to(REPO)) for folder in ("tests", "benchmarks", *PACKAGE_DIR.values())
                 for p in (REPO / folder).rglob("*.py") if old.search(p.read_text())]
    assert not offenders


def test_no_test_or_benchmark_edits_sys_path():
    offenders = [str(p.relative_to(REPO)) for folder in ("tests", "benchmarks") for p in (REPO / folder).rglob("*.py")
                 if p != Path(__file__) and "sys.path" in p.read_text()]
    assert not offenders


@pytest.mark.parametrize("script", sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem != "__init__"))
def test_every_benchmark_imports(script):
    """Benchmarks are not run by the suite; at least the names they import must exist."""
    importlib.import_module(f"benchmarks.{script}")


def test_every_package_folder_is_listed_for_setuptools():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {module for path, module in _source_files().items() if path.name == "__init__.py"}
    assert on_disk == listed


# Files that are not Python modules, in folders that are not packages.
DATA_FILES = ("synthcohort/validation/templates/report.html", "synthcohort/api/static/shell.html",
              "synthcohort/api/static/ui.js", "synthcohort/api/static/ui.css",
              "synthcohort/store/migrations/script.py.mako")


@pytest.mark.slow
def test_a_wheel_built_without_git_carries_the_data_files(tmp_path):
    """The docker images build from a copy without .git, where setuptools-scm lists no files:
    the report template and the review page must still be in the wheel."""
    src = tmp_path / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True, timeout=120)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True, timeout=120)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("synthcohort-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert [f for f in DATA_FILES if f not in names] == []


@pytest.mark.slow
def test_a_built_wheel_installs_one_top_level_package(tmp_path):
    """Built from a clone of the committed tree, so that no stale build/ folder can leak into it."""
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(REPO), str(src)], check=True, timeout=120)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("synthcohort-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"synthcohort"}
    for needed in ("synthcohort/api/routers/cohorts.py", *DATA_FILES, "synthcohort/core/version.py",
                   "synthcohort/generators/nets/layers.py"):
        assert needed in names
    # the version carries the commit it was built from (setuptools-scm), which code_version reads back
    assert re.search(r"synthcohort-[^-]+\+g[0-9a-f]{7,}", wheel.name), wheel.name
