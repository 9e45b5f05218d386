"""A first run is quiet: building mlbus's package (its metadata, what `pip install -e .` in scripts/setup does
first, and its wheel, from a copy of the tree) prints no warning. The build runs with setuptools' own backend in a
subprocess, every warning shown; any line saying warning or deprecated is a defect. No network: the venv's
setuptools (the test extra pins the build's)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from services.bus.settings import PROJECT_ROOT

NOISE = re.compile(r"warn|deprecat", re.IGNORECASE)
BUILD = ("import setuptools.build_meta as backend; "
         "print(backend.prepare_metadata_for_build_editable('out'))")
WHEEL = "import setuptools.build_meta as backend; print(backend.build_wheel('out'))"


def build_metadata(project: Path, step: str = BUILD) -> tuple[str, Path]:
    """The backend's output while it prepares the metadata (or the wheel) in `project`, and what it wrote."""
    (project / "out").mkdir()
    result = subprocess.run([sys.executable, "-W", "always", "-c", step], cwd=project, capture_output=True,
                            text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "always"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output, project / "out" / result.stdout.strip().splitlines()[-1]


def project_copy(tmp_path: Path, pyproject: str) -> Path:
    """The files the metadata is made from (pyproject.toml, the README it embeds, the package's root)."""
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(pyproject)
    shutil.copy(PROJECT_ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def test_building_the_package_metadata_prints_no_warning(tmp_path):
    output, dist_info = build_metadata(project_copy(tmp_path, (PROJECT_ROOT / "pyproject.toml").read_text()))
    assert not [line for line in output.splitlines() if NOISE.search(line)], output
    metadata = (dist_info / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata and "Name: mlbus" in metadata


def test_building_the_wheel_from_the_tree_prints_no_warning(tmp_path):
    project = tmp_path / "mlbus"
    shutil.copytree(PROJECT_ROOT / "services", project / "services",
                    ignore=shutil.ignore_patterns("node_modules", "target", "__pycache__", "*.so"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    output, wheel = build_metadata(project, WHEEL)
    assert not [line for line in output.splitlines() if NOISE.search(line)], output
    assert wheel.name.startswith("mlbus-") and wheel.suffix == ".whl"


def test_the_check_sees_the_warning_the_old_license_table_gave(tmp_path):
    """The check above can fail: the license as a TOML table (as it was) makes setuptools warn."""
    old = (PROJECT_ROOT / "pyproject.toml").read_text().replace('license = "Apache-2.0"',
                                                                'license = { text = "Apache-2.0" }')
    output, _ = build_metadata(project_copy(tmp_path, old))
    assert any(NOISE.search(line) for line in output.splitlines()), output
