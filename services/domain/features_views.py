"""Feature views (issue 36): the YAML a person writes, checked whole, in a canonical form with a version.

A file holds `views:`, a list; each view names its entity key, its source (a catalogue topic or a dataset's
batches), its features (the last value of a field, or count / sum / mean / min / max over a tumbling or sliding
window in event time), how late an event may arrive, its TTL and its owner. docs/explanation/feature-store.md
shows the format. Whatever the input, parse_views returns views or raises ViewsRefused carrying every reason it
found: no other exception, however hostile the input (non-string keys, aliases that expand a million times, a
path for a name, a window of 10^30 seconds). Durations are held in milliseconds, like event times.

A view's `version` is the SHA-256 of its canonical JSON (sorted keys, durations in milliseconds, features in name
order, defaults filled in) without `owner` and `description`, which change no value: the same definition written
in any key or feature order has the same version, and any change to what its values are is a new one.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

import yaml

from services.bus.edge import is_name
from services.bus.errors import BadInput

AGGREGATES = ("last", "count", "sum", "mean", "min", "max")
WINDOWED = AGGREGATES[1:]
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}", re.ASCII)   # a view, a feature, a field: a column's name
OWNER = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)              # a person's or a service's name (identities)
DURATION = re.compile(r"([0-9]{1,15})(ms|s|m|h|d)", re.ASCII)
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
DAY_MS = UNIT_MS["d"]
MAX_WINDOW_MS = 366 * DAY_MS
MAX_TTL_MS = 3660 * DAY_MS
MAX_LATENESS_MS = 7 * DAY_MS
MAX_WINDOWS_PER_EVENT = 1000        # window / slide: the windows one event lands in, each an accumulator to update
MAX_VIEWS, MAX_FEATURES = 100, 200
MAX_YAML_CHARS = 1 << 20
MAX_DEPTH, MAX_NODES = 12, 20_000   # a definition is a few levels deep; an alias bomb is millions of nodes
MAX_DESCRIPTION = 4096
VIEW_KEYS = {"name", "entity", "source", "event_time", "lateness", "ttl", "owner", "description", "features"}
FEATURE_KEYS = {"name", "aggregate", "field", "window", "slide"}
SOURCE_KEYS = {"topic", "dataset"}
SOURCE_KIND = "kind"                 # with `topic`: only the events of this kind (a BusinessEvent's `kind`)
UNVERSIONED = ("owner", "description")


class ViewsRefused(BadInput, ValueError):
    """A definition that cannot be used as it is; `reasons` holds every reason found, each naming its place."""

    stage = "validate"

    def __init__(self, reasons: list[str]):
        self.reasons = tuple(reasons)
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class Feature:
    name: str
    aggregate: str              # one of AGGREGATES
    field: str | None           # the event's field; None only for a count of events
    window_ms: int | None       # None for `last`
    slide_ms: int | None        # = window_ms for a tumbling window


@dataclass(frozen=True)
class FeatureView:
    name: str
    entity: str
    source_topic: str | None    # exactly one of topic and dataset
    source_dataset: str | None
    event_time: str | None      # the field holding an event's time; None: the record's own time
    lateness_ms: int
    ttl_ms: int
    owner: str
    description: str
    features: tuple[Feature, ...]
    version: str                # sha256 hex of the canonical form without owner and description
    source_kind: str | None = None  # with source_topic: only events of this kind count (business.events)

    def feature(self, name: str) -> Feature | None:
        return next((f for f in self.features if f.name == name), None)


def views_from_yaml(text: Any) -> tuple[FeatureView, ...]:
    """The views of a YAML document (parse_views); ViewsRefused when it is not YAML or not a definition."""
    if not isinstance(text, str):
        raise ViewsRefused([f"a definition is YAML text, not {type(text).__name__}"])
    if len(text) > MAX_YAML_CHARS:
        raise ViewsRefused([f"the definition holds {len(text):,} characters (at most {MAX_YAML_CHARS:,})"])
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as error:
        raise ViewsRefused([f"not YAML: {str(error)[:200]}"]) from None
    return parse_views(raw)


def parse_views(raw: Any) -> tuple[FeatureView, ...]:
    """The views a loaded definition declares, in name order; ViewsRefused with every reason otherwise."""
    problems = _shape_problems(raw)
    views = _views(raw, problems)
    if problems:
        raise ViewsRefused(problems)
    return tuple(sorted(views, key=lambda view: view.name))


def canonical(view: FeatureView, versioned: bool = False) -> dict:
    """The view as plain JSON values, defaults filled in, features in name order (`versioned`: without owner and
    description, as its version hashes it)."""
    form = {"name": view.name, "entity": view.entity, "event_time": view.event_time,
            "source": _canonical_source(view),
            "lateness_ms": view.lateness_ms, "ttl_ms": view.ttl_ms, "owner": view.owner,
            "description": view.description,
            "features": [{"name": f.name, "aggregate": f.aggregate, "field": f.field, "window_ms": f.window_ms,
                          "slide_ms": f.slide_ms} for f in sorted(view.features, key=lambda f: f.name)]}
    return {k: v for k, v in form.items() if not (versioned and k in UNVERSIONED)}


def _canonical_source(view: FeatureView) -> dict:
    if view.source_dataset:
        return {"dataset": view.source_dataset}
    return {"topic": view.source_topic, **({"kind": view.source_kind} if view.source_kind else {})}


def canonical_bytes(form: Any) -> bytes:
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def definition_bytes(views: tuple[FeatureView, ...]) -> bytes:
    """A whole definition's canonical bytes (what a person signs when publishing it)."""
    return canonical_bytes({"views": [canonical(v) for v in sorted(views, key=lambda v: v.name)]})


