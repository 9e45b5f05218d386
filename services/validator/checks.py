"""The data checks, vectorised with pandas: a frame and its contract in, failures and warnings out."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .contract import Contract, FieldRule

EXAMPLES = 5


def finding(check: str, message: str, column: str | None = None, mask: np.ndarray | None = None,
            count: int | None = None) -> dict:
    rows = np.flatnonzero(mask) if mask is not None else np.array([], dtype=int)
    return {"check": check, "column": column, "count": int(count if count is not None else len(rows)),
            "message": message, "examples": [int(i) for i in rows[:EXAMPLES]]}


def run_checks(frame: pd.DataFrame, contract: Contract) -> tuple[list[dict], list[dict], pd.DataFrame]:
    """(failures, warnings, the frame with contract columns coerced to their types)."""
    if frame.empty or len(frame.columns) == 0:
        return [finding("empty", "the file has no rows", count=0)], [], frame
    failures = schema_findings(frame, contract)
    warnings: list[dict] = []
    typed = frame.copy(deep=False)        # pandas 3 copy-on-write: replacing a column leaves `frame` as it was
    for rule in contract.fields:
        if rule.name not in typed.columns:
            continue
        typed[rule.name], type_failures = coerce(typed[rule.name], rule)
        failures += type_failures
        failures += missing_findings(typed[rule.name], rule)
        failures += value_findings(typed[rule.name], rule)
        if rule.kind in ("integer", "numeric") and contract.outlier_method != "none":
            warnings += outlier_findings(typed[rule.name], rule, contract)
    failures += row_count_findings(len(frame), contract)
    key_failures, duplicate_findings = duplicate_checks(typed, contract)
    failures += key_failures
    (failures if contract.duplicate_rows == "fail" else warnings).extend(duplicate_findings)
    return failures, warnings, typed


def schema_findings(frame: pd.DataFrame, contract: Contract) -> list[dict]:
    present = set(frame.columns)
    found = [finding("schema", f"column {name!r} is missing", column=name, count=len(frame))
             for name in contract.columns if name not in present]
    extra = [c for c in frame.columns if c not in set(contract.columns)]
    if extra:
        found.append(finding("schema", f"columns not in the contract: {', '.join(map(str, extra))}",
                             count=len(extra)))
    return found


def coerce(column: pd.Series, rule: FieldRule) -> tuple[pd.Series, list[dict]]:
    """The column as its contract type; values that are not of that type become a 'type' failure."""
    if rule.kind == "string":
        return column.astype("string"), []
    if rule.kind == "boolean":
        mapped = column.map({True: True, False: False, "true": True, "false": False})   # 1 and 0 are True and False
        bad = (column.notna() & mapped.isna()).to_numpy()
        return mapped, ([finding("type", f"{bad.sum()} values are not booleans", rule.name, bad)] if bad.any() else [])
    if pd.api.types.is_integer_dtype(column) or (rule.kind == "numeric" and pd.api.types.is_float_dtype(column)):
        return column, []                     # already of the type: nothing to convert, nothing can be bad
    numbers = pd.to_numeric(column, errors="coerce")
    bad = (column.notna() & numbers.isna()).to_numpy()
    if rule.kind == "integer":
        bad = bad | (numbers.notna() & (numbers % 1 != 0)).to_numpy()
    if not bad.any():
        return numbers, []
    sample = column[bad].astype(str).head(3).tolist()
    return numbers.where(~bad), [finding("type", f"{int(bad.sum())} values are not {rule.kind} (e.g. {sample})",
                                         rule.name, bad)]


def missing_findings(column: pd.Series, rule: FieldRule) -> list[dict]:
    missing = column.isna().to_numpy()
    share = float(missing.mean()) if len(missing) else 0.0
    if share <= rule.max_missing:
        return []
    return [finding("missing", f"{share:.1%} missing, the contract allows {rule.max_missing:.1%}", rule.name, missing)]


def value_findings(column: pd.Series, rule: FieldRule) -> list[dict]:
    found = []
    if rule.minimum is not None or rule.maximum is not None:
        values = column.to_numpy(dtype=float, na_value=np.nan)
        low = -np.inf if rule.minimum is None else rule.minimum
        high = np.inf if rule.maximum is None else rule.maximum
        outside = (values < low) | (values > high)              # NaN (missing) compares False
        if outside.any():
            found.append(finding("range", f"{int(outside.sum())} values outside [{low}, {high}]", rule.name, outside))
    if rule.allowed is not None:
        unexpected = column.notna().to_numpy() & ~column.isin(rule.allowed).to_numpy()
        if unexpected.any():
            seen = sorted(map(str, column[unexpected].unique()[:3]))
            found.append(finding("allowed", f"{int(unexpected.sum())} values not in {list(rule.allowed)} (e.g. {seen})",
                                 rule.name, unexpected))
    return found


def outlier_findings(column: pd.Series, rule: FieldRule, contract: Contract) -> list[dict]:
    values = column.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(values)
    if finite.sum() < 3:
        return []
    if contract.outlier_method == "iqr":
        q1, q3 = np.quantile(values[finite], [0.25, 0.75])
        spread = q3 - q1
        outside = finite & ((values < q1 - contract.outlier_threshold * spread) |
                            (values > q3 + contract.outlier_threshold * spread))
    else:   # robust z-score: 0.6745 (x - median) / MAD
        median = np.median(values[finite])
        mad = np.median(np.abs(values[finite] - median))
        if mad == 0:
            return []
        outside = finite & (np.abs(0.6745 * (values - median) / mad) > contract.outlier_threshold)
    if not outside.any():
        return []
    return [finding("outliers", f"{int(outside.sum())} outliers ({contract.outlier_method} > "
                                f"{contract.outlier_threshold})", rule.name, outside)]


def row_count_findings(rows: int, contract: Contract) -> list[dict]:
    if rows < contract.min_rows:
        return [finding("rows", f"{rows} rows, the contract needs at least {contract.min_rows}", count=rows)]
    if contract.max_rows is not None and rows > contract.max_rows:
        return [finding("rows", f"{rows} rows, the contract allows at most {contract.max_rows}", count=rows)]
    return []


def duplicate_checks(frame: pd.DataFrame, contract: Contract) -> tuple[list[dict], list[dict]]:
    """(duplicate-key failures, duplicate-row findings)."""
    key_failures = []
    keys = [k for k in contract.keys if k in frame.columns]
    if keys and len(keys) == len(contract.keys):
        repeated, shares_key = key_repeats(frame, keys)
        if repeated.any():
            key_failures.append(finding("duplicate_keys", f"{int(repeated.sum())} rows repeat a key "
                                                          f"({', '.join(keys)})", ",".join(keys), repeated))
        # Equal rows have equal keys: only rows whose key repeats need comparing whole (hashing every column
        # of every row was most of the validator's time on large batches).
        rows = np.zeros(len(frame), dtype=bool)
        rows[shares_key] = frame[shares_key].duplicated(keep="first").to_numpy()
    else:
        rows = frame.duplicated(keep="first").to_numpy()
    duplicates = [finding("duplicate_rows", f"{int(rows.sum())} rows repeat an earlier row", mask=rows)] \
        if rows.any() else []
    return key_failures, duplicates


def key_repeats(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose key appeared on an earlier row, rows whose key appears more than once). One hash pass for a
    single key column: factorize numbers the keys in order of first appearance, so a row is a key's first
    exactly when its code is above every earlier code."""
    if len(keys) > 1:
        return (frame.duplicated(subset=keys, keep="first").to_numpy(),
                frame.duplicated(subset=keys, keep=False).to_numpy())
    codes, uniques = pd.factorize(frame[keys[0]], use_na_sentinel=False)      # missing keys count as one value
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return ~first, np.bincount(codes, minlength=len(uniques))[codes] > 1
