"""The CCB table's reference model (sim/reference/ccb_table.py) against a plain dict, and its
rules: duplicates, absent keys, a full table, the stash, the key change, conn_nbr stability and
reuse. Small tables (64-512 entries) so walks, the stash and FULL happen within a few hundred
operations; the whole file runs in a few seconds.
"""

import random

import pytest

from sim.reference.ccb_table import CcbTable, FourTuple, Status, table_hash


def random_tuple(rng: random.Random, ipv6_share: float = 0.25) -> FourTuple:
    if rng.random() < ipv6_share:
        return FourTuple(rng.getrandbits(128), rng.getrandbits(128), rng.getrandbits(16),
                         rng.getrandbits(16), ipv6=True)
    return FourTuple(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                     rng.getrandbits(16))


def fill(table: CcbTable, rng: random.Random, ipv6_share: float = 0.0) -> dict:
    """Insert random tuples up to the first FULL; returns the entries ``key -> conn_nbr``."""
    present = {}
    while True:
        key = random_tuple(rng, ipv6_share)
        status, conn = table.insert(key)
        if status == Status.FULL:
            return present
        assert status == Status.INSERTED
        present[key] = conn


# --- key and hash ---------------------------------------------------------------------------

def test_siphash_reference_vectors():
    """SipHash-2-4 vectors of the reference implementation (vectors.h): key 00..0f, message
    00..(n-1), output bytes little-endian."""
    key = bytes(range(16))
    assert table_hash(key, b"", 2, 4) == int.from_bytes(bytes.fromhex("310e0edd47db6f72"),
                                                        "little")
    assert table_hash(key, bytes(range(15)), 2, 4) == int.from_bytes(
        bytes.fromhex("e545be4961ca29a1"), "little")
    assert table_hash(key, bytes(range(63)), 2, 4) == int.from_bytes(
        bytes.fromhex("724506eb4c328a95"), "little")


def test_table_hash_is_siphash_1_3_by_default():
    """The table hashes with SipHash-1-3 (cross-checked with the C ``siphash24`` package) unless
    the table is built with other rounds."""
    siphash24 = pytest.importorskip("siphash24")
    key = bytes(range(16))
    t = FourTuple.from_text("10.0.0.1", "10.0.0.2", 1234, 80)
    expected = int.from_bytes(siphash24.siphash13(t.to_bytes(), key=key).digest(), "little")
    assert table_hash(key, t.to_bytes()) == expected
    assert CcbTable(64, key=key).hash_of(t) == expected
    assert CcbTable(64, key=key, c_rounds=2, d_rounds=4).hash_of(t) == table_hash(
        key, t.to_bytes(), 2, 4)


