"""Column profiles (mlbus.ColumnProfile): the validator's report and the drift baseline of a model."""
from __future__ import annotations

import numpy as np
import pandas as pd

QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
HISTOGRAM_BINS = 20
MAX_CATEGORIES = 100
REFERENCE_SAMPLE = 1000        # drift tests compare production with up to this many training values a column
REFERENCE_SAMPLE_BUDGET = 60_000   # values in all columns together: a wide profile stays well under 1 MB


def profile_frame(frame: pd.DataFrame, reference: bool = False) -> list[dict]:
    """Profiles of every column; reference=True keeps a sample of the values (a model's drift baseline)."""
    size = min(REFERENCE_SAMPLE, max(100, REFERENCE_SAMPLE_BUDGET // max(1, frame.shape[1]))) if reference else 0
    return [profile_column(name, frame[name], size) for name in frame.columns]


def profile_column(name: str, column: pd.Series, sample_size: int = 0) -> dict:
    missing = int(column.isna().sum())
    present = column.dropna()
    base = {"name": str(name), "count": int(len(present)), "missing": missing, "mean": None, "std": None,
            "min": None, "max": None, "quantiles": {}, "histogram_edges": [], "histogram_counts": [],
            "categories": {}, "sample": []}
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        counts = present.astype(str).value_counts().head(MAX_CATEGORIES)
        return {**base, "kind": "categorical", "categories": {str(k): int(v) for k, v in counts.items()}}
    values = present.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {**base, "kind": "numeric"}
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    quantiles = np.quantile(values, list(QUANTILES.values()))
    return {**base, "kind": "numeric", "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
            else 0.0, "min": float(values.min()), "max": float(values.max()),
            "quantiles": {k: float(q) for k, q in zip(QUANTILES, quantiles)},
            "histogram_edges": edges.tolist(), "histogram_counts": counts.astype(int).tolist(),
            "sample": reference_sample(values, sample_size)}


def reference_sample(values: np.ndarray, size: int) -> list[float]:
    """All values when they fit, else a seeded sample (the same data gives the same sample); sorted."""
    if len(values) > size:
        values = np.random.default_rng(0).choice(values, size=size, replace=False)
    return np.sort(values).tolist()
