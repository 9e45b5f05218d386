"""Sample datasets that ship offline with scikit-learn, shaped as mlbus batches (an id key column,
snake_case features, a string target), so the platform can be tried without data of one's own."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DATASETS = ("breast_cancer",)


def breast_cancer(rows: int | None = None, seed: int = 0, offset: int = 0) -> pd.DataFrame:
    """Wisconsin breast cancer (569 rows, 30 numeric features, target `diagnosis`: malignant | benign).
    rows > 569 resamples with small Gaussian jitter (2 % of each feature's std); ids start at offset."""
    import numpy as np                                   # loaded here: the CLI starts without them
    from sklearn.datasets import load_breast_cancer
    raw = load_breast_cancer(as_frame=True)
    features = raw.data.rename(columns=lambda c: re.sub(r"\W+", "_", c.strip()).lower())
    labels = raw.target.map({0: "malignant", 1: "benign"})
    rng = np.random.default_rng(seed)
    count = rows or len(features)
    picks = rng.permutation(len(features))[:count] if count <= len(features) else rng.integers(0, len(features), count)
    frame = features.iloc[picks].reset_index(drop=True)
    if count > len(features):
        jitter = rng.normal(0.0, 0.02, size=frame.shape) * features.std().to_numpy()
        frame = (frame + jitter).clip(lower=0.0)
    frame.insert(0, "id", np.arange(offset, offset + count, dtype=np.int64))
    frame["diagnosis"] = labels.iloc[picks].to_numpy()
    return frame


def sample(name: str, rows: int | None = None, seed: int = 0, offset: int = 0) -> pd.DataFrame:
    if name != "breast_cancer":
        raise ValueError(f"unknown sample dataset {name!r}; available: {', '.join(DATASETS)}")
    return breast_cancer(rows, seed, offset)
