"""The scorer serving a version trained on feature views, with fakes (no broker): the features a request lacks are
looked up for its entity at its arrival on the broker, the request's own values win, a missing value is NaN to the
model and says why on the prediction, a version without views never reads the store, hostile entities and plans are
refused in words, and `audit reproduce` applied to what was recorded gives the served answer again. The scorer's
copy of the store (ScorerFeatures) on a SQLite file: what the follower folds, and what it skips."""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from services.adapters import ArtifactStore, OnlineStore
from services.adapters.feature_store import value_record, views_record
from services.bus import BadInput, Event
from services.domain import Audited
from services.domain.features_lookups import EXPIRED
from services.domain.features_windows import FeatureValue, SourceSpan
from services.scorer.features import ScorerFeatures
from services.scorer.scorer import RoutingTable, Scorer
from services.cli.why import lookup_lines, reproduce_all, why
from services.bus.native import native
from tests.support.handlers import received
from tests.unit.test_compiled_codec import by_fastavro_written, writer
from tests.unit.auditor.test_erasure import bus_without_broker
from tests.unit.features.test_windows import HOUR, TOPIC, view_of

VIEW = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"},
               {"name": "spend_1h", "aggregate": "sum", "field": "amount", "window": "1h"}, ttl="1h")
LOOKED = ["purchases__last_amount", "purchases__spend_1h"]
FEATURES = ["x", *LOOKED]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ARRIVED_MS = 10 * HOUR + 2000                # the request's LogAppendTime
NOW = EPOCH + timedelta(milliseconds=ARRIVED_MS + 5)


def fitted_model() -> Pipeline:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    labels = (frame["x"] + frame["purchases__spend_1h"] > 0).astype(int).astype(str)
    frame.loc[::7, "purchases__spend_1h"] = np.nan              # trained with missing values, as a join leaves them
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("model", LogisticRegression())]).fit(frame, labels)


MODEL = fitted_model()


def trained(version: int = 1, views: dict | None = None, **fields) -> dict:
    plan = {"entity": "customer_id", "time": "at", "views": {VIEW.name: VIEW.version}, "columns": LOOKED}
    return {"model": "m", "version": version, "task": "classification", "features": FEATURES,
            "categorical_features": [], "artifact_uri": f"mem://{version}", "artifact_sha256": f"{version}" * 64,
            "feature_views_json": json.dumps(plan) if views is None else views, **fields}


class FakeFeatures:
    """The scorer's store as a dict: (view, version, entity) → values; counts the reads."""

    def __init__(self, values=(), views=None):
        self.views = {(VIEW.name, VIEW.version): VIEW} if views is None else views
        self.values = list(values)
        self.reads = []

    def held(self, view: str, version: str, entity: str):
        self.reads.append((view, version, entity))
        return [v for v in self.values if (v.view, v.view_version, v.entity) == (view, version, entity)]

    def held_many(self, view: str, version: str, entities):
        return {entity: self.held(view, version, entity) for entity in entities}


def value(feature: str, at_ms: int, amount, entity: str = "c1") -> FeatureValue:
    return FeatureValue(VIEW.name, VIEW.version, feature, entity, at_ms, amount, None, (SourceSpan(TOPIC, 0, 1, 1, 1),))


STORE = [value("last_amount", 10 * HOUR, 5.0), value("spend_1h", 10 * HOUR, 0.75),
         value("last_amount", 10 * HOUR, 1.0, entity="c2"), value("spend_1h", 8 * HOUR, 3.0, entity="c2")]


def scorer_with(features, *versions: dict) -> Scorer:
    scorer = Scorer(RoutingTable(bus_without_broker()), ArtifactStore("/nonexistent", 1 << 20), clock=lambda: NOW,
                    features=features)
    for record in versions:
        scorer.table.inventory.apply("mlbus.ModelTrained", record)
        scorer.models[record["artifact_sha256"]] = MODEL
    scorer.table.deployments.apply("mlbus.DeploymentChanged", {
        "deployment_id": "d1", "model": "m", "phase": "completed", "step": 0, "strategy": "replace",
        "routes": [{"version": versions[0]["version"], "variant": "champion", "share": 1.0, "served": True}]})
    return scorer


def request(entity: str = "c1", request_id: str = "r1", **features) -> object:
    value = {"request_id": request_id, "entity_id": entity, "model": "m", "features": {"x": 0.5, **features},
             "categories": {}, "sent_at": EPOCH}
    return replace(received("mlbus.InferenceRequest", value, offset=int(request_id[1:])), timestamp_ms=ARRIVED_MS,
                   stamped_by_broker=True)


def answer(scorer: Scorer, message) -> Event:
    [result] = scorer([message])
    assert not isinstance(result, BadInput), result
    [prediction] = result
    return prediction


def expected(**features) -> float:
    return float(MODEL.predict_proba(pd.DataFrame([features], columns=FEATURES))[0].max())


