"""Ports for the local servers that scripts/kafka and scripts/postgres start (standard library only: they run
before the project's virtualenv exists)."""
from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on, below the kernel's ephemeral range: a port that bind(0) hands out may be
    taken by any client's outgoing connection before the server binds it, or while a killed server is down.
    (tests/support/processes.py picks its test servers' ports the same way.)"""
    low = ephemeral_low()
    while True:
        port = random.randrange(max(1024, low - 16_000), low) if low > 2048 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (where outgoing connections get theirs)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768                    # Linux's default
