"""Data to model on the real broker: validator and trainer as processes, the CLI as a user would use it."""
from __future__ import annotations

import hashlib
import json

import yaml

from services.bus import Event, Publisher
from services.bus.identity import Identity
from services.cli.acts import send
from services.cli.models_cmd import spec_record
from services.adapters import local_path, publish_batch
from services.bus.settings import PROJECT_ROOT
from tests.support.datasets import good, with_defect, write
from tests.support.lag import behind
from tests.support.polling import read_topic, wait_until
from tests.support.processes import free_port, running

SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"


def values(bus, topic: str, expected: int, **kw) -> list[dict]:
    return [bus.schemas.decode(m.value())[1] for m in read_topic(bus, topic, expected=expected, timeout=180, **kw)]


def test_good_batch_trains_a_fully_recorded_version_bad_batches_train_nothing_and_runs_reproduce(
        bus, bus_env, cli, tmp_path):
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    publisher = Publisher(bus, "test")
    bad_ids = [publish_batch(bus, "breast_cancer", write(with_defect(kind), tmp_path / f"{kind}.csv"), "t",
                             publisher)["batch_id"] for kind in ("duplicate_keys", "missing", "range", "type", "schema")]
    bad_ids.append(publish_batch(bus, "no_such_dataset", write(good(), tmp_path / "x.csv"), "t", publisher)["batch_id"])
    good_batch = publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t", publisher)
    publisher.flush()

    port = free_port()
    with running("services.validator", bus_env, tmp_path / "validator.log"), \
            running("services.trainer", bus_env, tmp_path / "trainer.log", MLBUS_METRICS_PORT=str(port)) as trainer:
        reports = {v["batch_id"]: v for v in values(bus, "data.validated", expected=7)}
        [trained] = values(bus, "models.trained", expected=1, settle_s=3)
        # The spec changes afterwards (fewer features, another split): reproduction uses the run's recorded one.
        changed = tmp_path / "changed.yaml"
        changed.write_text(SPEC.read_text().replace("features: all", "features: [mean_radius, mean_texture]")
                           .replace("test_size: 0.25", "test_size: 0.4"))
        assert cli("models", "define", str(changed), person="dana").returncode == 0
        wait_until(lambda: behind(bus, [port], ["models.specs"]) == 0, timeout=60,
                   message="the trainer to take the changed spec")
        reproduced = cli("train", "--reproduce", trained["run_id"], "--wait", "180", person="bo")
        assert trainer.poll() is None

    assert not any(reports[b]["passed"] for b in bad_ids) and reports[good_batch["batch_id"]]["passed"]
    assert trained["model"] == "breast_cancer_lr" and trained["version"] == 1
    assert [b["batch_id"] for b in trained["batches"]] == [good_batch["batch_id"]]      # never a bad batch
    assert trained["batches"][0]["sha256"] == good_batch["sha256"]
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert 0.5 < trained["metrics"][metric] <= 1.0
    assert trained["cv_metrics"]["roc_auc"] > 0.5
    assert json.loads(trained["hyperparameters_json"])["max_iter"] == 2000
    assert trained["code_version"] == "0.1.0" and trained["git_commit"]
    assert {"python", "scikit-learn", "numpy", "pandas"} <= set(trained["environment"])
    assert trained["seed"] == 7 and trained["duration_ms"] > 0 and trained["reason"] == "new-data"
    artifact = local_path(trained["artifact_uri"]).read_bytes()
    assert hashlib.sha256(artifact).hexdigest() == trained["artifact_sha256"]
    assert {p["name"] for p in trained["feature_profile"]} == set(trained["features"]) and len(trained["features"]) == 30

    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert "IDENTICAL" in reproduced.stdout
    runs = cli("runs", "list", "--json")
    assert len([r for r in json.loads(runs.stdout) if r["reproduces_run_id"] == trained["run_id"]]) == 1
    compare = cli("runs", "compare", *[r["run_id"] for r in json.loads(runs.stdout)[:2]])
    assert compare.returncode == 0 and "param C" in compare.stdout


