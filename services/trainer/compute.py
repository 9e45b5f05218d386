"""Where a training's grid runs and what it is recorded to have taken there (pure: no clock, no cluster)."""
from __future__ import annotations

from dataclasses import dataclass

LOCAL = "local"
DASK = "dask"
# The libraries whose versions decide a fitted model's numbers: a worker with others would fit another model.
RESULT_LIBRARIES = ("python", "scikit-learn", "numpy", "scipy", "pandas")


@dataclass(frozen=True)
class Placement:
    engine: str                     # LOCAL | DASK
    scheduler: str | None = None    # the dask scheduler's address


IN_TRAINER = Placement(LOCAL)


@dataclass(frozen=True)
class Unplaceable:
    reason: str                     # why the spec's grid cannot run here (a `training-refused` alert says it)


@dataclass(frozen=True)
class PointUsage:
    """What fitting one grid point took, measured on the thread that fitted it."""

    worker: str                     # LOCAL, or the dask worker's address
    cpu_seconds: float
    busy_seconds: float


def placement(compute: str | None, scheduler: str, ensemble: bool = False) -> Placement | Unplaceable:
    """Where a spec's grid runs: what the spec asks (local | dask), else dask when the trainer has a scheduler.
    An ensemble combines fitted members in the trainer (spec_problem refuses one that asks for dask)."""
    if ensemble or compute == LOCAL or (compute is None and not scheduler):
        return IN_TRAINER
    if not scheduler:
        return Unplaceable("the spec asks for compute: dask, but this trainer has no dask scheduler "
                           "(MLBUS_DASK_SCHEDULER); define the spec without compute, or with compute: local")
    return Placement(DASK, scheduler)


def version_mismatches(trainer: dict[str, str], workers: dict[str, dict[str, str]]) -> list[str]:
    """Each worker library whose version differs from the trainer's (a different model, never to be recorded as
    this one): 'tcp://…: scikit-learn 1.5.0 (the trainer has 1.9.1)'."""
    return [f"{address}: {name} {versions.get(name)} (the trainer has {trainer.get(name)})"
            for address, versions in sorted(workers.items()) for name in RESULT_LIBRARIES
            if versions.get(name) != trainer.get(name)]


def compute_used(where: Placement, usages: list[PointUsage], wall_seconds: float,
                 process_cpu: dict[str, float] | None = None, names: dict[str, str] | None = None) -> dict:
    """The ComputeUsed record of a training: per process that fitted points, their count and measured times.
    process_cpu: each worker's process CPU over the training, for those read both before and after."""
    by_worker: dict[str, list[PointUsage]] = {}
    for usage in usages:
        by_worker.setdefault(usage.worker, []).append(usage)
    process_cpu, names = process_cpu or {}, names or {}
    return {"engine": where.engine, "scheduler": where.scheduler, "wall_seconds": wall_seconds,
            "workers": [{"address": address, "name": names.get(address), "points": len(points),
                         "cpu_seconds": sum(p.cpu_seconds for p in points),
                         "busy_seconds": sum(p.busy_seconds for p in points),
                         "process_cpu_seconds": process_cpu.get(address)}
                        for address, points in sorted(by_worker.items())]}


def process_cpu_over(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Each worker's process CPU between two readings, for the workers read both times (one that died or
    joined meanwhile has none, nor one whose clock went back — restarted at the same address: never a guess)."""
    return {address: after[address] - before[address] for address in sorted(before.keys() & after.keys())
            if after[address] >= before[address]}
