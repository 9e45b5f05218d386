"""Monitoring feature views (issue 36), pure: the name a view version's reports carry, which model versions use a
view, and training/serving skew — the values served online against the offline store's.

The featurizer computes each value once and writes it to both stores, so a value online must be in the offline store
with the same key — view, version, feature, entity, event time — and the same value. `skew` compares the online
values it is given with the offline ones and returns what differs: a value that differs (numbers within a relative
1e-9; a boolean is not a number, a number not text) or an online value missing offline. An online value whose
source offsets the offline store has not reached yet (`positions`, the newest offset per partition it holds) is
pending, not missing: the offline part may still be on its way. Nothing here raises on what a record holds.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.bus.edge import content

from .features_windows import FeatureValue

Place = tuple[str, int]
Key = tuple[str, str, str, str, int]          # view, version, feature, entity, event time
REL_TOLERANCE = 1e-9
SHOWN = 160                                   # characters of a value a mismatch keeps (an entity's, a string's)


SUBJECT_PREFIX = "view."


def view_subject(view: str, version: str) -> str:
    """The name a view version's drift reports and alerts carry where a model's goes: `view.NAME.VERSION[:16]`, a
    name as every reader's edge checks a model's (letters, digits, . _ -)."""
    return f"{SUBJECT_PREFIX}{view}.{version[:16]}"


def views_used(trained: Mapping) -> dict[str, str]:
    """The feature views (name → version) a ModelTrained record says its version was trained on: its
    feature_views_json's `views`; {} when it names none or the text is not such a mapping."""
    try:
        found = content(trained.get("feature_views_json"))
    except ValueError:
        return {}
    views = found.get("views") if isinstance(found, dict) else None
    if not isinstance(views, dict):
        return {}
    return {name: version for name, version in views.items() if isinstance(name, str) and isinstance(version, str)}


@dataclass(frozen=True)
class Mismatch:
    view: str
    version: str
    feature: str
    entity: str
    event_ms: int
    online: object
    offline: object                          # None too when missing
    reason: str                              # "value-differs" | "missing-offline"

    def as_dict(self) -> dict:
        return {"view": self.view, "version": self.version, "feature": self.feature, "entity": _cut(self.entity),
                "event_ms": self.event_ms, "online": _shown(self.online), "offline": _shown(self.offline),
                "reason": self.reason}


@dataclass(frozen=True)
class Skew:
    compared: int                            # online values found offline or due there
    pending: tuple[FeatureValue, ...]        # online values the offline store has not reached yet
    mismatches: tuple[Mismatch, ...]


def key_of(value: FeatureValue) -> Key:
    return value.view, value.view_version, value.feature, value.entity, value.event_ms


def positions_of(values: Iterable[FeatureValue]) -> dict[Place, int]:
    """The newest source offset per partition among `values` (how far the offline store has read its source)."""
    newest: dict[Place, int] = {}
    for value in values:
        for span in value.sources:
            place = (span.topic, span.partition)
            newest[place] = max(newest.get(place, -1), span.last_offset)
    return newest


def reached(value: FeatureValue, positions: Mapping[Place, int]) -> bool:
    """Whether the offline store has read every source offset this value came from."""
    return all(span.last_offset <= positions.get((span.topic, span.partition), -1) for span in value.sources)


def same(online: object, offline: object) -> bool:
    """Equal values: numbers within REL_TOLERANCE (two NaN are equal), else equal and of the same kind."""
    if isinstance(online, bool) or isinstance(offline, bool):
        return type(online) is type(offline) and online == offline
    if isinstance(online, (int, float)) and isinstance(offline, (int, float)):
        if isinstance(online, float) and isinstance(offline, float) and math.isnan(online) and math.isnan(offline):
            return True
        return online == offline or math.isclose(online, offline, rel_tol=REL_TOLERANCE, abs_tol=0.0)
    return type(online) is type(offline) and online == offline


def skew(online: Iterable[FeatureValue], offline: Iterable[FeatureValue],
         positions: Mapping[Place, int] | None = None) -> Skew:
    """The online values against the offline ones of the same key. `positions`: the offline store's newest source
    offset per partition (default: those of `offline`); an online value past them is pending."""
    held: dict[Key, FeatureValue] = {}
    for value in offline:
        held[key_of(value)] = value
    positions = positions_of(held.values()) if positions is None else positions
    compared, pending, mismatches = 0, [], []
    for value in online:
        found = held.get(key_of(value))
        if found is None and not reached(value, positions):
            pending.append(value)
            continue
        compared += 1
        if found is None:
            mismatches.append(_mismatch(value, None, "missing-offline"))
        elif not same(value.value, found.value):
            mismatches.append(_mismatch(value, found.value, "value-differs"))
    return Skew(compared, tuple(pending), tuple(mismatches))


def _mismatch(value: FeatureValue, offline: object, reason: str) -> Mismatch:
    return Mismatch(value.view, value.view_version, value.feature, value.entity, value.event_ms, value.value,
                    offline, reason)


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def _shown(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)                    # JSON holds no NaN or infinity
    return _cut(value) if isinstance(value, str) else value