def test_the_features_a_request_lacks_are_looked_up_for_its_entity_at_its_arrival_and_recorded():
    store = FakeFeatures(STORE)
    p = answer(scorer_with(store, trained()), request()).value
    assert store.reads == [(VIEW.name, VIEW.version, "c1")]               # one read per view, not per feature
    assert p["error"] is None and p["score"] == pytest.approx(expected(x=0.5, purchases__last_amount=5.0,
                                                                       purchases__spend_1h=0.75))
    assert [(x["feature"], x["value"], x["age_ms"], x["missing"]) for x in p["lookups"]] == [
        ("last_amount", 5.0, 2000, None), ("spend_1h", 0.75, 2000, None)]
    assert p["lookups"][0]["event_time"] == EPOCH + timedelta(milliseconds=10 * HOUR)
    assert bus_without_broker().schemas.encode("mlbus.Prediction", p, check=True)        # the record holds them


@pytest.mark.skipif(native is None, reason="mlbus_native not built (no Rust toolchain here)")
def test_a_prediction_with_lookups_is_still_written_in_compiled_code_as_fastavro_writes_it():
    p = answer(scorer_with(FakeFeatures(STORE), trained()), request("c2")).value     # one found, one expired
    assert writer("mlbus.Prediction")(p) == by_fastavro_written("mlbus.Prediction", p)


def test_a_requests_own_value_wins_and_a_value_past_the_ttl_is_nan_to_the_model_with_the_reason():
    p = answer(scorer_with(FakeFeatures(STORE), trained()), request("c2", purchases__last_amount=9.0)).value
    assert [x["feature"] for x in p["lookups"]] == ["spend_1h"]
    [expired] = p["lookups"]
    assert (expired["value"], expired["missing"], expired["age_ms"]) == (None, EXPIRED, 2 * HOUR + 2000)
    assert "past the TTL" in expired["reason"]
    assert p["score"] == pytest.approx(expected(x=0.5, purchases__last_amount=9.0, purchases__spend_1h=math.nan))


def test_a_version_without_feature_views_never_reads_the_store():
    store = FakeFeatures(STORE)
    plain = {**trained(), "features": ["x"], "feature_views_json": None}
    scorer = scorer_with(store, plain)
    scorer.models[plain["artifact_sha256"]] = Pipeline([("model", LogisticRegression())]).fit(
        pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}), ["0", "0", "1", "1"])
    p = answer(scorer, request()).value
    assert store.reads == [] and p["lookups"] == [] and p["error"] is None


def test_a_request_lacking_a_feature_no_view_gives_is_still_refused_and_a_nan_of_its_own_too():
    scorer = scorer_with(FakeFeatures(STORE), trained())
    message = request()
    [lacking] = scorer([replace(message, value={**message.value, "features": {}})])
    assert isinstance(lacking, BadInput) and "lacks features ['x']" in str(lacking)
    [nan] = scorer([replace(message, value={**message.value, "features": {"x": math.nan}})])
    assert isinstance(nan, BadInput) and "non-finite features ['x']" in str(nan)


@pytest.mark.parametrize("entity", ["c" * 300, "c1\n", "\u202ec1"])
def test_an_entity_id_that_is_no_entity_is_dead_lettered_and_the_store_never_asked(entity):
    store = FakeFeatures(STORE)
    [refused] = scorer_with(store, trained())([request(entity)])
    assert isinstance(refused, BadInput) and "is not an entity" in str(refused) and store.reads == []


def test_a_view_version_the_scorer_has_not_seen_is_missing_and_the_request_still_answered():
    p = answer(scorer_with(FakeFeatures(STORE, views={}), trained()), request()).value
    assert {x["missing"] for x in p["lookups"]} == {"unknown-view"} and p["error"] is None


def test_a_version_whose_feature_views_are_not_a_plan_cannot_serve_and_says_why():
    p = answer(scorer_with(FakeFeatures(STORE), trained(views=json.dumps({"views": {"purchases": "v1"}}))),
               request()).value
    assert p["error"].startswith("v1 cannot serve: feature_views_json") and p["score"] is None


def test_a_request_delivered_twice_gets_the_same_prediction_with_the_same_lookups():
    scorer = scorer_with(FakeFeatures(STORE), trained())
    first, again = answer(scorer, request()), answer(scorer, request())
    same = ("prediction_id", "score", "label", "probabilities", "lookups")
    assert first.id == again.id and [first.value[k] for k in same] == [again.value[k] for k in same]


def test_one_batch_reads_an_entity_once_and_each_request_gets_its_own_lookups():
    store = FakeFeatures(STORE)
    results = scorer_with(store, trained())([request("c1", "r1"), request("c1", "r2"), request("c2", "r3")])
    assert sorted(store.reads) == [(VIEW.name, VIEW.version, "c1"), (VIEW.name, VIEW.version, "c2")]
    assert [r[0].value["lookups"][0]["value"] for r in results] == [5.0, 5.0, 1.0]


