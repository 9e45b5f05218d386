"""The generated typed records (services/bus/records.py): current with schemas/, and a lossless view of what
fastavro decodes."""
import pytest

from services.bus.codec import SchemaCatalogue
from services.bus.records import RECORD_TYPES
from services.bus.records_gen import TARGET, generate
from services.bus.settings import PROJECT_ROOT
from tests.support.hostile import examples, strategy_for
from tests.support.samples import sample

SCHEMAS = SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas")


def test_records_py_is_generated_from_the_current_schemas():
    assert TARGET.read_text() == generate(), "stale: run python -m services.bus.records_gen"


def test_every_record_schema_has_its_class():
    assert set(RECORD_TYPES) == {name for name, schema in SCHEMAS.by_name.items()
                                 if schema.parsed.get("type") == "record"}


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_a_decoded_record_survives_the_typed_form_unchanged(name):
    schema = SCHEMAS.schema(name)
    for value in [sample(schema.parsed), *examples(strategy_for(schema.parsed), 5, seed_value=3)]:
        _, decoded = SCHEMAS.decode(SCHEMAS.encode(name, value))
        typed = RECORD_TYPES[name].from_avro(decoded)
        again = SCHEMAS.decode(SCHEMAS.encode(name, typed.to_avro()))[1]
        assert repr(again) == repr(decoded)          # repr: NaN equals itself


def test_typed_records_are_frozen_and_fill_schema_defaults():
    from dataclasses import FrozenInstanceError
    from services.bus.records import BatchRef
    ref = BatchRef.from_avro({"batch_id": "b", "dataset": "d", "sha256": "s", "rows": 3})
    assert ref.uri == ""
    with pytest.raises(FrozenInstanceError):
        ref.rows = 4
