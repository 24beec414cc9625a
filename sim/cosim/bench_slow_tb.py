"""cocotb side of ``inic bench``'s slow-path figures: the whole NIC (``inic_nic``) with the driver
and the PCI model at its defaults (sim/cosim/pci.py: read latency 78 cycles, 16 reads
outstanding, PCIe Gen3 x4 bandwidth), interrupt moderation on.

One row per direction, traffic class and spacing (SPEC §6):

- **rx**: the frames are offered on MAC RX, spaced as a 10GbE wire spaces them (``wire``: each
  frame takes its bytes + 24, at 8 bytes a clock) or back to back; the host keeps enough RX
  buffers posted (the ring holds more buffers than the run has frames, all posted at start).
  ``delivered``: frames written into host buffers; ``dropped``: the NIC's ``rx_drop_*`` counters.
- **tx**: the driver writes every descriptor, then rings the doorbell once; MAC TX takes a beat
  every clock (``back_to_back``) or paces frames as the wire does (``wire``).

``cycles_per_frame`` is the steady-state interval: from the first frame's completion (RX: its
event written; TX: its last beat on MAC TX) to the last one's, over ``frames - 1``, so the first
frame's latency is not in it. ``offered_mpps``: RX, the rate the frames were offered at; TX, the
rate the frames left at (both at 156.25 MHz). ``dma_bytes_per_frame``: bytes on the DMA bus
(reads and writes, data only) per frame; ``dma_bus_utilisation``: beats on the busier data channel
(W for rx, R for tx) per clock, from the first frame offered (rx) or the doorbell (tx) to the last
completion.

Each row is appended to the JSON-lines file ``INIC_BENCH_OUT``; ``INIC_BENCH_FRAMES`` (JSON)
maps each traffic class to its frame count.
"""

import json
import os

import cocotb
from cocotb.triggers import ClockCycles

from host_driver.driver import NicDriver, offload_frame
from hw import params

from .bench_tb import traffic_frames
from .nic_tb import NicTb

__all__ = ["DIRECTIONS", "TRAFFIC", "SPACINGS", "MODERATION", "ROW_KEYS"]

ENV_OUT = "INIC_BENCH_OUT"
ENV_FRAMES = "INIC_BENCH_FRAMES"
DIRECTIONS = ["rx", "tx"]
TRAFFIC = ["60", "576", "1514", "imix"]
SPACINGS = ["wire", "back_to_back"]
#: Moderation the figures are taken with: an interrupt per 32 events, or 2000 cycles (12.8 µs)
#: after the first event not yet signalled.
MODERATION = {"intr_mod_events": 32, "intr_mod_cycles": 2000}
ROW_KEYS = ["direction", "traffic", "spacing", "frames", "delivered", "dropped",
            "cycles_per_frame", "offered_mpps", "dma_bytes_per_frame", "dma_bus_utilisation"]


def _mpps(frames, cycles):
    return round(frames / max(cycles, 1) * params.TARGET_CLOCK_MHZ, 3)


def _dma_bytes(tb, start, end):
    """DMA bytes of the bursts whose address phase fell in ``[start, end]``."""
    return sum(t.bytes for t in tb.bus.dma.transactions if start <= t.cycle <= end)


async def _rx(tb, driver, frames, spacing):
    counters0 = await driver.counters()
    delivered0 = driver.stats.rx_frames
    tb.mac.wire_spacing = spacing == "wire"
    seen = len(tb.bus.dma.transactions)
    offer_start = tb.mac.cycle
    for frame in frames:
        tb.mac.send(frame)
    while not tb.mac.idle:
        await ClockCycles(tb.dut.clk, 64)
    offer_cycles = tb.mac.last_rx_cycle - offer_start
    # Serve until every frame is delivered or counted as dropped.
    while True:
        await driver.poll(500)
        counters = await driver.counters()
        done = counters["rx_to_host"] - counters0["rx_to_host"]
        dropped = sum(counters[k] - counters0[k] for k in counters if k.startswith("rx_drop_"))
        if done + dropped >= len(frames) and driver.stats.rx_frames - delivered0 >= done:
            break
    # RX events are the event ring's writes of this run, one per frame, in order.
    event_ring = driver.ring_span("EVENT")
    writes = [t for t in tb.bus.dma.transactions[seen:] if t.kind == "write"]
    events = [t for t in writes if event_ring[0] <= t.addr < event_ring[1]]
    first, last = events[0].done, events[-1].done
    dma_bytes = _dma_bytes(tb, offer_start, last)
    busy = sum(t.beats for t in writes if offer_start <= t.cycle <= last)
    tb.mac.wire_spacing = False
    await _settle(tb, driver)
    return {"frames": len(frames), "delivered": done, "dropped": dropped,
            "cycles_per_frame": round((last - first) / max(len(events) - 1, 1), 2),
            "offered_mpps": _mpps(len(frames), offer_cycles),
            "dma_bytes_per_frame": round(dma_bytes / max(done, 1), 1),
            "dma_bus_utilisation": round(busy / max(last - offer_start, 1), 3)}


async def _tx(tb, driver, frames, spacing):
    sent0 = tb.mac.tx_frames
    tb.mac.tx_wire_spacing = spacing == "wire"
    ends = tb.mac.tx_end_cycles
    ends.clear()
    for frame in frames:
        partial, options = offload_frame(frame)
        await driver.send(partial, doorbell=False, **options)
    start = tb.mac.cycle
    await driver.tx_doorbell()
    while tb.mac.tx_frames - sent0 < len(frames):
        await driver.poll(200)
    first, last = ends[0], ends[-1]
    dma_bytes = _dma_bytes(tb, start, last)
    reads = [t for t in tb.bus.dma.transactions if t.kind == "read" and start <= t.cycle <= last]
    busy = sum(t.beats for t in reads)
    tb.mac.tx_wire_spacing = False
    await _settle(tb, driver)
    interval = (last - first) / max(len(frames) - 1, 1)
    return {"frames": len(frames), "delivered": tb.mac.tx_frames - sent0, "dropped": 0,
            "cycles_per_frame": round(interval, 2),
            "offered_mpps": _mpps(1, interval),
            "dma_bytes_per_frame": round(dma_bytes / len(frames), 1),
            "dma_bus_utilisation": round(busy / max(last - start, 1), 3)}


async def _settle(tb, driver):
    """Let the last events raise their (moderated) interrupt and hand them to the driver."""
    await ClockCycles(tb.dut.clk, MODERATION["intr_mod_cycles"] + 100)
    await driver.service()


@cocotb.test()
async def bench_slow_path(dut):
    counts = json.loads(os.environ[ENV_FRAMES])
    tb = NicTb(dut)
    await tb.reset()
    driver = NicDriver(tb.bus)
    most = max(counts.values())
    log2 = max(9, (2 * most).bit_length())
    await driver.start(rx_log2=log2, tx_log2=log2, event_log2=min(12, log2 + 1), **MODERATION)
    with open(os.environ[ENV_OUT], "a") as out:
        for direction in DIRECTIONS:
            for traffic in TRAFFIC:
                for spacing in SPACINGS:
                    frames = traffic_frames(traffic, counts[traffic])
                    measure = _rx if direction == "rx" else _tx
                    figures = await measure(tb, driver, frames, spacing)
                    row = {"direction": direction, "traffic": traffic, "spacing": spacing,
                           **figures}
                    out.write(json.dumps({key: row[key] for key in ROW_KEYS}) + "\n")
