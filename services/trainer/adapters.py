"""The trainer's edges: data snapshots, the artifact store, code version and environment, its history."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess

import pandas as pd

from services.bus import Bus
from services.domain import SnapshotStore, spec_problem
from services.bus.replay import fold_history
from services.bus.settings import PROJECT_ROOT

from .decide import Verify, act_refusal
from .view import TrainerView

HISTORY = ("mlbus.ModelSpecDefined", "mlbus.DataValidated", "mlbus.ModelTrained", "mlbus.TrainingRun",
           "mlbus.TrainingRequested", "mlbus.Alert", "mlbus.ModelLifecycle")


def rebuild_view(bus: Bus, verify: Verify) -> TrainerView:
    """Everything the trainer knew before a restart, read back from the topics (a spec whose signature
    failed counts no more than when it arrived)."""
    view = TrainerView()
    fold_history(bus, HISTORY, view.apply,
                 keep=lambda r: r.record != "mlbus.ModelSpecDefined" or (
                     act_refusal(r, verify) is None and spec_problem(r.value) is None))
    return view


def training_frames(store: SnapshotStore):
    """A loader of the batches' snapshots, hash-checked and concatenated in the recorded order."""
    def load(batches: list[dict]) -> pd.DataFrame:
        frames = [store.load(b["uri"], b["sha256"], "parquet" if b["uri"].endswith((".parquet", ".pq")) else "csv")
                  for b in batches]
        return pd.concat(frames, ignore_index=True)
    return load


def code_version() -> tuple[str, str | None]:
    """(mlbus package version, git commit of the working tree if it is a checkout)."""
    version = importlib.metadata.version("mlbus")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return version, commit


def environment() -> dict[str, str]:
    packages = ("scikit-learn", "numpy", "pandas", "scipy", "skops", "fastavro", "confluent-kafka")
    return {"python": platform.python_version(), "platform": platform.platform(),
            **{name: importlib.metadata.version(name) for name in packages}}
