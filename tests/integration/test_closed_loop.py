"""The closed loop on the real broker with every service: sustained drift on the champion → one training
request → a new version → approved by policy → deployed; drift goes on, the cool-down holds."""
from __future__ import annotations

import json
from contextlib import ExitStack

import yaml
import pytest

from services.adapters import publish_batch
from services.bus.settings import PROJECT_ROOT
from tests.support.browser import screens_as
from tests.support.datasets import good, write
from tests.support.polling import LONG_STORY_S, topic_values, wait_until
from tests.support.processes import running
from tests.support.scoring import send_requests

SPEC = yaml.safe_load((PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml").read_text())
MODEL = SPEC["model"]
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer",
            "services.scorer", "services.drift_watcher")
WINDOW = 100


def deployed(bus, version: int) -> bool:
    return any(d["version"] == version and d["phase"] == "completed" for d in topic_values(bus, "deployments"))


def drift_requests(bus) -> list[dict]:
    return [r for r in topic_values(bus, "training.requests") if r["reason"] == "drift"]


def champion_drift_after(bus, request: dict) -> list[dict]:
    return [r for r in topic_values(bus, "monitoring.drift")
            if r["champion"] and r["dataset_drift"] and r["window_end"] > request["requested_at"]]


@pytest.mark.timeout(LONG_STORY_S)
def test_sustained_drift_retrains_and_redeploys_once_within_the_cool_down(bus, bus_env, cli, tmp_path):
    spec = {**SPEC, "monitoring": {"window_rows": WINDOW, "retrain_after": 2, "retrain_cooldown_seconds": 3600}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"model": MODEL, "metric": "roc_auc", "human_approval": False,
                                                          "min_improvement": -1.0}))
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    assert cli("models", "define", str(tmp_path / "spec.yaml"), person="dana").returncode == 0
    with ExitStack() as stack:
        processes = [stack.enter_context(running(m, bus_env, tmp_path / f"{m}.log", MLBUS_CANARY_INTERVAL_S="1"))
                     for m in SERVICES]
        publish_batch(bus, "breast_cancer", write(good(rows=400), tmp_path / "good.csv"), "t")
        wait_until(lambda: deployed(bus, 1), timeout=180, message="v1 deployed")
        rounds = iter(range(10_000))

        def drifted_traffic():
            send_requests(bus, MODEL, WINDOW // 2, prefix=f"d{next(rounds)}", scale=1.4)

        wait_until(lambda: drifted_traffic() or deployed(bus, 2), timeout=240, interval=0.5,
                   message="a drift-triggered v2, deployed")
        wait_until(lambda: drifted_traffic() or len([r for r in champion_drift_after(bus, drift_requests(bus)[0])
                                                     if r["version"] == 2]) >= 2,
                   timeout=120, interval=0.5, message="drift going on under the champion v2")
        requests = drift_requests(bus)
        trained = topic_values(bus, "models.trained")
        reports = topic_values(bus, "monitoring.drift")
        alerts = [a for a in topic_values(bus, "alerts") if a["kind"] == "drift"]
        assert all(p.poll() is None for p in processes)

    [request] = requests
    evidence = json.loads(request["evidence_json"])
    assert request["requested_by"] == "drift-watcher" and evidence["version"] == 1
    assert len(evidence["report_ids"]) == 2 and set(evidence["report_ids"]) <= {r["report_id"] for r in reports}
    assert [(t["version"], t["reason"]) for t in trained] == [(1, "new-data"), (2, "drift")]
    assert trained[1]["request_id"] == request["request_id"]
    held_back = champion_drift_after(bus, request)       # without the cool-down these would have asked again
    assert len([r for r in held_back if r["version"] == 2]) >= 2 and alerts
    seen = screens_as(bus_env, cli.identity("mallory"), tmp_path / "console.log", {
        "monitoring-drift": f"/monitoring?model={MODEL}", "deployments-retrained": "/deployments",
        "experiments-retrained": f"/experiments?model={MODEL}"})
    assert "drift" in seen["monitoring-drift"] and "v2 (champion)" in seen["monitoring-drift"]
    assert "training data vs the latest window" in seen["monitoring-drift"]
    assert "drift-watcher" in seen["deployments-retrained"] or "v2 champion" in seen["deployments-retrained"]
    assert "drift" in seen["experiments-retrained"] and "new-data" in seen["experiments-retrained"]
    print(f"closed loop: {len(reports)} drift reports, {len(alerts)} drift alerts, one drift-triggered training; "
          f"{len(held_back)} drifted champion windows after it, held back by the cool-down")
