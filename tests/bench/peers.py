"""The peers' own virtualenv (var/bench-peers): what a user would pick instead of mlbus, installed by the
benchmark, run as separate processes on files the benchmark writes, never imported by mlbus."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.bus.settings import PROJECT_ROOT

VENV = PROJECT_ROOT / "var" / "bench-peers"
SCRIPTS = Path(__file__).parent / "peer"
# Evidently 0.7 does not import with pandas 3, so this virtualenv keeps pandas 2.3; scikit-learn is the
# project's own version, so both sides load the same models.
REQUIREMENTS = ["pandas>=2.3,<3", "evidently==0.7.23", "mlflow>=3,<4", "pandera>=0.20", "great_expectations>=1,<2",
                "pyarrow", "scipy"]


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(say=print) -> Path:
    """Create the peers' virtualenv once (a marker file records what it holds)."""
    import sklearn

    wanted = REQUIREMENTS + [f"scikit-learn=={sklearn.__version__}"]
    marker = VENV / ".installed"
    if marker.exists() and marker.read_text().split("\n") == wanted:
        return python()
    say(f"[bench] installing the peers into {VENV} (once): {', '.join(wanted)}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", *wanted], check=True)
    marker.write_text("\n".join(wanted))
    return python()


def run(script: str, *args: str, timeout: float = 1800) -> dict:
    """Run tests/bench/peer/<script> with the peers' Python; its last stdout line is a JSON object."""
    env = {"PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONHASHSEED": "0"}
    result = subprocess.run([str(python()), str(SCRIPTS / script), *args], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"peer {script} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
