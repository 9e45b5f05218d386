"""Model spec YAML → ModelSpecDefined, as `mlbus models define` does it."""
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
