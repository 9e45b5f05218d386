"""The README is a door: short, the two commands first, and only figures the docs record with the commit that
measured them. (The topics table it used to carry is now generated into the docs: tests/unit/test_docs_site.py.)"""
import re

from services.bus.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
TWO_COMMANDS = ("scripts/demo      # set up everything, start a local Kafka broker, run the end-to-end story, stop\n"
                "scripts/test      # set up everything and run the whole test suite against a real local broker\n")


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start: following if following >= 0 else len(text)]


def test_readme_gives_the_two_commands_first_and_ci_runs_the_second():
    assert "## Two commands\n\n```bash\n" + TWO_COMMANDS + "```" in README
    assert README.index("scripts/demo") < README.index("## A ten-line tour")
    assert "exec bash scripts/test" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_readme_is_a_door_of_at_most_200_lines():
    assert len(README.splitlines()) <= 200


def test_the_tour_uses_commands_the_cli_has():
    from services.cli.main import parser
    tour = section(README, "## A ten-line tour")
    commands = parser()._subparsers._group_actions[0].choices
    used = re.findall(r"^(?:MLBUS_\w+=\S+ )?mlbus (\w[\w-]*)", tour, re.MULTILINE)
    assert len(used) == 10 and set(used) <= set(commands), used


def test_every_performance_ratio_is_one_the_docs_record_for_its_commit():
    """No invented figure: the README's ratios are those of the full run at f297149 in docs/performance.md."""
    table = section(README, "## Performance, measured beside the peers")
    assert "f297149" in table
    run = section((PROJECT_ROOT / "docs" / "performance.md").read_text(),
                  "## The full run of 2026-12-06 (clean clone at f297149)")
    ratios = re.findall(r"([\d.]+)×", table)
    assert len(ratios) >= 10
    assert [r for r in ratios if not re.search(rf"\| {re.escape(r)}× \|", run)] == []


def test_the_figures_measured_since_the_full_run_are_recorded_with_their_commits():
    """The README's figures after the table ("N times", with the commit of their run) are in docs/performance.md."""
    since = section(README, "## Performance, measured beside the peers").split("Since then", 1)[1]
    performance = (PROJECT_ROOT / "docs" / "performance.md").read_text()
    figures = re.findall(r"([\d.,]+) times", since)
    assert "6.4" in figures and "5.64" in figures and "6b83026" in performance
    assert [f for f in figures if f not in performance] == []


def test_the_demo_and_suite_figures_are_the_ones_recorded_with_their_commits():
    recorded = (PROJECT_ROOT / "docs" / "explanation" / "development.md").read_text()
    for figure, commit in (("202.6 s", "1cc8e2f"), ("2,203 s", "2d45273")):
        assert f"{commit}" in README and figure in README
        assert re.search(rf"{commit}[^\n]*\n?[^\n]*{re.escape(figure)}", recorded), (figure, commit)
