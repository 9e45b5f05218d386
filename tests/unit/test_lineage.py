"""The lineage service's mapping (pure) and handler with fakes: every record kind becomes OpenLineage events that
validate against the vendored spec, link batch → training → version → scoring → predictions by dataset names,
and come out the same when a record is delivered twice."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from openlineage.client.serde import Serde

from services.bus import BadInput
from services.bus.errors import InfrastructureError, is_infrastructure
from services.lineage.adapters import emitter
from services.bus.settings import ConfigError
from services.lineage.decide import Places, Scoring
from services.lineage.handlers import Lineage
from services.lineage.settings import LineageSettings
from tests.support.handlers import received
from tests.support.lineage import problems, read_events

T0 = datetime(2026, 12, 7, 10, 0, 5, tzinfo=timezone.utc)
PLACES = Places(jobs="mlbus", bus="kafka://broker:9093", producer="urn:mlbus:lineage:0.1.0",
                topics={"inference.predictions": "t1.inference.predictions",
                        "inference.requests": "t1.inference.requests"})
SNAPSHOT = "file:///srv/mlbus/snapshots/ab12.csv"
PROFILE = [{"name": "mean_radius", "kind": "numeric", "count": 300, "missing": 2, "mean": 14.1, "std": 3.5,
            "min": 6.9, "max": 28.1, "quantiles": {"0.5": 13.4}, "histogram_edges": [], "histogram_counts": [],
            "categories": {}, "sample": []},
           {"name": "diagnosis", "kind": "categorical", "count": 300, "missing": 0, "mean": None, "std": None,
            "min": None, "max": None, "quantiles": {}, "histogram_edges": [], "histogram_counts": [],
            "categories": {"benign": 190, "malignant": 110}, "sample": []}]


def batch(**changes) -> dict:
    return {"batch_id": "b-1", "dataset": "breast_cancer", "uri": SNAPSHOT, "sha256": "ab12" * 16, "rows": 300,
            "size_bytes": 9000, "format": "csv", "publisher": "cli:dana", "published_at": T0, "labels": {},
            **changes}


def validation(passed: bool = True) -> dict:
    return {"validation_id": "v-1", "batch_id": "b-1", "dataset": "breast_cancer", "uri": SNAPSHOT,
            "sha256": "ab12" * 16, "rows": 300, "passed": passed, "contract": "breast_cancer@v1",
            "failures": [] if passed else [{"check": "range", "column": "mean_radius", "message": "3 values outside",
                                            "count": 3, "rows": [1, 2, 3]}],
            "warnings": [], "profile": PROFILE, "validated_at": T0 + timedelta(seconds=1)}


def trained(**changes) -> dict:
    return {"model": "breast_cancer_lr", "version": 1, "run_id": "run-1", "request_id": "q-1", "reason": "new-data",
            "requested_by": "validator", "task": "classification", "estimator": "logistic_regression",
            "hyperparameters_json": "{}", "features": ["mean_radius"], "target": "diagnosis", "metric": "roc_auc",
            "metrics": {"roc_auc": 0.97}, "batches": [{"batch_id": "b-1", "dataset": "breast_cancer",
                                                     "sha256": "ab12" * 16, "rows": 300, "uri": SNAPSHOT}],
            "code_version": "0.1.0", "environment": {}, "seed": 7, "duration_ms": 2500,
            "artifact_uri": "file:///srv/mlbus/artifacts/cd34.skops", "artifact_sha256": "cd34" * 16,
            "feature_profile": PROFILE[:1], "trained_at": T0 + timedelta(seconds=10), **changes}


def prediction(n: int, at: datetime, version: int | None = 1, lookups: list | None = None) -> dict:
    return {"prediction_id": f"p-{n}", "request_id": f"r-{n}", "entity_id": f"e-{n}", "model": "breast_cancer_lr",
            "version": version, "variant": "champion", "served": True, "label": "benign", "score": 0.9,
            "probabilities": {"benign": 0.9, "malignant": 0.1}, "lookups": lookups or [], "latency_ms": 1.0,
            "predicted_at": at}


class Recorder:
    def __init__(self):
        self.events: list[dict] = []

    def __call__(self, event) -> None:
        self.events.append(json.loads(Serde.to_json(event)))


def lineage(now: datetime = T0, period_s: int = 60) -> tuple[Lineage, Recorder, list[datetime]]:
    recorder, clock = Recorder(), [now]
    return Lineage(PLACES, Scoring(period_s), recorder, grace_s=5, clock=lambda: clock[0]), recorder, clock


def story() -> tuple[list[dict], Lineage, list[datetime]]:
    """The demo's story in records: a batch, its validation, a training, 3 predictions, the period closed."""
    handler, recorder, clock = lineage()
    handler(received("mlbus.DataBatch", batch(), offset=0))
    handler(received("mlbus.DataValidated", validation(), offset=1))
    handler(received("mlbus.ModelTrained", trained(), offset=2))
    for n in range(3):
        handler(received("mlbus.Prediction", prediction(n, T0 + timedelta(seconds=20 + n)), offset=3 + n))
    clock[0] = T0 + timedelta(minutes=2)
    handler.tick()
    return recorder.events, handler, clock


