"""The trainer's edges: data snapshots, the artifact store, code version and environment, its history."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess


import pandas as pd

from services.bus import Bus, Received
from services.bus.projections.identities import SERVICE_ROLE
from services.domain import spec_problem
from services.adapters import SnapshotStore
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
    fold_history(bus, HISTORY, view.apply, keep=lambda r: counted(r, verify))
    return view


def counted(received: Received, verify: Verify) -> bool:
    """What the trainer folds back at start: a spec or request only if its signature holds (as when it came), and
    a `training-refused` alert only if the trainer signed it — anyone writing alerts could otherwise mark a
    request handled before it comes."""
    if received.record == "mlbus.ModelSpecDefined":
        return act_refusal(received, verify) is None and spec_problem(received.value) is None
    if received.record == "mlbus.TrainingRequested":
        return act_refusal(received, verify) is None
    if received.record == "mlbus.Alert":
        return verify(received, (SERVICE_ROLE,)).signer == "trainer"
    return True


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
