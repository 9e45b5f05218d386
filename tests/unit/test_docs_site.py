"""The docs site builds with warnings as errors (broken internal links and images included), and its reference,
generated from the code at every build, covers every topic, record type, CLI command, setting and metric."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from services.bus.context import Bus
from services.bus.settings import PROJECT_ROOT, Settings
from services.cli.topics_cmd import markdown_table

DOCS = PROJECT_ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as scripts/docs builds it (-W: a warning fails), into a directory of this test's own."""
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                             "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
                            capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr
    return out / "html"


def anchors(page: Path, kind: str) -> list[str]:
    return re.findall(rf'id="(ref-{kind}-[^"]+)"', page.read_text())


def cli_commands(parser: argparse.ArgumentParser, path: str = "mlbus") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [f"{path} {name}", *cli_commands(sub, f"{path} {name}")]
    return found


def test_the_site_builds_with_no_warning_and_has_every_section(site):
    home = (site / "index.html").read_text()
    for section in ("Tutorials", "How-to guides", "Reference", "Explanations"):
        assert section in home
    assert (site / "tutorials" / "first-model.html").exists() and (site / "explanation" / "architecture.html").exists()


def test_the_reference_covers_every_topic_record_command_setting_and_metric(site):
    reference = site / "reference"
    topics = [entry["name"] for entry in yaml.safe_load((PROJECT_ROOT / "topics.yaml").read_text())["topics"]]
    records = [f"{json.loads(p.read_text())['namespace']}.{json.loads(p.read_text())['name']}"
               for folder in ("schemas", "schemas/common") for p in (PROJECT_ROOT / folder).glob("*.avsc")]
    from services.cli.main import parser
    commands = cli_commands(parser())
    defaults = Settings.from_env({})
    sections = [spec.name for spec in fields(Settings)]
    settings = [f"{name}.{spec.name}" for name in sections for spec in fields(getattr(defaults, name))]
    variables = set(re.findall(r'"(MLBUS_[A-Z0-9_]+)"', (PROJECT_ROOT / "services/bus/settings.py").read_text()))
    metrics = {m for path in (PROJECT_ROOT / "services").rglob("*.py")           # services' own, by their names
               for m in re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(mlbus_\w+)"', path.read_text())}
    from services.bus.metrics import ServiceMetrics        # the runtime's: what its registry serves at /metrics
    metrics |= {family.name + ("_total" if family.type == "counter" else "")
                for family in ServiceMetrics("docs").registry.collect()}

    assert len(anchors(reference / "topics.html", "topic")) == len(topics) > 20
    assert len(anchors(reference / "records.html", "record")) == len(records) > 30
    assert len(anchors(reference / "cli.html", "cli")) == len(commands) > 50
    settings_page = (reference / "settings.html").read_text()
    assert [name for name in settings if f"<code class=\"docutils literal notranslate\"><span class=\"pre\">{name}"
            not in settings_page] == []
    assert settings_page.count("<tr class=\"row-") - len(sections) == len(settings) > 30    # one row each, and a
                                                                                            # header per section
    documented = set(re.findall(r'<tr class="row-\w+"><td><p><code class="docutils literal notranslate">'
                                r'<span class="pre">(MLBUS_[A-Z0-9_]+)\*?</span>', settings_page))
    assert variables - documented == set() and len(variables) > 30     # every variable settings.py reads has a row
    metrics_page = (reference / "metrics.html").read_text()
    assert [m for m in metrics if m not in metrics_page] == [] and len(metrics) > 10


def test_the_topic_reference_holds_the_table_topics_yaml_makes(site):
    """Was the README's table (`mlbus topics list --markdown`); now the generated reference page carries it."""
    table = markdown_table(Bus.from_settings(Settings.from_env({})))
    assert table in (DOCS / "reference" / "generated" / "topics.md").read_text()


def test_screenshots_and_relative_links_in_the_docs_resolve():
    for page in [PROJECT_ROOT / "README.md", *DOCS.rglob("*.md")]:
        if "_build" in page.parts or "generated" in page.parts:
            continue
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not target.startswith("mailto:"):
                assert (page.parent / target).exists(), f"{page.relative_to(PROJECT_ROOT)} links to {target}"


def test_every_repository_path_the_docs_name_exists():
    """Docs kept current: a file or folder named in `code` (services/…, scripts/…, schemas/…) is there."""
    named = re.compile(r"`((?:services|scripts|schemas|compose|tests|docs)/[\w./-]*\w)`")
    for page in [PROJECT_ROOT / "README.md", *DOCS.rglob("*.md")]:
        if "_build" in page.parts or "generated" in page.parts:
            continue
        for path in set(named.findall(page.read_text())):
            if path.startswith("docs/_build"):                # what scripts/docs builds (git-ignored): absent
                continue                                        # from a clean checkout until it runs
            if not re.search(r"[A-Z]{4,}", path):          # DATASET, NAME: placeholders
                assert (PROJECT_ROOT / path).exists(), f"{page.relative_to(PROJECT_ROOT)} names {path}"


def is_module(name: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:         # a parent is a module, not a package: `name` is an attribute
        return False


def test_every_python_name_the_docs_give_imports():
    """`services.adapters.datasets.publish_batch` in a page is there to be called: it must import."""
    import importlib
    for page in [PROJECT_ROOT / "README.md", *DOCS.rglob("*.md")]:
        if "_build" in page.parts or "generated" in page.parts:
            continue
        for dotted in set(re.findall(r"`(services(?:\.\w+)+)", page.read_text())):
            parts = dotted.split(".")
            found = next(i for i in range(len(parts), 0, -1) if is_module(".".join(parts[:i])))
            target = importlib.import_module(".".join(parts[:found]))
            for attribute in parts[found:]:
                assert hasattr(target, attribute), f"{page.relative_to(PROJECT_ROOT)} names {dotted}"
                target = getattr(target, attribute)
