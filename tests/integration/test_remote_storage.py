"""Snapshots and artifacts at s3:// URLs, so the services need not share a filesystem: the publisher, the
validator and the trainer each with their own var/ folder, data and models only in a local S3-compatible
server (moto's, a real HTTP endpoint reached through s3fs); a third party loads the model from there; a changed
object is refused by its hash on the next read."""
from __future__ import annotations

import json
from pathlib import Path

import fsspec.config
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from services.bus import Bus
from services.bus.credentials import ADMIN
from services.domain import ArtifactRefused
from services.adapters import ArtifactStore, DataFileError, SnapshotStore, publish_batch
from services.bus.settings import PROJECT_ROOT
from tests.support.datasets import good, write
from tests.support.polling import read_topic
from tests.support.processes import free_port, running

SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
BUCKET = "mlbus-store"


@pytest.fixture
def s3_env():
    """A local S3 endpoint with one bucket; the settings that put data and artifacts in it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "mlbus", "secret": "mlbus-secret"}
    s3fs.S3FileSystem(**options).mkdir(BUCKET)
    yield {"MLBUS_DATA": f"s3://{BUCKET}/data", "MLBUS_ARTIFACTS": f"s3://{BUCKET}/artifacts",
           "FSSPEC_S3": json.dumps(options), "AWS_DEFAULT_REGION": "us-east-1"}
    server.stop()


def test_services_without_a_shared_filesystem_exchange_data_and_models_through_s3(
        s3_env, bus, bus_env, cli, tmp_path, monkeypatch):
    # This process, too, reads the store like a third party (fsspec read FSSPEC_S3 when it was imported).
    monkeypatch.setitem(fsspec.config.conf, "s3", json.loads(s3_env["FSSPEC_S3"]))
    own_var = {name: {**bus_env, **s3_env, "MLBUS_VAR": str(tmp_path / name)} for name in ("validator", "trainer")}
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    publisher_bus = Bus.from_env({**bus_env, **s3_env}, principal=ADMIN)
    batch = publish_batch(publisher_bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t")
    assert batch["uri"].startswith(f"s3://{BUCKET}/data/breast_cancer/")

    with running("services.validator", own_var["validator"], tmp_path / "validator.log"), \
            running("services.trainer", own_var["trainer"], tmp_path / "trainer.log"):
        [validated] = [bus.schemas.decode(m.value())[1] for m in read_topic(bus, "data.validated", 1, timeout=120)]
        [trained] = [bus.schemas.decode(m.value())[1] for m in read_topic(bus, "models.trained", 1, timeout=180)]

    assert validated["passed"], validated
    assert trained["artifact_uri"] == f"s3://{BUCKET}/artifacts/{trained['artifact_sha256']}.skops"
    for name in ("validator", "trainer"):           # nothing of the data or the model on their own disks
        assert not [p for p in Path(tmp_path / name).rglob("*") if p.suffix in (".csv", ".skops")], name
    store = ArtifactStore(s3_env["MLBUS_ARTIFACTS"], 1 << 29)
    model = store.load(trained["artifact_uri"], trained["artifact_sha256"])
    assert model.predict(good(rows=5, seed=9)[trained["features"]]).shape == (5,)

    s3 = s3fs.S3FileSystem(**json.loads(s3_env["FSSPEC_S3"]))
    s3.pipe_file(batch["uri"].removeprefix("s3://"), b"id,diagnosis\n1,0\n")       # altered in the store
    with pytest.raises(DataFileError, match="sha256"):
        SnapshotStore(s3_env["MLBUS_DATA"], 1 << 30).load(batch["uri"], batch["sha256"], batch["format"])
    with pytest.raises(ArtifactRefused, match="outside the store"):
        store.load(f"s3://other-bucket/{trained['artifact_sha256']}.skops", trained["artifact_sha256"])
