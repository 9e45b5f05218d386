"""The chaos checker's counting: lost, duplicated, out of order, unexpected — the figures the report gives."""
from tests.chaos.checker import ScenarioResult, Sent, report_json, result, table, tally

SENT = [Sent(f"e{i}", f"k{i % 2}", i) for i in range(6)]        # k0: e0 e2 e4, k1: e1 e3 e5


def test_everything_read_once_in_order_counts_nothing_wrong():
    counts = tally(SENT, [s.id for s in SENT], ["e0", "e1", "e2", "e3", "e4", "e5"])
    assert (counts.lost, counts.duplicated, counts.out_of_order, counts.unexpected) == (0, 0, 0, 0)
    assert (counts.sent, counts.acknowledged, counts.read_back) == (6, 6, 6)


def test_an_acknowledged_event_never_read_is_lost_but_an_unacknowledged_one_is_not():
    counts = tally(SENT, ["e0", "e1", "e2", "e3"], ["e0", "e1", "e3"])
    assert counts.lost == 1                  # e2: acknowledged, missing; e4, e5 were never acknowledged


def test_each_extra_copy_counts_as_a_duplicate():
    counts = tally(SENT, [s.id for s in SENT], ["e0", "e0", "e0", "e1", "e2", "e3", "e4", "e5", "e5"])
    assert counts.duplicated == 3 and counts.read_back == 9 and counts.lost == 0


def test_order_is_judged_per_key_and_a_late_redelivery_is_not_a_reordering():
    # k0 read e4 before e2: one out of order; k1 interleaved with k0 freely; e0 again at the end is a duplicate.
    counts = tally(SENT, [s.id for s in SENT], ["e1", "e0", "e4", "e3", "e2", "e5", "e0"])
    assert counts.out_of_order == 1 and counts.duplicated == 1


def test_read_back_events_never_sent_fail_the_scenario():
    counts = tally(SENT[:2], ["e0", "e1"], ["e0", "e1", "ghost"])
    assert counts.unexpected == 1
    outcome = result("x", counts, passed=True, notes=[])
    assert not outcome.passed and "never sent" in outcome.notes[0]


def test_table_and_json_carry_every_reported_field():
    outcome = ScenarioResult("broker crash", 10, 9, 9, 0, 0, 0, True, ["broker down 5 s"], 12.3)
    assert '"out_of_order": 0' in report_json([outcome]) and '"notes": [' in report_json([outcome])
    lines = table([outcome]).splitlines()
    assert lines[2].startswith("| broker crash | 10 | 9 | 9 | 0 | 0 | 0 | yes | 12 |")
    assert lines[-1] == "- **broker crash**: broker down 5 s"


def test_a_transactional_id_is_placed_where_the_broker_logged_it():
    """Placements the brokers logged ("Initialized transactionalId … on partition __transaction_state-N", six
    partitions; the registry's hashCode is negative), and the one string whose hashCode is Integer.MIN_VALUE."""
    from tests.chaos.harness import coordinator_partition
    logged = {"c9516a00d.mlbus.scorer.0": 4, "c904ba3bf.mlbus.scorer.0": 3, "c904ba3bf.mlbus.registry.0": 4}
    assert {key: coordinator_partition(key, 6) for key in logged} == logged
    assert coordinator_partition("", 6) == 0 and coordinator_partition("polygenelubricants", 50) == 0   # MIN_VALUE
