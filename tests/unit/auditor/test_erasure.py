"""Crypto-shredding, with the auditor's handler over in-memory messages: personal fields of a request are
sealed under the entity's data key (one key per entity, made once, on audit.keys in the same batch) and
blanked in the readable value; an admin's signed erasure deletes the key (a tombstone), a refused one does
not; afterwards the log reads as erased — when, by whom, why — while the chain and the tree still verify."""
from datetime import datetime, timezone

from services.auditor.decide import Log
from services.auditor.handlers import Auditor
from services.bus import Bus
from services.bus.runtime import Forward
from services.bus.signing import Verdict
from services.domain import verify_chain as verify
from services.adapters import Anchor, decoded
from services.domain.erasure import blank
from services.domain.tree_head import LogKey
from tests.support.handlers import FakeMessage, audited

SCHEMAS = Bus.from_env({"MLBUS_NAMESPACE": "t."}).schemas





def bus_without_broker() -> Bus:
    bus = Bus.from_env({"MLBUS_NAMESPACE": "t."})
    bus.schemas.resolver = lambda fingerprint: None          # local schemas only: no broker here
    return bus


def request(bus, entity: str, offset: int) -> FakeMessage:
    value = bus.schemas.encode("mlbus.InferenceRequest", {
        "request_id": f"r{offset}", "entity_id": entity, "model": "m", "features": {"income": 73412.5},
        "categories": {"city": "Lyon"}, "sent_at": datetime.now(timezone.utc)})
    return FakeMessage("t.inference.requests", entity.encode(), value, offset)


def erasure(bus, entity: str, signer: str, offset: int) -> FakeMessage:
    value = bus.schemas.encode("mlbus.ErasureRequested", {
        "erasure_id": f"x{offset}", "subject": entity, "reason": "GDPR request 42", "requested_by": signer,
        "requested_at": datetime.now(timezone.utc), "signer": signer, "signer_key": "0" * 32,
        "signature": "A" * 86 + "=="})
    return FakeMessage("t.audit.erasures", entity.encode(), value, offset)


def auditor(bus, tmp_path, admins=("lead",)) -> Auditor:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = LogKey(Ed25519PrivateKey.generate())

    def verdict(message, roles):
        signer = message.value.get("signer")
        if "admin" in roles and signer not in admins:
            return Verdict(refusal=f"{signer} lacks the role admin")
        return Verdict(signer=signer, signer_key="k")
    return Auditor(bus, Log, lambda size, root, at: key.sign("t.audit.log", size, root, at), Anchor(tmp_path),
                   verdict, read_keys=dict)


def records_of(events) -> list[dict]:
    return audited(SCHEMAS, events)


def test_personal_fields_are_sealed_per_entity_and_blank_in_the_readable_value(tmp_path):
    bus = bus_without_broker()
    audit = auditor(bus, tmp_path)
    events = audit([request(bus, "e1", 0), request(bus, "e2", 1), request(bus, "e1", 2)])
    made = [e for e in events if getattr(e, "record", None) == "mlbus.DataKey"]
    assert [e.value["subject"] for e in made] == ["e1", "e2"]                 # one key per entity, made once
    records = records_of(events)
    assert [r["sealed"]["subject"] for r in records] == ["e1", "e2", "e1"]
    for r in records:
        assert b"Lyon" not in r["sealed"]["ciphertext"] and b"Lyon" not in r["value"]
        assert bus.schemas.decode(r["value"])[1]["features"] == {}
    opened = list(decoded(bus, records, keys=dict(audit.keys)))
    assert opened[0].personal == "readable" and opened[0].value["features"] == {"income": 73412.5}
    assert opened[2].value["categories"] == {"city": "Lyon"}


def test_an_admins_erasure_deletes_the_key_and_the_log_still_verifies(tmp_path):
    bus = bus_without_broker()
    audit = auditor(bus, tmp_path)
    first = audit([request(bus, "e1", 0), request(bus, "e2", 1)])
    refused = audit([erasure(bus, "e1", "mallory", 2)])
    assert "e1" in audit.keys and not [e for e in refused if isinstance(e, Forward)]
    done = audit([erasure(bus, "e1", "lead", 3)])
    [tombstone] = [e for e in done if isinstance(e, Forward)]
    assert tombstone.physical_topic == "t.audit.keys" and tombstone.key == b"e1" and tombstone.value is None
    assert "e1" not in audit.keys and "e2" in audit.keys
    records = records_of(first + refused + done)
    assert records[2]["actor"].startswith("unverified mallory") and records[3]["actor"].startswith("lead (signed")
    assert verify(records).broken is None
    after = list(decoded(bus, records, keys=dict(audit.keys)))
    assert after[0].personal == "erased" and after[0].value["features"] == {} and after[0].value["request_id"] == "r0"
    assert after[0].erasure.by.startswith("lead") and after[0].erasure.reason == "GDPR request 42"
    assert after[1].personal == "readable" and after[1].value["categories"] == {"city": "Lyon"}
    sealed = list(decoded(bus, records, keys={}))              # who holds no key: sealed, not erased
    assert sealed[1].personal == "sealed" and sealed[1].erasure is None


def test_blank_is_the_emptiest_value_of_each_avro_type():
    assert [blank(t) for t in (["null", "string"], {"type": "map", "values": "double"}, "string", "double",
                               {"type": "array", "items": "string"})] == [None, {}, "", 0, []]
