"""The feature store's story on the real broker (issue 36's acceptance): a view of windowed aggregates over the
shop's purchases; a model trained on it from label rows; the training set's values equal to an independent pandas
computation of the same windows, a value planted at a label's own time unused; serving fills the features from the
online store by entity and explain shows where each came from; the training reproduces identically."""
from __future__ import annotations

import json
import math
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from services.adapters import OfflineStore, OnlineStore, snapshot_digest
from services.bus import Event, Publisher, derive_id
from services.bus.settings import PROJECT_ROOT
from services.cli.sample_data import shop_purchases
from services.domain import columns_of, online_read, views_from_yaml
from services.domain.features_training import parse_settings, training_set, until_from_json
from tests.support.lag import behind
from tests.support.polling import read_topic, wait_until
from tests.support.processes import free_port, running

EXAMPLES = PROJECT_ROOT / "scripts" / "examples"
DAY_MS = 86_400_000
POLICY = "model: shop_returns\nmetric: roc_auc\nthresholds: {roc_auc: 0.5}\nhuman_approval: false\n"
SERVICES = ("services.featurizer", "services.validator", "services.trainer", "services.registry", "services.deployer",
            "services.scorer", "services.auditor")


def expected_features(events: list[dict], labels: pd.DataFrame, ttl_ms: int, lateness_ms: int) -> pd.DataFrame:
    """The `shop` view's four features for each label row, computed with pandas from the raw purchases alone:
    windows are whole days from the epoch (1 d tumbling; 7 d sliding by 1 d), a window's value holds from its end
    plus the lateness (when no event can change it any more),
    a row sees the newest value strictly before its moment within the TTL; the day after a customer's last
    non-empty window has count 0 and sum 0 (the view's rule), later days no value."""
    frame = pd.DataFrame({"customer": [e["entity"] for e in events],
                          "ms": [int(e["occurred_at"].timestamp() * 1000) for e in events],
                          "amount": [e["fields"]["amount"] for e in events]}).sort_values("ms", kind="stable")
    rows = []
    for label in labels.itertuples():
        mine = frame[frame["customer"] == label.customer]
        before = mine[mine["ms"] + lateness_ms < label.at]      # a purchase's amount is known from then
        known = before["ms"].iloc[-1] + lateness_ms if len(before) else None
        last = before["amount"].iloc[-1] if known is not None and label.at - known <= ttl_ms else np.nan
        row = {"shop__last_amount": last}
        for name, days, column in (("purchases_1d", 1, None), ("purchases_7d", 7, None), ("spend_7d", 7, "amount")):
            row[f"shop__{name}"] = window_value(mine, label.at, days, column, ttl_ms, lateness_ms)
        rows.append(row)
    return pd.DataFrame(rows)


def window_value(mine: pd.DataFrame, at: int, days: int, column: str | None, ttl_ms: int, lateness_ms: int) -> float:
    """The newest window known strictly before `at` (its end plus the lateness) that has a value, if within the
    TTL."""
    end = (at - 1 - lateness_ms) // DAY_MS * DAY_MS         # the newest window end known strictly before `at`
    while at - (end + lateness_ms) <= ttl_ms:
        inside = mine[(mine["ms"] >= end - days * DAY_MS) & (mine["ms"] < end)]
        before = mine[(mine["ms"] >= end - (days + 1) * DAY_MS) & (mine["ms"] < end - DAY_MS)]
        if len(inside):
            return float(inside[column].sum()) if column else float(len(inside))
        if len(before):                             # the quiet window after a busy one: 0
            return 0.0
        end -= DAY_MS
    return np.nan


