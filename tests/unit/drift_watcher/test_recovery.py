"""A kill -9 of the drift-watcher at any point: its table comes back as any prefix of the changelog faust wrote,
its outputs as any that went out after the last flush before that prefix ended, its input from any offset
faust committed. Whatever the point, the windows it reports are the windows it would have reported without
the kill — each once, with every row — and its table ends as it would have.

Class: "a table changed a key at a time, recovered from a prefix" (staged.py). The windows close by rows and by
time (ticks), requests come twice, predictions and outcomes (with sensitive groups, judged for fairness) come
late, so every kind of change an observation makes is cut somewhere."""
from __future__ import annotations

import asyncio
import collections
import json

from hypothesis import given, settings, strategies as st

from services.drift_watcher.router import TICK_HEADER
from tests.support.drift import NOW, training_frame
from tests.support.drift_agent import Agent, ChangelogTable, Observation, bus_without_broker, folded_versions

BUS = bus_without_broker()
MODEL = "m"
MONITORING = '{"window_rows": 4, "min_rows": 1, "window_seconds": 30}'
FAIRNESS = json.dumps({"segment": {"groups": {}, "positive_class": "yes", "min_group_size": 1}})
VERSIONS = folded_versions(BUS, MODEL, MONITORING, FAIRNESS)
ROWS = training_frame(200, seed=3).to_dict("records")
START_S = 1_800_000_000.0
STEPS = st.lists(st.sampled_from(["request", "request", "request", "prediction", "outcome", "again", "tick"]),
                 min_size=1, max_size=28)


def observations(steps: list[str]) -> list[Observation]:
    """The router's output for one model: step i at offset i, one second apart; a tick 31 s past its time."""
    found, requests = [], 0
    for offset, step in enumerate(steps):
        at_s = START_S + offset
        if step == "tick":
            found.append(Observation(MODEL, b"", offset, at_s, [(TICK_HEADER, str(int(at_s * 1000) + 31_000))]))
            continue
        if step == "request" or not requests:
            record, value = "mlbus.InferenceRequest", request(requests)
            requests += 1
        elif step == "again":
            record, value = "mlbus.InferenceRequest", request(requests - 1)
        elif step == "prediction":
            record, value = "mlbus.Prediction", prediction(requests - 1)
        else:
            record, value = "mlbus.Outcome", outcome(max(requests - 3, 0))
        found.append(Observation(MODEL, BUS.schemas.encode(record, value), offset, at_s))
    return found


def request(i: int) -> dict:
    return {"request_id": f"r{i}", "entity_id": f"e{i}", "model": MODEL, "features": ROWS[i % len(ROWS)],
            "categories": {"segment": "ab"[i % 2]}, "sent_at": NOW}


def prediction(i: int) -> dict:
    return {"prediction_id": f"p{i}", "request_id": f"r{i}", "entity_id": f"e{i}", "model": MODEL, "version": 1,
            "variant": "champion", "served": True, "label": "yes" if i % 3 else "no", "score": 0.7,
            "probabilities": {}, "latency_ms": 1.0, "deployment_id": "dep-1", "error": None, "predicted_at": NOW}


def outcome(i: int) -> dict:
    return {"outcome_id": f"o{i}", "request_id": f"r{i}", "entity_id": f"e{i}", "model": MODEL,
            "label": "yes" if i % 2 else "no", "value": None, "observed_at": NOW}


def take(agent: Agent, events: list[Observation]) -> list[int]:
    """Each observation through the agent (raising, unlike faust's loop); the changelog's length after each."""
    ends = []

    async def run() -> None:
        for event in events:
            await agent.watcher.observe_one(event)
            ends.append(len(agent.table.changelog))
    asyncio.run(run())
    return ends


def essence(event) -> tuple:
    """An output without what the window's random nonce makes (its id, the ids it names)."""
    if event.record == "mlbus.DriftReport":
        value = {k: v for k, v in event.value.items() if k != "report_id"}
        return event.record, value["window_id"], value["version"], json.dumps(value, sort_keys=True, default=str)
    return event.record, event.value.get("kind", ""), event.value.get("model", "")


def without_nonces(table: dict) -> dict:
    """The table without the nonces heads draw and what holds them (the head's changes, retraining's report ids)."""
    def plain(key: str, value):
        if key.startswith("head|"):
            return {k: v for k, v in value.items() if k not in ("nonce", "changes")}
        if key.startswith("retrain|"):
            return {**value, "drifted_windows": len(value["drifted_windows"])}
        return value
    return {key: plain(key, value) for key, value in table.items()}


class Run:
    """One whole run without a kill: its agent, and the changelog's length after each observation."""

    def __init__(self, events: list[Observation]):
        self.events, self.agent = events, Agent(BUS, VERSIONS, ChangelogTable())
        self.ends = take(self.agent, events)


