"""Where a grid runs and what the version records of it (pure), and the trainer's handler choosing it: a spec that
asks for a cluster the trainer lacks is refused, a cluster's failure is the infrastructure's (no network here)."""
import json
import threading

import pytest

from services.bus.errors import InfrastructureError, is_infrastructure
from services.domain.estimators import spec_problem
from services.trainer.compute import (DASK, IN_TRAINER, Placement, PointUsage, Unplaceable, compute_used, placement,
                                      process_cpu_over, version_mismatches)
from services.trainer.grid import DaskCluster, GridPoint, fit_locally
from services.trainer.training import split
from tests.support.handlers import received
from tests.unit.trainer.test_handler import SPEC, frame, request, trainer

SCHEDULER = "tcp://10.0.0.5:8786"


@pytest.mark.parametrize("compute, scheduler, where", [
    (None, "", IN_TRAINER),                              # as before: no scheduler, local
    (None, SCHEDULER, Placement(DASK, SCHEDULER)),       # the trainer's scheduler, unless the spec says otherwise
    ("local", SCHEDULER, IN_TRAINER),
    ("dask", SCHEDULER, Placement(DASK, SCHEDULER)),
    ("local", "", IN_TRAINER),
])
def test_a_grid_runs_where_the_spec_asks_else_on_the_trainers_scheduler(compute, scheduler, where):
    assert placement(compute, scheduler) == where


def test_a_spec_asking_for_dask_where_the_trainer_has_no_scheduler_cannot_be_placed():
    where = placement("dask", "")
    assert isinstance(where, Unplaceable) and "MLBUS_DASK_SCHEDULER" in where.reason


def test_an_ensemble_is_combined_in_the_trainer_whatever_the_scheduler():
    assert placement(None, SCHEDULER, ensemble=True) == IN_TRAINER


@pytest.mark.parametrize("compute, says", [("cloud", "not one of local, dask"), (["dask"], "not one of")])
def test_a_spec_with_an_unknown_compute_is_refused_when_defined(compute, says):
    assert says in spec_problem({**SPEC, "compute": compute})


def test_a_spec_may_name_local_or_dask_or_leave_it_out():
    assert [spec_problem({**SPEC, "compute": c}) for c in (None, "local", "dask")] == [None, None, None]


def test_an_ensemble_that_asks_for_dask_is_refused():
    ensemble = {**SPEC, "estimator": "Ensemble", "features": [], "compute": "dask",
                "ensemble_json": json.dumps({"members": ["a@1", "b@1"], "combine": "average"})}
    assert "compute: dask does not apply" in spec_problem(ensemble)


def test_the_record_sums_each_workers_points_and_keeps_what_was_not_measured_unknown():
    usages = [PointUsage("tcp://a:1", 1.0, 1.5), PointUsage("tcp://b:1", 2.0, 2.5), PointUsage("tcp://a:1", 0.5, 0.75)]
    record = compute_used(Placement(DASK, SCHEDULER), usages, 3.0, {"tcp://a:1": 1.8}, {"tcp://a:1": "w0"})
    assert record == {"engine": "dask", "scheduler": SCHEDULER, "wall_seconds": 3.0, "workers": [
        {"address": "tcp://a:1", "name": "w0", "points": 2, "cpu_seconds": 1.5, "busy_seconds": 2.25,
         "process_cpu_seconds": 1.8},
        {"address": "tcp://b:1", "name": None, "points": 1, "cpu_seconds": 2.0, "busy_seconds": 2.5,
         "process_cpu_seconds": None}]}


def test_process_cpu_is_counted_only_for_workers_read_before_and_after_and_never_negative():
    before = {"tcp://a:1": 10.0, "tcp://dead:1": 5.0, "tcp://restarted:1": 9.0}
    after = {"tcp://a:1": 12.5, "tcp://joined:1": 1.0, "tcp://restarted:1": 0.3}
    assert process_cpu_over(before, after) == {"tcp://a:1": 2.5}


def test_a_worker_with_other_library_versions_is_named():
    trainer_versions = {"python": "3.11", "scikit-learn": "1.9.1", "numpy": "2.4.6", "scipy": "1.16", "pandas": "2.3"}
    workers = {"tcp://a:1": dict(trainer_versions), "tcp://b:1": {**trainer_versions, "scikit-learn": "1.5.0"}}
    assert version_mismatches(trainer_versions, workers) == ["tcp://b:1: scikit-learn 1.5.0 (the trainer has 1.9.1)"]
    assert version_mismatches(trainer_versions, {}) == []


def test_a_local_training_records_that_it_ran_in_the_trainer(tmp_path):
    *runs, version = trainer(frame(), tmp_path)(received("mlbus.TrainingRequested", request()))
    assert version.value["compute"]["engine"] == "local" and version.value["compute"]["scheduler"] is None
    [worker] = version.value["compute_workers"]
    assert worker["address"] == "local" and worker["points"] == len(runs) and worker["process_cpu_seconds"] is None
    assert [run.value["ran_on"] for run in runs] == ["local"] * len(runs)


