"""Data to deployed model: from `data publish` of a new batch to the deployment of the version trained on
it (auto-approved by policy), minus the training itself (fits and importances) — what the event-driven hand-offs cost
(validator → trainer → registry → deployer). Times are the events' own (same clock, one machine)."""
from __future__ import annotations

from pathlib import Path

from services.bus import Publisher
from services.adapters import publish_batch
from tests.chaos.harness import Brokers, Stage, deploy_model
from tests.support.polling import wait_until
from tests.support.datasets import good, write

from .figures import Figure, Runs, absolute


def one_release(stage: Stage, seed: int, version: int) -> tuple[float, float]:
    """(overhead s, training s) of the release of `version` from a new batch."""
    batch = publish_batch(stage.bus, "breast_cancer", write(good(rows=400, seed=seed), stage.workdir / f"{seed}.csv"),
                          "bench", Publisher(stage.bus, "bench"))
    deployed = wait_until(lambda: [d for d in stage.values("deployments") if d["version"] == version
                                   and d["phase"] in ("started", "completed")], 300, f"v{version} deployed")[0]
    trained = next(t for t in stage.values("models.trained") if t["version"] == version)
    # The trainer's own work, not a hand-off: the fits, their cross-validation and the chosen model's
    # permutation importances (ModelTrained.duration_ms; the runs' durations cover the fits alone).
    fit_s = trained["duration_ms"] / 1000
    total_s = (deployed["changed_at"] - batch["published_at"]).total_seconds()
    if deployed["phase"] == "started":
        # A canary waits for live traffic to advance, and a new version is refused while one is in progress:
        # roll it back (to the champion) so the next release starts from the same place.
        result = stage.cli("rollback", deployed["model"], "--reason", "bench: next release", person="olga")
        if result.returncode != 0:
            raise RuntimeError(f"mlbus rollback failed: {result.stderr}")
        wait_until(lambda: [d for d in stage.values("deployments") if d["deployment_id"] == deployed["deployment_id"]
                            and d["phase"] == "rolled-back"], 120, f"the canary of v{version} rolled back")
    return total_s - fit_s, fit_s


def benchmarks(workdir: Path, quick: bool, counted: int) -> list[Figure]:
    with Brokers(workdir / "kafka") as brokers:
        stage = Stage(brokers, workdir / "release")
        with stage.running():
            deploy_model(stage, keep_running=True)                        # v1: start-up, warm-up
            releases = [one_release(stage, 100 + k, k + 2) for k in range(counted)]
    overhead = Runs(tuple(o for o, _ in releases))
    return [absolute("data → deployed: orchestration overhead", overhead, "s", "≤ 2 s", overhead.median <= 2,
                     notes=f"training time (subtracted: fits, cross-validation, permutation importances) "
                           f"{sorted(round(f, 2) for _, f in releases)} s; validator, trainer, "
                           "registry (policy auto-approval), deployer (canary start) as processes")]
