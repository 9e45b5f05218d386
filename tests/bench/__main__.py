"""scripts/bench: mlbus side by side with its peers and with the limits of each stage, on this machine, in
one run. Each benchmark runs a warm-up and ≥ 3 counted runs (median, min–max); writes
var/bench/results.json (one object per figure: name, value, unit, peer, peer_value, ratio, goal, met) and
var/bench/results.md, and prints the table. Peers live in var/bench-peers and var/bench-peers-feast (installed
on first use)."""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from services.bus import Bus
from services.bus.settings import PROJECT_ROOT, Settings

from . import (audit, audit_scale, batch, codec, console, drift, features, keep_pace, orchestration, peers, registry,
               scale, scoring, training, validation)
from .figures import Figure, markdown, results_json

BENCHMARKS = ("scoring", "codec", "drift", "validation", "audit", "orchestration", "console", "batch", "registry",
              "scale", "keep-pace", "audit-scale", "training", "features")


def run(name: str, workdir: Path, quick: bool, counted: int) -> list[Figure]:
    if name == "codec":
        return codec.benchmarks(Bus.from_settings(Settings.from_env({"MLBUS_BOOTSTRAP": "unused:0"})), quick, counted)
    module = {"scoring": scoring, "drift": drift, "validation": validation, "audit": audit,
              "orchestration": orchestration, "console": console, "batch": batch, "registry": registry,
              "scale": scale, "keep-pace": keep_pace, "audit-scale": audit_scale, "training": training,
              "features": features}[name]
    return module.benchmarks(workdir / name, quick, counted)


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmarks", nargs="*", choices=[[], *BENCHMARKS], metavar="BENCHMARK",
                        help=f"which to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, one counted run: a smoke test")
    parser.add_argument("--runs", type=int, default=3, help="counted runs after the warm-up (default 3)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "var" / "bench", help="results folder")
    args = parser.parse_args()
    counted = 1 if args.quick else max(3, args.runs)
    names = args.benchmarks or list(BENCHMARKS)
    if set(names) & {"scoring", "drift", "validation"}:
        peers.ensure()
    figures, failed = [], []
    for name in names:
        print(f"[bench] {name} …", flush=True)
        started = time.monotonic()
        try:
            found = run(name, args.out / "work", args.quick, counted)
        except Exception as error:           # a benchmark that cannot finish is reported, the others go on
            traceback.print_exc()
            failed.append(f"{name}: {type(error).__name__}: {error}")
            continue
        print(markdown(found), f"\n[bench] {name} took {time.monotonic() - started:.0f} s", flush=True)
        figures += found
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(results_json(figures) + "\n")
    table = markdown(figures)
    (args.out / "results.md").write_text(table + "\n")
    print("\n" + table)
    for failure in failed:
        print(f"[bench] FAILED {failure}")
    print(f"\nresults: {args.out / 'results.json'}, {args.out / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
