"""Host memory behind the DMA manager, as a unit under test's DMA clients see it.

A unit that moves bytes (a ring fetcher, the RX writer, the TX reader, the event writer) is a
client of :class:`hw.host.dma.DmaManager`. Its unit tests replace the manager and the host with
these testbench processes, which serve the client's streams the way the manager does:

- :class:`ReadServer` takes read requests (random ready) and, after a random latency, returns
  each request's beats in order from ``memory`` (``last`` on the final beat; beats of pages in
  ``error_pages`` come back with ``error`` and data 0). Several requests may be in flight.
- :class:`WriteServer` takes write requests and data beats (random ready), applies the strobed
  bytes to ``memory`` (not in ``error_pages``) and, after a random latency, answers one
  completion per request, in order, with ``error`` if any beat hit an error page.

Both record what they saw (``requests``) and check the client's side of the protocol: ``beats``
>= 1, beat-aligned addresses, and (writes) no more data beats than requested.
"""

import random
from collections import deque

__all__ = ["ReadServer", "WriteServer"]


class _Server:
    def __init__(self, memory, beat_bytes, *, seed=0, p_ready=0.8, latency=(1, 20),
                 error_pages=()):
        self.memory = memory
        self.beat = beat_bytes
        self.rng = random.Random(seed)
        self.p_ready = p_ready
        self.latency = latency
        self.error_pages = set(error_pages)
        self.requests = []          # (addr, beats) in the order accepted
        self.violations = []
        self.cycle = 0

    def _error(self, addr):
        return (addr & ~0xFFF) in self.error_pages

    def _check_request(self, addr, beats):
        if beats < 1:
            self.violations.append(f"request of {beats} beats at {addr:#x}")
        if addr % self.beat:
            self.violations.append(f"unaligned request address {addr:#x}")


class ReadServer(_Server):
    """Serves ``client`` (a ``DmaReadSignature`` port of the unit: ``req`` out, ``resp`` in)."""

    def __init__(self, client, memory, beat_bytes, **kwargs):
        super().__init__(memory, beat_bytes, **kwargs)
        self.client = client
        self.pending = deque()      # [due cycle, addr, beats, sent]

    async def run(self, ctx):
        req, resp = self.client.req, self.client.resp
        while True:
            ready = int(self.rng.random() < self.p_ready)
            ctx.set(req.ready, ready)
            head = self.pending[0] if self.pending and self.pending[0][0] <= self.cycle else None
            if head is not None:
                _, addr, beats, sent = head
                beat_addr = addr + sent * self.beat
                error = self._error(beat_addr)
                word = 0 if error else int.from_bytes(
                    bytes(self.memory[beat_addr:beat_addr + self.beat]), "little")
                ctx.set(resp.valid, 1)
                ctx.set(resp.payload, {"data": word, "last": sent == beats - 1, "error": error})
            else:
                ctx.set(resp.valid, 0)
            _, _, req_valid, req_payload, resp_ready = await ctx.tick().sample(
                req.valid, req.payload, resp.ready)
            self.cycle += 1
            if req_valid and ready:
                addr, beats = int(req_payload.addr), int(req_payload.beats)
                self._check_request(addr, beats)
                self.requests.append((addr, beats))
                due = self.cycle + self.rng.randint(*self.latency)
                if self.pending:        # answers come back in request order
                    due = max(due, self.pending[-1][0])
                self.pending.append([due, addr - addr % self.beat, beats, 0])
            if head is not None and resp_ready:
                head[3] += 1
                if head[3] == head[2]:
                    self.pending.popleft()


class WriteServer(_Server):
    """Serves ``client`` (a ``DmaWriteSignature`` port: ``req`` and ``data`` out, ``done`` in)."""

    def __init__(self, client, memory, beat_bytes, **kwargs):
        super().__init__(memory, beat_bytes, **kwargs)
        self.client = client
        self.open = deque()         # accepted requests: [addr, beats, received, error]
        self.done = deque()         # [due cycle, error]
        self.beats_written = 0

    async def run(self, ctx):
        req, wdata, done = self.client.req, self.client.data, self.client.done
        while True:
            req_ready = int(self.rng.random() < self.p_ready)
            data_ready = int(self.rng.random() < self.p_ready) if self.open else 0
            ctx.set(req.ready, req_ready)
            ctx.set(wdata.ready, data_ready)
            answer = self.done[0] if self.done and self.done[0][0] <= self.cycle else None
            ctx.set(done.valid, int(answer is not None))
            ctx.set(done.payload, {"error": answer[1] if answer else 0})
            (_, _, req_valid, req_payload, data_valid, data_payload,
             done_ready) = await ctx.tick().sample(req.valid, req.payload, wdata.valid,
                                                   wdata.payload, done.ready)
            self.cycle += 1
            if answer is not None and done_ready:
                self.done.popleft()
            if data_valid and data_ready:
                self._take_beat(int(data_payload.data), int(data_payload.strb))
            if req_valid and req_ready:
                addr, beats = int(req_payload.addr), int(req_payload.beats)
                self._check_request(addr, beats)
                self.requests.append((addr, beats))
                self.open.append([addr - addr % self.beat, beats, 0, False])

    def _take_beat(self, word, strb):
        request = self.open[0]
        addr, beats, received, _ = request
        beat_addr = addr + received * self.beat
        if self._error(beat_addr):
            request[3] = True
        else:
            for k in range(self.beat):
                if strb >> k & 1:
                    self.memory[beat_addr + k] = (word >> (8 * k)) & 0xFF
        request[2] += 1
        self.beats_written += 1
        if request[2] == beats:
            self.open.popleft()
            due = self.cycle + self.rng.randint(*self.latency)
            if self.done:
                due = max(due, self.done[-1][0])
            self.done.append([due, request[3]])
