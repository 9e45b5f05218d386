"""Batch scoring: `mlbus score MODEL --batch FILE` over 1,000,000 rows (the whole command: start-up, reading
the Parquet snapshot, the hash-checked artifact, shaping, predicting, writing the predictions' snapshot,
publishing the signed record) beside its ceiling measured in the same run: in-process `predict_proba` of the
same artifact on the same rows, already in memory."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from services.bus.settings import PROJECT_ROOT
from services.domain import predict, snapshot_frame
from services.adapters import ArtifactStore
from tests.chaos.harness import Brokers, Stage, deploy_model
from tests.support.datasets import good

from .figures import Figure, Runs, compare


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    rows = 50_000 if quick else 1_000_000
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir / "batch")
        with stage.running():
            deployed = deploy_model(stage)                   # the breast-cancer model, approved by its policy
            trained = next(t for t in stage.values("models.trained") if t["version"] == deployed["version"])
            frame = good(rows=rows, seed=3)
            path = workdir / f"rows-{rows}.parquet"
            frame.to_parquet(path, index=False)
            identity = stage._cli.identity("dana")

            def command() -> float:
                started = time.perf_counter()
                result = subprocess.run([sys.executable, "-m", "services.cli.main", "score", trained["model"],
                                         "--batch", str(path)], env={**stage.env, "MLBUS_IDENTITY": str(identity)},
                                        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
                if result.returncode != 0:
                    raise RuntimeError(f"mlbus score failed: {result.stderr[-2000:]}")
                return rows / (time.perf_counter() - started)

            model = ArtifactStore.from_settings(stage.bus.settings).load(trained["artifact_uri"],
                                                                         trained["artifact_sha256"])
            inputs = snapshot_frame(frame, trained["features"], trained["categorical_features"])

            def in_process() -> float:
                started = time.perf_counter()
                predict(model, inputs, trained["task"])
                return rows / (time.perf_counter() - started)

            command(), in_process()                                                  # warm-up
            ours = Runs(tuple(command() for _ in range(counted)))
            ceiling = Runs(tuple(in_process() for _ in range(counted)))
    return [compare(f"batch scoring {rows:,} rows", ours, "rows/s", "in-process predict_proba, rows in memory",
                    ceiling, notes=f"`mlbus score {trained['model']} --batch FILE.parquet` ({trained['estimator']}), "
                                   "the whole command: start-up, snapshot read, artifact hash-checked, predictions "
                                   "written as Parquet, the signed record published")]
