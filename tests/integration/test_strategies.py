"""Deployment strategies end to end: canary walking to 100 %, shadow, champion/challenger, a bad canary
rolled back on online accuracy, a tampered artifact refused while the champion keeps serving."""
from __future__ import annotations

import collections
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import yaml
import pytest

from services.bus import Event, Publisher, derive_id
from services.adapters import local_path, publish_batch
from services.bus.settings import PROJECT_ROOT
from tests.support.browser import screens_as
from tests.support.datasets import good, write
from tests.support.polling import LONG_STORY_S, read_topic, topic_values, wait_until
from tests.support.processes import running
from tests.support.scoring import FEATURES, routed, send_requests

SPEC = yaml.safe_load((PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml").read_text())
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer",
            "services.scorer")
MODEL = "breast_cancer_lr"


def decoded(bus, topic: str, expected: int = 0, **kw) -> list[dict]:
    return [bus.schemas.decode(m.value())[1] for m in read_topic(bus, topic, expected, timeout=180, **kw)]


def deployments(bus) -> list[dict]:
    return sorted(topic_values(bus, "deployments"), key=lambda d: d["changed_at"])


def setup(cli, tmp_path: Path, policy: dict, spec: dict = SPEC) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"model": MODEL, "metric": "roc_auc", **policy}))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    assert cli("models", "define", str(tmp_path / "spec.yaml"), person="dana").returncode == 0


def wait_for_phase(bus, version: int, phase: str, drive=None, timeout: float = 180, model: str = MODEL) -> dict:
    def reached():
        if drive:
            drive()
        return next((d for d in deployments(bus) if d["model"] == model and d["version"] == version
                     and d["phase"] == phase), None)
    return wait_until(reached, timeout=timeout, interval=0.5, message=f"v{version} {phase}")


def served_predictions(bus, expected: int) -> list[dict]:
    return decoded(bus, "inference.predictions", expected, settle_s=2)


@pytest.mark.timeout(LONG_STORY_S)
def test_canary_completes_then_shadow_and_champion_challenger(bus, bus_env, cli, tmp_path):
    setup(cli, tmp_path, {"human_approval": False, "min_improvement": -1.0})
    scorer_log = tmp_path / "services.scorer.log"
    with ExitStack() as stack:
        for module in SERVICES:
            stack.enter_context(running(module, bus_env, tmp_path / f"{module}.log", MLBUS_CANARY_INTERVAL_S="1"))
        publish_batch(bus, "breast_cancer", write(good(rows=400), tmp_path / "good.csv"), "t")
        wait_for_phase(bus, 1, "completed")
        assert cli("train", MODEL, "--wait", "180", person="bo").returncode == 0                      # v2: auto canary
        rounds = iter(range(1000))
        wait_for_phase(bus, 2, "completed",
                       drive=lambda: send_requests(bus, MODEL, 300, prefix=f"c{next(rounds)}"))
        canary = [d for d in deployments(bus) if d["version"] == 2]
        assert [d["phase"] for d in canary] == ["started", "step", "step", "completed"]
        assert [d["step"] for d in canary] == [0, 1, 2, 3] and canary[-1]["routes"][0]["version"] == 2

        assert cli("train", MODEL, "--wait", "180", person="bo").returncode == 0                      # v3: auto canary again
        wait_for_phase(bus, 3, "started")
        assert cli("rollback", MODEL, "--reason", "testing shadow first", person="olga").returncode == 0
        wait_for_phase(bus, 3, "rolled-back")
        assert cli("deploy", MODEL, "3", "--strategy", "shadow", person="olga").returncode == 0
        routed(scorer_log, wait_for_phase(bus, 3, "completed"))
        before = len(topic_values(bus, "inference.predictions"))
        shadow_ids = send_requests(bus, MODEL, 200, prefix="shadow")
        shadowed = [p for p in served_predictions(bus, before + 400) if p["request_id"] in set(shadow_ids)]

        assert cli("deploy", MODEL, "3", "--strategy", "champion-challenger", "--percent", "30", person="olga").returncode == 0
        routed(scorer_log, wait_until(lambda: [d for d in deployments(bus) if d["strategy"] == "champion-challenger"],
                                      timeout=60)[-1])
        publisher = Publisher(bus, "shop-app")
        for i in range(10_000):
            request_id = f"cc-{i:05d}"
            publisher.publish(Event("mlbus.InferenceRequest", key=f"e{i % 2000}", id=derive_id(request_id), value={
                "request_id": request_id, "entity_id": f"e{i % 2000}", "model": MODEL, "categories": {},
                "features": {f: 1.0 for f in FEATURES}, "sent_at": datetime.now(timezone.utc)}))
        publisher.flush()
        everything = served_predictions(bus, before + 400 + 10_000)

    by_request = collections.defaultdict(list)
    for p in shadowed:
        by_request[p["request_id"]].append(p)
    assert len(by_request) == 200 and all(len(v) == 2 for v in by_request.values())
    for pair in by_request.values():
        served = [p for p in pair if p["served"]]
        assert len(served) == 1 and served[0]["version"] == 2 and served[0]["variant"] == "champion"
        assert [p["version"] for p in pair if not p["served"]] == [3]
    split_answers = [p for p in everything if p["request_id"].startswith("cc-") and p["served"]]
    assert len(split_answers) == 10_000 and len({p["request_id"] for p in split_answers}) == 10_000
    share = sum(p["variant"] == "challenger" for p in split_answers) / 10_000
    assert abs(share - 0.30) <= 0.03, share
    variants = collections.defaultdict(set)
    for p in split_answers:
        variants[p["entity_id"]].add(p["variant"])
    assert all(len(v) == 1 for v in variants.values()), "one entity, one variant"
    shown = screens_as(bus_env, cli.identity("olga"), tmp_path / "console.log",
                       {"deployments-strategies": "/deployments"})["deployments-strategies"]
    assert "v2 champion 70%, v3 challenger 30%" in shown                           # what serves now
    for phase, strategy in (("rolled-back", "canary"), ("completed", "shadow"), ("completed", "champion-challenger")):
        assert f"{phase}\t{strategy}" in shown, (phase, strategy)               # each change in the history


