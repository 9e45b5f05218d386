"""The deployer's pure decisions and the scorer's variant assignment."""
from collections import Counter
from datetime import datetime, timedelta, timezone

from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.bus.signing import Verdict
from services.deployer.decide import Gates, advance, gate, on_approved, on_request
from services.scorer.scoring import assign

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)
OPERATOR = Verdict(signer="ana", signer_key="k")          # the requests below are ana's, verified


def inventory_with(*versions: tuple[int, str]) -> Inventory:
    inventory = Inventory()
    for version, status in versions:
        inventory.apply("mlbus.ModelTrained", {"model": "m", "version": version, "run_id": f"r{version}",
                                               "artifact_sha256": f"sha{version}"})
        if status == "approved":
            inventory.apply("mlbus.ModelLifecycle", {"event_id": f"e{version}", "model": "m", "version": version,
                                                     "kind": "approved", "alias": None, "cause_id": f"c{version}"})
    return inventory


def request(version: int, strategy: str = "replace", **extra) -> dict:
    return {"request_id": f"q{version}{strategy}", "model": "m", "version": version, "action": "deploy",
            "strategy": strategy, "percent": None, "steps": [], "step_interval_s": 30.0, "actor": "ana",
            "reason": "", "artifact_sha256": f"sha{version}", **extra}


def applied(deployments: Deployments, events) -> list:
    for event in events:
        deployments.apply(event.record, event.value)
    return events


def served(deployments: Deployments) -> dict:
    return {r["variant"]: (r["version"], r["share"]) for r in deployments.routes("m")}


def test_only_approved_versions_deploy_and_the_first_one_replaces():
    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "awaiting"))
    [refused] = applied(deployments, on_request(deployments, inventory, request(2), OPERATOR, NOW))
    assert refused.value["phase"] == "refused" and "only approved" in refused.value["reason"]
    [done] = applied(deployments, on_request(deployments, inventory, request(1, "canary"), OPERATOR, NOW))
    assert done.value["strategy"] == "replace" and served(deployments) == {"champion": (1, 1.0)}


def test_an_approval_deploys_by_itself_as_a_canary_when_a_champion_serves():
    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "approved"))
    applied(deployments, on_request(deployments, inventory, request(1), OPERATOR, NOW))
    lifecycle = {"event_id": "e2", "model": "m", "version": 2, "kind": "approved", "actor": "ana"}
    [started] = applied(deployments, on_approved(deployments, inventory, lifecycle, NOW, 30.0))
    assert started.value["phase"] == "started" and served(deployments) == {"champion": (1, 0.9), "canary": (2, 0.1)}


def test_a_passing_canary_walks_its_steps_to_champion_and_a_failing_one_rolls_back():
    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "approved"))
    applied(deployments, on_request(deployments, inventory, request(1), OPERATOR, NOW))
    applied(deployments, on_request(deployments, inventory, request(2, "canary", steps=[10, 50, 100]), OPERATOR, NOW))
    good = {"count": 100, "errors": 0, "outcomes": 0, "accuracy": 0.0, "p99_ms": 10.0}
    [step] = applied(deployments, advance(deployments.current["m"], gate(good, good, Gates()), {}, NOW, deployments))
    assert step.value["phase"] == "step" and served(deployments) == {"champion": (1, 0.5), "canary": (2, 0.5)}
    [done] = applied(deployments, advance(deployments.current["m"], ("pass", "ok"), {}, NOW, deployments))
    assert done.value["phase"] == "completed" and served(deployments) == {"champion": (2, 1.0)}

    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "approved"))
    applied(deployments, on_request(deployments, inventory, request(1), OPERATOR, NOW))
    applied(deployments, on_request(deployments, inventory, request(2, "canary"), OPERATOR, NOW))
    bad = {**good, "errors": 10}
    [back] = applied(deployments, advance(deployments.current["m"], gate(bad, good, Gates()), {}, NOW, deployments))
    assert back.value["phase"] == "rolled-back" and "scoring errors" in back.value["reason"]
    assert served(deployments) == {"champion": (1, 1.0)}


def test_gates_wait_for_evidence_and_judge_accuracy_when_outcomes_arrive():
    few = {"count": 3, "errors": 0, "outcomes": 0, "accuracy": 0.0, "p99_ms": 1.0}
    base = {"count": 100, "errors": 0, "outcomes": 50, "accuracy": 0.95, "p99_ms": 10.0}
    assert gate(few, base, Gates())[0] == "wait"
    assert gate({**base, "accuracy": 0.6}, base, Gates())[0] == "fail"
    assert gate({**base, "p99_ms": 100.0}, base, Gates())[0] == "fail"
    assert gate({**base, "accuracy": 0.94}, base, Gates())[0] == "pass"


