"""The payloads both ends of a kernel-peer transfer agree on, without sending them anywhere else.

Kept apart from everything else so the kernel-side client (``sim/peer/kernel_client.py``, run in
the namespace) imports nothing but the standard library.
"""

import hashlib
import random

__all__ = ["pattern", "digest", "REPLY_SEED", "CLIENT_SEED"]

#: Seed of what the host's ``reply`` service sends.
REPLY_SEED = 2
#: Seed of what the kernel-side client sends.
CLIENT_SEED = 1


def pattern(length: int, seed: int) -> bytes:
    """``length`` pseudo-random bytes determined by ``seed``."""
    return random.Random(seed).randbytes(length)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
