"""Every mlbus command pays for what the CLI imports before it parses its arguments: the stores' SQLModel and
pandas, the models' scikit-learn or the offline store's pyarrow loaded there cost each command ~0.6 s (audit prove
took 1.5 s, 0.6 s of it importing the feature store for nothing). The command modules load them when a command
that needs them runs."""
from __future__ import annotations

import json
import subprocess
import sys

from services.bus.settings import PROJECT_ROOT

HEAVY = ("pandas", "numpy", "sqlalchemy", "sqlmodel", "pyarrow", "sklearn", "scipy", "faust", "dask")


def test_the_cli_loads_no_heavy_library_before_a_command_runs():
    probe = ("import json, sys, services.cli.main; "
             f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout) == []
