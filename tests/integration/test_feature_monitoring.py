"""Feature views monitored on the real broker (issue 36, items 5 and 6): a signed view, its values on
features.online and in the offline store, a model version trained on it; the drift-watcher judges the view's
windows against that version's training profile (a shifted window drifts, with a critical alert), finds the online
values that differ from the offline store's (the skew metric and alert), and skips a definition that does not parse
and a value of the wrong type, with their reasons. Then the console's feature view page in headless Chromium:
its definition and version, freshness, drift, the skew alert and the model version using it, no console error."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from services.adapters.feature_store import online_key, value_record, views_key, views_record
from services.adapters.offline_store import OfflineStore
from services.bus import Event, Publisher, derive_id
from services.bus.identity import Identity
from services.cli.acts import signed
from services.domain.features_monitoring import view_subject
from services.domain.features_views import views_from_yaml
from services.domain.features_windows import FeatureValue, SourceSpan
from services.domain.profile import profile_column
from tests.support.browser import SHOTS, Visitor, browser, console_running
from tests.support.polling import topic_values, wait_until
from tests.support.processes import free_port, running
from tests.support.prometheus import scrape

[VIEW] = views_from_yaml("""
views:
  - name: purchases
    entity: customer_id
    source: {topic: business.events, kind: purchase}
    ttl: 1d
    owner: dana
    description: What each customer spent.
    features:
      - {name: last_amount, aggregate: last, field: amount}
      - {name: spend_1h, aggregate: sum, field: amount, window: 1h}
