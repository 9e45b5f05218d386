"""Why a served prediction was what it was, from the record alone: the archived artifact (hash-checked) applied
again to the request's archived features — the same input shaping and prediction code as the scorer
(services/domain/serving.py) — checked against what was served, and the prediction's feature attributions
(services/domain/attributions.py). `reproduce_all` does the first for every served prediction in audit.log."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

from services.domain import REDACTED, Audited, load_servable, predict, request_frame

TOLERANCE = 1e-9        # a reproduced probability or value within this of the served one is the same prediction


def unreadable(request: dict | None) -> str | None:
    """Why a request's features cannot be used again, or None."""
    if request is None:
        return "audit.log holds no request for it"
    if request.get("erased"):
        return f"its personal data was erased on {request['erased']['at']:%Y-%m-%d} by {request['erased']['by']}"
    if request.get("personal_data") == "redacted":
        return f"its personal data is {REDACTED.strip('[]')}"
    if request.get("personal_data") == "sealed":
        return "its personal data is sealed (audit.keys holds no key for it)"
    return None


def difference(served: dict, labels, probabilities, classes: list[str], row: int, task: str) -> float | None:
    """The largest gap between the served and the reproduced answer (None: the labels differ)."""
    if task != "classification":
        return abs(float(labels[row]) - served["score"])
    if str(labels[row]) != served["label"]:
        return None
    again = dict(zip(classes, probabilities[row].tolist()))
    return max(abs(again.get(k, float("nan")) - v) for k, v in served["probabilities"].items())


def why(trained: dict, served: dict, request: dict, load: Callable[[str, str], object]) -> dict:
    """The reproduction of one served prediction and its attributions."""
    from services.domain import attribution        # shap: loaded by the command that needs it
    model = load_servable(trained, load)
    frame = request_frame([request], trained["features"], trained.get("categorical_features") or ())
    labels, probabilities, classes = predict(model, frame, trained["task"])
    gap = difference(served, labels, probabilities, classes, 0, trained["task"])
    return {"reproduced": {"label": str(labels[0]) if trained["task"] == "classification" else None,
                           "probabilities": dict(zip(classes, probabilities[0].tolist())) if classes else {},
                           "value": None if classes else float(labels[0])},
            "equal": gap is not None and gap <= TOLERANCE, "max_difference": gap,
            "artifact_sha256": trained["artifact_sha256"],
            "attribution": attribution(model, frame, trained["task"], trained.get("feature_profile"))}


def reproduce_all(events: list[Audited], load: Callable[[str, str], object], model: str | None = None) -> list[dict]:
    """Every served prediction in the log applied again, per version: counts equal / different / not reproducible
    (and why), the largest gap, and up to five ids of those that differ."""
    trained = {(e.value["model"], e.value["version"]): e.value for e in events if e.record == "mlbus.ModelTrained"}
    requests = {e.value["request_id"]: e for e in events if e.record == "mlbus.InferenceRequest"}
    work: dict[tuple[str, int], list[tuple[dict, Audited | None]]] = defaultdict(list)
    for e in events:
        if e.record == "mlbus.Prediction" and e.value["served"] and e.value["version"] is not None \
                and not e.value["error"] and model in (None, e.value["model"]):
            work[(e.value["model"], e.value["version"])].append((e.value, requests.get(e.value["request_id"])))
    report = []
    for (name, version), items in sorted(work.items()):
        version_record = trained.get((name, version))
        usable = [(p, r.value) for p, r in items if r is not None and r.personal in (None, "readable")]
        skipped: dict[str, int] = defaultdict(int)
        for _, r in items:
            if r is None or r.personal not in (None, "readable"):
                skipped["no request" if r is None else r.personal] += 1      # erased, or sealed without the key
        line = {"model": name, "version": version, "predictions": len(items), "equal": 0, "different": [],
                "not_reproducible": dict(skipped), "max_difference": 0.0}
        if version_record is None or not usable:
            report.append(line)
            continue
        fitted = load_servable(version_record, load)
        frame = request_frame([r for _, r in usable], version_record["features"],
                              version_record.get("categorical_features") or ())
        labels, probabilities, classes = predict(fitted, frame, version_record["task"])
        for row, (served, _) in enumerate(usable):
            gap = difference(served, labels, probabilities, classes, row, version_record["task"])
            if gap is not None and gap <= TOLERANCE:
                line["equal"] += 1
                line["max_difference"] = max(line["max_difference"], gap)
            else:
                line["different"].append(served["request_id"])
        report.append(line)
    return report
