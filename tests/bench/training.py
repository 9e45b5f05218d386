"""Training: the same grid fitted in one process (the trainer's local path) and on a dask.distributed cluster of two
single-thread workers (a `dask scheduler` and two `dask worker` processes started here, the trainer's Dask path
through joblib's Dask backend), with the CPU time each worker spent, as the version records it. This machine has
two cores shared with everything else running: the figure is the efficiency of the two workers (local wall time
over twice the cluster's), not a speed-up. Every run checks the cluster's models equal the local ones."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from services.trainer.grid import DaskCluster, GridPoint, PointFitted, fit_locally
from services.trainer.training import split
from tests.support.dask_cluster import dask_cluster

from .figures import Figure, Runs, absolute

FEATURES = [f"x{i}" for i in range(10)]


def grid_data(rows: int):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, len(FEATURES)))
    signal = x[:, 0] - x[:, 1] + x[:, 2] * x[:, 3] + rng.normal(scale=0.7, size=rows)
    frame = pd.DataFrame({**{name: x[:, i] for i, name in enumerate(FEATURES)}, "y": np.where(signal > 0, "a", "b")})
    return split(frame, FEATURES, "y", "classification", 0.25, 7)


def grid_points(quick: bool) -> list[GridPoint]:
    sizes, depths = ([40, 80], [4, 8]) if quick else ([100, 200], [6, 12])
    return [GridPoint("RandomForestClassifier", {"n_estimators": n, "max_depth": d}, "classification", "roc_auc",
                      3, 7) for n in sizes for d in depths]


def fingerprints(grid) -> list[str]:
    """Each point's holdout predictions hash: the cluster's must equal the local run's."""
    return [o.result["predictions_sha256"] if isinstance(o, PointFitted) else repr(o) for o in grid.outcomes]


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    data, points = grid_data(2000 if quick else 6000), grid_points(quick)
    local_runs, dask_runs = [], []
    with dask_cluster(workdir / "dask") as cluster:
        on_dask = DaskCluster(cluster.address)
        try:
            for _ in range(1 + counted):            # the first pair warms up (the workers import scikit-learn)
                local, remote = fit_locally(data, points), on_dask.fit(data, points)
                if fingerprints(remote) != fingerprints(local):
                    raise AssertionError("the cluster's models differ from the local ones")
                local_runs.append(local.compute)
                dask_runs.append(remote.compute)
        finally:
            on_dask.close()
    return figures(local_runs[1:], dask_runs[1:], len(points))


def figures(local_runs: list[dict], dask_runs: list[dict], points: int) -> list[Figure]:
    def runs(values) -> Runs:
        return Runs(tuple(values))

    local_wall = runs(r["wall_seconds"] for r in local_runs)
    dask_wall = runs(r["wall_seconds"] for r in dask_runs)
    local_cpu = runs(sum(w["cpu_seconds"] for w in r["workers"]) for r in local_runs)
    efficiency = runs(lw / (2 * dw) for lw, dw in zip(local_wall.values, dask_wall.values))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    found = [absolute(f"training: {points}-point grid, local (wall)", local_wall, "s",
                      notes=f"one process; CPU {local_cpu.median:.2f} s (median); load average {load}"),
             absolute(f"training: {points}-point grid on 2 dask workers (wall)", dask_wall, "s",
                      notes="scheduler and workers on this machine, one thread each; models equal the local ones"),
             absolute("training: efficiency of 2 workers", efficiency, "",
                      notes="local wall / (2 × cluster wall): 1 would be two cores fully used for the grid; this "
                            "machine's 2 cores are shared with other work, so no speed-up is claimed")]
    named = {w["address"]: w["name"] or w["address"] for r in dask_runs for w in r["workers"]}
    for address, name in sorted(named.items(), key=lambda item: item[1]):
        mine = [next((w for w in r["workers"] if w["address"] == address), None) for r in dask_runs]
        process = ", ".join(f"{w['process_cpu_seconds']:.2f}" for w in mine
                            if w and w["process_cpu_seconds"] is not None)
        shares = [w["points"] if w else 0 for w in mine]
        found.append(absolute(f"training: CPU of worker {name}", runs(w["cpu_seconds"] if w else 0.0 for w in mine),
                              "s", notes=f"its points' thread CPU; points per run {shares}; whole process CPU "
                                         f"per run {process} s"))
    cluster_cpu = runs(sum(w["cpu_seconds"] for w in r["workers"]) for r in dask_runs)
    found.append(absolute("training: CPU on the workers / local CPU",
                          runs(c / lc for c, lc in zip(cluster_cpu.values, local_cpu.values)), "",
                          notes="the same points' thread CPU on the cluster over the local run's"))
    return found