def _shape_problems(raw: Any) -> list[str]:
    """Keys that are not text, found in a walk without recursion before anything looks inside; a definition too
    deep or too large is refused at once (an alias bomb: there is nothing more to say of it)."""
    problems: list[str] = []
    stack: list[tuple[str, Any, int]] = [("", raw, 0)]
    nodes = 0
    while stack:
        path, value, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            raise ViewsRefused([f"the definition nests deeper than {MAX_DEPTH} or holds more than {MAX_NODES:,} "
                                "values"])
        if isinstance(value, dict):
            problems += [f"{path or 'the definition'}: a key {_shown(k)} is not text" for k in value
                         if not isinstance(k, str)]
            stack += [(_inside(path, k), v, depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value)]
    return sorted(problems)


def _inside(path: str, key: Any) -> str:
    if isinstance(key, str) and IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_shown(key)}]"


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):        # an int of too many digits refuses repr
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:40] + "…"


def _given(raw: dict, key: str) -> str:
    return _shown(raw[key]) if key in raw else "nothing"


def _twice(path: str, kind: str, listed: list) -> list[str]:
    """A reason for each name given to more than one item of `listed` (whatever else is wrong with them)."""
    names: list[str] = [item["name"] for item in listed if isinstance(item, dict) and isinstance(item.get("name"), str)]
    return [f"{path}: {kind} {name!r} is named more than once" for name in sorted({n for n in names
                                                                                 if names.count(n) > 1})]


def _views(raw: Any, problems: list[str]) -> list[FeatureView]:
    if not isinstance(raw, dict) or "views" not in raw:
        problems.append("a definition is a mapping with `views:`, a list of views")
        return []
    problems += [f"unknown key {_shown(k)} (only `views`)" for k in raw if isinstance(k, str) and k != "views"]
    return _listed("views", raw["views"], MAX_VIEWS, "view", _view, problems)


