"""The feature views the trainer knows (followed from features.views) and what a plan trains on from them.

A view's definition counts when a data scientist signed it and it parses as the view its fields name; the newest
such version of a view is the one a training uses. A refused definition is remembered with its reason, which a
training naming a view that has no usable definition gives back."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from services.bus.identity import act_refusal
from services.bus.received import Received
from services.domain import FeatureSettings, FeatureView, ViewsRefused

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
