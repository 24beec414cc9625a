"""cocotb side of ``inic bench``: back-to-back traffic of one class through the receive sequencer
with the outputs always ready; the figures of each class are appended to a JSON-lines file."""

import json
import os
import random
from statistics import mean

import cocotb
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from .rx_tb import RxTb, budget

__all__ = ["TRAFFIC", "ENV_OUT", "ENV_FRAMES", "traffic_frames"]

ENV_OUT = "INIC_BENCH_OUT"
ENV_FRAMES = "INIC_BENCH_FRAMES"

#: Frame sizes of each traffic class; IMIX is 7:4:1 of 60, 576 and 1514 bytes, shuffled in blocks.
TRAFFIC = {"60": [60], "576": [576], "1514": [1514], "imix": [60] * 7 + [576] * 4 + [1514]}


def traffic_frames(traffic: str, count: int) -> list[bytes]:
    """``count`` good TCP/IPv4 frames of the class ``traffic``, one flow per frame."""
    rng = random.Random(traffic)
    sizes = []
    while len(sizes) < count:
        block = list(TRAFFIC[traffic])
        rng.shuffle(block)
        sizes += block
    frames = []
    for n, size in enumerate(sizes[:count]):
        header = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src="10.0.0.1", dst="10.0.0.2")
                  / TCP(sport=1024 + n % 60000, dport=80, flags="A", seq=n))
        frames.append(bytes(header / bytes(size - len(header))))
    return frames


@cocotb.test()
@cocotb.parametrize(traffic=list(TRAFFIC))
async def bench(dut, traffic):
    """Figures of one traffic class: cycles from the first beat taken to the last status word,
    input beats per cycle while the input had data, mean latency first beat in → status out."""
    frames = traffic_frames(traffic, json.loads(os.environ[ENV_FRAMES])[traffic])
    tb = RxTb(dut, check=False)
    await tb.reset()
    for frame in frames:
        tb.send(frame)
    await tb.drain(budget(frames))
    timing = tb.timing()
    cycles = timing[-1].status_out - timing[0].first_in + 1
    input_cycles = timing[-1].last_in - timing[0].first_in + 1
    figures = {
        "traffic": traffic,
        "frames": len(frames),
        "cycles": cycles,
        "cycles_per_frame": round(cycles / len(frames), 2),
        "beats_per_cycle": round(tb.source.beats_accepted / input_cycles, 3),
        "latency_cycles": round(float(mean(t.latency for t in timing)), 1),
    }
    with open(os.environ[ENV_OUT], "a") as f:
        f.write(json.dumps(figures) + "\n")
