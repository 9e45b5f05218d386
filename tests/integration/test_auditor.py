"""The auditor on the real broker: one record per event with no gap, through kill -9 and a fenced
twin, each signed tree head in the anchor matching the log; verify catches tampering in a copy of the log,
naming the first bad sequence number, and a full rewrite of the topics through the anchor; proofs made by
the CLI check with an independent RFC 9162 verifier."""
from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timezone
from pathlib import Path

import pytest

from services.bus import Bus, Event, Publisher, derive_id
from services.domain import GENESIS, Frontier, LogKey, sealed_leaf, verify_chain as verify
from services.adapters import audit_records, auditor_lag, decoded, kept_heads, log_id
from services.bus.topics import TopicAdmin, plan_topics
from tests.support.people import mlbus_cli
from tests.support.polling import read_topic, wait_until
from tests.support import rfc9162
from tests.support.audit_log import log_problems
from tests.support.processes import free_port, running, start, stop
from tests.support.prometheus import scrape
from tests.support.witness import cosigned, witnessing

# The single-chain log these tests were written for: a v1 log (one partition), read as it always was.
pytestmark = pytest.mark.audit_shards(1)

TOPICS = ("inference.requests", "outcomes", "kpis")


def publish_events(bus, count: int, prefix: str) -> int:
    """`count` events spread over three topics; returns how many messages reached the bus (schemas too)."""
    publisher = Publisher(bus, "load")
    now = datetime.now(timezone.utc)
    for i in range(count):
        kind = i % 3
        key = f"{prefix}{i}"
        if kind == 0:
            event = Event("mlbus.InferenceRequest", key=key, id=derive_id(key), value={
                "request_id": key, "entity_id": key, "model": "m", "features": {"x": float(i)}, "categories": {},
                "sent_at": now})
        elif kind == 1:
            event = Event("mlbus.Outcome", key=key, id=derive_id(key), value={
                "outcome_id": key, "request_id": key, "entity_id": key, "model": "m", "label": "a", "value": None,
                "observed_at": now})
        else:
            event = Event("mlbus.KpiObserved", key="conversion", id=derive_id(key), value={
                "kpi_id": key, "name": "conversion", "value": 0.1, "window_start": now, "window_end": now,
                "dimensions": {}, "source": "load", "observed_at": now})
        publisher.publish(event)
    publisher.flush()
    return publisher.delivered


def audited(bus, at_least: int, timeout: float = 180) -> list[dict]:
    """audit.log once the auditor has committed every message on the bus (and at least `at_least`)."""
    # every shard's group, erasures counted in each shard that reads them (shard 0's group alone covers its share)
    wait_until(lambda: sum(auditor_lag(bus).values()) == 0, timeout=timeout, interval=1.0,
               message="the auditor to commit every message")
    return wait_until(lambda: (found := audit_records(bus)) and len(found) >= at_least and found, timeout=60,
                      message=f"{at_least}+ audit records")


def assert_whole_chain(bus, records: list[dict]) -> None:
    """One record per message on the bus — none missing, none twice — each shard numbered 1..N, its chain and every
    signed head holding (tests/support/audit_log.py); the anchor holds committed heads only."""
    assert log_problems(bus, records) == []
    on_topic, anchored = kept_heads(bus)
    assert anchored and {h.tree_size for h in anchored} <= {h.tree_size for h in on_topic}   # committed ones only


