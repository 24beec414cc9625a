"""The receive engine: every frame's path, the connections' state, the fast-path commands.

Ref: docs/fast_path.md ("The receive engine, step by step", "A connection's life", "Fast-path
receive: the rules", "Numbering and the fence"); the golden model is sim/reference/fast_path.py.

::

    frames (dispatcher) ──┐                       ┌─► jobs (RX writer: SLOW, FRAME_DATA, PLACE,
    commands (unit) ──────┼─► one work item at a ─┼─► answers (command unit)     EVENT)
    drain list ───────────┤   time: the FSM       ├─► acks (AckRequest to the ACK builder)
    delayed-ACK list ─────┘        │              ├─► table (INSERT, SET_STATE, DELETE)
                                   ▼              ├─► dma_read (Ccb, RCVMDL lists), dma_write (Ccb)
               CCB store: hot records, routes,    └─► release (claims), free (slots), counters
               RCVMDL entries; queued frames

The engine takes one work item at a time: a command, a connection whose queue may drain, the
next frame, a delayed-ACK timer. A frame is a fixed sequence of states: read the connection's
record (two clocks of block RAM), decide, act, write the record back. Multi-clock actions
(placement pieces, a flush, a DMA) are state sequences of their own.

The store is three block RAMs by conn_nbr (:class:`ConnRecord`, :class:`ConnRoute`, the RCVMDL
entries) and the queued frames' records by packet-buffer slot (:class:`QueuedFrame`).
"""

import enum

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import params
from ..ccb.layouts import CcbCommand, CcbOpcode, CcbResponse, CcbState, CcbStatus
from ..host.dma import DmaReadSignature, DmaWriteSignature, check_data_bits
from ..layouts import (
    CCB_ALIGN,
    CCB_BYTES,
    CCB_TUPLE_BYTES,
    CCB_VERSION,
    MAX_RCV_MSS,
    MAX_WSCALE,
    RCVMDL_ENDED_BY_PSH,
    AckRequest,
    Ccb,
    CcbTupleHost,
    CommandOpcode,
    ConnArg,
    ConnState,
    DispatchedFrame,
    EventCode,
    EventKind,
    FastPathCounters,
    FlushReason,
    RcvMdlEntry,
    RingId,
    RxJob,
    RxJobKind,
    RxStagedFrame,
    TcpFlags,
)
from ..lib.bram import WideBlockRam
from .layouts import SLOT_BITS, ConnRecord, ConnRoute, FastAnswer, FastCommand, SgEntry


class Pick(enum.IntEnum):
    """IDLE's choices, in priority order: the bit of each in the one-hot ``pick``."""
    INTERLOCK = 0
    COMMAND = 1
    FAILED = 2
    PRESSURE = 3
    DRAIN = 4
    FRAME = 5
    TIMER = 6


class Work(enum.IntEnum):
    """What the record being read is for (one-hot: RECORD_LATCH's choice is a bit each)."""
    FRAME = 1
    DRAIN = 2
    FAILED = 4
    TIMER = 8
    COMMAND = 16
    PRESSURE = 32


class _Go(enum.IntEnum):
    """COMMAND_JUDGE's verdict for a command carried out: the bit of each in ``judge_go``."""
    HANDOUT2 = 0
    RCVMDL = 1
    WINUPDATE = 2
    FLUSH = 3


__all__ = ["ReceiveEngine"]

_HALF = 1 << 31


def _after(a, b):
    """``a`` is later than ``b`` in sequence space (RFC 9293 §3.4): 0 < a - b < 2**31."""
    # ``a != b`` rather than the difference's zero test: the compare runs beside the carry
    # chain, not after it.
    diff = Signal(32)
    differ = Value.cast(a)[:32] != Value.cast(b)[:32]
    return _Expr(diff, (a - b)[:32], lambda d: differ & ~d[31])


class _Expr:
    """A combinational helper: ``value`` is assigned to ``signal`` by :func:`_bind`."""

    def __init__(self, signal, value, result):
        self.signal, self.value, self.result = signal, value, result


def _bind(m, expr):
    m.d.comb += expr.signal.eq(expr.value)
    return expr.result(expr.signal)


class _RoomFifo(wiring.Component):
    """A FIFO in LUT RAM read ahead (as ``SyncFIFO``) whose writer never writes it full (the
    engine pushes only while its registered ``*_room`` says four more fit): the LUT RAM's write
    enable is ``w_en`` itself, not gated by a "not full" test, so the enable reaching every LUT
    RAM cell of a wide entry comes straight from the writer's register.

    Members
    -------
    w_data : In(width), w_en : In(1)
        An entry to append (always taken: the writer keeps ``level < depth``).
    r_data : Out(width), r_rdy : Out(1), r_en : In(1)
        The oldest entry; ``r_en`` pops it (only while ``r_rdy``).
    level : Out(range(depth + 1))
    """

    def __init__(self, width, depth):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two >= 2, not {depth}")
        self._width, self._depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = Memory(shape=self._width, depth=self._depth, init=[])
        w, r = storage.write_port(), storage.read_port(domain="comb")
        produce = Signal(range(self._depth))
        consume = Signal(range(self._depth))
        pop = self.r_rdy & self.r_en
        m.d.comb += [w.addr.eq(produce), w.data.eq(self.w_data), w.en.eq(self.w_en),
                     r.addr.eq(consume), self.r_data.eq(r.data), self.r_rdy.eq(self.level != 0)]
        with m.If(self.w_en):
            m.d.sync += produce.eq(produce + 1)
        with m.If(pop):
            m.d.sync += consume.eq(consume + 1)
        m.d.sync += self.level.eq(self.level + self.w_en - pop)
        return m


