"""Ensembles: several approved versions whose outputs are combined, deployed as one version.

An ensemble version's artifact is its *combiner* (a skops file: the method, the weights, the members' artifact
hashes, and for `stack` the final estimator fitted on the members' outputs); the members stay their own
artifacts, named by (model, version, uri, sha256) in ModelTrained.members and loaded — hash-checked — by
whoever serves the ensemble. A member's new version changes nothing deployed: it takes a new ensemble version.

- soft-vote (classification): the weighted mean of the members' class probabilities; the label is its argmax.
- average (regression): the weighted mean of the members' predictions.
- stack: a final estimator (LogisticRegression / LinearRegression) fitted on the members' outputs — class
  probabilities side by side, or predictions — over the ensemble's training rows, judged on its holdout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

COMBINE = {"soft-vote": "classification", "average": "regression", "stack": None}   # method → the task it fits
ESTIMATOR = "Ensemble"          # ModelSpecDefined/ModelTrained.estimator of an ensemble
MEMBER_REF = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})@([A-Za-z0-9][A-Za-z0-9._-]{0,63})$")


class EnsembleError(ValueError):
    """An ensemble that cannot be built: a member unknown, unapproved, of another task or other classes."""


class ArtifactRefused(Exception):
    """The artifact is missing, outside the store, too big, altered, not a skops file, or holds a type
    outside the allowlist (raised by the store, services/adapters/artifacts.py, and by load_servable here for a
    combiner that names other members than its record)."""


def is_ensemble(spec_or_trained: dict) -> bool:
    return spec_or_trained.get("estimator") == ESTIMATOR


def ensemble_problem(settings: dict, task: str) -> str | None:
    """Why an ensemble spec (its `ensemble_json`, parsed) cannot be trained whatever the registry holds, or None."""
    members, method, weights = settings.get("members", []), settings.get("combine"), settings.get("weights")
    if not isinstance(members, list) or len(members) < 2:
        return "an ensemble names at least two members (MODEL@VERSION or MODEL@ALIAS)"
    bad = [m for m in members if not isinstance(m, str) or not MEMBER_REF.match(m)]
    if bad:
        return f"members must be MODEL@VERSION or MODEL@ALIAS, not {', '.join(map(repr, bad[:3]))}"
    if len({m.split('@')[0] for m in members}) != len(members):
        return "each member model may appear once"
    if method not in COMBINE:
        return f"combine {method!r} is not one of {', '.join(COMBINE)}"
    if COMBINE[method] not in (None, task):
        return f"combine {method} is for {COMBINE[method]}, the spec says {task}"
    if weights is not None and (not isinstance(weights, list) or len(weights) != len(members) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) or not sum(weights)):
        return "weights must be one non-negative number per member, not all zero"
    if weights is not None and method == "stack":
        return "a stacked ensemble learns its weights: leave weights out"
    return None


def member_record(trained: dict, weight: float) -> dict:
    """A member as ModelTrained.members holds it: what serving needs to load and feed it."""
    return {"model": trained["model"], "version": trained["version"], "artifact_uri": trained["artifact_uri"],
            "artifact_sha256": trained["artifact_sha256"], "weight": float(weight),
            "features": list(trained["features"]), "categorical_features": list(trained["categorical_features"])}


def union(members: list[dict], field: str) -> list[str]:
    """The members' features (or categorical features), each once, in member order: what a request carries."""
    return list(dict.fromkeys(name for m in members for name in m[field]))


