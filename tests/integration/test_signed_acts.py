"""People's acts are signed and verified: forgeries are refused with their reason, four-eyes compares verified
signers, and the signature format checks out with the openssl command line (not with the project's code)."""
from __future__ import annotations

import base64
import json
import subprocess
from datetime import datetime, timedelta, timezone

from services.bus import Event, Publisher
from services.adapters import publish_batch
from services.bus.envelope import new_id
from services.bus.identity import Identity
from services.bus.settings import PROJECT_ROOT
from services.cli.acts import signed
from tests.support.datasets import good, write
from tests.support.people import enrol
from tests.support.polling import topic_values, wait_until
from tests.support.processes import running

MODEL = "breast_cancer_lr"
SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
APPROVAL = "mlbus.ApprovalSubmitted"
POLICY = f"model: {MODEL}\nmetric: roc_auc\nhuman_approval: true\nfour_eyes: true\n"
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")   # DER SubjectPublicKeyInfo of a raw key


def approval(actor: str, version: int = 1) -> dict:
    return {"approval_id": new_id(), "model": MODEL, "version": version, "decision": "approve", "actor": actor,
            "reason": "looks fine", "submitted_at": datetime.now(timezone.utc)}


def decisions(bus) -> list[dict]:
    return [d for d in topic_values(bus, "models.lifecycle") if d["kind"] != "registered"]


def test_forged_unsigned_replayed_and_revoked_approvals_are_refused_and_four_eyes_holds(bus, bus_env, cli, tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    ana, bo = Identity.load(cli.identity("ana")), Identity.load(cli.identity("bo"))
    carl = Identity.load(cli.identity("carl"))
    assert cli("people", "revoke", "carl").returncode == 0
    second_bo = tmp_path / "bo-laptop.json"
    enrol(cli, "bo", ["approver"], second_bo, cli.endorsers("bo", ["approver"]))
    with running("services.validator", bus_env), running("services.trainer", bus_env), \
            running("services.registry", bus_env, tmp_path / "registry.log"):
        publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t")
        wait_until(lambda: [d for d in topic_values(bus, "models.lifecycle") if d["kind"] == "registered"],
                   timeout=180, message="v1 registered")
        assert cli("train", MODEL, "--wait", "180", person="bo").returncode == 0        # bo requested v2
        wait_until(lambda: len([d for d in topic_values(bus, "models.lifecycle") if d["kind"] == "registered"]) == 2,
                   timeout=180, message="v2 registered")

        forged = {**signed(bus, bo, APPROVAL, approval("ana")), "signer": "ana"}         # claims ana, bo's key
        unsigned = approval("ana")                                                        # the admin's transport
        replayed = {**signed(bus, ana, APPROVAL, approval("ana", version=1)), "version": 2}
        revoked = signed(bus, carl, APPROVAL, approval("carl"))
        publisher = Publisher(bus, "test:forger")
        for value in (forged, unsigned, replayed, revoked):
            publisher.publish(Event(APPROVAL, value, key=MODEL, id=value["approval_id"]))
        publisher.flush()
        own = cli("approve", MODEL, "2", "--reason", "mine", identity_file=second_bo)
        assert own.returncode == 0, own.stderr
        wait_until(lambda: len(decisions(bus)) == 5, timeout=60, message="five refusals")
        assert cli("approve", MODEL, "2", "--reason", "reviewed", person="ana").returncode == 0
        wait_until(lambda: len(decisions(bus)) == 6, timeout=60, message="ana's approval")

    refusals, approved = decisions(bus)[:5], decisions(bus)[5]
    assert [d["kind"] for d in refusals] == ["approval-refused"] * 5
    reasons = [d["reason"] for d in refusals]
    assert "belongs to bo, not to the claimed signer ana" in reasons[0]
    assert "unsigned" in reasons[1]
    assert "does not verify" in reasons[2]
    assert "revoked" in reasons[3]
    assert "four-eyes" in reasons[4] and refusals[4]["actor"] == "bo"
    assert approved["kind"] == "approved" and approved["actor"] == "ana" and approved["version"] == 2
    evidence = json.loads(approved["evidence_json"])
    assert evidence["signer"] == "ana" and evidence["signer_key"] == ana.key_id
    statuses = {d["version"]: d["kind"] for d in decisions(bus)}
    assert statuses == {1: "approval-refused", 2: "approved"}            # v1: nothing but refusals


def documented_canonical_bytes(record: str, value: dict) -> bytes:
    """The canonical form as docs/security.md states it, written out here on purpose (not the project's code)."""
    def plain(item):
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items() if v is not None}
        if isinstance(item, list):
            return [plain(v) for v in item]
        if isinstance(item, datetime):
            return (item - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)
        return item
    body = {k: plain(v) for k, v in value.items() if k != "signature" and v is not None}
    return json.dumps({"record": record, "value": body}, sort_keys=True, separators=(",", ":")).encode()


def test_openssl_verifies_a_signed_approval_over_the_documented_canonical_bytes(bus, cli, tmp_path):
    ana = Identity.load(cli.identity("ana"))
    publisher = Publisher(bus, "cli:ana")
    made = signed(bus, ana, APPROVAL, {**approval("ana", version=7), "artifact_sha256": "ab" * 32})
    publisher.publish(Event(APPROVAL, made, key=MODEL, id=made["approval_id"]))
    publisher.flush()
    [act] = wait_until(lambda: topic_values(bus, "approvals"), timeout=30, message="the approval")
    [key] = [k for k in topic_values(bus, "identities") if k["key_id"] == act["signer_key"]]
    public_pem = tmp_path / "ana.pub.pem"
    der = ED25519_SPKI_PREFIX + base64.b64decode(key["public_key"])
    public_pem.write_text("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n")
    (tmp_path / "act.bin").write_bytes(documented_canonical_bytes(APPROVAL, act))
    (tmp_path / "act.sig").write_bytes(base64.b64decode(act["signature"]))
    check = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public_pem), "-rawin",
             "-in", str(tmp_path / "act.bin"), "-sigfile", str(tmp_path / "act.sig")]
    verified = subprocess.run(check, capture_output=True, text=True)
    assert verified.returncode == 0 and "Signature Verified Successfully" in verified.stdout, verified.stderr
    (tmp_path / "act.bin").write_bytes(documented_canonical_bytes(APPROVAL, {**act, "version": 8}))
    assert subprocess.run(check, capture_output=True, text=True).returncode != 0      # one field changed: refused
