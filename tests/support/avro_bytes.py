"""Avro binary written by hand, for tests that need bytes no encoder would write."""


def long_bytes(n: int) -> bytes:
    """An Avro long: zigzag, then base-128 varint."""
    out, z = bytearray(), (n << 1) ^ (n >> 63)
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    return bytes(out + bytes([z]))


def text(value: bytes) -> bytes:
    """An Avro string or bytes: its length, then the bytes."""
    return long_bytes(len(value)) + value
