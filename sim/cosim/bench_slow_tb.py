"""cocotb side of ``inic bench``'s slow-path figures: the whole NIC (``inic_nic``) with the driver
and the PCI model at its default latency (sim/cosim/pci.py), interrupt moderation on.

- RX: ``frames`` TCP frames of one size offered back to back on MAC RX (line rate); the driver
  services interrupts and re-posts buffers. ``cycles`` runs from the first beat offered to the last
  RX event handled; ``dma_bytes_per_cycle`` is the DMA traffic (reads and writes) in that window.
- TX: ``frames`` frames posted by the driver at once (checksum offload on); ``cycles`` runs from the
  first doorbell to the last frame's last beat on MAC TX.

Each row is appended to the JSON-lines file ``INIC_BENCH_OUT``; ``INIC_BENCH_FRAMES`` (JSON)
maps each class to its frame count.
"""

import json
import os

import cocotb
from cocotb.triggers import ClockCycles

from host_driver.driver import NicDriver, offload_frame

from .bench_tb import traffic_frames
from .nic_tb import NicTb

__all__ = ["SLOW_TRAFFIC", "MODERATION"]

ENV_OUT = "INIC_BENCH_OUT"
ENV_FRAMES = "INIC_BENCH_FRAMES"
SLOW_TRAFFIC = ["rx 60", "rx 1514", "tx 60", "tx 1514"]
#: Moderation the figures are taken with: an interrupt per 32 events, or 2000 cycles (12.8 µs)
#: after the first event not yet signalled.
MODERATION = {"intr_mod_events": 32, "intr_mod_cycles": 2000}


def _dma_window(tb, start, end):
    """DMA bytes moved by bursts whose address phase fell in ``[start, end]``."""
    return sum(t.bytes for t in tb.bus.dma.transactions if start <= t.cycle <= end)


async def _rx(tb, driver, frames):
    delivered0 = driver.stats.rx_frames
    counters0 = await driver.counters()
    start = tb.mac.cycle
    for frame in frames:
        tb.mac.send(frame)
    # Serve until every frame is delivered or counted as dropped.
    while True:
        await driver.poll(500)
        counters = await driver.counters()
        done = counters["rx_to_host"] - counters0["rx_to_host"]
        dropped = sum(counters[k] - counters0[k] for k in counters if k.startswith("rx_drop_"))
        if done + dropped >= len(frames) and driver.stats.rx_frames - delivered0 >= done:
            break
    # The window ends with the NIC's last write (the last event), not when the driver noticed.
    end = max(t.cycle for t in tb.bus.dma.transactions if t.kind == "write")
    cycles = end - start
    dma_bytes = _dma_window(tb, start, end)
    # The last events raise their interrupt when the moderation timer runs out.
    await ClockCycles(tb.dut.clk, MODERATION["intr_mod_cycles"] + 100)
    await driver.service()
    counters = await driver.counters()
    interrupts = counters["interrupts"] - counters0["interrupts"]
    return {"frames": len(frames), "delivered": done, "dropped": dropped, "cycles": cycles,
            "cycles_per_frame": cycles / max(done, 1),
            "dma_bytes_per_cycle": dma_bytes / cycles,
            "interrupts_per_1000_frames": 1000 * interrupts / max(done, 1)}


async def _tx(tb, driver, frames):
    counters0 = await driver.counters()
    sent0 = tb.mac.tx_frames
    start = tb.mac.cycle
    for frame in frames:
        partial, options = offload_frame(frame)
        await driver.send(partial, **options)
    while tb.mac.tx_frames - sent0 < len(frames):
        await driver.poll(200)
    cycles = tb.mac.last_tx_cycle - start
    dma_bytes = _dma_window(tb, start, tb.mac.last_tx_cycle)
    await ClockCycles(tb.dut.clk, MODERATION["intr_mod_cycles"] + 100)
    await driver.service()
    counters = await driver.counters()
    interrupts = counters["interrupts"] - counters0["interrupts"]
    return {"frames": len(frames), "delivered": tb.mac.tx_frames - sent0, "dropped": 0,
            "cycles": cycles, "cycles_per_frame": cycles / len(frames),
            "dma_bytes_per_cycle": dma_bytes / cycles,
            "interrupts_per_1000_frames": 1000 * interrupts / len(frames)}


@cocotb.test()
async def bench_slow_path(dut):
    counts = json.loads(os.environ[ENV_FRAMES])
    tb = NicTb(dut)
    await tb.reset()
    driver = NicDriver(tb.bus)
    await driver.start(rx_log2=9, tx_log2=9, event_log2=11, **MODERATION)
    with open(os.environ[ENV_OUT], "a") as out:
        for traffic in SLOW_TRAFFIC:
            direction, size = traffic.split()
            frames = traffic_frames(size, counts[traffic])
            measure = _rx if direction == "rx" else _tx
            row = {"traffic": traffic, **await measure(tb, driver, frames)}
            out.write(json.dumps(row) + "\n")
