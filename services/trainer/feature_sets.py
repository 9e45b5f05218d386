"""The feature views the trainer knows (followed from features.views) and what a plan trains on from them.

A view's definition counts when a data scientist signed it and it parses as the view its fields name; the newest
such version of a view is the one a training uses. A refused definition is remembered with its reason, which a
training naming a view that has no usable definition gives back. A reproduction takes the exact versions and
offline positions its run recorded, and the run's spec without the columns the views added."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from services.bus.edge import content
from services.bus.identity import act_refusal
from services.bus.received import Received
from services.domain import (FeatureSetRefused, FeatureSettings, FeatureView, parse_settings, until_from_json,
                             ViewsRefused)

VIEW_AUTHORS = ("data-scientist",)


@dataclass(frozen=True)
class FeaturePlan:
    """The views a training joins and, for a reproduction, what the run it reproduces read."""
    settings: FeatureSettings
    views: tuple[FeatureView, ...]
    until: dict[tuple[str, int], int] | None = None   # None: the offline store's positions at training time
    digest: str | None = None                         # the reproduced run's snapshot digest


@dataclass
class ViewCatalogue:
    defined: dict[tuple[str, str], FeatureView] = field(default_factory=dict)   # (view, version) → its view
    newest: dict[str, str] = field(default_factory=dict)                        # view → its newest version
    refused: dict[str, str] = field(default_factory=dict)                       # view → why its last was refused

    def follow(self, verify: Callable, parse: Callable[[dict], FeatureView]) -> Callable[[Received], None]:
        """A fold of features.views records (replay and follow hand it the message: it checks the signature)."""
        def fold(received: Received) -> None:
            if received.record == "mlbus.FeatureViewDefined":
                self.apply(received.value, act_refusal(received, verify, VIEW_AUTHORS), parse)
        fold.takes_received = True          # type: ignore[attr-defined]
        return fold

    def apply(self, value: dict, refusal: str | None, parse: Callable[[dict], FeatureView]) -> None:
        name = str(value.get("view"))
        if refusal is None:
            try:
                view = parse(value)
            except ViewsRefused as error:
                refusal = f"its definition is not usable: {str(error)[:300]}"
        if refusal is not None:
            self.refused[name] = f"the definition of version {str(value.get('version'))[:12]} was refused: {refusal}"
            return
        self.defined[(view.name, view.version)] = view
        self.newest[view.name] = view.version

    def current(self, settings: FeatureSettings) -> FeaturePlan | str:
        """Each named view's newest usable version, or why a view cannot be used."""
        missing = [name for name in settings.views if name not in self.newest]
        if missing:
            return "; ".join(self._absent(name) for name in missing)
        return FeaturePlan(settings, tuple(self.defined[(name, self.newest[name])] for name in settings.views))

    def pinned(self, settings: FeatureSettings, versions: dict[str, str], until: dict[tuple[str, int], int],
               digest: str | None) -> FeaturePlan | str:
        """The exact versions a run used (a reproduction), or why one is not known."""
        unknown = [f"view {name} version {version[:12]} is not defined (any more)" for name, version in versions.items()
                   if (name, version) not in self.defined]
        if unknown:
            return "; ".join(unknown)
        return FeaturePlan(settings, tuple(self.defined[(name, versions[name])] for name in settings.views),
                           until, digest)

    def _absent(self, name: str) -> str:
        if name in self.refused:
            return f"feature view {name!r} has no usable definition: {self.refused[name]}"
        return f"feature view {name!r} is not defined: define it with `mlbus features define`"


def recorded_views(plan: FeaturePlan, columns: tuple[str, ...]) -> str:
    """ModelTrained.feature_views_json: the label columns, each view's version and the columns added."""
    return json.dumps({"entity": plan.settings.entity, "time": plan.settings.time,
                       "views": {view.name: view.version for view in plan.views}, "columns": list(columns)},
                      sort_keys=True)


def current_features(catalogue: ViewCatalogue, spec: dict) -> FeaturePlan | str | None:
    """The newest usable version of each view the spec names (None: it names none), or why it cannot train."""
    try:
        settings = parse_settings(spec.get("feature_views_json"))
    except FeatureSetRefused as error:
        return str(error)
    return None if settings is None else catalogue.current(settings)


def reproduced_features(catalogue: ViewCatalogue, run: dict, spec: dict) -> tuple[FeaturePlan | None, dict] | str:
    """The views, versions and offline positions a run used, and its spec without the columns they added; or why
    they cannot be had again."""
    if not run.get("feature_views_json"):
        return None, spec
    try:
        recorded = content(run["feature_views_json"])
        settings = parse_settings(spec.get("feature_views_json"))
        until = until_from_json(run.get("features_until_json") or "{}")
        columns = set(recorded["columns"])
        versions = {name: str(version) for name, version in recorded["views"].items()}
    except (FeatureSetRefused, TypeError, KeyError, AttributeError, ValueError) as error:
        return f"the run's feature views are not recorded in full: {type(error).__name__}: {str(error)[:200]}"
    if settings is None or set(settings.views) != set(versions):
        return "the run's spec does not name the views it recorded"
    plan = catalogue.pinned(settings, versions, until, run.get("features_snapshot_sha256"))
    if isinstance(plan, str):
        return plan
    return plan, {**spec, "features": [f for f in spec["features"] if f not in columns],
                  "categorical_features": [f for f in spec.get("categorical_features", []) if f not in columns]}
