"""What a decoded record must also mean to be handled: checked where it enters, named by field.

Avro says a field is a string or a double; these rules say what the platform needs of it. A violation is
BadInput naming the field, so the record goes to its topic's DLQ before any handler sees it:

- names (`model`, `dataset`) are identifiers — never a path such as `../DataBatch`, never empty;
- a `…_json` field (settings, evidence, fairness figures) is a JSON object or array;
- on *edge* topics, which people and applications write (a producer `role:…`, `app` or `every` in
  topics.yaml), every top-level double and every double in a top-level map is finite: no NaN or ±inf
  reaches a threshold, a metric or a feature matrix.

Paths are confined where they are used (datastore.confined_file), since the store's root is a setting.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from .catalogue import Topic
from .errors import BadInput

NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_])?")
NAME_FIELDS = ("model", "dataset")
OUTSIDERS = ("app", "every")


class InvalidField(BadInput):
    """A record whose field breaks an invariant (the field is named in the message)."""

    stage = "validate"


def is_edge(topic: Topic) -> bool:
    """Whether people or applications write the topic (its records are checked for finite numbers)."""
    return any(p in OUTSIDERS or p.startswith("role:") for p in topic.producers)


def is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME.fullmatch(value) is not None and ".." not in value


def check_name(field: str, value: Any) -> None:
    if not is_name(value):
        raise InvalidField(f"field {field!r}: {str(value)[:80]!r} is not a name (letters, digits, . _ -, "
                           f"at most 128, no '..')")


def check_json(field: str, text: str) -> None:
    """A `…_json` field holds a JSON object or array (the services parse it: settings, evidence, figures)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        raise InvalidField(f"field {field!r} is not JSON: {text[:80]!r}") from None
    if not isinstance(parsed, (dict, list)):
        raise InvalidField(f"field {field!r} must be a JSON object or array, not {text[:80]!r}")


def all_finite(numbers) -> bool:
    """Whether no float among `numbers` (a collection: read twice when in doubt) is NaN or ±inf (other values pass).
    math.fsum of finite numbers is
    finite, and raises OverflowError where their exact sum is past a float: one C call for a request's
    feature map instead of a test per value (a fifth of the scorer's per-row decode); anything else — a value
    that is not a number, an overflow, inf beside -inf — is looked at value by value."""
    try:
        return math.isfinite(math.fsum(numbers))
    except (TypeError, ValueError, OverflowError):         # ValueError: inf and -inf both there
        return all(not isinstance(n, float) or math.isfinite(n) for n in numbers)


def check_record(record: str, value: dict, edge: bool) -> None:
    """Raise InvalidField for the first field of `value` (a `record`) that breaks an invariant."""
    for field in NAME_FIELDS:
        if value.get(field) is not None:
            check_name(f"{record}.{field}", value[field])
    for field, item in value.items():
        if field.endswith("_json") and isinstance(item, str):
            check_json(f"{record}.{field}", item)
    if not edge:
        return
    for field, item in value.items():
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidField(f"field '{record}.{field}' is {item}: numbers must be finite")
        if isinstance(item, dict) and not all_finite(item.values()):
            for key, number in item.items():
                if isinstance(number, float) and not math.isfinite(number):
                    raise InvalidField(f"field '{record}.{field}[{key[:80]!r}]' is {number}: numbers must be finite")