""")
SUBJECT = view_subject(VIEW.name, VIEW.version)
WIDTH_MS = 300_000                  # the drift-watcher's window (Monitoring's default window_seconds)
RNG = np.random.default_rng(11)


@pytest.fixture
def expect():
    from playwright.sync_api import expect as playwright_expect
    playwright_expect.set_options(timeout=90_000)
    return playwright_expect


def values() -> list[FeatureValue]:
    """Two windows of last_amount, 50 minutes ago: one as at training, one shifted; then one that moves event time
    past both. Each value from its own source offset."""
    base = (int(time.time() * 1000) // WIDTH_MS - 10) * WIDTH_MS
    amounts = [(f"a{i}", base + i * 1000, float(x)) for i, x in enumerate(RNG.normal(10, 1, 120))] + \
              [(f"b{i}", base + WIDTH_MS + i * 1000, float(x)) for i, x in enumerate(RNG.normal(16, 1, 120))] + \
              [("c0", base + 3 * WIDTH_MS, 10.0)]
    return [FeatureValue(VIEW.name, VIEW.version, "last_amount", entity, at, amount, None,
                         (SourceSpan("business.events", 0, offset, offset, 1),))
            for offset, (entity, at, amount) in enumerate(amounts)]


def trained_on_the_view() -> dict:
    column = f"{VIEW.name}__last_amount"
    return {"model": "churn", "version": 1, "run_id": "run-1", "request_id": "req-1", "reason": "manual",
            "requested_by": "test", "task": "classification", "estimator": "LogisticRegression",
            "hyperparameters_json": "{}", "features": [column], "target": "churned", "metric": "accuracy",
            "metrics": {"accuracy": 0.9}, "batches": [], "code_version": "test", "environment": {}, "seed": 0,
            "duration_ms": 1, "artifact_uri": "none", "artifact_sha256": "0" * 64,
            "trained_at": pd.Timestamp.now(tz="UTC").to_pydatetime(),
            "feature_profile": [profile_column(column, pd.Series(RNG.normal(10, 1, 400)), 1000)],
            "prediction_profile": None, "feature_views_json": f'{{"views": {{"{VIEW.name}": "{VIEW.version}"}}, '
                                                              f'"entity": "customer_id", "time": "at", '
                                                              f'"columns": ["{column}"]}}'}


def view_alerts(bus) -> dict[str, dict]:
    return {a["kind"]: a for a in topic_values(bus, "alerts") if a["model"] == SUBJECT}


def skipped(metrics: dict[str, float], reason: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("mlbus_feature_values_skipped_total{") and reason in k)


def test_a_views_drift_and_skew_are_found_and_its_console_page_shows_them(bus, bus_env, cli, tmp_path, expect):
    dana = Identity.load(cli.identity("dana"))
    publisher = Publisher(bus, "featurizer")
    definition = views_record(VIEW, "cli:dana")
    publisher.publish(Event("mlbus.FeatureViewDefined", key=views_key(VIEW), id=derive_id(views_key(VIEW)),
                            value=signed(bus, dana, "mlbus.FeatureViewDefined", definition)))
    broken = {**definition, "version": "f" * 64, "definition_json": '{"name": "purchases", "ttl_ms": -5}'}
    publisher.publish(Event("mlbus.FeatureViewDefined", key=f"purchases@{'f' * 64}", id=derive_id("broken"),
                            value=signed(bus, dana, "mlbus.FeatureViewDefined", broken)))
    online = values()
    offline = [replace(v, value=999.0) if v.entity == "a3" else v for v in online]     # a3: another value
    offline = [v for v in offline if v.entity != "a4"]           # a4 online only: missing from the offline store
    OfflineStore(bus.settings.storage.features_offline).write(offline, "part-0")
    wrong_type = FeatureValue(VIEW.name, VIEW.version, "spend_1h", "c1", online[0].event_ms, "lots", None, ())
    for value in [*online, wrong_type]:
        publisher.publish(Event("mlbus.FeatureValue", key=online_key(value), id=derive_id(online_key(value)),
                                value=value_record(value)))
    publisher.publish(Event("mlbus.ModelTrained", key="churn", id=derive_id("churn", 1), value=trained_on_the_view()))
    publisher.flush()

    port = free_port()
    with running("services.drift_watcher", bus_env, tmp_path / "drift-watcher.log",
                 MLBUS_METRICS_PORT=str(port)) as watcher:
        reports = wait_until(lambda: len(r := [x for x in topic_values(bus, "monitoring.drift")
                                               if x["model"] == SUBJECT]) >= 2 and r,
                             timeout=120, message="the view's two windows judged")
        alerts = wait_until(lambda: (found := view_alerts(bus)).keys() >= {"view-drift", "feature-skew"} and found,
                            timeout=60, message="a drift and a skew alert on the view")
        metrics = wait_until(lambda: (m := scrape(port)) and skipped(m, "does not parse") >= 1 and m,
                             timeout=30, message="the skipped definition counted")
        assert watcher.poll() is None

    first, shifted = sorted(reports, key=lambda r: r["window_start"])[:2]
    assert not first["dataset_drift"] and shifted["dataset_drift"] and shifted["version"] == 0
    assert [f["feature"] for f in shifted["features"]] == ["last_amount"] and shifted["rows"] == 120
    assert "2 of" in alerts["feature-skew"]["message"] and alerts["feature-skew"]["severity"] == "critical"
    assert '"value-differs": 1' in alerts["feature-skew"]["evidence_json"]
    assert '"missing-offline": 1' in alerts["feature-skew"]["evidence_json"]
    mismatches = {k: v for k, v in metrics.items() if k.startswith("mlbus_feature_skew_mismatches{")}
    assert list(mismatches.values()) == [2.0], mismatches
    assert skipped(metrics, "a str where sum gives numbers") == 1

    with console_running(bus_env, tmp_path / "console.log") as base, browser() as chromium:
        mallory = Visitor(chromium, base, SHOTS).login(cli.identity("mallory"))
        page = mallory.open("/features", shot="features")
        expect(page.locator(f"#view-{VIEW.name}")).to_contain_text(VIEW.version[:16])
        page.locator("nav a[href='/features']").click()
        page.locator(f"#view-{VIEW.name} a").click()
        page.wait_for_url(f"{base}/features/{VIEW.name}")
        section = page.locator(f"#version-{VIEW.version[:16]}")
        expect(section.locator("dd.freshness")).to_contain_text(f"{len(online) + 1} values read", timeout=60_000)
        expect(section.locator("table.alerts")).to_contain_text("feature-skew")
        expect(section.locator("table.used-by")).to_contain_text("churn")
        expect(section.locator("table.drift")).to_contain_text("last_amount")
        expect(page.locator("p.refused-view")).to_contain_text("does not parse")
        mallory.open(f"/features/{VIEW.name}", shot="feature-view")
        assert mallory.errors == [], mallory.errors
