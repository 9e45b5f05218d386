"""Why a served prediction was what it was, from the record alone: the archived artifact (hash-checked) applied
again to the request's archived features, with the features the scorer looked up as the prediction records them
(Prediction.lookups) — the same input shaping and prediction code as the scorer (services/domain/serving.py,
features_serving.completed) — checked against what was served, and the prediction's feature attributions
(services/domain/attributions.py). `reproduce_all` does the first for every served prediction in audit.log."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

from services.domain import REDACTED, Audited, completed, load_servable, predict, request_frame

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


def model_input(trained: dict, served: dict, request: dict) -> dict:
    """The request as the model saw it: its own features and those looked up for it, as the prediction recorded."""
    return completed(request, served.get("lookups") or (), trained.get("categorical_features") or ())


def lookups_unreadable(trained: dict, served: dict, personal: str | None) -> str | None:
    """Why a prediction's looked-up features cannot be used again (its personal data not readable), or None."""
    if not trained.get("feature_views_json") or personal in (None, "readable"):
        return None
    return f"its looked-up features are {personal}" if isinstance(served.get("lookups"), list) else \
        "its looked-up features are not readable"


def lookup_lines(prediction: dict, views: list[dict]) -> list[str]:
    """explain's lines for the features looked up for a prediction: value, view version (and who defined it), age,
    or why it was missing."""
    looked = prediction.get("lookups")
    if not isinstance(looked, list):
        return [f"  looked-up features: {looked}"] if looked else []
    defined = {(v["view"], v["version"]): v["definition"] for v in views}
    lines = [f"  looked up for entity {looked[0]['entity']!r} at the request's time:"] if looked else []
    for x in looked:
        where = f"{x['view']} v{x['version'][:12]}"
        if definition := defined.get((x["view"], x["version"])):
            where += f" (defined by {definition['signer'] or definition['defined_by']} [#{_place(definition)}])"
        age = f", {duration(x['age_ms'])} old" if x["age_ms"] is not None else ""
        seen = x["value"] if x["value"] is not None else x["text"]
        said = f"{seen!r}" if not x["missing"] else f"missing ({x['missing']}: {x['reason'][:160]})"
        lines.append(f"    {x['view']}__{x['feature']:<20} {said} from {where}{age}")
    return lines


def duration(ms: int) -> str:
    """850 ms, 3.2 s, 4.1 min, 2.0 h, 3.5 d."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if abs(ms) >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms} ms"


def _place(cited: dict) -> str:
    return str(cited.get("audit_place") or cited["audit_sequence"])


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
    frame = request_frame([model_input(trained, served, request)], trained["features"],
                          trained.get("categorical_features") or ())
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
    work: dict[tuple[str, int], list[tuple[Audited, Audited | None]]] = defaultdict(list)
    for e in events:
        if e.record == "mlbus.Prediction" and e.value["served"] and e.value["version"] is not None \
                and not e.value["error"] and model in (None, e.value["model"]):
            work[(e.value["model"], e.value["version"])].append((e, requests.get(e.value["request_id"])))
    report = []
    for (name, version), items in sorted(work.items()):
        version_record = trained.get((name, version))
        skipped: dict[str, int] = defaultdict(int)
        usable = []
        for p, r in items:
            why_not = "no request" if r is None else r.personal if r.personal not in (None, "readable") else \
                lookups_unreadable(version_record or {}, p.value, p.personal)
            if why_not:
                skipped[why_not] += 1            # erased, or sealed without the key
            else:
                usable.append((p.value, r.value))
        line = {"model": name, "version": version, "predictions": len(items), "equal": 0, "different": [],
                "not_reproducible": dict(skipped), "max_difference": 0.0}
        if version_record is None or not usable:
            report.append(line)
            continue
        fitted = load_servable(version_record, load)
        frame = request_frame([model_input(version_record, p, r) for p, r in usable], version_record["features"],
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
