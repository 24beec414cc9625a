"""An application on the host stack that receives through the offload (host_driver/offload.py):
posted receives into its own buffers, as a socket's ``recv`` into user memory would. Used by the
offload tests on the NIC model (tests/unit/test_host_offload.py) and on the RTL
(tests/cosim/nic_fast_path_tests.py)."""

import random

from host_driver.tcp import State

__all__ = ["Reader", "Wire", "payload", "SEGMENT"]

#: The remote's segments carry 1448 payload bytes (MSS 1460, timestamps).
SEGMENT = 1448


def payload(n, seed=1):
    return random.Random(seed).randbytes(n)


class Wire:
    """The remote -> NIC direction at about wire rate: at most ``rate`` frames every
    ``interval`` scenario steps (a step is at most 200 NIC cycles: one full-sized frame at
    10 Gb/s is 190) handed to ``deliver`` (the model's ``receive_frame``, the MAC's ``send``);
    drops and reorders data segments at random (``loss``, ``reorder``) while ``active``.
    Call :meth:`tick` once a step (the scenario's ``step_hook``); ``held`` stops the releases."""

    def __init__(self, deliver, loss=0.0, reorder=0.0, seed=0, rate=1):
        self.deliver, self.loss, self.reorder, self.rate = deliver, loss, reorder, rate
        self.interval = 1           # steps between two releases of ``rate`` frames
        self.steps = 0
        self.rng = random.Random(seed)
        self.queue: list[bytes] = []
        self.late: list[bytes] = []
        self.active = True
        self.held = False
        self.frames = []            # every frame delivered
        self.dropped = self.reordered = 0
        self.tap = None             # called with each frame before it is delivered

    def __call__(self, frame: bytes) -> None:
        self.queue.append(frame)

    async def tick(self) -> None:
        self.steps += 1
        if self.held or self.steps % self.interval:
            return
        for _ in range(self.rate):
            if not self.queue:
                break
            frame = self.queue.pop(0)
            data = len(frame) > 80
            if self.active and data and self.rng.random() < self.loss:
                self.dropped += 1
                continue
            if self.active and data and self.rng.random() < self.reorder:
                self.reordered += 1
                self.late.append(frame)
                continue
            self.put(frame)
            if self.late and self.rng.random() < 0.3:
                self.put(self.late.pop(0))
        if not self.queue:
            while self.late:
                self.put(self.late.pop(0))

    def put(self, frame):
        if self.tap is not None:
            frame = self.tap(frame)
            if frame is None:
                return
        self.frames.append(frame)
        self.deliver(frame)


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