def test_ten_thousand_events_become_ten_thousand_records_and_the_chain_verifies(bus, bus_env, cli, tmp_path):
    delivered = publish_events(bus, 10_000, "e")
    port = free_port()
    with witnessing(bus, bus_env, tmp_path / "witness.log"):
        with running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="2500",
                     MLBUS_METRICS_PORT=str(port)):
            records = audited(bus, delivered)
            at_end = 'mlbus_audit_sequence{shard="0"}'
            metrics = wait_until(lambda: (m := scrape(port)).get(at_end) == len(records) and m,
                                 timeout=60, message="the auditor's metrics at the log's end")
        cosigned(bus)                       # the head signed at the stop, too
    assert_whole_chain(bus, records)
    assert metrics['mlbus_audit_signed_size{shard="0"}'] > 0 and sum(
        v for k, v in metrics.items() if k.startswith('mlbus_messages_total{outcome="handled",service="auditor"')) \
        == len(records)
    print(f"10,000 events (and {len(records) - 10_000} schema announcements, the auditor's own included) → "
          f"{len(records)} records, sequence 1..{len(records)}")
    result = cli("audit", "verify", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["records"] == len(records)
    assert json.loads(result.stdout)["checkpoints"] >= 4                # every 2,500 and one at the stop


@pytest.mark.slow      # ~2 min; the chaos suite's service-crash scenario kills the auditor three times as well
def test_kill_minus_9_three_times_loses_and_duplicates_nothing(bus, bus_env, tmp_path):
    log = tmp_path / "auditor.log"
    auditor = start("services.auditor", bus_env, log)
    delivered = 0
    try:
        for kill in range(3):
            delivered += publish_events(bus, 25_000, f"k{kill}-")
            wait_until(lambda: len(audit_records(bus)) > delivered - 20_000, timeout=120, interval=0.5,
                       message="the auditor in the middle of its work")
            auditor.send_signal(signal.SIGKILL)
            auditor.wait(30)
            auditor = start("services.auditor", bus_env, log)
        delivered += publish_events(bus, 25_000, "k3-")
        records = audited(bus, delivered, timeout=300)
    finally:
        stop(auditor)
    assert_whole_chain(bus, records)
    print(f"three kill -9s during {delivered} messages → {len(records)} records (schemas included), "
          f"no gap, no duplicate")


def test_a_paused_twin_is_fenced_and_the_chain_does_not_fork(bus, bus_env, tmp_path):
    first = start("services.auditor", bus_env, tmp_path / "first.log")
    delivered = publish_events(bus, 3_000, "a")
    audited(bus, delivered)
    first.send_signal(signal.SIGSTOP)
    delivered += publish_events(bus, 3_000, "b")
    second = start("services.auditor", bus_env, tmp_path / "second.log")
    try:
        audited(bus, delivered)
        first.send_signal(signal.SIGCONT)
        delivered += publish_events(bus, 3_000, "c")
        audited(bus, delivered)
        first_exit = stop(first)
        records = audited(bus, delivered)
    finally:
        first.send_signal(signal.SIGCONT)
        stop(first)
        stop(second)
    assert_whole_chain(bus, records)
    # Woken, the paused copy either wrote first — its shard's batch or head — and was fenced (it exits loudly), or
    # heard first that its shard had moved and let it go without a write (it stops cleanly). Never both halves of
    # a fork: the chain above is whole.
    log = (tmp_path / "first.log").read_text()
    fenced = first_exit != 0 and "fenced by a newer instance" in log
    let_go = first_exit == 0 and '"shard stopped"' in log.split('"shard started"')[-1]
    assert fenced or let_go, (first_exit, log[-3000:])


def copy_log(bus, bus_env: dict, records: list[dict], namespace: str, checkpoints: list[dict] = ()) -> dict:
    """Another namespace on the same broker holding these records as its audit.log (and these checkpoints), as
    the same log: its id and its anchor. The environment to verify it with."""
    env = {**bus_env, "MLBUS_NAMESPACE": namespace, "MLBUS_AUDIT_LOG_ID": log_id(bus),
           "MLBUS_AUDIT_ANCHOR": bus.settings.audit.anchor}
    copy = Bus.from_env(env, principal="admin")         # a tamperer with the broker's admin rights
    admin = TopicAdmin(copy)
    admin.create_with_partitions("audit.log", 1)          # the copy of a v1 log is one too
    admin.apply(plan_topics(copy.catalogue, admin.existing()))
    publisher = Publisher(copy, "tamper")
    for record in records:
        publisher.produce("audit.log", b"k", copy.schemas.encode("mlbus.AuditRecord", record), [])
    for checkpoint in checkpoints:
        publisher.produce("audit.checkpoints", b"audit.log", copy.schemas.encode("mlbus.AuditCheckpoint", checkpoint), [])
    publisher.flush()
    return env


def rewritten(records: list[dict], at: int, key: LogKey, name: str, every: int) -> tuple[list[dict], list[dict]]:
    """The log as an operator holding the auditor's own key could rewrite it: record `at` changed, every hash
    after it recomputed, every checkpoint signed again."""
    forged, tree, checkpoints = [], Frontier(), []
    for record in records:
        if record["sequence"] == at:
            record = {**record, "actor": "mallory"}
        sealed, hashed = sealed_leaf(record, forged[-1]["hash"] if forged else GENESIS)
        forged.append(sealed)
        tree.append(hashed)
        if sealed["sequence"] % every == 0 or sealed["sequence"] == len(records):
            head = key.sign(name, sealed["sequence"], tree.root().hex(), 1)
            checkpoints.append({"sequence": head.tree_size, "hash": sealed["hash"], "checkpoint_at": 1,
                                "log_id": name, "root_hash": head.root_hash, "signed_at": 1, "key_id": head.key_id,
                                "signature": head.signature, "frontier": [h.hex() for h in tree.hashes]})
    return forged, checkpoints


def test_verify_names_the_first_bad_record_or_head_in_tampered_and_rewritten_logs(bus, bus_env, cli, tmp_path):
    delivered = publish_events(bus, 300, "t")
    with witnessing(bus, bus_env, tmp_path / "witness.log"):
        with running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="100"):
            records = audited(bus, delivered)
        cosigned(bus)
    assert cli("audit", "verify").returncode == 0
    saved = tmp_path / "checkpoint.json"
    saved.write_text(cli("audit", "checkpoint").stdout)                   # taken at the stop: the head
    assert json.loads(saved.read_text())["sequence"] == len(records)
    pem = tmp_path / "auditor.pem"
    pem.write_text(cli("audit", "key").stdout)
    flipped = bytearray(records[99]["value"])
    flipped[-1] ^= 0x01
    copies = {"flip": (records[:99] + [{**records[99], "value": bytes(flipped)}] + records[100:], 100),
              "drop": (records[:149] + records[150:], 150),
              "insert": (records[:179] + [records[10]] + records[179:], 180),
              "swap": (records[:199] + [records[200], records[199]] + records[201:], 200),
              "truncate": (records[:250], 251)}
    for name, (tampered, first_bad) in copies.items():
        env = copy_log(bus, bus_env, tampered, f"{bus_env['MLBUS_NAMESPACE']}{name}.")
        result = mlbus_cli(env, "audit", "verify", "--from-checkpoint", str(saved), "--key", str(pem), "--json")
        found = json.loads(result.stdout)
        assert result.returncode == 1 and found["first_bad_sequence"] == first_bad, (name, found)
        print(f"{name}: {found['reason']} at sequence {found['first_bad_sequence']}")

    # A full rewrite: topics recreated, record 120 changed, chain and checkpoints recomputed and re-signed.
    forged, forged_checkpoints = rewritten(records, 120, LogKey.load(bus.settings.audit.key), log_id(bus), 100)
    env = copy_log(bus, bus_env, forged, f"{bus_env['MLBUS_NAMESPACE']}rewrite.", forged_checkpoints)
    without_anchor = mlbus_cli({**env, "MLBUS_AUDIT_ANCHOR": str(tmp_path / "empty")}, "audit", "verify", "--key",
                               str(pem), "--json")          # the rewrite passes the topic's heads, not a missing anchor
    assert without_anchor.returncode == 1 and "anchor holds no head" in json.loads(without_anchor.stdout)["reason"]
    result = mlbus_cli(env, "audit", "verify", "--key", str(pem), "--json")
    found = json.loads(result.stdout)
    assert result.returncode == 1 and found["caught_by"].startswith("anchor ") and found["first_bad_sequence"] == 200
    assert "between sequences 101 and 200 was rewritten" in found["reason"]
    print(f"rewrite: {found['reason']} [{found['caught_by']}]")

    # A head altered in a copy of the anchor: reported as a bad signature, naming the line.
    anchor = Path(bus.settings.audit.anchor) / f"{log_id(bus)}.jsonl"
    lines = anchor.read_text().splitlines()
    altered = {**json.loads(lines[0]), "tree_size": json.loads(lines[0])["tree_size"] + 1}
    (tmp_path / "altered").mkdir()
    (tmp_path / "altered" / anchor.name).write_text("\n".join([json.dumps(altered), *lines[1:]]) + "\n")
    env = copy_log(bus, bus_env, records, f"{bus_env['MLBUS_NAMESPACE']}altered.")
    result = mlbus_cli({**env, "MLBUS_AUDIT_ANCHOR": str(tmp_path / "altered")}, "audit", "verify", "--key", str(pem),
                       "--json")
    found = json.loads(result.stdout)
    assert result.returncode == 1 and "signature does not verify" in found["reason"]
    assert found["caught_by"].endswith(f"{anchor.name}:1")


