"""cocotb side of ``inic replay``: frames in, one JSON row per status word out.

:func:`sim.cosim.replay.replay_frames` starts this module in Icarus with the frames in a file
(:func:`save_frames`) and the settings in environment variables; rows are appended to the output
file as the status words arrive (flushed every :data:`FLUSH_EVERY`, which is how the parent shows
progress). Frames go in back to back with the outputs always ready.

:func:`replay_offload` is ``inic replay --offload`` (top ``inic_nic``): the rows of the sequencer
replay in, the same rows with ``path`` and ``conn`` out (sim/offload_replay.py).
"""

import json
import os
import struct
from pathlib import Path

import cocotb

from host_driver.driver import NicDriver
from hw.host import regmap
from hw.layouts import FastPathCounters, unpack
from sim.offload_replay import DRIVER_START, parse_handouts, replay_offloaded
from sim.status_json import status_to_json

from .nic_tb import NicTb, peek_counters
from .rx_tb import RxTb, budget

__all__ = ["ENV_FRAMES", "ENV_ROWS", "ENV_KEY", "ENV_SYNTHETIC", "FLUSH_EVERY",
           "ENV_ROWS_IN", "ENV_HANDOUTS", "ENV_SUMMARY", "save_frames", "load_frames",
           "peek_fast_path_counters"]

ENV_FRAMES = "INIC_REPLAY_FRAMES"
ENV_ROWS = "INIC_REPLAY_ROWS"
ENV_KEY = "INIC_REPLAY_KEY"
ENV_SYNTHETIC = "INIC_REPLAY_SYNTHETIC_L2"
FLUSH_EVERY = 250

_LENGTH = struct.Struct("<I")


def save_frames(path, frames):
    """Write ``frames`` to ``path``, each as a 4-byte little-endian length and its bytes."""
    with open(path, "wb") as f:
        for frame in frames:
            f.write(_LENGTH.pack(len(frame)))
            f.write(frame)


def load_frames(path) -> list[bytes]:
    """The frames :func:`save_frames` wrote."""
    blob = Path(path).read_bytes()
    frames, pos = [], 0
    while pos < len(blob):
        (length,) = _LENGTH.unpack_from(blob, pos)
        frames.append(blob[pos + _LENGTH.size:pos + _LENGTH.size + length])
        pos += _LENGTH.size + length
    return frames


@cocotb.test()
async def replay(dut):
    """Every frame of the file through the sequencer; rows to the rows file, in frame order."""
    frames = load_frames(os.environ[ENV_FRAMES])
    extra = {"synthetic_l2": True} if os.environ.get(ENV_SYNTHETIC) == "1" else {}
    with open(os.environ[ENV_ROWS], "w") as rows:
        def write_row(status, index):
            rows.write(json.dumps({**status_to_json(status, index), **extra}) + "\n")
            if (index + 1) % FLUSH_EVERY == 0:
                rows.flush()

        tb = RxTb(dut, check=False, on_status=write_row)
        await tb.reset()
        if os.environ.get(ENV_KEY):
            await tb.set_rss_key(bytes.fromhex(os.environ[ENV_KEY]))
        for frame in frames:
            tb.send(frame)
        await tb.drain(budget(frames))
    assert tb.frames_out == len(frames), f"{len(frames)} frames in, {tb.frames_out} out of o"
    assert len(tb.status_cycles) == len(frames), \
        f"{len(frames)} frames in, {len(tb.status_cycles)} status words"


# -- ``inic replay --offload``: the whole NIC ------------------------------------------------------

ENV_ROWS_IN = "INIC_REPLAY_ROWS_IN"
ENV_HANDOUTS = "INIC_REPLAY_HANDOUTS"
ENV_SUMMARY = "INIC_REPLAY_SUMMARY"


def peek_fast_path_counters(dut) -> dict:
    """The NIC's FastPathCounters in zero time, named as
    :meth:`host_driver.driver.NicDriver.fast_path_counters` names them."""
    counters = unpack(FastPathCounters, int(dut.registers.fast_path_counters.value))
    out = {}
    for name, field, element in regmap.FAST_PATH_COUNTER_FIELDS:
        value = getattr(counters, field)
        out[name] = int(value if element is None else value[element])
    return out


@cocotb.test()
async def replay_offload(dut):
    """The rows file's frames through the whole NIC after the handouts (sim/offload_replay.py);
    the rows with ``path`` and ``conn`` to the rows file, the summary's additions to the summary
    file."""
    frames = load_frames(os.environ[ENV_FRAMES])
    with open(os.environ[ENV_ROWS_IN]) as f:
        rows = [json.loads(line) for line in f]
    handouts = parse_handouts(",".join(json.loads(os.environ[ENV_HANDOUTS])))
    tb = NicTb(dut)
    await tb.reset()
    driver = NicDriver(tb.bus)
    await driver.start(**DRIVER_START)

    def peek():
        return {**peek_counters(dut), **peek_fast_path_counters(dut)}

    async def push(frame):
        tb.mac.send(frame)

    summary = await replay_offloaded(driver, push, peek, frames, rows, handouts,
                                     log=dut._log.warning)
    with open(os.environ[ENV_ROWS], "w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    with open(os.environ[ENV_SUMMARY], "w") as out:
        json.dump(summary, out)
