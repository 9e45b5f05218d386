"""read_ahead: batches read in a thread of their own come out in order; a reader's error is raised in the
caller's thread; leaving early stops the reader and runs the source's own clean-up (a consumer closed)."""
import pytest

from services.bus.replay import read_ahead


def source(n: int, closed: list, fail_at: int | None = None):
    try:
        for i in range(n):
            if i == fail_at:
                raise RuntimeError(f"broker gone at {i}")
            yield [i]
    finally:
        closed.append(True)


def test_every_batch_in_order():
    closed = []
    assert list(read_ahead(source(50, closed), depth=3)) == [[i] for i in range(50)]
    assert closed == [True]


def test_the_readers_error_is_raised_here():
    closed = []
    with pytest.raises(RuntimeError, match="broker gone at 7"):
        list(read_ahead(source(50, closed, fail_at=7)))
    assert closed == [True]


def test_leaving_early_stops_the_reader_and_closes_the_source():
    closed = []
    ahead = read_ahead(source(10_000, closed), depth=2)
    assert next(ahead) == [0] and next(ahead) == [1]
    ahead.close()
    assert closed == [True]
