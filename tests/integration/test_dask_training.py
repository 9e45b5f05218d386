"""The trainer's grid on a real dask.distributed cluster (a `dask scheduler` and two `dask worker` processes this
test starts): the same version as a local training for the same seed, even when a worker is killed mid-grid,
and the version records where it ran — the trainer's handler with in-memory ports; and once end to end, the
trainer service on the broker with MLBUS_DASK_SCHEDULER, a spec saying `compute: dask`."""
import json
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.trainer.decide import Provenance
from services.trainer.grid import DaskCluster
from services.trainer.handlers import Trainer
from services.trainer.view import TrainerView
from services.adapters import publish_batch
from services.bus import Publisher
from services.bus.settings import PROJECT_ROOT
from tests.support.dask_cluster import dask_cluster
from tests.support.datasets import good, write
from tests.support.handlers import accept, received
from tests.support.polling import read_topic, wait_until
from tests.support.processes import running

pytest.importorskip("distributed")

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
FEATURES = [f"x{i}" for i in range(6)]
BATCH = {"batch_id": "b1", "dataset": "d", "passed": True, "uri": "file:///d/b1.csv", "sha256": "0" * 64, "rows": 0}


def spec(grid: dict, compute: str | None = None) -> dict:
    return {"model": "m", "dataset": "d", "target": "y", "features": FEATURES, "task": "classification",
            "estimator": "RandomForestClassifier", "metric": "roc_auc", "test_size": 0.25, "cv_folds": 3,
            "hyperparameters_json": "{}", "grid_json": json.dumps(grid), "seed": 11, "batches": "all",
            "spec_sha256": "s", "defined_by": "cli:dana", "monitoring_json": "{}", "compute": compute}


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, len(FEATURES)))
    noisy = x[:, 0] - 0.5 * x[:, 1] + x[:, 2] * x[:, 3] + rng.normal(scale=0.8, size=rows)
    return pd.DataFrame({**{name: x[:, i] for i, name in enumerate(FEATURES)}, "y": np.where(noisy > 0, "p", "q")})


def trainer(data: pd.DataFrame, the_spec: dict, store, cluster: DaskCluster | None = None) -> Trainer:
    view = TrainerView()
    view.apply("mlbus.ModelSpecDefined", the_spec)
    view.apply("mlbus.DataValidated", BATCH)
    return Trainer(view, store, Provenance("0", None, {}), accept, lambda batches: data.copy(), clock=lambda: NOW,
                   cluster=cluster)


def train(handler: Trainer) -> tuple[list[dict], dict]:
    request = {"request_id": "r1", "model": "m", "reason": "manual", "requested_by": "cli:dana", "requested_at": NOW,
               "batch_ids": [], "evidence_json": "{}", "reproduce_run_id": None}
    events = handler(received("mlbus.TrainingRequested", request))
    assert [e.record for e in events][-1] == "mlbus.ModelTrained", events
    return [e.value for e in events[:-1]], events[-1].value


def assert_same_version(local: tuple[list[dict], dict], on_dask: tuple[list[dict], dict], stores, probe) -> None:
    """Same runs (parameters, holdout and cross-validated metrics, prediction hashes), same chosen run, and the
    two saved models predict the same probabilities, bit for bit, on rows neither saw."""
    (local_runs, local_version), (dask_runs, dask_version) = local, on_dask
    fields = ("run_id", "hyperparameters_json", "metrics", "cv_metrics", "predictions_sha256", "chosen")
    assert [{k: r[k] for k in fields} for r in dask_runs] == [{k: r[k] for k in fields} for r in local_runs]
    assert dask_version["run_id"] == local_version["run_id"]
    assert dask_version["cv_metrics"] == local_version["cv_metrics"]
    models = [handler.artifacts.load(version["artifact_uri"], version["artifact_sha256"])
              for handler, version in zip(stores, (local_version, dask_version))]
    assert np.array_equal(models[0].predict_proba(probe), models[1].predict_proba(probe))