@pytest.mark.timeout(LONG_STORY_S)
def test_a_bad_canary_rolls_back_and_a_tampered_artifact_is_refused(bus, bus_env, cli, tmp_path):
    setup(cli, tmp_path, {"human_approval": True, "approvers": ["ana"], "four_eyes": True, "min_improvement": -1.0})
    with ExitStack() as stack:
        for module in SERVICES:
            stack.enter_context(running(module, bus_env, tmp_path / f"{module}.log", MLBUS_CANARY_INTERVAL_S="2"))
        publish_batch(bus, "breast_cancer", write(good(rows=400), tmp_path / "good.csv"), "t")
        wait_until(lambda: topic_values(bus, "models.trained"), timeout=180, message="v1")
        assert cli("approve", MODEL, "1", "--reason", "ok", person="ana").returncode == 0
        wait_for_phase(bus, 1, "completed")

        # v2 from a spec that can only guess: one weak feature and a stump.
        bad_spec = {**SPEC, "features": ["mean_fractal_dimension"], "estimator": "DecisionTreeClassifier",
                    "hyperparameters": {"max_depth": 1}, "grid": {}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad_spec))
        assert cli("models", "define", str(tmp_path / "bad.yaml"), person="dana").returncode == 0
        assert cli("train", MODEL, "--wait", "180", person="bo").returncode == 0
        assert cli("approve", MODEL, "2", "--reason", "try it", person="ana").returncode == 0
        wait_for_phase(bus, 2, "started")
        truth = good(rows=569, seed=11)["diagnosis"].tolist()
        rounds = iter(range(1000))

        def traffic_with_outcomes():
            prefix = f"b{next(rounds)}"
            ids = send_requests(bus, MODEL, 400, prefix=prefix)
            publisher = Publisher(bus, "shop-app")
            for i, request_id in enumerate(ids):
                publisher.publish(Event("mlbus.Outcome", key=f"customer-{i}", id=derive_id("outcome", request_id),
                                        value={"outcome_id": derive_id("outcome", request_id), "request_id": request_id,
                                               "entity_id": f"customer-{i}", "model": MODEL, "label": truth[i],
                                               "value": None, "observed_at": datetime.now(timezone.utc)}))
            publisher.flush()

        rolled = wait_for_phase(bus, 2, "rolled-back", drive=traffic_with_outcomes)

        # v3: trained, then one byte of its artifact flipped before it is approved.
        assert cli("models", "define", str(PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml")
                   , person="dana").returncode == 0
        assert cli("train", MODEL, "--wait", "180", person="bo").returncode == 0
        v3 = next(t for t in topic_values(bus, "models.trained") if t["version"] == 3)
        artifact = local_path(v3["artifact_uri"])
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
        assert cli("approve", MODEL, "3", "--reason", "ok", person="ana").returncode == 0
        refused = wait_for_phase(bus, 3, "refused")
        alerts = wait_until(lambda: [a for a in topic_values(bus, "alerts") if a["kind"] == "tampered-artifact"],
                            timeout=60)
        after = send_requests(bus, MODEL, 50, prefix="after")
        answers = wait_until(lambda: (a := [p for p in topic_values(bus, "inference.predictions")
                                            if p["request_id"] in set(after)]) and len(a) == 50 and a, timeout=60)

    assert "online accuracy" in rolled["reason"] and rolled["routes"] == [{**rolled["routes"][0], "version": 1}]
    assert "sha256" in refused["reason"] and alerts[0]["severity"] == "critical"
    assert {p["version"] for p in answers} == {1}, "the champion keeps serving"


def outcomes_for(bus, model: str, ids: list[str], truth: list, regression: bool = False) -> None:
    """What the business observed later for each request: the label, or the true value (regression)."""
    publisher = Publisher(bus, "shop-app")
    for i, request_id in enumerate(ids):
        publisher.publish(Event("mlbus.Outcome", key=f"customer-{i}", id=derive_id("outcome", request_id), value={
            "outcome_id": derive_id("outcome", request_id), "request_id": request_id, "entity_id": f"customer-{i}",
            "model": model, "label": None if regression else truth[i], "value": float(truth[i]) if regression else None,
            "observed_at": datetime.now(timezone.utc)}))
    publisher.flush()


@pytest.mark.timeout(LONG_STORY_S)
def test_a_bad_regression_canary_rolls_back_on_online_mae(bus, bus_env, cli, tmp_path):
    """Regression has no accuracy: the canary is judged by its online MAE against the champion's."""
    model = "breast_cancer_area"
    spec = {**SPEC, "model": model, "target": "mean_area", "task": "regression", "estimator": "Ridge",
            "hyperparameters": {}, "grid": {}, "metric": "mae"}
    setup(cli, tmp_path, {"model": model, "metric": "mae", "human_approval": False, "min_improvement": -1e9}, spec)
    with ExitStack() as stack:
        for module in SERVICES:
            stack.enter_context(running(module, bus_env, tmp_path / f"{module}.log", MLBUS_CANARY_INTERVAL_S="2"))
        publish_batch(bus, "breast_cancer", write(good(rows=400), tmp_path / "good.csv"), "t")
        wait_for_phase(bus, 1, "completed", model=model)
        # v2 can only guess: one weak feature and a stump.
        bad_spec = {**spec, "features": ["mean_fractal_dimension"], "estimator": "DecisionTreeRegressor",
                    "hyperparameters": {"max_depth": 1}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad_spec))
        assert cli("models", "define", str(tmp_path / "bad.yaml"), person="dana").returncode == 0
        assert cli("train", model, "--wait", "180", person="bo").returncode == 0
        wait_for_phase(bus, 2, "started", model=model)
        truth = good(rows=569, seed=11)["mean_area"].tolist()
        rounds = iter(range(1000))

        def traffic_with_outcomes():
            ids = send_requests(bus, model, 400, prefix=f"r{next(rounds)}")
            outcomes_for(bus, model, ids, truth, regression=True)

        rolled = wait_for_phase(bus, 2, "rolled-back", drive=traffic_with_outcomes, model=model)
    assert "online MAE" in rolled["reason"], rolled["reason"]
    assert [r["version"] for r in rolled["routes"]] == [1]

