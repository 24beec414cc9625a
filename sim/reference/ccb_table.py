"""Reference model of the CCB table: TCP 4-tuple -> ``conn_nbr`` + state (SPEC §3, issue 9).

The design and its reasons are in ``docs/ccb_table.md``; this module is the behaviour the RTL
(``hw/ccb/``) is checked against, step by step: where every entry sits, which entry a cuckoo move
kicks, which ``conn_nbr`` an insert hands out. Commands are atomic here; the RTL's rule for
lookups that overlap a command is in the design doc ("Consistency").

Organisation (defaults: 4096 entries, 1024 of them able to hold IPv6 keys)
--------------------------------------------------------------------------
- Two banks of ``buckets`` buckets of ``ways`` entries. A lookup reads one bucket of each bank
  and the whole stash, in parallel; nothing else but one key-store word.
- A bucket entry is ``valid | d | fp | conn_nbr``: ``d = b0 ^ b1`` (the XOR of the entry's two
  bucket indexes, so an entry knows its other bucket without its key) and a fingerprint ``fp``.
  ``tag = (d, fp)``. The full key lives in a key store indexed by ``conn_nbr`` (read after the
  bucket), the state in a state store indexed by ``conn_nbr``.
- A stash of ``stash_size`` entries in registers, holding full keys (compared in full, no
  key-store read), for keys a walk could not place and for tag collisions.
- Exactness rule: two bucket entries with the same tag never sit in the same bucket pair (two
  keys with equal tags have the same pair: ``b1 = b0 ^ d``), so a lookup never sees more than one
  tag match of a present key, and verifies that one candidate against the key store. A key whose
  tag equals another present key's goes to the stash.
- ``conn_nbr`` 0 .. ``ipv6_entries - 1`` can hold an IPv6 key (the key store has a second, wider
  part for them); IPv4 keys take ``conn_nbr`` >= ``ipv6_entries`` first, then the IPv6-capable
  ones. Each pool hands out in FIFO order: ascending at first, a freed ``conn_nbr`` to the tail.

Hash (keyed, SipHash-c-d under the 128-bit table key, SipHash-1-3 by default):
``H = siphash(key, tuple.to_bytes())`` as a 64-bit integer (the reference implementation's 8 output
bytes, little-endian). The message is 36 bytes for both families, an IPv4 address written as its
IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, RFC 4291 §2.5.5.2), so one hash core serves both;
the key comparison still includes the family, so a mapped IPv6 address on the wire shares an IPv4
key's buckets but never matches it.
``b0 = H[0:k]``, ``b1 = H[16:16+k]`` (``k = log2(buckets)``), ``fp = H[32:32+fp_bits]``.
The bit positions do not move with the table size.

Insert (deterministic; the RTL reproduces it)
---------------------------------------------
1. Find: tag matches in ``bank0[b0]`` and ``bank1[b1]``, full-key match in the stash. A stash
   match, or a bucket match whose key-store key equals the key: ``EXISTS``. A bucket match with
   another key is a *tag collision*.
2. No free ``conn_nbr`` for the key's family: ``FULL``.
3. Tag collision: the stash's lowest free slot, else ``FULL``.
4. A free way in either bucket: the bucket with more free ways (a tie: bank 0), its lowest free
   way.
5. Both full: a cuckoo walk of at most ``max_kicks`` kicks, computed before anything is written.
   The walk starts in ``bank0[b0]``. Each kick advances the LFSR (16-bit Galois, taps 0xB400)
   once and takes way ``lfsr % ways``; a way already on the walk's path is skipped for the next
   one up (mod ``ways``); a bucket whose ways are all on the path ends the walk (failed). The
   kicked entry goes to its other bucket (the other bank, index ``bucket ^ d``); a free way
   there (the lowest) ends the walk, else it kicks again from that bucket.
   A walk that ends on a free way is applied from its end back to its start, one entry write per
   step, the new entry written last (each moved entry is written to its new slot before its old
   slot is overwritten, so every present key stays visible throughout). A failed walk writes
   nothing: the new key goes to the stash's lowest free slot, else ``FULL``.
6. The key store and state store are written for the new ``conn_nbr``; answer ``INSERTED``.

Delete: find (as above), clear the entry, return its ``conn_nbr`` to the tail of its pool, then
drain the stash: each stash entry, lowest slot first, moves to its bucket pair if a way is free
there and no entry of the pair has its tag (rule of step 4, no kicks).
"""

