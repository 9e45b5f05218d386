"""Red team, round two: OfflineStore.at_keys against read() filtered to the keys, with ties, duplicates, odd names."""
from __future__ import annotations

import tempfile
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from services.adapters.offline_store import OfflineStore
from services.domain import skew
from services.domain.features_windows import FeatureValue, SourceSpan
from tests.unit.features.test_join import VIEW, TOPIC, HOUR

ENTITIES = ["a", ".*", "a|b", "é", "e\u0301", "😀", "[x]", "\\d+", "a\nb", " a", "A"]
POOL = [(SourceSpan(TOPIC, p, f, last, 1),) for p in (0, 1) for f, last in ((1, 5), (3, 5), (6, 6))]


@st.composite
def history(draw):
    return [FeatureValue(VIEW.name, VIEW.version, draw(st.sampled_from([f.name for f in VIEW.features])),
                         draw(st.sampled_from(ENTITIES)), draw(st.sampled_from([0, 1, HOUR, 2**62])),
                         draw(st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=2, alphabet="ab"))),
                         draw(st.sampled_from([None, 0, 7])), draw(st.sampled_from(POOL)))
            for _ in range(draw(st.integers(0, 25)))]


KEYS = st.sets(st.tuples(st.sampled_from([f.name for f in VIEW.features] + ["nope", ".*"]),
                         st.sampled_from(ENTITIES + ["zz"]), st.sampled_from([0, 1, HOUR, 2**62, 5])), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history(), st.integers(1, 3), KEYS)
def test_at_keys_is_read_filtered_to_the_keys(values, nparts, keys):
    with tempfile.TemporaryDirectory() as folder:
        store = OfflineStore(folder)
        for i in range(nparts):
            if values[i::nparts]:
                store.write(values[i::nparts], f"p{i}")
        if not values:
            store.write([FeatureValue(VIEW.name, VIEW.version, "last_amount", "q", 9, 1, None, POOL[0])], "p0")
        everything = store.read(VIEW.name, VIEW.version)
        found, positions = store.at_keys(VIEW.name, VIEW.version, keys)
        assert found == [v for v in everything if (v.feature, v.entity, v.event_ms) in keys]
        assert positions == store.snapshot([VIEW])[1]


def test_at_keys_of_20000_keys_among_ties_is_read_filtered():
    with tempfile.TemporaryDirectory() as folder:
        store = OfflineStore(folder)
        values = [FeatureValue(VIEW.name, VIEW.version, "last_amount", f"e{i % 5000}", HOUR * (i // 5000), float(i),
                               None, (SourceSpan(TOPIC, i % 2, i, i, 1),)) for i in range(40_000)]
        store.write(values, "p0")
        store.write(values[:20_000], "p1")                                  # written again
        store.write([FeatureValue(v.view, v.view_version, v.feature, v.entity, v.event_ms, -1.0, None,
                                  (SourceSpan(TOPIC, 0, 10**6 + i, 10**6 + i, 1),))
                     for i, v in enumerate(values[:20_000])], "p2")      # tied, other sources
        keys = {(v.feature, v.entity, v.event_ms) for v in values[10_000:30_000]}
        started = time.perf_counter()
        found, _ = store.at_keys(VIEW.name, VIEW.version, keys)
        print("at_keys 20,000 keys", round(time.perf_counter() - started, 2), "s")
        everything = store.read(VIEW.name, VIEW.version)
        assert found == [v for v in everything if (v.feature, v.entity, v.event_ms) in keys]
        online = [FeatureValue(VIEW.name, VIEW.version, "last_amount", e, t, 0.0, None,
                               (SourceSpan(TOPIC, 0, 1, 1, 1),))
                  for (_, e, t) in list(keys)[:3000]]
        a, b = skew(online, found, _), skew(online, everything, _)
        assert (a.compared, len(a.mismatches), len(a.pending)) == (b.compared, len(b.mismatches), len(b.pending))


def test_at_keys_of_no_keys():
    with tempfile.TemporaryDirectory() as folder:
        store = OfflineStore(folder)
        store.write([FeatureValue(VIEW.name, VIEW.version, "last_amount", "q", 9, 1, None, POOL[0])], "p0")
        assert store.at_keys(VIEW.name, VIEW.version, set())[0] == []
        assert store.at_keys(VIEW.name, VIEW.version, [])[0] == []
