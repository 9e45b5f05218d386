"""services/native's compiled hot paths (services/bus/native.py): None on a machine without a Rust toolchain,
where the pure-Python code — byte for byte the same, and tested so — runs instead."""
from services.bus.native import native

__all__ = ["native"]