def test_a_model_on_a_feature_view_trains_without_leakage_serves_with_lookups_and_reproduces(
        bus, bus_env, cli, tmp_path):
    today_ms = int(datetime.now(timezone.utc).timestamp() * 1000) // DAY_MS * DAY_MS
    # whole days from today's midnight: the same purchases against the day windows whatever the hour of the run (from
    # now - 13 d, the hour moved every purchase across the windows, and the model's AUC with it, below 0.6 some hours)
    events, labels = shop_purchases(customers=40, days=10, seed=4, start_ms=today_ms - 13 * DAY_MS)
    planted_row = labels.iloc[len(labels) // 2]
    planted = [{"event_id": f"planted-{i}", "kind": "purchase", "entity": planted_row.customer, "source": "shop",
                "occurred_at": datetime.fromtimestamp((int(planted_row["at"]) + shift) / 1000, timezone.utc),
                "fields": {"customer": planted_row.customer, "amount": 99_999.0}}
               for i, shift in enumerate((0, 3_600_000))]      # at the label's own moment, and an hour after it
    publisher = Publisher(bus, "shop")
    for value in sorted(events + planted, key=lambda e: e["occurred_at"]):     # each as it happened: on time
        publisher.publish(Event("mlbus.BusinessEvent", value, key=value["entity"], id=value["event_id"]))
    publisher.flush()
    labels.to_csv(tmp_path / "labels.csv", index=False)
    (tmp_path / "policy.yaml").write_text(POLICY)
    [view] = views_from_yaml((EXAMPLES / "shop_views.yaml").read_text())
    port = free_port()

    with ExitStack() as stack:
        processes = [stack.enter_context(running(module, bus_env, tmp_path / f"{module}.log",
                                                 **({"MLBUS_METRICS_PORT": str(port)}
                                                    if module == "services.featurizer" else {})))
                     for module in SERVICES]
        assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
        defined = cli("features", "define", str(EXAMPLES / "shop_views.yaml"), person="dana")
        assert defined.returncode == 0, defined.stderr
        assert cli("models", "define", str(EXAMPLES / "shop_returns_lr.yaml"), person="dana").returncode == 0
        offline = OfflineStore(bus.settings.storage.features_offline)
        wait_until(lambda: behind(bus, [port], ["business.events", "features.views"]) == 0 and
                   offline.read(view.name, view.version), timeout=120, message="the featurizer to compute the view")
        published = cli("data", "publish", "shop_returns", str(tmp_path / "labels.csv"), person="etl")
        assert published.returncode == 0, published.stderr
        [message] = read_topic(bus, "models.trained", expected=1, timeout=240)
        trained = bus.schemas.decode(message.value())[1]

        # serving: a request that carries no features of its own is filled from the online store
        wait_until(lambda: "completed" in cli("deployments", "shop_returns", "--json").stdout, timeout=180,
                   message="shop_returns v1 to be deployed")
        customer = planted_row.customer
        request_id = "shop-request-1"
        app = Publisher(bus, "shop-app")
        app.publish(Event("mlbus.InferenceRequest", key=customer, id=derive_id(request_id), value={
            "request_id": request_id, "entity_id": customer, "model": "shop_returns", "features": {},
            "sent_at": datetime.now(timezone.utc)}))
        app.flush()
        [answer] = read_topic(bus, "inference.predictions", expected=1, timeout=120)
        prediction = bus.schemas.decode(answer.value())[1]
        explained = wait_until(lambda: (shown := cli("audit", "explain", request_id)).returncode == 0 and
                               "shop" in shown.stdout and shown.stdout, timeout=120,
                               message="the auditor to record the prediction")
        reproduced = cli("train", "--reproduce", trained["run_id"], "--wait", "180", person="bo")
        assert all(process.poll() is None for process in processes), "every service keeps running"

    # the training set: the values the trainer recorded (their digest) are those a point-in-time join of the
    # offline store gives, and they equal pandas' own computation of the windows from the raw purchases
    plan = json.loads(trained["feature_views_json"])
    assert plan["views"] == {"shop": view.version} and trained["features_snapshot_sha256"]
    settings = parse_settings(json.dumps({"views": ["shop"], "entity": "customer", "time": "at"}))
    values = OfflineStore(bus.settings.storage.features_offline).read(
        view.name, view.version, until_from_json(trained["features_until_json"]))
    built = training_set(labels, settings, [view], columns_of(values))     # from the objects `read` gives
    assert snapshot_digest(built.used) == trained["features_snapshot_sha256"]
    as_trained = training_set(labels, settings, [view], OfflineStore(bus.settings.storage.features_offline).snapshot(
        [view], until_from_json(trained["features_until_json"]))[0])        # the trainer's path: the store's columns
    pd.testing.assert_frame_equal(as_trained.frame, built.frame)
    expected = expected_features(events + planted, labels, view.ttl_ms, view.lateness_ms)
    pd.testing.assert_frame_equal(built.frame[list(expected.columns)].astype(float), expected, check_exact=False,
                                  rtol=1e-9)
    row = built.frame.iloc[len(labels) // 2]
    assert row["customer"] == planted_row.customer and row["shop__last_amount"] != 99_999.0
    assert not row["shop__spend_7d"] >= 99_999.0                 # the planted purchase is in no window it sees
    # (later rows of that customer may see the planted purchase: for them it is the past, as pandas says above)
    assert trained["metrics"]["roc_auc"] > 0.6, trained["metrics"]           # the view's features predict returns

    # the prediction records what was looked up, equal to the online store's values as serving read them
    looked = {lookup["feature"]: lookup for lookup in prediction["lookups"]}
    assert set(looked) == {f.name for f in view.features} and not prediction["error"]
    held = online_read(view, customer, OnlineStore(bus.settings.storage.features_database_url).get(
        view.name, view.version, customer), int(prediction["predicted_at"].timestamp() * 1000))
    for lookup in held:
        recorded = looked[lookup.feature]
        assert recorded["version"] == view.version and recorded["missing"] == lookup.missing
        if lookup.missing is None:
            assert math.isclose(recorded["value"], lookup.value)
    assert "shop" in explained and view.version[:12] in explained
    assert "IDENTICAL" in reproduced.stdout, reproduced.stdout + reproduced.stderr
