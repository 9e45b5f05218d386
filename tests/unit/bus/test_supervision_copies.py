"""`mlbus up --auditors N` and `mlbus status` without a broker: the copies' names, instances and metrics ports,
and which copy runs which shard, read from a fake admin client (a broker that does not answer is said so, in
seconds, not waited for)."""
from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from services.bus import supervision
from services.bus.supervision import copy_name, copy_of, copy_shards, member_copy, metrics_port, shard_owners
from services.cli.main import parser
from services.cli.supervisor import audit_shards, shard_lines


def fake_bus(base_port: int = 9400, namespace: str = "t1."):
    catalogue = SimpleNamespace(physical=lambda topic: f"{namespace}{topic}")
    settings = SimpleNamespace(observability=SimpleNamespace(metrics_base_port=base_port),
                               connection=SimpleNamespace(namespace=namespace))
    return SimpleNamespace(settings=settings, catalogue=catalogue)


def test_the_first_copy_keeps_the_services_name_and_the_others_are_numbered():
    assert [copy_name("auditor", k) for k in (1, 2, 3)] == ["auditor", "auditor-2", "auditor-3"]
    assert [copy_of(n) for n in ("auditor", "auditor-2", "auditor-10")] == [("auditor", 1), ("auditor", 2),
                                                                            ("auditor", 10)]
    # only a scaled service has copies: a hyphen in a name is not a copy number
    assert [copy_of(n) for n in ("drift-watcher", "scorer-2", "auditor-0", "auditor-x")] == [
        ("drift-watcher", 1), ("scorer-2", 1), ("auditor-0", 1), ("auditor-x", 1)]


def test_each_copy_serves_metrics_on_a_port_no_other_service_has():
    bus = fake_bus()
    services = ["validator", "trainer", "registry", "deployer", "scorer", "drift-watcher", "auditor", "notifier",
                "featurizer"]
    ports = [metrics_port(bus, name) for name in services + ["auditor-2", "auditor-3"]]
    assert ports == list(range(9400, 9411))
    assert metrics_port(bus, "auditor") == 9406          # one copy: the port it always had
    assert metrics_port(bus, "witness") == metrics_port(bus, "my-service") == 0


def test_up_takes_a_count_of_auditor_copies(capsys):
    assert parser().parse_args(["up"]).auditors == 1
    assert parser().parse_args(["up", "--auditors", "3", "auditor"]).auditors == 3
    for wrong in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exited:
            parser().parse_args(["up", "--auditors", wrong])
        assert exited.value.code == 2
    assert "not a number of copies" in capsys.readouterr().err


class FakeAdmin:
    """An admin client whose group description is given, or never comes (a broker that does not answer)."""

    def __init__(self, members=None, partitions=3, answers=True):
        self.members, self.partitions, self.answers = members or [], partitions, answers

    def __call__(self, config):
        return self

    def list_topics(self, topic, timeout):
        partitions = {p: None for p in range(self.partitions)}
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions=partitions, error=None)})

    def describe_consumer_groups(self, groups, request_timeout):
        future = Future()
        if self.answers:
            future.set_result(SimpleNamespace(members=self.members))
        return {groups[0]: future}


def member(client_id: str, *shards: int, topic: str = "t1.audit.log"):
    assignment = SimpleNamespace(topic_partitions=[SimpleNamespace(topic=topic, partition=s) for s in shards])
    return SimpleNamespace(client_id=client_id, host="/127.0.0.1", assignment=assignment)


def test_status_names_the_copy_behind_each_member_and_the_shards_no_copy_runs(monkeypatch):
    admin = FakeAdmin([member("auditor-shards-2", 1), member("auditor-shards-1", 0, 2)], partitions=4)
    monkeypatch.setattr(supervision, "AdminClient", admin)
    monkeypatch.setattr(supervision, "admin_config", lambda settings: {})
    owners = shard_owners(fake_bus())
    assert owners["group"] == "t1.mlbus.auditor.shards" and owners["unassigned"] == [3]
    assert [(m["copy"], m["shards"]) for m in owners["members"]] == [("auditor", [0, 2]), ("auditor-2", [1])]
    assert copy_shards(owners, "auditor") == [0, 2] and copy_shards(owners, "auditor-2") == [1]
    assert copy_shards(owners, "auditor-3") == [] and copy_shards(owners, "scorer") is None
    assert shard_lines(owners) == ["auditor shards: 4 (group t1.mlbus.auditor.shards, 2 member(s))",
                                   "  auditor (auditor-shards-1 on 127.0.0.1): 0, 2",
                                   "  auditor-2 (auditor-shards-2 on 127.0.0.1): 1",
                                   "  run by no copy: 3"]


def test_a_copy_started_by_hand_is_shown_by_its_client_id():
    assert member_copy("auditor-shards-0") is None and member_copy("auditor-shards-7") == "auditor-7"
    assert member_copy("rdkafka") is None


def test_status_does_not_stall_on_a_broker_that_does_not_answer(monkeypatch):
    monkeypatch.setattr(supervision, "AdminClient", FakeAdmin(answers=False))
    monkeypatch.setattr(supervision, "admin_config", lambda settings: {})
    monkeypatch.setattr(supervision, "DESCRIBE_S", 0.2)
    owners = shard_owners(fake_bus())      # the group's description never comes: returning at all is the deadline
    assert "error" in owners
    assert copy_shards(owners, "auditor") is None
    assert shard_lines(owners)[0].startswith("auditor shards: not known (t1.mlbus.auditor.shards did not answer")


def test_up_counts_audit_logs_shards_as_the_broker_has_them_else_as_topics_yaml_makes_them():
    bus = fake_bus()
    bus.catalogue.topics = {"audit.log": SimpleNamespace(partitions=1)}
    assert audit_shards(bus, {"t1.audit.log": SimpleNamespace(partitions=3)}) == 3
    assert audit_shards(bus, {}) == 1           # not made yet: topics apply makes it as topics.yaml says
