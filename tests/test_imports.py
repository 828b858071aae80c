"""Every module of medcore and every view imports in the installed environment.

A missing dependency in pyproject.toml (as `shap` once was) fails here, by name, instead of as a traceback on
the Case notes page. Views are imported as plain modules: they hold no Streamlit calls at import time
beyond the page body, so they are compiled and their imports resolved without running the page.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import medcore

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {"mlflow"}  # the `mlflow` extra: imported lazily, only when MEDCORE_MLFLOW_TRACKING_URI is set


def _medcore_modules() -> list[str]:
    """Every module, but entry points (`__main__`: importing one runs it) and Alembic's env.py (run by Alembic)."""
    return sorted(m.name for m in pkgutil.walk_packages(medcore.__path__, prefix="medcore.")
                  if not m.name.endswith((".__main__", ".migrations.env")))


def _view_files() -> list[Path]:
    return sorted([ROOT / "app.py", *(ROOT / "views").glob("*.py")])


def test_the_package_has_the_modules_we_expect() -> None:
    names = _medcore_modules()
    assert {"medcore.cli", "medcore.notes.explain", "medcore.imaging.service", "medcore.jobs"} <= set(names)


@pytest.mark.import_only
@pytest.mark.parametrize("name", _medcore_modules())
def test_every_medcore_module_imports(name: str) -> None:
    importlib.import_module(name)


@pytest.mark.import_only
@pytest.mark.parametrize("path", _view_files(), ids=lambda p: p.name)
def test_every_import_of_every_view_resolves(path: Path) -> None:
    """Each module a view (or app.py) imports, at top level or inside a function, can be imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in OPTIONAL:
                continue
            if name.split(".")[0] == "views":
                assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), f"{path.name}: {name} missing"
                continue
            importlib.import_module(name)


def test_declared_dependencies_cover_every_third_party_import() -> None:
    """Each third-party import of the product code belongs to a distribution pyproject.toml declares."""
    import re
    from importlib import metadata

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    declared = {norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    owners = metadata.packages_distributions()
    missing = set()
    files = [*(ROOT / "medcore").rglob("*.py"), *_view_files()]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in {"medcore", "views"} or top in OPTIONAL:
                    continue
                dists = {norm(d) for d in owners.get(top, [])}
                if not dists & declared:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_the_readme_counts_the_tests_as_they_are(request) -> None:
    """The README's summary of the suite (how many tests assert behaviour, how many only import) is the collected
    suite's; checked only when the whole suite was collected."""
    import re

    items = request.session.items
    collected = {Path(str(item.fspath)).name for item in items}
    if collected != {p.name for p in Path(__file__).parent.glob("test_*.py")} or request.config.option.markexpr \
            or request.config.option.keyword:
        pytest.skip("only a part of the suite was collected")
    imports = sum(1 for item in items if item.get_closest_marker("import_only"))
    text = (Path(__file__).parents[1] / "README.md").read_text()
    stated = re.search(r"The suite holds (\d+) tests: (\d+) assert behaviour and (\d+) only check", text)
    assert stated and tuple(map(int, stated.groups())) == (len(items), len(items) - imports, imports)
