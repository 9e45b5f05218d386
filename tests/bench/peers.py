"""The peers' own virtualenv (var/bench-peers): what a user would pick instead of mlbus, installed by the
benchmark, run as separate processes on files the benchmark writes, never imported by mlbus."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.bus.settings import PROJECT_ROOT

VENV = PROJECT_ROOT / "var" / "bench-peers"
FEAST_VENV = PROJECT_ROOT / "var" / "bench-peers-feast"     # Feast pins its own pandas, pyarrow, dask, SQLAlchemy
SCRIPTS = Path(__file__).parent / "peer"
# Evidently 0.7 does not import with pandas 3, so this virtualenv keeps pandas 2.3; scikit-learn is the
# project's own version, so both sides load the same models.
REQUIREMENTS = ["pandas>=2.3,<3", "evidently==0.7.23", "mlflow>=3,<4", "pandera>=0.20", "great_expectations>=1,<2",
                "pyarrow", "scipy"]
FEAST_REQUIREMENTS = ["feast==0.67.0"]


def python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def requirements(venv: Path) -> list[str]:
    if venv == FEAST_VENV:
        return FEAST_REQUIREMENTS
    import sklearn

    return REQUIREMENTS + [f"scikit-learn=={sklearn.__version__}"]


def ensure(say=print, venv: Path = VENV) -> Path:
    """Create a peers' virtualenv once (a marker file records what it holds)."""
    wanted = requirements(venv)
    marker = venv / ".installed"
    if marker.exists() and marker.read_text().split("\n") == wanted:
        return python(venv)
    say(f"[bench] installing the peers into {venv} (once): {', '.join(wanted)}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python(venv)), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python(venv)), "-m", "pip", "install", "-q", *wanted], check=True)
    marker.write_text("\n".join(wanted))
    return python(venv)


def run(script: str, *args: str, timeout: float = 1800, venv: Path = VENV) -> dict:
    """Run tests/bench/peer/<script> with a peers' Python; its last stdout line is a JSON object."""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONHASHSEED": "0",
           "FEAST_USAGE": "False"}
    result = subprocess.run([str(python(venv)), str(SCRIPTS / script), *args], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"peer {script} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
