"""A spec is judged when defined (CLI) and when it arrives (trainer): the estimator's own parameter checks."""
import json

import pytest

from services.domain.estimators import spec_problem


def spec(**changes):
    return {"model": "m", "dataset": "d", "target": "y", "features": ["a", "b"], "task": "classification",
            "estimator": "LogisticRegression", "metric": "accuracy", "test_size": 0.25, "cv_folds": 5,
            "hyperparameters_json": "{}", "grid_json": "{}", **changes}


def test_a_sound_spec_has_no_problem():
    assert spec_problem(spec(hyperparameters_json=json.dumps({"C": 0.5}),
                             grid_json=json.dumps({"max_iter": [100, 200]}))) is None


@pytest.mark.parametrize("changes, says", [
    ({"hyperparameters_json": json.dumps({"C": -1})}, "'C' parameter"),
    ({"hyperparameters_json": json.dumps({"no_such": 1})}, "no_such"),
    ({"grid_json": json.dumps({"max_iter": [100, "many"]})}, "max_iter"),
    ({"hyperparameters_json": "[1, 2]"}, "unusable"),
    ({"test_size": 1.5}, "test_size"),
    ({"cv_folds": 1}, "cv_folds"),
    ({"estimator": "os.system"}, "not allowed"),
    ({"features": []}, "non-empty"),
    ({"features": ["a", "y"]}, "without the target"),
])
def test_a_spec_the_estimator_would_reject_is_refused_with_the_reason(changes, says):
    problem = spec_problem(spec(**changes))
    assert problem is not None and says in problem


def test_a_grid_of_more_points_than_a_spec_may_ask_for_is_refused_before_they_are_made():
    from services.domain.estimators import MAX_GRID_POINTS, EstimatorError, candidates
    grid = json.dumps({"C": list(range(1000)), "max_iter": list(range(1000))})       # a million runs
    with pytest.raises(EstimatorError, match=f"1,000,000 points, more than {MAX_GRID_POINTS}"):
        candidates({"hyperparameters_json": "{}", "grid_json": grid})
