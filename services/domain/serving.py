"""Applying a version's saved pipeline, the same way online (the scorer) and offline (`mlbus score --batch`):
the input frame as training saw it, and labels with class probabilities."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MISSING_CATEGORY = "(missing)"     # what an absent category is encoded as in training (a category of its own)


def request_frame(requests: list[dict], names: list[str], categorical) -> pd.DataFrame:
    """InferenceRequests as the pipeline was fitted on them: numbers from `features`, categories (text; one never
    seen in training is the encoder's to handle) from `categories`, in the training's column order."""
    if not categorical:
        return number_frame([[r["features"][n] for n in names] for r in requests], names)
    return pd.DataFrame({n: [r["categories"][n] for r in requests] if n in categorical
                         else np.array([r["features"][n] for r in requests], dtype=float) for n in names},
                        columns=names)


def number_frame(rows: list[list[float]], names: list[str]) -> pd.DataFrame:
    """Rows of numbers (one list per request, in `names` order) as the frame a numeric pipeline was fitted on."""
    return pd.DataFrame(np.array(rows, dtype=float), columns=names)


def snapshot_frame(frame: pd.DataFrame, names: list[str], categorical) -> pd.DataFrame:
    """A data snapshot's columns as the pipeline was fitted on them (as the trainer prepared them)."""
    shaped = pd.DataFrame(index=frame.index)
    for name in names:
        shaped[name] = (frame[name].astype("string").fillna(MISSING_CATEGORY).astype(object) if name in categorical
                        else frame[name].astype(float))
    return shaped


def predict(model: Any, features: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Labels and class probabilities. A classifier's label is its most probable class: for every classifier
    mlbus allows (services/domain/estimators.py) that is what predict() returns, and one predict_proba costs
    half of predict + predict_proba (a forest walks its trees once)."""
    if task != "classification":
        return model.predict(features), None, []
    probabilities = model.predict_proba(features)
    return model.classes_[probabilities.argmax(axis=1)], probabilities, [str(c) for c in model.classes_]
