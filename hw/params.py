"""Parameters of the NIC, in one place.

Everything a block, a testbench or the host driver needs to agree on numerically lives here;
the wire formats themselves live in :mod:`hw.layouts`.
"""

#: Bytes carried by one beat of the MAC RX/TX streams (64-bit datapath).
BEAT_BYTES = 8

#: Frames longer than this (bytes, FCS excluded) are flagged ``oversize`` (SPEC §7).
MAX_FRAME_BYTES = 9216

#: Frames shorter than this (bytes) are runts: no complete Ethernet header (SPEC §7).
MIN_FRAME_BYTES = 14

#: Bytes of each frame captured for header decoding. The deepest field the sequencer reads is
#: the end of a TCP header after two VLAN tags and a 60-byte IPv4 header: 14 + 8 + 60 + 20 = 102.
HEADER_WINDOW_BYTES = 104
HEADER_WINDOW_BEATS = HEADER_WINDOW_BYTES // BEAT_BYTES

#: Depth (beats) of the sequencer's frame-data FIFO. It must hold the header window plus the
#: header decoder's latency for the input to stay ready every clock (see docs/rx_sequencer.md).
RX_BEAT_FIFO_DEPTH = 32

#: Depth (frames) of the decoded-header and region-bounds FIFOs. Frames in flight (launched to the
#: decoder, status word not finished) are limited to this by credit; the beat FIFO plus the frame
#: checker's pipeline hold at most RX_BEAT_FIFO_DEPTH + 8 frames, so the credit never throttles.
RX_HEADER_FIFO_DEPTH = 48

#: Depth of the status-word output FIFO (frames).
RX_STATUS_FIFO_DEPTH = 16

#: Bits of the status FIFO's word per memory slice (each slice with its own address registers:
#: one read enable no longer fans out to the whole 540-bit word).
RX_STATUS_FIFO_SLICE_BITS = 96

#: Microsoft's published default RSS key ("Verifying the RSS Hash Calculation", NDIS docs).
MS_RSS_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0"
    "d0ca2bcbae7b30b477cb2da38030f20c"
    "6a42b73bbeac01fa"
)
RSS_KEY_BYTES = 40
assert len(MS_RSS_KEY) == RSS_KEY_BYTES

#: Clocks the Toeplitz unit takes per frame (1 = fully parallel, one frame per clock). A frame
#: that needs a hash has at least 34 bytes (5 beats), so such frames reach the unit at least 5
#: clocks apart: 4 passes (a new input every 5 clocks) keep up, at a quarter of the logic.
RSS_HASH_PASSES = 4

#: Clock the design is specified for: 10GbE at 64 bits per beat (SPEC §6).
TARGET_CLOCK_MHZ = 156.25
#: Its period (6.4 ns), the clock every testbench runs the RTL at.
CLOCK_PERIOD_NS = 1000 / TARGET_CLOCK_MHZ

# --- Host interface (docs/host_interface.md) -----------------------------------------------------

#: Bytes of every ring entry (descriptor, command, event): one beat of the 128-bit DMA bus.
RING_ENTRY_BYTES = 16

#: Ring sizes are 2**n entries, n in this range (RING_LOG2_SIZE register).
RING_LOG2_SIZE_MIN = 1
RING_LOG2_SIZE_MAX = 12
#: Bits of a ring index (producer, consumer): enough for the largest ring.
RING_INDEX_BITS = RING_LOG2_SIZE_MAX

#: Receive packet buffer (bytes, block RAM: 32 DP16KD on ECP5): frames wait here, whole, for their
#: DMA. It must hold at least one largest frame; 64 KB holds a full 64 KB TCP window of segments
#: arriving at line rate while the slower slow-path DMA drains them.
RX_PACKET_BUFFER_BYTES = 65536

#: Transmit staging buffer (bytes, block RAM): a frame is read whole before it is sent, so that its
#: checksums can be filled in.
TX_BUFFER_BYTES = 16384

#: Width of DMA addresses (AXI4 master).
DMA_ADDR_WIDTH = 64

#: Address bits of the AXI4-Lite register target (BAR0 is 4 KB).
REG_ADDR_WIDTH = 12

#: Identification register value ("INIC") and interface version (major << 16 | minor).
NIC_ID = 0x494E4943
NIC_VERSION = 0x0001_0000

#: Frames the receive packet buffer holds at most (each keeps its status word, in block RAM; the
#: 540-bit words take 15 DP16KD whatever the depth up to 512).
RX_PACKET_BUFFER_FRAMES = 64

# --- DMA manager (hw/host/dma.py; docs/host_interface.md "DMA manager") --------------------------

