"""Fitting a training's grid points in the trainer's process, or on a dask.distributed cluster through joblib's
Dask backend: the same function on the same inputs either way, so the same seed gives the same models."""
from __future__ import annotations

import importlib.metadata
import pickle
import platform
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from joblib import Parallel, delayed, parallel_config
from threadpoolctl import threadpool_limits

from services.bus.errors import InfrastructureError

from .compute import (DASK, IN_TRAINER, LOCAL, Placement, PointUsage, RESULT_LIBRARIES, compute_used, process_cpu_over,
                      version_mismatches)
from .training import Split, fit_and_evaluate


@dataclass(frozen=True)
class GridPoint:
    estimator: str
    params: dict
    task: str
    metric: str
    cv_folds: int
    seed: int
    encoding: str = "onehot"


@dataclass(frozen=True)
class PointFitted:
    model: Any
    result: dict
    usage: PointUsage


@dataclass(frozen=True)
class GridFitted:
    outcomes: list                  # per point, in grid order: a PointFitted, or what its fit raised
    compute: dict = field(default_factory=dict)     # the ComputeUsed record


def fit_point(data: Split, point: GridPoint, versions: dict[str, str] | None = None) -> PointFitted | Exception:
    """One grid point wherever it runs, on the calling thread alone (BLAS and joblib held to it), timed on it. What
    the fit raises comes back as a value, raised again in the trainer as a local fit's would be: only the cluster's
    own failures raise. versions: the trainer's libraries, which the process fitting it must have."""
    if versions is not None and (found := library_versions()) != versions:
        # Checked here too, not only before the grid: a worker that joins mid-grid gets points as well.
        return InfrastructureError("a dask worker with other library versions than the trainer's would fit another "
                                   f"model: {'; '.join(version_mismatches(versions, {worker_address(): found}))}")
    started, cpu_started = time.perf_counter(), time.thread_time()
    try:
        # joblib's Dask backend runs a task inside parallel_config("dask"): scikit-learn's own Parallel calls (a
        # forest's trees, its predict_proba's sum) would become tasks of their own, summed in whatever order they
        # come back — other bits than the local fit's. A point is one thread's work, as in the trainer.
        with threadpool_limits(limits=1), parallel_config(backend="sequential"):
            model, result = fit_and_evaluate(data, point.estimator, point.params, point.task, point.metric,
                                             point.cv_folds, point.seed, point.encoding)
    except Exception as error:          # noqa: BLE001 - the spec's or the data's, handed back as it is
        return error if worker_address() == LOCAL else portable(error)
    usage = PointUsage(worker_address(), time.thread_time() - cpu_started, time.perf_counter() - started)
    return PointFitted(model, {**result, "ran_on": usage.worker}, usage)