def test_proofs_from_the_cli_check_offline_and_with_an_independent_verifier(bus, bus_env, cli, tmp_path):
    delivered = publish_events(bus, 600, "p")
    with witnessing(bus, bus_env, tmp_path / "witness.log"):
        with running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="128"):
            records = audited(bus, delivered)
        cosigned(bus)
    pem, witness_pem = tmp_path / "auditor.pem", tmp_path / "witness.pem"
    pem.write_text(cli("audit", "key").stdout)
    witness_pem.write_text(cli("audit", "key", "--witness").stdout)
    for sequence in (1, 129, len(records)):
        made = cli("audit", "prove", str(sequence), "--out", str(tmp_path / f"{sequence}.json"))
        assert made.returncode == 0, made.stderr
        checked = mlbus_cli({"PATH": os.environ["PATH"]}, "audit", "check-proof", str(tmp_path / f"{sequence}.json"),
                            "--key", str(pem), "--witness-key", str(witness_pem))   # no broker: the file and the keys
        assert checked.returncode == 0 and checked.stdout.startswith("VALID"), checked.stdout + checked.stderr
        unwitnessed = mlbus_cli({"PATH": os.environ["PATH"]}, "audit", "check-proof",
                                str(tmp_path / f"{sequence}.json"), "--key", str(pem))
        assert unwitnessed.returncode == 1 and "no witness key is trusted" in unwitnessed.stdout
        assert rfc9162.inclusion_holds(json.loads((tmp_path / f"{sequence}.json").read_text()), pem.read_bytes())
    made = cli("audit", "prove", "--consistency", "256")
    assert made.returncode == 0, made.stderr
    assert rfc9162.consistency_holds(json.loads(made.stdout), pem.read_bytes())
    tampered = json.loads((tmp_path / "129.json").read_text())
    tampered["leaf_data"] = tampered["leaf_data"].replace('"sequence":129', '"sequence":130')
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    assert cli("audit", "check-proof", str(tmp_path / "bad.json"), "--key", str(pem), "--witness-key",
               str(witness_pem)).returncode == 1
    assert cli("audit", "prove", str(len(records) + 5)).returncode == 1


