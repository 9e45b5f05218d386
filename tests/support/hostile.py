"""Schema-valid, hostile records: hypothesis strategies built from each topic's Avro schema.

Every value encodes with the topic's schema (Avro cannot refuse it), and draws lean towards what breaks
code that trusts its input: empty and huge strings, path-like names, control and right-to-left characters,
JSON that is not JSON, NaN and ±inf, the extremes of int and long, empty and large maps and arrays, and
references to models, versions and datasets that do not exist. `records_for` also mixes in records of
another type, as a confused or malicious producer would send them."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from services.bus.context import Bus

HOSTILE_STRINGS = ["", " ", "../DataBatch", "../../etc/passwd", "/dev/zero", "file:///dev/zero",
                   "file:///etc/passwd", "C:\\Windows\\system32", "no-such-model", "no_such_dataset", "v999",
                   "\u202eevil", "名前", "\x00", "\n", "a" * 5_000, "%s%s%n", "'; DROP TABLE versions; --",
                   '{"C": -1}', '{"max_iter": "many"}', "{not json", "[]", "null", "NaN", "-1", "1e999"]
HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, -1.0, 0.0]
INT_BOUNDS = {"int": (-(2 ** 31), 2 ** 31 - 1), "long": (-(2 ** 63), 2 ** 63 - 1)}

MiB = 1 << 20
# What a `…_json` field may hold from a hostile sender: nesting past any recursion limit, a megabyte and more,
# numbers JSON does not allow or a double cannot hold, NUL in a key, too many values — and ordinary settings.
HOSTILE_JSON = ["[" * 100_000 + "]" * 100_000, '{"a":' * 40 + "1" + "}" * 40, "[" * 33 + "]" * 33,
                "[" + "1," * 120_000 + "1]", '{"x": "' + "a" * MiB + '"}', "[1e400]", "[-1e400]", "[NaN]",
                '{"x": Infinity}', "[" + "9" * 5000 + "]", '{"\u0000": 1}', '["\u0000"]', "{}", "[]",
                '{"C": -1}', '{"max_iter": "many"}', '{"combine": "mean", "members": ["../x"]}',
                '{"a": {"b": {"c": [1, 2, {"d": null}]}}}', '{"roc_auc": 1e308}', "[[[[[[[[]]]]]]]]"]
HUGE_STRINGS = ["a" * MiB, "\u202e" * 1000, "\x00" * 100_000]
# Times at both ends of what an Avro long holds (fastavro writes an int as it is into a timestamp-millis field).
EXTREME_TIMES = [-(2 ** 63), 2 ** 63 - 1, -1, 0, 253_402_300_800_000]

strings = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=24), st.sampled_from(HUGE_STRINGS))
json_texts = st.one_of(st.sampled_from(HOSTILE_JSON), strings)
floats = st.one_of(st.sampled_from(HOSTILE_FLOATS), st.floats(allow_nan=True, allow_infinity=True))


def integers(kind: str) -> st.SearchStrategy[int]:
    low, high = INT_BOUNDS[kind]
    return st.one_of(st.sampled_from([low, -1, 0, 1, 2, 999, high]), st.integers(low, high))


PRIMITIVES: dict[str, st.SearchStrategy] = {
    "string": strings, "double": floats, "float": st.sampled_from([0.0, -1.0, 1e30, math.nan, math.inf]),
    "int": integers("int"), "long": integers("long"), "boolean": st.booleans(),
    "bytes": st.one_of(st.binary(max_size=32), st.just(b"\x00" * 10_000)), "null": st.none()}
TIMES = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc))
HOSTILE_TIMES = st.one_of(TIMES, st.sampled_from(EXTREME_TIMES))


def strategy_for(schema: Any, depth: int = 0, times: st.SearchStrategy = TIMES) -> st.SearchStrategy:
    """A strategy of data valid for a parsed (expanded) Avro schema; large arrays and maps at the top level only
    (nested ones multiply: a profile of 50 columns of 50 quantiles each is slow to draw and says nothing more).
    times: what a timestamp field holds (HOSTILE_TIMES: also raw longs at both ends of the range, which
    decode to no datetime at all)."""
    if isinstance(schema, list):
        return st.one_of([strategy_for(member, depth, times) for member in schema])
    if isinstance(schema, str):
        return PRIMITIVES[schema]
    if schema.get("logicalType") == "timestamp-millis":
        return times
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: json_texts if f["name"].endswith("_json") and _is_string(f["type"])
                                      else strategy_for(f["type"], depth + 1, times) for f in schema["fields"]})
    large = depth <= 1 and not _nests(schema)
    if kind == "array":
        items = strategy_for(schema["items"], depth + 1, times)
        small = st.lists(items, max_size=3)
        return st.one_of(small, st.lists(items, min_size=40, max_size=60)) if large else small
    if kind == "map":
        values = strategy_for(schema["values"], depth + 1, times)
        keys = st.one_of(strings, st.sampled_from(["", "k" * 100_000, "\u202eevil", "a\x00b"]))
        small = st.dictionaries(keys, values, max_size=3)
        return st.one_of(small, st.dictionaries(st.text(min_size=1, max_size=8), values, min_size=40,
                                                max_size=60)) if large else small
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    return strategy_for(kind, depth, times)


def _is_string(avro_type: Any) -> bool:
    return avro_type == "string" or (isinstance(avro_type, dict) and avro_type.get("type") == "string")


def _nests(schema: dict) -> bool:
    """Whether an array's items or a map's values are records (large collections of them are slow to draw)."""
    inner = schema.get("items", schema.get("values"))
    members = inner if isinstance(inner, list) else [inner]
    return any(isinstance(m, dict) and m.get("type") == "record" for m in members)


def examples(strategy: st.SearchStrategy, count: int, seed_value: int = 0) -> list:
    """`count` draws of a strategy, the same ones every run (hypothesis drives the generation)."""
    found: list = []

    @seed(seed_value)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found[:count]


def records_for(bus: Bus, topic: str, count: int, seed_value: int = 0, wrong_type_every: int = 10,
                times: st.SearchStrategy = TIMES) -> list[tuple[str, dict]]:
    """(record type, value) pairs for a topic: its own type, and every `wrong_type_every`-th of another type."""
    own = bus.catalogue[topic].schema
    others = sorted({t.schema for t in bus.catalogue if t.schema and t.schema != own})
    drawn = examples(strategy_for(bus.schemas.schema(own).parsed, times=times), count, seed_value)
    pairs = []
    for i, value in enumerate(drawn):
        if wrong_type_every and i % wrong_type_every == wrong_type_every - 1:
            other = others[(seed_value + i) % len(others)]
            pairs.append((other, examples(strategy_for(bus.schemas.schema(other).parsed, times=times), 1,
                                          seed_value + i)[0]))
        else:
            pairs.append((own, value))
    return pairs
