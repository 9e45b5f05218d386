"""What an insider cannot fake, on the real secured broker: a person's key is theirs (the admin's machine never
holds it, and what the admin writes cannot swap, backdate or un-revoke it); every act is taken from its verified
signer, once, while fresh — each refusal with its reason on the record."""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus import Event, Publisher
from services.bus.envelope import new_id
from services.bus.identity import Identity, publish_declaration
from services.bus.settings import PROJECT_ROOT
from services.bus.signing import ACT_FRESHNESS_MS, prove_possession, sign_act
from services.cli.acts import signed
from services.adapters import publish_batch
from tests.support.datasets import good, write
from tests.support.people import people_home
from tests.support.polling import topic_values, wait_until
from tests.support.processes import running

MODEL = "breast_cancer_lr"
SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
POLICY = f"model: {MODEL}\nmetric: roc_auc\nhuman_approval: true\nfour_eyes: true\n"


def people(cli) -> dict:
    listed = cli("people", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_key_is_its_owners_and_the_admin_cannot_swap_backdate_or_unrevoke_it(bus, bus_env, cli, tmp_path):
    started = datetime.now(timezone.utc)
    ana = Identity.load(cli.identity("ana"))
    home = people_home(bus_env, "ana")
    assert (home / "identity.json").stat().st_mode & 0o077 == 0
    secret = base64.b64encode(ana.private_key)
    admins = [p for p in Path(bus_env["MLBUS_VAR"]).rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert admins == [], f"the admin's machine holds ana's private key: {admins}"

    known = next(k for k in people(cli)["keys"] if k["key_id"] == ana.key_id)
    other = Ed25519PrivateKey.generate().private_bytes_raw()
    _, other_public, other_proof = prove_possession("ana", other)
    declared = {"key_id": ana.key_id, "name": "ana", "principal": known["principal"], "roles": ["approver"],
                "public_key": other_public, "proof": other_proof, "revoked_at": None, "declared_by": "admin",
                "created_at": datetime(2001, 1, 1, tzinfo=timezone.utc)}
    publish_declaration(bus, declared)                                              # a swapped key under ana's id
    own_public = base64.b64encode(Ed25519PrivateKey.from_private_bytes(ana.private_key).public_key()
                                  .public_bytes_raw()).decode()
    own_proof = prove_possession("ana", ana.private_key)[2]
    publish_declaration(bus, {**declared, "public_key": own_public, "roles": ["approver", "admin"],
                              "proof": own_proof})                                   # her key, with more roles
    assert cli("people", "revoke", "ana").returncode == 0
    publish_declaration(bus, {**declared, "public_key": own_public, "proof": own_proof})       # "un-revoked"
    etl = cli.identity("etl")                                                      # declared now: the broker says when
    listed = people(cli)
    reasons = [r["reason"] for r in listed["refused"] if r["key_id"] == ana.key_id]
    assert any("not the hash of the public key" in r for r in reasons), reasons
    assert any("declared again differently" in r for r in reasons), reasons
    [ana_now] = [k for k in listed["keys"] if k["key_id"] == ana.key_id]
    assert ana_now["roles"] == ["approver"] and ana_now["revoked_at"] is not None       # not un-revoked
    [etl_key] = [k for k in listed["keys"] if k["key_id"] == Identity.load(etl).key_id]
    assert datetime.fromisoformat(etl_key["created_at"]) >= started.replace(microsecond=0)

    service_named = cli("people", "add", "trainer", "--role", "approver", "--enrolment",
                        str(home / "ana.enrolment.json"))
    assert service_named.returncode != 0 and "name of a service" in service_named.stderr


def alerts(bus, kind: str) -> list[dict]:
    return [a for a in topic_values(bus, "alerts") if a["kind"] == kind]


def test_acts_are_their_verified_signers_taken_once_and_fresh(bus, bus_env, cli, tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    bo, lead = Identity.load(cli.identity("bo")), Identity.load(cli.identity("lead"))
    cli.identity("olga")
    with running("services.validator", bus_env), running("services.trainer", bus_env, tmp_path / "trainer.log"), \
            running("services.registry", bus_env, tmp_path / "registry.log"), \
            running("services.deployer", bus_env, tmp_path / "deployer.log"):
        publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t")
        wait_until(lambda: [d for d in topic_values(bus, "models.lifecycle") if d["kind"] == "registered"],
                   timeout=180, message="v1 registered")
        publisher = Publisher(bus, "cli:bo")

        # The four-eyes bypass: bo (a data scientist and an approver) asks for a training in the drift-watcher's name.
        request = {"model": MODEL, "requested_at": datetime.now(timezone.utc), "evidence_json": "{}"}
        unsigned = {**request, "request_id": new_id(), "reason": "schedule", "requested_by": "drift-watcher"}
        as_service = signed(bus, bo, "mlbus.TrainingRequested", {**request, "request_id": new_id(), "reason": "drift",
                                                                 "requested_by": "drift-watcher"})
        for value in (unsigned, as_service):
            publisher.publish(Event("mlbus.TrainingRequested", value, key=MODEL, id=value["request_id"]))
        publisher.flush()
        refused = wait_until(lambda: len(alerts(bus, "training-refused")) >= 2 and alerts(bus, "training-refused"),
                             timeout=120, message="both training requests refused")
        messages = " | ".join(a["message"] for a in refused)
        assert "unsigned" in messages and "bo lacks the role service" in messages, messages

        # A policy published again (the same act), and an old one (made before the freshness window).
        [policy] = topic_values(bus, "models.policies")
        publisher.publish(Event("mlbus.PromotionPolicyDefined", policy, key=MODEL, id=new_id()))
        old = sign_act("mlbus.PromotionPolicyDefined",
                       {**{k: v for k, v in policy.items() if k not in ("signer", "signer_key", "signature", "act_id",
                                                                      "made_at")},
                        "policy_version": policy["policy_version"] + 1, "human_approval": False},
                       "lead", lead.private_key, now_ms=int(time.time() * 1000) - ACT_FRESHNESS_MS - 60_000)
        publisher.publish(Event("mlbus.PromotionPolicyDefined", old, key=MODEL, id=new_id()))
        publisher.flush()
        refused = wait_until(lambda: len(alerts(bus, "policy-refused")) >= 2 and alerts(bus, "policy-refused"),
                             timeout=60, message="both policies refused")
        messages = " | ".join(a["message"] for a in refused)
        assert "replayed: act" in messages and "replayed or stale" in messages, messages

        # An approval published again: ana approves v1, a copy of her act comes later.
        assert cli("approve", MODEL, "1", "--reason", "reviewed", person="ana").returncode == 0
        wait_until(lambda: [d for d in topic_values(bus, "models.lifecycle") if d["kind"] == "approved"],
                   timeout=60, message="ana's approval")
        [approval] = topic_values(bus, "approvals")
        publisher.publish(Event("mlbus.ApprovalSubmitted", approval, key=MODEL, id=new_id()))
        publisher.flush()
        replays = wait_until(lambda: [d for d in topic_values(bus, "models.lifecycle")
                                      if d["kind"] == "approval-refused" and "replayed" in d["reason"]],
                             timeout=60, message="the copied approval refused")
        assert replays[0]["actor"] == "ana" or "ana" in replays[0]["actor"]

        # A rollback published again.
        wait_until(lambda: topic_values(bus, "deployments"), timeout=60, message="v1 deployed")
        assert cli("rollback", MODEL, "--reason", "looks off", person="olga").returncode == 0
        [rollback] = wait_until(lambda: [r for r in topic_values(bus, "deploy.requests") if r["action"] == "rollback"],
                                timeout=30, message="olga's rollback")
        wait_until(lambda: len(topic_values(bus, "deployments")) >= 2, timeout=60, message="the rollback answered")
        publisher.publish(Event("mlbus.DeploymentRequested", rollback, key=MODEL, id=new_id()))
        publisher.flush()
        wait_until(lambda: [d for d in topic_values(bus, "deployments")
                            if d["phase"] == "refused" and "replayed" in d["reason"]],
                   timeout=60, message="the copied rollback refused")

        # An unsigned spec (its monitoring could roll back) is folded by no one: the trainer says so.
        spec = next(iter(topic_values(bus, "models.specs")))
        forged = {k: v for k, v in spec.items() if k not in ("signer", "signer_key", "signature", "act_id", "made_at")}
        publisher.publish(Event("mlbus.ModelSpecDefined", forged, key=MODEL, id=new_id()))
        publisher.flush()
        wait_until(lambda: [a for a in alerts(bus, "spec-refused") if "unsigned" in a["message"]],
                   timeout=60, message="the unsigned spec refused")
