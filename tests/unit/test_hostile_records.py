"""Hostile but schema-valid records (tests/support/hostile.py) against the edge checks and the pure cores:
every one encodes, and nothing but the documented refusal comes out of the code that first meets it."""
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.bus.context import Bus
from services.bus.errors import BadInput
from services.domain.estimators import spec_problem
from services.bus.edge import all_finite, check_record, is_edge
from services.bus.settings import PROJECT_ROOT, Settings
from services.validator.adapters import ContractFiles
from services.validator.contract import ContractError
from tests.support.hostile import examples, records_for, strategy_for

BUS = Bus.from_settings(Settings.from_env({}))
CONSUMED = sorted(t.name for t in BUS.catalogue if t.schema and t.consumers)


@pytest.mark.parametrize("topic", CONSUMED)
def test_hostile_records_encode_and_the_edge_either_passes_or_names_a_field(topic):
    edge = is_edge(BUS.catalogue[topic])
    for record, value in records_for(BUS, topic, 30, seed_value=1):
        payload = BUS.schemas.encode(record, value)
        decoded_record, decoded = BUS.schemas.decode(payload)
        assert decoded_record == record
        try:
            check_record(record, decoded, edge)
        except BadInput as refusal:
            assert "field" in str(refusal)


def test_a_hostile_spec_is_judged_never_raised():
    for value in examples(strategy_for(BUS.schemas.schema("mlbus.ModelSpecDefined").parsed), 150, 2):
        problem = spec_problem(value)
        assert problem is None or isinstance(problem, str)


def test_a_hostile_dataset_name_is_a_contract_error_or_no_contract():
    contracts = ContractFiles(PROJECT_ROOT / "schemas" / "datasets")
    for value in examples(strategy_for(BUS.schemas.schema("mlbus.DataBatch").parsed), 100, 3):
        try:
            assert contracts(value["dataset"]) is None or value["dataset"] == "breast_cancer"
        except ContractError:
            pass


def test_times_are_timezone_aware_and_within_what_avro_millis_hold():
    for value in examples(strategy_for({"type": "long", "logicalType": "timestamp-millis"}), 20):
        assert value.tzinfo is timezone.utc and value > datetime(1970, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, says", [("not json", "is not JSON"), ('"a string"', "must be a JSON object or array"),
                                        ("42", "must be a JSON object or array")])
def test_a_json_field_that_is_not_a_json_object_is_refused_by_name(text, says):
    value = {"model": "m", "fairness_json": text}
    with pytest.raises(BadInput, match=f"'mlbus.ModelTrained.fairness_json' {says}"):
        check_record("mlbus.ModelTrained", value, edge=False)
    check_record("mlbus.ModelTrained", {**value, "fairness_json": '{"sex": {}}'}, edge=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(), st.floats(min_value=1e307), st.floats(max_value=-1e307), st.integers(),
                          st.booleans(), st.text("abcé ", max_size=3), st.none()), max_size=30))
def test_all_finite_is_a_finite_test_of_every_float(values):
    assert all_finite(values) == all(not isinstance(v, float) or math.isfinite(v) for v in values)
    features = {f"f{i}": v for i, v in enumerate(values)}
    if all_finite(values):
        check_record("mlbus.InferenceRequest", {"features": features}, edge=True)
    else:
        with pytest.raises(BadInput, match="numbers must be finite"):
            check_record("mlbus.InferenceRequest", {"features": features}, edge=True)
