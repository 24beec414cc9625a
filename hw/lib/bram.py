"""A simple dual-port block RAM whose read data comes out of a register: on ECP5, the DP16KD's
own output register.

Why: an ECP5 DP16KD without its output register (the only way Yosys maps an inferred memory)
puts its data out 4.26 ns after the clock; at 156.25 MHz that leaves 2.1 ns for the route to
the register that takes it, and a block RAM in a row across the die rarely has that register
beside it. With ``REGMODE = OUTREG`` the data leaves the block RAM 0.72 ns after the clock
(nextpnr's timing model, LFE5UM-85F speed 8), a register like any other. Read latency is then
two clocks: the address on one edge, the data in the output register on the next.

Elsewhere (the simulator, another platform) the same behaviour is an Amaranth ``Memory`` with a
synchronous read port and a register after it. Used by the CCB table (hw/ccb/table.py) for its
bucket ways and key store; docs/ccb_table.md.
"""

from amaranth import Cat, ClockSignal, Instance, Shape, Signal, Value
from amaranth.lib.memory import Memory

__all__ = ["BlockRam", "WideBlockRam", "DP16KD_MODES", "dp16kd_mode"]

#: DP16KD configurations: (data bits, words).
DP16KD_MODES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))


def dp16kd_mode(width, depth):
    """The narrowest DP16KD configuration holding ``depth`` words of ``width`` bits, as
    ``(mode bits, words)``, or None when one block RAM cannot."""
    for bits, words in DP16KD_MODES:
        if width <= bits and depth <= words:
            return bits, words
    return None


class BlockRam:
    """``depth`` words of ``width`` bits, built into module ``m`` under ``name``: one write port,
    one read port, read data two clocks after its address (no read-during-write bypass: a read
    of a word written on the same edge gives the old word in simulation; on ECP5 the two ports'
    collision is the DP16KD's).

    Attributes
    ----------
    w_addr, w_data, w_en : Signal
        Write port, written on the clock edge.
    r_addr : Signal
        Read address, sampled on the clock edge.
    r_data : Value
        The word at the ``r_addr`` of two edges ago.
    memory : Memory or None
        The simulation model's memory (None when built from DP16KD instances), for testbenches.
    primitive : bool
        True when built from a DP16KD.
    """

    def __init__(self, m, name, width, depth, platform):
        self.width, self.depth = width, depth
        self.w_addr = Signal(range(depth), name=f"{name}_w_addr")
        self.w_data = Signal(width, name=f"{name}_w_data")
        self.w_en = Signal(name=f"{name}_w_en")
        self.r_addr = Signal(range(depth), name=f"{name}_r_addr")
        mode = dp16kd_mode(width, depth)
        self.primitive = getattr(platform, "family", None) == "ecp5" and mode is not None
        if self.primitive:
            self.memory = None
            self.r_data = self._dp16kd(m, name, mode[0])
        else:
            self.memory = memory = Memory(shape=width, depth=depth, init=[])
            m.submodules[name] = memory
            write, read = memory.write_port(), memory.read_port()
            m.d.comb += [write.addr.eq(self.w_addr), write.data.eq(self.w_data),
                         write.en.eq(self.w_en), read.addr.eq(self.r_addr)]
            self.r_data = Signal(width, name=f"{name}_r_data", reset_less=True)
            m.d.sync += self.r_data.eq(read.data)

    def _dp16kd(self, m, name, bits):
        # Port A writes, port B reads. Address pins take a 14-bit bit address: the word address
        # above the low log2(bits) positions (as Yosys's brams_map_16kd.v); for 18 and 36 bits
        # the low two or four are byte enables on the writing port.
        shift = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4, 36: 5}[bits]
        low = {18: [self.w_en, self.w_en, 0, 0], 36: [self.w_en] * 4 + [0]}.get(bits, [0] * shift)
        w_pins = low + [self.w_addr[i] for i in range(len(self.w_addr))]
        r_pins = [0] * shift + [self.r_addr[i] for i in range(len(self.r_addr))]
        w_pins += [0] * (14 - len(w_pins))
        r_pins += [0] * (14 - len(r_pins))
        w_data = Signal(36, name=f"{name}_di")
        do_a, do_b = Signal(18, name=f"{name}_doa"), Signal(18, name=f"{name}_dob")
        m.d.comb += w_data.eq(self.w_data)
        ports = {
            "i_CLKA": ClockSignal("sync"), "i_CLKB": ClockSignal("sync"),
            "i_CEA": 1, "i_CEB": 1, "i_OCEA": 1, "i_OCEB": 1, "i_RSTA": 0, "i_RSTB": 0,
            "i_WEA": self.w_en if bits < 36 else 1, "i_WEB": 0,
        }
        for i in range(3):
            ports[f"i_CSA{i}"] = 0
            ports[f"i_CSB{i}"] = 0
        for i in range(14):
            ports[f"i_ADA{i}"] = w_pins[i]
            ports[f"i_ADB{i}"] = r_pins[i]
        for i in range(18):
            ports[f"i_DIA{i}"] = w_data[i]
            ports[f"i_DIB{i}"] = w_data[18 + i] if bits == 36 else 0
            ports[f"o_DOA{i}"] = do_a[i]
            ports[f"o_DOB{i}"] = do_b[i]
        m.submodules[name] = Instance(
            "DP16KD",
            p_DATA_WIDTH_A=bits, p_DATA_WIDTH_B=bits,
            p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG",
            p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
            p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
            p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
            **ports)
        # 36 bits: the read comes out on both data outputs (low half on A).
        return Cat(do_a, do_b)[:self.width] if bits == 36 else do_b[:self.width]


