"""The benchmark report's arithmetic: medians, spreads, ratios and whether a goal is met."""
import json

from tests.bench.figures import Runs, absolute, compare, markdown, results_json


def test_a_rate_ratio_is_ours_over_theirs_and_a_time_ratio_theirs_over_ours():
    faster = compare("rows", Runs((90.0, 100.0, 120.0)), "rows/s", "peer", Runs((1.0, 1.0, 1.0)), goal_ratio=100)
    assert faster.value == 100.0 and faster.ratio == 100.0 and faster.met and faster.spread == "90–120"
    slower = compare("time", Runs((2.0, 2.0, 2.0)), "s", "peer", Runs((10.0,)), higher_is_better=False, goal_ratio=10)
    assert slower.ratio == 5.0 and slower.met is False


def test_results_carry_every_field_the_report_promises():
    figures = [compare("x", Runs((1.0,)), "s", "p", Runs((2.0,)), higher_is_better=False, goal_ratio=1.5, goal="≥ 1.5×"),
               absolute("p99", Runs((40.0, 45.0, 60.0)), "ms", "≤ 50 ms", True)]
    [first, second] = json.loads(results_json(figures))
    assert {"name", "value", "unit", "peer", "peer_value", "ratio", "goal", "met"} <= set(first)
    assert first["met"] is True and second["peer"] is None and second["value"] == 45.0
    assert "| p99 | 45 ms | 40–60 |" in markdown(figures)


def test_the_pipes_phases_are_reported_as_median_batch_and_percentiles(tmp_path):
    from tests.bench.pipe import pipe_phases
    timings = tmp_path / "pipe.jsonl"
    assert pipe_phases(timings) == "phases not recorded"
    timings.write_text("".join(json.dumps([size, 0.001, 0.002 * size, 0.004]) + "\n" for size in range(1, 101)))
    assert pipe_phases(timings) == ("100 batches of 51 (median); p50/p99 ms: produce 1.0/1.0, offsets/flush 102.0/200.0, "
                                    "commit 4.0/4.0")
