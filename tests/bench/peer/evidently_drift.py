"""Peer: Evidently's data-drift report on the same frames (reference.npy, current.npy: float matrices).
Prints {"seconds": [...], "drifted": [...]} — the column names Evidently calls drifted."""
import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

folder, runs = sys.argv[1], int(sys.argv[2])
columns = [f"f{i:02d}" for i in range(np.load(f"{folder}/reference.npy", mmap_mode="r").shape[1])]
reference = pd.DataFrame(np.load(f"{folder}/reference.npy"), columns=columns)
current = pd.DataFrame(np.load(f"{folder}/current.npy"), columns=columns)
seconds, drifted = [], []
for _ in range(runs):
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    result = snapshot.dict()
    seconds.append(time.perf_counter() - started)
    drifted = sorted(m["config"]["column"] for m in result["metrics"]
                     if m["config"]["type"].endswith("ValueDrift") and m["value"] > m["config"]["threshold"])
print(json.dumps({"seconds": seconds, "drifted": drifted}))