def killed_at(run: Run, cut: int, sent: int | None = None, committed: int | None = None) -> None:
    """The whole run, then a run restarted from the changelog's first `cut` entries, with the first `sent`
    outputs out (at least those acknowledged before the cut's last entry was written, at most those out at the
    last flush within it: None, the most) and its input read again from offset `committed` (at most the first
    observation not wholly in the cut: faust commits after it flushed the changelog; None, the most): the
    outputs on the topics and the table compared to the whole run's."""
    whole, ends, events = run.agent, run.ends, run.events
    least = sum(1 for before in whole.sent_before if before < cut)
    most = sum(1 for at in whole.sent_at if at <= cut)
    readable = sum(1 for end in ends if end <= cut)
    sent = most if sent is None else min(max(sent, least), most)
    committed = readable if committed is None else min(committed, readable)
    restarted = Agent(BUS, VERSIONS, ChangelogTable(whole.table.changelog[:cut]),
                      {(e.record, e.id) for e in whole.sent[:sent]})
    take(restarted, events[committed:])
    on_topic = whole.sent[:sent] + restarted.sent
    reports = collections.Counter((e.value["window_id"], e.value["version"]) for e in on_topic
                                  if e.record == "mlbus.DriftReport")
    assert max(reports.values(), default=1) == 1, ("a window reported twice", cut, sent, committed, reports)
    assert sorted(map(essence, on_topic)) == sorted(map(essence, whole.sent)), (cut, sent, committed)
    assert without_nonces(restarted.table) == without_nonces(whole.table), (cut, sent, committed)


def test_a_kill_after_any_change_of_the_changelog_leaves_windows_and_table_as_without_it():
    """Every cut of one run that closes windows by rows and by time, with duplicates and late outcomes: the
    outputs that had gone out and the input read again from the committed offset, both at their most and least."""
    steps = ["request", "prediction", "request", "again", "prediction", "outcome", "request", "request",
             "prediction", "request", "tick", "request", "outcome", "prediction", "request", "request", "again",
             "request", "outcome", "tick", "request", "prediction", "outcome"]
    run = Run(observations(steps))
    whole = run.agent
    rows = [e.value["rows"] for e in whole.sent if e.record == "mlbus.DriftReport"]
    assert 4 in rows and min(rows) < 4 and len(rows) >= 3, ("windows closed by rows and by time", rows)
    assert any(key.startswith("window|") for key in whole.table), "closed windows kept for the duplicates"
    for cut in range(len(whole.table.changelog) + 1):
        for sent, committed in ((None, None), (0, 0)):
            killed_at(run, cut, sent, committed)


@settings(max_examples=40, deadline=None)
@given(steps=STEPS, data=st.data())
def test_any_run_killed_anywhere_reports_each_window_once_with_every_row(steps, data):
    run = Run(observations(steps))
    cut = data.draw(st.integers(0, len(run.agent.table.changelog)), label="cut")
    killed_at(run, cut, data.draw(st.integers(0, len(run.agent.sent)), label="sent"),
              data.draw(st.integers(0, len(run.events)), label="committed"))


def test_a_window_past_the_changelogs_message_size_writes_no_value_that_grows_with_it():
    """Rows, their ids and judged outcomes each under a key of their own, and the head a count of them: a window
    of 3,000 requests with outcomes writes no changelog value above a few kB (one value per window made it
    MBs: a message the broker refuses, and a watcher that stops on it at every start)."""
    many = json.dumps({"window_rows": 3_000, "min_rows": 1, "window_seconds": 3_600})
    agent = Agent(BUS, folded_versions(BUS, MODEL, many, FAIRNESS), ChangelogTable())
    events = []
    for i in range(3_000):
        events.append(Observation(MODEL, BUS.schemas.encode("mlbus.InferenceRequest", request(i)), 3 * i,
                                  START_S + i))
        events.append(Observation(MODEL, BUS.schemas.encode("mlbus.Prediction", prediction(i)), 3 * i + 1,
                                  START_S + i))
        events.append(Observation(MODEL, BUS.schemas.encode("mlbus.Outcome", outcome(i)), 3 * i + 2, START_S + i))
    take(agent, events)
    [report] = [e for e in agent.sent if e.record == "mlbus.DriftReport"]
    assert report.value["rows"] == 3_000 and json.loads(report.value["fairness_json"])
    largest = max(len(json.dumps(value)) for _, value in agent.table.changelog)
    assert largest < 4_000, largest
    assert agent.table[f"row|{MODEL}|0|r2999"] == {"id": "r2999"}, "a closed window's rows kept as their ids"


def test_a_window_the_code_raises_on_is_skipped_and_the_next_ones_close(monkeypatch):
    """Class: anything a close raises (a report the decide layer cannot make). The window is skipped and counted
    as poison, the model's next windows close: before, the head stayed on it and every later observation of the
    model closed it again, and raised again."""
    from services.bus.metrics import POISON
    from services.drift_watcher import app

    real = app.drift_report

    def raising_on_the_first_window(window, *args, **kwargs):
        if window.seq == 0:
            raise ValueError("a report this code cannot make")
        return real(window, *args, **kwargs)
    monkeypatch.setattr(app, "drift_report", raising_on_the_first_window)
    skipped = POISON.labels(app.SOURCE, "window", f"{MODEL}/w000000")
    before = skipped._value.get()
    run = Run(observations(["request"] * 12))
    assert skipped._value.get() == before + 1
    reports = [e.value["window_id"] for e in run.agent.sent if e.record == "mlbus.DriftReport"]
    assert reports == [f"{MODEL}/w000001", f"{MODEL}/w000002"], reports
