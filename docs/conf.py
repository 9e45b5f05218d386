"""Sphinx configuration of mlbus's docs site (scripts/docs builds it; tests/unit/test_docs_site.py with -W)."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

project = "mlbus"
author = "the mlbus authors"
copyright = "2026, the mlbus authors"
release = "0.1.0"

extensions = ["myst_parser", "mlbus_docs"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# generated/ pages are included into the reference pages; _build is the build's own output
exclude_patterns = ["_build", "reference/generated", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3            # [text](page.md#a-heading) links are checked, like every internal link
nitpicky = True

html_theme = "furo"
html_title = "mlbus"
html_static_path = []
html_show_sourcelink = False
# No internet here: the site links nothing it would have to fetch, and the build never does linkcheck.