def _listed(path: str, raw: Any, most: int, kind: str, parse: Callable[[str, Any, list[str]], Any],
            problems: list[str]) -> list:
    """The items of a list of 1 to `most`, each `parse`d; a name given twice is a problem."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= most:
        problems.append(f"{path} must be a list of 1 to {most} {kind}s")
        return []
    parsed = [item for item in (parse(f"{path}[{i}]", item, problems) for i, item in enumerate(raw)) if item]
    problems += _twice(path, kind, raw)
    return parsed


def _view(path: str, raw: Any, problems: list[str]) -> FeatureView | None:
    before = len(problems)
    if not _mapping(path, raw, VIEW_KEYS, problems):
        return None
    name = _identifier(path, raw, "name", problems)
    entity = _identifier(path, raw, "entity", problems)
    event_time = _identifier(path, raw, "event_time", problems) if "event_time" in raw else None
    topic, dataset, kind = _source(f"{path}.source", raw.get("source"), problems)
    lateness_ms = _duration(path, raw, "lateness", problems, 0, MAX_LATENESS_MS) if "lateness" in raw else 0
    ttl_ms = _duration(path, raw, "ttl", problems, 1, MAX_TTL_MS)
    owner = raw.get("owner")
    if not isinstance(owner, str) or not OWNER.fullmatch(owner):
        problems.append(f"{path}.owner must be a person's or service's name (a-z, 0-9, _ -), "
                        f"not {_given(raw, 'owner')}")
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION or "\x00" in description:
        problems.append(f"{path}.description must be text of at most {MAX_DESCRIPTION} characters without NUL")
    features = _listed(f"{path}.features", raw.get("features"), MAX_FEATURES, "feature", _feature, problems)
    if len(problems) > before:
        return None
    windows = sum(-(-f.window_ms // f.slide_ms) for f in features if f.window_ms and f.slide_ms)
    if windows > MAX_WINDOWS_PER_EVENT:         # each an accumulator one event updates: bound the view, not a feature
        problems.append(f"{path}.features put each event in {windows:,} windows in all (window / slide, summed over "
                        f"the features; at most {MAX_WINDOWS_PER_EVENT:,})")
        return None
    view = FeatureView(str(name), str(entity), topic, dataset, event_time, int(lateness_ms or 0), int(ttl_ms or 0),
                       str(owner), str(description), tuple(features), "", kind)
    version = hashlib.sha256(canonical_bytes(canonical(view, versioned=True))).hexdigest()
    return replace(view, version=version)


def _source(path: str, raw: Any, problems: list[str]) -> tuple[str | None, str | None, str | None]:
    kind = raw.get(SOURCE_KIND) if isinstance(raw, dict) and "topic" in raw else None
    sources = {k: v for k, v in raw.items() if k != SOURCE_KIND} if isinstance(raw, dict) and "topic" in raw else raw
    if not isinstance(sources, dict) or len(sources) != 1 or not set(sources) <= SOURCE_KEYS:
        problems.append(f"{path} must be a mapping with one key, `topic` (a catalogue topic, optionally with a "
                        "`kind`) or `dataset` (its batches)")
        return None, None, None
    [(where, name)] = sources.items()
    if not is_name(name):
        problems.append(f"{path}.{where}: {_shown(name)} is not a name (letters, digits, . _ -, at most 128, no '..')")
        return None, None, None
    if kind is not None and not (isinstance(kind, str) and IDENTIFIER.fullmatch(kind)):
        problems.append(f"{path}.kind must be an identifier (letters, digits, _), not {_shown(kind)}")
        return None, None, None
    return (name, None, kind) if where == "topic" else (None, name, None)


def _feature(path: str, raw: Any, problems: list[str]) -> Feature | None:
    before = len(problems)
    if not _mapping(path, raw, FEATURE_KEYS, problems):
        return None
    name = _identifier(path, raw, "name", problems)
    aggregate = raw.get("aggregate")
    if aggregate not in AGGREGATES or not isinstance(aggregate, str):
        problems.append(f"{path}.aggregate must be one of {', '.join(AGGREGATES)}, not {_given(raw, 'aggregate')}")
    field = _identifier(path, raw, "field", problems) if "field" in raw or aggregate != "count" else None
    window_ms = slide_ms = None
    if aggregate == "last":
        problems += [f"{path}.{key}: a `last` feature has no window" for key in ("window", "slide") if key in raw]
    elif aggregate in WINDOWED:
        window_ms = _duration(path, raw, "window", problems, 1, MAX_WINDOW_MS)
        slide_ms = _duration(path, raw, "slide", problems, 1, MAX_WINDOW_MS) if "slide" in raw else window_ms
        if window_ms and slide_ms and slide_ms > window_ms:
            problems.append(f"{path}.slide ({slide_ms:,} ms) is longer than its window ({window_ms:,} ms): "
                            "events between windows would count in none")
        elif window_ms and slide_ms and -(-window_ms // slide_ms) > MAX_WINDOWS_PER_EVENT:
            problems.append(f"{path}: window / slide puts each event in more than {MAX_WINDOWS_PER_EVENT} windows")
    if len(problems) > before:
        return None
    return Feature(str(name), str(aggregate), field, window_ms, slide_ms)


def _mapping(path: str, raw: Any, known: set[str], problems: list[str]) -> bool:
    """Whether `raw` is a mapping; each of its keys that is not `known` is a problem."""
    if not isinstance(raw, dict):
        problems.append(f"{path} must be a mapping of {', '.join(sorted(known))}")
        return False
    problems += [f"{path}: unknown key {_shown(k)} (known: {', '.join(sorted(known))})"
                 for k in raw if isinstance(k, str) and k not in known]
    return True


def _identifier(path: str, raw: dict, key: str, problems: list[str]) -> str | None:
    value = raw.get(key)
    if isinstance(value, str) and IDENTIFIER.fullmatch(value):
        return value
    problems.append(f"{path}.{key} must be an identifier (a letter or _, then letters, digits, _; at most 64), "
                    f"not {_given(raw, key)}")
    return None


def _duration(path: str, raw: dict, key: str, problems: list[str], least_ms: int, most_ms: int) -> int | None:
    """A duration in milliseconds: whole seconds as a number, or text such as 500ms, 90s, 15m, 1h, 7d."""
    value = raw.get(key)
    milliseconds = None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= most_ms:
        milliseconds = value * 1000
    elif isinstance(value, str) and (match := DURATION.fullmatch(value)):
        milliseconds = int(match[1]) * UNIT_MS[match[2]]
    if milliseconds is None or not least_ms <= milliseconds <= most_ms:
        problems.append(f"{path}.{key} must be a duration from {least_ms:,} ms to {most_ms // DAY_MS:,} days "
                        f"(seconds, or text like 90s, 15m, 1h, 7d), not {_given(raw, key)}")
        return None
    return milliseconds