class _BlockRamList(wiring.Component):
    """A FIFO in block RAM whose head is read straight out of the block RAM's output register
    (:class:`~hw.lib.bram.WideBlockRam`): no register as wide as an entry, no multiplexer after
    the block RAM.

    A write is registered before it reaches the block RAM (the writer's decision stays off the
    block RAM's pins). The block RAM is read all the time at the head's place; the head is good
    (``r_rdy``) two clocks after that place was written or moved (a pop moves it). ``depth`` is
    a power of two; the writer never writes more than ``depth`` entries not yet popped (the
    engine's lists hold each conn_nbr once at most).

    Members
    -------
    w_data : In(shape), w_en : In(1)
        An entry to append (always taken).
    r_data : Out(shape), r_rdy : Out(1), r_en : In(1)
        The head; ``r_en`` pops it (only while ``r_rdy``).
    busy : Out(1)
        An entry is in the list or on its way (``r_rdy`` may not say so yet).
    """

    def __init__(self, shape, depth):
        self._shape, self._depth = shape, depth
        super().__init__({
            "w_data": In(shape), "w_en": In(1),
            "r_data": Out(shape), "r_rdy": Out(1), "r_en": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ram = WideBlockRam(m, "storage", self._shape, self._depth, platform)
        w, r = ram.write_port(), ram.read_port()
        produce = Signal(range(self._depth))
        consume = Signal(range(self._depth))
        pop = self.r_en & self.r_rdy
        stored = produce != consume
        w_data = Signal.like(self.w_data)
        w_en = Signal()
        m.d.sync += [w_data.eq(self.w_data), w_en.eq(self.w_en)]
        with m.If(w_en):
            m.d.sync += produce.eq(produce + 1)
        with m.If(pop):
            m.d.sync += consume.eq(consume + 1)
        # ``read`` is 1 when the block RAM samples an address holding an entry written on an
        # earlier edge (not the head place a pop leaves), ``r_rdy`` when its data is out.
        read = Signal()
        m.d.sync += [read.eq(stored & ~pop), self.r_rdy.eq(read & ~pop)]
        m.d.comb += [w.addr.eq(produce), w.data.eq(w_data), w.en.eq(w_en),
                     r.addr.eq(consume), self.r_data.eq(r.data), self.busy.eq(stored | w_en)]
        return m


class ReceiveEngine(wiring.Component):
    """Parameters
    ----------
    connections : int
        conn_nbrs the store holds (the CCB table's entries).
    data_bits : int
        DMA bus width: 64, 128 or 256.
    delayed_ack_cycles : int
        The delayed-ACK timer.

    Members
    -------
    frames : In(stream.Signature(DispatchedFrame))
        The dispatcher's frames, in order.
    frames_in : In(32)
        The dispatcher's count of frames taken (the fence counter).
    commands : In(stream.Signature(FastCommand))
        Fast-path commands, in ring order; each answered on ``answers`` before the next is taken.
    answers : Out(stream.Signature(FastAnswer))
    table_command : Out(stream.Signature(CcbCommand))
    table_response : In(stream.Signature(CcbResponse))
    jobs : Out(stream.Signature(RxJob))
        For the RX writer, in order.
    acks : Out(stream.Signature(AckRequest))
    dma_read : Out(DmaReadSignature(data_bits))
    dma_write : Out(DmaWriteSignature(data_bits))
    place_failed : In(stream.Signature(16))
        The RX writer's report of a PLACE job whose write failed: that connection is flushed.
    release : Out(1)
        A frame's claim on an RX buffer ends (placed, a pure ACK).
    free : Out(stream.Signature(SLOT_BITS))
        A frame's slot is free (a pure ACK: nothing of it is read). ``ready`` must be high.
    counters : Out(FastPathCounters)
    clear : In(1)
        Zero the counters (the levels ``queued`` and ``connections`` stay).
    frame_data_written : In(1)
        The RX writer wrote a FRAME_DATA frame (counted in ``frame_data`` then, as the model
        does; its bytes are counted when the engine decides).
    idle : Out(1)
        Nothing to do but wait for a timer: no frame, job, ACK or answer waiting.
    buffer_short, buffer_oldest : In(1), In(SLOT_BITS)
        The packet buffer's ``short`` and ``oldest``: while it runs short and its oldest frame
        is in a connection's queue, that connection is flushed (QUEUE_FULL), so its queue holds
        back no more space (docs/fast_path.md, "Queues in the packet buffer").
    sim_handles : dict
        For testbenches: the store's memories.
    """

    def __init__(self, connections=params.FAST_PATH_CONNECTIONS, *,
                 data_bits=params.DMA_DATA_BITS, delayed_ack_cycles=params.DELAYED_ACK_CYCLES):
        check_data_bits(data_bits)
        if connections < 2 or connections & (connections - 1):
            raise ValueError(f"connections must be a power of two >= 2, not {connections}")
        if delayed_ack_cycles < 1:
            raise ValueError(f"delayed_ack_cycles must be >= 1, not {delayed_ack_cycles}")
        self._connections = connections
        self._data_bits = data_bits
        self._delay = delayed_ack_cycles
        super().__init__({
            "frames": In(stream.Signature(DispatchedFrame)),
            "frames_in": In(32),
            "commands": In(stream.Signature(FastCommand)),
            "answers": Out(stream.Signature(FastAnswer)),
            "table_command": Out(stream.Signature(CcbCommand)),
            "table_response": In(stream.Signature(CcbResponse)),
            "jobs": Out(stream.Signature(RxJob)),
            "acks": Out(stream.Signature(AckRequest)),
            "dma_read": Out(DmaReadSignature(data_bits)),
            "dma_write": Out(DmaWriteSignature(data_bits)),
            "place_failed": In(stream.Signature(16)),
            "release": Out(1),
            "free": Out(stream.Signature(SLOT_BITS)),
            "counters": Out(FastPathCounters),
            "clear": In(1),
            "frame_data_written": In(1),
            "idle": Out(1),
            "buffer_short": In(1),
            "buffer_oldest": In(SLOT_BITS),
        })
        self.sim_handles = {}

    def elaborate(self, platform):
        m = Module()
        n = self._connections
        conn_bits = exact_log2(n)
        data_bits = self._data_bits
        beat_bytes = data_bits // 8
        slots = params.RX_PACKET_BUFFER_FRAMES
        slot_bits = exact_log2(slots)
        max_entries = params.RCVMDL_MAX_ENTRIES
        entry_bits = exact_log2(max_entries)

        # --- The store ------------------------------------------------------------------------
        hot = WideBlockRam(m, "hot", ConnRecord, n, platform)
        route_ram = WideBlockRam(m, "route", ConnRoute, n, platform)
        sg_ram = WideBlockRam(m, "sg", SgEntry, n * max_entries, platform)
        # Queued frames: their records by packet-buffer slot (block RAM, read data out of the
        # block RAM's own register), and each one's successor in its connection's queue (a
        # small memory read without a clock: the link is one write).
        queued_ram = WideBlockRam(m, "queued", DispatchedFrame, slots, platform)
        q_w = queued_ram.write_port()
        q_r = queued_ram.read_port()
        m.submodules.q_next = q_next = Memory(shape=slot_bits, depth=slots, init=[])
        q_next_w = q_next.write_port()
        q_next_r = q_next.read_port(domain="comb")
        self.sim_handles.update(hot=hot, route=route_ram, sg=sg_ram, queued=queued_ram)
        # Which slots hold a queued frame, and the connection of each (for the packet buffer's
        # pressure: its oldest frame's connection is flushed while the buffer runs short).
        slot_queued = Signal(slots)
        # Its updates go through registers (a slot set, a slot cleared) and land a clock after
        # the FSM's: no FSM decision in front of 64 decoded enables. The pressure flush reads it
        # a clock later, and checks the queue itself (PRESSURE_CHECK).
        queued_set = Signal()
        queued_set_slot = Signal(slot_bits)
        queued_clear = Signal()
        queued_clear_slot = Signal(slot_bits)
        m.d.sync += [queued_set.eq(0), queued_clear.eq(0)]
        with m.If(queued_set):
            m.d.sync += slot_queued.bit_select(queued_set_slot, 1).eq(1)
        with m.If(queued_clear):
            m.d.sync += slot_queued.bit_select(queued_clear_slot, 1).eq(0)
        m.submodules.slot_conn = slot_conn = Memory(shape=conn_bits, depth=slots, init=[])
        slot_conn_w = slot_conn.write_port()
        slot_conn_r = slot_conn.read_port(domain="comb")
        pressure = Signal()
        pressure_conn = Signal(conn_bits)
        m.d.comb += slot_conn_r.addr.eq(self.buffer_oldest)
        m.d.sync += [pressure.eq(self.buffer_short
                                 & slot_queued.bit_select(self.buffer_oldest, 1)),
                     pressure_conn.eq(slot_conn_r.data)]
        # The queue's head frame: the read's data, two clocks after its (registered) address.
        q_head_frame = q_r.data
        frame = Signal(DispatchedFrame)     # the work item's frame

        # --- Outputs: jobs and ACK requests through small FIFOs ---------------------------------
        # A job or an ACK request is built into a register (``job``, ``ack``) and written into
        # its FIFO the next clock. The FSM pushes only while ``job_room``/``ack_room`` (registered
        # from the FIFO's level a clock earlier) say that even four pushes not yet counted in
        # the level fit: so no push waits on a FIFO's ready through the FSM's decisions. The
        # FIFOs are read ahead from LUT RAM (SyncFIFO): the reader's ready moves a pointer, it
        # loads no register as wide as a job.
        fifo_depth = 8
        # The job FIFO keeps of a job's frame what the RX writer reads: its summary, where it
        # is, and of its TCP fields the sequence number (FRAME_DATA's tag); the other TCP
        # fields read 0 on ``jobs``.
        job_layout = data.Layout.cast(RxJob)
        frame_layout = data.Layout.cast(RxStagedFrame)
        kept = {name: job_layout[name].shape for name, _ in job_layout if name != "frame"}
        kept.update({name: frame_layout[name].shape for name, _ in frame_layout
                     if name != "tcp"})
        kept["seq"] = 32
        job_entry = data.StructLayout(kept)
        m.submodules.job_fifo = job_fifo = _RoomFifo(job_entry.size, fifo_depth)
        m.submodules.ack_fifo = ack_fifo = _RoomFifo(data.Layout.cast(AckRequest).size,
                                                     fifo_depth)
        job = Signal(RxJob)
        job_valid = Signal()
        ack = Signal(AckRequest)
        ack_valid = Signal()
        job_room = Signal()
        ack_room = Signal()
        m.d.sync += [job_valid.eq(0), ack_valid.eq(0),
                     job_room.eq(job_fifo.level <= fifo_depth - 4),
                     ack_room.eq(ack_fifo.level <= fifo_depth - 4)]
        # A job's frame is not copied into ``job``: the FIFO takes it, a clock after the push,
        # from ``frame`` (which no pushing state changes; IDLE loads the frame it pushes) or from
        # the queue's head (FLUSH_QUEUE_PASS).
        job_from_queue = Signal()
        job_frame = Signal(RxStagedFrame)
        job_in = data.View(job_entry, job_fifo.w_data)
        job_out = data.View(job_entry, job_fifo.r_data)
        m.d.comb += job_frame.eq(Mux(job_from_queue, q_head_frame.frame, frame.frame))
        for name, _ in job_entry:
            if name == "seq":
                m.d.comb += [job_in.seq.eq(job_frame.tcp.seq),
                             self.jobs.payload.frame.tcp.seq.eq(job_out.seq)]
            elif name in kept and name in dict(frame_layout):
                m.d.comb += [job_in[name].eq(job_frame[name]),
                             self.jobs.payload.frame[name].eq(job_out[name])]
            else:
                m.d.comb += [job_in[name].eq(job[name]),
                             self.jobs.payload[name].eq(job_out[name])]
        m.d.comb += [
            job_fifo.w_en.eq(job_valid),
            ack_fifo.w_data.eq(ack), ack_fifo.w_en.eq(ack_valid),
            self.jobs.valid.eq(job_fifo.r_rdy),
            job_fifo.r_en.eq(self.jobs.ready),
            self.acks.payload.eq(ack_fifo.r_data),
            self.acks.valid.eq(ack_fifo.r_rdy),
            ack_fifo.r_en.eq(self.acks.ready),
        ]

        # --- Lists of conn_nbrs: queues to drain, delayed-ACK timers ----------------------------
        # Each conn_nbr is at most once in each list (a flag in its record), so n entries do.
        # A list is a FIFO in block RAM whose head comes out of the block RAM's own register
        # (:class:`_BlockRamList`): a block RAM's data is slow out of its clock otherwise.
        m.submodules.drain_list = drain_list = _BlockRamList(conn_bits, 2 * n)
        # Delayed-ACK timers: (conn_nbr, deadline), in the order they were armed, so the head
        # runs out first (a connection re-armed while listed goes back in with its new deadline).
        timer_entry = data.StructLayout({"conn": conn_bits, "deadline": 32})
        m.submodules.timer_list = timer_list = _BlockRamList(timer_entry, 2 * n)
        timer_in = timer_list.w_data
        timer_head = timer_list.r_data

        # --- Work registers -------------------------------------------------------------------
        cmd = Signal(FastCommand)
        arg = data.View(ConnArg, cmd.arg)
        conn = Signal(conn_bits)
        # An entry is always of the work item's connection (the states only say when).
        m.d.comb += [drain_list.w_data.eq(conn), timer_in.conn.eq(conn)]
        rec = Signal(ConnRecord)
        route = Signal(ConnRoute)
        now = Signal(32)
        now_next = Signal(32, init=1)   # now + 1, a register (no adder before a compare)
        m.d.sync += [now.eq(now + 1), now_next.eq(now_next + 1)]
        # Registered, so no 32-bit compare or add sits in front of the FSM's choices: the head
        # timer ran out (a clock late: the head changes only when IDLE pops it, and IDLE is left
        # for several clocks then), and the deadline of a timer armed now.
        timer_due = Signal()
        deadline = Signal(32)
        m.d.sync += [timer_due.eq(timer_list.r_rdy & ~(now - timer_head.deadline)[31]),
                     deadline.eq(now + 1 + self._delay)]
        frames_taken = Signal(32)
        quiet_fence = Signal(32)        # frames_in at the last DELETE's answer
        interlock = Signal()            # an INTERLOCK waits for its fence
        interlock_fence = Signal(32)
        interlock_conn = Signal(conn_bits)
        interlock_index = Signal(16)
        interlock_context = Signal(32)
        work = Signal(len(Work))        # a Work: what the record being read is for
        in_command = Signal()           # the work item is a command (answer at its end)
        bad_conn_reg = Signal()         # the command's conn_nbr is out of range
        bad_entries_reg = Signal()      # ... its RCVMDL entry count is
        from_queue = Signal()           # the frame came from its connection's queue

        passed_quiet = Signal()
        passed_interlock = Signal()
        # Registered: a clock late is only a clock later for a HANDOUT1 or an INTERLOCK.
        m.d.sync += [
            passed_quiet.eq(~(frames_taken - quiet_fence)[31]),
            passed_interlock.eq(~(frames_taken - interlock_fence)[31]),
        ]

        def set_fence(fence, passed, value):
            """A new fence: its ``passed`` flag is cleared with it (else, registered, it would
            still say the old fence's for a clock, and ``pick`` would act on that)."""
            m.d.sync += [fence.eq(value), passed.eq(0)]

        # Flush parameters.
        flush_reason = Signal(8)
        flush_frame = Signal()          # a frame goes to the slow path with the queue
        flush_frame_first = Signal()    # ... before the queue (else after)
        flush_passed = Signal(16)
        flush_handle = Signal(16)
        flush_placed = Signal(32)

        # Placement.
        left = Signal(16)               # payload bytes still to place
        done_bytes = Signal(16)         # payload bytes placed of this segment
        avail = Signal(32)              # room left in the entry
        piece = Signal(16)              # bytes of this piece
        piece_addr = Signal(64)
        piece_offset = Signal(14)
        entry_full = Signal()           # the piece fills the entry
        last_entry = Signal()
        mdl_full = Signal()
        ack_now = Signal()              # the segment is ACKed at once (PSH, a full RCVMDL, the
                                        # second full-sized segment)
        full_sized_reg = Signal()       # the segment is full-sized (SEGMENT_TAKEN's rule)
        second_reg = Signal()           # ... and the second unACKed one at least
        rest_fits = Signal()            # the rest of the payload fits in the entry

        # Counters (a register each; the pulses below add to them).
        counters = self.counters
        count = {name: Signal(32, name=f"add_{name}") for name, _ in
                 data.Layout.cast(FastPathCounters) if name != "flush_reason"}
        count_reason = Signal(8)
        count_flush = Signal()
        # The FSM's pulses are registered before they are added: the counters run a clock behind
        # the FSM, and no decision of the FSM feeds an adder's carry chain.
        added = {name: Signal(32, name=f"added_{name}") for name in count}
        m.d.sync += [added[name].eq(count[name]) for name in count]
        added_reason = Signal(8)
        added_flush = Signal()
        m.d.sync += [added_reason.eq(count_reason), added_flush.eq(count_flush)]
        for name in count:
            if name in ("queued", "connections"):
                continue
            with m.If(self.clear):
                m.d.sync += counters[name].eq(0)
            with m.Else():
                m.d.sync += counters[name].eq(counters[name] + added[name])
        for name in ("queued", "connections"):
            m.d.sync += counters[name].eq(counters[name] + added[name])
        reasons = data.Layout.cast(FastPathCounters)["flush_reason"].shape.length
        for k in range(reasons):
            with m.If(self.clear):
                m.d.sync += counters.flush_reason[k].eq(0)
            with m.Elif(added_flush & (added_reason == k)):
                m.d.sync += counters.flush_reason[k].eq(counters.flush_reason[k] + 1)

        def pulse(name, value=1):
            m.d.comb += count[name].eq(value)

        m.d.comb += count["frame_data"].eq(self.frame_data_written)

        # --- Memory ports: driven by the FSM ----------------------------------------------------
        hot_r = hot.read_port()
        hot_w = hot.write_port()
        route_r = route_ram.read_port()
        route_w = route_ram.write_port()
        sg_r = sg_ram.read_port()
        sg_w = sg_ram.write_port()
        m.d.comb += [hot_r.addr.eq(conn), route_r.addr.eq(conn), hot_w.addr.eq(conn),
                     route_w.addr.eq(conn), hot_w.data.eq(rec), route_w.data.eq(route),
                     q_next_r.addr.eq(rec.q_head)]
        # The queue memory's read address, registered (the head frame comes three clocks after
        # the head changed: DRAIN_* and FLUSH_QUEUE_* wait for it).
        m.d.comb += [q_w.addr.eq(frame.frame.slot), q_w.data.eq(frame)]
        q_r_addr = Signal.like(q_r.addr)
        m.d.sync += q_r_addr.eq(rec.q_head)
        m.d.comb += q_r.addr.eq(q_r_addr)
        # The entry memory's read address, registered: its data is good three clocks after the
        # entry or the connection changed.
        sg_r_addr = Signal.like(sg_r.addr)
        m.d.sync += sg_r_addr.eq(Cat(rec.mdl_entry, conn))
        m.d.comb += sg_r.addr.eq(sg_r_addr)

        def write_back():
            m.d.comb += hot_w.en.eq(1)

        # A state that may push a job calls these at its top level: the job's fields are loaded
        # in that state whatever happens (the register's load is a function of the state
        # only), and ``when`` decides whether it is pushed.
        # ``job`` loads every clock (0 outside the pushing states): it is read only the clock after
        # a push, and no enable of its own sits in front of its bits.
        m.d.sync += job.eq(0)

        def push_job(kind, when, queued=False, **fields):
            m.d.sync += [job.eq(0), job.kind.eq(kind), job_from_queue.eq(queued)]
            for name, value in fields.items():
                m.d.sync += getattr(job, name).eq(value)
            with m.If(when):
                m.d.sync += job_valid.eq(1)

        def push_event(when, **fields):
            push_job(RxJobKind.EVENT, when)
            m.d.sync += job.event.ring.eq(RingId.COMMAND.value)
            for name, value in fields.items():
                m.d.sync += getattr(job.event, name).eq(value)

        # Frame fields.
        f = frame.frame
        summary = f.summary
        payload_len = summary.payload_len
        flags = summary.tcp_flags

        def segment_end(dispatched):
            return dispatched.frame.tcp.seq + dispatched.frame.summary.payload_len

        # --- Checks of a segment against the record (docs/fast_path.md, the model's order) ----
        tcp = rec.tcp
        # The segment's end, registered wherever ``frame`` loads (no adder before the compare).
        end = Signal(32)
        beyond_window = _bind(m, _after(end, tcp.rcv_adv))
        # The segment's SEQ and ACK for the checks' compares: copies loaded with ``frame``,
        # which fans out wide (no long route in front of the carry chains).
        seg_seq = Signal(32)
        seg_ack = Signal(32)
        ack_beyond = _bind(m, _after(seg_ack, tcp.snd_nxt))
        # SND.UNA - 2**31: bit 31 flipped (no adder).
        ack_too_old = _bind(m, _after(tcp.snd_una ^ _HALF, seg_ack))
        # CHECK registers each test on its own (one 32-bit compare each); CHECK2 picks the reason.
        beyond_window_reg = Signal()
        ack_bad_reg = Signal()
        seq_other_reg = Signal()
        una_moves_reg = Signal()        # ACT's send-side updates, computed in CHECK too
        # The window update's test, in registered parts (CHECK2 combines them).
        wl1_after_reg = Signal()        # SND.WL1 < SEG.SEQ
        seq_is_wl1_reg = Signal()       # SND.WL1 = SEG.SEQ
        wl2_after_reg = Signal()        # SEG.ACK < SND.WL2
        una_moves = _bind(m, _after(seg_ack, tcp.snd_una))
        wl1_after = _bind(m, _after(seg_seq, tcp.snd_wl1))
        wl2_after = _bind(m, _after(tcp.snd_wl2, seg_ack))
        # The exceptions of the frame alone (its summary and flags), in the model's order:
        # registered with the compares, so CHECK2 picks among registered bits only.
        frame_reason = Signal(8)
        frame_exception = Signal()
        bad_csum = (summary.malformed | (summary.ip_csum_valid & ~summary.ip_csum_ok)
                    | (summary.l4_csum_valid & ~summary.l4_csum_ok))
        with m.If(bad_csum):
            m.d.comb += [frame_exception.eq(1), frame_reason.eq(FlushReason.BAD_CHECKSUM)]
        with m.Elif(summary.ip_options):
            m.d.comb += [frame_exception.eq(1), frame_reason.eq(FlushReason.IP_OPTIONS)]
        with m.Elif(flags & TcpFlags.SYN):
            m.d.comb += [frame_exception.eq(1), frame_reason.eq(FlushReason.SYN)]
        with m.Elif(flags & TcpFlags.RST):
            m.d.comb += [frame_exception.eq(1), frame_reason.eq(FlushReason.RST)]
        with m.Elif(flags & TcpFlags.FIN):
            m.d.comb += [frame_exception.eq(1), frame_reason.eq(FlushReason.FIN)]
        with m.Elif(flags & TcpFlags.URG):
            m.d.comb += [frame_exception.eq(1), frame_reason.eq(FlushReason.URG)]
        with m.Elif(~(flags & TcpFlags.ACK).any()):
            m.d.comb += [frame_exception.eq(1), frame_reason.eq(FlushReason.BAD_ACK)]
        frame_reason_reg = Signal(8)
        frame_exception_reg = Signal()
        # Then the compares' exceptions.
        reason = Signal(8)
        exception = Signal()
        with m.If(frame_exception_reg):
            m.d.comb += [exception.eq(1), reason.eq(frame_reason_reg)]
        with m.Elif(seq_other_reg):
            m.d.comb += [exception.eq(1), reason.eq(FlushReason.OUT_OF_ORDER)]
        with m.Elif(beyond_window_reg):
            m.d.comb += [exception.eq(1), reason.eq(FlushReason.OUT_OF_WINDOW)]
        with m.Elif(ack_bad_reg):
            m.d.comb += [exception.eq(1), reason.eq(FlushReason.BAD_ACK)]
        reason_reg = Signal(8)
        exception_reg = Signal()
        una_update = Signal()           # ACT's send-side updates, when no exception
        wnd_update = Signal()

        def segment_checks():
            """The checks' compares, registered (in CHECK, or in FRAME_ROUTE beside its choice)."""
            m.d.sync += [
                frame_exception_reg.eq(frame_exception), frame_reason_reg.eq(frame_reason),
                seq_other_reg.eq(seg_seq != tcp.rcv_nxt),
                beyond_window_reg.eq(beyond_window),
                ack_bad_reg.eq(ack_beyond | ack_too_old),
                una_moves_reg.eq(una_moves),
                wl1_after_reg.eq(wl1_after), seq_is_wl1_reg.eq(seg_seq == tcp.snd_wl1),
                wl2_after_reg.eq(wl2_after),
            ]

        # --- Window and ACK fields --------------------------------------------------------------
        window = Signal(32)
        m.d.comb += window.eq(Mux(rec.mdl_posted, tcp.rcv_buf, tcp.rcv_buf - tcp.rcv_unconsumed))
        threshold = Signal(32)
        half_buf = tcp.rcv_buf >> 1
        m.d.comb += threshold.eq(Mux(rec.rcv_mss < half_buf, rec.rcv_mss, half_buf))
        # The pipeline registers of SEND_ACK's and WINDOW's states.
        win_reg = Signal(32)
        edge_reg = Signal(32)
        adv_reg = Signal(32)
        diff_reg = Signal(32)
        threshold_reg = Signal(32)
        adv_after_reg = Signal()
        opened_reg = Signal()
        scaled_reg = Signal(32)         # RCV.ADV - RCV.NXT scaled (ACK_PUSH saturates it)
        reopen_reg = Signal()
        too_much_reg = Signal()         # a WINUPDATE counts more than was shown
        consumed_nonzero = Signal()     # ... not 0
        judge_refuse = Signal()         # COMMAND_JUDGE's verdict: refused, with this code
        judge_code = Signal(EventCode)
        judge_done = Signal()           # ... answered OK, nothing to do
        judge_go = Signal(len(_Go))     # ... carried out by these states (one-hot)
        consumed = Signal(32)           # a WINUPDATE's count: ``cmd.addr``'s low half, in a copy
                                        # of its own next to the compare (``cmd`` fans out wide)
        queue_reg = Signal()

        # --- DMA: Ccb reads and RCVMDL lists in, Ccb write-back out ----------------------------
        ccb_beats = CCB_BYTES // beat_bytes
        tuple_beats = -(-CCB_TUPLE_BYTES // beat_bytes)
        ccb_buf = Signal(8 * CCB_BYTES)         # the Ccb read (or assembled for the write-back)
        wb_word = Signal(data_bits)             # the write-back's beat on the bus
        wb_index = Signal(range(ccb_beats + 1)) # ... its number (beat_count's copy for the mux)
        remote_same = Signal(4)                 # ... its parts: the addresses' words equal
        local_same = Signal(4)
        remote_zero = Signal(3)                 # the route's high words zero (IPv4)
        local_zero = Signal(3)
        ports_same = Signal()
        ccb_good = Signal()             # the read Ccb passed every check
        blank_state = Signal(ConnState)  # RECORD_BLANK's state for the record
        blank_for_h1 = Signal()         # ... a HANDOUT1's (else a flush's)
        route_ok = Signal(3)                    # ... the version, the window scales, the MSS
        tcp_ok = Signal(2)                      # ... SND.UNA = SND.NXT, unconsumed <= buffer
        entries_in = Signal()                   # an RCVMDL's entries are all in
        beat_count = Signal(range(ccb_beats * 2 + 1))
        beat_hot = Signal(ccb_beats + 1, init=1)    # beat_count one-hot (a read's beats)
        dma_error = Signal()
        rd = self.dma_read
        wr = self.dma_write
        # At 256 bits a beat holds two RCVMDL entries, written one a clock: the beat after one
        # that landed waits a clock (``landed``: an RCVMDL's beat is in ``entry_buf``).
        entry_size = data.Layout.cast(RcvMdlEntry).size
        two_entries = data_bits >= 2 * entry_size
        landed = Signal()
        m.d.comb += rd.resp.ready.eq(~landed if two_entries else 1)
        # A read's beats land in the buffer by their number (each beat's slice loads on its
        # own: no enable reaches every bit of the buffer); an RCVMDL list's also go through a
        # shift register one entry long.
        entry_buf = Signal(max(entry_size, data_bits))
        with m.If(rd.resp.valid & rd.resp.ready):
            m.d.sync += [
                entry_buf.eq(Cat(entry_buf[data_bits:], rd.resp.payload.data)),
                beat_count.eq(beat_count + 1),
                beat_hot.eq(beat_hot << 1),
                dma_error.eq(dma_error | rd.resp.payload.error),
            ]
            for k in range(ccb_beats):
                with m.If(beat_hot[k]):
                    m.d.sync += ccb_buf[k * data_bits:(k + 1) * data_bits].eq(
                        rd.resp.payload.data)
        # The reads' ends, registered (a clock after the last beat): the compares stay off the
        # FSM's decisions. A request clears them.
        tuple_in = Signal()
        ccb_in = Signal()
        m.d.sync += [tuple_in.eq(beat_count == tuple_beats), ccb_in.eq(beat_count == ccb_beats)]
        read_ccb = data.View(Ccb, ccb_buf)
        read_tuple = data.View(CcbTupleHost, ccb_buf[:8 * CCB_TUPLE_BYTES])
        # The entry to write: the buffer's last one (64 and 128 bits), or at 256 bits the beat's
        # first, then (``second``) its second.
        second = Signal()
        if two_entries:
            sg_entry = data.View(RcvMdlEntry, Mux(second, entry_buf[entry_size:2 * entry_size],
                                                  entry_buf[:entry_size]))
        else:
            sg_entry = data.View(RcvMdlEntry, entry_buf[-entry_size:])

        # A Ccb's or an RcvMdlEntry list's address: CCB_ALIGN-aligned, the low bits ignored.
        host_addr = Signal.like(cmd.addr)
        m.d.comb += host_addr.eq(Cat(Const(0, exact_log2(CCB_ALIGN)),
                                     cmd.addr[exact_log2(CCB_ALIGN):]))

        # --- Answers ----------------------------------------------------------------------------
        def answer(code, event=1, bad=0):
            m.d.sync += [self.answers.valid.eq(1), self.answers.payload.code.eq(code),
                         self.answers.payload.event.eq(event), self.answers.payload.bad.eq(bad)]
        with m.If(self.answers.valid & self.answers.ready):
            m.d.sync += self.answers.valid.eq(0)
        # A refused command is counted when its answer is taken (from the answer's registers,
        # not from the decisions that chose it).
        m.d.comb += count["bad_commands"].eq(self.answers.valid & self.answers.ready
                                             & self.answers.payload.bad)

        m.d.sync += [self.release.eq(0), self.free.valid.eq(0)]

        table = self.table_command
        with m.If(table.valid & table.ready):
            m.d.sync += table.valid.eq(0)
        m.d.comb += self.table_response.ready.eq(1)
        # HANDOUT2's SET_STATE is not waited for (the table's state only informs; the record
        # decides): its answer, the next the table gives (one command at a time, in order), is
        # dropped. ``table_answer`` is the answer a state waits for.
        # Registered with its payload (``table_resp``): a clock late for an INSERT's or a
        # DELETE's answer, and their fences a clock later (a larger fence is only safer).
        set_state_owed = Signal()
        table_answer = Signal()
        table_resp = Signal.like(self.table_response.payload)
        m.d.sync += [table_answer.eq(self.table_response.valid & ~set_state_owed),
                     table_resp.eq(self.table_response.payload)]
        with m.If(self.table_response.valid):
            m.d.sync += set_state_owed.eq(0)

        # The command's tuple follows the route until a command is issued, and holds while the
        # table has not taken it (the engine goes on to other connections after a SET_STATE).
        record_tuple = table.payload.tuple
        with m.If(~table.valid):
            m.d.sync += [
                record_tuple.src.eq(route.remote_ip),
                record_tuple.dst.eq(route.local_ip),
                record_tuple.sport.eq(route.remote_port),
                record_tuple.dport.eq(route.local_port),
                record_tuple.ipv6.eq(route.ipv6),
            ]

        # --- The next work item, chosen a clock ahead (registered: IDLE acts on one bit) ------
        pick = Signal(len(Pick))
        with m.If(interlock & passed_interlock & job_room):
            m.d.sync += pick.eq(1 << Pick.INTERLOCK)
        with m.Elif(self.commands.valid & ~self.answers.valid
                    & ((self.commands.payload.opcode != CommandOpcode.HANDOUT1.value)
                       | (passed_quiet & ~interlock))):
            m.d.sync += pick.eq(1 << Pick.COMMAND)
        with m.Elif(self.place_failed.valid):
            m.d.sync += pick.eq(1 << Pick.FAILED)
        with m.Elif(pressure & ~(interlock & (interlock_conn == pressure_conn))):
            # (A connection whose INTERLOCK waits is flushed once it was posted.)
            m.d.sync += pick.eq(1 << Pick.PRESSURE)
        with m.Elif(drain_list.r_rdy):
            m.d.sync += pick.eq(1 << Pick.DRAIN)
        with m.Elif(self.frames.valid & job_room):
            m.d.sync += pick.eq(1 << Pick.FRAME)
        with m.Elif(timer_due):
            m.d.sync += pick.eq(1 << Pick.TIMER)
        with m.Else():
            m.d.sync += pick.eq(0)

        # The record in ``rec`` and ``route`` is the store's for ``conn`` from a write-back on
        # until IDLE takes a work item that reads or changes a record: a frame of that
        # connection next needs no read (back-to-back segments of one connection).
        cached = Signal()
        pick_cached = Signal()
        with m.If(hot_w.en):
            m.d.sync += cached.eq(1)
        m.d.sync += pick_cached.eq((cached | hot_w.en) & (self.frames.payload.conn_nbr == conn))

        # --- The record's flags, registered ---------------------------------------------------
        # The FSM's choices right after a record came (RECORD_LATCH, or IDLE for a record kept)
        # test these, made a clock ahead from the record coming in or the one kept.
        rf = Signal(data.StructLayout({
            "no_conn": 1, "to_queue": 1, "fast_queue": 1, "live": 1, "pending": 1,
            "timer_out": 1, "timer_runs": 1, "queued": 1}))
        latching = Signal()

        def record_flags(r, timer=True):
            live = (r.state == ConnState.FAST) | (r.state == ConnState.INDICATED)
            queue = r.q_count != 0
            # ``now`` is a clock later when the flag is used.
            out = ~(now_next - r.ack_deadline)[31]
            return [
                rf.no_conn.eq((r.state == ConnState.FREE) | (r.state == ConnState.FLUSHING)),
                rf.to_queue.eq((r.state == ConnState.PENDING) | (r.state == ConnState.INDICATED)
                               | queue),
                rf.fast_queue.eq((r.state == ConnState.FAST) & queue),
                rf.live.eq(live),
                rf.pending.eq(r.state == ConnState.PENDING),
                rf.queued.eq(queue),
            ] + ([
                rf.timer_out.eq(r.ack_timer & live & out),
                rf.timer_runs.eq(r.ack_timer & live),
            ] if timer else [])
        # The timer's flags need a 32-bit subtraction: from the record register only, never
        # straight from the block RAM's data (TIMER_FLAGS waits the clock that takes).
        with m.If(latching):
            m.d.sync += record_flags(data.View(ConnRecord, hot_r.data), timer=False)
        with m.Else():
            m.d.sync += record_flags(rec)

        # --- The FSM ----------------------------------------------------------------------------
        with m.FSM(name="engine") as fsm:

            # IDLE -- choosing the next work item: an INTERLOCK whose fence passed, a command, a
            # queue to drain, a frame, a delayed-ACK timer.
            with m.State("IDLE"):
                # ``frame`` follows the dispatcher's frame in IDLE, taken or not (nothing needs
                # the last work item's frame here: a job's frame is read a clock after its push).
                m.d.sync += [in_command.eq(0), from_queue.eq(0), frame.eq(self.frames.payload),
                             seg_seq.eq(self.frames.payload.frame.tcp.seq),
                             seg_ack.eq(self.frames.payload.frame.tcp.ack),
                             end.eq(segment_end(self.frames.payload))]
                # ``pick`` chose a clock ago; the item is still there (a stream's valid stays
                # until taken, the lists are only popped here). After a choice, IDLE waits a
                # clock for the next one (``pick`` is cleared).
                with m.If(pick != 0):
                    m.d.sync += pick.eq(0)
                with m.If((pick & ~((1 << Pick.INTERLOCK) | (1 << Pick.FRAME))).any()
                          | (pick[Pick.FRAME] & self.frames.payload.hit)):
                    m.d.sync += cached.eq(0)
                # The job IDLE may push: a frame with no connection, or an INTERLOCK.
                with m.If(pick[Pick.INTERLOCK]):
                    push_event(1, kind=EventKind.INTERLOCK.value,
                               index=interlock_index,
                               code=EventCode.OK.value,
                               tag=interlock_context,
                               detail=interlock_conn)
                    m.d.sync += interlock.eq(0)
                with m.Else():
                    push_job(RxJobKind.SLOW, pick[Pick.FRAME] & ~self.frames.payload.hit,
                             free=1)
                with m.If(pick[Pick.COMMAND] & ~self.answers.valid):
                    m.d.comb += self.commands.ready.eq(1)
                    taken = data.View(ConnArg, self.commands.payload.arg)
                    m.d.sync += [cmd.eq(self.commands.payload), in_command.eq(1),
                                 consumed.eq(self.commands.payload.addr[:32]),
                                 consumed_nonzero.eq(self.commands.payload.addr[:32] != 0),
                                 conn.eq(taken.conn_nbr), work.eq(Work.COMMAND),
                                 bad_conn_reg.eq(taken.conn_nbr >= n),
                                 bad_entries_reg.eq((taken.entries == 0)
                                                    | (taken.entries > max_entries))]
                    m.next = "COMMAND"
                with m.If(pick[Pick.FAILED]):
                    m.d.comb += self.place_failed.ready.eq(1)
                    m.d.sync += [conn.eq(self.place_failed.payload), work.eq(Work.FAILED)]
                    m.next = "RECORD_READ"
                with m.If(pick[Pick.PRESSURE]):
                    m.d.sync += [conn.eq(pressure_conn), work.eq(Work.PRESSURE)]
                    m.next = "RECORD_READ"
                with m.If(pick[Pick.DRAIN]):
                    m.d.comb += drain_list.r_en.eq(1)
                    m.d.sync += [conn.eq(drain_list.r_data), from_queue.eq(1),
                                 work.eq(Work.DRAIN)]
                    m.next = "RECORD_READ"
                with m.If(pick[Pick.FRAME]):
                    m.d.comb += self.frames.ready.eq(1)
                    m.d.sync += frames_taken.eq(frames_taken + 1)
                    with m.If(self.frames.payload.hit):
                        m.d.sync += [conn.eq(self.frames.payload.conn_nbr), work.eq(Work.FRAME)]
                        # The connection of the last work item: its record is still here.
                        with m.If(pick_cached):
                            m.next = "FRAME_ROUTE"
                        with m.Else():
                            m.next = "RECORD_READ"
                with m.If(pick[Pick.TIMER]):
                    m.d.comb += timer_list.r_en.eq(1)
                    m.d.sync += [conn.eq(timer_head.conn), work.eq(Work.TIMER)]
                    m.next = "RECORD_READ"

            # --- A connection's record ---------------------------------------------------------
            # RECORD_READ -- the record and route of ``conn`` are being read (two clocks), for
            # the work item ``work`` names (a COMMAND reads in its own first state).
            with m.State("RECORD_READ"):
                m.next = "RECORD_LOAD"
            # RECORD_LOAD -- the read's data comes next clock.
            with m.State("RECORD_LOAD"):
                m.next = "RECORD_LATCH"
            # RECORD_LATCH -- the record is in; on to the work item's own states.
            with m.State("RECORD_LATCH"):
                m.d.sync += [rec.eq(hot_r.data), route.eq(route_r.data)]
                with m.Switch(work):
                    with m.Case(Work.FRAME):
                        m.next = "FRAME_ROUTE"
                    with m.Case(Work.DRAIN):
                        m.next = "DRAIN_POP"
                    with m.Case(Work.FAILED):
                        m.next = "FAILED_CHECK"
                    with m.Case(Work.TIMER):
                        m.next = "TIMER_FLAGS"
                    with m.Case(Work.PRESSURE):
                        m.next = "PRESSURE_CHECK"
                    with m.Default():
                        m.next = "COMMAND_COMPARE"

            # --- Frames ------------------------------------------------------------------------
            # FRAME_ROUTE -- which way the frame goes: the slow path (no connection any more),
            # the queue, or the segment checks (their compares made here).
            with m.State("FRAME_ROUTE"):
                push_job(RxJobKind.SLOW, rf.no_conn & job_room, free=1)
                with m.If(rf.no_conn):
                    with m.If(job_room):
                        m.next = "IDLE"
                with m.Elif(rf.to_queue):
                    m.next = "ENQUEUE"
                with m.Else():
                    segment_checks()
                    m.next = "CHECK2"

            # ENQUEUE -- the frame joins its connection's queue (or a full queue flushes it).
            with m.State("ENQUEUE"):
                # The frame's record by its slot, written by the state alone (its slot is its
                # own: a full queue's flush never reads it).
                m.d.comb += q_w.en.eq(1)
                with m.If(rec.q_count >= params.QUEUE_MAX_FRAMES):
                    m.d.sync += [flush_reason.eq(FlushReason.QUEUE_FULL), flush_frame.eq(1),
                                 flush_frame_first.eq(0)]
                    m.next = "FLUSH"
                with m.Else():
                    # The old tail's successor is this slot; the slot is queued, for this
                    # connection (the pressure flush).
                    m.d.comb += [slot_conn_w.addr.eq(f.slot), slot_conn_w.data.eq(conn),
                                 slot_conn_w.en.eq(1)]
                    m.d.sync += [queued_set.eq(1), queued_set_slot.eq(f.slot)]
                    m.d.comb += [q_next_w.addr.eq(rec.q_tail), q_next_w.data.eq(f.slot),
                                 q_next_w.en.eq(rec.q_count != 0)]
                    m.d.sync += [rec.q_tail.eq(f.slot), rec.q_count.eq(rec.q_count + 1)]
                    with m.If(rec.q_count == 0):
                        m.d.sync += rec.q_head.eq(f.slot)
                    m.next = "WRITE_BACK"
                    pulse("queued")

            # DRAIN_POP -- a connection whose queue may drain: the head of the queue is read, if
            # the connection takes frames.
            with m.State("DRAIN_POP"):
                with m.If(rf.fast_queue):
                    m.next = "DRAIN_WAIT"
                with m.Else():
                    m.next = "IDLE"
            # DRAIN_WAIT, DRAIN_WAIT2 -- the head frame's record comes out of the queue memory.
            with m.State("DRAIN_WAIT"):
                m.next = "DRAIN_WAIT2"
            with m.State("DRAIN_WAIT2"):
                m.next = "DRAIN_TAKE"
            # DRAIN_TAKE -- the head frame is the work item now; the queue is one shorter.
            with m.State("DRAIN_TAKE"):
                m.d.sync += [frame.eq(q_head_frame), seg_seq.eq(q_head_frame.frame.tcp.seq),
                             seg_ack.eq(q_head_frame.frame.tcp.ack), rec.q_head.eq(q_next_r.data),
                             rec.q_count.eq(rec.q_count - 1),
                             queued_clear.eq(1), queued_clear_slot.eq(rec.q_head)]
                pulse("queued", Const(-1, 32))
                m.next = "DRAIN_END"
            # DRAIN_END -- the segment's end, from the frame's register.
            with m.State("DRAIN_END"):
                m.d.sync += end.eq(segment_end(frame))
                m.next = "CHECK"

            # FAILED_CHECK -- a placement's write failed: its connection is flushed (DMA_ERROR),
            # unless a flush already took it back.
            with m.State("FAILED_CHECK"):
                with m.If(rf.live):
                    m.d.sync += [flush_reason.eq(FlushReason.DMA_ERROR), flush_frame.eq(0)]
                    m.next = "FLUSH"
                with m.Else():
                    m.next = "IDLE"

            # PRESSURE_CHECK -- the packet buffer runs short and its oldest frame is in this
            # connection's queue: the connection is flushed (QUEUE_FULL), its queue passed to the
            # slow path, unless the queue went meanwhile.
            with m.State("PRESSURE_CHECK"):
                with m.If(~rf.no_conn & rf.queued):
                    m.d.sync += [flush_reason.eq(FlushReason.QUEUE_FULL), flush_frame.eq(0)]
                    m.next = "FLUSH"
                with m.Else():
                    m.next = "IDLE"

            # CHECK -- the segment's checks; registered for the next state.
            with m.State("CHECK"):
                segment_checks()
                m.next = "CHECK2"
            # CHECK2 -- the first exception in the model's order.
            with m.State("CHECK2"):
                m.d.sync += [reason_reg.eq(reason), exception_reg.eq(exception),
                             una_update.eq(una_moves_reg & ~exception),
                             wnd_update.eq((wl1_after_reg | (seq_is_wl1_reg & ~wl2_after_reg))
                                           & ~exception)]
                m.next = "ACT"
            # ACT -- an exception flushes; else the send side is updated and the segment is a
            # pure ACK, placed, or shown.
            with m.State("ACT"):
                seq, ack_field = f.tcp.seq, f.tcp.ack
                with m.If(una_update):
                    m.d.sync += rec.tcp.snd_una.eq(ack_field)
                with m.If(wnd_update):
                    m.d.sync += [rec.tcp.snd_wnd.eq(f.tcp.window << rec.snd_wscale),
                                 rec.tcp.snd_wl1.eq(seq), rec.tcp.snd_wl2.eq(ack_field)]
                with m.If(exception_reg):
                    m.d.sync += [flush_reason.eq(reason_reg), flush_frame.eq(1),
                                 flush_frame_first.eq(1)]
                    m.next = "FLUSH"
                with m.Else():
                    m.d.sync += [left.eq(payload_len), done_bytes.eq(0), mdl_full.eq(0),
                                 full_sized_reg.eq(payload_len >= rec.rcv_mss),
                                 second_reg.eq(tcp.unacked != 0)]
                    with m.If(payload_len == 0):
                        pulse("pure_acks")
                        m.d.sync += [self.release.eq(1), self.free.valid.eq(1),
                                     self.free.payload.eq(f.slot)]
                        m.next = "WRITE_BACK"
                    with m.Elif(rec.mdl_posted):
                        m.next = "PLACE_AVAIL"
                    with m.Else():
                        m.next = "SHOW_WAIT"

            # PLACE_READ -- the RCVMDL entry being filled is read.
            with m.State("PLACE_READ"):
                m.next = "PLACE_ADDRESS"
            # PLACE_ADDRESS -- the entry's read address is registered.
            with m.State("PLACE_ADDRESS"):
                m.next = "PLACE_WAIT"
            # PLACE_WAIT -- the entry's read data comes next clock.
            with m.State("PLACE_WAIT"):
                m.next = "PLACE_AVAIL"
            # PLACE_AVAIL -- the room left in the entry, and where it starts (registered). The
            # entry memory is read all the time at (conn, entry being filled); its data is good
            # three clocks after that changed (ACT is that late after the record came, in
            # RECORD_LATCH or earlier).
            with m.State("PLACE_AVAIL"):
                sg = sg_r.data
                m.d.sync += [avail.eq(sg.length - rec.mdl_offset),
                             piece_addr.eq(sg.addr + rec.mdl_offset),
                             last_entry.eq(rec.mdl_entry + 1 == rec.mdl_entries)]
                m.next = "PLACE_SIZE"
            # PLACE_SIZE -- the piece: as much of the payload as the entry holds (registered).
            with m.State("PLACE_SIZE"):
                m.d.sync += [piece.eq(Mux(avail < left, avail, left)),
                             entry_full.eq(avail <= left), rest_fits.eq(left <= avail),
                             piece_offset.eq(summary.payload_offset + done_bytes)]
                # Room for the job is waited for here (the same values load again meanwhile):
                # PLACE_PIECE then acts by its state alone.
                with m.If(job_room):
                    m.next = "PLACE_PIECE"
            # PLACE_PIECE -- one PLACE job.
            with m.State("PLACE_PIECE"):
                push_job(RxJobKind.PLACE, 1, conn_nbr=conn, offset=piece_offset,
                         length=piece, addr=piece_addr, free=rest_fits)
                m.d.sync += [left.eq(left - piece), done_bytes.eq(done_bytes + piece),
                             rec.mdl_placed.eq(rec.mdl_placed + piece)]
                with m.If(entry_full & ~last_entry):
                    m.d.sync += [rec.mdl_entry.eq(rec.mdl_entry + 1), rec.mdl_offset.eq(0)]
                with m.Else():
                    m.d.sync += rec.mdl_offset.eq(rec.mdl_offset + piece)
                with m.If(entry_full & last_entry):
                    m.d.sync += mdl_full.eq(1)
                with m.If(rest_fits):
                    m.next = "PLACE_DONE"
                with m.Elif(entry_full & last_entry):
                    m.next = "OVERRUN_WAIT"
                with m.Else():
                    m.next = "PLACE_READ"
            # PLACE_DONE -- the whole segment is placed: RCV_NXT, counters, the RCVMDL's end.
            with m.State("PLACE_DONE"):
                psh = (flags & TcpFlags.PSH).any()
                m.d.sync += [
                    rec.tcp.rcv_nxt.eq(tcp.rcv_nxt + done_bytes),
                    rec.stats.fast_bytes.eq(rec.stats.fast_bytes + done_bytes),
                    rec.stats.fast_segments.eq(rec.stats.fast_segments + 1),
                    self.release.eq(1),
                    ack_now.eq(mdl_full | psh | (full_sized_reg & second_reg)),
                ]
                pulse("fast_frames")
                pulse("fast_bytes", done_bytes)
                with m.If(mdl_full | (psh & rec.mdl_push)):
                    m.next = "MDL_DONE_WAIT"
                with m.Else():
                    m.next = "SEGMENT_TAKEN"
            # MDL_DONE_WAIT, OVERRUN_WAIT, SHOW_WAIT, FLUSH_EVENT_WAIT -- room for the state's
            # job is waited for here (``job_room`` a clock before the push: see the FIFOs), so
            # the pushing state after it acts by its state alone: no FIFO level in front of the
            # record's, the counters' or the job's registers.
            for pushing in ("MDL_DONE", "OVERRUN", "SHOW", "FLUSH_EVENT"):
                with m.State(f"{pushing}_WAIT"):
                    with m.If(job_room):
                        m.next = pushing
            # MDL_DONE -- RCVMDL_DONE after the placement's writes; the RCVMDL is gone.
            with m.State("MDL_DONE"):
                push_event(1, kind=EventKind.RCVMDL_DONE.value,
                           index=rec.mdl_handle,
                           code=Mux(mdl_full, EventCode.OK.value, RCVMDL_ENDED_BY_PSH),
                           tag=rec.mdl_placed,
                           detail=conn)
                pulse("rcvmdl_done")
                m.d.sync += [rec.mdl_posted.eq(0), rec.mdl_push.eq(0), rec.mdl_handle.eq(0),
                             rec.mdl_entries.eq(0), rec.mdl_entry.eq(0), rec.mdl_offset.eq(0),
                             rec.mdl_placed.eq(0)]
                m.next = "SEGMENT_TAKEN"
            # OVERRUN -- the segment is longer than the RCVMDL's space: the RCVMDL completes
            # full, then the connection is flushed with the whole segment to the slow path.
            with m.State("OVERRUN"):
                push_event(1, kind=EventKind.RCVMDL_DONE.value,
                           index=rec.mdl_handle,
                           code=EventCode.OK.value,
                           tag=rec.mdl_placed,
                           detail=conn)
                pulse("rcvmdl_done")
                pulse("fast_bytes", done_bytes)
                m.d.sync += [
                    rec.tcp.rcv_nxt.eq(tcp.rcv_nxt + done_bytes),
                    rec.stats.fast_bytes.eq(rec.stats.fast_bytes + done_bytes),
                    rec.mdl_posted.eq(0), rec.mdl_push.eq(0), rec.mdl_handle.eq(0),
                    rec.mdl_entries.eq(0), rec.mdl_entry.eq(0), rec.mdl_offset.eq(0),
                    rec.mdl_placed.eq(0),
                    flush_reason.eq(FlushReason.OUT_OF_WINDOW), flush_frame.eq(1),
                    flush_frame_first.eq(1),
                ]
                m.next = "FLUSH"

            # SHOW -- no RCVMDL: the segment goes to an RX buffer with FRAME_DATA.
            with m.State("SHOW"):
                push_job(RxJobKind.FRAME_DATA, 1, conn_nbr=conn, free=1)
                m.d.sync += [
                    rec.tcp.rcv_nxt.eq(tcp.rcv_nxt + payload_len),
                    rec.tcp.rcv_unconsumed.eq(tcp.rcv_unconsumed + payload_len),
                    rec.stats.frame_data.eq(rec.stats.frame_data + 1),
                    rec.state.eq(ConnState.INDICATED),
                    ack_now.eq((flags & TcpFlags.PSH).any() | (full_sized_reg & second_reg)),
                ]
                pulse("frame_data_bytes", payload_len)
                m.next = "SEGMENT_TAKEN"

            # SEGMENT_TAKEN -- the ACK rules: at once, or the delayed-ACK timer.
            with m.State("SEGMENT_TAKEN"):
                m.d.sync += rec.tcp.unacked.eq(Mux(tcp.unacked == 0xFF, 0xFF, tcp.unacked + 1))
                with m.If(ack_now):
                    m.next = "SEND_ACK"
                with m.Else():
                    with m.If(~rec.ack_timer):
                        m.d.sync += [rec.ack_timer.eq(1), rec.ack_deadline.eq(deadline)]
                        with m.If(~rec.in_timer_list):
                            m.d.comb += [timer_list.w_en.eq(1),
                                         timer_in.deadline.eq(deadline)]
                            m.d.sync += rec.in_timer_list.eq(1)
                    m.next = "WRITE_BACK"

            # SEND_ACK -- an AckRequest from the record and the route.
            # (One 32-bit step a state: the window, its right edge, the new RCV.ADV, the field.)
            with m.State("SEND_ACK"):
                m.d.sync += win_reg.eq(window)
                m.next = "ACK_EDGE"
            with m.State("ACK_EDGE"):
                m.d.sync += edge_reg.eq(tcp.rcv_nxt + win_reg)
                m.next = "ACK_ADVANCE"
            # ACK_ADVANCE, ACK_AFTER, ACK_PICK -- the new RCV.ADV: the right edge if it moved
            # past the old one (the difference, its sign and zero test, the pick: a register
            # each, as WINDOW_OPENING and WINDOW_COMPARE do).
            with m.State("ACK_ADVANCE"):
                m.d.sync += diff_reg.eq(edge_reg - tcp.rcv_adv)
                m.next = "ACK_AFTER"
            with m.State("ACK_AFTER"):
                m.d.sync += adv_after_reg.eq((diff_reg != 0) & ~diff_reg[31])
                m.next = "ACK_PICK"
            with m.State("ACK_PICK"):
                m.d.sync += adv_reg.eq(Mux(adv_after_reg, edge_reg, tcp.rcv_adv))
                m.next = "ACK_FIELD"
            with m.State("ACK_FIELD"):
                m.d.sync += diff_reg.eq(adv_reg - tcp.rcv_nxt)
                m.next = "ACK_SCALE"
            # ACK_SCALE -- RCV.ADV - RCV.NXT scaled (ACK_PUSH makes it the field: at most 0xFFFF).
            with m.State("ACK_SCALE"):
                m.d.sync += scaled_reg.eq(diff_reg >> rec.rcv_wscale)
                # Room for the request is waited for here (the field loads again meanwhile):
                # ACK_PUSH then updates the record by its state alone. The room stays (only
                # the engine pushes; ``ack_room`` leaves a margin of four).
                with m.If(ack_room):
                    m.next = "ACK_PUSH"
            # ACK_PUSH -- the AckRequest from the record and the route.
            with m.State("ACK_PUSH"):
                new_adv = adv_reg
                mask = Mux(route.ipv6, Const((1 << 128) - 1, 128), Const((1 << 32) - 1, 128))
                m.d.sync += [
                    ack.local_mac.eq(route.local_mac), ack.remote_mac.eq(route.remote_mac),
                    ack.vlan.eq(route.vlan), ack.vlan_tci.eq(route.vlan_tci),
                    ack.ipv6.eq(route.ipv6), ack.local_ip.eq(route.local_ip & mask),
                    ack.remote_ip.eq(route.remote_ip & mask), ack.ttl.eq(route.ttl),
                    ack.tos.eq(route.tos), ack.ip_id.eq(tcp.ip_id),
                    ack.local_port.eq(route.local_port), ack.remote_port.eq(route.remote_port),
                    ack.seq.eq(tcp.snd_nxt), ack.ack.eq(tcp.rcv_nxt),
                    ack.flags.eq(TcpFlags.ACK),
                    ack.window.eq(Mux(scaled_reg[16:].any(), 0xFFFF, scaled_reg[:16])),
                    ack.timestamps.eq(rec.timestamps), ack.ts_val.eq(tcp.ts_val),
                    ack.ts_ecr.eq(tcp.ts_recent),
                ]
                m.d.sync += ack_valid.eq(1)
                m.d.sync += [
                    rec.tcp.rcv_adv.eq(new_adv),
                    rec.tcp.ip_id.eq(Mux(route.ipv6, tcp.ip_id, tcp.ip_id + 1)),
                    rec.tcp.unacked.eq(0), rec.tcp.ack_now.eq(0), rec.ack_timer.eq(0),
                    rec.stats.acks.eq(rec.stats.acks + 1),
                ]
                pulse("acks_sent")
                m.next = "WRITE_BACK"

            # TIMER_CHECK -- a connection of the delayed-ACK list: run out, the ACK; running,
            # back in the list; else off the list.
            with m.State("TIMER_FLAGS"):
                m.next = "TIMER_CHECK"
            with m.State("TIMER_CHECK"):
                with m.If(rf.timer_out):
                    m.d.sync += rec.in_timer_list.eq(0)
                    m.next = "SEND_ACK"
                with m.Elif(rf.timer_runs):
                    m.d.comb += [timer_list.w_en.eq(1),
                                 timer_in.deadline.eq(rec.ack_deadline)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [rec.in_timer_list.eq(0), rec.ack_timer.eq(0)]
                    m.next = "WRITE_BACK"

            # WRITE_BACK -- the record goes back; a connection with frames to drain is listed.
            with m.State("WRITE_BACK"):
                write_back()
                with m.If(from_queue & (rec.state == ConnState.FAST) & (rec.q_count != 0)):
                    m.d.comb += drain_list.w_en.eq(1)
                with m.If(in_command & ~self.answers.valid):
                    m.next = "COMMAND_END"
                with m.Else():
                    m.next = "IDLE"
            # COMMAND_END -- commands whose answer comes at their end (RCVMDL, WINUPDATE).
            with m.State("COMMAND_END"):
                answer(EventCode.OK, event=0)
                m.next = "IDLE"

            # --- Commands ----------------------------------------------------------------------
            # COMMAND -- the record of the conn_nbr named is being read (not for HANDOUT1).
            with m.State("COMMAND"):
                with m.If(cmd.opcode == CommandOpcode.HANDOUT1.value):
                    m.next = "H1_REQUEST"
                with m.Elif(bad_conn_reg):
                    answer(EventCode.UNKNOWN_CONNECTION, bad=1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "RECORD_LOAD"
            # COMMAND_COMPARE -- WINUPDATE's count against the bytes shown (registered).
            with m.State("COMMAND_COMPARE"):
                m.d.sync += too_much_reg.eq(consumed > tcp.rcv_unconsumed)
                m.next = "COMMAND_JUDGE"
            # COMMAND_JUDGE -- the command's verdict, registered: a refusal (and its code), an
            # answer with nothing to do, or which states carry it out. COMMAND_CHECK acts on
            # these bits alone (the opcode's decode and the record's flags stay out of the
            # answer's and the FSM's registers).
            with m.State("COMMAND_JUDGE"):
                m.d.sync += [judge_refuse.eq(0), judge_done.eq(0), judge_go.eq(0)]

                def refuse(code):
                    m.d.sync += [judge_refuse.eq(1), judge_code.eq(code)]

                def go(step):
                    m.d.sync += judge_go.eq(1 << step)

                with m.If(rf.no_conn):
                    refuse(EventCode.UNKNOWN_CONNECTION)
                with m.Else():
                    with m.Switch(cmd.opcode):
                        with m.Case(CommandOpcode.HANDOUT2.value):
                            with m.If(~rf.pending):
                                refuse(EventCode.WRONG_STATE)
                            with m.Else():
                                go(_Go.HANDOUT2)
                        with m.Case(CommandOpcode.RCVMDL.value):
                            with m.If(~rf.live | rec.mdl_posted):
                                refuse(EventCode.WRONG_STATE)
                            with m.Elif(bad_entries_reg):
                                refuse(EventCode.BAD_MDL)
                            with m.Else():
                                go(_Go.RCVMDL)
                        with m.Case(CommandOpcode.WINUPDATE.value):
                            # A record not loaded shows nothing: any count is too much.
                            with m.If(Mux(rec.loaded, too_much_reg, consumed_nonzero)):
                                refuse(EventCode.WRONG_STATE)
                            with m.Elif(~rec.loaded):
                                m.d.sync += judge_done.eq(1)
                            with m.Else():
                                go(_Go.WINUPDATE)
                        with m.Default():       # FLUSH, CLOSE
                            is_close = cmd.opcode == CommandOpcode.CLOSE.value
                            m.d.sync += [
                                flush_reason.eq(Mux(is_close, FlushReason.CLOSE,
                                                    FlushReason.HOST)),
                                flush_frame.eq(0), flush_frame_first.eq(0),
                            ]
                            go(_Go.FLUSH)
                m.next = "COMMAND_CHECK"
            # COMMAND_CHECK -- the verdict carried out.
            with m.State("COMMAND_CHECK"):
                with m.If(judge_refuse):
                    answer(judge_code, bad=1)
                    m.next = "IDLE"
                with m.Elif(judge_done):
                    answer(EventCode.OK, event=0)
                    m.next = "IDLE"
                with m.Elif(judge_go[_Go.HANDOUT2]):
                    m.next = "H2_REQUEST"
                with m.Elif(judge_go[_Go.RCVMDL]):
                    m.next = "MDL_REQUEST"
                with m.Elif(judge_go[_Go.WINUPDATE]):
                    m.next = "WINUPDATE_APPLY"
                with m.Else():
                    m.next = "FLUSH"

            # WINUPDATE_APPLY -- the bytes consumed are taken off the bytes shown (by the state
            # alone: no command decision in front of the record's register).
            with m.State("WINUPDATE_APPLY"):
                m.d.sync += rec.tcp.rcv_unconsumed.eq(tcp.rcv_unconsumed - consumed)
                m.next = "WINDOW"

            # WINDOW -- after a WINUPDATE or an RCVMDL: an ACK if the window opened enough; an
            # INDICATED connection takes frames again once nothing shown is unconsumed (or an
            # RCVMDL is posted).
            with m.State("WINDOW"):
                m.d.sync += [
                    reopen_reg.eq((rec.state == ConnState.INDICATED)
                                  & (rec.mdl_posted | (tcp.rcv_unconsumed == 0))),
                    queue_reg.eq(rec.q_count != 0),
                    win_reg.eq(window), threshold_reg.eq(threshold),
                ]
                m.next = "WINDOW_REOPEN"
            # WINDOW_REOPEN -- an INDICATED connection that takes frames again: FAST, and its
            # queue drains.
            with m.State("WINDOW_REOPEN"):
                with m.If(reopen_reg):
                    m.d.sync += rec.state.eq(ConnState.FAST)
                    with m.If(queue_reg):
                        m.d.comb += drain_list.w_en.eq(1)
                m.next = "WINDOW_EDGE"
            # WINDOW_EDGE -- the right edge; the threshold at least 1.
            with m.State("WINDOW_EDGE"):
                m.d.sync += [edge_reg.eq(tcp.rcv_nxt + win_reg),
                             threshold_reg.eq(Mux(threshold_reg == 0, 1, threshold_reg))]
                m.next = "WINDOW_OPENING"
            with m.State("WINDOW_OPENING"):
                m.d.sync += diff_reg.eq(edge_reg - tcp.rcv_adv)
                m.next = "WINDOW_COMPARE"
            # WINDOW_COMPARE -- did the right edge move past RCV.ADV (the difference's sign:
            # ``_after``), and by the threshold? Two registered halves; WINDOW_DECIDE ands them.
            with m.State("WINDOW_COMPARE"):
                m.d.sync += [adv_after_reg.eq((diff_reg != 0) & ~diff_reg[31]),
                             opened_reg.eq(rec.loaded & (diff_reg >= threshold_reg))]
                m.next = "WINDOW_DECIDE"
            # WINDOW_DECIDE -- an ACK when it did.
            with m.State("WINDOW_DECIDE"):
                with m.If(adv_after_reg & opened_reg):
                    m.next = "SEND_ACK"
                with m.Else():
                    m.next = "WRITE_BACK"

            # H1_REQUEST -- HANDOUT1: read the Ccb's tuple.
            with m.State("H1_REQUEST"):
                m.d.comb += [rd.req.valid.eq(1), rd.req.payload.addr.eq(host_addr),
                             rd.req.payload.beats.eq(tuple_beats)]
                with m.If(rd.req.ready):
                    m.d.sync += [beat_count.eq(0), beat_hot.eq(1), dma_error.eq(0),
                                 tuple_in.eq(0)]
                    m.next = "H1_READ"
            # H1_READ -- the tuple's beats come in.
            with m.State("H1_READ"):
                with m.If(tuple_in):
                    with m.If(dma_error):
                        answer(EventCode.DMA_ERROR)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [
                            route.eq(0),
                            route.remote_ip.eq(read_tuple.remote_ip),
                            route.local_ip.eq(read_tuple.local_ip),
                            route.remote_port.eq(read_tuple.remote_port),
                            route.local_port.eq(read_tuple.local_port),
                            route.ipv6.eq(read_tuple.ipv6),
                            route.host_context.eq(cmd.arg),
                        ]
                        m.next = "H1_INSERT"
            # H1_INSERT -- the tuple goes into the table, pending.
            with m.State("H1_INSERT"):
                with m.If(~table.valid):    # (as FLUSH: a SET_STATE not yet taken goes first)
                    m.d.sync += [table.valid.eq(1), table.payload.opcode.eq(CcbOpcode.INSERT),
                                 table.payload.state.eq(CcbState.PENDING)]
                    m.next = "H1_ANSWER"
            # H1_ANSWER -- INSERTED: a fresh record, and the INTERLOCK waits for its fence.
            with m.State("H1_ANSWER"):
                resp = table_resp
                with m.If(table_answer):
                    with m.Switch(resp.status):
                        with m.Case(CcbStatus.INSERTED):
                            m.d.sync += [
                                conn.eq(resp.conn_nbr),
                                interlock.eq(1),
                                interlock_conn.eq(resp.conn_nbr),
                                interlock_index.eq(cmd.index),
                                interlock_context.eq(cmd.arg),
                            ]
                            set_fence(interlock_fence, passed_interlock, self.frames_in)
                            pulse("connections")
                            m.d.sync += [blank_state.eq(ConnState.PENDING), blank_for_h1.eq(1)]
                            m.next = "RECORD_BLANK"
                        with m.Case(CcbStatus.EXISTS):
                            answer(EventCode.TUPLE_EXISTS, bad=1)
                            m.next = "IDLE"
                        with m.Default():
                            answer(EventCode.TABLE_FULL, bad=1)
                            m.next = "IDLE"
            # RECORD_BLANK -- a blank record in ``blank_state`` (by the state alone): HANDOUT1's
            # fresh one (PENDING), or a flushed one (FREE). One state for both, so the record's
            # wide register has one fewer source to choose from.
            with m.State("RECORD_BLANK"):
                m.d.sync += [rec.eq(0), rec.state.eq(blank_state)]
                with m.If(blank_for_h1):
                    m.next = "H1_WRITE"
                with m.Else():
                    m.next = "FLUSH_END"
            # H1_WRITE -- the record and the route are written; the answer has no event.
            with m.State("H1_WRITE"):
                m.d.comb += [hot_w.en.eq(1), route_w.en.eq(1)]
                answer(EventCode.OK, event=0)
                m.next = "IDLE"

            # H2_REQUEST -- HANDOUT2: read the whole Ccb.
            with m.State("H2_REQUEST"):
                m.d.comb += [rd.req.valid.eq(1), rd.req.payload.addr.eq(host_addr),
                             rd.req.payload.beats.eq(ccb_beats)]
                with m.If(rd.req.ready):
                    m.d.sync += [beat_count.eq(0), beat_hot.eq(1), dma_error.eq(0),
                                 ccb_in.eq(0)]
                    m.next = "H2_READ"
            # H2_READ -- the Ccb's beats come in; then its checks.
            with m.State("H2_READ"):
                with m.If(ccb_in):
                    m.next = "H2_CHECK"
            # H2_CHECK -- the Ccb's checks, in three registered parts; H2_GOOD ands them.
            with m.State("H2_CHECK"):
                c = read_ccb
                t = c.tuple
                # The tuple against HANDOUT1's, 32 bits a compare: an IPv4 address is its low
                # word, the rest of the route's zero.
                for k in range(4):
                    word = slice(32 * k, 32 * (k + 1))
                    m.d.sync += [
                        remote_same[k].eq(t.remote_ip[word] == route.remote_ip[word]),
                        local_same[k].eq(t.local_ip[word] == route.local_ip[word]),
                    ]
                    if k:
                        m.d.sync += [remote_zero[k - 1].eq(route.remote_ip[word] == 0),
                                     local_zero[k - 1].eq(route.local_ip[word] == 0)]
                m.d.sync += [
                    ports_same.eq((t.remote_port == route.remote_port)
                                  & (t.local_port == route.local_port) & (t.ipv6 == route.ipv6)),
                    route_ok[0].eq(c.version == CCB_VERSION),
                    route_ok[1].eq((c.route.snd_wscale <= MAX_WSCALE)
                                   & (c.route.rcv_wscale <= MAX_WSCALE)),
                    route_ok[2].eq((c.route.rcv_mss >= 1) & (c.route.rcv_mss <= MAX_RCV_MSS)),
                    tcp_ok[0].eq(c.tcp.snd_una == c.tcp.snd_nxt),
                    tcp_ok[1].eq(c.tcp.rcv_unconsumed <= c.tcp.rcv_buf),
                ]
                m.next = "H2_AND"
            # H2_AND -- the checks' parts anded (registered).
            with m.State("H2_AND"):
                same_tuple = Mux(route.ipv6, remote_same.all() & local_same.all(),
                                 remote_same[0] & local_same[0]
                                 & remote_zero.all() & local_zero.all())
                m.d.sync += ccb_good.eq(same_tuple & ports_same & route_ok.all() & tcp_ok.all())
                m.next = "H2_GOOD"
            # H2_GOOD -- a bad Ccb (or a failed read) is refused.
            with m.State("H2_GOOD"):
                good = ccb_good
                with m.If(dma_error):
                    answer(EventCode.DMA_ERROR)
                    m.d.sync += [flush_reason.eq(FlushReason.DMA_ERROR), flush_frame.eq(0)]
                    m.next = "FLUSH"
                with m.Elif(~good):
                    answer(EventCode.BAD_CCB, bad=1)
                    m.d.sync += [flush_reason.eq(FlushReason.BAD_CCB), flush_frame.eq(0)]
                    m.next = "FLUSH"
                with m.Else():
                    m.next = "H2_APPLY"
            # H2_APPLY -- the good Ccb is loaded into the record and the route (by the state
            # alone: no decision in front of the record's registers).
            with m.State("H2_APPLY"):
                c = read_ccb
                m.d.sync += [
                    rec.state.eq(ConnState.FAST), rec.loaded.eq(1), rec.tcp.eq(c.tcp),
                    rec.rcv_mss.eq(c.route.rcv_mss), rec.snd_wscale.eq(c.route.snd_wscale),
                    rec.rcv_wscale.eq(c.route.rcv_wscale),
                    rec.timestamps.eq(c.route.timestamps),
                    route.local_mac.eq(c.route.local_mac),
                    route.remote_mac.eq(c.route.remote_mac), route.vlan.eq(c.route.vlan),
                    route.vlan_tci.eq(c.route.vlan_tci), route.ttl.eq(c.route.ttl),
                    route.tos.eq(c.route.tos), route.iss.eq(c.route.iss),
                    route.irs.eq(c.route.irs), route.ccb_addr.eq(host_addr),
                ]
                m.next = "H2_SET_STATE"
            # H2_SET_STATE -- the record is written, the table entry becomes offloaded (not
            # waited for: its answer is dropped).
            with m.State("H2_SET_STATE"):
                m.d.comb += [hot_w.en.eq(1), route_w.en.eq(1)]
                m.d.sync += [table.valid.eq(1), table.payload.opcode.eq(CcbOpcode.SET_STATE),
                             table.payload.state.eq(CcbState.OFFLOADED), set_state_owed.eq(1)]
                pulse("handouts")
                m.next = "H2_ANSWER"
            # H2_ANSWER -- COMMAND_DONE OK; the queue drains.
            with m.State("H2_ANSWER"):
                answer(EventCode.OK)
                with m.If(rec.q_count != 0):
                    m.d.comb += drain_list.w_en.eq(1)
                m.next = "IDLE"

            # MDL_REQUEST -- RCVMDL: read its entries.
            with m.State("MDL_REQUEST"):
                entry_beats = data.Layout.cast(RcvMdlEntry).size // data_bits
                per_beat = max(1, data_bits // data.Layout.cast(RcvMdlEntry).size)
                beats = (arg.entries * max(1, entry_beats) + per_beat - 1) // per_beat
                m.d.comb += [rd.req.valid.eq(1), rd.req.payload.addr.eq(host_addr),
                             rd.req.payload.beats.eq(beats)]
                with m.If(rd.req.ready):
                    m.d.sync += [beat_count.eq(0), beat_hot.eq(1), dma_error.eq(0), left.eq(0),
                                 mdl_full.eq(0), entries_in.eq(0)]
                    m.next = "MDL_READ"
            # MDL_READ -- each entry, as its last beat lands, goes into the entry memory.
            with m.State("MDL_READ"):
                entry_beats = max(1, data.Layout.cast(RcvMdlEntry).size // data_bits)
                # Registered: a clock after the last entry landed (cleared by the request).
                m.d.sync += entries_in.eq(left == arg.entries)
                m.d.sync += landed.eq(rd.resp.valid & rd.resp.ready
                                      & ((beat_count + 1) % entry_beats == 0))
                # At 256 bits the beat's second entry is written the clock after its first,
                # when the list has it (an odd count leaves the last beat's second half out).
                write = Signal()
                m.d.comb += write.eq(landed | (second & (left != arg.entries)))
                if two_entries:
                    m.d.sync += second.eq(landed)
                with m.If(write):
                    m.d.comb += [sg_w.addr.eq(Cat(left[:entry_bits], conn)),
                                 sg_w.data.addr.eq(sg_entry.addr),
                                 sg_w.data.length.eq(sg_entry.length), sg_w.en.eq(1)]
                    m.d.sync += [left.eq(left + 1),
                                 mdl_full.eq(mdl_full | (sg_entry.length == 0))]
                with m.If(entries_in):
                    with m.If(dma_error):
                        m.d.sync += [flush_reason.eq(FlushReason.DMA_ERROR), flush_frame.eq(0)]
                        m.next = "FLUSH"
                    with m.Elif(mdl_full):
                        answer(EventCode.BAD_MDL, bad=1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [
                            rec.mdl_posted.eq(1), rec.mdl_push.eq(arg.push),
                            rec.mdl_handle.eq(cmd.tag), rec.mdl_entries.eq(arg.entries),
                            rec.mdl_entry.eq(0), rec.mdl_offset.eq(0), rec.mdl_placed.eq(0),
                            route.mdl_addr.eq(host_addr),
                        ]
                        m.next = "MDL_ROUTE"
            with m.State("MDL_ROUTE"):
                m.d.comb += route_w.en.eq(1)
                m.next = "WINDOW"

            # --- Flush -------------------------------------------------------------------------
            # FLUSH -- the connection is FLUSHING; its table entry goes.
            with m.State("FLUSH"):
                m.d.sync += [
                    rec.state.eq(ConnState.FLUSHING),
                    flush_passed.eq(0),
                    flush_handle.eq(Mux(rec.mdl_posted, rec.mdl_handle, 0)),
                    flush_placed.eq(Mux(rec.mdl_posted, rec.mdl_placed, 0)),
                ]
                # A SET_STATE not yet taken by the table (HANDOUT2's, not waited for) goes first.
                with m.If(~table.valid):
                    m.d.sync += [table.valid.eq(1), table.payload.opcode.eq(CcbOpcode.DELETE)]
                    m.next = "FLUSH_DELETE"
            # FLUSH_DELETE -- the DELETE's answer sets the fence before the conn_nbr is reused.
            with m.State("FLUSH_DELETE"):
                with m.If(table_answer):
                    m.d.sync += beat_count.eq(0)
                    set_fence(quiet_fence, passed_quiet, self.frames_in)
                    with m.If(rec.loaded):
                        m.next = "FLUSH_WB_REQUEST"
                    with m.Else():
                        m.next = "FLUSH_FIRST"
            # FLUSH_WB_REQUEST -- the Ccb's write-back: assembled, then one write request.
            with m.State("FLUSH_WB_REQUEST"):
                wb = data.View(Ccb, ccb_buf)
                m.d.sync += [
                    wb_index.eq(0),
                    ccb_buf.eq(0),
                    wb.tuple.remote_ip.eq(route.remote_ip), wb.tuple.local_ip.eq(route.local_ip),
                    wb.tuple.remote_port.eq(route.remote_port),
                    wb.tuple.local_port.eq(route.local_port), wb.tuple.ipv6.eq(route.ipv6),
                    wb.route.local_mac.eq(route.local_mac),
                    wb.route.remote_mac.eq(route.remote_mac), wb.route.vlan.eq(route.vlan),
                    wb.route.vlan_tci.eq(route.vlan_tci), wb.route.timestamps.eq(rec.timestamps),
                    wb.route.ttl.eq(route.ttl), wb.route.tos.eq(route.tos),
                    wb.route.rcv_mss.eq(rec.rcv_mss), wb.route.snd_wscale.eq(rec.snd_wscale),
                    wb.route.rcv_wscale.eq(rec.rcv_wscale), wb.route.iss.eq(route.iss),
                    wb.route.irs.eq(route.irs), wb.route.host_context.eq(route.host_context),
                    wb.tcp.eq(rec.tcp), wb.tcp.ack_now.eq(0),
                    wb.transfer.addr.eq(Mux(rec.mdl_posted, route.mdl_addr, 0)),
                    wb.transfer.handle.eq(rec.mdl_handle),
                    wb.transfer.entries.eq(rec.mdl_entries), wb.transfer.entry.eq(rec.mdl_entry),
                    wb.transfer.offset.eq(rec.mdl_offset), wb.transfer.placed.eq(rec.mdl_placed),
                    wb.transfer.posted.eq(rec.mdl_posted), wb.transfer.push.eq(rec.mdl_push),
                    wb.stats.eq(rec.stats), wb.version.eq(CCB_VERSION),
                    wb.state.eq(ConnState.FLUSHING), wb.conn_nbr.eq(conn),
                ]
                m.next = "FLUSH_WB_ISSUE"
            with m.State("FLUSH_WB_ISSUE"):
                m.d.comb += [wr.req.valid.eq(1), wr.req.payload.addr.eq(route.ccb_addr),
                             wr.req.payload.beats.eq(ccb_beats)]
                m.d.sync += wb_word.eq(ccb_buf.word_select(wb_index, data_bits))
                with m.If(wr.req.ready):
                    m.next = "FLUSH_WB_DATA"
            # FLUSH_WB_DATA -- the Ccb's beats, lowest first, each out of a register (``wb_word``,
            # loaded in FLUSH_WB_ISSUE and FLUSH_WB_NEXT: two clocks a beat, no multiplexer of
            # the buffer in front of the bus).
            with m.State("FLUSH_WB_DATA"):
                m.d.comb += [wr.data.valid.eq(1), wr.data.payload.data.eq(wb_word),
                             wr.data.payload.strb.eq((1 << beat_bytes) - 1)]
                with m.If(wr.data.ready):
                    m.d.sync += [beat_count.eq(beat_count + 1), wb_index.eq(wb_index + 1)]
                    with m.If(beat_count == ccb_beats - 1):
                        m.next = "FLUSH_WB_DONE"
                    with m.Else():
                        m.next = "FLUSH_WB_NEXT"
            with m.State("FLUSH_WB_NEXT"):
                m.d.sync += wb_word.eq(ccb_buf.word_select(wb_index, data_bits))
                m.next = "FLUSH_WB_DATA"
            with m.State("FLUSH_WB_DONE"):
                m.d.comb += wr.done.ready.eq(1)
                with m.If(wr.done.valid):
                    m.next = "FLUSH_FIRST"
            # FLUSH_FIRST -- the frame that caused the flush, when it came before the queue.
            with m.State("FLUSH_FIRST"):
                push_job(RxJobKind.SLOW, flush_frame & flush_frame_first & job_room, free=1)
                with m.If(flush_frame & flush_frame_first):
                    with m.If(job_room):
                        m.d.sync += flush_passed.eq(flush_passed + 1)
                        m.next = "FLUSH_QUEUE"
                with m.Else():
                    m.next = "FLUSH_QUEUE"
            # FLUSH_QUEUE -- each queued frame to the slow path, in order.
            with m.State("FLUSH_QUEUE"):
                with m.If(rec.q_count != 0):
                    m.next = "FLUSH_QUEUE_WAIT"
                with m.Else():
                    m.next = "FLUSH_LAST"
            # FLUSH_QUEUE_WAIT, _WAIT2 -- the head frame's record comes out of the queue memory.
            with m.State("FLUSH_QUEUE_WAIT"):
                m.next = "FLUSH_QUEUE_WAIT2"
            # (_WAIT2 also waits for the job's room: PASS acts by its state alone.)
            with m.State("FLUSH_QUEUE_WAIT2"):
                with m.If(job_room):
                    m.next = "FLUSH_QUEUE_PASS"
            with m.State("FLUSH_QUEUE_PASS"):
                push_job(RxJobKind.SLOW, 1, queued=True, free=1)
                m.d.sync += [flush_passed.eq(flush_passed + 1), rec.q_head.eq(q_next_r.data),
                             rec.q_count.eq(rec.q_count - 1),
                             queued_clear.eq(1), queued_clear_slot.eq(rec.q_head)]
                pulse("queued", Const(-1, 32))
                m.next = "FLUSH_QUEUE"
            # FLUSH_LAST -- the frame that caused the flush, when it came after the queue.
            with m.State("FLUSH_LAST"):
                push_job(RxJobKind.SLOW, flush_frame & ~flush_frame_first & job_room, free=1)
                with m.If(flush_frame & ~flush_frame_first):
                    with m.If(job_room):
                        m.d.sync += flush_passed.eq(flush_passed + 1)
                        m.next = "FLUSH_EVENT_WAIT"
                with m.Else():
                    m.next = "FLUSH_EVENT_WAIT"
            # FLUSH_EVENT -- FLUSH after every job before it; the record is free.
            with m.State("FLUSH_EVENT"):
                push_event(1, kind=EventKind.FLUSH.value,
                           index=flush_handle,
                           length=flush_passed,
                           code=flush_reason,
                           tag=flush_placed,
                           detail=conn)
                pulse("to_slow", flush_passed)
                pulse("flushes")
                pulse("connections", Const(-1, 32))
                m.d.comb += [count_flush.eq(1), count_reason.eq(flush_reason)]
                m.d.sync += [blank_state.eq(ConnState.FREE), blank_for_h1.eq(0)]
                m.next = "RECORD_BLANK"
            # (RECORD_BLANK frees the record.) FLUSH_END -- the free record is written back.
            with m.State("FLUSH_END"):
                write_back()
                with m.If(in_command & ~self.answers.valid
                          & (cmd.opcode != CommandOpcode.HANDOUT2.value)):
                    answer(EventCode.OK, event=0)
                m.next = "IDLE"

        m.d.comb += latching.eq(fsm.ongoing("RECORD_LATCH"))
        m.d.comb += self.idle.eq(fsm.ongoing("IDLE") & ~drain_list.busy
                                 & ~job_fifo.r_rdy
                                 & ~ack_fifo.r_rdy & ~self.answers.valid & ~interlock
                                 & ~self.frames.valid)
        # Yosys recodes the FSM one-hot (as the CCB table's: docs/ccb_table.md, "Synthesis").
        fsm.state.attrs["fsm_encoding"] = "one-hot"
        return m
