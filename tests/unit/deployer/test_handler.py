"""The deployer's handler with in-memory ports: an approval whose artifact is not a file is refused, with an
alert, and the serving version stays."""
import hashlib
from datetime import datetime, timezone

from services.adapters import ArtifactStore
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.deployer.decide import Gates
from services.domain.monitoring import SpecMonitoring, monitoring_json, parse_monitoring
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
                  "label": "a", "score": 0.9, "model": "m", "served": True, "variant": "champion",
                  "prediction_id": "p"}
    assert deployer(received("mlbus.Prediction", prediction)) == []
    assert deployer.evidence.stats("d", 1)["count"] == 1


def completed(deployment_id: str, version: int) -> dict:
    return {"deployment_id": deployment_id, "model": "m", "strategy": "replace", "phase": "completed", "version": version,
            "routes": [{"version": version, "variant": "champion", "share": 1.0, "served": True,
                        "artifact_sha256": "a"}], "reason": "", "actor": "deployer", "cause_id": deployment_id,
            "changed_at": NOW, "steps": [], "step": 0, "step_interval_s": 0.0, "evidence_json": "{}"}


def served(i: int, version: int, latency_ms: float, error: str | None = None) -> dict:
    return {"deployment_id": "d2", "version": version, "error": error, "latency_ms": latency_ms,
            "request_id": f"q{i}", "label": "a", "score": 0.9, "model": "m", "served": True, "variant": "champion",
            "prediction_id": f"p{i}"}


def slo_deployer(tmp_path, **monitoring) -> Deployer:
    specs = SpecMonitoring()
    specs.apply("mlbus.ModelSpecDefined", {"model": "m", "monitoring_json": monitoring_json(
        parse_monitoring({"slo_window": 10, **monitoring}))})
    deployer = Deployer(Inventory(), Deployments(), Gates(), 30.0, accept, ArtifactStore(tmp_path, 1),
                        clock=lambda: NOW, specs=specs)
    for d in (completed("d1", 1), completed("d2", 2)):
        deployer.deployments.apply("mlbus.DeploymentChanged", d)
    return deployer


def test_the_champion_breaking_its_latency_slo_is_an_alert_and_a_rollback_where_the_spec_says(tmp_path):
    deployer = slo_deployer(tmp_path, slo_p99_ms=100, slo_rollback=True)
    outputs = [deployer(received("mlbus.Prediction", served(i, 2, 20.0 if i < 5 else 400.0))) for i in range(10)]
    assert outputs[:9] == [[]] * 9
    alert, rolled_back = outputs[9]
    assert alert.value["kind"] == "slo" and "p99 latency" in alert.value["message"] and "≤ 100 ms" in alert.value["message"]
    assert rolled_back.value["phase"] == "rolled-back" and rolled_back.value["routes"][0]["version"] == 1
    assert rolled_back.value["reason"].startswith("automatic rollback: p99 latency")


def test_an_error_rate_slo_alerts_without_rolling_back_and_a_good_window_is_quiet(tmp_path):
    deployer = slo_deployer(tmp_path, slo_error_rate=0.1)
    quiet = [deployer(received("mlbus.Prediction", served(i, 2, 5.0))) for i in range(10)]
    assert quiet == [[]] * 10
    outputs = [deployer(received("mlbus.Prediction", served(i, 2, 5.0, "boom" if i % 3 == 0 else None)))
               for i in range(10, 20)]
    [alert] = outputs[-1]
    assert alert.value["kind"] == "slo" and "error rate 30.0%" in alert.value["message"]   # i = 12, 15, 18
    assert [r["version"] for r in deployer.deployments.routes("m")] == [2]
    canary = {**served(99, 1, 900.0), "variant": "canary"}                   # not the champion: not judged
    assert all(deployer(received("mlbus.Prediction", canary)) == [] for _ in range(20))


def test_only_a_data_scientists_signed_spec_sets_the_slos_that_can_roll_back(tmp_path):
    from services.bus.signing import Verdict

    def verify(message, roles):
        signed = message.value.get("signature")
        return Verdict(signer=message.value["defined_by"], signer_key="k") if signed else Verdict(refusal="unsigned")
    deployer = Deployer(Inventory(), Deployments(), Gates(), 30.0, verify, ArtifactStore(tmp_path, 1), clock=lambda: NOW)
    spec = {"model": "m", "defined_by": "dana", "monitoring_json": monitoring_json(parse_monitoring(
        {"slo_window": 10, "slo_p99_ms": 5.0, "slo_rollback": True}))}
    deployer(received("mlbus.ModelSpecDefined", spec))
    assert not deployer.specs.of("m").slo_rollback                          # unsigned: not folded
    deployer(received("mlbus.ModelSpecDefined", {**spec, "signature": "s"}, offset=1))
    assert deployer.specs.of("m").slo_rollback and deployer.specs.of("m").slo_p99_ms == 5.0
