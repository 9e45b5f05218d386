"""An independent checker of mlbus proofs, written from RFC 9162 §2.1 and docs/audit.md with hashlib and the
`cryptography` package only — none of the project's code — as another implementation would be."""
from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def head_signature_holds(head: dict, pem: bytes) -> bool:
    key = load_pem_public_key(pem)
    assert isinstance(key, Ed25519PublicKey)
    signed = json.dumps({"log_id": head["log_id"], "root_hash": head["root_hash"], "timestamp": head["timestamp"],
                         "tree_size": head["tree_size"], "version": "mlbus-tree-head/1"},
                        sort_keys=True, separators=(",", ":")).encode()
    try:
        key.verify(base64.b64decode(head["signature"]), signed)
    except Exception:
        return False
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()[:32] == head["key_id"]


def inclusion_holds(proof: dict, pem: bytes) -> bool:
    """RFC 9162 §2.1.3.2: from the leaf hash up the audit path to the root."""
    head = proof["tree_head"]
    if not head_signature_holds(head, pem) or proof["tree_size"] != head["tree_size"]:
        return False
    fn, sn = proof["leaf_index"], proof["tree_size"] - 1
    if fn > sn:
        return False
    r = hashlib.sha256(b"\x00" + proof["leaf_data"].encode()).digest()
    for p in (bytes.fromhex(h) for h in proof["audit_path"]):
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == head["root_hash"]


def consistency_holds(proof: dict, pem: bytes) -> bool:
    """RFC 9162 §2.1.4.2: both roots rebuilt from the consistency path."""
    first, second = proof["first"], proof["second"]
    if not (head_signature_holds(first, pem) and head_signature_holds(second, pem)):
        return False
    m, n = first["tree_size"], second["tree_size"]
    path = [bytes.fromhex(h) for h in proof["proof"]]
    if m == n:
        return not path and first["root_hash"] == second["root_hash"]
    if m & (m - 1) == 0:
        path.insert(0, bytes.fromhex(first["root_hash"]))
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr.hex() == first["root_hash"] and sr.hex() == second["root_hash"]
