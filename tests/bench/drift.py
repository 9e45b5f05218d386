"""Drift: the drift-watcher's statistics (services/drift_watcher/stats.py, with the reference profile the
trainer stores) on reference vs current frames, against Evidently's DataDriftPreset and against scipy
ks_2samp + a numpy PSI per column. The drifted features must be the same."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from services.domain.monitoring import Monitoring
from services.domain.profile import profile_frame
from services.drift_watcher.stats import column_drift

from . import peers
from .figures import Figure, Runs, absolute, compare, measure

COLUMNS = 20
SHIFTED = 5            # the first five columns move by half a standard deviation


def frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    names = [f"f{i:02d}" for i in range(COLUMNS)]
    reference = pd.DataFrame(rng.normal(0, 1, (rows, COLUMNS)), columns=names)
    current = pd.DataFrame(rng.normal(0, 1, (rows, COLUMNS)), columns=names)
    current.iloc[:, :SHIFTED] += 0.5
    return reference, current


def mlbus_drift(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """What the trainer stores (the reference profile) and what the drift-watcher computes at a window's close."""
    config = Monitoring()
    entries = []
    for profile in profile_frame(reference, reference=True):
        entries += column_drift(profile, current[profile["name"]].to_numpy(), config)
    return sorted({e["feature"] for e in entries if e["drifted"]})


def scipy_drift(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The hand-rolled alternative: ks_2samp and a 10-bin quantile PSI per column; drifted at PSI ≥ 0.2."""
    drifted = []
    for name in reference.columns:
        ref, cur = reference[name].to_numpy(), current[name].to_numpy()
        stats.ks_2samp(ref, cur)
        edges = np.quantile(ref, np.linspace(0, 1, 11))
        edges[0], edges[-1] = -np.inf, np.inf
        expected = np.histogram(ref, edges)[0] / len(ref)
        actual = np.clip(np.histogram(cur, edges)[0] / len(cur), 1e-4, None)
        psi = float(np.sum((actual - expected) * np.log(actual / np.clip(expected, 1e-4, None))))
        if psi >= 0.2:
            drifted.append(name)
    return drifted


def timed(function, *args) -> tuple[float, object]:
    started = time.perf_counter()
    found = function(*args)
    return time.perf_counter() - started, found


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    rows = 10_000 if quick else 100_000
    reference, current = frames(rows)
    decisions = {}

    def run(function, key):
        def once() -> float:
            seconds, decisions[key] = timed(function, reference, current)
            return seconds
        return once

    ours = measure(run(mlbus_drift, "mlbus"), counted)
    hand = measure(run(scipy_drift, "scipy"), counted)
    folder = workdir / "drift"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "reference.npy", reference.to_numpy())
    np.save(folder / "current.npy", current.to_numpy())
    evidently = peers.run("evidently_drift.py", str(folder), str(counted + 1))
    evidently_runs = Runs(tuple(evidently["seconds"][1:]))
    same = decisions["mlbus"] == evidently["drifted"] == decisions["scipy"]
    note = (f"drifted features: mlbus {decisions['mlbus']}, Evidently {evidently['drifted']}, scipy "
            f"{decisions['scipy']} — {'the same' if same else 'DIFFERENT'}")
    figures = [compare(f"drift {rows:,} × {COLUMNS}", ours, "s", "Evidently DataDriftPreset 0.7", evidently_runs,
                       higher_is_better=False, goal_ratio=10 if same else float("inf"), goal="≥ 10× Evidently, same decisions",
                       notes=note),
               compare(f"drift {rows:,} × {COLUMNS} vs scipy", ours, "s", "scipy ks_2samp + numpy PSI", hand,
                       higher_is_better=False)]
    big_rows = 100_000 if quick else 1_000_000
    reference, current = frames(big_rows, seed=1)
    big = measure(run(mlbus_drift, "big"), counted)
    figures.append(absolute(f"drift {big_rows:,} × {COLUMNS}", big, "s", notes=f"drifted: {decisions['big']}"))
    return figures
