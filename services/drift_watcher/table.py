"""A model's windows in the drift-watcher's table: the keys, and what a request, a prediction, an outcome and a
closing window change under them. Pure: any mapping is a table here (faust's in the app, a changelog in tests).

    head|MODEL                the open window's head (windows.py), with its observation's changes (staged.py)
    row|MODEL|SEQ|r3, p3, j3  a window's request, prediction or judged outcome (kept as ids once it closed)
    seen|MODEL|ID             an observation's id → its window: one delivered twice is counted once
    served|MODEL|REQUEST      predictions of a request awaiting its outcome (at most MAX_SERVED)
    groups|MODEL|REQUEST      a request's sensitive groups, awaiting its outcome
    window|MODEL|SEQ          a closed window's counts (which rows it had), until it is forgotten
    retrain|MODEL             the retraining run (decide.RetrainState)

Every key names its model, so each is written only from the model's partition and its changelog is one.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .decide import ClosedWindow, as_frame
from .staged import Staged
from .windows import MAX_JUDGED, groups_of, judged_entry, new_head, outcome_amount, with_outcome, with_prediction, \
    with_request

SEEN_WINDOWS = 10          # a duplicate more than this many windows after its original is counted again
MAX_SERVED = 16            # predictions of one request awaiting its outcome (champion, challengers, shadows)
COLLECT = "collect"        # a head's field: the window just closed, whose rows collect() shrinks
ABOUT_AN_ID = ("seen", "groups", "served")


def head_key(model: str) -> str:
    return f"head|{model}"


def row_key(model: str, seq: int, kind: str, index: int) -> str:
    """One request (kind r), prediction (kind p) or judged outcome (kind j) of a window."""
    return f"row|{model}|{seq}|{kind}{index}"


def id_key(kind: str, model: str, id_: str) -> str:
    """What is kept about one request or prediction id (kind: one of ABOUT_AN_ID)."""
    return f"{kind}|{model}|{id_}"


def window_key(model: str, seq: int) -> str:
    return f"window|{model}|{seq}"


def retrain_key(model: str) -> str:
    return f"retrain|{model}"


def window_keys(model: str, seq: int, counts: dict) -> list[str]:
    """The keys of a window's requests and predictions, given its counts (a head, or window|MODEL|SEQ)."""
    return [row_key(model, seq, kind, i) for kind, count in (("r", counts["rows"]), ("p", counts["predictions"]))
            for i in range(count)]


def upgraded(staged: Staged, model: str, head: dict) -> dict:
    """A head the previous version wrote (its judged outcomes a list inside it, its window's ids keyed without the
    model), as this one writes it. Its closed windows' ids (ids|MODEL|SEQ) are forgotten by collect()."""
    if not isinstance(head["judged"], list):
        return head
    for i, entry in enumerate(head["judged"]):
        staged[row_key(model, head["seq"], "j", i)] = entry
    for key in window_keys(model, head["seq"], head):
        row = staged.get(key)
        for kind in ABOUT_AN_ID if row else ():
            if (value := staged.pop(f"{kind}|{row['id']}")) is not None:
                staged[id_key(kind, model, row["id"])] = value
    return {**head, "judged": len(head["judged"])}


def add_request(staged: Staged, model: str, head: dict, request: dict, at_ms: int, known: set[str],
                attributes: set[str]) -> dict:
    """known: the features any version was trained on (a request may carry any number); attributes: the sensitive
    ones its fairness is measured on."""
    seen = id_key("seen", model, request["request_id"])
    if staged.get(seen) is not None:
        return head                                   # delivered twice (a retry, a rebalance): counted once
    staged[row_key(model, head["seq"], "r", head["rows"])] = {
        "id": request["request_id"], "features": {f: v for f, v in request["features"].items() if f in known},
        "categories": {f: v for f, v in (request["categories"] or {}).items() if f in known}}
    staged[seen] = head["seq"]
    if attributes:                                   # its groups, for the fairness of its outcome's window
        staged[id_key("groups", model, request["request_id"])] = groups_of(request, attributes)
    return with_request(head, at_ms)


