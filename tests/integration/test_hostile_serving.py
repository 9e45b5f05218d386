"""The scorer meets artifacts it cannot load — a directory, bytes that are not a skops zip — and keeps serving:
the routes that point at them answer with an error, and a later deployment still takes effect at once."""
from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, timezone
from pathlib import Path

from sklearn.linear_model import LogisticRegression

from services.bus import Event, Publisher
from services.adapters import save_model
from services.deployer.decide import change, route
from tests.support.datasets import good
from tests.support.samples import sample
from tests.support.polling import topic_values, wait_until
from tests.support.processes import running
from tests.support.scoring import FEATURES, send_requests

MODEL = "hostile_lr"


def publish_version(bus, publisher: Publisher, version: int, uri: str, sha256: str) -> None:
    """A trained version and a deployment that makes it the champion (as the trainer and deployer would)."""
    now = datetime.now(timezone.utc)
    trained = {**sample(bus.schemas.schema("mlbus.ModelTrained").parsed), "model": MODEL, "version": version,
               "task": "classification", "features": FEATURES, "categorical_features": [], "members": [],
               "artifact_uri": uri,
               "artifact_sha256": sha256,
               "trained_at": now, "signer": None, "signer_key": None, "signature": None, "act_id": None,
               "made_at": None,       # the scorer folds what the trainer wrote; signatures are the registry's check
               "feature_views_json": None, "features_snapshot_sha256": None, "features_until_json": None}
    publisher.publish(Event("mlbus.ModelTrained", trained, key=MODEL, id=f"trained-{version}"))
    publisher.publish(change(MODEL, f"d{version}", "replace", "completed", [route(version, "champion", 1.0, sha256)],
                             "test", "deployer", f"cause-{version}", now, version=version))
    publisher.flush()


def answers(bus, ids: list[str]) -> list[dict]:
    wanted = set(ids)
    return wait_until(lambda: (found := [p for p in topic_values(bus, "inference.predictions")
                                         if p["request_id"] in wanted]) and len(found) == len(wanted) and found,
                      timeout=120, message=f"{len(wanted)} answers")


def served_by(bus, version: int, prefix: str) -> list[dict]:
    """Answers once the scorer routes to `version` (it follows deployments in the background)."""
    rounds = itertools.count()

    def attempt() -> list[dict] | None:
        batch = answers(bus, send_requests(bus, MODEL, 3, prefix=f"{prefix}{next(rounds)}"))
        return batch if all(p["version"] == version for p in batch) else None
    return wait_until(attempt, timeout=120, message=f"v{version} routed")


def test_unloadable_artifacts_are_refused_and_the_scorer_still_follows_deployments(bus, bus_env, tmp_path):
    artifacts = Path(bus.settings.storage.artifacts_store)
    directory = artifacts / "directory.skops"
    directory.mkdir(parents=True)
    junk = artifacts / "junk.skops"
    junk.write_bytes(b"this is not a zip")
    frame = good(rows=200)
    fitted = LogisticRegression(max_iter=2000).fit(frame[FEATURES], frame["diagnosis"])
    real_uri, real_sha = save_model(artifacts, fitted)
    publisher = Publisher(bus, "test")
    publish_version(bus, publisher, 1, directory.as_uri(), "0" * 64)
    with running("services.scorer", bus_env, tmp_path / "scorer.log") as scorer:
        first = answers(bus, send_requests(bus, MODEL, 5, prefix="dir"))
        publish_version(bus, publisher, 2, junk.as_uri(), hashlib.sha256(junk.read_bytes()).hexdigest())
        second = served_by(bus, 2, "junk")
        publish_version(bus, publisher, 3, real_uri, real_sha)
        third = served_by(bus, 3, "real")
        assert scorer.poll() is None, "the scorer keeps running"
    assert all("not a regular file" in p["error"] for p in first)
    assert all("not a readable skops file" in p["error"] for p in second)
    assert all(p["error"] is None for p in third) and {p["label"] for p in third} <= {"benign", "malignant"}
