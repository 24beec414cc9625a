"""Why the CCB table's bucket index comes from a keyed SipHash, not from Toeplitz (SPEC §3).

Both tests use the bank-0 bucket index of a table of 256 buckets a bank
(:meth:`CcbTable.bucket_of`, ``H[0:8]``) and, for Toeplitz, the low 8 bits of the RSS hash
(what an RSS indirection table takes). The attacker talks to one server (10.0.0.1:80) and picks
only the source address and port of his tuples.

Linearity: Toeplitz is XOR-linear, ``h(a ^ b) = h(a) ^ h(b)``. From 16 tuples seen to share a
bucket the attacker keeps the 15 differences ``x_i ^ x_0`` (non-zero only in the source fields);
``t ^ (x_i ^ x_0)`` then shares ``t``'s bucket for *any* tuple ``t``. Over 50 victim tuples that
is 750 crafted tuples: all 750 land in their victim's bucket under Toeplitz; under the keyed
hash (collisions observed under the same key) they land there as random tuples do, with
probability 1/256 each (expected 2.9; the test allows 15, P(Binomial(750, 1/256) >= 16) < 1e-6).

Flooding: attack sets of 1024 tuples (one source address with 1024 consecutive ports; 1024
consecutive source addresses with one port; 1024 tuples that all share one Toeplitz bucket under
the Microsoft key; 1024 random ones), each under 20 random table keys: 80 placements of 1024 keys
into 256 buckets. Random placement puts Binomial(1024, 1/256) keys in a bucket (mean 4); the
worst bucket of the 80 must stay below the bound ``t`` for which 80 * 256 * P(X >= t) < 1e-3
(``t`` = 19), and the mean worst bucket must be within 1.0 of random placement's, measured on
80 random placements (measured: worst 14, mean worst 10.61 against 10.62). Toeplitz puts the
third set entirely in one bucket.

Both run in about one second.
"""

import math
import random

from sim.reference.ccb_table import CcbTable, FourTuple
from sim.reference.toeplitz import MS_RSS_KEY, toeplitz_hash

BUCKETS = 256
SERVER_IP, SERVER_PORT = 0x0A00_0001, 80


def keyed_table(rng: random.Random) -> CcbTable:
    table = CcbTable(2 * 4 * BUCKETS, key=rng.randbytes(16))
    assert table.buckets == BUCKETS
    return table


def keyed_bucket(table: CcbTable):
    return lambda t: table.bucket_of(t)[0]


def toeplitz_bucket(t: FourTuple) -> int:
    return toeplitz_hash(MS_RSS_KEY, t.rss_bytes()) % BUCKETS


def client(src_ip: int, src_port: int) -> FourTuple:
    return FourTuple(src_ip, SERVER_IP, src_port, SERVER_PORT)


def xor(a: FourTuple, b: FourTuple) -> FourTuple:
    return FourTuple(a.src_ip ^ b.src_ip, a.dst_ip ^ b.dst_ip, a.src_port ^ b.src_port,
                     a.dst_port ^ b.dst_port)


def colliding_group(bucket_of, rng: random.Random, size: int = 16) -> list[FourTuple]:
    """``size`` client tuples sharing a bucket, found by trying random ones (what an attacker
    who can observe collisions, e.g. by timing, collects)."""
    seen: dict[int, list[FourTuple]] = {}
    while True:
        t = client(rng.getrandbits(32), rng.getrandbits(16))
        group = seen.setdefault(bucket_of(t), [])
        group.append(t)
        if len(group) == size:
            return group


def shifted_hits(bucket_of, rng: random.Random, victims: int = 50) -> int:
    """Crafted tuples (victim ^ observed difference) that land in their victim's bucket."""
    group = colliding_group(bucket_of, rng)
    deltas = [xor(x, group[0]) for x in group[1:]]
    hits = 0
    for _ in range(victims):
        victim = client(rng.getrandbits(32), rng.getrandbits(16))
        target = bucket_of(victim)
        hits += sum(bucket_of(xor(victim, d)) == target for d in deltas)
    return hits


def test_linearity_attack_works_on_toeplitz():
    assert shifted_hits(toeplitz_bucket, random.Random(1)) == 50 * 15


def test_linearity_attack_fails_on_the_keyed_hash():
    rng = random.Random(2)
    hits = [shifted_hits(keyed_bucket(keyed_table(rng)), rng) for _ in range(3)]
    assert all(h <= 15 for h in hits), hits


# --- flooding -----------------------------------------------------------------------------------

def binomial_tail(n: int, p: float, t: int) -> float:
    """P(X >= t) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(t, n + 1))


def toeplitz_collision_set(count: int, rng: random.Random) -> list[FourTuple]:
    """``count`` client tuples in one Toeplitz bucket: XOR combinations of observed
    differences applied to one tuple."""
    group = colliding_group(toeplitz_bucket, rng)
    deltas = [xor(x, group[0]) for x in group[1:]]
    tuples = []
    for mask in range(count):
        t = group[0]
        for bit, d in enumerate(deltas):
            if mask >> bit & 1:
                t = xor(t, d)
        tuples.append(t)
    return tuples


def attack_sets(n: int, rng: random.Random) -> dict[str, list[FourTuple]]:
    base_ip = 0xC633_6400     # 198.51.100.0
    return {
        "one address, consecutive ports": [client(base_ip, 1024 + i) for i in range(n)],
        "consecutive addresses, one port": [client(base_ip + i, 40000) for i in range(n)],
        "one Toeplitz bucket": toeplitz_collision_set(n, rng),
        "random": [client(rng.getrandbits(32), rng.getrandbits(16)) for _ in range(n)],
    }


def worst_bucket(buckets: list[int]) -> int:
    counts = [0] * BUCKETS
    for b in buckets:
        counts[b] += 1
    return max(counts)


def test_flooding_stays_within_random_placement():
    n, keys_per_set = 1024, 20
    rng = random.Random(3)
    sets = attack_sets(n, rng)
    assert len(set(sets["one Toeplitz bucket"])) == n
    assert worst_bucket([toeplitz_bucket(t) for t in sets["one Toeplitz bucket"]]) == n
    worst = []
    for tuples in sets.values():
        for _ in range(keys_per_set):
            bucket_of = keyed_bucket(keyed_table(rng))
            worst.append(worst_bucket([bucket_of(t) for t in tuples]))
    random_worst = [worst_bucket([rng.randrange(BUCKETS) for _ in range(n)])
                    for _ in range(len(worst))]
    bound = next(t for t in range(n) if
                 len(worst) * BUCKETS * binomial_tail(n, 1 / BUCKETS, t) < 1e-3)
    assert bound == 19
    assert max(worst) < bound, worst
    mean, random_mean = sum(worst) / len(worst), sum(random_worst) / len(random_worst)
    assert abs(mean - random_mean) < 1.0, (mean, random_mean)
