"""The edge: what a decoded record must also be before any code acts on it, checked once where it enters.

Avro says a field is a string or a double; these rules say what the platform needs of it. A violation is
InvalidField (a BadInput) naming the field, so the record goes to its topic's DLQ — or is skipped by a
rebuild or a follower — before any handler, fold or projection sees it (docs/hostile-input.md):

- a record's bytes are at most 1 MiB decompressed (a topic's cap counts them compressed: a megabyte of one
  letter compresses to kilobytes);
- names (`model`, `dataset`) are identifiers — never a path such as `../DataBatch`, never empty;
- no string anywhere holds NUL (a database refuses it); identifiers (`…_id`, `…_by`, `signer`, …) and map
  keys hold no control or bidirectional-override character and are at most 256 characters; other text at
  most 256 KiB;
- keys, signatures and hashes are well-formed: base64 of the right length, hex of the right length;
- a `…_json` field (settings, evidence, fairness figures) is a JSON object or array of at most 1 MiB,
  nested at most 32 deep, with at most 100,000 values, every number finite and within a 64-bit integer's
  range. It is parsed here, once: the record carries the parsed value (`content`), and no other code parses
  record content (tests/unit/test_architecture.py keeps it so);
- on *edge* topics, which people and applications write (a producer `role:…`, `app` or `every` in
  topics.yaml), every double — at the top, in a map or in an array — is finite: no NaN or ±inf reaches a
  threshold, a metric or a feature matrix.

Paths are confined where they are used (datastore.confined_file), since the store's root is a setting.
"""
from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
from itertools import accumulate
from typing import Any

from .catalogue import Topic
from .errors import BadInput

NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_])?")
NAME_FIELDS = ("model", "dataset")
OUTSIDERS = ("app", "every")

MAX_RECORD_BYTES = 1 << 20   # a record's bytes, decompressed (a topic caps only the compressed batch)
MAX_JSON_CHARS = 1 << 20
MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 100_000
MAX_TEXT = 256 * 1024
MAX_IDENTIFIER = 256
LONG_RANGE = 2 ** 63
# C0 and C1 controls (tab, newline and carriage return only in free text), DEL, bidirectional overrides
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
NUL = "\x00"
SEPARATOR = "\uffff"          # joins map keys for one search (a noncharacter: never in a key that passes)
IDENTIFIER_FIELDS = {"signer", "principal", "variant", "kind", "sink", "sink_type", "severity", "source",
                     "name", "task", "target", "estimator", "status", "alias", "stage", "outcome", "action",
                     "format", "phase", "strategy"}
HEX = re.compile(r"[0-9a-f]+")
# field → what its text is: base64 of so many bytes, or hex of so many digits
FORMATS: dict[str, tuple[str, int]] = {
    "public_key": ("base64", 32), "signature": ("base64", 64), "signer_key": ("hex", 32),
    "key_id": ("hex", 32), "fingerprint": ("hex", 16), "hash": ("hex", 64), "prev_hash": ("hex", 64),
    "root_hash": ("hex", 64)}


class InvalidField(BadInput, ValueError):
    """A record whose field breaks an invariant (the field is named in the message); a ValueError too, as a
    bad value is to code that parses one."""

    stage = "validate"


class JsonText(str):
    """A `…_json` field's text, carrying the value the edge parsed from it (`content` reads it)."""

    parsed: Any

    def __new__(cls, text: str, parsed: Any) -> "JsonText":
        made = super().__new__(cls, text)
        made.parsed = parsed
        return made


def is_edge(topic: Topic) -> bool:
    """Whether people or applications write the topic (its records are checked for finite numbers)."""
    return any(p in OUTSIDERS or p.startswith("role:") for p in topic.producers)


def is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME.fullmatch(value) is not None and ".." not in value


def check_name(field: str, value: Any) -> None:
    if not is_name(value):
        raise InvalidField(f"field {field!r}: {str(value)[:80]!r} is not a name (letters, digits, . _ -, "
                           f"at most 128, no '..')")


def content(text: str | None, default: Any = None) -> Any:
    """The parsed value of a `…_json` field: what the edge parsed, or (text made elsewhere, e.g. a database row
    the registry wrote) parsed now within the same bounds. Empty or missing text is `default` ({} if None)."""
    if isinstance(text, JsonText):
        return copy.deepcopy(text.parsed)       # the caller's own: a change must not reach the record
    if not text:
        return {} if default is None else default
    return read_json("content", text)


def read_json(field: str, text: str) -> Any:
    """Parse a `…_json` field's text within the edge's bounds (InvalidField naming `field` otherwise): an object
    or array, at most MAX_JSON_CHARS, nested at most MAX_JSON_DEPTH, every number finite and in range."""
    if len(text) > MAX_JSON_CHARS:
        raise InvalidField(f"field {field!r} holds {len(text):,} characters of JSON (at most {MAX_JSON_CHARS:,})")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidField(f"field {field!r} nests JSON {depth} deep (at most {MAX_JSON_DEPTH})")
    try:
        parsed = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_long)
    except InvalidField as refusal:
        raise InvalidField(f"field {field!r}: {refusal}") from None
    except (ValueError, RecursionError):
        raise InvalidField(f"field {field!r} is not JSON: {text[:80]!r}") from None
    if not isinstance(parsed, (dict, list)):
        raise InvalidField(f"field {field!r} must be a JSON object or array, not {text[:80]!r}")
    problem = _json_problem(parsed)
    if problem:
        raise InvalidField(f"field {field!r}: {problem}")
    return parsed