import enum
import ipaddress
from collections import deque
from dataclasses import dataclass

from .siphash import siphash

__all__ = ["FourTuple", "Status", "CcbTable", "table_hash", "DEFAULT_KEY", "C_ROUNDS", "D_ROUNDS"]

#: The table's 128-bit key at reset (the driver writes a random one at start-up).
DEFAULT_KEY = bytes(16)

#: Bit offsets of the fields taken from the 64-bit hash (fixed for every table size).
B0_SHIFT, B1_SHIFT, FP_SHIFT = 0, 16, 32
#: LFSR that picks the way a cuckoo kick evicts: 16-bit Galois, x^16 + x^14 + x^13 + x^11 + 1.
LFSR_TAPS = 0xB400
LFSR_RESET = 0xACE1


#: SipRounds of the table's hash: SipHash-1-3 (the variant Linux's hash tables use; 4.7k LUT
#: instead of 7.7k for 2-4 at 36 bytes, docs/siphash.md). The SYN-cookie unit uses 2-4.
C_ROUNDS, D_ROUNDS = 1, 3


def table_hash(key: bytes, message: bytes, c_rounds: int = C_ROUNDS,
               d_rounds: int = D_ROUNDS) -> int:
    """SipHash-``c_rounds``-``d_rounds`` of ``message`` under the 16-byte ``key``, as a 64-bit
    integer (the project's golden model, :func:`sim.reference.siphash.siphash`, itself checked
    against the reference implementation's vectors and the C ``siphash24`` package)."""
    return siphash(key, message, c=c_rounds, d=d_rounds)


@dataclass(frozen=True)
class FourTuple:
    """A TCP connection as a received frame names it, the table's key.

    Members
    -------
    src_ip, dst_ip : int
        Addresses as numbers, as ``RxStatus.src``/``dst`` hold them (IPv4 in the low 32 bits):
        ``src`` is the peer's address, ``dst`` the NIC's.
    src_port, dst_port : int
        Ports as numbers (``RxStatus.sport``/``dport``).
    ipv6 : bool
        The family; IPv4 addresses must fit in 32 bits.
    """
    src_ip: int
    dst_ip: int
    src_port: int
    dst_port: int
    ipv6: bool = False

    def __post_init__(self):
        address_bits = 128 if self.ipv6 else 32
        for name in ("src_ip", "dst_ip"):
            value = getattr(self, name)
            if not 0 <= value < 1 << address_bits:
                raise ValueError(f"{name} {value:#x} is not an IPv{6 if self.ipv6 else 4} "
                                 "address")
        for name in ("src_port", "dst_port"):
            if not 0 <= getattr(self, name) < 1 << 16:
                raise ValueError(f"{name} {getattr(self, name)} is not a port")

    @classmethod
    def from_text(cls, src: str, dst: str, src_port: int, dst_port: int) -> "FourTuple":
        """Build from address text (``"10.0.0.1"``, ``"fe80::1"``); both of one family."""
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if s.version != d.version:
            raise ValueError("source and destination addresses are of different IP versions")
        return cls(int(s), int(d), src_port, dst_port, s.version == 6)

    #: Length of :meth:`to_bytes`, for both families.
    key_bytes = 36

    def to_bytes(self) -> bytes:
        """The hash message, 36 bytes: ``src_ip ‖ dst_ip ‖ src_port ‖ dst_port``, each in network
        byte order (most significant byte first), the RSS input order with an IPv4 address as
        its IPv4-mapped IPv6 address ``::ffff:a.b.c.d`` (RFC 4291 §2.5.5.2)."""
        mapped = 0 if self.ipv6 else 0xFFFF << 32
        return ((mapped | self.src_ip).to_bytes(16, "big")
                + (mapped | self.dst_ip).to_bytes(16, "big")
                + self.src_port.to_bytes(2, "big") + self.dst_port.to_bytes(2, "big"))

    def rss_bytes(self) -> bytes:
        """The RSS (Toeplitz) input: as :meth:`to_bytes` with 4-byte IPv4 addresses (12 bytes
        for IPv4, 36 for IPv6), ``toeplitz.rss_input``'s order."""
        if self.ipv6:
            return self.to_bytes()
        return (self.src_ip.to_bytes(4, "big") + self.dst_ip.to_bytes(4, "big")
                + self.src_port.to_bytes(2, "big") + self.dst_port.to_bytes(2, "big"))


