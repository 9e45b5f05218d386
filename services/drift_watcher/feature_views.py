"""Feature views watched like a model's inputs (issue 36), pure: the values the featurizer publishes on
features.online, in windows of event time per view version, each window's drift against a reference, and the
training/serving skew check's alert.

- A window is `Monitoring.window_seconds` of event time (starts at multiples from the epoch). It closes once the
  newest value of its view version is past its end plus the view's lateness, and the drift-watcher's clock has
  seen that for SETTLE_MS (values come from several partitions, read in no common order) — or when more than
  OPEN_WINDOWS are open. A value for a closed window, or from more than AHEAD_OF_CLOCK_MS in the future, is skipped with
  its reason.
- The reference of a feature: the training profile of the column `view__feature` of the newest model version
  trained on this view version (ModelTrained.feature_views_json), else the feature's first window with at least
  `min_rows` values (that window is the reference, not judged).
- The report is a DriftReport whose `model` is the view version's subject, `view.NAME.VERSION[:16]` (a name, as
  every reader's edge checks a model's), version 0, not a champion: the console's monitoring screen and every
  other reader of monitoring.drift read it as they read a model's.
"""
from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from services.bus import Event
from services.domain import (FeatureValue, FeatureView, Monitoring, Skew, ahead_of_clock, alert, column_name,
                             profile_column, view_subject as subject, views_used)

from .decide import alerting_features, output_id
from .stats import column_drift

SETTLE_MS = 10_000          # how long a window stays open after event time passed it (by the drift-watcher's clock)
OPEN_WINDOWS = 8            # open windows per view version; the oldest is closed when more open
MAX_VALUES = 5_000          # values per feature a window keeps (those of smallest sample_rank); all are counted
REFERENCE_SAMPLE = 1_000
NUMERIC = ("count", "sum", "mean", "min", "max")
SHOWN_MISMATCHES = 10


