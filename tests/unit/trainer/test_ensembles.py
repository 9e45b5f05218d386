"""Ensembles through the trainer's handler with in-memory ports: members resolved to approved versions and
pinned, the combiner artifact, what each combination computes, refusals, and a member's alias moving."""
import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.domain import ArtifactRefused, predict
from services.adapters import ArtifactStore
from services.domain.ensembles import Ensemble, ensemble_problem, load_servable
from services.domain.estimators import spec_problem
from services.trainer.decide import Provenance
from services.trainer.handlers import Trainer
from services.trainer.view import TrainerView
from tests.support.handlers import accept, received

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)
BASE = {"dataset": "d", "target": "y", "task": "classification", "metric": "accuracy", "test_size": 0.25,
        "cv_folds": 3, "hyperparameters_json": "{}", "grid_json": "{}", "seed": 1, "batches": "all",
        "spec_sha256": "s", "defined_by": "cli:dana", "monitoring_json": "{}", "categorical_features": []}
MEMBERS = {"lr": {**BASE, "model": "lr", "features": ["a", "b"], "estimator": "LogisticRegression"},
           "tree": {**BASE, "model": "tree", "features": ["b", "c"], "estimator": "DecisionTreeClassifier",
                    "hyperparameters_json": '{"max_depth": 3}'}}
BATCH = {"batch_id": "b1", "dataset": "d", "passed": True, "uri": "file:///d/b1.csv", "sha256": "0" * 64,
         "rows": 400}


def ensemble_spec(combine: str = "soft-vote", weights=(2, 1), members=("lr@champion", "tree@1")) -> dict:
    settings = {"members": list(members), "combine": combine}
    if weights:
        settings["weights"] = list(weights)
    return {**BASE, "model": "both", "features": [], "estimator": "Ensemble", "ensemble_json": json.dumps(settings)}


def data() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    a, b, c = rng.normal(size=(3, 400))
    return pd.DataFrame({"a": a, "b": b, "c": c, "y": np.where(a + b - c + rng.normal(0, 0.5, 400) > 0, "p", "q")})


def request(model: str, request_id: str) -> dict:
    return {"request_id": request_id, "model": model, "reason": "manual", "requested_by": "cli:dana",
            "requested_at": NOW, "batch_ids": [], "evidence_json": "{}", "reproduce_run_id": None}


def lifecycle(model: str, version: int, kind: str, alias: str | None = None) -> dict:
    return {"event_id": f"{model}-{version}-{kind}", "cause_id": f"c-{model}-{version}-{kind}", "model": model,
            "version": version, "kind": kind, "alias": alias, "actor": "ana", "reason": ""}


@pytest.fixture
def trainer(tmp_path) -> Trainer:
    """Both members trained (v1), approved, lr v1 the champion."""
    view = TrainerView()
    view.apply("mlbus.DataValidated", BATCH)
    handler = Trainer(view, tmp_path, Provenance("0", None, {}), accept, lambda batches: data(), clock=lambda: NOW)
    for name, spec in MEMBERS.items():
        handler(received("mlbus.ModelSpecDefined", spec))
        handler(received("mlbus.TrainingRequested", request(name, f"r-{name}")))
        handler(received("mlbus.ModelLifecycle", lifecycle(name, 1, "approved")))
    handler(received("mlbus.ModelLifecycle", lifecycle("lr", 1, "promoted", "champion")))
    return handler


def train_ensemble(trainer: Trainer, spec: dict, request_id: str = "r-both") -> list:
    trainer(received("mlbus.ModelSpecDefined", spec))
    return trainer(received("mlbus.TrainingRequested", request("both", request_id)))


def members_of(trainer: Trainer) -> dict:
    return {m: trainer.view.inventory.version(m, 1).trained for m in MEMBERS}


def test_a_soft_vote_pins_its_approved_members_and_serves_their_weighted_mean(trainer):
    *runs, trained = train_ensemble(trainer, ensemble_spec())
    value = trained.value
    assert trained.record == "mlbus.ModelTrained" and value["estimator"] == "Ensemble" and value["version"] == 1
    members = members_of(trainer)
    assert [(m["model"], m["version"], m["artifact_sha256"], m["weight"]) for m in value["members"]] == [
        ("lr", 1, members["lr"]["artifact_sha256"], 2.0), ("tree", 1, members["tree"]["artifact_sha256"], 1.0)]
    assert value["features"] == ["a", "b", "c"]            # the union a request must carry
    assert json.loads(runs[0].value["hyperparameters_json"])["members"] == ["lr@1", "tree@1"]
    store = ArtifactStore(trainer.artifacts.root, 1 << 29)
    ensemble = load_servable(value, store.load)
    frame = data()[["a", "b", "c"]]
    lr, tree = (load_servable(members[m], store.load) for m in ("lr", "tree"))
    expected = (2 * lr.predict_proba(frame[["a", "b"]]) + tree.predict_proba(frame[["b", "c"]])) / 3
    labels, probabilities, classes = predict(ensemble, frame, "classification")
    assert np.allclose(probabilities, expected, atol=1e-12) and classes == ["p", "q"]
    assert list(labels) == list(np.array(["p", "q"])[expected.argmax(axis=1)])
    _, _, _, answers = ensemble.answer(frame.head(2), "classification")
    assert [(a["model"], round(a["weight"], 6)) for a in answers[0]] == [("lr", 0.666667), ("tree", 0.333333)]
    assert answers[1][1]["probabilities"] == dict(zip(["p", "q"], tree.predict_proba(frame[["b", "c"]].iloc[[1]])[0]))