class Status(enum.IntEnum):
    """Answers of the command path."""
    OK = 0              # delete, set_state, set_key done
    INSERTED = 1        # insert done; the answer carries the conn_nbr
    EXISTS = 2          # insert of a key already present: nothing changed
    FULL = 3            # insert refused: no conn_nbr or no place (counted)
    ABSENT = 4          # delete / set_state of a key not present
    NOT_EMPTY = 5       # set_key while the table holds entries


@dataclass
class _StashEntry:
    key: FourTuple
    conn_nbr: int
    b0: int
    b1: int
    tag: int


@dataclass
class _Placement:
    bank: int
    bucket: int
    way: int


class CcbTable:
    """The CCB table's reference model. See the module docstring for the algorithm.

    Parameters
    ----------
    entries : int
        Bucket slots, ``banks * buckets * ways`` (a power of two); also the number of
        ``conn_nbr``\\s.
    ways : int
        Entries per bucket (a power of two).
    banks : int
        1 (one choice, no cuckoo walk) or 2.
    stash_size : int
        Stash entries (full keys, in registers).
    max_kicks : int
        Longest cuckoo walk (0: none). Must be 0 with one bank.
    ipv6_entries : int
        ``conn_nbr``\\s 0 .. ``ipv6_entries - 1`` can hold an IPv6 key (default: a quarter).
    fp_bits : int or None
        Fingerprint bits; default: what fills an entry to 36 bits (one 36-bit or two 18-bit
        block RAM columns), at least 6.
    key : bytes
        The initial 16-byte hash key.
    c_rounds, d_rounds : int
        SipRounds of the hash (SipHash-1-3 by default).

    Members
    -------
    counters : dict
        ``inserted``, ``exists``, ``full``, ``full_no_conn_nbr``, ``full_no_place``,
        ``deleted``, ``absent``, ``kicks``, ``stashed``, ``tag_collisions``, ``drained``,
        ``longest_walk``.
    lfsr : int
        The kick LFSR's state.
    """

    def __init__(self, entries: int = 4096, *, ways: int = 4, banks: int = 2,
                 stash_size: int = 8, max_kicks: int = 128, ipv6_entries: int | None = None,
                 fp_bits: int | None = None, key: bytes = DEFAULT_KEY,
                 c_rounds: int = C_ROUNDS, d_rounds: int = D_ROUNDS):
        for name, value in (("entries", entries), ("ways", ways)):
            if value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two, got {value}")
        if banks not in (1, 2):
            raise ValueError(f"banks must be 1 or 2, got {banks}")
        if entries % (banks * ways):
            raise ValueError("entries must be a multiple of banks * ways")
        buckets = entries // (banks * ways)
        if buckets > 1 << 16:
            raise ValueError(f"at most 65536 buckets per bank, got {buckets}")
        if banks == 1 and max_kicks:
            raise ValueError("a cuckoo walk needs two banks")
        if stash_size < 0 or max_kicks < 0:
            raise ValueError("stash_size and max_kicks must not be negative")
        ipv6_entries = entries // 4 if ipv6_entries is None else ipv6_entries
        if not 0 <= ipv6_entries <= entries:
            raise ValueError(f"ipv6_entries must be in 0..{entries}, got {ipv6_entries}")
        self._entries, self._ways, self._banks = entries, ways, banks
        self._buckets = buckets
        self._index_bits = buckets.bit_length() - 1
        self._conn_bits = max(1, (entries - 1).bit_length())
        if fp_bits is None:
            fp_bits = min(32, max(6, 36 - 1 - self._conn_bits
                                  - (self._index_bits if banks == 2 else 0)))
        if not 1 <= fp_bits <= 32:
            raise ValueError(f"fp_bits must be in 1..32, got {fp_bits}")
        self._fp_bits = fp_bits
        if c_rounds < 1 or d_rounds < 1:
            raise ValueError("c_rounds and d_rounds must be at least 1")
        self._c_rounds, self._d_rounds = c_rounds, d_rounds
        self._stash_size, self._max_kicks = stash_size, max_kicks
        self._ipv6_entries = ipv6_entries
        self._check_key(key)
        self._key = bytes(key)
        # Bucket slots, bank by bank, bucket * ways + way: the tag (-1: empty) and the conn_nbr.
        self._tag = [[-1] * (buckets * ways) for _ in range(banks)]
        self._conn = [[0] * (buckets * ways) for _ in range(banks)]
        self._stash: list[_StashEntry | None] = [None] * stash_size
        self._keys: dict[int, FourTuple] = {}        # key store, by conn_nbr
        self._states: dict[int, int] = {}            # state store, by conn_nbr
        self._pool_v6 = deque(range(ipv6_entries))
        self._pool_v4 = deque(range(ipv6_entries, entries))
        self.lfsr = LFSR_RESET
        self.counters = dict.fromkeys(
            ("inserted", "exists", "full", "full_no_conn_nbr", "full_no_place", "deleted",
             "absent", "kicks", "stashed", "tag_collisions", "drained", "longest_walk"), 0)

    # --- parameters --------------------------------------------------------------------------
    entries = property(lambda self: self._entries, doc="Bucket slots and conn_nbrs.")
    ways = property(lambda self: self._ways, doc="Entries per bucket.")
    banks = property(lambda self: self._banks, doc="Banks (hash choices).")
    buckets = property(lambda self: self._buckets, doc="Buckets per bank.")
    stash_size = property(lambda self: self._stash_size, doc="Stash entries.")
    max_kicks = property(lambda self: self._max_kicks, doc="Longest cuckoo walk.")
    ipv6_entries = property(lambda self: self._ipv6_entries, doc="IPv6-capable conn_nbrs.")
    fp_bits = property(lambda self: self._fp_bits, doc="Fingerprint bits.")
    key = property(lambda self: self._key, doc="The hash key (16 bytes).")
    c_rounds = property(lambda self: self._c_rounds, doc="SipRounds per message word.")
    d_rounds = property(lambda self: self._d_rounds, doc="SipRounds of finalisation.")

    @property
    def entry_bits(self) -> int:
        """Width of a bucket entry: valid, ``d`` (two banks only), fingerprint, ``conn_nbr``."""
        return (1 + (self._index_bits if self._banks == 2 else 0) + self._fp_bits
                + self._conn_bits)

    # --- hash ----------------------------------------------------------------------------------
    def hash_of(self, key: FourTuple) -> int:
        """The 64-bit keyed hash of ``key``."""
        return table_hash(self._key, key.to_bytes(), self._c_rounds, self._d_rounds)

    def bucket_of(self, key: FourTuple) -> tuple[int, int]:
        """``(b0, b1)``: the bucket of ``key`` in bank 0 and in bank 1 (``b1`` is 0 with one
        bank)."""
        return self._split(self.hash_of(key))[:2]

    def tag_of(self, key: FourTuple) -> tuple[int, int]:
        """``(d, fp)``: the tag a bucket entry of ``key`` holds."""
        b0, b1, fp = self._split(self.hash_of(key))
        return b0 ^ b1, fp

    def _split(self, h: int) -> tuple[int, int, int]:
        mask = self._buckets - 1
        b1 = (h >> B1_SHIFT) & mask if self._banks == 2 else 0
        return (h >> B0_SHIFT) & mask, b1, (h >> FP_SHIFT) & ((1 << self._fp_bits) - 1)

    def _tag_value(self, b0: int, b1: int, fp: int) -> int:
        return ((b0 ^ b1) << self._fp_bits) | fp

    # --- commands ------------------------------------------------------------------------------
    def lookup(self, key: FourTuple) -> tuple[bool, int, int]:
        """``(hit, conn_nbr, state)``; ``(False, 0, 0)`` on a miss."""
        found = self._find(key)[0]
        if found is None:
            return False, 0, 0
        return True, found, self._states[found]

    def insert(self, key: FourTuple, state: int = 0) -> tuple[Status, int]:
        """Insert ``key`` with ``state``: ``(INSERTED, conn_nbr)``, ``(EXISTS, conn_nbr)`` of the
        entry already there, or ``(FULL, 0)``."""
        found, collision, (b0, b1, fp) = self._find(key)
        if found is not None:
            self.counters["exists"] += 1
            return Status.EXISTS, found
        pool = self._pool_for(key)
        if pool is None:
            return self._full("full_no_conn_nbr")
        tag = self._tag_value(b0, b1, fp)
        conn_nbr = pool[0]
        if collision:
            self.counters["tag_collisions"] += 1
            if not self._to_stash(key, conn_nbr, b0, b1, tag):
                return self._full("full_no_place")
        else:
            place = self._free_way(b0, b1)
            if place is not None:
                self._write(place, tag, conn_nbr)
            else:
                path = self._walk(b0)
                if path is not None:
                    self._apply(path, tag, conn_nbr)
                elif not self._to_stash(key, conn_nbr, b0, b1, tag):
                    return self._full("full_no_place")
        pool.popleft()
        self._keys[conn_nbr] = key
        self._states[conn_nbr] = state
        self.counters["inserted"] += 1
        return Status.INSERTED, conn_nbr

    def delete(self, key: FourTuple) -> Status:
        """Remove ``key``: ``OK`` or ``ABSENT``."""
        found = self._find(key)[0]
        if found is None:
            self.counters["absent"] += 1
            return Status.ABSENT
        where = self.position_of(key)
        if where[0] == "stash":
            self._stash[where[1]] = None
        else:
            self._tag[where[1]][where[2] * self._ways + where[3]] = -1
        del self._keys[found], self._states[found]
        (self._pool_v6 if found < self._ipv6_entries else self._pool_v4).append(found)
        self.counters["deleted"] += 1
        self._drain()
        return Status.OK

    def set_state(self, key: FourTuple, state: int) -> Status:
        """Change the state of ``key``'s entry: ``OK`` or ``ABSENT``."""
        found = self._find(key)[0]
        if found is None:
            self.counters["absent"] += 1
            return Status.ABSENT
        self._states[found] = state
        return Status.OK

    def set_key(self, key: bytes) -> Status:
        """Change the hash key: ``OK``, or ``NOT_EMPTY`` (nothing changes) while entries exist."""
        self._check_key(key)
        if self._keys:
            return Status.NOT_EMPTY
        self._key = bytes(key)
        return Status.OK

    # --- introspection -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    @property
    def load(self) -> float:
        """Entries present / :attr:`entries`."""
        return len(self._keys) / self._entries

    @property
    def stash_used(self) -> int:
        return sum(entry is not None for entry in self._stash)

    def bucket_used(self, bank: int, bucket: int) -> int:
        """Valid ways of one bucket."""
        base = bucket * self._ways
        return sum(t >= 0 for t in self._tag[bank][base:base + self._ways])

    def occupancy(self) -> list[list[int]]:
        """Valid ways of every bucket, ``[bank][bucket]``."""
        return [[self.bucket_used(bank, b) for b in range(self._buckets)]
                for bank in range(self._banks)]

    def bucket_entries(self, bank: int, bucket: int) -> list[tuple[int, int] | None]:
        """The ways of one bucket: ``(tag, conn_nbr)`` or ``None``; ``tag = d << fp_bits | fp``
        (the RTL's word, field by field)."""
        base = bucket * self._ways
        return [None if self._tag[bank][i] < 0 else (self._tag[bank][i], self._conn[bank][i])
                for i in range(base, base + self._ways)]

    def stash_entries(self) -> list[tuple[FourTuple, int] | None]:
        """The stash: ``(key, conn_nbr)`` or ``None`` per slot."""
        return [None if e is None else (e.key, e.conn_nbr) for e in self._stash]

    def position_of(self, key: FourTuple) -> tuple | None:
        """``("bank", bank, bucket, way)``, ``("stash", slot)`` or ``None``."""
        found = self._find(key)[0]
        if found is None:
            return None
        for slot, entry in enumerate(self._stash):
            if entry is not None and entry.key == key:
                return "stash", slot
        b0, b1 = self.bucket_of(key)
        for bank, bucket in enumerate((b0, b1)[:self._banks]):
            for way in range(self._ways):
                i = bucket * self._ways + way
                if self._tag[bank][i] >= 0 and self._conn[bank][i] == found:
                    return "bank", bank, bucket, way
        raise AssertionError("a found entry has no place")

    def items(self) -> dict[FourTuple, tuple[int, int]]:
        """Every entry: ``key -> (conn_nbr, state)``."""
        return {k: (c, self._states[c]) for c, k in self._keys.items()}

    def free_conn_nbrs(self) -> tuple[list[int], list[int]]:
        """The pools, head first: ``(ipv6_capable, ipv4_only)``."""
        return list(self._pool_v6), list(self._pool_v4)

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the structure breaks a rule of the module docstring."""
        seen = {}
        for bank in range(self._banks):
            for i, tag in enumerate(self._tag[bank]):
                if tag < 0:
                    continue
                conn = self._conn[bank][i]
                assert conn not in seen, f"conn_nbr {conn} in two slots"
                seen[conn] = (bank, i // self._ways)
                key = self._keys[conn]
                b0, b1, fp = self._split(self.hash_of(key))
                assert tag == self._tag_value(b0, b1, fp), "entry tag differs from its key's"
                assert i // self._ways == (b0, b1)[bank], "entry outside its buckets"
        for entry in self._stash:
            if entry is not None:
                assert entry.conn_nbr not in seen, "conn_nbr in a bucket and the stash"
                seen[entry.conn_nbr] = "stash"
                assert self._keys[entry.conn_nbr] == entry.key
        assert set(seen) == set(self._keys), "key store and table disagree"
        pairs = {}
        for conn, where in seen.items():
            if where == "stash":
                continue
            b0, b1, fp = self._split(self.hash_of(self._keys[conn]))
            ident = (b0, b1, fp)
            assert ident not in pairs, f"conn_nbrs {pairs.get(ident)} and {conn} share a tag"
            pairs[ident] = conn
        free = set(self._pool_v4) | set(self._pool_v6)
        assert not free & set(self._keys), "a conn_nbr in use is in a free pool"
        assert len(free) + len(self._keys) == self._entries
        assert all(c >= self._ipv6_entries for c in self._pool_v4)
        assert all(c < self._ipv6_entries for c in self._pool_v6)
        assert all(not k.ipv6 or c < self._ipv6_entries for c, k in self._keys.items())

    # --- internals ------------------------------------------------------------------------------
    @staticmethod
    def _check_key(key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
            raise ValueError("the table key is 16 bytes")

    def _find(self, key: FourTuple):
        """``(conn_nbr or None, tag_collision, (b0, b1, fp))`` as the RTL's find step sees it."""
        b0, b1, fp = self._split(self.hash_of(key))
        for entry in self._stash:
            if entry is not None and entry.key == key:
                return entry.conn_nbr, False, (b0, b1, fp)
        tag = self._tag_value(b0, b1, fp)
        for bank, bucket in enumerate((b0, b1)[:self._banks]):
            base = bucket * self._ways
            for i in range(base, base + self._ways):
                if self._tag[bank][i] == tag:
                    conn = self._conn[bank][i]
                    if self._keys[conn] == key:
                        return conn, False, (b0, b1, fp)
                    return None, True, (b0, b1, fp)
        return None, False, (b0, b1, fp)

    def _pool_for(self, key: FourTuple):
        if key.ipv6:
            return self._pool_v6 or None
        return self._pool_v4 or self._pool_v6 or None

    def _full(self, reason: str):
        self.counters["full"] += 1
        self.counters[reason] += 1
        return Status.FULL, 0

    def _first_free(self, bank: int, bucket: int) -> int | None:
        base = bucket * self._ways
        for way in range(self._ways):
            if self._tag[bank][base + way] < 0:
                return way
        return None

    def _free_way(self, b0: int, b1: int) -> _Placement | None:
        """Step 4: the bucket with more free ways (tie: bank 0), its lowest free way."""
        free0 = self._ways - self.bucket_used(0, b0)
        free1 = self._ways - self.bucket_used(1, b1) if self._banks == 2 else 0
        if free0 == 0 and free1 == 0:
            return None
        bank, bucket = (0, b0) if free0 >= free1 else (1, b1)
        return _Placement(bank, bucket, self._first_free(bank, bucket))

    def _write(self, place: _Placement, tag: int, conn_nbr: int) -> None:
        i = place.bucket * self._ways + place.way
        self._tag[place.bank][i] = tag
        self._conn[place.bank][i] = conn_nbr

    def _next_lfsr(self) -> int:
        self.lfsr = (self.lfsr >> 1) ^ (LFSR_TAPS if self.lfsr & 1 else 0)
        return self.lfsr

    def _walk(self, b0: int) -> list[_Placement] | None:
        """Step 5, read only: the slots of a walk from ``bank0[b0]`` to a free way, in order
        (the last one free), or ``None``."""
        path: list[_Placement] = []
        on_path = set()
        bank, bucket = 0, b0
        for _ in range(self._max_kicks):
            way = self._next_lfsr() % self._ways
            for _ in range(self._ways):
                if (bank, bucket, way) not in on_path:
                    break
                way = (way + 1) % self._ways
            else:
                return None
            path.append(_Placement(bank, bucket, way))
            on_path.add((bank, bucket, way))
            i = bucket * self._ways + way
            d = self._tag[bank][i] >> self._fp_bits
            bank, bucket = 1 - bank, bucket ^ d
            free = self._first_free(bank, bucket)
            if free is not None:
                path.append(_Placement(bank, bucket, free))
                return path
        return None

    def _apply(self, path: list[_Placement], tag: int, conn_nbr: int) -> None:
        """Move each kicked entry one step along ``path``, the last first, then write the new
        entry into the first slot."""
        for src, dst in zip(reversed(path[:-1]), reversed(path[1:])):
            i = src.bucket * self._ways + src.way
            self._write(dst, self._tag[src.bank][i], self._conn[src.bank][i])
        self._write(path[0], tag, conn_nbr)
        kicks = len(path) - 1
        self.counters["kicks"] += kicks
        self.counters["longest_walk"] = max(self.counters["longest_walk"], kicks)

    def _to_stash(self, key: FourTuple, conn_nbr: int, b0: int, b1: int, tag: int) -> bool:
        for slot, entry in enumerate(self._stash):
            if entry is None:
                self._stash[slot] = _StashEntry(key, conn_nbr, b0, b1, tag)
                self.counters["stashed"] += 1
                return True
        return False

    def _pair_has_tag(self, b0: int, b1: int, tag: int) -> bool:
        for bank, bucket in enumerate((b0, b1)[:self._banks]):
            base = bucket * self._ways
            if tag in self._tag[bank][base:base + self._ways]:
                return True
        return False

    def _drain(self) -> None:
        for slot, entry in enumerate(self._stash):
            if entry is None or self._pair_has_tag(entry.b0, entry.b1, entry.tag):
                continue
            place = self._free_way(entry.b0, entry.b1)
            if place is not None:
                self._write(place, entry.tag, entry.conn_nbr)
                self._stash[slot] = None
                self.counters["drained"] += 1
