"""Running audit.log's shards on the real broker: a paused auditor copy whose shards moved on is fenced when it
wakes; an erasure deletes a subject's key in every shard that sealed its data; `mlbus up --auditors 2` runs two
copies that share the three shards, and `mlbus status` says which copy runs which."""
from __future__ import annotations

import json
import signal
from datetime import datetime, timezone

import pytest

from services.bus import Event, Publisher, derive_id
from services.bus.supervision import shard_owners
from services.domain import key_name, shard_of
from services.adapters import audit_records, data_keys, decoded
from tests.integration.test_audit_shards import SHARDS, all_audited, assert_sharded, sharded  # noqa: F401
from tests.integration.test_auditor import publish_events
from tests.support.people import Cli
from tests.support.polling import bus_messages, wait_until
from tests.support.processes import free_port, running, start, stop


def shards_of(log_text: str, event: str) -> set[int]:
    """The shards a copy's JSON log says it started (or stopped)."""
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return {line["shard"] for line in lines if line.get("event") == event and "shard" in line}


def members(bus) -> dict[str, list[int]]:
    """The shards group's members now (client id → assigned shards), as `mlbus status` reads them."""
    owners = shard_owners(bus)
    return {} if "error" in owners else {m["client_id"]: m["shards"] for m in owners["members"]}


@pytest.mark.slow      # ~3 min; in the suite, test_auditor's paused twin runs the same shard code on a v1 log
def test_a_paused_copy_whose_shards_moved_on_is_fenced_when_it_wakes(sharded, bus_env, tmp_path):
    bus = sharded
    logs = {name: tmp_path / f"{name}.log" for name in ("zombie", "survivor")}
    zombie = start("services.auditor", bus_env, logs["zombie"], MLBUS_INSTANCE="1")
    survivor = start("services.auditor", bus_env, logs["survivor"], MLBUS_INSTANCE="2")
    try:
        shared = wait_until(lambda: (m := members(bus)) and len(m) == 2 and all(m.values()) and m, timeout=90,
                            message="both copies running shards")
        paused = shared["auditor-shards-1"]
        publish_events(bus, 1_500, "a")
        wait_until(lambda: len(audit_records(bus)) > 300, timeout=120, interval=0.5,
                   message="the copies in the middle of their work")
        zombie.send_signal(signal.SIGSTOP)
        publish_events(bus, 1_500, "b")
        # the group drops the silent member after its session timeout (10 s) and gives its shards to the survivor
        wait_until(lambda: members(bus) == {"auditor-shards-2": list(range(SHARDS))}, timeout=120,
                   message="the survivor to take the paused copy's shards")
        assert set(paused) <= shards_of(logs["survivor"].read_text(), "shard started")
        all_audited(bus, survivor)
        zombie.send_signal(signal.SIGCONT)
        # fenced: it exits (its shard's transaction refused), or it lets its shards go and rejoins as a new member
        woke = wait_until(lambda: zombie.poll() is not None or set(paused) <= shards_of(
            logs["zombie"].read_text(), "shard stopped"), timeout=120, message="the woken copy to exit or let go")
        publish_events(bus, 600, "c")
        records = all_audited(bus, survivor)
        assert survivor.poll() is None
    finally:
        zombie.send_signal(signal.SIGCONT)
        stop(zombie)
        stop(survivor)
    text = logs["zombie"].read_text()
    if zombie.returncode != 0:
        assert "fenced" in text.lower(), text[-2_000:]
    assert woke
    assert_sharded(bus, records)


def requests(subject: str, partitions: range, now: datetime) -> list[Event]:
    """One inference request of this subject (its entity, the key) on each of these partitions: the subject's
    personal data lands in as many shards."""
    return [Event("mlbus.InferenceRequest", key=subject, id=derive_id(subject, str(p)), partition=p, value={
        "request_id": f"{subject}-p{p}", "entity_id": subject, "model": "m", "features": {"x": float(p)},
        "categories": {}, "sent_at": now}) for p in partitions]


