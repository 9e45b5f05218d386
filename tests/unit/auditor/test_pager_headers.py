"""The compiled pager reads a message's headers from the client itself (no call to consumed.headers_of per
message): the pages it writes so are the bytes it wrote through headers_of, and the Python path's, whatever the
headers hold (any names, values or none, no list at all), on a topic without personal data (sealing draws
a fresh nonce)."""
import pytest
from hypothesis import given, settings, strategies as st

from services.bus.consumed import headers_of
from services.bus.edge import MAX_RECORD_BYTES
from services.domain.compiled import native
from tests.support.handlers import FakeMessage
from tests.unit.auditor.test_pages import auditor
from tests.unit.test_no_record_stops_a_service import BUS

compiled = pytest.mark.skipif(native is None, reason="services/native is not built here")
HEADERS = st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=40))),
                                        max_size=8))


def pages(events) -> list[bytes]:
    return [e.encoded for e in events if e.record == "mlbus.AuditPage"]


@compiled
@settings(max_examples=60, deadline=None)
@given(HEADERS, st.one_of(st.none(), st.binary(max_size=30)), st.one_of(st.none(), st.binary(max_size=60)))
def test_the_pager_reads_headers_as_headers_of_does(tmp_path_factory, headers, key, value):
    def batch() -> list[FakeMessage]:
        return [FakeMessage(BUS.catalogue.physical("data.validated"), key, value, n, None if headers is None else
                            list(headers)) for n in range(3)]
    folder = tmp_path_factory.mktemp("pager")
    direct = auditor(folder / "direct", pager=True, page_records=2)
    through = auditor(folder / "through", pager=True, page_records=2)
    through.pager = native.Pager(BUS.schemas.schema("mlbus.AuditRecord").prefix, through._routes(), MAX_RECORD_BYTES,
                                 headers_of)
    python = auditor(folder / "python", pager=False, page_records=2)
    assert pages(direct(batch())) == pages(through(batch())) == pages(python(batch()))
