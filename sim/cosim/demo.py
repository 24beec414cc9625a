"""``inic demo``: the end-to-end scenario on the NIC RTL (Icarus), with a summary table and, by
default, an FST waveform and its GTKWave view in ``build/demo/``.

A remote TCP peer on the wire connects to a host socket through the NIC (MAC RX -> receive sequencer
-> packet buffer -> DMA into host RX buffers -> driver -> host TCP stack, and back through the TX
ring, checksum offload and MAC TX), sends 1 MB, gets 256 KB back, and both close. The host stack's
offload policy hands the connection out to the NIC's fast path, the application posts receives
(RCVMDLs) and the NIC places the data into them; one segment lost on the wire flushes the
connection, the host's answer flushes it again, and each time the policy hands it out again
(sim/demo_scenario.py). The table gives the fast-path and slow-path bytes, handouts and flushes by
reason, measured by the host side and cross-checked with the NIC's FastPathCounters.
"""

import json
import sys
from pathlib import Path

from hw import params
from hw.nic import Nic

from . import runner
from .waves import write_gtkw

__all__ = ["DEMO_DIR", "NIC_SIGNALS", "run_demo"]

DEMO_DIR = Path("build") / "demo"
TOPLEVEL = "inic_nic"

#: The NIC view in GTKWave: the MAC streams, the status word, the DMA clients and manager, both
#: AXI buses, and the fast path: the dispatcher, the CCB table's lookups (and the engine's table
#: commands), the receive engine's placement and flushes, the ACK builder and the TX arbiter
#: (input 0: the host's TX ring, 1: the ACK builder; ``hw.nic.TX_SOURCES``).
NIC_SIGNALS = [
    ("MAC RX", ["clk", "rst", "mac_rx__valid", "mac_rx__ready", r"\mac_rx__payload.data",
                r"\mac_rx__payload.keep", r"\mac_rx__payload.last"]),
    ("status word", ["sequencer.status__valid", r"sequencer.\status__payload.length",
                     r"sequencer.\status__payload.l3", r"sequencer.\status__payload.l4",
                     r"sequencer.\status__payload.candidate", r"sequencer.\status__payload.hash",
                     r"sequencer.\status__payload.sport", r"sequencer.\status__payload.dport"]),
    ("RX packet buffer", ["rx_buffer.reserved", "rx_buffer.drop_no_buffer",
                          "rx_buffer.drop_overflow", "rx_buffer.frame__valid"]),
    ("RX writer", ["rx_writer.jobs__valid", "rx_writer.descriptors__valid",
                   "rx_writer.dma__req__valid", "rx_writer.dma__done__valid",
                   "rx_writer.events__valid", "rx_writer.consume"]),
    ("rings", ["rx_fetcher.posted", "rx_fetcher.entries__valid", "tx_fetcher.entries__valid",
               "command_fetcher.entries__valid", "event_writer.written"]),
    ("TX reader", ["tx_reader.descriptors__valid", "tx_reader.dma__req__valid",
                   "tx_reader.dma__resp__valid", "tx_reader.events__valid", "tx_buffer.sent"]),
    ("DMA manager", ["dma.reads_outstanding", "dma.writes_outstanding", "dma.read_errors",
                     "dma.write_errors"]),
    ("AXI4 DMA", ["m_axi__awvalid", "m_axi__awready", "m_axi__awaddr", "m_axi__awlen",
                  "m_axi__wvalid", "m_axi__wready", "m_axi__wlast", "m_axi__bvalid",
                  "m_axi__bresp", "m_axi__arvalid", "m_axi__arready", "m_axi__araddr",
                  "m_axi__arlen", "m_axi__rvalid", "m_axi__rlast", "m_axi__rresp"]),
    ("AXI4-Lite registers", ["s_axil__awvalid", "s_axil__awaddr", "s_axil__wdata",
                             "s_axil__arvalid", "s_axil__araddr", "s_axil__rvalid",
                             "s_axil__rdata", "irq"]),
    ("dispatcher", ["dispatcher.frames__valid", "dispatcher.frames__ready",
                    r"dispatcher.\frames__payload.slot", "dispatcher.frames_in",
                    "dispatcher.lookup__valid", "dispatcher.lookup__ready",
                    r"dispatcher.\lookup__payload.tag", "dispatcher.result__valid",
                    "dispatcher.o__valid", "dispatcher.o__ready",
                    r"dispatcher.\o__payload.looked_up", r"dispatcher.\o__payload.hit",
                    r"dispatcher.\o__payload.state", r"dispatcher.\o__payload.conn_nbr"]),
    ("CCB table lookup", ["ccb_table.lookup__valid", "ccb_table.lookup__ready",
                          r"ccb_table.\lookup__payload.tag", r"ccb_table.\lookup__payload.tuple",
                          "ccb_table.result__valid", "ccb_table.result__ready",
                          r"ccb_table.\result__payload.tag", r"ccb_table.\result__payload.hit",
                          r"ccb_table.\result__payload.state",
                          r"ccb_table.\result__payload.conn_nbr",
                          "ccb_table.command__valid", "ccb_table.command__ready",
                          r"ccb_table.\command__payload.opcode", "ccb_table.response__valid",
                          r"ccb_table.\response__payload.status",
                          r"ccb_table.\response__payload.conn_nbr"]),
    ("receive engine: placement", [
        "receive_engine.engine_state", "receive_engine.frames__valid",
        "receive_engine.frames__ready", r"receive_engine.\frames__payload.conn_nbr",
        "receive_engine.conn", "receive_engine.piece", "receive_engine.piece_offset",
        "receive_engine.piece_addr", "receive_engine.mdl_full", r"receive_engine.\rec.mdl_posted",
        r"receive_engine.\rec.mdl_handle", r"receive_engine.\rec.mdl_entry",
        r"receive_engine.\rec.mdl_offset", r"receive_engine.\rec.mdl_placed",
        r"receive_engine.\rec.q_count", "receive_engine.jobs__valid",
        "receive_engine.jobs__ready", r"receive_engine.\jobs__payload.kind",
        r"receive_engine.\jobs__payload.addr", r"receive_engine.\jobs__payload.offset",
        r"receive_engine.\jobs__payload.length", "receive_engine.exception",
        "receive_engine.flush_reason", "receive_engine.flush_placed",
        "receive_engine.commands__valid", "receive_engine.commands__ready"]),
    ("ACK builder and TX arbiter", [
        "receive_engine.acks__valid", "receive_engine.acks__ready",
        r"receive_engine.\acks__payload.seq", r"receive_engine.\acks__payload.ack",
        r"receive_engine.\acks__payload.window", r"receive_engine.\acks__payload.flags",
        "ack_builder.busy", "ack_builder.ip_csum", "ack_builder.tcp_csum",
        "ack_builder.o__valid", "ack_builder.o__ready", r"ack_builder.\o__payload.last",
        "tx_arbiter.i__0__valid", "tx_arbiter.i__0__ready", "tx_arbiter.i__1__valid",
        "tx_arbiter.i__1__ready", "tx_arbiter.in_frame", "tx_arbiter.grant",
        "tx_arbiter.o__valid", "tx_arbiter.o__ready"]),
    ("MAC TX", ["mac_tx__valid", "mac_tx__ready", r"\mac_tx__payload.data",
                r"\mac_tx__payload.keep", r"\mac_tx__payload.last"]),
]