def test_a_grid_on_two_dask_workers_makes_the_local_version_and_records_where_it_ran(tmp_path):
    data, the_spec = frame(400), spec({"n_estimators": [10, 30], "max_depth": [3, 6]})
    probe = frame(450).iloc[400:][FEATURES]
    local = trainer(data, the_spec, tmp_path / "local")
    with dask_cluster(tmp_path / "dask") as cluster:
        on_dask = trainer(data, the_spec, tmp_path / "dask-store", DaskCluster(cluster.address))
        try:
            dask_result = train(on_dask)
        finally:
            on_dask.cluster.close()
        local_result = train(local)
        assert_same_version(local_result, dask_result, (local, on_dask), probe)
        version = dask_result[1]
        assert version["compute"]["engine"] == "dask" and version["compute"]["scheduler"] == cluster.address
        used = {w["address"]: w for w in version["compute_workers"]}
        assert set(used) <= set(cluster.workers) and sum(w["points"] for w in used.values()) == 4
        assert {r["ran_on"] for r in dask_result[0]} == set(used)
        assert all(w["cpu_seconds"] > 0 and w["process_cpu_seconds"] >= w["cpu_seconds"] * 0.5 for w in used.values())
        assert {w["name"] for w in used.values()} <= {"w0", "w1"}
    assert local_result[1]["compute"] == {"engine": "local", "scheduler": None,
                                          "wall_seconds": local_result[1]["compute"]["wall_seconds"]}
    assert [w["address"] for w in local_result[1]["compute_workers"]] == ["local"]


def test_a_worker_killed_mid_grid_still_gives_the_local_version(tmp_path):
    data, the_spec = frame(600), spec({"n_estimators": [20, 40, 60], "max_depth": [3, 6]})
    probe = frame(650).iloc[600:][FEATURES]
    with dask_cluster(tmp_path / "dask") as cluster:
        on_dask = trainer(data, the_spec, tmp_path / "dask-store", DaskCluster(cluster.address))
        outcome: dict = {}
        training = threading.Thread(target=lambda: outcome.update(result=train(on_dask)), daemon=True)
        watched_from = time.time()
        training.start()
        victim, survivor = list(cluster.workers)
        # Mid-grid: a point has come back from a worker, and the victim holds another in flight (lost with it).
        wait_until(lambda: points_done(cluster, watched_from) and cluster.client.processing(workers=[victim])[victim],
                   60, "a point done and another in flight on the victim", interval=0.05)
        cluster.kill(victim)
        training.join(120)
        on_dask.cluster.close()
        assert "result" in outcome, "the training did not finish after the kill"
    local = trainer(data, the_spec, tmp_path / "local")
    assert_same_version(train(local), outcome["result"], (local, on_dask), probe)
    used = {w["address"]: w for w in outcome["result"][1]["compute_workers"]}
    assert survivor in used and sum(w["points"] for w in used.values()) == 6
    assert used[survivor]["process_cpu_seconds"] is not None
    assert victim not in used or used[victim]["process_cpu_seconds"] is None     # never read after its death


def points_done(cluster, since: float) -> int:
    """Grid points whose tasks have finished on a worker (the scheduler's task stream)."""
    return sum("fit_point" in str(task["key"]) for task in cluster.client.get_task_stream(start=since))


def test_the_trainer_service_trains_a_spec_asking_for_dask_on_its_scheduler(bus, bus_env, cli, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text((PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml").read_text() +
                         "compute: dask\n")
    assert cli("models", "define", str(spec_file), person="dana").returncode == 0
    publisher = Publisher(bus, "test")
    publish_batch(bus, "breast_cancer", write(good(rows=200), tmp_path / "good.csv"), "t", publisher)
    publisher.flush()
    with dask_cluster(tmp_path / "dask") as cluster, running("services.validator", bus_env), \
            running("services.trainer", bus_env, tmp_path / "trainer.log", MLBUS_DASK_SCHEDULER=cluster.address):
        [trained] = [bus.schemas.decode(m.value())[1] for m in read_topic(bus, "models.trained", expected=1,
                                                                          timeout=180)]
    assert trained["compute"]["engine"] == "dask" and trained["compute"]["scheduler"] == cluster.address
    assert {w["address"] for w in trained["compute_workers"]} <= set(cluster.workers)
    assert sum(w["points"] for w in trained["compute_workers"]) == 2        # the spec's grid: C in [0.1, 1.0]
