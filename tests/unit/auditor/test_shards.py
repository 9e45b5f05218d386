"""audit.log's shards as pure decisions: which shard audits a partition, the shards' names for their logs and data
keys, and that `topics apply` never changes how many there are."""
from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings, strategies as st

from services.bus.topics import ExistingTopic, plan_topics
from services.bus.catalogue import load_catalogue
from services.domain import (key_name, keys_of_shard, owned, shard_log_id, shard_of, shard_of_log_id,
                             shard_partitions, ShardAt, subject_of, subject_of_key)
from tests.support.handlers import FakeMessage
from tests.unit.auditor.test_pages import BUS, auditor, native
from services.bus.settings import PROJECT_ROOT

TOPICS = PROJECT_ROOT / "topics.yaml"

topic_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)


@settings(max_examples=200, derandomize=True)
@given(topic=topic_names, partitions=st.integers(1, 64), shards=st.integers(1, 16))
def test_every_partition_has_exactly_one_shard_and_a_topics_partitions_go_round_them(topic, partitions, shards):
    places = [shard_of(topic, p, shards) for p in range(partitions)]
    assert all(0 <= k < shards for k in places)
    counts = [places.count(k) for k in range(shards)]
    assert max(counts) - min(counts) <= 1          # spread evenly, whatever the name
    everything = [(topic, p) for p in range(partitions)]
    by_shard = [owned(everything, k, shards) for k in range(shards)]
    assert sorted(sum(by_shard, [])) == sorted(everything)      # a partition of the set: no gap, no overlap


def test_the_shard_of_a_partition_is_fixed_across_processes_and_releases():
    # SHA-256 of the name, not Python's salted hash(): these values are what every auditor copy computes.
    assert [shard_of("inference.requests", p, 3) for p in range(3)] == \
        [(shard_of("inference.requests", 0, 3) + p) % 3 for p in range(3)]
    assert shard_of("anything", 7, 1) == 0                     # a v1 log: one shard audits all
    with pytest.raises(ValueError):
        shard_of("t", 0, 0)


@settings(max_examples=200, derandomize=True)
@given(log=topic_names, shard=st.integers(0, 10_000))
def test_a_shards_log_id_names_it_and_no_other(log, shard):
    name = shard_log_id(log, shard)
    assert shard_of_log_id(log, name) == shard
    assert shard_log_id(log, 0) == log                          # a v1 log's heads keep their name
    assert shard_of_log_id(log, log + "/shard-0") is None       # shard 0 has one name only
    assert shard_of_log_id(log, log + "/shard-01") is None
    assert shard_of_log_id(log, "other" + log) is None


@settings(max_examples=300, derandomize=True)
@given(subject=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=80),
       shard=st.integers(0, 1000))
def test_each_shard_has_its_own_name_for_a_subjects_key_and_it_reads_back(subject, shard):
    name = key_name(subject, shard)
    assert subject_of_key(name) == (subject, shard)
    assert (name == subject) == (shard == 0)
    assert len({key_name(subject, k) for k in range(5)}) == 5


def test_a_shard_seals_with_its_own_keys_only():
    keys = {"ana": b"0", key_name("ana", 1): b"1", key_name("bo", 2): b"2", key_name("ana", 2): b"3"}
    assert keys_of_shard(keys, 0) == {"ana": b"0"}
    assert keys_of_shard(keys, 1) == {"ana": b"1"}
    assert keys_of_shard(keys, 2) == {"bo": b"2", "ana": b"3"}
    assert keys_of_shard(keys, 3) == {}


def test_a_record_place_is_shard_and_sequence_and_a_bare_number_is_shard_zeros():
    assert ShardAt.parse("2:1500") == ShardAt(2, 1500) and str(ShardAt(2, 1500)) == "2:1500"
    assert ShardAt.parse("17") == ShardAt(0, 17)
    for bad in ("", "a", "1:", ":3", "-1:2", "1:2:3", "1.5"):
        with pytest.raises(ValueError, match="SHARD:SEQUENCE"):
            ShardAt.parse(bad)


def test_a_shard_reads_other_shards_erasure_partitions_only_to_erase():
    partitions = [("audit.erasures", 0), ("outcomes", 0), ("outcomes", 1), ("outcomes", 2)]
    for shards in (1, 2, 3):
        for shard in range(shards):
            mine, observed = shard_partitions(partitions, {"audit.erasures"}, shard, shards)
            assert mine == owned(partitions, shard, shards)
            assert observed == ([] if ("audit.erasures", 0) in mine else [("audit.erasures", 0)])


