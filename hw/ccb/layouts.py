"""Formats of the CCB table's ports (SPEC §3, issue 9): one Struct per channel, imported by the
gateware, its testbenches and (through the command path) the driver.

Addresses and ports are numbers, as :class:`hw.layouts.RxStatus` carries them: an IPv4 address
in the low 32 bits of its 128-bit field (the table ignores bits 127:32 of an IPv4 address), ports
as 16-bit numbers, not byte-swapped. The table builds its hash message from them (network byte
order, IPv4 addresses IPv4-mapped: docs/ccb_table.md).
"""

from amaranth.lib import data, enum

__all__ = [
    "CcbOpcode", "CcbStatus", "CcbState", "CcbTuple", "CcbLookup", "CcbResult", "CcbCommand",
    "CcbResponse", "CcbCounters", "ccb_entry_layout", "CONN_NBR_BITS",
]

#: Width of ``conn_nbr`` in every port (tables of up to 65536 entries).
CONN_NBR_BITS = 16


class CcbOpcode(enum.Enum, shape=2):
    """``CcbCommand.opcode``."""
    INSERT = 0          # add the tuple with ``state``: INSERTED + conn_nbr, EXISTS, FULL
    DELETE = 1          # remove the tuple: OK, ABSENT
    SET_STATE = 2       # change the tuple's state: OK, ABSENT
    SET_KEY = 3         # change the hash key (``key``): OK, NOT_EMPTY while entries exist


class CcbStatus(enum.Enum, shape=3):
    """``CcbResponse.status``; the numbers of ``sim.reference.ccb_table.Status``."""
    OK = 0
    INSERTED = 1
    EXISTS = 2          # insert of a present tuple: nothing changed, its conn_nbr answered
    FULL = 3            # insert refused (no conn_nbr of the family, or no place): counted
    ABSENT = 4
    NOT_EMPTY = 5


class CcbState(enum.Enum, shape=2):
    """The state the table keeps beside a conn_nbr (the dispatcher's decision)."""
    FREE = 0
    PENDING = 1         # handed out, the CCB not yet loaded: queue the connection's frames
    OFFLOADED = 2       # fast path


class CcbTuple(data.Struct):
    """A TCP connection as a received frame names it: ``src`` is the peer."""
    src: 128
    dst: 128
    sport: 16
    dport: 16
    ipv6: 1


class CcbLookup(data.Struct):
    """Lookup request: the tuple and a tag the result carries back."""
    tuple: CcbTuple
    tag: 16


class CcbResult(data.Struct):
    """Lookup result, in request order. A miss has ``conn_nbr`` 0 and ``state`` 0."""
    hit: 1
    state: 2
    conn_nbr: CONN_NBR_BITS
    tag: 16


class CcbCommand(data.Struct):
    """Command request (host command path). ``state`` for INSERT and SET_STATE, ``key`` for
    SET_KEY (key byte ``k`` at bits ``[8k, 8k+8)``, the byte order of SipHash's key)."""
    opcode: CcbOpcode
    state: 2
    tuple: CcbTuple
    key: 128


class CcbResponse(data.Struct):
    """Command answer: the status and, for INSERTED and EXISTS, the conn_nbr."""
    status: CcbStatus
    conn_nbr: CONN_NBR_BITS


class CcbCounters(data.Struct):
    """The table's counters (32 bits, wrapping) and levels."""
    lookups: 32         # lookup results produced (a command's find is not counted)
    hits: 32
    misses: 32
    inserts: 32         # INSERTED
    exists: 32          # EXISTS
    insert_full: 32     # FULL: the connection stays on the slow path
    deletes: 32         # DELETE answered OK
    absent: 32          # DELETE or SET_STATE answered ABSENT
    kicks: 32           # cuckoo moves applied (the model's ``kicks``)
    stash_used: 8       # level: stash slots in use
    used: 32            # level: entries present


def ccb_entry_layout(index_bits, fp_bits, conn_bits):
    """A bucket entry, ``valid | d | fp | conn_nbr`` from the top bit down (36 bits at the
    default size: 1 + 9 + 14 + 12). ``d = b0 ^ b1`` is the XOR of the entry's two bucket
    indexes."""
    return data.StructLayout({"conn_nbr": conn_bits, "fp": fp_bits, "d": index_bits,
                              "valid": 1})
