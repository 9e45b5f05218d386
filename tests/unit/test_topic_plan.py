from services.bus.catalogue import build_catalogue
from services.bus.topics import ExistingTopic, plan_topics

RAW = {"defaults": {"partitions": 3, "config": {"retention.ms": "1000"}},
       "topics": [{"name": "a", "schema": "x.A", "key": "k", "purpose": "p", "consumers": ["svc"]}]}
CATALOGUE = build_catalogue(RAW, namespace="n.")


def matching() -> dict:
    return {"n.a": ExistingTopic(3, 1, {"retention.ms": "1000", "segment.ms": "9"}),
            "n.a.dlq": ExistingTopic(1, 1, {})}


def test_missing_topics_are_created():
    assert [(c.topic, c.action) for c in plan_topics(CATALOGUE, {})] == [("n.a", "create"), ("n.a.dlq", "create")]


def test_matching_topics_need_nothing():
    assert plan_topics(CATALOGUE, matching()) == []


def test_changed_config_is_set_back():
    existing = matching() | {"n.a": ExistingTopic(3, 1, {"retention.ms": "5"})}
    [change] = plan_topics(CATALOGUE, existing)
    assert (change.action, change.detail) == ("set-config", "retention.ms: 5 → 1000")


def test_partitions_grow_but_never_shrink():
    grow = plan_topics(CATALOGUE, matching() | {"n.a": ExistingTopic(2, 1, {"retention.ms": "1000"})})
    shrink = plan_topics(CATALOGUE, matching() | {"n.a": ExistingTopic(6, 1, {"retention.ms": "1000"})})
    assert [c.action for c in grow] == ["add-partitions"]
    assert [c.action for c in shrink] == ["drift"] and "cannot remove" in shrink[0].detail


def test_replication_difference_is_reported_as_drift():
    [change] = plan_topics(CATALOGUE, matching() | {"n.a": ExistingTopic(3, 3, {"retention.ms": "1000"})})
    assert change.action == "drift" and "replication 3" in change.detail


def test_topics_apply_warns_of_a_cluster_whose_topics_have_fewer_than_three_replicas():
    from services.bus.topics import replication_warning
    assert replication_warning(1, 1) is None                       # the local broker: one replica is all there is
    assert replication_warning(3, 3) is None and replication_warning(5, 4) is None
    for brokers, replication in [(2, 1), (3, 1), (3, 2), (6, 2)]:
        warning = replication_warning(brokers, replication)
        assert warning and "MLBUS_REPLICATION=3" in warning and f"{brokers} brokers" in warning