def test_a_stacked_ensemble_fits_its_final_estimator_on_the_members_outputs(trainer):
    *_, trained = train_ensemble(trainer, ensemble_spec("stack", weights=None))
    ensemble = load_servable(trained.value, trainer.artifacts.load)
    assert isinstance(ensemble, Ensemble) and ensemble.final.coef_.shape == (1, 4)    # 2 members × 2 classes
    assert trained.value["cv_metrics"]["accuracy"] > 0.8 and trained.value["metrics"]["accuracy"] > 0.8


@pytest.mark.parametrize("members, says", [
    (("lr@champion", "tree@2"), "member tree@2: no such version"),
    (("lr@champion", "tree@challenger"), "aliases of tree: none"),
])
def test_members_that_are_not_there_refuse_the_training(trainer, members, says):
    [refused] = train_ensemble(trainer, ensemble_spec(members=members))
    assert refused.value["kind"] == "training-refused" and says in refused.value["message"]


def test_an_unapproved_member_or_an_altered_member_artifact_refuses_the_training(trainer):
    trainer(received("mlbus.TrainingRequested", request("tree", "r-tree-2")))          # tree v2: awaiting
    [refused] = train_ensemble(trainer, ensemble_spec(members=("lr@1", "tree@2")))
    assert "tree v2 is awaiting-approval: an ensemble is built from approved versions" in refused.value["message"]
    lr = members_of(trainer)["lr"]
    path = trainer.artifacts.root / f"{lr['artifact_sha256']}.skops"
    path.write_bytes(path.read_bytes() + b"x")
    [refused] = train_ensemble(trainer, ensemble_spec(), "r-both-2")
    assert "sha256" in refused.value["message"] and "refused" in refused.value["message"]


def test_a_combiner_naming_other_members_than_its_record_is_refused(trainer):
    *_, trained = train_ensemble(trainer, ensemble_spec())
    forged = {**trained.value, "members": [{**trained.value["members"][0], "version": 7},
                                           trained.value["members"][1]]}
    with pytest.raises(ArtifactRefused, match="does not name the members"):
        load_servable(forged, trainer.artifacts.load)


def test_the_champion_moving_asks_for_a_new_ensemble_version_not_a_change_of_the_old(trainer):
    *_, first = train_ensemble(trainer, ensemble_spec())
    trainer(received("mlbus.TrainingRequested", request("lr", "r-lr-2")))
    trainer(received("mlbus.ModelLifecycle", lifecycle("lr", 2, "approved")))
    [asked] = trainer(received("mlbus.ModelLifecycle", lifecycle("lr", 2, "promoted", "champion")))
    assert asked.value["reason"] == "member-changed" and asked.value["model"] == "both"
    *_, second = trainer(received("mlbus.TrainingRequested", asked.value))
    assert second.value["version"] == 2 and second.value["members"][0]["version"] == 2
    assert first.value["members"][0]["version"] == 1                      # the first version keeps its members
    assert trainer(received("mlbus.ModelLifecycle", lifecycle("tree", 1, "promoted", "champion"))) == []
    again = {**asked.value, "request_id": "r-again"}            # a second alias moving to the same versions
    assert trainer(received("mlbus.TrainingRequested", again)) == [] and "r-again" in trainer.view.handled_requests


def test_ensembles_do_not_train_on_new_data_their_members_do(trainer):
    trainer(received("mlbus.ModelSpecDefined", ensemble_spec()))
    asked = trainer(received("mlbus.DataValidated", {**BATCH, "batch_id": "b2", "validation_id": "v2"}))
    assert sorted(e.value["model"] for e in asked) == ["lr", "tree"]


@pytest.mark.parametrize("settings, says", [
    ({"members": ["a@1"], "combine": "soft-vote"}, "at least two members"),
    ({"members": ["a@1", "../b@1"], "combine": "soft-vote"}, "MODEL@VERSION or MODEL@ALIAS"),
    ({"members": ["a@1", "a@2"], "combine": "soft-vote"}, "appear once"),
    ({"members": ["a@1", "b@1"], "combine": "hard-vote"}, "not one of"),
    ({"members": ["a@1", "b@1"], "combine": "average"}, "average is for regression"),
    ({"members": ["a@1", "b@1"], "combine": "soft-vote", "weights": [1]}, "one non-negative number per member"),
    ({"members": ["a@1", "b@1"], "combine": "soft-vote", "weights": [0, 0]}, "not all zero"),
    ({"members": ["a@1", "b@1"], "combine": "stack", "weights": [1, 2]}, "learns its weights"),
])
def test_ensemble_settings_a_spec_cannot_use(settings, says):
    assert says in ensemble_problem(settings, "classification")
    spec = {**ensemble_spec(), "ensemble_json": json.dumps(settings)}
    assert says in spec_problem(spec)
