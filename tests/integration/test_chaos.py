"""The reliability suite's fast subset on real local brokers (each scenario starts its own): the same code
as `scripts/chaos`, at small counts (and two leader kills instead of five). The long scenarios are marked
slow: `scripts/chaos` runs all fourteen at full size, `scripts/test -m slow tests/integration/test_chaos.py`
runs the long ones here."""
from __future__ import annotations

from functools import partial

import pytest

from tests.chaos import scenarios, shard_scenarios
from tests.chaos.checker import table
from tests.support.polling import LONG_STORY_S

# The broker crash runs on three nodes in the suite: on one node Kafka itself can complete a transaction killed
# mid-commit without its markers (docs/guarantees.md, "A single broker killed mid-commit"); that one runs with the
# long scenarios (scripts/chaos), where a failure names Kafka's skipped markers.
FAST = [("broker-crash-3-nodes", partial(scenarios.broker_crash, nodes=3), 0.05), ("zombie", scenarios.zombie, 0.1),
        ("poison-input", scenarios.poison_input, 0.05), ("disk-config-faults", scenarios.disk_and_config_faults, 1.0)]
LONG = [("broker-crash", scenarios.broker_crash, 0.05), ("service-crash", scenarios.service_crash, 0.25),
        ("slow-consumer", scenarios.slow_consumer, 0.2),
        ("bad-datasets", scenarios.bad_datasets, 0.1),        # ~1.5 min; test_validator and test_data_to_model too
        ("valid-but-hostile", scenarios.valid_but_hostile, 0.03),    # ~2.5 min; each hostile case has its own test
        ("scale-out-in", scenarios.scale_out_in, 0.2),
        ("three-brokers", partial(scenarios.three_brokers, kills=2), 0.05),
        ("recovery-drill", scenarios.recovery_drill, 0.1),     # ~2 min: kept out of the suite's 30
        ("shard-moved", shard_scenarios.shard_moved, 0.34),     # ~2.5 min; test_audit_shards kills a copy too
        ("broker-crash-audited", shard_scenarios.broker_crash_audited, 0.5)]    # ~3 min: issue 34's broker crash


def check(run, scale, tmp_path):
    outcome = run(tmp_path / "scenario", scale)
    print("\n" + table([outcome]))
    assert outcome.acknowledged > 0 and outcome.read_back > 0, outcome
    if not outcome.passed and any(note.startswith(scenarios.KAFKA_DROPPED_MARKERS) for note in outcome.notes):
        pytest.xfail(f"Kafka's own defect (docs/explanation/guarantees.md): {outcome}")
    assert outcome.passed and outcome.lost == 0 and outcome.duplicated == 0, outcome


@pytest.mark.timeout(LONG_STORY_S)
@pytest.mark.parametrize("name,run,scale", FAST, ids=[f[0] for f in FAST])
def test_fast_chaos_scenario_loses_and_duplicates_nothing(name, run, scale, tmp_path):
    check(run, scale, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,run,scale", LONG, ids=[f[0] for f in LONG])
def test_long_chaos_scenario_loses_and_duplicates_nothing(name, run, scale, tmp_path):
    check(run, scale, tmp_path)
