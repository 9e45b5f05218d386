"""Validation: the validator's checks (services/validator/checks.py: types, missing share, ranges, allowed
values, unique keys, and duplicate rows as a warning) on a 20-column frame with planted defects, against
pandera and Great Expectations running the same failure checks; the same findings are required. The
validator's optional robust-z outlier warnings (on by default in contracts) are timed apart."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from services.validator.checks import run_checks
from services.validator.contract import parse_contract

from . import peers
from .figures import Figure, Runs, compare, measure

NUMERIC = [f"c{i:02d}" for i in range(1, 19)]
LOW, HIGH, MAX_MISSING = -10.0, 10.0, 0.02


def contract_schema(outliers: str = "none") -> dict:
    fields = [{"name": "id", "type": "long"}]
    fields += [{"name": c, "type": ["null", "double"], "mlbus.max_missing": MAX_MISSING, "mlbus.min": LOW,
                "mlbus.max": HIGH} for c in NUMERIC]
    fields.append({"name": "segment", "type": "string", "mlbus.allowed": ["a", "b", "c"]})
    return {"type": "record", "name": "bench", "namespace": "mlbus.datasets", "fields": fields,
            "mlbus.contract": {"version": 1, "keys": ["id"], "min_rows": 10, "max_rows": 100_000_000,
                               "duplicate_rows": "warn", "outliers": {"method": outliers, "threshold": 6.0}}}


def frame_with_defects(rows: int, seed: int = 0) -> pd.DataFrame:
    """Planted: c03 out of range, c05 missing 5 %, segment with an unknown value, repeated ids."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(0, 1.5, (rows, len(NUMERIC))), columns=NUMERIC)
    frame.insert(0, "id", np.arange(rows, dtype=np.int64))
    frame["segment"] = rng.choice(["a", "b", "c"], rows)
    frame.loc[frame.index[7:12], "c03"] = 25.0
    frame.loc[frame.index[rng.choice(rows, rows // 20, replace=False)], "c05"] = np.nan
    frame.loc[frame.index[100:103], "segment"] = "z"
    frame.loc[frame.index[200:210], "id"] = frame["id"].iloc[0:10].to_numpy()
    return frame


PLANTED = sorted([("range", "c03"), ("missing", "c05"), ("allowed", "segment"), ("duplicate_keys", "id")])


def mlbus_findings(frame: pd.DataFrame, contract) -> list[tuple[str, str]]:
    failures, _, _ = run_checks(frame, contract)
    return sorted({(f["check"], f["column"]) for f in failures})


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    rows = 100_000 if quick else 1_000_000
    frame = frame_with_defects(rows)
    contract = parse_contract(contract_schema())
    found = {}

    def ours() -> float:
        started = time.perf_counter()
        found["mlbus"] = mlbus_findings(frame, contract)
        return time.perf_counter() - started

    ours_runs = measure(ours, counted)
    with_outliers = parse_contract(contract_schema("robust_z"))
    started = time.perf_counter()
    mlbus_findings(frame, with_outliers)
    outliers_s = time.perf_counter() - started
    folder = workdir
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "frame.parquet", index=False)
    (folder / "rules.json").write_text(json.dumps({
        "numeric": {c: [LOW, HIGH] for c in NUMERIC}, "max_missing": MAX_MISSING, "allowed": {"segment": ["a", "b", "c"]},
        "key": "id"}))
    answer = peers.run("validation_peers.py", str(folder), str(counted + 1), "pandera,great_expectations")
    figures = []
    for peer, label, goal in (("pandera", "pandera 0.x", 1.5), ("great_expectations", "Great Expectations 1.x", 20)):
        theirs = Runs(tuple(answer[peer]["seconds"][1:]))
        findings = sorted(tuple(f) for f in answer[peer]["findings"])
        same = found["mlbus"] == findings == PLANTED
        figures.append(compare(f"validation {rows:,} × 20 vs {peer}", ours_runs, "s", label, theirs,
                               higher_is_better=False, goal_ratio=goal if same else float("inf"),
                               goal=f"≥ {goal}× {label.split()[0]}, same findings",
                               notes=f"findings: mlbus {found['mlbus']}, {peer} {findings} — "
                                     f"{'the same, as planted' if same else 'DIFFERENT'}; mlbus with robust-z "
                                     f"outlier warnings as well: {outliers_s:.2f} s"))
    return figures
