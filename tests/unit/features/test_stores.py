"""The feature store's stores (SQLite in a temporary folder, Parquet files) and its records on the bus."""
import random

import pytest

from services.adapters.feature_store import OnlineStore, value_from_record, value_record, view_from_record, views_record
from services.adapters import offline_store
from services.adapters.offline_store import OfflineStore, snapshot_digest
from services.domain.features_views import ViewsRefused, canonical
from services.domain.features_windows import aggregate, source_event
from tests.support.feature_views import LAST_AND_SUM, purchases_view

VIEW = purchases_view(*LAST_AND_SUM, "{name: purchases_1h, aggregate: count, window: 1h, slide: 15m}",
                      name="customer_purchases", entity="customer_id", event_time="purchased_at", lateness="5m",
                      owner="ana")
VIEWS = [VIEW]


def values(n: int = 120):
    events = [source_event(VIEW, {"customer_id": f"c{i % 7}", "amount": float(i), "purchased_at": i * 400_000},
                           0, "business.events", i % 2, i // 2) for i in range(n)]
    return aggregate(VIEW, events).values


def test_a_view_goes_through_its_record_unchanged_and_a_record_that_lies_about_it_is_refused():
    record = views_record(VIEW, "cli:ana")
    assert canonical(view_from_record(record)) == canonical(VIEW)
    assert view_from_record(record).version == VIEW.version
    for field, lie in (("version", "0" * 64), ("view", "other"), ("source_kind", None), ("owner", "bob")):
        with pytest.raises(ViewsRefused, match=field):
            view_from_record({**record, field: lie})
    for hostile in ("not json", "[1, 2]", '{"name": "../../etc"}', "[" * 100_000):
        with pytest.raises(ViewsRefused):
            view_from_record({**record, "definition_json": hostile})


def test_offline_parts_written_twice_read_once_and_until_keeps_what_a_run_saw(tmp_path):
    made = values()
    store = OfflineStore(tmp_path)
    store.write(made[:200], "a")
    store.write(made[150:], "b")          # overlapping: a part written again after a crash
    back = store.read(VIEW.name, VIEW.version)
    assert sorted(map(repr, back)) == sorted(map(repr, made))
    assert snapshot_digest(back) == snapshot_digest(reversed(made))
    until = {("business.events", 0): 20, ("business.events", 1): 20}
    seen = store.read(VIEW.name, VIEW.version, until)
    assert seen and all(s.last_offset <= 20 for v in seen for s in v.sources)
    assert {v for v in made if all(s.last_offset <= 20 for s in v.sources)} == set(seen)
    assert store.snapshot([VIEW])[1] == {("business.events", 0): 59, ("business.events", 1): 59}
    assert store.read(VIEW.name, "f" * 64) == []


def test_the_skew_checks_read_reads_again_only_the_parts_written_since(tmp_path, monkeypatch):
    """at_keys (every 5 min in the drift-watcher) keeps the parts it read: a second call reads none that is
    unchanged, a new or rewritten part is read, a removed one is no longer seen; each answer is a new store's."""
    made = values()
    store = OfflineStore(tmp_path)
    store.write(made[:100], "p0")
    store.write(made[100:200], "p1")
    read: list[str] = []
    real = offline_store._part
    monkeypatch.setattr(offline_store, "_part", lambda path: read.append(path.name) or real(path))
    keys = {(v.feature, v.entity, v.event_ms) for v in made[::3]}

    def checked(expected_reads: list[str]):
        read.clear()
        found = store.at_keys(VIEW.name, VIEW.version, keys)
        assert sorted(read) == expected_reads
        assert found == OfflineStore(tmp_path).at_keys(VIEW.name, VIEW.version, keys)
        return found

    assert checked(["p0.parquet", "p1.parquet"])[0]
    checked([])
    store.write(made[200:], "p2")
    checked(["p2.parquet"])
    store.write(made[:50], "p0")            # written again, other values
    checked(["p0.parquet"])
    next(tmp_path.rglob("p1.parquet")).unlink()
    found, _ = checked([])
    assert found and set(found) <= set(made[:50] + made[200:])          # p1's values are gone with it


def test_the_online_store_keeps_the_newest_value_whatever_the_order_it_is_given(tmp_path):
    made = list(values())
    shuffled = made[:]
    random.Random(7).shuffle(shuffled)
    store = OnlineStore(f"sqlite:///{tmp_path / 'features.db'}")
    for start in range(0, len(shuffled), 37):
        store.put(shuffled[start:start + 37])
    again = store.put(made)              # a redelivered batch: its newest values, again, nothing older
    newest = {}
    for value in made:
        key = (value.feature, value.entity)
        if key not in newest or (value.event_ms, max((s.last_offset for s in value.sources), default=-1)) > \
                (newest[key].event_ms, max((s.last_offset for s in newest[key].sources), default=-1)):
            newest[key] = value
    held = store.get(VIEW.name, VIEW.version, "c3")
    assert sorted(map(repr, held)) == sorted(repr(v) for k, v in newest.items() if k[1] == "c3")
    assert len(store.all(VIEW.name)) == len(newest)
    assert sorted(map(repr, again)) == sorted(map(repr, newest.values()))


def test_a_feature_value_goes_through_its_avro_record_unchanged():
    for value in values(30):
        assert value_from_record(value_record(value)) == value


def test_the_store_reads_its_own_text_as_the_edge_would_and_leaves_any_other_text_to_the_edge():
    from services.adapters import feature_store as fs
    from services.bus.edge import content
    from services.domain.features_windows import SourceSpan

    def edge(text):
        try:
            return ("ok", type(content(text)[0]).__name__, repr(content(text)[0]))
        except Exception as refusal:        # noqa: BLE001 — the same failure on both sides
            return ("refused", type(refusal).__name__)

    def ours(text):
        try:
            found = fs._value(text)
            return ("ok", type(found).__name__, repr(found))
        except Exception as refusal:        # noqa: BLE001 — the same failure on both sides
            return ("refused", type(refusal).__name__)
    scalars = [None, True, False, 0, -0, 1, -5, 2 ** 63 - 1, -2 ** 63, 2 ** 63, 10 ** 30, 1.5, -0.0, 3.0, 1e16, 1e-300,
               1.7976931348623157e308, 123456789.123456789, "", "abc", 'a"b', "é", "x\\y", "\u202e", "a\tb", "a" * 5000]
    for scalar in scalars:
        text = fs._value_json(scalar)
        assert ours(text) == edge(text), text[:40]
    for text in ("[1e999]", "[NaN]", "[01]", "[1.]", '["a\x00"]', "[[1]]", "[1,2]", "[]", "{}", "x"):
        assert ours(text) == edge(text), text
    spans = [(), (SourceSpan("business.events", 0, 1, 5, 3),),
             (SourceSpan("a", 2, -1, 2 ** 63 - 1, 1), SourceSpan("b-c_d.e", 1, 0, 0, 0)),
             (SourceSpan("x y", 0, 0, 0, 0),), (SourceSpan("é", 0, 0, 0, 0),)]
    for given in spans:
        assert fs._sources(fs._sources_json(given)) == given
    for text in ('[["a",01,2,3,4]]', '[["a",1,2,3]]', '[["a",1,2,3,4]', '[["a",1,2,3,4]]x', '[["a",1.5,2,3,4]]',
                 '[["a",1,2,3,9223372036854775808]]', '[["a",1,2,3,4],]', '[["a\\u0062",1,2,3,4]]'):
        assert fs._stored_sources(text) is None, text


def test_a_sqlite_file_is_read_through_a_kept_connection_with_the_same_values_as_sqlalchemy(tmp_path):
    from services.domain.features_windows import FeatureValue, SourceSpan
    store = OnlineStore(f"sqlite:///{tmp_path / 'features.db'}")
    assert store._raw
    made = list(values())
    store.put(made)
    odd = [FeatureValue(VIEW.name, VIEW.version, name, "c3", 10 ** 12, value, None,
                        (SourceSpan("business.events", 0, 1, 2, 2),))
           for name, value in [("s", 'a"b\\é'), ("n", None), ("b", True), ("i", -2 ** 63), ("f", -0.5)]]
    store.put(odd)
    for entity in ("c0", "c3", "nobody"):
        fast = store.get(VIEW.name, VIEW.version, entity)
        store._raw = False
        slow = store.get(VIEW.name, VIEW.version, entity)
        store._raw = True
        assert list(map(repr, fast)) == list(map(repr, slow))
    newer = FeatureValue(VIEW.name, VIEW.version, "s", "c3", 10 ** 12 + 1, "later", None, ())
    store.put([newer])                   # a value put after a lookup: the kept connection sees it
    assert newer in store.get(VIEW.name, VIEW.version, "c3")
    store.close()
    memory = OnlineStore("sqlite://")
    assert not memory._raw
    memory.put(odd)
    assert sorted(map(repr, memory.get(VIEW.name, VIEW.version, "c3"))) == sorted(map(repr, odd))
