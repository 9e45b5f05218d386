"""Settings' sections: every field is set by an MLBUS_* variable the reference documents, each variable lands in
its own field, and the defaults from_env gives survive being written back into the environment."""
from __future__ import annotations

import sys
from dataclasses import fields

import pytest

from services.bus.settings import PROJECT_ROOT, ConfigError, Settings

sys.path.insert(0, str(PROJECT_ROOT / "docs" / "_ext"))
import reference_operations  # noqa: E402  (the docs' generator, as the docs build imports it)

DEFAULTS = Settings.from_env({})
SECTIONS = [(spec.name, getattr(DEFAULTS, spec.name)) for spec in fields(Settings)]


def variables() -> dict[tuple[str, str], str]:
    """(section, field) → the MLBUS_* variable that sets it, as the reference reads it from settings.py."""
    classes = reference_operations.section_classes()
    found = {}
    for name, section in SECTIONS:
        env = reference_operations.environment_names(classes[type(section).__name__])
        found.update({(name, field): names[0] for field, names in env.items() if names})
    return found


def changed(value, field: str) -> str:
    """A value for the field's variable unlike its default."""
    if field == "scorer_delivery":
        return "at-least-once"
    if field == "wire":
        return "confluent"
    if value is None:
        return "3"
    if isinstance(value, (int, float)):
        return str(value + 2)
    return f"/elsewhere/{field}"


def test_settings_come_in_a_few_sections_of_frozen_fields():
    assert 4 <= len(SECTIONS) <= 7
    for _, section in SECTIONS:
        with pytest.raises(AttributeError):
            section.anything = 1                # frozen
        assert 1 <= len(fields(section)) <= 10


def test_every_section_field_has_an_mlbus_variable_in_the_reference():
    for name, section in SECTIONS:
        rows = reference_operations.settings_rows(name, section)       # raises on a field with no meaning
        assert [row[1].rsplit("(", 1)[1] for row in rows] == [f"`{name}.{spec.name}`)" for spec in fields(section)]
        assert all("MLBUS_" in row[0] for row in rows), rows
    page, covered = reference_operations.settings_page()
    assert covered == [f"{name}.{spec.name}" for name, section in SECTIONS for spec in fields(section)]
    assert all(f"`{variable}`" in page for variable in variables().values())


def test_each_variable_sets_its_own_field():
    for (name, field), variable in variables().items():
        text = changed(getattr(getattr(DEFAULTS, name), field), field)
        assert str(getattr(getattr(Settings.from_env({variable: text}), name), field)) == text, variable


def test_from_env_round_trips_the_defaults():
    """The defaults written back as the environment read the same settings (none relies on a variable unset)."""
    env = {variable: str(getattr(getattr(DEFAULTS, name), field)) for (name, field), variable in variables().items()
           if getattr(getattr(DEFAULTS, name), field) is not None}
    assert len(env) > 30
    assert Settings.from_env(env) == DEFAULTS


def test_a_bad_number_is_a_usage_error_naming_its_variable():
    with pytest.raises(ConfigError, match="MLBUS_AUDIT_PAGE_RECORDS"):
        Settings.from_env({"MLBUS_AUDIT_PAGE_RECORDS": "0"})


def test_acting_as_a_principal_changes_only_the_connection():
    admin = DEFAULTS.connecting_as("admin")
    assert admin.connection.principal == "admin" and admin.storage == DEFAULTS.storage
    person = Settings.from_env({"MLBUS_PRINCIPAL": "trainer"}).as_person("ada", {"sasl.username": "ada"})
    assert (person.connection.principal, person.connection.identity_principal) == ("trainer", "ada")
    assert DEFAULTS.as_principal("auditor").connection.client_principal == "auditor"
