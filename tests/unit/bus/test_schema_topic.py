"""The schemas topic resolver: an entry that does not hash to its fingerprint is refused, a timeout backs off."""
import json
from types import SimpleNamespace

from services.bus import schema_topic
from services.bus.codec import SchemaCatalogue
from services.bus.settings import PROJECT_ROOT

CATALOGUE = SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas")
REAL = CATALOGUE.schema("mlbus.Outcome")
FAKE_BUS = SimpleNamespace(catalogue=SimpleNamespace(for_schema=lambda name: SimpleNamespace(name="schemas")))


def entry(fingerprint: str, schema_json: str):
    return SimpleNamespace(record=schema_topic.SCHEMA_RECORD,
                           value={"fingerprint": fingerprint, "schema_json": schema_json})


def resolver_reading(monkeypatch, *answers):
    calls = iter(answers)

    def read_topics(bus, topics, timeout_s):
        answer = next(calls)
        if isinstance(answer, Exception):
            raise answer
        return iter(answer)
    monkeypatch.setattr(schema_topic, "read_topics", read_topics)
    return schema_topic.SchemasTopicResolver(FAKE_BUS)


def test_entries_that_do_not_parse_or_do_not_match_their_fingerprint_stay_unknown(monkeypatch):
    other = CATALOGUE.schema("mlbus.Alert")
    resolver = resolver_reading(monkeypatch, [
        entry(REAL.fingerprint_hex, json.dumps(REAL.parsed)),
        entry("00" * 8, "{not json"),
        entry("11" * 8, json.dumps(other.parsed)),          # a real schema under another fingerprint
    ])
    resolver.refresh()
    assert resolver.known == {REAL.fingerprint: json.dumps(REAL.parsed)}


def test_a_true_entry_after_a_lying_one_for_the_same_fingerprint_is_learned(monkeypatch):
    lie = entry(REAL.fingerprint_hex, json.dumps(CATALOGUE.schema("mlbus.Alert").parsed))
    resolver = resolver_reading(monkeypatch, [lie], [lie, entry(REAL.fingerprint_hex, json.dumps(REAL.parsed))])
    resolver.refresh()
    assert REAL.fingerprint not in resolver.known
    resolver.refresh()
    assert REAL.fingerprint in resolver.known


def test_a_topic_too_long_to_read_in_time_leaves_fingerprints_unknown_and_backs_off(monkeypatch):
    """A flooded schemas topic is no crash: the fingerprint stays unknown (its messages are dead-lettered), and
    the topic is not read again until BACK_OFF_S have passed; then it is."""
    now = [1000.0]
    monkeypatch.setattr(schema_topic.time, "monotonic", lambda: now[0])
    resolver = resolver_reading(monkeypatch, TimeoutError("flooded"), [entry(REAL.fingerprint_hex,
                                                                             json.dumps(REAL.parsed))])
    assert resolver(REAL.fingerprint) is None
    now[0] += schema_topic.BACK_OFF_S - 1
    assert resolver(REAL.fingerprint) is None                  # not read again yet (the second answer waits)
    now[0] += 2
    assert resolver(REAL.fingerprint) == json.dumps(REAL.parsed)
