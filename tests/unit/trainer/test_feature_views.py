"""The trainer on feature views, with in-memory ports and a real offline store in a temporary folder: a spec's views
joined point in time to its label rows, the version recording what it used, a reproduction that finds the same
values (or refuses, saying why), and views that are not defined or were refused: refusals, never a crash."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.adapters.feature_store import view_from_record, views_record
from services.adapters.offline_store import OfflineStore, snapshot_digest
from services.domain.features_training import parse_settings
from services.domain.features_views import parse_views
from services.domain.features_windows import FeatureValue, SourceSpan
from services.trainer.decide import Provenance
from services.trainer.feature_sets import ViewCatalogue
from services.trainer.handlers import Trainer
from services.trainer.view import TrainerView
from tests.support.handlers import accept, received, refusing_people

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
HOUR = 3_600_000
TOPIC = "business.events"
[VIEW] = parse_views({"views": [{"name": "purchases", "entity": "customer", "source": {"topic": TOPIC},
                                 "ttl": "2h", "owner": "ana", "features": [
                                     {"name": "last_amount", "aggregate": "last", "field": "amount"}]}]})
VIEWS_JSON = json.dumps({"views": ["purchases"], "entity": "customer", "time": "at"})
SPEC = {"model": "m", "dataset": "d", "target": "y", "features": ["a"], "task": "classification",
        "estimator": "LogisticRegression", "metric": "accuracy", "test_size": 0.25, "cv_folds": 0,
        "hyperparameters_json": "{}", "grid_json": "{}", "seed": 1, "batches": "all", "spec_sha256": "s",
        "defined_by": "cli:dana", "monitoring_json": "{}", "feature_views_json": VIEWS_JSON}
BATCH = {"batch_id": "b1", "dataset": "d", "passed": True, "uri": "file:///d/b1.csv", "sha256": "0" * 64, "rows": 40}


def labels() -> pd.DataFrame:
    """40 label rows, customers c0..c19 twice, at 10 h and 20 h; y follows the customer's last amount."""
    customers = [f"c{i % 20}" for i in range(40)]
    return pd.DataFrame({"customer": customers, "at": [(10 if i < 20 else 20) * HOUR for i in range(40)],
                         "a": np.random.default_rng(0).normal(size=40), "y": [i % 2 for i in range(40)]})


def amounts() -> list[FeatureValue]:
    """Each customer's last amount an hour before each label, and a planted one at each label's time."""
    values = []
    for i in range(20):
        for hour, planted in ((9, False), (10, True), (19, False), (20, True)):
            amount = 1000.0 if planted else float(i % 2) * 10 + hour / 100
            values.append(FeatureValue("purchases", VIEW.version, "last_amount", f"c{i}", hour * HOUR, amount, None,
                                       (SourceSpan(TOPIC, 0, 100 * hour + i, 100 * hour + i, 1),)))
    return values


def trainer(tmp_path, views: ViewCatalogue | None = None) -> Trainer:
    view = TrainerView()
    view.apply("mlbus.ModelSpecDefined", SPEC)
    view.apply("mlbus.DataValidated", BATCH)
    if views is None:
        view.feature_views.apply(views_record(VIEW, "cli:ana", NOW), None, view_from_record)
    else:
        view.feature_views = views
    store = OfflineStore(tmp_path / "offline")
    store.write(amounts(), "part-0")
    return Trainer(view, tmp_path / "artifacts", Provenance("0", None, {}), accept, lambda batches: labels(),
                   clock=lambda: NOW, offline=store)


def request(request_id: str = "r1", reproduce: str | None = None) -> dict:
    return {"request_id": request_id, "model": "m", "reason": "reproduce" if reproduce else "manual",
            "requested_by": "cli:dana", "requested_at": NOW, "batch_ids": [], "evidence_json": "{}",
            "reproduce_run_id": reproduce}