@pytest.mark.parametrize("found", [1, 2, 5])
def test_topics_apply_never_changes_how_many_shards_audit_log_has(found):
    catalogue = load_catalogue(TOPICS)
    audit = catalogue["audit.log"]
    existing = {catalogue.physical(t.name): ExistingTopic(t.partitions, t.replication, dict(t.config))
                for t in catalogue}
    existing[catalogue.physical("audit.log")] = ExistingTopic(found, audit.replication, dict(audit.config))
    changes = [c for c in plan_topics(catalogue, existing) if c.topic == catalogue.physical("audit.log")]
    assert all(c.action == "drift" for c in changes)
    assert bool(changes) == (found != audit.partitions)


@pytest.mark.parametrize("pager", [True, False] if native is not None else [False])
@pytest.mark.parametrize("key", [b"ana\x00shard-1", b"\x00", b"ana\x00shard-01", "é\x00shard-2".encode()])
def test_a_subject_never_names_another_shards_data_key(tmp_path, pager, key):
    """A message key holding the NUL that separates a subject from its shard is named by its digest: shard 0's key
    for it can never be shard 1's key of "ana" (which it would overwrite on the compacted audit.keys)."""
    message = FakeMessage(BUS.catalogue.physical("inference.requests"), key, b"\xc3\x01" + b"\0" * 8, 0)
    names = [e.key for e in auditor(tmp_path, pager=pager)([message]) if getattr(e, "record", "") == "mlbus.DataKey"]
    assert names and all(name.startswith("sha256:") and subject_of_key(name) == (name, 0) for name in names)
    assert subject_of(key).startswith("sha256:")


def test_a_shard_stopped_on_this_copy_is_reported_no_more():
    """A moved shard's figures go with it: a stale sequence or position left on the copy it left would read as a
    shard stuck behind (the audit-scale bench waited forever on one), so _stop retires it after its thread ends."""
    from prometheus_client import CollectorRegistry
    from services.auditor.handlers import AuditMetrics
    from services.auditor.shards import Running, Shards
    from services.bus.logs import get_logger

    metrics = AuditMetrics(CollectorRegistry())
    for shard in (0, 1):
        metrics.sequence.labels(str(shard)).set(10)
        metrics.signed_size.labels(str(shard)).set(10)

    class Runtime:
        def stop(self):
            pass

    copy = Shards.__new__(Shards)
    copy.running, copy.stopped, copy.log, copy.retire = {1: Running(Runtime())}, [], get_logger(), metrics.forget
    copy._stop([1])
    shards = {s.labels["shard"] for family in metrics.sequence.collect() for s in family.samples}
    assert shards == {"0"} and copy.running == {} and [s for s, _ in copy.stopped] == [1]
    metrics.forget(7)                                   # a shard never reported: nothing to remove, no error


@settings(max_examples=500, derandomize=True)
@given(suffix=st.text(max_size=30) | st.from_regex(r"[0-9]{1,12}", fullmatch=True),
       subject=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20))
def test_any_name_read_from_the_bus_names_at_most_one_shard_and_never_raises(suffix, subject):
    """The class behind the red team's '<log>/shard-²' and 'ana\\0shard-١': whatever follows the shard prefix of a
    log id or a data-key name (any Unicode digits, any length), reading it never raises, and it names a shard only
    when it is that shard's one spelling — so no name is a second name of another's log or key."""
    shard = shard_of_log_id(LOG_NAME, f"{LOG_NAME}/shard-{suffix}")
    assert shard is None or (shard >= 1 and shard_log_id(LOG_NAME, shard) == f"{LOG_NAME}/shard-{suffix}")
    owner_subject, owner = subject_of_key(f"{subject}\x00shard-{suffix}")
    assert owner == 0 or key_name(owner_subject, owner) == f"{subject}\x00shard-{suffix}"
    with contextlib.suppress(ValueError):
        place = ShardAt.parse(f"{suffix}:{suffix}")
        assert str(place) == f"{int(suffix)}:{int(suffix)}" and suffix.isascii()


LOG_NAME = "t.audit.log"
