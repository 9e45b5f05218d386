"""The drift-watcher on the real broker: false alarms on stable traffic, injected drift found and named,
state recovered after kill -9 without a duplicate report, undecodable input dead-lettered."""
from __future__ import annotations

import collections
import signal
from datetime import datetime, timezone

from services.bus import Publisher
from services.bus.topics import consumer_lag
from services.bus.identity import Identity
from tests.support.drift import FEATURES, production, publish_version, send_traffic
from tests.support.polling import read_topic, topic_values, wait_until
from tests.support.processes import free_port, running, start, stop
from tests.support.prometheus import scrape

MODEL = "synthetic"
WINDOW = 40
MONITORING = f'{{"window_rows": {WINDOW}, "window_seconds": 3600}}'


def reports(bus) -> list[dict]:
    return topic_values(bus, "monitoring.drift")


def windows_judged(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("mlbus_drift_windows_total{"))


def wait_for_reports(bus, count: int, timeout: float = 120) -> list[dict]:
    return wait_until(lambda: (found := reports(bus)) and len(found) >= count and found, timeout=timeout,
                      message=f"{count} drift reports")


def test_stable_traffic_rarely_drifts_and_two_shifted_features_are_named_with_an_alert(bus, bus_env, cli, tmp_path):
    publisher = Publisher(bus, "shop-app")
    publish_version(publisher, MODEL, 1, MONITORING, Identity.load(cli.identity("dana")))
    port = free_port()
    with running("services.drift_watcher", bus_env, tmp_path / "drift-watcher.log",
                 MLBUS_METRICS_PORT=str(port)) as watcher:
        send_traffic(publisher, MODEL, 1, production(50 * WINDOW, seed=100), "stable")
        stable = wait_for_reports(bus, 50)
        send_traffic(publisher, MODEL, 1, production(2 * WINDOW, seed=200, shift={"f2": 3.0, "f5": -3.0}), "shift")
        found = wait_for_reports(bus, 52)
        raised = wait_until(lambda: [a for a in topic_values(bus, "alerts") if a["kind"] == "feature-drift"
                                     and ("w000050" in a["message"] or "w000051" in a["message"])],
                            timeout=60, message="a feature-drift alert")
        metrics = wait_until(lambda: windows_judged(m := scrape(port)) == len(reports(bus)) >= 52 and m,
                             timeout=30, message="the drift-watcher's metrics to count every report")
        every = reports(bus)
        assert watcher.poll() is None

    flagged = [r for r in stable if r["dataset_drift"]]
    feature_flags = sum(f["drifted"] for r in stable for f in r["features"])
    print(f"stable traffic: {len(flagged)} of {len(stable)} windows flagged as drifted "
          f"({len(flagged) / len(stable):.1%}); {feature_flags} of {len(stable) * len(FEATURES)} feature tests "
          f"drifted at p<0.05; {sum(bool(r['alerting']) for r in stable)} windows with a feature alert")
    assert len(flagged) / len(stable) <= 0.05
    assert all(r["rows"] == WINDOW and r["version"] == 1 and r["champion"] for r in stable)
    shifted = sorted((r for r in found if r["window_id"] in (f"{MODEL}/w000050", f"{MODEL}/w000051")),
                     key=lambda r: r["window_id"])
    assert {"f2", "f5"} <= {f["feature"] for f in shifted[0]["features"] if f["drifted"]}
    assert {"f2", "f5"} <= set(shifted[0]["alerting"])      # a chance third one has a 5 % family-wise rate
    assert "f2" in raised[0]["message"] and "f5" in raised[0]["message"]
    assert windows_judged(metrics) == len(every) and metrics.get(
        f'mlbus_drift_windows_total{{drifted="yes",model="{MODEL}",version="1"}}', 0) == sum(
        r["dataset_drift"] for r in every)
    assert metrics[f'mlbus_drift_alerts_total{{kind="feature-drift",model="{MODEL}"}}'] == sum(
        a["kind"] == "feature-drift" for a in topic_values(bus, "alerts"))
    # Predictions travel on their own topic and count in the window they arrive in: this burst sends
    # every request before the router reads the predictions, so they land in the last windows.
    with_predictions = [r for r in found if r["prediction_drift"] is not None]
    assert with_predictions and all(r["prediction_drift"]["method"] == "chi2" for r in with_predictions)