def by_job(events: list[dict], suffix: str) -> list[dict]:
    return [e for e in events if e["job"]["name"].endswith(suffix)]


def names(datasets: list[dict]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def test_every_event_of_the_story_validates_against_the_spec_and_each_run_starts_and_ends():
    events, _, _ = story()
    assert events and all(problems(e) == [] for e in events), [problems(e) for e in events]
    runs: dict[str, list[str]] = {}
    for e in events:
        runs.setdefault(e["run"]["runId"], []).append(e["eventType"])
    assert sorted(runs.values()) == [["START", "COMPLETE"]] * 4      # publish, validate, train, one scoring period


def test_a_batch_is_its_snapshot_file_with_its_version_columns_and_profile():
    events, _, _ = story()
    [published] = by_job(events, ".publish")[-1:]
    assert published["job"] == {**published["job"], "namespace": "mlbus", "name": "breast_cancer.publish"}
    [written] = published["outputs"]
    assert (written["namespace"], written["name"]) == ("file", "/srv/mlbus/snapshots/ab12.csv")
    assert written["facets"]["version"]["datasetVersion"] == "ab12" * 16
    assert written["outputFacets"]["outputStatistics"]["rowCount"] == 300
    [read] = by_job(events, ".validate")[-1]["inputs"]
    assert (read["namespace"], read["name"]) == ("file", "/srv/mlbus/snapshots/ab12.csv")
    assert [(f["name"], f["type"]) for f in read["facets"]["schema"]["fields"]] == \
        [("mean_radius", "numeric"), ("diagnosis", "categorical")]
    metrics = read["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 300 and metrics["columnMetrics"]["mean_radius"]["nullCount"] == 2


def test_links_batch_to_training_run_to_version_to_scoring_to_predictions():
    events, _, _ = story()
    batch_name = ("file", "/srv/mlbus/snapshots/ab12.csv")
    [start, complete] = by_job(events, ".train")
    assert names(complete["inputs"]) == {batch_name} and start["run"]["runId"] == complete["run"]["runId"]
    assert names(complete["outputs"]) == {("mlbus", "models/breast_cancer_lr/v1")}
    version = complete["outputs"][0]
    assert version["facets"]["version"]["datasetVersion"] == "cd34" * 16
    assert version["facets"]["datasetType"]["datasetType"] == "MODEL"
    assert start["eventTime"] == "2026-12-07T10:00:12.500000Z" and complete["eventTime"] == "2026-12-07T10:00:15Z"
    scoring = by_job(events, ".score")
    assert [e["eventType"] for e in scoring] == ["START", "COMPLETE"]
    assert all(("mlbus", "models/breast_cancer_lr/v1") in names(e["inputs"]) for e in scoring)
    assert ("kafka://broker:9093", "t1.inference.requests") in names(scoring[0]["inputs"])
    assert all(names(e["outputs"]) == {("kafka://broker:9093", "t1.inference.predictions")} for e in scoring)
    nominal = scoring[1]["run"]["facets"]["nominalTime"]
    assert (nominal["nominalStartTime"], nominal["nominalEndTime"]) == ("2026-12-07T10:00:00Z", "2026-12-07T10:01:00Z")


def test_predictions_make_one_run_per_version_and_period_not_one_event_each():
    handler, recorder, clock = lineage()
    for n in range(60):
        handler(received("mlbus.Prediction", prediction(n, T0 + timedelta(seconds=n)), offset=n))   # 2 periods
    handler(received("mlbus.Prediction", prediction(99, T0, version=2), offset=99))
    handler(received("mlbus.Prediction", prediction(98, T0, version=None), offset=98))     # no model: none
    assert [e["eventType"] for e in recorder.events] == ["START"] * 3
    clock[0] = T0 + timedelta(seconds=58)                  # the first period is over, but not its grace
    handler.tick()
    assert len(recorder.events) == 3
    clock[0] = T0 + timedelta(seconds=200)
    handler.tick()
    assert [e["eventType"] for e in recorder.events] == ["START"] * 3 + ["COMPLETE"] * 3
    assert len({e["run"]["runId"] for e in recorder.events}) == 3


def test_a_period_that_looked_features_up_reads_the_online_features_topic():
    handler, recorder, clock = lineage()
    lookup = {"view": "shop", "version": "1", "feature": "spend", "entity": "c1", "value": 3.0, "text": None,
              "event_time": T0, "age_ms": 5, "missing": None, "reason": ""}
    handler(received("mlbus.Prediction", prediction(0, T0), offset=0))
    handler(received("mlbus.Prediction", prediction(1, T0, lookups=[lookup]), offset=1))
    clock[0] = T0 + timedelta(minutes=5)
    handler.tick()
    complete = recorder.events[-1]
    assert complete["eventType"] == "COMPLETE" and ("kafka://broker:9093", "features.online") in names(
        complete["inputs"]) and problems(complete) == []


def test_a_failed_validation_is_a_failed_run_with_the_failures():
    handler, recorder, _ = lineage()
    handler(received("mlbus.DataValidated", validation(passed=False)))
    [start, failed] = recorder.events
    assert start["eventType"] == "START" and failed["eventType"] == "FAIL"
    assert "range: 3 values outside" in failed["run"]["facets"]["errorMessage"]["message"]
    assert problems(failed) == []


def test_delivered_twice_or_replayed_gives_the_same_events():
    first, _, _ = story()
    again, _, _ = story()
    assert first == again
    handler, recorder, _ = lineage()
    message = received("mlbus.ModelTrained", trained())
    handler(message)
    handler(message)
    assert recorder.events[:2] == recorder.events[2:]


def test_an_unmappable_record_is_bad_input_for_the_dlq_and_emits_nothing():
    handler, recorder, _ = lineage()
    for record, value in (("mlbus.ModelTrained", trained(duration_ms=-5)), ("mlbus.ModelTrained", trained(batches=[])),
                          ("mlbus.DataBatch", batch(uri="s3:///no-bucket/x.csv")),
                          ("mlbus.Prediction", prediction(0, datetime(9999, 12, 31, 23, 30, tzinfo=timezone.utc)))):
        with pytest.raises(BadInput):
            handler(received(record, value))
    assert recorder.events == [] and handler.scoring.open == {} and handler.tick() == []


def test_the_validator_catches_a_broken_event():
    events, _, _ = story()
    broken = {**events[0], "eventType": "DONE", "run": {"runId": "not-a-uuid"}}
    assert len(problems(broken)) >= 2
    facet = events[-1]["run"]["facets"]["nominalTime"]
    wrong = {**events[-1], "run": {**events[-1]["run"], "facets": {"nominalTime": {**facet, "nominalStartTime": 5}}}}
    assert any("nominalTime" in p for p in problems(wrong))


def test_settings_need_a_file_or_a_url_and_keep_the_key_out_of_their_repr(tmp_path):
    with pytest.raises(ConfigError):
        LineageSettings.from_env({})
    with pytest.raises(ConfigError):
        LineageSettings.from_env({"MLBUS_LINEAGE_URL": "ftp://x"})
    settings = LineageSettings.from_env({"MLBUS_LINEAGE_URL": "http://localhost:5000", "MLBUS_LINEAGE_API_KEY": "s3"})
    assert settings.url == "http://localhost:5000" and settings.file is None and "s3" not in repr(settings)
    assert LineageSettings.from_env({"MLBUS_LINEAGE_FILE": str(tmp_path / "l.jsonl")}).period_s == 3600


def test_the_client_s_file_transport_appends_events_that_validate_and_a_failing_one_is_infrastructure(tmp_path):
    out = tmp_path / "lineage" / "events.jsonl"
    handler = Lineage(PLACES, Scoring(60), emitter(LineageSettings.from_env({"MLBUS_LINEAGE_FILE": str(out)})), 5)
    handler(received("mlbus.ModelTrained", trained()))
    written = read_events(out)
    assert [e["eventType"] for e in written] == ["START", "COMPLETE"] and all(problems(e) == [] for e in written)
    (tmp_path / "a-directory").mkdir()
    broken = emitter(LineageSettings.from_env({"MLBUS_LINEAGE_FILE": str(tmp_path / "a-directory")}))
    with pytest.raises(InfrastructureError) as raised:
        Lineage(PLACES, Scoring(60), broken, 5)(received("mlbus.ModelTrained", trained()))
    assert is_infrastructure(raised.value) and "file transport failed" in str(raised.value)


def test_a_disabled_client_is_refused_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    with pytest.raises(ConfigError):
        emitter(LineageSettings.from_env({"MLBUS_LINEAGE_FILE": str(tmp_path / "l.jsonl")}))


@pytest.mark.parametrize("status, dead_letter", [(400, True), (413, True), (422, True), (401, False), (404, False),
                                                 (503, False)])
def test_an_endpoint_refusing_the_event_dead_letters_the_record_and_one_refusing_us_stops_the_service(
        status, dead_letter, monkeypatch):
    """What the backend says of the event itself (400, 413, 422) is the record's fault: dead-lettered, never a
    crash loop; what it says of our settings or of itself (401, 404, 5xx) stops the service."""
    import requests

    def answer(self, url, **kwargs):
        response = requests.Response()
        response.status_code, response.url, response.raw = status, url, io.BytesIO(b"{}")
        return response
    monkeypatch.setattr(requests.Session, "post", answer)
    monkeypatch.setattr("time.sleep", lambda seconds: None)          # the client's back-off between its retries
    emit = emitter(LineageSettings.from_env({"MLBUS_LINEAGE_URL": "http://lineage.invalid:5000"}))
    with pytest.raises(BadInput if dead_letter else InfrastructureError):
        Lineage(PLACES, Scoring(60), emit, 5)(received("mlbus.ModelTrained", trained()))
