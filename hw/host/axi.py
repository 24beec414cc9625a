"""AXI4 and AXI4-Lite interface signatures (AMBA AXI and ACE Protocol Specification, IHI 0022).

Both are written from the manager's side: a target uses ``In(signature)``. Port names flatten to
``<member>__<signal>`` (``s_axil__awaddr``), so a cocotbext-axi model takes the prefix with a
trailing underscore: ``AxiLiteBus.from_prefix(dut, "s_axil_")``.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiLiteSignature", "AxiSignature", "Resp", "Burst"]


class Resp:
    """xRESP values."""
    OKAY = 0b00
    EXOKAY = 0b01
    SLVERR = 0b10
    DECERR = 0b11


class Burst:
    """AxBURST values."""
    FIXED = 0b00
    INCR = 0b01
    WRAP = 0b10


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite, manager's view."""

    def __init__(self, addr_width, data_width=32):
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })


class AxiSignature(wiring.Signature):
    """AXI4 with INCR bursts and one ID, manager's view (no lock, cache, QoS or user signals)."""

    def __init__(self, addr_width, data_width=64, id_width=4):
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        super().__init__({
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
            "awburst": Out(2), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
            "arburst": Out(2), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })
