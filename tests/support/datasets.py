"""Good and deliberately broken data batches for the validator and trainer tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from services.cli.sample_data import breast_cancer


def good(rows: int = 200, seed: int = 0, offset: int = 0) -> pd.DataFrame:
    return breast_cancer(rows, seed, offset)


def with_defect(kind: str, rows: int = 200, seed: int | None = None) -> pd.DataFrame:
    frame = good(rows, seed=sum(map(ord, kind)) if seed is None else seed)
    if kind == "duplicate_keys":
        frame.loc[5:9, "id"] = frame.loc[0:4, "id"].to_numpy()
    elif kind == "missing":
        frame.loc[frame.index[:20], "mean_radius"] = np.nan
    elif kind == "range":
        frame.loc[3:6, "mean_radius"] = -5.0
    elif kind == "type":
        frame["mean_texture"] = frame["mean_texture"].astype(object)
        frame.loc[2:4, "mean_texture"] = "abc"
    elif kind == "schema":
        frame = frame.drop(columns=["mean_area"])
    elif kind == "allowed":
        frame.loc[0:2, "diagnosis"] = "unsure"
    else:
        raise ValueError(kind)
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return path
