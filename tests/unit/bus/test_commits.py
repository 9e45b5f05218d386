"""At-least-once offsets between the flush and the broker's confirmation: nothing confirmed is sent again,
nothing refused is forgotten, a revoked partition's owed offset is committed before it goes, and offsets only
move forward."""
from hypothesis import given, strategies as st

from services.bus.commits import OffsetsToCommit

A, B = ("requests", 0), ("requests", 1)


def test_a_confirmed_commit_is_not_sent_again():
    offsets = OffsetsToCommit()
    offsets.add({A: 10, B: 4})
    assert offsets.send_async() == {A: 10, B: 4}
    offsets.settled({A: 10, B: 4})
    assert offsets.send_async() == {} and offsets.owed() == {}


def test_a_refused_commit_is_sent_with_the_next_unless_newer_offsets_came():
    offsets = OffsetsToCommit()
    offsets.add({A: 10, B: 4})
    sent = offsets.send_async()
    offsets.add({A: 20})                        # the next batch, while the first commit is in flight
    offsets.refused(sent)
    assert offsets.send_async() == {A: 20, B: 4}


def test_what_a_revoked_partition_owes_includes_what_is_in_flight():
    offsets = OffsetsToCommit()
    offsets.add({A: 10, B: 4})
    offsets.send_async()
    offsets.add({A: 12})
    assert offsets.owed({A}) == {A: 12}
    offsets.settled({A: 12})
    offsets.forget({A})
    assert offsets.owed() == {B: 4}


def test_a_late_refusal_for_a_partition_already_revoked_is_forgotten():
    offsets = OffsetsToCommit()
    offsets.add({A: 10})
    sent = offsets.send_async()
    offsets.forget({A})
    offsets.refused(sent)
    assert offsets.owed() == {}


def test_an_older_confirmation_leaves_a_newer_offset_owed():
    offsets = OffsetsToCommit()
    offsets.add({A: 10})
    offsets.send_async()
    offsets.add({A: 15})
    offsets.send_async()
    offsets.settled({A: 10})
    assert offsets.owed() == {A: 15}


steps = st.lists(st.tuples(st.sampled_from(["add", "send", "confirm", "refuse"]), st.integers(0, 1),
                           st.integers(1, 5)), max_size=40)


@given(steps)
def test_the_owed_offset_is_the_newest_unconfirmed_one(plan):
    offsets, sent_batches, newest, confirmed = OffsetsToCommit(), [], {}, {}
    for action, partition, step in plan:
        key = ("t", partition)
        if action == "add":
            newest[key] = newest.get(key, 0) + step
            offsets.add({key: newest[key]})
        elif action == "send":
            if batch := offsets.send_async():
                sent_batches.append(batch)
        elif sent_batches:
            batch = sent_batches.pop(0)
            if action == "confirm":
                offsets.settled(batch)
                for k, o in batch.items():
                    confirmed[k] = max(o, confirmed.get(k, 0))
            else:
                offsets.refused(batch)
    for key, offset in newest.items():
        if confirmed.get(key, 0) < offset:
            assert offsets.owed().get(key) == offset          # never lost
        else:
            assert key not in offsets.owed()                  # never committed twice once confirmed
