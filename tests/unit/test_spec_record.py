"""Model spec YAML → ModelSpecDefined, as `mlbus models define` does it."""
import json

import pytest

from services.bus.codec import SchemaCatalogue
from services.bus.errors import BadInput
from services.bus.settings import PROJECT_ROOT
from services.cli.inputs import load_yaml
from services.cli.models_cmd import spec_record

CONTRACTS = PROJECT_ROOT / "schemas" / "datasets"
EXAMPLE = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"


def test_the_example_spec_becomes_a_valid_record_with_all_features():
    value = spec_record(load_yaml(EXAMPLE), "cli:dana", CONTRACTS)
    assert len(value["features"]) == 30 and "id" not in value["features"] and "diagnosis" not in value["features"]
    assert value["grid_json"] == '{"C": [0.1, 1.0]}' and value["seed"] == 7
    SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas").encode("mlbus.ModelSpecDefined", value, check=True)


@pytest.mark.parametrize("change, message", [
    ({"estimator": "SVC"}, "not allowed"), ({"metric": "rmse"}, "does not fit classification"),
    ({"task": "regression"}, "classification estimator")])
def test_a_spec_outside_the_allowlist_is_refused(change, message):
    with pytest.raises(BadInput, match=message):
        spec_record({**load_yaml(EXAMPLE), **change}, "cli:dana", CONTRACTS)


def test_a_spec_missing_fields_names_them(tmp_path):
    with pytest.raises(BadInput, match="lacks dataset, target"):
        spec_record({"model": "m", "features": [], "task": "classification", "estimator": "LogisticRegression",
                     "metric": "f1"}, "x", CONTRACTS)
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(BadInput, match="YAML mapping"):
        load_yaml(path)


def churn_contract(folder):
    """A dataset of label rows: a customer (its key), when, a number and the label."""
    fields = [{"name": "customer", "type": "string"}, {"name": "at", "type": "long"},
              {"name": "tenure", "type": "double"}, {"name": "churned", "type": "int"}]
    (folder / "churn.avsc").write_text(json.dumps({"type": "record", "name": "churn", "fields": fields,
                                                   "mlbus.contract": {"keys": ["customer"], "target": "churned"}}))
    return folder


CHURN = {"model": "churn_lr", "dataset": "churn", "target": "churned", "task": "classification",
         "estimator": "LogisticRegression", "metric": "accuracy",
         "feature_views": {"views": ["purchases", "visits"], "entity": "customer", "time": "at"}}


def test_feature_views_become_the_record_s_json_and_their_columns_are_not_features(tmp_path):
    contracts = churn_contract(tmp_path)
    value = spec_record({**CHURN, "features": "all"}, "cli:dana", contracts)
    assert json.loads(value["feature_views_json"]) == CHURN["feature_views"] and value["features"] == ["tenure"]
    assert spec_record(CHURN, "cli:dana", contracts)["features"] == []         # the views' features only
    SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas").encode("mlbus.ModelSpecDefined", value, check=True)
    assert spec_record(load_yaml(EXAMPLE), "cli:dana", CONTRACTS)["feature_views_json"] is None


@pytest.mark.parametrize("views, message", [
    ({"views": ["purchases"], "entity": "customer", "time": "when"}, "when not a column of the contract"),
    ({"views": ["purchases"], "entity": "client", "time": "at"}, "client not a column"),
    ({"views": ["no/such"], "entity": "customer", "time": "at"}, "not a view name"),
    ({"views": ["purchases"], "entity": "customer"}, "exactly views"),
])
def test_feature_views_naming_what_is_not_there_are_refused(tmp_path, views, message):
    with pytest.raises(BadInput, match=message):
        spec_record({**CHURN, "feature_views": views}, "cli:dana", churn_contract(tmp_path))
