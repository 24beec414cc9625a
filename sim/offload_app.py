"""An application on the host stack that receives through the offload (host_driver/offload.py):
posted receives into its own buffers, as a socket's ``recv`` into user memory would. Used by the
offload tests on the NIC model (tests/unit/test_host_offload.py) and on the RTL
(tests/cosim/nic_fast_path_tests.py)."""

import random

from host_driver.tcp import State

__all__ = ["Reader", "payload", "SEGMENT"]

#: The remote's segments carry 1448 payload bytes (MSS 1460, timestamps).
SEGMENT = 1448


def payload(n, seed=1):
    return random.Random(seed).randbytes(n)


class Reader:
    """An application reading ``conn`` through posted receives of ``chunk`` bytes in
    ``entries`` pieces, ``depth`` of them posted at a time."""

    def __init__(self, setup, conn, chunk=45 * SEGMENT, entries=3, depth=2, push=True):
        self.setup, self.conn = setup, conn
        self.chunk, self.entries, self.depth, self.push = chunk, entries, depth, push
        self.data = bytearray()
        self.posted = []
        self.completed = []

    def pump(self):
        offload, memory = self.setup.offload, self.setup.memory
        while self.posted and self.posted[0].done:
            request = self.posted.pop(0)
            self.data += request.data(memory)
            self.completed.append(request)
            for addr, _ in request.entries:
                memory.free(addr)
        if self.conn.state is State.CLOSED or (self.completed and self.completed[-1].reason
                                               in ("eof", "closed")):
            return
        while len(self.posted) < self.depth:
            sizes = [self.chunk // self.entries] * (self.entries - 1)
            sizes.append(self.chunk - sum(sizes))
            entries = offload.alloc_buffers(sizes, align=1)
            self.posted.append(offload.recv_into(self.conn, entries, push=self.push))