def sample_rank(value: FeatureValue) -> int:
    """Where a value stands in its window's sample: a window keeps the MAX_VALUES of smallest rank, so what it
    keeps does not depend on the order values are read in (live, features.online's partitions interleave; after a
    restart they are read again one after another)."""
    key = repr((value.entity, value.event_ms, value.feature, value.value)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


@dataclass
class OpenWindow:
    start_ms: int
    kept: dict[str, list] = field(default_factory=dict)        # feature → heap of (-rank, value), ≤ MAX_VALUES
    counted: dict[str, int] = field(default_factory=dict)      # feature → values seen
    passed_at: int | None = None                               # when the clock first saw event time past it


@dataclass(frozen=True)
class ClosedViewWindow:
    view: FeatureView
    start_ms: int
    end_ms: int
    values: dict[str, list]
    counted: dict[str, int]

    @property
    def id(self) -> str:
        return f"{subject(self.view.name, self.view.version)}/{self.start_ms}"


@dataclass
class Watched:
    view: FeatureView
    newest_ms: int | None = None
    closed_before: int | None = None          # windows starting before this are closed
    windows: dict[int, OpenWindow] = field(default_factory=dict)


class FeatureWatch:
    """The open windows of every view version, the first-window references, and why values were skipped."""

    def __init__(self, config: Monitoring | None = None):
        self.config = config or Monitoring()
        self.watched: dict[tuple[str, str], Watched] = {}
        self.references: dict[tuple[str, str, str], dict] = {}      # (view, version, feature) → profile

    @property
    def width_ms(self) -> int:
        return max(int(self.config.window_seconds * 1000), 1)

    def define(self, view: FeatureView) -> None:
        key = (view.name, view.version)
        if key not in self.watched:
            self.watched[key] = Watched(view)

    def add(self, value: FeatureValue, now_ms: int) -> str | None:
        """Take one value into its window; why not, when it is skipped."""
        watched = self.watched.get((value.view, value.view_version))
        if watched is None:
            return "no signed definition of its view version"
        feature = watched.view.feature(value.feature)
        if feature is None:
            return "a feature its view does not define"
        if ahead_of_clock(value.event_ms, now_ms, watched.view.lateness_ms) is not None:
            return "an event time more than an hour past the clock plus its view's lateness"
        if value.value is None:
            return "no value (an empty window's mean, min or max)"
        if feature.aggregate in NUMERIC and not is_number(value.value):
            return f"a {type(value.value).__name__} where {feature.aggregate} gives numbers"
        start = value.event_ms - value.event_ms % self.width_ms
        if watched.closed_before is not None and start < watched.closed_before:
            return "late: its window was closed"
        window = watched.windows.setdefault(start, OpenWindow(start))
        seen = window.counted.get(value.feature, 0)
        window.counted[value.feature] = seen + 1
        kept = window.kept.setdefault(value.feature, [])
        (heapq.heappush if seen < MAX_VALUES else heapq.heappushpop)(kept, (-sample_rank(value), value.value))
        watched.newest_ms = value.event_ms if watched.newest_ms is None else max(watched.newest_ms, value.event_ms)
        return None

    def close(self, now_ms: int) -> list[ClosedViewWindow]:
        """The windows due now (see the module docstring), oldest first, taken out of the watch."""
        closed = []
        for watched in self.watched.values():
            grace = watched.view.lateness_ms
            for start, window in watched.windows.items():
                past = watched.newest_ms is not None and watched.newest_ms >= start + self.width_ms + grace
                if past and window.passed_at is None:
                    window.passed_at = now_ms
            for start in sorted(watched.windows):
                window = watched.windows[start]
                settled = window.passed_at is not None and now_ms - window.passed_at >= SETTLE_MS
                if len(watched.windows) <= OPEN_WINDOWS and not settled:
                    break
                del watched.windows[start]
                watched.closed_before = max(watched.closed_before or start + self.width_ms, start + self.width_ms)
                values = {feature: [v for _, v in sorted(kept, key=lambda entry: -entry[0])]
                          for feature, kept in window.kept.items()}
                closed.append(ClosedViewWindow(watched.view, start, start + self.width_ms, values, window.counted))
        return sorted(closed, key=lambda w: (w.start_ms, w.id))

    def report(self, window: ClosedViewWindow, trained: list[dict], nonce: str = "") -> dict | None:
        """The window's DriftReport (None: no feature had a reference and enough values to judge)."""
        features, references = [], []
        for name in sorted(window.values):
            values = window.values[name]
            if len(values) < max(self.config.min_rows, 1):
                continue
            profile, source = self.reference(window.view, name, trained, values)
            if profile is None:
                continue
            references.append({"feature": name, "reference": source})
            features += judged(profile, name, values, self.config)
        evaluated = {f["feature"] for f in features}
        if not evaluated:
            return None
        drifted = sorted({f["feature"] for f in features if f["drifted"]})
        share = len(drifted) / len(evaluated)
        name = subject(window.view.name, window.view.version)
        return {"report_id": output_id(nonce, "view-drift", window.id), "model": name, "version": 0,
                "window_id": window.id, "window_start": window.start_ms, "window_end": window.end_ms,
                "rows": max(window.counted.values(), default=0), "features": features, "prediction_drift": None,
                "drift_share": share, "dataset_drift": share >= self.config.dataset_share,
                "created_at": window.end_ms, "performance": [],
                "fairness_json": "{}", "alerting": alerting_features(features, len(evaluated), self.config),
                "champion": False}

    def reference(self, view: FeatureView, feature: str, trained: list[dict],
                  values: list) -> tuple[dict | None, str]:
        """The feature's reference profile and where it came from; the first window's values become it when no
        model version trained on this view version profiles the feature (then None: this window is it)."""
        found = model_reference(trained, view.name, view.version, feature)
        if found is not None:
            return found
        key = (view.name, view.version, feature)
        if key in self.references:
            return self.references[key], "first window"
        self.references[key] = first_profile(feature, values)
        return None, "first window"


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def model_reference(trained: list[dict], view: str, version: str, feature: str) -> tuple[dict, str] | None:
    """The training profile of `view__feature` of the newest model version trained on this view version."""
    column = column_name(view, feature)
    newest = None
    for record in trained:
        if views_used(record).get(view) != version:
            continue
        profile = next((p for p in record.get("feature_profile") or [] if p.get("name") == column), None)
        if profile is not None and (newest is None or record["trained_at"] > newest[0]["trained_at"]):
            newest = (record, profile)
    if newest is None:
        return None
    record, profile = newest
    return {**profile, "name": feature}, f"{record['model']} v{record['version']}"


def first_profile(feature: str, values: list) -> dict:
    """A window's values profiled as the trainer profiles a column: numbers as numbers, anything else as text."""
    numbers = all(is_number(v) for v in values)
    series = pd.Series([float(v) for v in values] if numbers else [str(v) for v in values],
                       dtype=float if numbers else object)
    with np.errstate(all="ignore"):
        try:
            return profile_column(feature, series, REFERENCE_SAMPLE)
        except (ValueError, OverflowError, FloatingPointError):     # a range numpy cannot bin (±1e308)
            return profile_column(feature, series.astype(str), REFERENCE_SAMPLE)


def judged(profile: dict, feature: str, values: list, config: Monitoring) -> list[dict]:
    """column_drift of one feature's window values, each value of the kind its reference has; [] when no value is,
    or the statistics cannot be computed (values beyond what floats can subtract)."""
    if profile.get("kind") == "numeric":
        current = np.asarray([float(v) for v in values if is_number(v) and math.isfinite(float(v))], dtype=float)
    else:
        current = np.asarray([str(v) for v in values], dtype=object)
    if len(current) == 0:
        return []
    with np.errstate(all="ignore"):
        try:
            entries = column_drift({**profile, "name": feature}, current, config)
        except (ValueError, OverflowError, FloatingPointError):
            return []
    return [e for e in entries if math.isfinite(e["statistic"])]


def view_alerts(report: dict, nonce: str = "") -> list[Event]:
    """A view version's drifted window: critical when the share of drifted features reaches the dataset share,
    a warning when some features drift significantly (Bonferroni, as for a model's inputs)."""
    drifted = sorted({f["feature"] for f in report["features"] if f["drifted"]})
    where = f"feature view {report['model'].removeprefix('view.')} in window {report['window_id']}"
    if report["dataset_drift"]:
        kind, severity, named = "view-drift", "critical", drifted
        message = f"{len(drifted)} of its features drifted, {where}: {', '.join(drifted[:10])}"
    elif report["alerting"]:
        kind, severity, named = "view-feature-drift", "warning", report["alerting"]
        message = f"features drifted, {where}: {', '.join(named[:10])}"
    else:
        return []
    return [alert(kind, report["model"], message, report["report_id"], report["created_at"], severity=severity,
                  evidence={"report_id": report["report_id"], "features": named},
                  alert_id=output_id(nonce, report["report_id"], "alert", kind))]


def skew_alert(view: str, version: str, found: Skew, now_ms: int, nonce: str = "") -> Event | None:
    """A critical alert when online values differ from the offline store's; the same mismatches alert once."""
    if not found.mismatches:
        return None
    name = subject(view, version)
    keys = sorted(f"{m.feature}/{m.entity}/{m.event_ms}/{m.reason}" for m in found.mismatches)
    cause = output_id(nonce, "feature-skew", name, *keys)
    reasons = {r: sum(m.reason == r for m in found.mismatches) for r in sorted({m.reason for m in found.mismatches})}
    message = (f"feature view {view}@{version[:16]}: {len(found.mismatches)} of {found.compared} online values "
               f"differ from the offline store ({', '.join(f'{n} {r}' for r, n in reasons.items())})")
    return alert("feature-skew", name, message, cause, now_ms, severity="critical",
                 evidence={"view": view, "version": version, "compared": found.compared, "reasons": reasons,
                           "mismatches": [m.as_dict() for m in found.mismatches[:SHOWN_MISMATCHES]]},
                 alert_id=output_id(nonce, cause, "alert"))