def test_shadow_scores_without_serving_and_rollback_returns_to_the_previous_champion():
    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "approved"), (3, "approved"))
    applied(deployments, on_request(deployments, inventory, request(1), OPERATOR, NOW))
    applied(deployments, on_request(deployments, inventory, request(2, "shadow"), OPERATOR, NOW))
    routes = deployments.routes("m")
    assert assign(routes, "any-entity")[0]["version"] == 1 and assign(routes, "x")[1][0]["version"] == 2
    applied(deployments, on_request(deployments, inventory, request(3), OPERATOR, NOW))
    rollback = {**request(0), "action": "rollback", "version": None}
    [back] = applied(deployments, on_request(deployments, inventory, rollback, OPERATOR,
                                                         NOW + timedelta(seconds=1)))
    assert back.value["phase"] == "rolled-back" and served(deployments)["champion"][0] != 3


def test_champion_challenger_split_is_on_target_and_stable_per_entity():
    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "approved"))
    applied(deployments, on_request(deployments, inventory, request(1), OPERATOR, NOW))
    applied(deployments, on_request(deployments, inventory, request(2, "champion-challenger", percent=20), OPERATOR, NOW))
    routes = deployments.routes("m")
    counts = Counter(assign(routes, f"entity-{i}")[0]["variant"] for i in range(10_000))
    assert abs(counts["challenger"] / 10_000 - 0.20) <= 0.03
    assert all(assign(routes, f"entity-{i}")[0]["variant"] == assign(routes, f"entity-{i}")[0]["variant"]
               for i in range(500))


def test_a_request_whose_signature_fails_is_refused_and_changes_no_route():
    deployments, inventory = Deployments(), inventory_with((1, "approved"))
    [refused] = on_request(deployments, inventory, request(1), Verdict(refusal="unsigned: ..."), NOW)
    assert refused.value["phase"] == "refused" and refused.value["reason"] == "signature: unsigned: ..."
    assert refused.value["actor"] == "unverified:ana" and refused.value["routes"] == []


def test_a_regression_canary_is_judged_by_online_mae_relative_to_the_champion():
    base = {"count": 100, "errors": 0, "outcomes": 50, "accuracy": None, "mae": 2.0, "p99_ms": 10.0}
    verdict = gate({**base, "mae": 3.0}, base, Gates())
    assert verdict[0] == "fail" and "online MAE 3 vs champion 2" in verdict[1]
    assert gate({**base, "mae": 2.1}, base, Gates())[0] == "pass"


def test_evidence_joins_regression_outcomes_by_value_and_classification_outcomes_by_label():
    from services.deployer.evidence import EvidenceBook
    book = EvidenceBook()
    for request, score, label in (("r1", 10.0, None), ("r2", 4.0, None), ("c1", None, "yes")):
        book.prediction({"deployment_id": "d", "version": 1 if label is None else 2, "error": None,
                         "latency_ms": 1.0, "request_id": request, "label": label, "score": score})
    book.outcome({"request_id": "r1", "label": None, "value": 12.0})
    book.outcome({"request_id": "r2", "label": None, "value": 3.0})
    book.outcome({"request_id": "c1", "label": "yes", "value": None})
    assert book.stats("d", 1)["mae"] == 1.5 and book.stats("d", 1)["accuracy"] is None
    assert book.stats("d", 2)["accuracy"] == 1.0 and book.stats("d", 2)["mae"] is None


def test_an_outcome_that_comes_before_its_predictions_is_counted_when_they_come():
    from services.deployer.evidence import EvidenceBook
    book = EvidenceBook()
    book.outcome({"request_id": "c1", "label": "yes", "value": None})      # outcomes and predictions: two topics
    for version in (1, 2):                                                   # served, and a shadow
        book.prediction({"deployment_id": "d", "version": version, "error": None, "latency_ms": 1.0,
                         "request_id": "c1", "label": "yes" if version == 1 else "no", "score": None})
    assert book.stats("d", 1)["outcomes"] == 1 and book.stats("d", 1)["accuracy"] == 1.0
    assert book.stats("d", 2)["outcomes"] == 1 and book.stats("d", 2)["accuracy"] == 0.0


def test_a_deploy_request_binds_the_versions_artifact():
    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "approved"))
    for bound, reason in [(None, "binds no artifact"), ("sha1", "this version's artifact is")]:
        [refused] = on_request(deployments, inventory, request(2, artifact_sha256=bound), Verdict(signer="ana"), NOW)
        assert refused.value["phase"] == "refused" and reason in refused.value["reason"]


def test_an_unverified_request_does_not_answer_the_real_one_with_its_id():
    deployments, inventory = Deployments(), inventory_with((1, "approved"), (2, "approved"))
    [refused] = applied(deployments, on_request(deployments, inventory, request(2), Verdict(refusal="unsigned"), NOW))
    assert refused.value["phase"] == "refused"
    [done] = on_request(deployments, inventory, request(2), Verdict(signer="ana"), NOW)     # ana's own, after
    assert done.value["phase"] == "completed"
