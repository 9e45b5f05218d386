"""The validator's pure decisions on small frames."""
import json
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.bus.settings import PROJECT_ROOT
from services.validator.checks import key_repeats, run_checks
from services.validator.contract import ContractError, parse_contract
from services.validator.decide import validate_batch
from services.adapters import DataFileError
from services.bus.records import DataBatch
from tests.support.datasets import good, with_defect

CONTRACT = parse_contract(json.loads((PROJECT_ROOT / "schemas/datasets/breast_cancer.avsc").read_text()))
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)
BATCH = DataBatch(batch_id="b1", dataset="breast_cancer", uri="file:///x.csv", sha256="00", rows=200, size_bytes=1,
                  format="csv", publisher="test", published_at=NOW)


def checks_of(frame):
    failures, warnings, _ = run_checks(frame, CONTRACT)
    return {(f["check"], f["column"]) for f in failures}, failures, warnings


def test_a_good_batch_passes_with_a_profile_of_every_column():
    event = validate_batch(BATCH, CONTRACT, good(), NOW)
    assert event.value["passed"] and event.value["failures"] == []
    profile = {p["name"]: p for p in event.value["profile"]}
    assert set(profile) == set(CONTRACT.columns)
    radius = profile["mean_radius"]
    assert radius["kind"] == "numeric" and radius["count"] == 200 and len(radius["histogram_counts"]) == 20
    assert sum(radius["histogram_counts"]) == 200 and radius["quantiles"]["p50"] > 0
    assert set(profile["diagnosis"]["categories"]) == {"malignant", "benign"}


@pytest.mark.parametrize("kind, expected", [
    ("duplicate_keys", ("duplicate_keys", "id")), ("missing", ("missing", "mean_radius")),
    ("range", ("range", "mean_radius")), ("type", ("type", "mean_texture")),
    ("schema", ("schema", "mean_area")), ("allowed", ("allowed", "diagnosis"))])
def test_each_defect_is_reported_with_column_count_and_examples(kind, expected):
    found, failures, _ = checks_of(with_defect(kind))
    assert expected in found
    [failure] = [f for f in failures if (f["check"], f["column"]) == expected]
    assert failure["count"] > 0 and failure["message"]
    if kind != "schema":
        assert failure["examples"] and len(failure["examples"]) <= 5


def test_duplicate_rows_are_a_warning_by_default():
    frame = good()
    frame = pd.concat([frame, frame.iloc[:3]], ignore_index=True)
    found, failures, warnings = checks_of(frame)
    assert ("duplicate_rows", None) in {(w["check"], w["column"]) for w in warnings}
    assert ("duplicate_keys", "id") in found          # the same rows repeat their keys too


def test_duplicate_rows_found_through_repeated_keys_are_exactly_the_repeated_rows():
    frame = good()
    frame = pd.concat([frame, frame.iloc[:3]], ignore_index=True)
    frame.loc[frame.index[-1], "mean_radius"] += 1.0          # same key, another row: a key repeat only
    _, _, warnings = checks_of(frame)
    [rows] = [w for w in warnings if w["check"] == "duplicate_rows"]
    assert rows["count"] == int(frame.duplicated().sum()) == 2


def test_outlier_warnings_can_be_switched_off():
    schema = json.loads((PROJECT_ROOT / "schemas/datasets/breast_cancer.avsc").read_text())
    schema["mlbus.contract"]["outliers"] = {"method": "none"}
    frame = good()
    frame.loc[0, "mean_area"] = frame["mean_area"].median() * 40
    _, warnings, _ = run_checks(frame, parse_contract(schema))
    assert not [w for w in warnings if w["check"] == "outliers"]
    schema["mlbus.contract"]["outliers"] = {"method": "zscore"}
    with pytest.raises(ContractError, match="robust_z, iqr or none"):
        parse_contract(schema)


def test_outliers_are_warnings_with_the_configured_threshold():
    frame = good()
    frame.loc[0, "mean_area"] = frame["mean_area"].median() * 40
    _, _, warnings = checks_of(frame)
    [outlier] = [w for w in warnings if w["check"] == "outliers" and w["column"] == "mean_area"]
    assert 0 in outlier["examples"] and "robust_z > 6.0" in outlier["message"]


def test_an_empty_file_fails_as_empty():
    found, _, _ = checks_of(pd.DataFrame())
    assert found == {("empty", None)}


def test_too_few_rows_fail_the_row_count():
    found, _, _ = checks_of(good(rows=10))
    assert ("rows", None) in found


def test_file_problems_and_unknown_datasets_fail_with_their_reason():
    unreadable = validate_batch(BATCH, CONTRACT, DataFileError("file", "not readable as csv"), NOW)
    mismatch = validate_batch(BATCH, CONTRACT, DataFileError("sha256", "sha256 differs"), NOW)
    unknown = validate_batch(replace(BATCH, dataset="nope"), None, None, NOW)
    assert [f["check"] for f in unreadable.value["failures"]] == ["file"]
    assert [f["check"] for f in mismatch.value["failures"]] == ["sha256"]
    assert unknown.value["failures"][0]["check"] == "contract" and "no contract" in unknown.value["failures"][0]["message"]
    assert not any(e.value["passed"] for e in (unreadable, mismatch, unknown))


def test_the_validation_id_derives_from_the_batch():
    assert validate_batch(BATCH, CONTRACT, good(), NOW).id == validate_batch(BATCH, CONTRACT, good(), NOW).id


def test_a_contract_naming_an_unknown_key_is_refused():
    with pytest.raises(ContractError, match="does not define"):
        parse_contract({"name": "x", "mlbus.contract": {"keys": ["nope"]}, "fields": [{"name": "a", "type": "long"}]})


def test_key_repeats_agree_with_pandas_duplicated_including_missing_keys():
    rng = np.random.default_rng(3)
    for values in (rng.integers(0, 50, 300).astype(float), np.array([np.nan, 1.0, np.nan, 1.0, 2.0]),
                   rng.choice(["a", "b", None], 200)):
        frame = pd.DataFrame({"id": values})
        repeated, shares = key_repeats(frame, ["id"])
        assert (repeated == frame.duplicated(keep="first").to_numpy()).all()
        assert (shares == frame.duplicated(keep=False).to_numpy()).all()