def json_depth(text: str) -> int:
    """How deep the JSON text's arrays and objects nest (brackets inside strings do not count), in C-speed
    passes: a nesting json.loads would meet as RecursionError is measured without recursing."""
    brackets = re.sub(r"[^\[\]{}]", "", re.sub(r'"(?:[^"\\]|\\.)*"', "", text, flags=re.S))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def _no_constant(name: str) -> Any:
    raise InvalidField(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidField(f"{text[:40]} is past a double's range")
    return number


def _long(text: str) -> int:
    if len(text) > 20 or not -LONG_RANGE <= (number := int(text)) < LONG_RANGE:
        raise InvalidField(f"{text[:40]} is past a 64-bit integer's range")
    return number


def _json_problem(parsed: Any) -> str | None:
    """Too many values, or a NUL in a string or key, anywhere in a parsed JSON value (walked without recursion)."""
    stack, seen = [parsed], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_JSON_VALUES:
            return f"more than {MAX_JSON_VALUES:,} JSON values"
        if isinstance(item, dict):
            if any(NUL in key for key in item):
                return "a key holds NUL"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and NUL in item:
            return "a string holds NUL"
    return None


def all_finite(numbers) -> bool:
    """Whether no float among `numbers` (a collection: read twice when in doubt) is NaN or ±inf (other values pass).
    math.fsum of finite numbers is finite, and raises OverflowError where their exact sum is past a float: one
    C call for a request's feature map instead of a test per value (a fifth of the scorer's per-row decode);
    anything else — a value that is not a number, an overflow, inf beside -inf — is looked at value by value."""
    try:
        return math.isfinite(math.fsum(numbers))
    except (TypeError, ValueError, OverflowError):         # ValueError: inf and -inf both there
        return all(not isinstance(n, float) or math.isfinite(n) for n in numbers)


def check_record(record: str, value: dict, edge: bool) -> None:
    """Raise InvalidField for the first field of `value` (a `record`) that breaks an invariant; a `…_json`
    field's text is replaced by a JsonText carrying its parsed value."""
    for field in NAME_FIELDS:
        if value.get(field) is not None:
            check_name(f"{record}.{field}", value[field])
    for field, item in value.items():
        _check_field(f"{record}.{field}", field, item, edge)
        if field.endswith("_json") and isinstance(item, str):
            value[field] = JsonText(item, read_json(f"{record}.{field}", item))


def _check_field(path: str, field: str, item: Any, edge: bool) -> None:
    if isinstance(item, str):
        _check_text(path, field, item)
    elif isinstance(item, float):
        if edge and not math.isfinite(item):
            raise InvalidField(f"field {path!r} is {item}: numbers must be finite")
    elif isinstance(item, dict):
        _check_map(path, item, edge)
    elif isinstance(item, list):
        if edge and not all_finite(item):
            raise InvalidField(f"field {path!r} holds a number that is not finite")
        for index, element in enumerate(item):
            if isinstance(element, (str, dict, list)):
                _check_field(f"{path}[{index}]", field, element, edge)


def _check_text(path: str, field: str, text: str) -> None:
    identifier = field in IDENTIFIER_FIELDS or field.endswith(("_id", "_by", "_ids"))
    if field.endswith("_json"):
        limit = MAX_JSON_CHARS
    else:
        limit = MAX_IDENTIFIER if identifier or field in FORMATS else MAX_TEXT
    if len(text) > limit:
        raise InvalidField(f"field {path!r} holds {len(text):,} characters (at most {limit:,})")
    if NUL in text:
        raise InvalidField(f"field {path!r} holds a NUL character")
    if identifier and CONTROL.search(text):
        raise InvalidField(f"field {path!r}: {text[:80]!r} holds a control or direction character")
    if field in FORMATS:
        _check_format(path, field, text)


def _check_format(path: str, field: str, text: str) -> None:
    kind, size = FORMATS[field]
    if kind == "hex":
        if len(text) != size or not HEX.fullmatch(text):
            raise InvalidField(f"field {path!r} must be {size} lowercase hex digits, not {text[:80]!r}")
        return
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidField(f"field {path!r} is not base64: {text[:80]!r}") from None
    if len(decoded) != size:
        raise InvalidField(f"field {path!r} must be base64 of {size} bytes, not {len(decoded)}")


def _check_map(path: str, mapping: dict, edge: bool) -> None:
    if not mapping:
        return
    keys = SEPARATOR.join(mapping)
    if "" in mapping or max(map(len, mapping)) > MAX_IDENTIFIER or CONTROL.search(keys) or \
            keys.count(SEPARATOR) != len(mapping) - 1:
        bad = next(k for k in mapping if not k or len(k) > MAX_IDENTIFIER or CONTROL.search(k) or SEPARATOR in k)
        raise InvalidField(f"field {path!r} has a key {bad[:80]!r} that is empty, longer than {MAX_IDENTIFIER} "
                           "or holds a control character")
    try:                                    # a map of numbers (a request's features): one C call for all
        numeric, finite = True, math.isfinite(math.fsum(mapping.values()))
    except TypeError:                       # not only numbers: looked at value by value
        numeric, finite = False, all_finite(mapping.values())
    except (ValueError, OverflowError):
        numeric, finite = True, False
    if edge and not finite:
        for key, number in mapping.items():
            if isinstance(number, float) and not math.isfinite(number):
                raise InvalidField(f"field '{path}[{key[:80]!r}]' is {number}: numbers must be finite")
    if not numeric:
        for key, item in mapping.items():
            if isinstance(item, (str, dict, list)):
                _check_field(f"{path}[{key[:80]!r}]", "", item, edge)
