"""Sphinx extension: writes the generated reference pages (docs/reference/generated/, git-ignored) before Sphinx
reads the sources, so the reference is made from the code at every build and cannot drift from it."""
from __future__ import annotations

from pathlib import Path

import reference_operations
import reference_pages

GENERATED = Path(__file__).resolve().parents[1] / "reference" / "generated"
PAGES = {"topics": reference_pages.topics_page, "records": reference_pages.records_page,
         "cli": reference_pages.cli_page, "settings": reference_operations.settings_page,
         "metrics": reference_operations.metrics_page}


def write_pages(app=None, config=None) -> dict[str, list[str]]:
    """Write every generated page (only when it changed, so an unchanged build stays incremental); returns what
    each page covers."""
    GENERATED.mkdir(parents=True, exist_ok=True)
    covered = {}
    for name, make in PAGES.items():
        text, covered[name] = make()
        path = GENERATED / f"{name}.md"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return covered


def setup(app):
    app.connect("config-inited", write_pages)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