def audited(sequence: int, record: str, value: dict, personal: str | None = None) -> Audited:
    return Audited(sequence, NOW, "t", "test", record, value, {}, personal)


def test_reproduction_uses_the_recorded_lookups_and_gives_the_served_answer_whatever_the_store_holds_now():
    version = trained()
    served = [answer(scorer_with(FakeFeatures(STORE), version), request(e, f"r{i}")).value
              for i, e in enumerate(["c1", "c2", "c3"])]
    requests = [audited(i, "mlbus.InferenceRequest", {**request(p["entity_id"], p["request_id"]).value,
                                                      "request_id": p["request_id"]}, "readable")
                for i, p in enumerate(served)]
    events = [audited(0, "mlbus.ModelTrained", version), *requests,
              *[audited(10 + i, "mlbus.Prediction", p) for i, p in enumerate(served)]]
    [line] = reproduce_all(events, lambda uri, sha: MODEL)
    assert (line["equal"], line["different"], line["max_difference"]) == (3, [], 0.0)
    one = why(version, served[1], requests[1].value, lambda uri, sha: MODEL)
    assert one["equal"] and one["max_difference"] == 0.0
    sealed = [audited(10, "mlbus.Prediction", {**served[0], "lookups": []}, "erased")]
    [line] = reproduce_all([events[0], requests[0], *sealed], lambda uri, sha: MODEL)
    assert line["not_reproducible"] == {"its looked-up features are erased": 1}


def test_explain_shows_each_looked_up_feature_with_its_view_version_and_age_or_why_missing():
    p = answer(scorer_with(FakeFeatures(STORE), trained()), request("c2", purchases__last_amount=9.0)).value
    definition = {"signer": "ana", "defined_by": "cli:ana", "audit_sequence": 4}
    lines = lookup_lines(p, [{"view": VIEW.name, "version": VIEW.version, "definition": definition}])
    assert lines[0] == "  looked up for entity 'c2' at the request's time:"
    assert f"from purchases v{VIEW.version[:12]} (defined by ana [#4]), 2.0 h old" in lines[1]
    assert "missing (expired: the newest value" in lines[1]
    assert lookup_lines({"lookups": "[redacted: needs the dpo role]"}, []) == [
        "  looked-up features: [redacted: needs the dpo role]"]


# ---------------------------------------------------------------- the scorer's copy of the store, on SQLite
def folded(features: ScorerFeatures, record: str, value: dict, offset: int) -> None:
    features.fold(received(record, value, topic="features.online", offset=offset))


def test_the_copy_keeps_views_and_values_from_its_topics_and_skips_what_it_cannot_serve(tmp_path):
    features = ScorerFeatures(OnlineStore(f"sqlite:///{tmp_path / 'features.db'}"))
    folded(features, "mlbus.FeatureViewDefined", views_record(VIEW, "cli:ana", NOW), 0)
    assert features.views == {(VIEW.name, VIEW.version): VIEW}
    for offset, stored in enumerate(STORE, 1):
        folded(features, "mlbus.FeatureValue", value_record(stored, NOW), offset)
    for bad in (value("spend_1h", HOUR, math.nan), value("spend_1h", HOUR, 1.0, entity="c\x01"),
                replace(value("spend_1h", HOUR, 1.0), view_version="v2")):
        with pytest.raises(ValueError):
            folded(features, "mlbus.FeatureValue", value_record(bad, NOW), 99)
    with pytest.raises(ValueError, match="version"):
        folded(features, "mlbus.FeatureViewDefined", {**views_record(VIEW, "cli:ana", NOW), "version": "0" * 64}, 9)
    assert features.held(VIEW.name, VIEW.version, "c1") == []            # stored once the poll is folded
    features.flush()
    assert sorted(v.value for v in features.held(VIEW.name, VIEW.version, "c1")) == [0.75, 5.0]
    p = answer(scorer_with(features, trained()), request()).value
    assert [x["value"] for x in p["lookups"]] == [5.0, 0.75]


def test_the_copy_reads_the_clock_once_a_poll_not_once_a_value(tmp_path):
    features = ScorerFeatures(OnlineStore(f"sqlite:///{tmp_path / 'features.db'}"))
    folded(features, "mlbus.FeatureViewDefined", views_record(VIEW, "cli:ana", NOW), 0)
    for poll in range(2):
        with mock.patch("services.scorer.features.time.time", wraps=time.time) as clock:
            for offset, stored in enumerate(STORE * 3, 1):
                folded(features, "mlbus.FeatureValue", value_record(stored, NOW), poll * 100 + offset)
        assert clock.call_count == 1
        features.flush()                                        # the follower's after_poll