def test_a_spec_with_views_trains_on_the_values_before_each_label_and_records_what_it_used(tmp_path):
    handler = trainer(tmp_path)
    *runs, trained = handler(received("mlbus.TrainingRequested", request()))
    version = trained.value
    assert trained.record == "mlbus.ModelTrained" and version["features"] == ["a", "purchases__last_amount"]
    assert json.loads(version["feature_views_json"]) == {
        "entity": "customer", "time": "at", "views": {"purchases": VIEW.version},
        "columns": ["purchases__last_amount"]}
    used = [v for v in amounts() if v.value != 1000.0]            # the planted values at the labels' times: never
    assert version["features_snapshot_sha256"] == snapshot_digest(used)
    assert json.loads(version["features_until_json"]) == {f"{TOPIC}:0": 2019}
    assert runs[0].value["features_snapshot_sha256"] == version["features_snapshot_sha256"]
    assert {p["name"] for p in version["feature_profile"]} == {"a", "purchases__last_amount"}   # fitted on it
    assert version["metrics"]["accuracy"] == 1.0              # y follows the last amount; `a` is noise
    assert handler(received("mlbus.TrainingRequested", request())) == []       # delivered twice: trained once


def test_a_reproduction_reads_the_recorded_positions_and_versions_and_is_identical(tmp_path):
    handler = trainer(tmp_path)
    [run, _] = handler(received("mlbus.TrainingRequested", request()))
    OfflineStore(tmp_path / "offline").write([FeatureValue(       # computed later, past the recorded positions
        "purchases", VIEW.version, "last_amount", "c1", 9 * HOUR + 5, -5.0, None,
        (SourceSpan(TOPIC, 0, 5000, 5000, 1),))], "part-1")
    [reproduced] = handler(received("mlbus.TrainingRequested", request("r2", reproduce=run.value["run_id"])))
    assert reproduced.record == "mlbus.TrainingRun" and reproduced.value["identical"] is True
    assert reproduced.value["features_snapshot_sha256"] == run.value["features_snapshot_sha256"]
    assert reproduced.value["features_until_json"] == run.value["features_until_json"]


def test_a_reproduction_refuses_when_the_values_at_the_recorded_positions_are_not_the_ones_used(tmp_path):
    handler = trainer(tmp_path)
    [run, _] = handler(received("mlbus.TrainingRequested", request()))
    OfflineStore(tmp_path / "offline").write([FeatureValue(       # rewritten within the recorded positions
        "purchases", VIEW.version, "last_amount", "c1", 9 * HOUR + 5, -5.0, None,
        (SourceSpan(TOPIC, 0, 950, 950, 1),))], "part-1")
    [refused] = handler(received("mlbus.TrainingRequested", request("r2", reproduce=run.value["run_id"])))
    assert refused.record == "mlbus.Alert" and refused.value["kind"] == "training-refused"
    assert "no longer holds the feature values the run used" in refused.value["message"]


def test_a_view_never_defined_refuses_the_training_with_the_reason(tmp_path):
    handler = trainer(tmp_path, ViewCatalogue())
    [refused] = handler(received("mlbus.TrainingRequested", request()))
    assert refused.value["kind"] == "training-refused"
    assert "feature view 'purchases' is not defined" in refused.value["message"]


@pytest.mark.parametrize("change, verify, says", [
    ({}, refusing_people("no such key"), "refused: signature"),
    ({"definition_json": "{"}, accept, "definition_json is not"),
    ({"version": "0" * 64}, accept, "version says"),
])
def test_a_refused_definition_is_not_used_and_the_training_says_why(tmp_path, change, verify, says):
    catalogue = ViewCatalogue()
    catalogue.follow(verify, view_from_record)(received("mlbus.FeatureViewDefined",
                                                        {**views_record(VIEW, "cli:ana", NOW), **change}))
    [refused] = trainer(tmp_path, catalogue)(received("mlbus.TrainingRequested", request()))
    assert refused.value["kind"] == "training-refused" and "no usable definition" in refused.value["message"]
    assert says in refused.value["message"]


def test_the_newest_usable_definition_counts_and_a_later_refused_one_changes_nothing(tmp_path):
    [longer] = parse_views({"views": [{"name": "purchases", "entity": "customer", "source": {"topic": TOPIC},
                                       "ttl": "3h", "owner": "ana", "features": [
                                           {"name": "last_amount", "aggregate": "last", "field": "amount"}]}]})
    catalogue = ViewCatalogue()
    for view in (VIEW, longer):
        catalogue.apply(views_record(view, "cli:ana", NOW), None, view_from_record)
    catalogue.apply(views_record(VIEW, "cli:eve", NOW), "signature: not a data scientist", view_from_record)
    plan = catalogue.current(parse_settings(VIEWS_JSON))
    assert [v.version for v in plan.views] == [longer.version]