def test_a_kill_minus_9_mid_window_loses_no_row_and_duplicates_no_report(bus, bus_env, cli, tmp_path):
    publisher = Publisher(bus, "shop-app")
    publish_version(publisher, MODEL, 1, MONITORING, Identity.load(cli.identity("dana")))
    log = tmp_path / "drift-watcher.log"
    watcher = start("services.drift_watcher", bus_env, log)
    try:
        send_traffic(publisher, MODEL, 1, production(2 * WINDOW + WINDOW // 2, seed=5), "before")
        wait_for_reports(bus, 2)
        # committed offsets, not the watcher's /metrics: the kill -9 below must find every request's offset
        # committed, or the restarted watcher reads some again, and "no row twice" would test less than it says
        group = f"{bus.settings.connection.namespace}mlbus.drift-watcher"      # the router's group
        wait_until(lambda: sum(consumer_lag(bus, group, ["inference.requests"]).values()) == 0, timeout=60,
                   message="the watcher has read every request")
        watcher.send_signal(signal.SIGKILL)
        watcher.wait(30)
        watcher = start("services.drift_watcher", bus_env, log)
        send_traffic(publisher, MODEL, 1, production(WINDOW + WINDOW // 2, seed=6), "after")
        found = wait_for_reports(bus, 4, timeout=180)
        messages = read_topic(bus, "monitoring.drift", expected=4, settle_s=3)
        assert watcher.poll() is None
    finally:
        stop(watcher)

    ids = collections.Counter(bus.schemas.decode(m.value())[1]["report_id"] for m in messages)
    assert len(messages) == 4 and max(ids.values()) == 1, (ids, bus.settings.connection.namespace)
    assert sorted(r["window_id"] for r in found) == [f"{MODEL}/w{i:06d}" for i in range(4)]
    assert all(r["rows"] == WINDOW for r in found)           # the window cut by the kill kept its first half


def test_undecodable_requests_are_dead_lettered_and_a_quiet_window_closes_on_time(bus, bus_env, cli, tmp_path):
    """Bytes that are not Avro, a record of another type (a request on outcomes), and a request that carries the
    drift-watcher's internal tick header all go to their DLQ; the windows go on."""
    publisher = Publisher(bus, "shop-app")
    publish_version(publisher, MODEL, 1, '{"window_rows": 1000, "window_seconds": 2, "min_rows": 10}',
                    Identity.load(cli.identity("dana")))
    request = bus.schemas.encode("mlbus.InferenceRequest", {
        "request_id": "forged", "entity_id": "e", "model": MODEL, "features": {"x": 1.0}, "categories": {},
        "sent_at": datetime.now(timezone.utc)})
    with running("services.drift_watcher", bus_env, tmp_path / "drift-watcher.log") as watcher:
        publisher.produce("inference.requests", b"k", b"\x00not avro", [("ce_id", b"junk-1")])
        publisher.produce("outcomes", b"k", request, [("ce_id", b"wrong-type")])
        publisher.produce("inference.requests", b"k", request, [("ce_id", b"tick"), ("mlbus.tick", b"1")])
        send_traffic(publisher, MODEL, 1, production(WINDOW, seed=9), "after-junk")
        dead = read_topic(bus, "inference.requests.dlq", expected=2, timeout=120)
        [wrong] = read_topic(bus, "outcomes.dlq", expected=1, timeout=120)
        [report] = wait_for_reports(bus, 1)           # no more traffic: the timer closes the window
        assert watcher.poll() is None
    assert report["rows"] == WINDOW
    by_id = {dict(m.headers())["ce_id"]: m for m in dead}
    assert by_id[b"junk-1"].value() == b"\x00not avro" and by_id[b"junk-1"].key() == b"k"
    headers = dict(by_id[b"junk-1"].headers())
    assert headers["dlq.service"] == b"drift-watcher" and headers["dlq.error.class"] == b"DecodeError"
    assert b"internal mlbus.tick header" in dict(by_id[b"tick"].headers())["dlq.error.message"]
    assert dict(wrong.headers())["dlq.error.class"] == b"WrongRecordType"
