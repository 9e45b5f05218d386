"""How the console is served: bodies refused before they are read (size, files), and HTTPS whenever it listens
beyond this machine, with a certificate valid for the names it is reached by."""
from __future__ import annotations

import pytest

from services.console.limits import FORM, body_refusal
from services.console.tls import is_loopback, subject_names


@pytest.mark.parametrize("method, content_type, length, status", [
    ("GET", None, None, None),
    ("POST", FORM, "200", None),
    ("POST", f"{FORM}; charset=utf-8", None, None),          # no length: counted while it streams
    ("POST", FORM, str(16 * 1024 + 1), 413),
    ("POST", FORM, "-1", 413),
    ("POST", FORM, "12 ", 413),
    ("POST", "multipart/form-data; boundary=x", "100", 415),
    ("POST", "application/json", "10", 415),
])
def test_a_body_is_refused_by_its_headers_before_it_is_read(method, content_type, length, status):
    refused = body_refusal(method, content_type, length)
    assert (refused[0] if refused else None) == status


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                             ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                             ("192.168.1.5", False), ("console.example", False)])
def test_only_loopback_is_served_without_tls(host, loopback):
    assert is_loopback(host) is loopback


def test_the_certificate_names_this_machine_and_the_bound_address():
    assert subject_names("0.0.0.0", "box") == ["IP:127.0.0.1", "DNS:localhost", "DNS:box"]
    assert subject_names("10.0.0.7", "box")[-1] == "IP:10.0.0.7"
    assert subject_names("console.example", "box")[-1] == "DNS:console.example"
