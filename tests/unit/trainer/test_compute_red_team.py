"""Red team, issue 37: training on Dask as a hostile spec writer, a careless operator or a sick cluster would have it.

Classes: a spec's compute of any type or size is a refusal in words (never a crash, never placed on a cluster);
a scheduler that accepts the connection and never answers is an infrastructure failure within a deadline, not a
trainer hung for ever; a worker that joins mid-grid with other library versions cannot fit a point of the version
(it would be another model); garbage in MLBUS_DASK_SCHEDULER is the cluster's failure. No network: fake clients."""
from __future__ import annotations

import threading
from contextlib import nullcontext

import pytest

from services.bus.errors import InfrastructureError, is_infrastructure
from services.domain.estimators import spec_problem
from services.trainer import grid
from services.trainer.compute import IN_TRAINER, placement
from services.trainer.grid import DaskCluster, GridPoint, PointFitted, fit_point, library_versions
from services.trainer.training import split
from tests.support.handlers import received
from tests.unit.trainer.test_handler import SPEC, frame, request, trainer

HOSTILE_COMPUTES = ["DASK", "dask ", " local", "Local", "", "\x00", "dask\x00", "\u202edask", "a" * 1_000_000,
                    ["dask"], {"engine": "dask"}, ("dask",), 1, 0, True, False, 1.5, float("nan"), b"dask",
                    {"dask": {"dask": ["dask"] * 1000}}]


@pytest.mark.parametrize("compute", HOSTILE_COMPUTES, ids=lambda c: repr(c)[:20])
def test_a_spec_with_a_hostile_compute_is_refused_in_bounded_words_and_never_folded(compute, tmp_path):
    problem = spec_problem({**SPEC, "compute": compute})
    assert problem and "not one of local, dask" in problem
    handler = trainer(frame(), tmp_path)
    [refused] = handler(received("mlbus.ModelSpecDefined", {**SPEC, "model": "evil", "compute": compute}))
    assert refused.value["kind"] == "spec-refused" and "evil" not in handler.view.specs


def test_only_the_two_known_computes_place_anything_and_an_ensemble_stays_in_the_trainer():
    assert placement("local", "tcp://s:1") == IN_TRAINER and placement("dask", "", ensemble=True) == IN_TRAINER


class SilentClient:
    """A distributed.Client whose scheduler accepted the connection and never answers: it waits, whatever its
    timeout (measured on a real socket that listens and never speaks: still waiting after 300 s, timeout 3 s)."""

    released = threading.Event()
    returned = threading.Event()            # set once the constructor came back (released, or 120 s passed)

    def __init__(self, address, timeout, set_as_default):
        self.released.wait(120)
        self.returned.set()


def test_a_scheduler_that_never_answers_is_an_infrastructure_error_within_a_deadline(monkeypatch, tmp_path):
    import distributed
    monkeypatch.setattr(distributed, "Client", SilentClient)
    monkeypatch.setattr(grid, "CONNECT_GRACE_S", 0.5)
    handler = trainer(frame(), tmp_path)
    handler.cluster = DaskCluster("tcp://127.0.0.1:9", timeout_s=0.5)
    try:
        with pytest.raises(InfrastructureError, match="did not answer within") as raised:
            handler(received("mlbus.TrainingRequested", request()))
        given_up_while_waiting = not SilentClient.returned.is_set()     # the trainer did not wait for the client
    finally:
        SilentClient.released.set()
    assert given_up_while_waiting and is_infrastructure(raised.value)
    assert "r1" not in handler.view.handled_requests        # handled again after the restart


@pytest.mark.parametrize("address", ["garbage", "tcp://", "tcp://127.0.0.1:notaport", "ucx://[::1"])
def test_a_garbage_scheduler_address_is_the_clusters_failure(address, tmp_path):
    handler = trainer(frame(), tmp_path)
    handler.cluster = DaskCluster(address, timeout_s=1)
    with pytest.raises(InfrastructureError) as raised:
        handler(received("mlbus.TrainingRequested", request()))
    assert is_infrastructure(raised.value) and "r1" not in handler.view.handled_requests


def test_a_process_with_other_library_versions_fits_no_point(monkeypatch):
    data = split(frame(), ["a", "b"], "y", "classification", 0.25, 1)
    point = GridPoint("LogisticRegression", {"C": 1.0}, "classification", "accuracy", 0, 1)
    ours = library_versions()
    assert isinstance(fit_point(data, point, ours), PointFitted)
    monkeypatch.setattr(grid, "library_versions", lambda: {**ours, "scikit-learn": "0.24.2"})
    refused = fit_point(data, point, ours)
    assert isinstance(refused, InfrastructureError) and "scikit-learn 0.24.2" in str(refused)


class JoiningClient:
    """A cluster with no worker when the trainer checks versions; the worker that then fits the grid joined
    after, with another scikit-learn (the grid runs in this process, as that worker)."""

    status = "running"

    def scheduler_info(self):
        return {"workers": {}}

    def run(self, function, **kwargs):
        return {}

    def submit(self, function, data, pure):
        return Held(data)


class Held:
    def __init__(self, data):
        self.data = data

    def release(self):
        pass


def test_a_worker_joining_mid_grid_with_other_versions_fails_the_training_as_the_clusters(monkeypatch, tmp_path):
    def parallel(**kwargs):
        def run(calls):
            monkeypatch.setattr(grid, "library_versions", lambda: {**ours, "scikit-learn": "0.24.2"})
            return [function(args[0].data, *args[1:], **kw) for function, args, kw in calls]
        return run
    ours = library_versions()
    monkeypatch.setattr(grid, "Parallel", parallel)
    monkeypatch.setattr(grid, "parallel_config", lambda **kwargs: nullcontext())
    assert_crashes_on(JoiningClient(), tmp_path, "other library versions")


def assert_crashes_on(client: object, tmp_path, says: str, timeout_s: float = 30) -> None:
    """A request trained on a cluster of this client crashes the trainer (not handled: again after its restart)."""
    cluster = DaskCluster("tcp://10.0.0.5:8786", timeout_s=timeout_s)
    cluster._client = client
    handler = trainer(frame(), tmp_path)
    handler.cluster = cluster
    with pytest.raises(InfrastructureError, match=says) as raised:
        handler(received("mlbus.TrainingRequested", request()))
    assert is_infrastructure(raised.value) and "r1" not in handler.view.handled_requests


class StoppedClient:
    """A connected client whose scheduler (or one worker) was then stopped: what it asks of the workers never comes
    back, unless it gave itself a deadline (measured on real processes, SIGSTOPped: still waiting after 80 s)."""

    status = "running"

    def run(self, function, callback_timeout=None, **kwargs):
        if callback_timeout is None:        # a trap: the real call would never come back
            raise AssertionError("client.run without a deadline: the trainer would wait for ever")
        raise TimeoutError(f"timed out after {callback_timeout} s.")

    def scheduler_info(self):               # a trap: the real call would never come back
        raise AssertionError("scheduler_info has no deadline: the trainer would wait for ever")


def test_a_scheduler_or_worker_stopped_after_the_connection_is_an_infrastructure_error_within_a_deadline(tmp_path):
    assert_crashes_on(StoppedClient(), tmp_path, "timed out after 1 s", timeout_s=1)
