"""Invariants checked where a record enters: names are names, numbers on edge topics are finite."""
import math

import pytest

from services.bus.catalogue import load_catalogue
from services.bus.edge import InvalidField, check_name, check_record, is_edge
from services.bus.settings import PROJECT_ROOT


@pytest.mark.parametrize("name", ["../DataBatch", "/etc/passwd", "", "a/b", "x" * 200, "a..b", " iris", "iris\n"])
def test_path_like_empty_or_huge_names_are_refused_naming_the_field(name):
    with pytest.raises(InvalidField, match="DataBatch.dataset"):
        check_record("mlbus.DataBatch", {"dataset": name}, edge=True)


@pytest.mark.parametrize("name", ["iris", "breast_cancer", "credit-risk.v2", "A1"])
def test_ordinary_names_pass(name):
    check_name("model", name)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_edge_records_refuse_non_finite_numbers_at_the_top_and_in_maps(number):
    with pytest.raises(InvalidField, match="KpiObserved.value"):
        check_record("mlbus.KpiObserved", {"value": number}, edge=True)
    with pytest.raises(InvalidField, match=r"InferenceRequest.features\['x'\]"):
        check_record("mlbus.InferenceRequest", {"model": "m", "features": {"x": number}}, edge=True)


def test_records_the_services_write_may_carry_nan_metrics():
    check_record("mlbus.ModelTrained", {"model": "m", "metrics": {"roc_auc": math.nan}}, edge=False)


def test_edge_topics_are_those_people_or_applications_write():
    catalogue = load_catalogue(PROJECT_ROOT / "topics.yaml")
    edge = {t.name for t in catalogue if t.schema and is_edge(t)}
    assert {"data.batches", "inference.requests", "outcomes", "approvals", "models.specs"} <= edge
    assert "models.trained" not in edge and "audit.log" not in edge
