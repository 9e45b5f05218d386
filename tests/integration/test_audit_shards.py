"""audit.log in shards on the real broker: each source partition audited by the shard a hash gives it, each shard
its own chain that verifies against its own signed heads; two auditor copies share the shards, and when one is
killed mid-work its shards move to the other with nothing lost and nothing twice."""
from __future__ import annotations

import signal

import pytest

from services.bus.topics import TopicAdmin
from services.adapters import Anchor, audit_records, auditor_lag, checkpoints, kept_heads, log_id, log_signers
from services.domain import parse_line
from services.domain.shard_heads import combined_log_id, combined_of_checkpoint, combined_problem
from tests.support.audit_log import log_problems
from tests.integration.test_auditor import publish_events
from tests.support.people import prepared_bus
from tests.support.polling import bus_messages, wait_until
from tests.support.processes import running, start, stop

SHARDS = 3


@pytest.fixture
def sharded(bus_env):
    """A namespace whose audit.log was made with three partitions (three shards) before the rest of its topics."""
    from services.bus import Bus
    admin = Bus.from_env(bus_env, principal="admin")
    TopicAdmin(admin).create_with_partitions("audit.log", SHARDS)
    return prepared_bus(bus_env)


def all_audited(bus, *auditors) -> list[dict]:
    """Every shard's records once each message on the bus is on record (in some shard)."""
    def done():
        assert any(a.poll() is None for a in auditors), "no auditor copy is running"
        records = audit_records(bus)
        return records if {(r["source_topic"], r["source_partition"], r["source_offset"]) for r in records} \
            == {(bus.catalogue.logical(t), p, o) for t, p, o in bus_messages(bus)} else None
    return wait_until(done, timeout=180, interval=1.0, message="every message on record in some shard")


def assert_sharded(bus, records: list[dict]) -> None:
    """Each message on record once, in the shard the hash gives its partition; each shard numbered 1..n with its
    chain and tree verifying against its own signed heads (tests/support/audit_log.py)."""
    assert log_problems(bus, records) == []
    assert {r["shard"] for r in records} <= set(range(SHARDS))


def test_each_partition_is_audited_by_its_shard_and_each_shard_verifies(sharded, bus_env, tmp_path):
    bus = sharded
    publish_events(bus, 3_000, "s")
    name = combined_log_id(log_id(bus))
    with running("services.auditor", bus_env, tmp_path / "auditor.log", MLBUS_AUDIT_CHECKPOINT_EVERY="500",
                 MLBUS_AUDIT_HEAD_INTERVAL_S="1") as auditor:
        records = all_audited(bus, auditor)
        # each shard's group has committed its own partitions (what the demo and `mlbus status` wait on)
        wait_until(lambda: sum(auditor_lag(bus).values()) == 0, timeout=60, interval=0.5,
                   message="every shard's committed offsets at the end of its partitions")
        wait_until(lambda: [c for c in checkpoints(bus) if c["log_id"] == name
                            and all(leaf["tree_size"] > 0 for leaf in c["shard_heads"])], timeout=60,
                   interval=0.5, message="a combined checkpoint covering every shard")
    assert {r["shard"] for r in records} == set(range(SHARDS))
    assert_sharded(bus, records)
    # the checkpoint of every shard's head: signed, each leaf a head the shard signed, kept in the anchor too
    combined = [combined_of_checkpoint(c) for c in checkpoints(bus) if c["log_id"] == name]
    on_topic, _ = kept_heads(bus)
    assert combined and all(combined_problem(c, log_id(bus), log_signers(bus), [h.signed for h in on_topic
                                                                                if h.signed]) is None
                            for c in combined)
    assert all(leaf.tree_size > 0 for leaf in combined[-1].leaves)
    assert {c.signed.root_hash for c in combined} >= {parse_line(line).root_hash for _, line in
                                                      Anchor(bus.settings.audit.anchor).lines(name)} != set()


def test_a_killed_copys_shards_move_to_the_other_and_nothing_is_lost_or_doubled(sharded, bus_env, tmp_path):
    bus = sharded
    first = start("services.auditor", bus_env, tmp_path / "first.log", MLBUS_INSTANCE="1")
    second = start("services.auditor", bus_env, tmp_path / "second.log", MLBUS_INSTANCE="2")
    try:
        wait_until(lambda: "shard started" in (tmp_path / "first.log").read_text()
                   and "shard started" in (tmp_path / "second.log").read_text(), timeout=90,
                   message="both copies running shards")
        publish_events(bus, 6_000, "m")
        wait_until(lambda: len(audit_records(bus)) > 1_000, timeout=120, interval=0.5,
                   message="the auditors in the middle of their work")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        publish_events(bus, 3_000, "n")
        records = all_audited(bus, second)
    finally:
        stop(first)
        stop(second)
    assert_sharded(bus, records)