@dataclass
class Ensemble:
    """Fitted members and how their outputs combine; served like a pipeline (predict, predict_proba, classes_)."""

    members: list[dict]                 # ModelTrained.members records
    fitted: list[Any]                   # each member's pipeline, in the same order
    combine: str
    final: Any = None                   # stack: the final estimator (else None)

    @property
    def weights(self) -> np.ndarray:
        weights = np.array([m["weight"] for m in self.members], dtype=float)
        return weights / weights.sum()

    @property
    def classes_(self) -> np.ndarray:
        return self.fitted[0].classes_

    def member_outputs(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """Each member's class probabilities (or predictions), on its own features."""
        return [model.predict_proba(frame[m["features"]]) if hasattr(model, "predict_proba")
                else model.predict(frame[m["features"]]) for m, model in zip(self.members, self.fitted)]

    def combined(self, outputs: list[np.ndarray]) -> np.ndarray:
        if self.combine == "stack":
            stacked = stack_inputs(outputs)
            return self.final.predict_proba(stacked) if hasattr(self.final, "predict_proba") \
                else self.final.predict(stacked)
        return sum(w * o for w, o in zip(self.weights, outputs))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.combined(self.member_outputs(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        combined = self.predict_proba(frame)
        return self.classes_[combined.argmax(axis=1)] if combined.ndim == 2 else combined


    def answer(self, frame: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None, list[str], list]:
        """serving.predict's (labels, probabilities, classes) and, per row, what each member answered
        (MemberOutput records) — from one pass over the members."""
        outputs = self.member_outputs(frame)
        combined = self.combined(outputs)
        weights = np.zeros(len(self.members)) if self.combine == "stack" else self.weights
        classes = [str(c) for c in self.classes_] if task == "classification" else []

        def said(output: np.ndarray, row: int) -> dict:
            return {"probabilities": dict(zip(classes, output[row].tolist())), "value": None} if classes \
                else {"probabilities": {}, "value": float(output[row])}
        rows = [[{"model": m["model"], "version": m["version"], "weight": float(w), **said(o, row)}
                 for m, w, o in zip(self.members, weights, outputs)] for row in range(len(frame))]
        if task != "classification":
            return combined, None, [], rows
        return self.classes_[combined.argmax(axis=1)], combined, classes, rows


def stack_inputs(outputs: list[np.ndarray]) -> np.ndarray:
    """The final estimator's input: the members' probabilities (or predictions) side by side."""
    return np.hstack([o if o.ndim == 2 else o.reshape(-1, 1) for o in outputs])


def check_members(members: list[dict], fitted: list[Any], task: str) -> None:
    """Members must agree on the task and, for classification, on the classes (their probabilities line up)."""
    kinds = {hasattr(model, "predict_proba") for model in fitted}
    if kinds != {task == "classification"}:
        raise EnsembleError(f"every member must be a {task} model")
    if task == "classification":
        first = [str(c) for c in fitted[0].classes_]
        for member, model in zip(members[1:], fitted[1:]):
            if [str(c) for c in model.classes_] != first:
                raise EnsembleError(f"{member['model']} v{member['version']} predicts classes "
                                    f"{[str(c) for c in model.classes_]}, the first member {first}")


def combiner(members: list[dict], method: str, final: object | None) -> dict:
    """What the ensemble's own artifact holds: the method, the members it was built from, the final estimator."""
    return {"combine": method, "weights": [m["weight"] for m in members],
            "members": [pinned(m) for m in members], "final": final}


def pinned(member: dict) -> str:
    """MODEL@VERSION:SHA256 — a member as the combiner binds it."""
    return f"{member['model']}@{member['version']}:{member['artifact_sha256']}"



def load_servable(trained: dict, load: Callable[[str, str], object]) -> object:
    """What serves a ModelTrained: its pipeline, or for an ensemble its combiner with its members — every artifact
    through `load(uri, sha256)`, which hash-checks (ArtifactStore.load, or a cache in front of it). A combiner
    that names other members than the record is refused like an altered artifact."""
    loaded = load(trained["artifact_uri"], trained["artifact_sha256"])
    members = trained.get("members") or []
    if not members:
        return loaded
    if (not isinstance(loaded, dict) or loaded.get("members") != [pinned(m) for m in members]
            or loaded.get("combine") not in COMBINE):
        raise ArtifactRefused(f"the combiner of {trained['model']} v{trained['version']} does not name the "
                              f"members its record names: refused")
    fitted = [load(m["artifact_uri"], m["artifact_sha256"]) for m in members]
    return Ensemble(members, fitted, loaded["combine"], loaded.get("final"))
