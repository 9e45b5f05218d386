"""Random forests answered in compiled code (services/native Forest). scikit-learn's predict_proba walks every
tree in Python-driven steps: ~4–5 ms for 100 trees whatever the number of rows, which a request at 1,000/s
waits for. The compiled walk takes the trees' own arrays and does what scikit-learn does — features as float32,
`x <= threshold` goes left, the leaves' probabilities summed tree after tree and divided by their number — so
its probabilities are bit-for-bit predict_proba's. That is checked when the model loads, on probe rows made
from the trees' own thresholds; a forest that fails the check stays with scikit-learn, and so do rows the walk
does not take (a value not finite as float32, columns not the ones it was fitted on)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from .compiled import native

FORESTS = (RandomForestClassifier, ExtraTreesClassifier)     # ForestClassifier.predict_proba, one output
PROBE_ROWS = 256


class CompiledForest:
    """Stands in for a fitted forest, or a pipeline that ends in one, where the scorer calls predict_proba."""

    def __init__(self, model, forest, walk):
        self.model = model
        self.prepare = model[:-1] if isinstance(model, Pipeline) else None
        self.forest = forest
        self.walk = walk
        self.classes_ = model.classes_

    def predict_proba(self, features) -> np.ndarray:
        prepared = self.prepare.transform(features) if self.prepare is not None else features
        if isinstance(prepared, pd.DataFrame) and hasattr(self.forest, "feature_names_in_") and \
                list(prepared.columns) != list(self.forest.feature_names_in_):
            return self.model.predict_proba(features)        # scikit-learn names the columns it misses
        try:
            with np.errstate(over="ignore", invalid="ignore"):     # too large for float32: not taken, below
                rows = np.ascontiguousarray(prepared, dtype=np.float32)     # as scikit-learn's forests take them
        except (TypeError, ValueError):
            return self.model.predict_proba(features)
        if rows.ndim != 2 or rows.shape[1] != self.forest.n_features_in_ or not len(rows):
            return self.model.predict_proba(features)
        answer = self.walk.predict_proba(rows.tobytes())
        if answer is None:
            return self.model.predict_proba(features)
        return np.frombuffer(answer, dtype=np.float64).reshape(len(rows), len(self.classes_)).copy()


def compiled_forest(model) -> object:
    """The model, or where it is a forest classifier (alone or at the end of a pipeline) a CompiledForest that
    answers as it does — the same probabilities on every probe row, or the model itself."""
    forest = model[-1] if isinstance(model, Pipeline) else model
    if native is None or type(forest) not in FORESTS or getattr(forest, "n_outputs_", 0) != 1:
        return model
    try:
        walk = native.Forest(forest.n_features_in_, len(forest.classes_), [
            (t.children_left.tolist(), t.children_right.tolist(), t.feature.tolist(), t.threshold.tolist(),
             np.ascontiguousarray(t.value[:, 0, :len(forest.classes_)], dtype=np.float64).ravel().tolist())
            for t in (tree.tree_ for tree in forest.estimators_)])
    except ValueError:
        return model
    probes = probe_rows(forest)
    answer = walk.predict_proba(probes.tobytes())
    named = hasattr(forest, "feature_names_in_")
    expected = forest.predict_proba(pd.DataFrame(probes, columns=forest.feature_names_in_) if named else probes)
    if answer is None or not np.array_equal(np.frombuffer(answer, dtype=np.float64).reshape(expected.shape), expected):
        return model
    return CompiledForest(model, forest, walk)


def probe_rows(forest) -> np.ndarray:
    """Rows whose values sit on, just below and just above the trees' thresholds (and between): every branch
    of the comparison the walk must take as scikit-learn does."""
    rng = np.random.default_rng(0)
    columns = []
    for feature in range(forest.n_features_in_):
        thresholds = np.concatenate([t.tree_.threshold[t.tree_.feature == feature] for t in forest.estimators_])
        if not len(thresholds):
            thresholds = np.zeros(1)
        picked = rng.choice(thresholds, PROBE_ROWS)
        nudged = (picked * (1 + rng.choice([-1e-7, 0.0, 0.0, 1e-7], PROBE_ROWS))
                  + rng.choice([-1e-6, 0, 1e-6], PROBE_ROWS))
        columns.append(np.where(rng.random(PROBE_ROWS) < 0.2, rng.normal(0, 3, PROBE_ROWS), nudged))
    return np.ascontiguousarray(np.column_stack(columns), dtype=np.float32)
