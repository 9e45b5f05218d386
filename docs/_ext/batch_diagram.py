"""Writes docs/img/batch-to-model.svg, the architecture page's picture of one data batch to a deployed model: a
sequence diagram drawn here, nothing downloaded. Run it after changing the flow: python docs/_ext/batch_diagram.py"""
from __future__ import annotations

from html import escape
from pathlib import Path

LANES = ["dana (CLI)", "validator", "trainer", "registry", "ana (CLI)", "deployer", "scorer", "app"]
PEOPLE = {"dana (CLI)", "ana (CLI)", "app"}
STEPS = [  # (from lane, to lane, topic or "" for work inside a service, what it carries or does)
    (0, 1, "data.batches", "DataBatch: uri, sha256, signed by dana"),
    (1, 1, "", "re-hash the file, check the contract"),
    (1, 2, "data.validated", "DataValidated: passed, column profile"),
    (2, 2, "training.requests", "reason new-data; fit the grid, cross-validate, save the artifact"),
    (2, 3, "models.trained", "ModelTrained: metrics, lineage, artifact sha256"),
    (3, 3, "models.lifecycle", "registered: the policy wants a named approver"),
    (4, 3, "approvals", "ApprovalSubmitted, signed by ana"),
    (3, 5, "models.lifecycle", "approved: signature, approver and four-eyes checked"),
    (5, 5, "", "re-hash the artifact"),
    (5, 6, "deployments", "DeploymentChanged: replace, 100 %, completed"),
    (5, 3, "deployments", "the registry promotes it: alias champion"),
    (7, 6, "inference.requests", "InferenceRequest"),
    (6, 7, "inference.predictions", "Prediction: version, variant, latency"),
]
X0, DX, TOP, DY = 70, 120, 70, 50
WIDTH = X0 * 2 + DX * (len(LANES) - 1) + 110       # room on the right for the last labels
HEIGHT = TOP + DY * (len(STEPS) + 1) + 40
MONO = 'font-family="DejaVu Sans Mono, monospace" font-weight="bold"'
HALO = 'stroke="#ffffff" stroke-width="4" paint-order="stroke"'     # labels stay legible across lifelines
FOOTNOTE = ("Every arrow is a record on a topic, written in a Kafka transaction with the writer's input offsets; "
            "the auditor appends each one to audit.log.")


def x(lane: int) -> int:
    return X0 + DX * lane


def header() -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
            "<title>One data batch, to a deployed model</title>",
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>']


def lane(index: int, name: str) -> list[str]:
    fill = "#fff4d6" if name in PEOPLE else "#e3eefc"
    return [f'<rect x="{x(index) - 52}" y="20" width="104" height="30" rx="6" fill="{fill}" stroke="#556"/>',
            f'<text x="{x(index)}" y="40" text-anchor="middle" font-weight="bold">{escape(name)}</text>',
            f'<line x1="{x(index)}" y1="50" x2="{x(index)}" y2="{HEIGHT - 30}" stroke="#99a" stroke-dasharray="4 4"/>']


def labels(left: int, y: int, topic: str, detail: str) -> list[str]:
    if not topic:
        return [f'<text x="{left}" y="{y + 2}" fill="#444" font-style="italic" {HALO}>{escape(detail)}</text>']
    return [f'<text x="{left}" y="{y - 5}" {MONO} {HALO}>{escape(topic)}</text>',
            f'<text x="{left}" y="{y + 13}" fill="#444" {HALO}>{escape(detail)}</text>']


def step(row: int, source: int, target: int, topic: str, detail: str) -> list[str]:
    y = TOP + DY * (row + 1)
    if source == target:        # work inside one service: a loop on its lifeline
        return [f'<path d="M {x(source)} {y - 10} h 24 v 16 h -22" fill="none" stroke="#333" '
                'marker-end="url(#arrow)"/>', *labels(x(source) + 30, y, topic, detail)]
    end = x(target) + (-4 if target > source else 4)
    return [f'<line x1="{x(source)}" y1="{y}" x2="{end}" y2="{y}" stroke="#333" stroke-width="1.5" '
            'marker-end="url(#arrow)"/>', *labels(min(x(source), x(target)) + 8, y, topic, detail)]


def svg() -> str:
    parts = header()
    for index, name in enumerate(LANES):
        parts += lane(index, name)
    for row, (source, target, topic, detail) in enumerate(STEPS):
        parts += step(row, source, target, topic, detail)
    parts += [f'<text x="{X0 - 50}" y="{HEIGHT - 10}" fill="#444">{escape(FOOTNOTE)}</text>', "</svg>"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    (Path(__file__).resolve().parents[1] / "img" / "batch-to-model.svg").write_text(svg())
