"""The audit log's roots of trust apart, on the real broker with the real `mlbus` command: verify fails without the
anchor, with the anchor rolled back and without a witness's co-signature; keys given are pinned; a forged
checkpoint is refused by the auditor at its restart (it resumes from one it signed); and a history rewritten with the
auditor's own key is refused by the witness, which has co-signed the true one — so verify fails on the rewrite."""
from __future__ import annotations

import pytest

import json
import shutil
import stat
from pathlib import Path

from services.bus import Bus, Publisher
from services.domain import Frontier, LogKey, head_of_checkpoint
from services.adapters import Anchor, audit_records, checkpoints, declare_witness_key, log_id
from services.domain import verify_chain as verify
from tests.integration.test_auditor import audited, publish_events, rewritten
from services.bus.topics import TopicAdmin
from tests.support.people import mlbus_cli, prepared_bus
from tests.support.polling import wait_until
from tests.support.processes import running
from tests.support.witness import cosigned, witnessing

# The single-chain log these tests were written for: a v1 log (one partition), read as it always was.
pytestmark = pytest.mark.audit_shards(1)


def verified(cli, *args: str, env: dict | None = None) -> tuple[int, dict]:
    result = mlbus_cli(env, "audit", "verify", "--json", *args) if env else cli("audit", "verify", "--json", *args)
    return result.returncode, json.loads(result.stdout)


def test_verify_needs_the_anchor_whole_and_a_witness_and_pins_the_keys_given(bus, bus_env, cli, tmp_path):
    delivered = publish_events(bus, 300, "r")
    with running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="100"):
        records = audited(bus, delivered)
    code, found = verified(cli)                                  # signed heads, but no witness yet
    assert code == 1 and found["first_bad_sequence"] is None and "no witness key is trusted" in found["reason"]
    with witnessing(bus, bus_env, tmp_path / "witness.log"):
        cosigned(bus)
        code, found = verified(cli)
        assert code == 0 and found["records"] == len(records), found
        pem, witness_pem, stranger = tmp_path / "auditor.pem", tmp_path / "witness.pem", tmp_path / "stranger.pem"
        pem.write_text(cli("audit", "key").stdout)
        witness_pem.write_text(cli("audit", "key", "--witness").stdout)
        stranger.write_text(LogKey.create(tmp_path / "stranger.ed25519").public_pem().decode())
        assert verified(cli, "--key", str(pem), "--witness-key", str(witness_pem))[0] == 0
        code, found = verified(cli, "--key", str(stranger))              # pinned: the declared key is not trusted
        assert code == 1 and "unknown key" in found["reason"]
        code, found = verified(cli, "--witness-key", str(stranger))
        assert code == 1 and "no valid co-signature by a trusted witness" in found["reason"]

        anchor = Path(bus.settings.audit.anchor) / f"{log_id(bus)}.jsonl"
        lines = anchor.read_text().splitlines()
        assert len(lines) >= 3
        rolled_back = tmp_path / "rolled-back"
        rolled_back.mkdir()
        (rolled_back / anchor.name).write_text("\n".join(lines[:-2]) + "\n")      # its last lines removed
        code, found = verified(cli, env={**bus_env, "MLBUS_AUDIT_ANCHOR": str(rolled_back)})
        assert code == 1 and "rolled back" in found["reason"] and found["caught_by"].startswith("anchor ")
        kept = tmp_path / "kept.jsonl"
        shutil.copy(anchor, kept)
        anchor.unlink()                                                          # the anchor deleted
        code, found = verified(cli)
        assert code == 1 and "anchor holds no head" in found["reason"], found
        text = cli("audit", "verify")
        assert text.returncode == 1 and text.stdout.startswith("UNTRUSTED: the anchor holds no head")
        anchor.write_text("")                                                    # or emptied
        assert verified(cli)[0] == 1
        shutil.copy(kept, anchor)
        assert verified(cli)[0] == 0
    print(f"verify: exit 1 without a witness, with the anchor rolled back ({len(lines)} → {len(lines) - 2} heads), "
          f"deleted or emptied, with a pinned stranger's key; exit 0 with all in place")