#: DMA bus width (bits): 64, 128 or 256. 128 is what a PCIe Gen3 x4 endpoint's AXI bridge gives
#: (an XDMA/QDMA-style bridge: 128 bits at 250 MHz ≈ 4 GB/s, the link's 3.94 GB/s); at this NIC's
#: 156.25 MHz it moves 2.5 GB/s each way, twice 10GbE's 1.25 GB/s (docs/host_interface.md).
DMA_DATA_BITS = 128

#: AXI ID bits: one ID per DMA client and direction (AXI keeps one ID's transactions in order).
DMA_ID_BITS = 4

#: Width of a DMA request's beat count: up to 4095 beats (64 KB at 128 bits) per request.
DMA_REQUEST_BEATS_BITS = 12

#: Longest burst (bytes): PCIe's usual max payload / max read request size. Never across 4 KB.
DMA_MAX_BURST_BYTES = 256

#: Read bursts outstanding at once (the PCIe bridge's read tags; the PCI model's default).
DMA_MAX_READS = 16

#: Write bursts waiting for their response at once.
DMA_MAX_WRITES = 16

# --- The fast path (docs/fast_path.md) ------------------------------------------------------------

#: Connections the NIC can hold (conn_nbr 0 .. n-1): the CCB table's entries and the CCB store's
#: records. Seed 003's number.
FAST_PATH_CONNECTIONS = 256

#: Frames one connection's queue holds at most (PENDING, INDICATED); one more flushes it.
QUEUE_MAX_FRAMES = 16

#: RcvMdlEntry entries one RCVMDL may have (the NIC keeps the list on chip).
RCVMDL_MAX_ENTRIES = 8

#: Delayed-ACK timer: clocks from the first segment not yet acknowledged to its ACK (100 us at
#: 156.25 MHz; RFC 9293 asks for less than 0.5 s).
DELAYED_ACK_CYCLES = 15625

#: Shortest frame on MAC TX (bytes, no FCS): the NIC pads the frames it builds to this.
MIN_TX_FRAME_BYTES = 60

# --- The SYN-cookie unit (docs/syn_cookie.md) ---------------------------------------------------

#: MSS tables the cookie's 2-bit MSS index points into, Linux's (net/ipv4/syncookies.c and
#: net/ipv6/syncookies.c ``msstab``): the reset values of the host-writable tables. Sorted.
SYN_MSS_TABLE_IPV4 = (536, 1300, 1440, 1460)
SYN_MSS_TABLE_IPV6 = (1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60)

#: The cookie ISN, from bit 31 down: key slot, time counter's low bits, MSS index, hash bits.
SYN_ISN_KEY_BITS = 1
SYN_ISN_TIME_BITS = 2
SYN_ISN_MSS_BITS = 2
SYN_ISN_HASH_BITS = 32 - SYN_ISN_KEY_BITS - SYN_ISN_TIME_BITS - SYN_ISN_MSS_BITS
assert 1 << SYN_ISN_MSS_BITS == len(SYN_MSS_TABLE_IPV4) == len(SYN_MSS_TABLE_IPV6)

#: The time counter ticks every 2**n clocks: 2**33 clocks = 55.0 s at 156.25 MHz (Linux: 60 s).
SYN_TIME_TICK_LOG2 = 33
#: Width of the time counter (it is hashed whole, so a cookie 2**SYN_ISN_TIME_BITS ticks old
#: that aliases into the age window fails the hash instead of passing).
SYN_TIME_BITS = 16
#: Default age limit (ticks): an ACK is accepted when its cookie's time is 0..limit ticks old.
#: 1 = 55-110 s, Linux's ``MAX_SYNCOOKIE_AGE`` of 2 (60-120 s). At most 2**SYN_ISN_TIME_BITS - 1.
SYN_AGE_LIMIT = 1

#: The bytes SipHash-2-4 hashes for one cookie (both families: IPv4 as IPv4-mapped IPv6).
SYN_HASH_MESSAGE_BYTES = 44

#: Entries of the services list and of the acceptance rules (host-written tables).
SYN_SERVICES = 16
SYN_RULES = 16

#: Token buckets (SYN caps) refill every 2**n clocks: 2**17 clocks = 0.84 ms.
SYN_CAP_INTERVAL_LOG2 = 17

#: Clocks per tick of the NIC's TCP timestamp clock (1 kHz, as Linux's ``TCP_TS_HZ``).
SYN_TS_TICK_CYCLES = 156250

#: Steps the TCP option walker takes per frame: a step reads one option, or a run of up to 4
#: NOPs. Options beyond are ignored (a frame every 8 clocks leaves 8 clocks per frame; Linux's
#: and Windows' SYNs need 5).
SYN_OPTION_STEPS = 8

#: IPv4 TTL / IPv6 hop limit of the SYN-ACKs (reset value of a register).
SYN_TTL = 64
