"""The architecture rules, checked with the tests so they cannot rot.

- Layers point down (import-linter's contract in pyproject.toml): views -> CLI -> job runner -> training ->
  services -> registry -> models and explainers -> foundations. Serving code never imports training.
- Views read models only through their common face (artifacts.ModelInfo): no metadata keys, no model files.
- Only medcore.config reads the environment.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_point_down() -> None:
    from importlinter.cli import lint_imports  # import-linter is in the [test] extra; CI installs it

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_views_use_the_model_face_not_its_files_or_metadata() -> None:
    forbidden = re.compile(r"\.meta\[|\.meta\.get\(|\.artifact\b|np\.load|\.npz|meta\.json|model_card\.md")
    offences = [f"{path.name}:{n}: {line.strip()}" for path in [ROOT / "app.py", *sorted((ROOT / "views").glob("*.py"))]
                for n, line in enumerate(path.read_text().splitlines(), 1) if forbidden.search(line)]
    assert not offences, offences


def test_only_config_reads_the_environment() -> None:
    reads = re.compile(r"os\.environ\.get|os\.environ\[|os\.getenv")
    offences = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "medcore").rglob("*.py"))
                if path.name != "config.py"
                for n, line in enumerate(path.read_text().splitlines(), 1) if reads.search(line)]
    assert not offences, offences
