"""featurizer on the real broker: a view of windowed aggregates over purchases, computed from the topic's start
when it is defined, kept across a kill -9, equal to an independent pandas computation; hostile definitions go to
the dead-letter topic and it goes on."""
from __future__ import annotations

import json
import random
import signal
from datetime import datetime, timedelta, timezone

import pandas as pd

from services.adapters import OfflineStore, OnlineStore, value_from_record, views_key, views_record
from services.bus import Event, Publisher
from services.domain import views_from_yaml
from tests.support.lag import behind
from tests.support.polling import read_topic, wait_until
from tests.support.processes import free_port, running, start, stop

VIEWS = """
views:
  - name: purchases
    entity: customer
    source: {topic: business.events, kind: purchase}
    event_time: occurred_at
    lateness: 2h
    ttl: 2d
    owner: dana
    description: What each customer bought lately.
    features:
      - {name: last_amount, aggregate: last, field: amount}
      - {name: spend_1h, aggregate: sum, field: amount, window: 1h}
      - {name: purchases_1h, aggregate: count, window: 1h}
      - {name: biggest_3h, aggregate: max, field: amount, window: 3h, slide: 1h}
"""
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def events(first: int, count: int, seed: int) -> list[dict]:
    """Purchases (and visits, which the view must not count) of 12 customers, 10 minutes apart on average."""
    rng = random.Random(seed)
    made = []
    for i in range(first, first + count):
        customer = f"c{rng.randrange(12)}"
        kind = "visit" if rng.random() < 0.2 else "purchase"
        made.append({"event_id": f"e{i}", "kind": kind, "entity": customer, "source": "shop",
                     "occurred_at": T0 + timedelta(minutes=10 * i + rng.randrange(10)),
                     "fields": {"customer": customer, "amount": round(rng.uniform(1, 100), 2)}})
    return made


def publish(bus, made: list[dict]) -> None:
    publisher = Publisher(bus, "shop")
    for value in made:
        publisher.publish(Event("mlbus.BusinessEvent", value, key=value["entity"], id=value["event_id"]))
    publisher.flush()


def pandas_windows(made: list[dict], watermark: datetime) -> pd.DataFrame:
    """spend_1h and purchases_1h computed independently: pandas groups purchases by customer and hour, every
    closed hour (end at or before the watermark) from a customer's first purchase to the last closed one; a quiet
    hour after a busy one has count 0 and sum 0 (the view's rule)."""
    frame = pd.DataFrame([{"customer": v["entity"], "at": v["occurred_at"], "amount": v["fields"]["amount"]}
                          for v in made if v["kind"] == "purchase"])
    frame["hour"] = frame["at"].dt.floor("1h")
    sums = frame.groupby(["customer", "hour"])["amount"].agg(["sum", "count"]).reset_index()
    rows = []
    for customer, group in sums.groupby("customer"):
        busy = dict(zip(group["hour"], zip(group["sum"], group["count"])))
        hours = pd.date_range(group["hour"].min(), watermark - timedelta(hours=1), freq="1h")
        for hour in hours:
            if hour in busy or hour - timedelta(hours=1) in busy:
                total, count = busy.get(hour, (0.0, 0))
                rows.append({"customer": customer, "end_ms": int((hour + timedelta(hours=1)).timestamp() * 1000),
                             "spend_1h": round(total, 6), "purchases_1h": int(count)})
    return pd.DataFrame(rows).set_index(["customer", "end_ms"]).sort_index()


def computed(offline: OfflineStore, view) -> pd.DataFrame:
    values = offline.read(view.name, view.version)
    rows = {}
    for v in values:
        if v.feature in ("spend_1h", "purchases_1h"):
            rows.setdefault((v.entity, v.event_ms - view.lateness_ms), {})[v.feature] = v.value   # known from end+lateness
    frame = pd.DataFrame([{"customer": c, "end_ms": t, "spend_1h": round(f["spend_1h"], 6),
                           "purchases_1h": int(f["purchases_1h"])} for (c, t), f in rows.items()])
    return frame.set_index(["customer", "end_ms"]).sort_index()


