"""An ensemble end to end on the real broker and services: two claims models train, pass their policies and
are deployed; their champions moving makes the trainer build the soft-vote ensemble (members pinned by version
and artifact hash), a person approves it, it serves — each answer the weighted mean of what its members said,
on record — and `audit explain` names both members with versions and hashes. A second version, with a member's
artifact altered on disk, is refused deployment; with the bytes back, an operator deploys it as a canary."""
from __future__ import annotations

from contextlib import ExitStack

import pytest

from services.bus import Publisher
from services.bus.settings import PROJECT_ROOT
from services.cli.sample_data import insurance_claims
from services.adapters import local_path, publish_batch
from tests.support.claims import CATEGORIES, NUMBERS, ask
from tests.support.scoring import routed
from tests.support.polling import LONG_STORY_S, served, topic_values, wait_until
from tests.support.processes import running

EXAMPLES = PROJECT_ROOT / "scripts" / "examples"
MEMBERS = ("claims_fraud", "claims_fraud_lr")
ENSEMBLE = "claims_fraud_ensemble"
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer", "services.scorer",
            "services.auditor")


def policy(model: str, human: bool) -> str:
    return (f"model: {model}\nmetric: roc_auc\nthresholds: {{roc_auc: 0.6}}\nhuman_approval: {str(human).lower()}\n"
            + ("approvers: [ana]\n" if human else ""))


def versions(bus, model: str) -> list[dict]:
    return [t for t in topic_values(bus, "models.trained") if t["model"] == model]


def deployments(bus, model: str) -> list[dict]:
    return [d for d in topic_values(bus, "deployments") if d["model"] == model]


@pytest.mark.timeout(LONG_STORY_S)
def test_an_ensemble_trains_is_approved_serves_explains_and_a_tampered_member_refuses_it(bus, bus_env, cli,
                                                                                       tmp_path):
    for model in (*MEMBERS, ENSEMBLE):
        (tmp_path / f"{model}.yaml").write_text(policy(model, human=model == ENSEMBLE))
        assert cli("models", "policy", str(tmp_path / f"{model}.yaml"), person="lead").returncode == 0
    for spec in ("insurance_claims_gb", "insurance_claims_lr", "insurance_claims_ensemble"):
        defined = cli("models", "define", str(EXAMPLES / f"{spec}.yaml"), person="dana")
        assert defined.returncode == 0, defined.stderr
    claims = tmp_path / "claims.csv"
    insurance_claims(rows=1200, seed=1).to_csv(claims, index=False)
    with ExitStack() as stack:
        processes = [stack.enter_context(running(m, bus_env, tmp_path / f"{m}.log")) for m in SERVICES]
        publish_batch(bus, "insurance_claims", claims, "t")
        [first] = wait_until(lambda: [t for t in versions(bus, ENSEMBLE) if len(t["members"]) == 2],
                             timeout=300, message="the ensemble built once both members are champions")
        assert cli("approve", ENSEMBLE, "1", "--reason", "members and holdout reviewed", person="ana").returncode == 0
        deployed = wait_until(lambda: [d for d in deployments(bus, ENSEMBLE) if d["phase"] == "completed"],
                              timeout=120, message="ensemble v1 deployed")
        routed(tmp_path / "services.scorer.log", deployed[-1])
        publisher = Publisher(bus, "shop-app")
        rows = insurance_claims(rows=100, seed=5, offset=10_000).to_dict("records")
        ids = ask(publisher, ENSEMBLE, rows, "ens")
        answers = wait_until(lambda: len(found := served(bus, ids)) == len(ids) and found, timeout=120,
                             message="the ensemble's answers")
        explained = wait_until(lambda: "member claims_fraud_lr" in (e := cli("audit", "explain", ids[0])).stdout
                               and e.stdout, timeout=60, message="the auditor to record the answer")

        # v2 (asked for by hand): a member's artifact altered before it goes out → refused; restored → a canary
        assert cli("train", ENSEMBLE, "--wait", "180", person="dana").returncode == 0
        [second] = [t for t in versions(bus, ENSEMBLE) if t["version"] == 2]
        member_file = local_path(second["members"][1]["artifact_uri"])
        original = member_file.read_bytes()
        member_file.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        assert cli("approve", ENSEMBLE, "2", "--reason", "looks fine", person="ana").returncode == 0
        [refused] = wait_until(lambda: [d for d in deployments(bus, ENSEMBLE) if d["phase"] == "refused"],
                               timeout=60, message="the deployment of v2 refused")
        member_file.write_bytes(original)
        assert cli("deploy", ENSEMBLE, "2", "--strategy", "canary", "--interval", "600", person="olga").returncode == 0
        wait_until(lambda: [d for d in deployments(bus, ENSEMBLE) if d["phase"] == "started"], timeout=60,
                   message="v2 as a canary")
        probes: list[str] = []                 # the scorer takes the canary up when its routing table has it

        def canary_answers() -> bool:
            rows = insurance_claims(rows=20, seed=8, offset=30_000 + len(probes)).to_dict("records")
            probes.extend(ask(publisher, ENSEMBLE, rows, f"probe{len(probes)}"))
            return any(p["variant"] == "canary" for p in served(bus, probes).values())
        wait_until(canary_answers, timeout=120, message="the scorer to route to the canary", interval=1.0)
        later = ask(publisher, ENSEMBLE, insurance_claims(rows=300, seed=7, offset=20_000).to_dict("records"), "canary")
        split = wait_until(lambda: len(found := served(bus, later)) == len(later) and found, timeout=120,
                           message="answers during the canary")
        assert all(p.poll() is None for p in processes)

    members = {t["model"]: t for m in MEMBERS for t in versions(bus, m) if t["version"] == 1}
    assert [(m["model"], m["version"], m["artifact_sha256"]) for m in first["members"]] == [
        (name, 1, members[name]["artifact_sha256"]) for name in MEMBERS]
    assert first["estimator"] == "Ensemble" and first["reason"] == "member-changed"
    assert set(first["features"]) == set(NUMBERS + CATEGORIES) and first["metrics"]["roc_auc"] > 0.6
    for answer in answers.values():                       # the weighted mean of what each member said
        said = {m["model"]: m for m in answer["members"]}
        assert [round(said[name]["weight"], 9) for name in MEMBERS] == [round(2 / 3, 9), round(1 / 3, 9)]
        for label, probability in answer["probabilities"].items():
            mean = sum(m["weight"] * m["probabilities"][label] for m in said.values())
            assert abs(probability - mean) < 1e-9
    for name in MEMBERS:
        assert f"member {name} v1 artifact sha256 {members[name]['artifact_sha256'][:16]}" in explained
    assert "sha256" in refused["reason"] and refused["version"] == 2
    tampered = [a for a in topic_values(bus, "alerts") if a["kind"] == "tampered-artifact" and a["model"] == ENSEMBLE]
    assert len(tampered) == 1
    variants = {p["variant"]: p["version"] for p in split.values()}
    assert variants == {"champion": 1, "canary": 2}