def test_a_spec_asking_for_dask_on_a_trainer_without_one_is_a_training_refused_alert(tmp_path):
    handler = trainer(frame(), tmp_path)
    handler.view.apply("mlbus.ModelSpecDefined", {**SPEC, "compute": "dask"})
    [refused] = handler(received("mlbus.TrainingRequested", request()))
    assert refused.value["kind"] == "training-refused" and "MLBUS_DASK_SCHEDULER" in refused.value["message"]
    assert handler(received("mlbus.TrainingRequested", request())) == []        # delivered twice: refused once


class BrokenClient:
    """A connected client whose cluster fails in the middle (a lost scheduler, a task that killed its workers)."""

    status = "running"

    def __init__(self, failure: Exception):
        self.failure = failure

    def scheduler_info(self):
        return {"workers": {}}

    def run(self, function, **kwargs):
        raise self.failure


@pytest.mark.parametrize("failure", [KeyError("tcp://gone:1"), ValueError("unexpected reply"), RuntimeError("lost")])
def test_a_cluster_failure_is_the_infrastructures_never_the_specs(tmp_path, failure):
    cluster = DaskCluster(SCHEDULER)
    cluster._client = BrokenClient(failure)
    handler = trainer(frame(), tmp_path)
    handler.cluster = cluster
    with pytest.raises(InfrastructureError, match=f"the dask cluster at {SCHEDULER} failed") as raised:
        handler(received("mlbus.TrainingRequested", request()))
    assert is_infrastructure(raised.value)          # the runtime crashes and handles the request after its restart
    assert "r1" not in handler.view.handled_requests


def test_a_fit_that_fails_comes_back_as_its_error_and_stops_the_local_grid():
    data = split(frame(), ["a", "b"], "y", "classification", 0.25, 1)
    points = [GridPoint("LogisticRegression", {"C": c}, "classification", "accuracy", 0, 1) for c in (1.0, -1.0, 2.0)]
    grid = fit_locally(data, points)
    assert len(grid.outcomes) == 2 and isinstance(grid.outcomes[1], ValueError)
    assert grid.compute["workers"][0]["points"] == 1


class Unpicklable(ValueError):
    def __init__(self, reason):
        super().__init__(reason)
        self.lock = threading.Lock()        # no pickler carries a lock


def test_an_error_that_cannot_travel_back_from_a_worker_comes_back_as_a_runtime_error_naming_it():
    from services.trainer.grid import portable
    error = ValueError("C must be positive")
    assert portable(error) is error
    travelled = portable(Unpicklable("odd"))
    assert type(travelled) is RuntimeError and str(travelled) == "Unpicklable: odd"


def test_the_trainer_takes_its_scheduler_from_mlbus_dask_scheduler(monkeypatch):
    from services.bus.settings import ConfigError, Settings
    from services.trainer import __main__ as wiring
    scheduler = Settings.from_env({"MLBUS_DASK_SCHEDULER": f" {SCHEDULER} "}).services.dask_scheduler
    assert scheduler == SCHEDULER and Settings.from_env({}).services.dask_scheduler == ""
    assert wiring.dask_cluster("") is None
    assert wiring.dask_cluster(scheduler).address == SCHEDULER          # not connected until its first grid
    monkeypatch.setattr(wiring.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install 'mlbus\\[dask\\]'"):
        wiring.dask_cluster(scheduler)


def test_a_point_that_killed_every_worker_it_ran_on_is_the_records_failure_not_the_clusters(tmp_path):
    from distributed.scheduler import KilledWorker
    from services.trainer.grid import PointKilledWorkers
    cluster = DaskCluster(SCHEDULER)
    cluster._client = BrokenClient(KilledWorker("batch_of_fit_point_1_calls-1", "tcp://w:1", 3))
    handler = trainer(frame(), tmp_path)
    handler.cluster = cluster
    with pytest.raises(PointKilledWorkers, match="killed every dask worker") as raised:
        handler(received("mlbus.TrainingRequested", request()))
    assert not is_infrastructure(raised.value)      # dead-lettered by the runtime: no restart to kill more workers


def test_the_cli_records_a_specs_compute_only_when_it_names_one_it_knows(tmp_path):
    from services.bus.errors import BadInput
    from services.cli.models_cmd import spec_record
    raw = {"model": "m", "dataset": "d", "target": "y", "features": ["a", "b"], "task": "classification",
           "estimator": "LogisticRegression", "metric": "accuracy"}
    assert spec_record(raw, "cli:dana", tmp_path)["compute"] is None         # left out: signed bytes as before
    assert spec_record({**raw, "compute": "dask"}, "cli:dana", tmp_path)["compute"] == "dask"
    with pytest.raises(BadInput, match="compute 'cloud' is not one of local, dask"):
        spec_record({**raw, "compute": "cloud"}, "cli:dana", tmp_path)
