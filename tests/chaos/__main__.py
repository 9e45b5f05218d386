"""scripts/chaos: run the reliability scenarios against local brokers they start, print a table and write
var/chaos/report.json (one object per scenario: name, sent, acknowledged, read_back, lost, duplicated,
out_of_order, passed, notes, seconds). Exit 1 if any scenario failed."""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from functools import partial
from pathlib import Path

from services.bus.settings import PROJECT_ROOT

from . import scenarios, shard_scenarios
from .checker import ScenarioResult, report_json, table

SCENARIOS = {
    "broker-crash": scenarios.broker_crash,
    "broker-crash-3-nodes": partial(scenarios.broker_crash, nodes=3),
    "service-crash": scenarios.service_crash,
    "zombie": scenarios.zombie,
    "poison-input": scenarios.poison_input,
    "bad-datasets": scenarios.bad_datasets,
    "slow-consumer": scenarios.slow_consumer,
    "scale-out-in": scenarios.scale_out_in,
    "three-brokers": scenarios.three_brokers,
    "disk-config-faults": scenarios.disk_and_config_faults,
    "valid-but-hostile": scenarios.valid_but_hostile,
    "recovery-drill": scenarios.recovery_drill,
    "shard-moved": shard_scenarios.shard_moved,
    "broker-crash-audited": shard_scenarios.broker_crash_audited,
}


def run(names: list[str], scale: float, workdir: Path) -> list[ScenarioResult]:
    results = []
    for name in names:
        print(f"[chaos] {name} (scale {scale}) …", flush=True)
        scenario_dir = workdir / name
        shutil.rmtree(scenario_dir, ignore_errors=True)
        started = time.monotonic()
        try:
            outcome = SCENARIOS[name](scenario_dir, scale)
            outcome.seconds = time.monotonic() - started      # the whole scenario: brokers, set-up, fault, check
        except Exception as error:       # a scenario that could not finish is a failed scenario, said so
            outcome = ScenarioResult(name=name, sent=0, acknowledged=0, read_back=0, lost=0, duplicated=0,
                                     out_of_order=0, passed=False, seconds=time.monotonic() - started,
                                     notes=[f"did not finish: {type(error).__name__}: {error}"])
            traceback.print_exc()
        print(f"[chaos] {name}: {'passed' if outcome.passed else 'FAILED'} in {outcome.seconds:.0f} s "
              f"(lost {outcome.lost}, duplicated {outcome.duplicated}, out of order {outcome.out_of_order})",
              flush=True)
        results.append(outcome)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], metavar="SCENARIO",
                        help=f"which to run (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every count (1.0 = 100,000 requests etc.; 0.05 for a quick look)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "var" / "chaos",
                        help="report and working directory (default var/chaos)")
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(names, args.scale, args.out / "work")
    (args.out / "report.json").write_text(report_json(results) + "\n")
    print()
    print(table(results))
    print(f"\nreport: {args.out / 'report.json'}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