def simulate(out_dir=DEMO_DIR, *, down=1 << 20, up=256 << 10, waves=True):
    """Run the scenario; returns ``(figures dict, fst path or None)``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = (out_dir / "demo.json").resolve()
    result_path.unlink(missing_ok=True)
    fst_path = (out_dir / "demo.fst").resolve() if waves else None
    sim_build = runner.build(Nic, TOPLEVEL, waves=waves)
    env = {"INIC_DEMO_OUT": str(result_path), "INIC_DEMO_DOWN": str(down),
           "INIC_DEMO_UP": str(up)}
    try:
        runner.run(sim_build, "sim.cosim.demo_tb", run_name="demo", extra_env=env, waves=waves,
                   waves_path=fst_path)
    except runner.CosimError:
        if not result_path.is_file():
            raise
    return json.loads(result_path.read_text()), fst_path


def format_table(r) -> str:
    rows = [
        ("result", "OK: both payloads byte-exact" if r["ok"] else f"FAILED: {r['error']}"),
        ("payload", f"{r['bytes_delivered']:,} of {r['bytes_expected']:,} bytes delivered"),
        ("MAC RX", f"{r['mac_rx_frames']:,} frames, {r['mac_rx_bytes']:,} bytes"),
        ("MAC TX", f"{r['mac_tx_frames']:,} frames, {r['mac_tx_bytes']:,} bytes"),
        ("dropped", f"{r['frames_dropped']:,} frames by the NIC (counted by reason), "
                    f"{r['frames_lost_on_wire']} on the wire on purpose; "
                    f"{r['retransmissions']:,} TCP retransmission(s)"),
    ]
    if "handouts" in r:     # absent when the driver never started
        rows += _fast_path_rows(r)
    rows += [
        ("DMA", f"{r['dma_reads']:,} read and {r['dma_writes']:,} write bursts, "
                f"{r['dma_bytes']:,} bytes"),
        ("events", f"{r['events']:,}, in {r['interrupts']:,} interrupts"),
        ("cycles", f"{r['cycles']:,} ({params.TARGET_CLOCK_MHZ} MHz clock: "
                   f"{r['cycles'] * params.CLOCK_PERIOD_NS / 1000:,.1f} µs)"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _fast_path_rows(r) -> list[tuple[str, str]]:
    """The table's rows of the offload: bytes by path, handouts, flushes by reason."""
    return [
        ("fast path", f"{r['fast_path_bytes']:,} bytes placed into RCVMDLs "
                      f"({r['fast_path_segments']:,} segments), {r['frame_data_bytes']:,} "
                      f"by FRAME_DATA"),
        ("slow path", f"{r['slow_path_bytes']:,} bytes received ({r['slow_path_segments']:,} "
                      f"segments), {r['tx_slow_bytes']:,} sent"),
        ("handouts", f"{r['handouts']:,}"),
        ("flushes", ", ".join(f"{reason} {n}" for reason, n in r["flushes"].items()) or "none"),
        ("NIC ACKs", f"{r['nic_acks']:,}"),
        ("cross-check", "host statistics = NIC FastPathCounters" if not r["mismatches"]
         else "DIFFER: " + "; ".join(r["mismatches"])),
    ]


