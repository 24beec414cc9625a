"""The wire between the simulated NIC's MAC and the kernel's TAP (runs inside the cocotb test).

    kernel ──TAP──► WireBridge.poll ──queue──► MacPort ──mac_rx──► NIC RTL
    kernel ◄─TAP─── WireBridge.to_kernel ◄──── MacPort ◄─mac_tx─── NIC RTL

The bridge never waits on the kernel: every ``poll_cycles`` simulated clocks it takes whatever
frames the TAP holds (non-blocking reads) and queues them for MAC RX, which plays them at 10GbE
wire spacing; frames the NIC transmits go to the TAP as their last beat leaves MAC TX. What the
simulator does between polls costs the kernel nothing but time: to the kernel, the NIC is a link
with a long delay (:attr:`WireBridge.slowdown` is how long: wall seconds per simulated second).

Every frame is accounted for: ``frames_in`` (from the kernel) = frames queued for MAC RX +
``queue_drops``; ``frames_out`` (to the kernel) = frames written + ``tap.write_drops``. Frames the
kernel sends shorter than Ethernet's 60-byte minimum are padded, as a real MAC pads them.
"""

import time

from cocotb.triggers import ClockCycles
from scapy.utils import RawPcapWriter

from hw.params import CLOCK_PERIOD_NS

__all__ = ["WireBridge", "ETH_MIN_FRAME"]

ETH_MIN_FRAME = 60
LINKTYPE_ETHERNET = 1


class WireBridge:
    """Connects ``mac`` (a :class:`sim.cosim.nic_tb.MacPort`) to ``tap`` (a
    :class:`sim.peer.tap.Tap`).

    Parameters
    ----------
    tap, mac, clk :
        The TAP, the MAC port, and the clock signal to count polls in.
    poll_cycles : int
        Simulated clocks between two looks at the TAP (a 1514-byte frame takes 192 on the wire).
    queue_limit : int
        Frames waiting for MAC RX beyond which further kernel frames are dropped (counted): the
        kernel's transmit queue must not grow without bound in the bridge.
    pcap : path or None
        Write every frame that crossed the TAP, both ways (those the bridge then dropped too),
        stamped with simulated time (the waveform's time axis: a frame from the kernel when the
        bridge read it, a frame to the kernel when its last beat left MAC TX).

    Members
    -------
    frames_in, bytes_in, frames_out, bytes_out, queue_drops : int
        What crossed, and kernel frames dropped for a full queue.
    wall_seconds, simulated_seconds, slowdown : float
        Since :meth:`start`: wall time, simulated time, and their ratio.
    """

    def __init__(self, tap, mac, clk, *, poll_cycles: int = 32, queue_limit: int = 1024,
                 pcap=None):
        if poll_cycles < 1 or queue_limit < 1:
            raise ValueError("poll_cycles and queue_limit must be >= 1")
        self.tap, self.mac, self.clk = tap, mac, clk
        self.poll_cycles, self.queue_limit = poll_cycles, queue_limit
        self.frames_in = self.bytes_in = self.frames_out = self.bytes_out = 0
        self.queue_drops = 0
        self._pcap = None
        if pcap is not None:
            self._pcap = RawPcapWriter(str(pcap), linktype=LINKTYPE_ETHERNET, sync=False)
            self._pcap._write_header(None)
        self._start_wall = self._start_cycle = None

    def start(self):
        """Begin the clock of :attr:`slowdown`; returns the polling coroutine to start."""
        self._start_wall, self._start_cycle = time.monotonic(), self.mac.cycle
        return self._run()

    async def _run(self):
        wait = ClockCycles(self.clk, self.poll_cycles)
        while True:
            await wait
            self.poll()

    def poll(self) -> int:
        """Move every frame the kernel has sent towards MAC RX; returns how many were read."""
        frames = self.tap.read_frames(limit=4 * self.queue_limit)
        for frame in frames:
            self.frames_in += 1
            self.bytes_in += len(frame)
            frame = frame.ljust(ETH_MIN_FRAME, b"\0")
            self._record(frame)
            if self.mac.queued >= self.queue_limit:
                self.queue_drops += 1
            else:
                self.mac.send(frame)
        return len(frames)

    def to_kernel(self, frame: bytes) -> None:
        """A frame the NIC transmitted (give this to ``MacPort.on_tx``)."""
        self.frames_out += 1
        self.bytes_out += len(frame)
        self._record(frame)
        self.tap.write_frame(frame)

    def _record(self, frame: bytes) -> None:
        if self._pcap is not None:
            ns = int(self.mac.cycle * CLOCK_PERIOD_NS)
            self._pcap.write_packet(frame, sec=ns // 10**9, usec=ns % 10**9 // 1000)

    @property
    def wall_seconds(self) -> float:
        return 0.0 if self._start_wall is None else time.monotonic() - self._start_wall

    @property
    def simulated_seconds(self) -> float:
        if self._start_cycle is None:
            return 0.0
        return (self.mac.cycle - self._start_cycle) * CLOCK_PERIOD_NS * 1e-9

    @property
    def slowdown(self) -> float:
        simulated = self.simulated_seconds
        return self.wall_seconds / simulated if simulated else 0.0

    def close(self) -> None:
        if self._pcap is not None:
            self._pcap.close()
            self._pcap = None
