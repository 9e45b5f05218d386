"""Peers: pandera and Great Expectations running the validator's checks on the same frame (frame.parquet):
types, missing share per column ≤ 2 %, value ranges, allowed categories, unique key.
Prints {"pandera": {"seconds": [...], "findings": [[check, column], ...]}, "great_expectations": {...}}."""
import json
import sys
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")
folder, runs, which = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
frame = pd.read_parquet(f"{folder}/frame.parquet")
rules = json.loads(open(f"{folder}/rules.json").read())   # {"numeric": {col: [min, max]}, "max_missing", "allowed", "key"}


def with_pandera():
    import pandera.pandas as pa

    def missing_share(series):
        return series.isna().mean() <= rules["max_missing"]

    columns = {rules["key"]: pa.Column(int, unique=True)}
    for column, (low, high) in rules["numeric"].items():
        columns[column] = pa.Column(float, [pa.Check.in_range(low, high, name="range"),
                                            pa.Check(missing_share, element_wise=False, ignore_na=False,
                                                     name="missing")], nullable=True)
    for column, allowed in rules["allowed"].items():
        columns[column] = pa.Column(str, pa.Check.isin(allowed, name="allowed"))
    schema = pa.DataFrameSchema(columns)
    try:
        schema.validate(frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        found = set()
        for _, case in cases.iterrows():
            check = str(case["check"])
            kind = ("duplicate_keys" if "unique" in check or "duplicate" in check else "range" if "range" in check
                    else "missing" if "missing" in check else "allowed" if "isin" in check else check)
            found.add((kind, case["column"]))
        return sorted(found)


def with_great_expectations():
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas("bench").add_dataframe_asset("frame")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))
    suite = gx.ExpectationSuite(name="contract")
    kinds = []
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeUnique(column=rules["key"]))
    kinds.append(("duplicate_keys", rules["key"]))
    for column, (low, high) in rules["numeric"].items():
        suite.add_expectation(gx.expectations.ExpectColumnValuesToBeOfType(column=column, type_="float64"))
        kinds.append(("type", column))
        suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high))
        kinds.append(("range", column))
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=column,
                                                                            mostly=1 - rules["max_missing"]))
        kinds.append(("missing", column))
    for column, allowed in rules["allowed"].items():
        suite.add_expectation(gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=allowed))
        kinds.append(("allowed", column))
    suite = context.suites.add(suite)
    result = batch.validate(suite)
    found = set()
    for outcome in result.results:
        if not outcome.success:
            column = outcome.expectation_config.kwargs["column"]
            kind = next(k for k, c in kinds if c == column and k in {
                "expect_column_values_to_be_unique": "duplicate_keys", "expect_column_values_to_be_between": "range",
                "expect_column_values_to_not_be_null": "missing", "expect_column_values_to_be_in_set": "allowed",
                "expect_column_values_to_be_of_type": "type"}.get(outcome.expectation_config.type, "?"))
            found.add((kind, column))
    return sorted(found)


answer = {}
for name, check in (("pandera", with_pandera), ("great_expectations", with_great_expectations)):
    if name not in which:
        continue
    seconds, findings = [], []
    for _ in range(runs):
        started = time.perf_counter()
        findings = check()
        seconds.append(time.perf_counter() - started)
    answer[name] = {"seconds": seconds, "findings": [list(f) for f in findings]}
print(json.dumps(answer))
