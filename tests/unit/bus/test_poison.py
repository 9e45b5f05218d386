"""The poison budget's decisions: strikes, suspects, the refusal after `budget` crashes, and the state file."""
from services.bus.poison import DIED, PoisonFile, PoisonLedger

A = ("t", 0, 10)
B = ("t", 0, 11)
C = ("t", 1, 5)


def test_a_crash_with_several_messages_in_flight_makes_them_suspects_without_a_strike():
    ledger = PoisonLedger(budget=3)
    ledger.begin([A, B, C])
    ledger.crashed("KeyError: 'model'")
    assert ledger.strikes == {}
    assert all(ledger.is_suspect(at) for at in (A, B, C))
    assert not ledger.is_suspect(("t", 0, 12)) and not ledger.is_suspect(("t", 2, 10))


def test_a_message_that_crashes_alone_budget_times_is_refused_with_the_last_error():
    ledger = PoisonLedger(budget=2)
    for error in ("TypeError: first", "TypeError: second"):
        assert ledger.exhausted(A) is None
        ledger.begin([A])
        ledger.crashed(error)
    refusal = ledger.exhausted(A)
    assert refusal is not None and refusal.stage == "handler"
    assert "2 times" in str(refusal) and "TypeError: second" in str(refusal)


def test_a_suspect_handled_alone_is_cleared_and_the_range_shrinks_from_its_start():
    ledger = PoisonLedger()
    ledger.begin([A, B])
    ledger.crashed("boom")
    ledger.begin([A])
    ledger.finished()
    assert not ledger.is_suspect(A) and ledger.is_suspect(B)
    ledger.begin([B])
    ledger.finished()
    assert ledger.empty


def test_the_file_counts_a_mark_left_in_flight_as_a_death_at_the_next_start(tmp_path):
    path = tmp_path / "state" / "svc.poison.json"
    first = PoisonFile(path, budget=1)
    first.begin([A])                        # and the process is killed here: nothing clears the mark
    second = PoisonFile(path, budget=1)
    assert second.ledger.in_flight == []
    refusal = second.ledger.exhausted(A)
    assert refusal is not None and DIED in str(refusal)


def test_the_file_disappears_once_nothing_is_owed(tmp_path):
    path = tmp_path / "svc.poison.json"
    ledger_file = PoisonFile(path, budget=3)
    ledger_file.begin([A, B])
    assert path.exists()
    ledger_file.finished()
    assert not path.exists()


def test_a_ledger_survives_its_json_form():
    ledger = PoisonLedger(budget=3)
    ledger.begin([A, B])
    ledger.crashed("x")
    ledger.begin([A])
    ledger.crashed("y")
    again = PoisonLedger.from_json(ledger.to_json(), budget=3)
    assert again == ledger


def test_what_is_in_flight_is_kept_as_one_span_per_partition():
    ledger = PoisonLedger()
    ledger.begin([("t", 0, o) for o in range(100, 600)] + [("t", 1, 7)])
    assert sorted(ledger.in_flight) == [("t", 0, 100, 599), ("t", 1, 7, 7)]
    assert len(str(ledger.to_json())) < 100
