"""The compiled forest walk (services/domain/forest.py) answers bit-for-bit as scikit-learn's predict_proba, for
forests of every shape the trainer can make, alone or at the end of a pipeline; anything else, and any row it
does not take, is scikit-learn's to answer."""
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import services.domain.forest as forest_module
from services.domain import compiled_forest, predict
from services.domain.forest import CompiledForest

pytestmark = pytest.mark.skipif(forest_module.native is None, reason="services/native is not built")

FOREST_SHAPES = {
    "random forest, two classes": (lambda: RandomForestClassifier(n_estimators=30, random_state=1), 2),
    "shallow, five classes": (lambda: RandomForestClassifier(n_estimators=20, max_depth=3, random_state=2), 5),
    "no bootstrap, all features": (lambda: RandomForestClassifier(n_estimators=10, bootstrap=False, max_features=None,
                                                                  random_state=3), 3),
    "balanced class weights": (lambda: RandomForestClassifier(n_estimators=15, class_weight="balanced",
                                                              min_samples_leaf=3, random_state=4), 3),
    "extra trees": (lambda: ExtraTreesClassifier(n_estimators=25, random_state=5), 4),
}


def data(classes: int, rows: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.integers(0, 5, rows).astype(float),   # repeated values
                          "c": rng.normal(1e3, 1e2, rows), "d": rng.uniform(-1e-3, 1e-3, rows)})
    labels = np.digitize(frame["a"] + frame["b"] / 3 + rng.normal(0, 0.5, rows), np.linspace(-1, 2, classes - 1))
    return frame, np.array([f"class-{k}" for k in labels])


def rows_to_ask(frame: pd.DataFrame, model) -> pd.DataFrame:
    """Fresh rows, and rows on the forest's own thresholds (the comparison's edge)."""
    fresh, _ = data(2, rows=300, seed=9)
    forest = model[-1] if isinstance(model, Pipeline) else model
    on_edges = pd.DataFrame(forest_module.probe_rows(forest).astype(np.float64), columns=frame.columns)
    return pd.concat([fresh, on_edges], ignore_index=True)


@pytest.mark.parametrize("shape", FOREST_SHAPES, ids=FOREST_SHAPES.keys())
def test_the_compiled_walk_gives_predict_probas_bits(shape):
    make, classes = FOREST_SHAPES[shape]
    frame, labels = data(classes)
    model = make().fit(frame, labels)
    served = compiled_forest(model)
    assert isinstance(served, CompiledForest)
    asked = rows_to_ask(frame, model)
    for size in (1, 7, len(asked)):
        assert np.array_equal(served.predict_proba(asked[:size]), model.predict_proba(asked[:size]))
    ours, theirs = predict(served, asked, "classification"), predict(model, asked, "classification")
    assert (ours[0] == theirs[0]).all() and np.array_equal(ours[1], theirs[1]) and ours[2] == theirs[2]


def test_a_forest_at_the_end_of_the_trainers_pipeline_is_walked_after_its_preparation():
    frame, labels = data(3)
    frame.loc[::17, "a"] = np.nan                        # the imputer's work, before the trees
    model = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                      ("model", RandomForestClassifier(n_estimators=20, random_state=0))]).fit(frame, labels)
    served = compiled_forest(model)
    assert isinstance(served, CompiledForest)
    asked = pd.concat([frame[:50], data(3, rows=50, seed=4)[0]], ignore_index=True)
    assert np.array_equal(served.predict_proba(asked), model.predict_proba(asked))


def test_other_models_are_served_as_they_are():
    frame, labels = data(2)
    boosted = GradientBoostingClassifier(n_estimators=5).fit(frame, labels)
    regression = RandomForestRegressor(n_estimators=5).fit(frame, frame["a"])
    assert compiled_forest(boosted) is boosted and compiled_forest(regression) is regression


def test_rows_the_walk_does_not_take_are_scikit_learns_to_answer():
    frame, labels = data(2)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, labels)
    served = compiled_forest(model)
    too_large = frame[:3].assign(c=1e39)                 # finite as float64, infinite as float32
    with pytest.raises(ValueError, match="infinity or a value too large"):
        served.predict_proba(too_large)
    shuffled = frame[["b", "a", "c", "d"]][:3]           # the columns in another order
    with pytest.raises(ValueError, match="feature names"):
        served.predict_proba(shuffled)


def test_a_walk_that_disagrees_on_a_probe_is_not_used(monkeypatch):
    walk = forest_module.native.Forest

    class Disagreeing:
        def __init__(self, *args):
            self.inner = walk(*args)

        def predict_proba(self, rows):
            answer = np.frombuffer(self.inner.predict_proba(rows), dtype=np.float64).copy()
            answer[0] = np.nextafter(answer[0], 2.0)     # one bit off, on one probe
            return answer.tobytes()

    monkeypatch.setattr(forest_module, "native", type("Native", (), {"Forest": Disagreeing}))
    frame, labels = data(2)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, labels)
    assert compiled_forest(model) is model


def test_the_walk_refuses_trees_it_could_loop_in():
    with pytest.raises(ValueError, match="not a forest mlbus can walk"):
        forest_module.native.Forest(1, 2, [([0, -1], [1, -1], [0, 0], [0.5, 0.0], [0.5, 0.5, 1.0, 0.0])])
    with pytest.raises(ValueError, match="not a forest mlbus can walk"):
        forest_module.native.Forest(1, 2, [([1, -1, -1], [2, -1, -1], [3, 0, 0], [0.5] * 3, [0.5] * 6)])
