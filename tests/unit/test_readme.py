"""The README's topics table is generated from topics.yaml; keep them equal."""

from services.bus.context import Bus
from services.bus.settings import PROJECT_ROOT, Settings
from services.cli.topics_cmd import markdown_table


def test_readme_topics_table_matches_topics_yaml():
    table = markdown_table(Bus.from_settings(Settings.from_env({})))
    assert table in (PROJECT_ROOT / "README.md").read_text(), "regenerate: mlbus topics list --markdown"


def test_readme_gives_the_two_commands():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "scripts/demo" in readme and "scripts/test" in readme