def test_a_training_longer_than_the_poll_interval_and_a_twice_delivered_batch_give_one_version(
        bus, bus_env, cli, tmp_path):
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    publisher = Publisher(bus, "test")
    batch = publish_batch(bus, "breast_cancer", write(good(), tmp_path / "good.csv"), "t", publisher)
    # The same event again, as a retrying producer would deliver it.
    publisher.publish(Event("mlbus.DataBatch", batch, key="breast_cancer", id=batch["batch_id"]))
    publisher.flush()
    slow = {"MLBUS_TRAINER_MIN_FIT_S": "20", "MLBUS_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "MLBUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000", "MLBUS_KAFKA_MAX_POLL_INTERVAL_MS": "8000"}
    with running("services.validator", bus_env, tmp_path / "validator.log"), \
            running("services.trainer", bus_env, tmp_path / "trainer.log", **slow) as trainer:
        trained = values(bus, "models.trained", expected=1, settle_s=5)
        assert trainer.poll() is None, "the trainer was not kicked out and did not crash"
    assert len(trained) == 1 and trained[0]["version"] == 1
    assert len(values(bus, "data.validated", expected=1)) == 1
    assert len([r for r in values(bus, "training.requests", expected=1)]) == 1


def signed_spec(bus, cli, **changes) -> None:
    """A spec sent as Dana would sign it, past the CLI's own checks (any client with her key could)."""
    raw = yaml.safe_load(SPEC.read_text())
    value = spec_record(raw, "cli:dana", bus.settings.storage.contracts_dir)
    send(bus, Identity.load(cli.identity("dana")), "mlbus.ModelSpecDefined", {**value, **changes}, value["model"])


def test_specs_and_data_the_trainer_cannot_use_are_refused_and_it_keeps_training(bus, bus_env, cli, tmp_path):
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(SPEC.read_text().replace("{max_iter: 2000}", "{max_iter: -5}"))
    refused_here = cli("models", "define", str(hostile), person="dana")
    assert refused_here.returncode != 0 and "'max_iter' parameter" in refused_here.stderr   # checked when defined
    publisher = Publisher(bus, "test")
    publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t", publisher)
    publisher.flush()
    port = free_port()
    with running("services.validator", bus_env, tmp_path / "validator.log"), \
            running("services.trainer", bus_env, tmp_path / "trainer.log", MLBUS_METRICS_PORT=str(port)) as trainer:
        values(bus, "data.validated", expected=1)
        signed_spec(bus, cli, hyperparameters_json=json.dumps({"max_iter": -5}))
        values(bus, "alerts", expected=1, settle_s=0)
        # Each spec is in place before its request (specs and requests are on different topics).
        for changes, says in (({"features": ["mean_radius", "no_such_column"]}, "no_such_column"),
                              ({"target": "mean_radius", "features": ["mean_texture", "diagnosis"]},
                               "could not convert"), ({}, None)):
            signed_spec(bus, cli, **changes)
            wait_until(lambda: behind(bus, [port], ["models.specs"]) == 0, timeout=60,
                       message="the trainer to take the spec")
            trained_now = cli("train", "breast_cancer_lr", "--wait", "180", person="bo")
            assert (trained_now.returncode == 0) == (says is None) and (says or "") in trained_now.stderr
        [trained] = values(bus, "models.trained", expected=1)
        alerts = values(bus, "alerts", expected=3)
        assert trainer.poll() is None, "the trainer keeps running"
    kinds = [(a["kind"], a["message"]) for a in alerts]
    assert kinds[0][0] == "spec-refused" and "'max_iter' parameter" in kinds[0][1]
    assert kinds[1][0] == "training-refused" and "no_such_column" in kinds[1][1]
    assert kinds[2][0] == "training-refused" and "could not convert" in kinds[2][1]
    assert trained["version"] == 1 and trained["target"] == "diagnosis"
