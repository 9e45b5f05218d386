"""The deployer's handler with in-memory ports: an approval whose artifact is not a file is refused, with an
alert, and the serving version stays."""
import hashlib
from datetime import datetime, timezone

from services.domain.artifacts import ArtifactStore
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.deployer.decide import Gates
from services.deployer.handlers import Deployer
from tests.support.handlers import accept, received

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


def trained(version: int, uri: str, sha256: str) -> dict:
    return {"model": "m", "version": version, "run_id": f"r{version}", "artifact_uri": uri, "artifact_sha256": sha256}


def approved(version: int) -> dict:
    return {"event_id": f"e{version}", "model": "m", "version": version, "kind": "approved", "alias": None,
            "cause_id": f"c{version}", "actor": "ana"}


def test_an_approved_version_with_a_directory_for_an_artifact_is_refused_and_the_champion_stays(tmp_path):
    good = tmp_path / "good.skops"
    good.write_bytes(b"model bytes")
    (tmp_path / "dir.skops").mkdir()
    deployer = Deployer(Inventory(), Deployments(), Gates(), 30.0, accept, ArtifactStore(tmp_path, 1 << 20),
                        clock=lambda: NOW)
    deployer(received("mlbus.ModelTrained", trained(1, good.as_uri(), hashlib.sha256(b"model bytes").hexdigest())))
    [first] = deployer(received("mlbus.ModelLifecycle", approved(1), offset=1))
    assert first.value["phase"] == "completed"
    deployer(received("mlbus.ModelTrained", trained(2, (tmp_path / "dir.skops").as_uri(), "0" * 64), offset=2))
    refused, tampered = deployer(received("mlbus.ModelLifecycle", approved(2), offset=3))
    assert refused.value["phase"] == "refused" and "not a regular file" in refused.value["reason"]
    assert tampered.value["kind"] == "tampered-artifact" and tampered.value["severity"] == "critical"
    assert [r["version"] for r in deployer.deployments.routes("m")] == [1]


def test_serving_traffic_only_feeds_the_evidence(tmp_path):
    deployer = Deployer(Inventory(), Deployments(), Gates(), 30.0, accept, ArtifactStore(tmp_path, 1), clock=lambda: NOW)
    prediction = {"deployment_id": "d", "version": 1, "error": None, "latency_ms": 2.0, "request_id": "q",
                  "label": "a", "score": 0.9}
    assert deployer(received("mlbus.Prediction", prediction)) == []
    assert deployer.evidence.stats("d", 1)["count"] == 1
