"""Positions a service reports on /metrics, and what its readers make of them (services/bus/positions.py)."""
from __future__ import annotations

import json

from prometheus_client import generate_latest

from services.bus.metrics import ServiceMetrics
from services.bus.positions import Consumed, lag_by_topic, merged, reported, start_offsets


def page(metrics: ServiceMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_a_page_gives_back_each_partitions_position_and_the_topic_lag_is_their_sum():
    metrics = ServiceMetrics("scorer")
    metrics.consumed.record({("inference.requests", 0): Consumed(40, 50), ("inference.requests", 1): Consumed(7, 7),
                      ("outcomes", 0): Consumed(3, 9)})
    back = reported(page(metrics))
    assert back == {("inference.requests", 0): Consumed(40, 50), ("inference.requests", 1): Consumed(7, 7),
                    ("outcomes", 0): Consumed(3, 9)}
    assert lag_by_topic(back, ["inference.requests", "outcomes"]) == {"inference.requests": 10, "outcomes": 6}
    assert 'mlbus_consumer_lag{service="scorer",topic="inference.requests"} 10.0' in page(metrics)


def test_a_drained_partition_reports_0_and_a_revoked_one_disappears():
    metrics = ServiceMetrics("auditor")
    metrics.consumed.record({("alerts", 0): Consumed(5, 9), ("alerts", 1): Consumed(2, 4)})
    metrics.consumed.record({("alerts", 0): Consumed(9, 9)})          # the next batch committed: partition 0 drained
    assert lag_by_topic(reported(page(metrics)), ["alerts"]) == {"alerts": 2}
    metrics.consumed.forget({("alerts", 1)})
    assert reported(page(metrics)) == {("alerts", 0): Consumed(9, 9)}
    assert lag_by_topic(reported(page(metrics)), ["alerts"]) == {"alerts": 0}
    assert 'mlbus_consumer_lag{service="auditor",topic="alerts"} 0.0' in page(metrics)


def test_a_topic_with_no_partition_reported_has_no_figure_rather_than_a_false_0():
    assert lag_by_topic({("alerts", 0): Consumed(1, 1)}, ["alerts", "outcomes"]) is None
    assert lag_by_topic({}, ["alerts"]) is None
    assert lag_by_topic({}, []) == {}


def test_a_position_past_the_cached_high_watermark_is_no_negative_lag():
    assert Consumed(12, 10).lag == 0 and Consumed(10, 12).lag == 2


def test_two_copies_reporting_one_partition_count_at_the_one_further_behind():
    first = {("inference.requests", 0): Consumed(10, 20), ("inference.requests", 1): Consumed(5, 5)}
    second = {("inference.requests", 0): Consumed(15, 20), ("inference.requests", 2): Consumed(1, 3)}
    assert merged([first, second]) == {("inference.requests", 0): Consumed(10, 20),
                                       ("inference.requests", 1): Consumed(5, 5),
                                       ("inference.requests", 2): Consumed(1, 3)}


def test_start_offsets_are_the_committed_one_else_the_low_watermark_and_only_once_the_fetch_is_active():
    statistics = json.dumps({"topics": {"t1.mlbus.alerts": {"partitions": {
        "0": {"fetch_state": "active", "committed_offset": 5, "lo_offset": 0},
        "1": {"fetch_state": "active", "committed_offset": -1001, "lo_offset": 3},
        "2": {"fetch_state": "offset-query", "committed_offset": -1001, "lo_offset": -1001},
        "3": {"fetch_state": "active", "committed_offset": -1001, "lo_offset": -1001},
        "-1": {"fetch_state": "none", "committed_offset": -1001, "lo_offset": -1001}}}}})
    assert start_offsets(statistics) == {("t1.mlbus.alerts", 0): 5, ("t1.mlbus.alerts", 1): 3}
    assert start_offsets(json.dumps({"name": "a producer's", "topics": {}})) == {}