def test_a_message_at_the_size_limit_is_dead_lettered_and_audited_whole(bus, bus_env, tmp_path):
    """Random (incompressible) bytes just under inference.requests' 1 MiB cap: the relay's dead letter adds its
    reason, the auditor wraps both, and every copy fits its topic's larger cap — nobody crash-loops."""
    limit = int(bus.catalogue["inference.requests"].config["max.message.bytes"])
    big = os.urandom(limit - 8 * 1024)
    publisher = Publisher(bus, "load")
    publisher.produce("inference.requests", b"big", big, [("origin", b"test")])
    publisher.flush()
    with running("services.auditor", bus_env, tmp_path / "auditor.log") as auditor, \
            running("tests.support.relay_service", bus_env, tmp_path / "relay.log") as relay:
        [dead] = read_topic(bus, "inference.requests.dlq", expected=1, timeout=120)
        records = audited(bus, at_least=2)
        assert auditor.poll() is None and relay.poll() is None
    assert dead.value() == big
    kept = {r["source_topic"]: r for r in records}
    assert kept["inference.requests"]["value"] is None and kept["inference.requests.dlq"]["value"] is None
    opened = {e.topic: e.entry["value"] for e in decoded(bus, records)}      # personal: sealed, opened by the admin
    assert opened["inference.requests"] == big and opened["inference.requests.dlq"] == big
    assert verify(records).broken is None
