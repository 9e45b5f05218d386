"""One figure of the benchmark report, and how repeated runs become one (pure)."""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    ratio: float | None = None        # value / peer_value (higher is better), or peer / value for times
    goal: str = ""
    met: bool | None = None
    spread: str = ""                  # min–max of the counted runs
    notes: str = ""

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Runs:
    """The counted runs of one measurement (after the warm-up)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> str:
        return f"{number(min(self.values))}–{number(max(self.values))}"


def measure(run: Callable[[], float], counted: int = 3, warmup: int = 1) -> Runs:
    for _ in range(warmup):
        run()
    return Runs(tuple(run() for _ in range(counted)))


def measure_pair(ours: Callable[[], float], theirs: Callable[[], float], counted: int = 3,
                 warmup: int = 1) -> tuple[Runs, Runs]:
    """Both sides warmed up, then their runs interleaved, so both see the same machine (tight loops)."""
    for _ in range(warmup):
        ours(), theirs()
    pairs = [(ours(), theirs()) for _ in range(counted)]
    return Runs(tuple(a for a, _ in pairs)), Runs(tuple(b for _, b in pairs))


def compare(name: str, ours: Runs, unit: str, peer: str | None = None, theirs: Runs | None = None,
            higher_is_better: bool = True, goal_ratio: float | None = None, goal: str = "",
            notes: str = "") -> Figure:
    """A figure with its ratio to the peer (how many times better mlbus is: >1 is better) and whether the
    goal ratio is met."""
    ratio = None
    if theirs is not None and theirs.median > 0 and ours.median > 0:
        ratio = ours.median / theirs.median if higher_is_better else theirs.median / ours.median
    met = None if goal_ratio is None or ratio is None else ratio >= goal_ratio
    return Figure(name=name, value=ours.median, unit=unit, peer=peer,
                  peer_value=theirs.median if theirs else None, ratio=ratio, goal=goal, met=met,
                  spread=ours.spread, notes=notes)


def absolute(name: str, ours: Runs, unit: str, goal: str = "", met: bool | None = None, notes: str = "") -> Figure:
    return Figure(name=name, value=ours.median, unit=unit, goal=goal, met=met, spread=ours.spread, notes=notes)


def markdown(figures: list[Figure]) -> str:
    lines = ["| figure | mlbus | runs (min–max) | peer | peer value | ratio | goal | met |",
             "|---|---|---|---|---|---|---|---|"]
    for f in figures:
        peer_value = "" if f.peer_value is None else number(f.peer_value)
        ratio = "" if f.ratio is None else f"{f.ratio:,.3g}×"
        met = "" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.name} | {number(f.value)} {f.unit} | {f.spread} | {f.peer or ''} | {peer_value} | "
                     f"{ratio} | {f.goal} | {met} |")
    lines += [f"- {f.name}: {f.notes}" for f in figures if f.notes]
    return "\n".join(lines)


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def results_json(figures: list[Figure]) -> str:
    return json.dumps([f.as_json() for f in figures], indent=2)
