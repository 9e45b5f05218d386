"""The scorer on the real broker serving a version trained on a feature view: it follows features.views and
features.online into its own store, fills the features a request lacks for its entity (a request's own values
win, a value past the TTL is missing), records them on the prediction, and skips a features.online value it
cannot serve (a NaN, an entity with a control character) without stopping."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from services.adapters import save_model
from services.adapters.feature_store import online_key, value_record, views_key, views_record
from services.bus import Event, Publisher, derive_id
from services.deployer.decide import change, route
from services.domain.features_views import views_from_yaml
from services.domain.features_windows import FeatureValue, SourceSpan
from tests.support.polling import topic_values, wait_until
from tests.support.processes import running
from tests.support.samples import sample

MODEL = "lookup_lr"
[VIEW] = views_from_yaml("""
views:
  - name: purchases
    entity: customer_id
    source: {topic: business.events, kind: purchase}
    ttl: 1h
    owner: ana
    features:
      - {name: last_amount, aggregate: last, field: amount}
      - {name: spend_1h, aggregate: sum, field: amount, window: 1h}
""")
LOOKED = ["purchases__last_amount", "purchases__spend_1h"]
FEATURES = ["x", *LOOKED]


def fitted() -> Pipeline:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    labels = np.where(frame["x"] + frame["purchases__spend_1h"] > 0, "yes", "no")
    return Pipeline([("impute", SimpleImputer()), ("model", LogisticRegression())]).fit(frame, labels)


def value(feature: str, entity: str, at: datetime, amount, offset: int) -> FeatureValue:
    return FeatureValue(VIEW.name, VIEW.version, feature, entity, int(at.timestamp() * 1000), amount, None,
                        (SourceSpan("business.events", 0, offset, offset, 1),))


def publish_world(bus, publisher: Publisher, now: datetime) -> None:
    """The view, its online values (two the scorer must skip), a version trained on it, and its deployment."""
    publisher.publish(Event("mlbus.FeatureViewDefined", views_record(VIEW, "cli:admin", now), key=views_key(VIEW),
                            id=derive_id(VIEW.version)))
    values = [value("last_amount", "c1", now - timedelta(minutes=1), 5.0, 1),
              value("spend_1h", "c1", now - timedelta(minutes=1), 0.75, 2),
              value("spend_1h", "c2", now - timedelta(hours=3), 3.0, 3),           # past the TTL of 1 h
              value("spend_1h", "c3", now - timedelta(minutes=1), float("nan"), 4),    # skipped: not a number
              value("spend_1h", "c3\x01", now - timedelta(minutes=1), 1.0, 5)]         # skipped: not an entity
    for one in values:
        publisher.publish(Event("mlbus.FeatureValue", value_record(one, now), key=online_key(one),
                                id=derive_id(online_key(one), one.event_ms)))
    uri, sha = save_model(bus.settings.storage.artifacts_store, fitted())
    plan = {"entity": "customer_id", "time": "at", "views": {VIEW.name: VIEW.version}, "columns": LOOKED}
    trained = {**sample(bus.schemas.schema("mlbus.ModelTrained").parsed), "model": MODEL, "version": 1,
               "task": "classification", "features": FEATURES, "categorical_features": [], "members": [],
               "artifact_uri": uri, "artifact_sha256": sha, "trained_at": now, "feature_views_json": json.dumps(plan),
               "signer": None, "signer_key": None, "signature": None, "act_id": None, "made_at": None}
    publisher.publish(Event("mlbus.ModelTrained", trained, key=MODEL, id="trained-1"))
    publisher.publish(change(MODEL, "d1", "replace", "completed", [route(1, "champion", 1.0, sha)], "test", "deployer",
                             "cause-1", now, version=1))
    publisher.flush()


def ask(bus, requests: dict[str, dict]) -> dict[str, dict]:
    """Each entity's request (its own features), answered: entity → the served prediction."""
    publisher = Publisher(bus, "shop-app")
    for entity, features in requests.items():
        publisher.publish(Event("mlbus.InferenceRequest", key=entity, id=derive_id("lookup", entity), value={
            "request_id": f"req-{entity}", "entity_id": entity, "model": MODEL, "features": features,
            "categories": {}, "sent_at": datetime.now(timezone.utc)}))
    publisher.flush()
    wanted = {f"req-{e}" for e in requests}
    found = wait_until(lambda: (got := {p["request_id"]: p for p in topic_values(bus, "inference.predictions")
                                        if p["request_id"] in wanted}) and len(got) == len(wanted) and got,
                       timeout=120, message="the lookup requests answered")
    return {p["entity_id"]: p for p in found.values()}


def test_the_scorer_fills_a_requests_missing_features_from_its_copy_of_the_online_store(bus, bus_env, tmp_path):
    now = datetime.now(timezone.utc)
    publish_world(bus, Publisher(bus, "test"), now)
    with running("services.scorer", bus_env, tmp_path / "scorer.log") as scorer:
        answered = ask(bus, {"c1": {"x": 0.5}, "c2": {"x": 0.5, "purchases__last_amount": 9.0}, "c3": {"x": 0.1}})
        assert scorer.poll() is None, "the scorer keeps running"
    assert all(p["error"] is None for p in answered.values()), answered
    c1, c2, c3 = (answered[e]["lookups"] for e in ("c1", "c2", "c3"))
    assert [(x["feature"], x["value"], x["version"], x["missing"]) for x in c1] == [
        ("last_amount", 5.0, VIEW.version, None), ("spend_1h", 0.75, VIEW.version, None)]
    assert all(60_000 <= x["age_ms"] < 600_000 for x in c1)
    assert [(x["feature"], x["missing"]) for x in c2] == [("spend_1h", "expired")]      # its own last_amount won
    assert [x["missing"] for x in c3] == ["no-value", "no-value"]                      # the NaN was not kept
    log = (tmp_path / "scorer.log").read_text()
    assert log.count('"poison record"') >= 2 and "not a finite number" in log and "is not an entity" in log