def portable(error: Exception) -> Exception:
    """The error as it can travel back from a worker: itself, or — one that does not survive pickling, which the
    cluster would report as its own failure — a RuntimeError naming it (the record's failure, as locally)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:                   # noqa: BLE001 - whatever stops it travelling
        return RuntimeError(f"{type(error).__name__}: {error}")


def held(value: Any) -> Any:
    """A task that returns its argument: data the cluster keeps by lineage (computed again if its worker dies)."""
    return value


def worker_address() -> str:
    """The dask worker this runs in, or LOCAL."""
    try:
        from distributed import get_worker
        return str(get_worker().address)
    except (ImportError, ValueError):
        return LOCAL


def library_versions() -> dict[str, str]:
    """This process's versions of the libraries that decide a model's numbers (python as major.minor)."""
    return {"python": ".".join(platform.python_version_tuple()[:2]),
            **{name: importlib.metadata.version(name) for name in RESULT_LIBRARIES if name != "python"}}


def fit_locally(data: Split, points: list[GridPoint]) -> GridFitted:
    """The grid in this process, point after point; it stops at the first point whose fit raises."""
    started, outcomes = time.perf_counter(), []
    for point in points:
        outcomes.append(fit_point(data, point))
        if isinstance(outcomes[-1], Exception):
            break
    usages = [o.usage for o in outcomes if isinstance(o, PointFitted)]
    return GridFitted(outcomes, compute_used(IN_TRAINER, usages, time.perf_counter() - started))


class PointKilledWorkers(RuntimeError):
    """The scheduler gave up on a point whose task died with each worker that ran it (distributed's
    allowed-failures, 3): its own poison budget spent. The record's failure, not the cluster's — the runtime
    dead-letters the request rather than restart the trainer to kill more workers with it."""


CONNECT_GRACE_S = 5.0       # beyond Client's own timeout, for it to give up by itself


class DaskCluster:
    """The trainer's client of a dask.distributed scheduler: connected at the first grid, then kept. Any failure of
    the cluster (unreachable, no workers in time, the connection lost, workers with other library versions) is an
    InfrastructureError: the trainer crashes and handles the request again after its restart."""

    def __init__(self, address: str, timeout_s: float = 30.0):
        self.address = address
        self.timeout_s = timeout_s          # to connect, and for a first worker to be there
        self._client: Any = None

    def fit(self, data: Split, points: list[GridPoint]) -> GridFitted:
        try:
            return self._fit(data, points)
        except InfrastructureError:
            raise
        except Exception as error:          # noqa: BLE001 - the fits' own errors come back as values (fit_point)
            if type(error).__name__ == "KilledWorker":      # its str() needs the scheduler's worker state
                task, tries = getattr(error, "task", ""), getattr(error, "allowed_failures", "?")
                raise PointKilledWorkers(f"a grid point killed every dask worker that ran it ({task}, given up "
                                         f"after {tries} deaths): the spec's fit, as a local one that kills the "
                                         "trainer") from error
            raise InfrastructureError(f"the dask cluster at {self.address} failed: "
                                      f"{type(error).__name__}: {error}") from error

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _fit(self, data: Split, points: list[GridPoint]) -> GridFitted:
        client = self._connected()
        names = self._names(client)
        versions = self._check_versions(client)
        started = time.perf_counter()
        before = self._on_workers(client, time.process_time)
        # The split goes to the cluster once, as a task that returns it (not scattered: a worker killed with the
        # only copy of scattered data loses it for good, whereas a task's result is computed again elsewhere).
        split_task = client.submit(held, data, pure=False)
        try:
            with parallel_config(backend="dask", client=client, wait_for_workers_timeout=self.timeout_s):
                # One dask task a point, all handed to the scheduler at once: it balances them and reschedules the
                # points of a worker that dies.
                outcomes = Parallel(n_jobs=-1, batch_size=1, pre_dispatch="all")(
                    delayed(fit_point)(split_task, point, versions) for point in points)
        finally:
            split_task.release()
        after = self._on_workers(client, time.process_time)
        wall = time.perf_counter() - started
        usages = [o.usage for o in outcomes if isinstance(o, PointFitted)]
        return GridFitted(list(outcomes), compute_used(Placement(DASK, self.address), usages, wall,
                                                       process_cpu_over(before, after),
                                                       {**names, **self._names(client)}))

    def _connected(self) -> Any:
        if self._client is None or self._client.status not in ("running", "connecting"):
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        """A client of the scheduler, or an InfrastructureError once timeout_s (and a grace) has passed: Client's
        own timeout does not hold when something accepts the connection and never answers (a stopped scheduler,
        a port of something else that waits to be spoken to) — measured: still waiting after 300 s, timeout 3 s."""
        from distributed import Client
        made: dict[str, Any] = {}

        def connect() -> None:
            try:
                made["client"] = Client(self.address, timeout=self.timeout_s, set_as_default=False)
            except BaseException as error:      # noqa: BLE001 - raised again in the trainer's thread
                made["error"] = error
        # A daemon: if it never returns, it must not hold the crashing trainer's exit.
        attempt = threading.Thread(target=connect, name="dask-connect", daemon=True)
        attempt.start()
        attempt.join(self.timeout_s + CONNECT_GRACE_S)
        if attempt.is_alive():
            raise InfrastructureError(f"the dask scheduler at {self.address} did not answer within "
                                      f"{self.timeout_s + CONNECT_GRACE_S:.0f} s")
        if "error" in made:
            raise made["error"]
        return made["client"]

    def _check_versions(self, client: Any) -> dict[str, str]:
        """The trainer's library versions, once no worker has others."""
        versions = library_versions()
        mismatches = version_mismatches(versions, self._on_workers(client, library_versions))
        if mismatches:
            raise InfrastructureError("dask workers with other library versions than the trainer's would fit "
                                      f"other models: {'; '.join(mismatches[:5])}")
        return versions

    def _names(self, client: Any) -> dict[str, str]:
        return self._on_workers(client, worker_name)

    def _on_workers(self, client: Any, function: Any) -> dict:
        """What function returns on each worker (one where it fails left out), within timeout_s: a stopped worker
        or scheduler holds client.run and scheduler_info for ever (measured: still waiting after 80 s)."""
        return client.run(function, on_error="ignore", callback_timeout=self.timeout_s)


def worker_name(dask_worker: Any) -> str:
    """The name the worker was started with (client.run hands a function its worker by this argument's name)."""
    return str(dask_worker.name)