def test_the_auditor_refuses_a_forged_checkpoint_at_its_restart_and_resumes_from_its_own(bus, bus_env, cli,
                                                                                       tmp_path):
    delivered = publish_events(bus, 300, "f")
    log = tmp_path / "auditor.log"
    with running("services.auditor", bus_env, log, MLBUS_AUDIT_CHECKPOINT_EVERY="100"):
        records = audited(bus, delivered)
    latest = max(checkpoints(bus), key=lambda c: c["sequence"])
    stranger = LogKey.create(tmp_path / "stranger.ed25519")
    far = Frontier(latest["sequence"] + 50, [bytes(32)] * bin(latest["sequence"] + 50).count("1"))
    by_stranger = stranger.sign(log_id(bus), far.size, far.root().hex(), latest["signed_at"] + 1)
    forgeries = [
        {**latest, "sequence": far.size, "hash": "ab" * 32, "root_hash": by_stranger.root_hash,   # an undeclared key
         "key_id": by_stranger.key_id, "signature": by_stranger.signature, "frontier": [h.hex() for h in far.hashes]},
        {**latest, "frontier": [bytes(32).hex()] + latest["frontier"][1:]},     # the auditor's head, a bent frontier
    ]
    publisher = Publisher(bus, "mallory")                       # the broker's admin can write any topic
    for forged in forgeries:
        publisher.produce("audit.checkpoints", b"audit.log", bus.schemas.encode("mlbus.AuditCheckpoint", forged), [])
    publisher.flush()
    delivered += publish_events(bus, 100, "g")
    with running("services.auditor", bus_env, log, MLBUS_AUDIT_CHECKPOINT_EVERY="100") as auditor:
        after = audited(bus, delivered)
        assert auditor.poll() is None
    refusals = [json.loads(line) for line in log.read_text().splitlines()
                if line.startswith("{") and "checkpoint REFUSED" in line]
    reasons = " | ".join(r["reason"] for r in refusals)
    assert f"signed by key {stranger.key_id}, not by this auditor's" in reasons, reasons
    assert "frontier hashes to" in reasons, reasons
    assert len(after) > len(records) and verify(after).broken is None          # the chain went on from its own
    assert [r["sequence"] for r in after] == list(range(1, len(after) + 1))
    code, found = verified(cli)
    assert code == 1 and "unknown key" in found["reason"] and found["caught_by"] == "audit.checkpoints"
    print(f"forged checkpoints refused at the restart: {reasons}")


def test_a_history_rewritten_with_the_auditors_key_is_refused_by_the_witness(bus, bus_env, cli, tmp_path):
    delivered = publish_events(bus, 300, "w")
    with witnessing(bus, bus_env, tmp_path / "witness.log"), \
            running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="100"):
        records = audited(bus, delivered)
        cosigned(bus)
    forged, forged_checkpoints = rewritten(records, 120, LogKey.load(bus.settings.audit.key), log_id(bus), 100)
    namespace = f"{bus_env['MLBUS_NAMESPACE']}rewrite."
    env = {**bus_env, "MLBUS_NAMESPACE": namespace, "MLBUS_AUDIT_LOG_ID": log_id(bus),
           "MLBUS_AUDIT_ANCHOR": str(tmp_path / "rewritten-anchor")}
    # the copy of a v1 log is one too: its audit.log made with one partition before its other topics
    TopicAdmin(Bus.from_env(env, principal="admin")).create_with_partitions("audit.log", 1)
    copy = prepared_bus(env)                             # its topics, ACLs and the auditor's key on its identities
    declare_witness_key(copy, bus.settings.audit.witness_dir)  # the same witness, its state kept: it co-signed the truth
    publisher = Publisher(copy, "tamper")
    for record in forged:
        publisher.produce("audit.log", b"k", copy.schemas.encode("mlbus.AuditRecord", record), [])
    publisher.flush()
    witness_log = tmp_path / "witness-rewrite.log"
    with running("services.witness", env, witness_log):
        for checkpoint in forged_checkpoints:
            publisher.produce("audit.checkpoints", b"audit.log",
                              copy.schemas.encode("mlbus.AuditCheckpoint", checkpoint), [])
        publisher.flush()
        wait_until(lambda: "SPLIT VIEW" in witness_log.read_text(), timeout=120,
                   message="the witness to refuse the rewritten heads")
    assert len(audit_records(copy)) == len(forged)
    Anchor(env["MLBUS_AUDIT_ANCHOR"]).append([head_of_checkpoint(c, "forged").signed for c in forged_checkpoints])
    code, found = verified(cli, env=env)     # chain, heads and anchor all agree: only the co-signature is missing
    assert code == 1 and "no valid co-signature" in found["reason"], found
    print(f"rewrite with the auditor's own key: the witness refused it ({found['reason'][:100]}…)")


def test_mlbus_up_starts_the_witness_as_its_own_principal_and_declares_its_key(bus, cli, tmp_path):
    up = cli("up", "witness")
    try:
        assert up.returncode == 0 and "witness key" in up.stderr, up.stderr
        pem = cli("audit", "key", "--witness")
        assert pem.returncode == 0 and pem.stdout.startswith("-----BEGIN PUBLIC KEY"), pem.stderr
        assert stat.S_IMODE((bus.settings.audit.witness_dir / "witness.ed25519").stat().st_mode) == 0o600
        assert stat.S_IMODE(bus.settings.audit.witness_dir.stat().st_mode) == 0o700
        again = cli("audit", "declare-witness", str(bus.settings.audit.witness_dir))    # a witness run elsewhere: by hand
        assert again.returncode == 0 and "witness key" in again.stderr, again.stderr
        missing = cli("audit", "declare-witness", str(tmp_path / "nowhere"), "--wait", "0.5")
        assert missing.returncode == 2 and "wrote no key" in missing.stderr, missing.stderr
    finally:
        assert cli("down").returncode == 0