def test_tuple_bytes_are_network_order_ipv4_mapped():
    """One 36-byte message for both families, an IPv4 address as ``::ffff:a.b.c.d``; the RSS
    order (``rss_bytes`` is the Toeplitz input itself)."""
    from sim.reference.toeplitz import rss_input
    t4 = FourTuple.from_text("66.9.149.187", "161.142.100.80", 2794, 1766)
    assert t4.rss_bytes() == rss_input("66.9.149.187", "161.142.100.80", 2794, 1766)
    mapped = FourTuple.from_text("::ffff:66.9.149.187", "::ffff:161.142.100.80", 2794, 1766)
    assert len(t4.to_bytes()) == t4.key_bytes == 36
    assert t4.to_bytes() == mapped.to_bytes() == (
        bytes(10) + b"\xff\xff" + bytes([66, 9, 149, 187]) + bytes(10) + b"\xff\xff"
        + bytes([161, 142, 100, 80, 0x0A, 0xEA, 0x06, 0xE6]))
    t6 = FourTuple.from_text("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766)
    assert t6.ipv6 and len(t6.to_bytes()) == t6.key_bytes == 36
    assert t6.to_bytes() == t6.rss_bytes() == rss_input("3ffe:2501:200:1fff::7",
                                                        "3ffe:2501:200:3::1", 2794, 1766)


def test_mapped_ipv6_shares_buckets_never_the_entry():
    """An IPv6 tuple with IPv4-mapped addresses hashes as the IPv4 tuple (same buckets, same
    tag) but is another key: both can be present, each with its own conn_nbr."""
    table = CcbTable(64, key=bytes(range(16)))
    t4 = FourTuple.from_text("10.0.0.1", "10.0.0.2", 1234, 80)
    t6 = FourTuple.from_text("::ffff:10.0.0.1", "::ffff:10.0.0.2", 1234, 80)
    assert table.hash_of(t4) == table.hash_of(t6) and t4 != t6
    status4, conn4 = table.insert(t4)
    assert status4 == Status.INSERTED and table.lookup(t6) == (False, 0, 0)
    status6, conn6 = table.insert(t6)
    assert status6 == Status.INSERTED and conn6 != conn4
    assert table.position_of(t6)[0] == "stash"       # same tag: the exactness rule
    assert table.lookup(t4)[:2] == (True, conn4) and table.lookup(t6)[:2] == (True, conn6)
    table.check_invariants()


@pytest.mark.parametrize("kwargs", [dict(src_ip=1 << 32, dst_ip=0, src_port=0, dst_port=0),
                                    dict(src_ip=0, dst_ip=0, src_port=1 << 16, dst_port=0),
                                    dict(src_ip=-1, dst_ip=0, src_port=0, dst_port=0)])
def test_tuple_rejects_out_of_range_fields(kwargs):
    with pytest.raises(ValueError):
        FourTuple(**kwargs)


def test_hash_fields_have_fixed_positions():
    table = CcbTable(4096, key=bytes(range(16)))
    key = FourTuple.from_text("10.0.0.1", "10.0.0.2", 1234, 80)
    h = table.hash_of(key)
    assert table.bucket_of(key) == (h & 511, (h >> 16) & 511)
    assert table.tag_of(key) == ((h ^ (h >> 16)) & 511, (h >> 32) & ((1 << table.fp_bits) - 1))
    assert table.entry_bits == 36 and table.fp_bits == 14


def test_key_change_refused_unless_empty():
    table = CcbTable(64, ways=4, key=bytes(16))
    key = FourTuple.from_text("10.0.0.1", "10.0.0.2", 1, 2)
    before = table.bucket_of(key)
    assert table.set_key(bytes(range(16))) == Status.OK
    assert table.key == bytes(range(16)) and table.bucket_of(key) != before
    assert table.insert(key)[0] == Status.INSERTED
    assert table.set_key(bytes(16)) == Status.NOT_EMPTY
    assert table.key == bytes(range(16)) and table.lookup(key)[0]
    assert table.delete(key) == Status.OK
    assert table.set_key(bytes(16)) == Status.OK
    with pytest.raises(ValueError):
        table.set_key(bytes(8))


# --- against a dict -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_random_interleavings_against_dict(seed):
    """6000 operations on a 256-entry table that runs near full (so walks, the stash, FULL and
    stash draining all happen), against a dict; invariants checked every 500 operations."""
    rng = random.Random(seed)
    table = CcbTable(256, stash_size=4, max_kicks=32, ipv6_entries=64,
                     key=rng.randbytes(16))
    expected: dict[FourTuple, tuple[int, int]] = {}
    pool: list[FourTuple] = []
    for op in range(6000):
        r = rng.random()
        if r < 0.4 or not pool:
            key = random_tuple(rng)
            pool.append(key)
            state = rng.randrange(4)
            status, conn = table.insert(key, state)
            if status == Status.INSERTED:
                assert conn not in {c for c, _ in expected.values()}
                assert conn < 64 or not key.ipv6
                expected[key] = (conn, state)
            else:
                assert status == Status.FULL and conn == 0
                assert len(expected) >= 0.85 * 256
        elif r < 0.55:
            key = rng.choice(pool)
            status, conn = table.insert(key, 3)
            if key in expected:
                assert (status, conn) == (Status.EXISTS, expected[key][0])
            else:
                assert status in (Status.INSERTED, Status.FULL)
                if status == Status.INSERTED:
                    expected[key] = (conn, 3)
        elif r < 0.8:
            key = rng.choice(pool)
            status = table.delete(key)
            assert status == (Status.OK if expected.pop(key, None) else Status.ABSENT)
        elif r < 0.9:
            key = rng.choice(pool)
            state = rng.randrange(4)
            status = table.set_state(key, state)
            if key in expected:
                assert status == Status.OK
                expected[key] = (expected[key][0], state)
            else:
                assert status == Status.ABSENT
        else:
            key = rng.choice(pool) if rng.random() < 0.7 else random_tuple(rng)
            hit, conn, state = table.lookup(key)
            assert (hit, conn, state) == ((True, *expected[key]) if key in expected
                                          else (False, 0, 0))
        if op % 500 == 499:
            table.check_invariants()
            assert table.items() == expected
    table.check_invariants()
    assert table.items() == expected
    assert table.counters["kicks"] > 0 and table.counters["stashed"] > 0
    assert table.counters["full"] > 0 and table.counters["drained"] > 0


# --- duplicates, absent keys ------------------------------------------------------------------

def test_duplicate_insert_answers_exists_and_keeps_one_entry():
    table = CcbTable(64)
    key = FourTuple.from_text("fe80::1", "fe80::2", 443, 5000)
    status, conn = table.insert(key, 1)
    assert status == Status.INSERTED
    assert table.insert(key, 2) == (Status.EXISTS, conn)
    assert len(table) == 1 and table.lookup(key) == (True, conn, 1)
    table.check_invariants()


def test_delete_and_set_state_of_absent_key():
    table = CcbTable(64)
    key = FourTuple.from_text("10.0.0.1", "10.0.0.2", 1, 2)
    assert table.delete(key) == Status.ABSENT
    assert table.set_state(key, 2) == Status.ABSENT
    assert table.insert(key)[0] == Status.INSERTED
    assert table.delete(key) == Status.OK
    assert table.delete(key) == Status.ABSENT
    assert table.counters["absent"] == 3 and len(table) == 0


# --- full table, stash -----------------------------------------------------------------------

def test_full_table_refuses_and_present_keys_still_hit():
    """After the first FULL, later inserts still land where a way is free; every refused one is
    counted, and every present key still hits with its conn_nbr."""
    rng = random.Random(7)
    table = CcbTable(256, stash_size=4, max_kicks=64, key=rng.randbytes(16))
    present = fill(table, rng)
    assert table.load > 0.9 and table.stash_used == 4 and table.counters["full"] == 1
    refused = 1
    for _ in range(100):
        key = random_tuple(rng, 0.0)
        status, conn = table.insert(key)
        if status == Status.INSERTED:
            present[key] = conn
        else:
            assert (status, conn) == (Status.FULL, 0) and table.lookup(key) == (False, 0, 0)
            refused += 1
    assert refused > 50 and table.counters["full"] == refused
    assert table.items() == {k: (c, 0) for k, c in present.items()}
    for key, conn in present.items():
        assert table.lookup(key) == (True, conn, 0)
    table.check_invariants()


def test_conn_nbr_pools_run_out_per_family():
    table = CcbTable(64, ipv6_entries=4, max_kicks=16)
    rng = random.Random(3)
    v6 = [random_tuple(rng, ipv6_share=1.0) for _ in range(5)]
    answers = [table.insert(k) for k in v6]
    assert [s for s, _ in answers] == [Status.INSERTED] * 4 + [Status.FULL]
    assert [c for _, c in answers[:4]] == [0, 1, 2, 3]
    assert table.counters["full_no_conn_nbr"] == 1
    # IPv4 keys take the IPv4-only conn_nbrs first, ascending.
    assert table.insert(random_tuple(rng, 0.0)) == (Status.INSERTED, 4)


def test_ipv4_keys_fall_back_on_ipv6_capable_conn_nbrs():
    table = CcbTable(16, ways=2, ipv6_entries=8, stash_size=16, max_kicks=8)
    rng = random.Random(5)
    conns = []
    for _ in range(16):
        status, conn = table.insert(random_tuple(rng, 0.0))
        if status == Status.INSERTED:
            conns.append(conn)
    assert conns == list(range(8, 16)) + list(range(8))[:len(conns) - 8]


def test_stash_holds_what_the_walk_cannot_place_and_drains_on_delete():
    """One bucket of one way a bank: every third key with the same pair goes to the stash."""
    table = CcbTable(2, ways=1, banks=2, stash_size=2, max_kicks=4, ipv6_entries=0,
                     key=bytes(range(16)))
    rng = random.Random(11)
    keys = [random_tuple(rng, 0.0) for _ in range(3)]
    answers = [table.insert(k) for k in keys]
    assert [s for s, _ in answers] == [Status.INSERTED] * 2 + [Status.FULL]
    assert table.counters["full_no_conn_nbr"] == 1
    table = CcbTable(4, ways=1, banks=2, stash_size=2, max_kicks=4, ipv6_entries=0,
                     key=bytes(range(16)))
    # Four tuples whose both buckets are 0 and 0 in a 2 x 2-bucket table.
    pinned = []
    while len(pinned) < 4:
        key = random_tuple(rng, 0.0)
        if table.bucket_of(key) == (0, 0):
            pinned.append(key)
    answers = [table.insert(k) for k in pinned]
    assert [s for s, _ in answers] == [Status.INSERTED] * 4
    assert table.stash_used == 2
    assert [table.position_of(k)[0] for k in pinned] == ["bank", "bank", "stash", "stash"]
    for key, (_, conn) in zip(pinned, answers):
        assert table.lookup(key) == (True, conn, 0)
    table.check_invariants()
    assert table.delete(pinned[0]) == Status.OK
    assert table.counters["drained"] == 1 and table.stash_used == 1
    assert table.position_of(pinned[2]) == ("bank", 0, 0, 0)
    assert table.lookup(pinned[2]) == (True, answers[2][1], 0)
    table.check_invariants()


def test_tag_collision_goes_to_the_stash():
    """Two keys with equal (b0, b1, fp) never share a bucket pair: the second is stashed, and a
    lookup finds each. A 1-bit fingerprint in a 1-bucket table makes collisions common."""
    table = CcbTable(8, ways=4, banks=2, stash_size=4, max_kicks=0, fp_bits=1,
                     ipv6_entries=0)
    rng = random.Random(2)
    keys = []
    while len(keys) < 2:
        key = random_tuple(rng, 0.0)
        if table.tag_of(key)[1] == 0:
            keys.append(key)
    conns = [table.insert(k)[1] for k in keys]
    assert table.counters["tag_collisions"] == 1
    assert table.position_of(keys[1]) == ("stash", 0)
    assert [table.lookup(k) for k in keys] == [(True, c, 0) for c in conns]
    # The stashed key stays in the stash while its twin is in the pair, then drains.
    assert table.delete(random_tuple(rng, 0.0)) == Status.ABSENT
    assert table.delete(keys[0]) == Status.OK
    assert table.position_of(keys[1])[0] == "bank"
    table.check_invariants()


# --- conn_nbr stability and reuse ----------------------------------------------------------------

def test_conn_nbr_survives_cuckoo_moves():
    rng = random.Random(9)
    table = CcbTable(512, stash_size=0, max_kicks=128, key=rng.randbytes(16))
    present = {}
    places = {}
    moved = 0
    for _ in range(480):
        key = random_tuple(rng, 0.0)
        status, conn = table.insert(key)
        assert status == Status.INSERTED
        present[key] = conn
        for k, c in present.items():
            where = table.position_of(k)
            moved += k in places and places[k] != where
            places[k] = where
            assert table.lookup(k) == (True, c, 0)
    assert table.counters["kicks"] > 100 and moved > 100
    table.check_invariants()


def test_walk_is_deterministic():
    """Same key, same tuples, same answers and same places: the LFSR is the only 'random'."""
    def run():
        rng = random.Random(4)
        table = CcbTable(256, max_kicks=64, key=rng.randbytes(16))
        fill(table, rng)
        return table.lfsr, table.occupancy(), [table.bucket_entries(0, b) for b in range(8)]
    assert run() == run()


def test_conn_nbr_reuse_after_delete_is_fifo():
    table = CcbTable(16, ways=2, ipv6_entries=0, stash_size=16, max_kicks=8)
    rng = random.Random(6)
    keys = [random_tuple(rng, 0.0) for _ in range(4)]
    conns = [table.insert(k)[1] for k in keys]
    assert conns == [0, 1, 2, 3]
    assert table.delete(keys[1]) == Status.OK and table.delete(keys[0]) == Status.OK
    assert table.free_conn_nbrs()[1][-2:] == [1, 0]
    # Fill the 12 never-used ones first, then the freed ones in the order they were freed.
    fresh = [table.insert(random_tuple(rng, 0.0))[1] for _ in range(12)]
    assert fresh == list(range(4, 16))
    again = [random_tuple(rng, 0.0), random_tuple(rng, 0.0)]
    assert [table.insert(k)[1] for k in again] == [1, 0]
    assert table.lookup(again[0])[:2] == (True, 1)


def test_set_state_changes_only_the_state():
    table = CcbTable(64)
    key = FourTuple.from_text("10.1.1.1", "10.1.1.2", 80, 8080)
    _, conn = table.insert(key, 1)
    where = table.position_of(key)
    assert table.set_state(key, 2) == Status.OK
    assert table.lookup(key) == (True, conn, 2) and table.position_of(key) == where


@pytest.mark.parametrize("kwargs", [dict(entries=48), dict(entries=64, ways=3),
                                    dict(entries=64, banks=3), dict(entries=64, banks=1),
                                    dict(entries=64, ipv6_entries=65),
                                    dict(entries=64, fp_bits=0)])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        CcbTable(**kwargs)
