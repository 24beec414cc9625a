"""Formats inside the fast path: the receive engine's records and its ports to the command unit.

The host-visible formats (Ccb, commands, events) are in :mod:`hw.layouts`; these are the engine's
own, split from the Ccb by who reads them how often (docs/fast_path.md, "The receive engine").
"""

from amaranth.lib import data

from .. import params
from ..layouts import CcbStats, CcbTcp, ConnState

__all__ = ["ConnRecord", "ConnRoute", "SgEntry", "FastCommand", "FastAnswer",
           "SLOT_BITS"]

#: Bits of a packet-buffer frame slot.
SLOT_BITS = (params.RX_PACKET_BUFFER_FRAMES - 1).bit_length()


class ConnRecord(data.Struct):
    """The part of a connection's CCB the engine reads and writes for every frame (one block-RAM
    word per conn_nbr): its state, the segment-variant TCP fields, the posted RCVMDL, its queue,
    its statistics, and the few connection-invariant fields every frame needs."""
    state: ConnState
    loaded: 1                   # HANDOUT2 loaded the Ccb (a flush writes it back)
    tcp: CcbTcp
    mdl_posted: 1
    mdl_push: 1
    mdl_handle: 16
    mdl_entries: 4              # 1 .. RCVMDL_MAX_ENTRIES
    mdl_entry: 3                # the entry being filled
    mdl_offset: 32              # bytes of that entry filled
    mdl_placed: 32              # bytes of the RCVMDL filled
    q_head: SLOT_BITS           # the connection's queue: packet-buffer slots, linked
    q_tail: SLOT_BITS
    q_count: 5
    stats: CcbStats
    rcv_mss: 16
    snd_wscale: 4
    rcv_wscale: 4
    timestamps: 1
    ack_timer: 1                # the delayed-ACK timer runs
    ack_deadline: 32            # ... and runs out at this engine clock count
    in_timer_list: 1            # the conn_nbr is in the delayed-ACK list


class ConnRoute(data.Struct):
    """The connection-invariant part, written at HANDOUT1 (tuple) and HANDOUT2 (the rest), read
    for ACKs and the flush's write-back."""
    remote_ip: 128
    local_ip: 128
    remote_port: 16
    local_port: 16
    ipv6: 1
    local_mac: 48
    remote_mac: 48
    vlan: 1
    vlan_tci: 16
    ttl: 8
    tos: 8
    iss: 32
    irs: 32
    host_context: 32
    ccb_addr: 64                # HANDOUT2's address: where the flush writes the Ccb back
    mdl_addr: 64                # the RCVMDL list's address (written back in the Ccb)


class SgEntry(data.Struct):
    """One RCVMDL entry on chip."""
    addr: 64
    length: 32


class FastCommand(data.Struct):
    """A fast-path command from the command unit: the ring entry's fields and its index."""
    opcode: 8
    index: 16
    tag: 16
    arg: 32
    addr: 64


class FastAnswer(data.Struct):
    """The engine's answer to a :class:`FastCommand`: with ``event``, the command unit posts
    ``COMMAND_DONE`` with ``code`` (a refusal, HANDOUT2 OK or BAD_CCB, a DMA error); without,
    the engine posts the command's event itself (INTERLOCK, FLUSH) or none (RCVMDL,
    WINUPDATE)."""
    event: 1
    code: 8
    bad: 1                      # counts in bad_commands
