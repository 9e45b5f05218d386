"""validator on the real broker: good and bad batches, duplicates, and it keeps running."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from services.bus import Event, Publisher
from services.adapters import publish_batch
from tests.support.datasets import good, with_defect, write
from tests.support.lag import behind
from tests.support.polling import read_topic, wait_until
from tests.support.processes import free_port, running


def validations(bus, expected: int) -> dict[str, dict]:
    messages = read_topic(bus, "data.validated", expected=expected, timeout=120)
    return {v["batch_id"]: v for v in (bus.schemas.decode(m.value())[1] for m in messages)}


def forged_batch(bus, publisher, dataset: str, uri: str, sha256: str, batch_id: str) -> str:
    value = {"batch_id": batch_id, "dataset": dataset, "uri": uri, "sha256": sha256, "rows": 10, "size_bytes": 1,
             "format": "csv", "publisher": "test", "published_at": datetime.now(timezone.utc), "labels": {}}
    publisher.publish(Event("mlbus.DataBatch", value, dataset, batch_id))
    return batch_id


def test_good_and_bad_batches_each_get_their_reason(bus, bus_env, tmp_path):
    publisher = Publisher(bus, "test")
    good_batch = publish_batch(bus, "breast_cancer", write(good(), tmp_path / "good.csv"), "test", publisher)
    expected = {good_batch["batch_id"]: None}
    for kind in ("duplicate_keys", "missing", "range", "type", "schema"):
        batch = publish_batch(bus, "breast_cancer", write(with_defect(kind), tmp_path / f"{kind}.csv"), "test", publisher)
        expected[batch["batch_id"]] = "schema" if kind == "schema" else kind
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    expected[publish_batch(bus, "breast_cancer", empty, "test", publisher)["batch_id"]] = "empty"
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all")
    expected[publish_batch(bus, "breast_cancer", garbage, "test", publisher)["batch_id"]] = "file"
    real = publish_batch(bus, "breast_cancer", write(good(seed=3), tmp_path / "real.csv"), "test", publisher)
    expected[forged_batch(bus, publisher, "breast_cancer", real["uri"], "0" * 64, "forged-sha")] = "sha256"
    expected[forged_batch(bus, publisher, "breast_cancer", (tmp_path / "gone.csv").as_uri(), "0" * 64, "gone")] = "file"
    expected[publish_batch(bus, "no_such_dataset", write(good(), tmp_path / "x.csv"), "test", publisher)["batch_id"]] \
        = "contract"
    expected.pop(real["batch_id"], None)
    publisher.flush()

    with running("services.validator", bus_env, tmp_path / "validator.log") as validator:
        found = validations(bus, expected=len(expected) + 1)
        assert validator.poll() is None, "the validator keeps running after bad batches"
    assert found[good_batch["batch_id"]]["passed"] and found[good_batch["batch_id"]]["profile"]
    for batch_id, check in expected.items():
        if check is None:
            continue
        report = found[batch_id]
        assert not report["passed"], batch_id
        assert check in {f["check"] for f in report["failures"]}, (check, report["failures"])
        assert all(f["message"] for f in report["failures"])


def test_the_same_batch_delivered_twice_is_validated_once(bus, bus_env, tmp_path):
    publisher = Publisher(bus, "test")
    path = write(good(), tmp_path / "good.csv")
    first = publish_batch(bus, "breast_cancer", path, "test", publisher)
    second = publish_batch(bus, "breast_cancer", path, "test", publisher)      # same content, same batch
    publisher.flush()
    assert first["batch_id"] == second["batch_id"]
    with running("services.validator", bus_env, tmp_path / "validator.log"):
        read_topic(bus, "data.validated", expected=1, timeout=120)
    # A restarted validator must not judge it again either (it rebuilds what it saw from data.validated).
    publish_batch(bus, "breast_cancer", path, "test", publisher)
    publisher.flush()
    port = free_port()
    with running("services.validator", bus_env, tmp_path / "validator.log", MLBUS_METRICS_PORT=str(port)):
        wait_until(lambda: behind(bus, [port], ["data.batches"]) == 0, timeout=120,
                   message="the validator to consume the duplicate")
    assert len(read_topic(bus, "data.validated", expected=1)) == 1


def test_hostile_batches_are_refused_with_reasons_and_the_validator_keeps_serving(bus, bus_env, tmp_path):
    """A path for a dataset name goes to the DLQ; a directory, a device, a file outside the store, a Parquet
    bomb each fail validation with the check named; a good batch afterwards still passes."""
    publisher = Publisher(bus, "test")
    data = Path(bus.settings.storage.data_store)
    (data / "breast_cancer").mkdir(parents=True, exist_ok=True)
    forged_batch(bus, publisher, "../DataBatch", (data / "x.csv").as_uri(), "0" * 64, "path-name")
    expected = {
        forged_batch(bus, publisher, "breast_cancer", (data / "breast_cancer").as_uri(), "0" * 64, "dir"): "file",
        forged_batch(bus, publisher, "breast_cancer", "file:///dev/zero", "0" * 64, "dev-zero"): "location",
        forged_batch(bus, publisher, "breast_cancer", "/etc/hostname", "0" * 64, "outside"): "location",
    }
    bomb = tmp_path / "bomb.parquet"
    good(rows=20).iloc[[0] * 300_000].to_parquet(bomb, index=False, compression="zstd")   # one row, repeated
    expected[publish_batch(bus, "breast_cancer", bomb, "test", publisher)["batch_id"]] = "size"
    publisher.flush()
    env = {**bus_env, "MLBUS_MAX_SNAPSHOT_BYTES": str(4 * 1024 * 1024)}
    assert bomb.stat().st_size < 4 * 1024 * 1024
    with running("services.validator", env, tmp_path / "validator.log") as validator:
        found = validations(bus, expected=len(expected))
        late = publish_batch(bus, "breast_cancer", write(good(), tmp_path / "good.csv"), "test")
        after = validations(bus, expected=len(expected) + 1)
        dead = read_topic(bus, "data.batches.dlq", expected=1)
        assert validator.poll() is None, "the validator keeps serving"
    for batch_id, check in expected.items():
        assert not found[batch_id]["passed"] and check in {f["check"] for f in found[batch_id]["failures"]}, \
            (batch_id, found[batch_id]["failures"])
    assert after[late["batch_id"]]["passed"]
    headers = dict(dead[0].headers())
    assert headers["dlq.stage"] == b"validate" and b"DataBatch.dataset" in headers["dlq.error.message"]