def test_a_view_over_purchases_is_computed_once_equal_to_pandas_across_a_kill(bus, bus_env, cli, tmp_path):
    [view] = views_from_yaml(VIEWS)
    before = events(0, 300, seed=1)
    publish(bus, before)                                    # the source has history before the view exists
    (tmp_path / "views.yaml").write_text(VIEWS)
    port = free_port()
    env = {**bus_env, "MLBUS_METRICS_PORT": str(port)}
    log = tmp_path / "featurizer.log"
    featurizer = start("services.featurizer", env, log)
    try:
        defined = cli("features", "define", str(tmp_path / "views.yaml"), person="dana")
        assert defined.returncode == 0, defined.stderr
        assert f"version {view.version[:12]}" in defined.stderr + defined.stdout
        again = cli("features", "define", str(tmp_path / "views.yaml"), person="dana")
        assert "unchanged" in again.stderr + again.stdout

        # hostile definitions: an approver's (not a data scientist), a lie about the version, a path for a name
        (tmp_path / "ana.yaml").write_text(VIEWS.replace("ttl: 2d", "ttl: 3d"))
        ana = cli("features", "define", str(tmp_path / "ana.yaml"), person="ana")
        assert ana.returncode == 1 and "authorization" in ana.stderr.lower()    # an approver may not write views
        [other] = views_from_yaml(VIEWS.replace("ttl: 2d", "ttl: 3d"))
        insider = Publisher(bus, "cli:dana")              # the broker's admin, forging dana's act: not signed
        insider.publish(Event("mlbus.FeatureViewDefined", views_record(other, "cli:dana"), key=views_key(other),
                              id="forged"))
        insider.publish(Event("mlbus.FeatureViewDefined", {**views_record(other, "cli:dana"), "version": "0" * 64},
                              key=views_key(other), id="lying"))
        insider.flush()
        bad = tmp_path / "bad.yaml"
        bad.write_text(VIEWS.replace("name: purchases", "name: ../../etc/passwd"))
        refused = cli("features", "define", str(bad), person="dana")
        assert refused.returncode == 1 and "views[0].name" in refused.stderr

        offline = OfflineStore(bus.settings.storage.features_offline)
        newest_before = max(v["occurred_at"] for v in before if v["kind"] == "purchase")
        expected = pandas_windows(before, newest_before - timedelta(hours=2))
        wait_until(lambda: len(computed(offline, view)) >= len(expected) if offline.read(view.name, view.version)
                   else False, timeout=120, message="the backfill's values in the offline store")
        pd.testing.assert_frame_equal(computed(offline, view), expected, check_dtype=False)

        # more purchases, live, as they happen (each burst spans less than the view's lateness of 2 h) ...
        later = events(300, 150, seed=2)
        for burst in range(0, len(later), 10):
            publish(bus, later[burst:burst + 10])
            wait_until(lambda: behind(bus, [port], ["business.events"]) == 0, timeout=60,
                       message="the featurizer to read a burst of live purchases")
        # ... then it is killed (-9); a day of purchases arrives meanwhile, a backlog it catches up at its start
        featurizer.send_signal(signal.SIGKILL)
        featurizer.wait(timeout=30)
        backlog = events(450, 150, seed=3)
        publish(bus, backlog)
        featurizer = start("services.featurizer", env, log)
        wait_until(lambda: behind(bus, [port], ["business.events", "features.views"]) == 0, timeout=180,
                   message="the restarted featurizer to catch up")
    finally:
        stop(featurizer)

    everything = before + later + backlog
    newest = max(v["occurred_at"] for v in everything if v["kind"] == "purchase")
    pd.testing.assert_frame_equal(computed(offline, view), pandas_windows(everything, newest - timedelta(hours=2)),
                                  check_dtype=False)
    assert {v.view for v in OfflineStore(bus.settings.storage.features_offline).read(view.name, view.version)} == \
        {"purchases"}

    # the online store and features.online hold each feature's newest value, the same
    online = OnlineStore(bus.settings.storage.features_database_url)
    stored = {(v.feature, v.entity): v for v in online.all("purchases")}
    published = {}
    for message in read_topic(bus, "features.online", expected=len(stored), timeout=60):
        value = value_from_record(bus.schemas.decode(message.value())[1])
        key = (value.feature, value.entity)
        if key not in published or (value.event_ms, value.sources) >= (published[key].event_ms, published[key].sources):
            published[key] = value
    assert published == stored
    last = {}
    for v in sorted((v for v in everything if v["kind"] == "purchase"), key=lambda v: v["occurred_at"]):
        last[v["entity"]] = v["fields"]["amount"]
    assert {entity: stored[("last_amount", entity)].value for entity in last} == last

    # the two refused definitions are on the dead-letter topic with their reasons; the CLI shows the view
    letters = read_topic(bus, "features.views.dlq", expected=2, timeout=60)
    reasons = sorted(dict(m.headers() or []).get("dlq.error.message", b"").decode() for m in letters)
    assert len(reasons) == 2 and all("signature" in r for r in reasons), reasons
    assert {v.version for v in OfflineStore(bus.settings.storage.features_offline).read(other.name, other.version)} \
        == set()
    shown = cli("features", "show", "purchases", "--json", person="dana")
    assert json.loads(shown.stdout)["version"] == view.version
    customer = sorted(last)[0]
    history = cli("features", "history", "purchases", customer, "--feature", "last_amount", "--json", person="dana")
    assert [v["value"] for v in json.loads(history.stdout)["values"]][-1] == last[customer]
    assert "poison record" not in log.read_text()
