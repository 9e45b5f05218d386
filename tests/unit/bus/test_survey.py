"""consumed.survey reads a batch in one pass: the same positions, spans, counts and errors as reading each message
on its own (poison.spans, the offsets to commit, the per-topic counts)."""
from hypothesis import given, settings, strategies as st

from services.bus.consumed import position, survey
from services.bus.poison import spans


class Consumed:
    def __init__(self, topic, partition, offset, error=None):
        self._at, self._error = (topic, partition, offset), error

    def topic(self): return self._at[0]
    def partition(self): return self._at[1]
    def offset(self): return self._at[2]
    def error(self): return self._error


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.integers(1, 4), st.booleans()),
                max_size=40))
def test_one_pass_finds_what_each_message_says(steps):
    offsets: dict = {}
    batch = []
    for topic, partition, gap, failed in steps:         # each partition's offsets rise, as a consumer returns them
        offsets[(topic, partition)] = offsets.get((topic, partition), 0) + gap
        batch.append(Consumed(topic, partition, offsets[(topic, partition)], "error" if failed else None))
    found = survey(batch)
    good = [m for m in batch if m.error() is None]
    assert found.good == good and found.errors == ["error"] * (len(batch) - len(good))
    assert sorted(found.spans) == sorted(spans([position(m) for m in good]))
    assert found.next_offsets() == {position(m)[:2]: position(m)[2] + 1 for m in good}
    assert found.per_topic == {t: sum(m.topic() == t for m in good) for t in {m.topic() for m in good}}