def add_prediction(staged: Staged, model: str, head: dict, prediction: dict) -> dict:
    seen = id_key("seen", model, prediction["prediction_id"])
    if prediction["version"] is None or prediction["error"] or staged.get(seen) is not None:
        return head
    entry = {"id": prediction["prediction_id"], "version": prediction["version"],
             "variant": prediction["variant"], "label": prediction["label"], "score": prediction["score"]}
    staged[seen] = head["seq"]
    staged[row_key(model, head["seq"], "p", head["predictions"])] = {**entry, "request": prediction["request_id"]}
    served = id_key("served", model, prediction["request_id"])
    awaiting = staged.get(served) or []
    if len(awaiting) < MAX_SERVED:                    # a request id a client sends again and again: bounded
        staged[served] = awaiting + [entry]
    return with_prediction(head)


def add_outcome(staged: Staged, model: str, head: dict, outcome: dict) -> dict:
    served = id_key("served", model, outcome["request_id"])
    groups = staged.pop(id_key("groups", model, outcome["request_id"]), None)
    for p in staged.get(served) or []:       # none: no prediction known, or its outcome already counted
        amount = outcome_amount(p["label"], p["score"], outcome)
        if amount is None:
            continue
        head = with_outcome(head, p["version"], p["variant"], amount)
        if groups is not None and head["judged"] < MAX_JUDGED:
            staged[row_key(model, head["seq"], "j", head["judged"])] = judged_entry(
                p["version"], p["variant"], groups, outcome["label"] if p["label"] is not None
                else outcome["value"], p["label"] if p["label"] is not None else p["score"])
            head = {**head, "judged": head["judged"] + 1}
    staged.pop(served, None)
    return head


def take_window(staged: Staged, model: str, head: dict, end_ms: int) -> ClosedWindow:
    """The window's rows, as frames (left in the table: collect() shrinks them once the head has moved on)."""
    def entries(kind: str, count: int) -> list[dict]:
        return [staged.get(row_key(model, head["seq"], kind, i)) for i in range(count)]
    requests, predictions = entries("r", head["rows"]), entries("p", head["predictions"])
    return ClosedWindow(model=model, seq=head["seq"], start_ms=head["start_ms"] or end_ms, end_ms=end_ms,
                        numeric=as_frame([r["features"] for r in requests]),
                        categorical=as_frame([r["categories"] for r in requests]),
                        predictions=as_frame(predictions), performance=head["performance"],
                        judged=entries("j", head["judged"]), nonce=head.get("nonce", ""))


def next_window(staged: Staged, model: str, head: dict, nonce: str) -> dict:
    """After the window closed: its counts kept (collect() reads them), and the next window's head, naming the
    closed one to collect."""
    staged[window_key(model, head["seq"])] = {kind: head[kind] for kind in ("rows", "predictions", "judged")}
    return {**new_head(head["seq"] + 1, nonce), COLLECT: head["seq"]}


def collect(table: MutableMapping[str, Any], model: str, seq: int) -> None:
    """After window seq closed and its head moved on: its rows shrunk to their ids and its judged outcomes
    dropped; the window SEEN_WINDOWS before it forgotten (redeliveries arrive within seconds), with the
    predictions still awaiting an outcome (one later than that is not counted), so the table stays bounded.
    Each step is a value or a deletion made in an order that leaves nothing unreachable, so after a kill it
    runs again (the app's head()) to the same end."""
    kept = table.get(window_key(model, seq))
    if kept:
        for key in window_keys(model, seq, kept):
            row = table.get(key)
            if row is not None and set(row) - {"id", "request"}:
                table[key] = {k: row[k] for k in ("id", "request") if k in row}
        for i in range(kept["judged"]):
            table.pop(row_key(model, seq, "j", i), None)
    old = seq - SEEN_WINDOWS
    if forgotten := table.get(window_key(model, old)):
        for key in window_keys(model, old, forgotten):
            row = table.get(key)
            if row is not None:
                for kind in ABOUT_AN_ID:
                    table.pop(id_key(kind, model, row["id"]), None)
                if "request" in row:            # a prediction: its request's may be gone, or never came
                    table.pop(id_key("served", model, row["request"]), None)
                table.pop(key, None)
        table.pop(window_key(model, old), None)
    legacy = f"ids|{model}|{old}"                # a window the previous version closed: its ids unprefixed
    for id_ in table.get(legacy) or []:
        for kind in ABOUT_AN_ID:
            table.pop(f"{kind}|{id_}", None)
    table.pop(legacy, None)