class _Port:
    """A memory port: ``addr``, ``data`` (and ``en`` for a write port)."""


class WideBlockRam:
    """``depth`` words of ``shape`` (any width) as :class:`BlockRam` slices side by side, each
    slice as wide as one DP16KD configuration of that depth allows, so that every block RAM
    drives its own bits into its own output register: no multiplexer after a block RAM. One
    write port and one read port (:meth:`write_port`, :meth:`read_port`, each called once); the
    read data comes two clocks after its address, as :class:`BlockRam`'s.

    Attributes
    ----------
    memories : list of (low bit, width, Memory or None)
        The simulation models of the slices (None when built from DP16KD), for testbenches.
    """

    def __init__(self, m, name, shape, depth, platform):
        self.shape = shape
        self.depth = depth
        width = Shape.cast(shape).width
        mode = dp16kd_mode(1, depth)
        bits = max(b for b, words in DP16KD_MODES if depth <= words) if mode else width
        self._m, self._name = m, name
        self._slices = []
        for index, low in enumerate(range(0, width, bits)):
            w = min(bits, width - low)
            self._slices.append((low, w, BlockRam(m, f"{name}_{index}", w, depth, platform)))
        self.memories = [(low, w, ram.memory) for low, w, ram in self._slices]

    def read_port(self):
        port = _Port()
        port.addr = Signal(range(self.depth), name=f"{self._name}_r_addr")
        port.data = Signal(self.shape, name=f"{self._name}_r_data")
        self._m.d.comb += [ram.r_addr.eq(port.addr) for _, _, ram in self._slices]
        self._m.d.comb += Value.cast(port.data).eq(Cat(*(ram.r_data for _, _, ram in self._slices)))
        return port

    def write_port(self):
        port = _Port()
        port.addr = Signal(range(self.depth), name=f"{self._name}_w_addr")
        port.data = Signal(self.shape, name=f"{self._name}_w_data")
        port.en = Signal(name=f"{self._name}_w_en")
        bits = Value.cast(port.data)
        for low, w, ram in self._slices:
            self._m.d.comb += [ram.w_addr.eq(port.addr), ram.w_data.eq(bits[low:low + w]),
                               ram.w_en.eq(port.en)]
        return port

    def sim_get(self, ctx, index):
        """The word at ``index`` (simulation only)."""
        return sum(ctx.get(memory.data[index]) << low for low, _, memory in self.memories)

    def sim_set(self, ctx, index, value):
        for low, w, memory in self.memories:
            ctx.set(memory.data[index], (value >> low) & ((1 << w) - 1))