def run_demo(json_mode=False, waves=True, down=1 << 20, up=256 << 10, out_dir=DEMO_DIR) -> int:
    """``inic demo``: prints the summary (a JSON object with ``json_mode``) and where the waveform
    is. Returns the exit status: 0 when both payloads arrived byte-exact."""
    try:
        result, fst_path = simulate(out_dir, down=down, up=up, waves=waves)
    except runner.CosimError as e:
        print(f"inic demo: simulation failed: {e}", file=sys.stderr)
        return 1
    gtkw_path = None
    if fst_path is not None and fst_path.is_file():
        gtkw_path = fst_path.with_suffix(".gtkw")
        write_gtkw(fst_path, gtkw_path, NIC_SIGNALS, toplevel=TOPLEVEL)
    if json_mode:
        print(json.dumps({**{k: v for k, v in result.items() if k != "counters"},
                          "fst": fst_path and str(fst_path),
                          "gtkw": gtkw_path and str(gtkw_path)}))
    else:
        print("inic demo: a remote TCP peer sends 1 MB to a host socket through the NIC RTL and "
              "gets 256 KB back" if (down, up) == (1 << 20, 256 << 10) else
              f"inic demo: TCP through the NIC RTL, {down:,} bytes in, {up:,} bytes out")
        print("  handout, fast path, a segment lost on the wire (flush), re-handout, the host's "
              "answer (flush), re-handout, close")
        print(format_table(result))
        if gtkw_path:
            print(f"waveform      {fst_path}")
            print(f"gtkwave view  {gtkw_path}  (gtkwave {gtkw_path})")
    return 0 if result["ok"] else 1