def test_an_erasure_deletes_the_subjects_key_in_every_shard(sharded, bus_env, tmp_path):
    bus = sharded
    cli = Cli(bus_env, prepared=True)
    publisher = Publisher(bus, "load")
    for subject in ("customer-0", "customer-1"):
        for event in requests(subject, range(SHARDS), datetime.now(timezone.utc)):
            publisher.publish(event)
    publisher.flush()
    sealed_in = {shard_of("inference.requests", p, SHARDS) for p in range(SHARDS)}
    assert len(sealed_in) >= 2                      # the subject's data in more than one shard
    with running("services.auditor", bus_env, tmp_path / "auditor.log") as auditor:
        all_audited(bus, auditor)
        keys = data_keys(bus)
        assert {key_name(s, k) for s in ("customer-0", "customer-1") for k in sealed_in} <= set(keys)
        forgot = cli("audit", "forget", "customer-0", "--reason", "GDPR request 8", person="lead")
        assert forgot.returncode == 0, forgot.stderr
        wait_until(lambda: not {key_name("customer-0", k) for k in sealed_in} & set(data_keys(bus)), timeout=120,
                   message="every shard's key of customer-0 deleted from audit.keys")
        records = all_audited(bus, auditor)
    remaining = data_keys(bus)
    assert {key_name("customer-1", k) for k in sealed_in} <= set(remaining)
    states = {(a.value["entity_id"], a.shard): a.personal
              for a in decoded(bus, records) if a.topic == "inference.requests"}
    assert {shard for (subject, shard) in states if subject == "customer-0"} == sealed_in
    for (subject, shard), personal in states.items():
        assert personal == ("erased" if subject == "customer-0" else "readable"), (subject, shard, personal)
    erased = [a for a in decoded(bus, records) if a.topic == "inference.requests" and a.personal == "erased"]
    assert all(a.value["features"] == {} and a.erasure.reason == "GDPR request 8" for a in erased)
    assert_sharded(bus, records)


def status(cli) -> dict[str, dict]:
    listed = cli("status", "--json")
    assert listed.returncode == 0, listed.stderr
    return {row["service"]: row for row in json.loads(listed.stdout)}


def test_up_with_two_auditors_runs_every_shard_across_both_copies(sharded, bus_env):
    bus = sharded
    cli = Cli({**bus_env, "MLBUS_METRICS_BASE_PORT": str(free_port())}, prepared=True)
    up = cli("up", "auditor", "--auditors", "2")
    try:                    # `down` whatever fails: the copies must not outlive the test
        assert up.returncode == 0, up.stderr
        assert "auditor: started" in up.stderr and "auditor-2: started" in up.stderr
        assert "stand by" not in up.stderr           # three shards for two copies: none idle
        publish_events(bus, 900, "u")
        rows = wait_until(lambda: (s := status(cli)) and all(s[c]["shards"] for c in ("auditor", "auditor-2")) and s,
                          timeout=120, message="both copies running shards")
        assert sorted(rows["auditor"]["shards"] + rows["auditor-2"]["shards"]) == list(range(SHARDS))
        assert rows["auditor"]["shard_group"]["unassigned"] == [] and rows["auditor-2"]["shard_group"] is None
        assert rows["auditor"]["metrics"] != rows["auditor-2"]["metrics"] != "-"
        table = cli("status")
        assert f"auditor shards: {SHARDS}" in table.stdout and "auditor-2 (auditor-shards-2" in table.stdout
        expected = {(bus.catalogue.logical(t), p, o) for t, p, o in bus_messages(bus)}
        records = wait_until(lambda: (found := audit_records(bus)) and {
            (r["source_topic"], r["source_partition"], r["source_offset"]) for r in found} == expected and found,
            timeout=180, interval=1.0, message="every message on record in some shard")
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert "auditor: stopped" in down.stderr and "auditor-2: stopped" in down.stderr
    assert {r["restarts"] for r in status(cli).values()} == {0}
    assert_sharded(bus, records)


@pytest.mark.audit_shards(1)
def test_a_copy_beyond_the_shard_count_stands_by(bus, bus_env):
    """audit.log made with one partition: a second copy is a member of the group with no shard."""
    cli = Cli({**bus_env, "MLBUS_METRICS_BASE_PORT": str(free_port())}, prepared=True)
    up = cli("up", "auditor", "--auditors", "2")
    try:                    # `down` whatever fails: the copies must not outlive the test
        assert up.returncode == 0, up.stderr
        assert "audit.log has 1 shard(s): 1 of the 2 auditor copies stand by" in up.stderr
        rows = wait_until(lambda: (s := status(cli)) and s["auditor-2"]["shards"] is not None
                          and len(s["auditor"]["shard_group"]["members"]) == 2 and s, timeout=120,
                          message="both copies members of the shards group")
        assert sorted(rows["auditor"]["shards"] + rows["auditor-2"]["shards"]) == [0]
        table = cli("status")
        # the copy standing by, in the SHARDS column; nothing on stderr but librdkafka's own notices ("%6|…")
        assert "none" in table.stdout and table.returncode == 0
        assert not [line for line in table.stderr.splitlines() if line and not line.startswith("%")], table.stderr
    finally:
        assert cli("down").returncode == 0
