"""The trainer's handler: fold specs and batches into the view, train on requests, announce results."""
from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd
import skops.io as sio

from services.bus import Event, Received
from services.domain import (alert, ArtifactRefused, combiner, Ensemble, FeatureSetRefused, profile_frame, spec_problem,
                             training_set, until_json)
from services.adapters import ArtifactStore, DataFileError, OfflineStore, save_model, snapshot_digest
from services.bus.logs import get_logger

from .compute import DASK, IN_TRAINER, Placement, Unplaceable, compute_used, placement
from .decide import (Provenance, TrainingPlan, Verify, act_refusal, best_run, plan_training, refusal,
                     requests_for_member_change, requests_for_new_data, run_event, trained_event)
from .feature_sets import recorded_views
from .grid import DaskCluster, GridPoint, PointFitted, fit_locally
from .training import fit_ensemble, permutation_importances, split
from .view import TrainerView


# What scikit-learn, pandas and numpy raise for a spec or data they cannot use (a rejected hyperparameter, a
# missing or non-numeric column, inf): deterministic, so a `training-refused` alert, never a crash loop.
TRAINING_FAILURES = (ValueError, TypeError, KeyError, IndexError, ArithmeticError)


class Trainer:
    def __init__(self, view: TrainerView, artifacts_store: str | Path, provenance: Provenance, verify: Verify,
                 load_frame: Callable[[list[dict]], pd.DataFrame], min_fit_s: float = 0.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 max_artifact_bytes: int = 1 << 29, cluster: DaskCluster | None = None,
                 offline: OfflineStore | None = None):
        self.view = view
        self.offline = offline            # the feature store's offline values: what specs with feature views join
        self.cluster = cluster            # MLBUS_DASK_SCHEDULER's: where grids run unless a spec says local
        self.load_frame = load_frame
        self.verify = verify
        self.artifacts = ArtifactStore(artifacts_store, max_artifact_bytes)     # its own, and an ensemble's members
        self.provenance = provenance
        self.min_fit_s = min_fit_s        # fault injection: make every training last at least this long
        self.clock = clock
        self.log = get_logger(component="trainer")
        self.decisions = {"mlbus.DataValidated": lambda value: requests_for_new_data(self.view, value, self.clock()),
                          "mlbus.TrainingRequested": self.on_request,   # the other records are only folded
                          "mlbus.ModelLifecycle": lambda value: requests_for_member_change(self.view, value,
                                                                                           self.clock())}

    def __call__(self, message: Received) -> list[Event]:
        refused = act_refusal(message, self.verify)
        if message.record == "mlbus.ModelSpecDefined" and (refused := refused or spec_problem(message.value)):
            spec = message.value                    # an unverified or unusable spec is never folded
            return [alert("spec-refused", spec["model"], f"spec of {spec['model']} not taken: {refused}",
                          message.envelope.id, self.clock(), evidence={"claimed_by": spec["defined_by"]})]
        if refused:             # a request not taken: not folded, and its refusal marks no request id handled
            return [refusal(message.value, refused, self.clock(), unverified=True)]
        self.view.apply(message.record, message.value)
        decide = self.decisions.get(message.record)
        events = decide(message.value) if decide else []
        for event in events:
            self.view.apply(event.record, event.value)
        return events

    def on_request(self, request: dict) -> list[Event]:
        if request["request_id"] in self.view.handled_requests:
            return []                                   # delivered twice: trained once
        plan = plan_training(self.view, request)
        if plan is None:
            self.view.handled_requests.add(request["request_id"])
            return []
        if isinstance(plan, str):
            return [refusal(request, plan, self.clock())]
        where = placement(plan.spec.get("compute"), self.cluster.address if self.cluster else "", bool(plan.members))
        if isinstance(where, Unplaceable):
            return [refusal(request, where.reason, self.clock())]
        try:
            return self.train(plan, where)
        except (DataFileError, ArtifactRefused, FeatureSetRefused) as error:   # a snapshot, an artifact, features
            return [refusal(request, str(error), self.clock())]
        except TRAINING_FAILURES as error:      # the spec or the data, not the machine: the same every time
            self.log.warning("training failed", model=plan.spec["model"], error=f"{type(error).__name__}: {error}")
            return [refusal(request, f"training failed: {type(error).__name__}: {str(error)[:500]}", self.clock())]

    def train(self, plan: TrainingPlan, where: Placement = IN_TRAINER) -> list[Event]:
        started = time.monotonic()
        frame = self.load_frame(plan.batches)
        if plan.features is not None:
            plan, frame = self._join_features(plan, frame)      # the plan now trains on the columns added
        spec = plan.spec
        data = split(frame, spec["features"], spec["target"], spec["task"], spec["test_size"], plan.seed,
                     tuple(spec.get("categorical_features", ())), tuple(spec.get("sensitive_features", ())))
        if plan.members:
            fitted, compute = [self._combine(plan, data)], compute_used(where, [], time.monotonic() - started)
        else:
            fitted, compute = self._fit_grid(plan, data, where)
        self._wait_for_min_fit(started)
        now = self.clock()
        if plan.reproduces:
            model, result = fitted[0]
            artifact_sha = hashlib.sha256(sio.dumps(saved_form(model))).hexdigest()
            return [run_event(plan, 0, result, self.provenance, now, artifact_sha256=artifact_sha)]
        best = best_run([result for _, result in fitted], spec["metric"])
        artifact = save_model(self.artifacts.root, saved_form(fitted[best][0]))
        self.log.info("model trained", model=spec["model"], version=plan.version, runs=len(fitted),
                      metric=spec["metric"], value=fitted[best][1]["metrics"].get(spec["metric"]))
        runs = [run_event(plan, i, result, self.provenance, now, chosen=i == best,
                          artifact_sha256=artifact[1] if i == best else "") for i, (_, result) in enumerate(fitted)]
        importances = permutation_importances(fitted[best][0], data, spec["task"], spec["metric"], plan.seed)
        duration_ms = int((time.monotonic() - started) * 1000)
        return runs + [trained_event(plan, best, {**fitted[best][1], "importances": importances}, artifact,
                                     profile_frame(data.x_train, reference=True), self.provenance, duration_ms, now,
                                     cpu_seconds=sum(result["cpu_seconds"] for _, result in fitted), compute=compute)]

    def _join_features(self, plan: TrainingPlan, labels: pd.DataFrame) -> tuple[TrainingPlan, pd.DataFrame]:
        """The label rows with the views' features as each row's time saw them, and the plan training on them; a
        reproduction must find the values its run used (FeatureSetRefused when the digest differs)."""
        features = plan.features
        if self.offline is None:
            raise FeatureSetRefused("the spec names feature views, but this trainer has no offline feature store")
        values, until = self.offline.snapshot(features.views, features.until)
        built = training_set(labels, features.settings, features.views, values)
        digest = snapshot_digest(built.used)
        if features.digest is not None and digest != features.digest:
            raise FeatureSetRefused(
                f"the offline store no longer holds the feature values the run used: their digest is {digest[:16]}, "
                f"the run's {features.digest[:16]} (values at the recorded offsets were rewritten or lost)")
        spec = {**plan.spec, "features": [*plan.spec["features"], *built.columns],
                "categorical_features": [*plan.spec.get("categorical_features", []), *built.categorical]}
        record = {"feature_views_json": recorded_views(features, built.columns), "features_snapshot_sha256": digest,
                  "features_until_json": until_json(until)}
        self.log.info("feature views joined", model=spec["model"], rows=len(built.frame), columns=len(built.columns),
                      values_used=len(built.used), digest=digest[:16])
        return replace(plan, spec=spec, features_record=record), built.frame

    def _fit_grid(self, plan: TrainingPlan, data, where: Placement) -> tuple[list[tuple[object, dict]], dict]:
        """Every grid point fitted where the placement says, or the first failure of a fit raised (a spec or data
        the estimator cannot use: the same error a local fit raises)."""
        spec = plan.spec
        points = [GridPoint(spec["estimator"], params, spec["task"], spec["metric"], spec["cv_folds"], plan.seed,
                            spec.get("encoding", "onehot")) for params in plan.grid]
        cluster = self.cluster if where.engine == DASK else None      # placement() gives DASK only with one
        grid = cluster.fit(data, points) if cluster else fit_locally(data, points)
        for outcome in grid.outcomes:
            if not isinstance(outcome, PointFitted):
                raise outcome
        return [(o.model, o.result) for o in grid.outcomes], grid.compute

    def _combine(self, plan: TrainingPlan, data) -> tuple[Ensemble, dict]:
        """An ensemble from its pinned members, each loaded hash-checked from the artifact store."""
        spec, settings = plan.spec, plan.grid[0]
        fitted = [self.artifacts.load(m["artifact_uri"], m["artifact_sha256"]) for m in plan.members]
        return fit_ensemble(data, list(plan.members), fitted, settings["combine"], spec["task"], spec["metric"],
                            spec["cv_folds"], plan.seed)

    def _wait_for_min_fit(self, started: float) -> None:
        remaining = self.min_fit_s - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)


def saved_form(model: object) -> object:
    """What goes into the artifact: the pipeline, or an ensemble's combiner (its members stay their own files)."""
    if isinstance(model, Ensemble):
        return combiner(model.members, model.combine, model.final)
    return model
