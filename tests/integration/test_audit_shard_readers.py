"""The readers of a sharded audit.log on the real broker, through the CLI: `audit verify` walks every shard against
its own heads and gives each shard's figures; a shard tampered with in a copy of the log is named with the sequence
where it breaks; `audit prove SHARD:SEQUENCE` proves a record of shard 1 or 2 against that shard's head, and
check-proof holds offline; explain names a prediction's record by its place `shard:sequence`; export, replay and
rebuild-registry read every shard."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from services.bus import Bus, Event, Publisher, derive_id
from services.bus.topics import TopicAdmin, plan_topics
from services.domain import LogKey, cosign, newest_head, public_pem, shard_log_id
from services.adapters import kept_heads, log_id
from services.witness.handlers import cosignature_event
from tests.integration.test_audit_shards import SHARDS, all_audited, sharded  # noqa: F401
from tests.integration.test_auditor import publish_events
from tests.support.people import mlbus_cli
from tests.support.polling import wait_until
from tests.support.processes import running


def publish_prediction(bus, request_id: str) -> None:
    """A served prediction of `request_id`, as the scorer publishes one."""
    publisher = Publisher(bus, "scorer")
    publisher.publish(Event("mlbus.Prediction", key=request_id, id=derive_id("p", request_id), value={
        "prediction_id": f"p-{request_id}", "request_id": request_id, "entity_id": request_id, "model": "m",
        "version": 1, "variant": "champion", "served": True, "label": "a", "score": 0.75, "probabilities": {},
        "members": [], "latency_ms": 1.0, "cpu_ms": 1.0, "deployment_id": None, "error": None,
        "predicted_at": datetime.now(timezone.utc)}))
    publisher.flush()


def cosign_every_shard(bus, tmp_path) -> str:
    """Each shard's newest head co-signed by a witness key of the test's own, published on audit.witness (the
    witness service is another's work); the key's PEM, to pin with --witness-key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = LogKey(Ed25519PrivateKey.generate())
    publisher = Publisher(bus, "witness")
    for shard in range(SHARDS):
        head = newest_head(sum(kept_heads(bus, shard), []))
        assert head is not None and head.log_id == shard_log_id(log_id(bus), shard), shard
        publisher.publish(cosignature_event(cosign(key, "test-witness", head, 1)))
    publisher.flush()
    pem = tmp_path / "witness.pem"
    pem.write_bytes(public_pem(key.public))
    return str(pem)


def copy_shards(bus, bus_env: dict, records: list[dict], namespace: str) -> dict:
    """Another namespace on the same broker whose audit.log has the same shards holding these records, each in its
    shard's partition, as the same log (its id and its anchor). The environment to verify it with."""
    env = {**bus_env, "MLBUS_NAMESPACE": namespace, "MLBUS_AUDIT_LOG_ID": log_id(bus),
           "MLBUS_AUDIT_ANCHOR": bus.settings.audit.anchor}
    copy = Bus.from_env(env, principal="admin")         # a tamperer with the broker's admin rights
    admin, log_topic = TopicAdmin(copy), copy.catalogue.physical("audit.log")
    admin.ensure_internal(log_topic, SHARDS)            # the shards first, then the rest
    # Until the broker's metadata lists the new topic, a plan would make it again (TOPIC_ALREADY_EXISTS).
    existing = wait_until(lambda: log_topic in (found := admin.existing()) and found, timeout=30,
                          message="the copy's audit.log in the broker's metadata")
    admin.apply(plan_topics(copy.catalogue, existing))
    publisher = Publisher(copy, "tamper")
    for record in records:
        value = copy.schemas.encode("mlbus.AuditRecord", {k: v for k, v in record.items() if k != "shard"})
        publisher.produce_physical(copy.catalogue.physical("audit.log"), b"k", value, [], partition=record["shard"])
    publisher.flush()
    return env


def test_verify_prove_and_explain_read_each_shard(sharded, bus_env, cli, tmp_path):  # noqa: F811
    bus = sharded
    publish_events(bus, 900, "r")
    publish_prediction(bus, "req-1")
    with running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="100") as auditor:
        records = all_audited(bus, auditor)
    # The auditor signed each shard's head at its stop: every record is under a signed head of its shard.
    per_shard = {shard: sum(1 for r in records if r["shard"] == shard) for shard in range(SHARDS)}
    assert all(per_shard.values()), per_shard
    witness_pem = cosign_every_shard(bus, tmp_path)
    pem = tmp_path / "auditor.pem"
    pem.write_text(cli("audit", "key").stdout)

    result = cli("audit", "verify", "--json", "--witness-key", witness_pem)
    found = json.loads(result.stdout)
    assert result.returncode == 0 and found["intact"], found
    assert found["records"] == len(records) and found["log_id"] == log_id(bus)
    assert {s["shard"]: s["records"] for s in found["shards"]} == per_shard
    assert [s["log_id"] for s in found["shards"]] == [shard_log_id(log_id(bus), k) for k in range(SHARDS)]
    assert all(s["checkpoints"] and s["anchored_heads"] for s in found["shards"])
    text = cli("audit", "verify", "--witness-key", witness_pem)
    assert text.returncode == 0 and text.stdout.startswith(f"intact: {len(records)} records in {SHARDS} shards")
    print(text.stdout)

    # A copy of the log with one byte of one record of shard 1 flipped: that shard, at that sequence.
    victim = next(r for r in records if r["shard"] == 1 and r["sequence"] == min(41, per_shard[1]))
    flipped = bytearray(victim["value"])
    flipped[-1] ^= 0x01
    tampered = [{**r, "value": bytes(flipped)} if r is victim else r for r in records]
    env = copy_shards(bus, bus_env, tampered, f"{bus_env['MLBUS_NAMESPACE']}flip.")
    result = mlbus_cli(env, "audit", "verify", "--json", "--key", str(pem), "--witness-key", witness_pem)
    found = json.loads(result.stdout)
    assert result.returncode == 1 and (found["first_bad_shard"], found["first_bad_sequence"]) == (
        1, victim["sequence"]), found
    assert [s["first_bad_sequence"] for s in found["shards"]] == [None, victim["sequence"], None]
    text = mlbus_cli(env, "audit", "verify", "--key", str(pem), "--witness-key", witness_pem)
    assert text.returncode == 1 and text.stdout.startswith(f"BROKEN at shard 1, sequence {victim['sequence']}:")
    print(text.stdout)

    # An inclusion proof of a record of shard 1 and one of shard 2, by place, checked offline.
    for shard in (1, 2):
        sequence = min(5, per_shard[shard])
        out = tmp_path / f"{shard}-{sequence}.json"
        made = cli("audit", "prove", f"{shard}:{sequence}", "--out", str(out))
        assert made.returncode == 0, made.stderr
        document = json.loads(out.read_text())
        assert document["tree_head"]["log_id"] == shard_log_id(log_id(bus), shard)
        assert json.loads(document["leaf_data"])["sequence"] == sequence
        checked = mlbus_cli({"PATH": os.environ["PATH"]}, "audit", "check-proof", str(out), "--key", str(pem),
                            "--witness-key", witness_pem)
        assert checked.returncode == 0 and checked.stdout.startswith("VALID"), checked.stdout + checked.stderr
    assert cli("audit", "prove", f"1:{per_shard[1] + 5}").returncode == 1       # past shard 1's head

    # explain names the prediction's record by its place.
    [prediction] = [r for r in records if r["source_topic"] == "inference.predictions"]
    explained = cli("audit", "explain", "req-1")
    assert explained.returncode == 0, explained.stderr
    assert f"[audit #{prediction['shard']}:{prediction['sequence']}]" in explained.stdout, explained.stdout
    answer = json.loads(cli("audit", "explain", "req-1", "--json").stdout)
    assert (answer["prediction"]["audit_shard"], answer["prediction"]["audit_sequence"]) == (
        prediction["shard"], prediction["sequence"])
    timeline = cli("audit", "timeline")
    assert timeline.returncode == 0, timeline.stderr

    # export and replay read every shard (audit_records merges them): each record once, by its place.
    exported = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
    assert sorted((e["shard"], e["sequence"]) for e in exported) == sorted((r["shard"], r["sequence"]) for r in records)
    replayed = cli("audit", "replay", "--until", datetime.now(timezone.utc).isoformat(), "--json")
    assert replayed.returncode == 0, replayed.stderr
    rebuilt = cli("audit", "rebuild-registry")            # the registry's database from every shard's records
    assert rebuilt.returncode == 0, rebuilt.stderr
