"""BlockRam (hw/lib/bram.py): two-clock reads in simulation; on ECP5 one DP16KD per RAM with its
output register, the address above the low log2(width) pins as Yosys's own brams_map_16kd.v
wires them."""
import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from hw.lib.bram import DP16KD_MODES, BlockRam, dp16kd_mode


class _Ecp5:
    family = "ecp5"


def test_modes():
    assert dp16kd_mode(36, 512) == (36, 512)
    assert dp16kd_mode(4, 4096) == (4, 4096)
    assert dp16kd_mode(2, 4096) == (2, 8192)
    assert dp16kd_mode(19, 512) == (36, 512)
    assert dp16kd_mode(97, 4096) is None
    assert dp16kd_mode(4, 65536) is None


def test_simulation_reads_two_clocks_after_the_address():
    m = Module()
    ram = BlockRam(m, "ram", 12, 64, None)
    assert not ram.primitive and ram.memory is not None
    rng = random.Random(5)
    model = [0] * 64
    checked = []

    async def bench(ctx):
        history = []
        for cycle in range(400):
            wa, wd, we, ra = rng.randrange(64), rng.getrandbits(12), rng.random() < 0.5, \
                rng.randrange(64)
            ctx.set(ram.w_addr, wa)
            ctx.set(ram.w_data, wd)
            ctx.set(ram.w_en, we)
            ctx.set(ram.r_addr, ra)
            # the word read on this edge (before this edge's write: old data)
            history.append(model[ra])
            if len(history) > 2:
                assert ctx.get(ram.r_data) == history[-3], cycle
                checked.append(cycle)
            if we:
                model[wa] = wd
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 390


@pytest.mark.parametrize("bits,words", DP16KD_MODES)
def test_ecp5_instance_wiring(bits, words):
    m = Module()
    width = bits if bits != 9 else 8
    ram = BlockRam(m, "ram", width, words, _Ecp5())
    assert ram.primitive and ram.memory is None
    m._MustUse__silence = True      # inspected, not elaborated
    inst = m._named_submodules["ram"][0]
    assert inst.type == "DP16KD"
    params = inst.parameters
    assert params["REGMODE_A"] == params["REGMODE_B"] == "OUTREG"
    assert params["DATA_WIDTH_A"] == params["DATA_WIDTH_B"] == bits
    ports = inst.ports
    shift = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4, 36: 5}[bits]
    addr_bits = (words - 1).bit_length()
    for i in range(14):
        read_pin = ports[f"ADB{i}"][0]
        if shift <= i < shift + addr_bits:
            assert repr(read_pin) == repr(ram.r_addr[i - shift]), (i, read_pin)
        else:
            assert repr(read_pin) in ("0", "(const 1'd0)"), (i, read_pin)
        write_pin = ports[f"ADA{i}"][0]
        if shift <= i < shift + addr_bits:
            assert repr(write_pin) == repr(ram.w_addr[i - shift]), (i, write_pin)
    if bits == 36:
        # byte enables on the write port's low address pins; read data out of both ports
        assert all(repr(ports[f"ADA{i}"][0]) == repr(ram.w_en) for i in range(4))
        assert len(ram.r_data) == 36
