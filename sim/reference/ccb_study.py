"""The CCB table's organisation study: load at the first failed insert, and block RAM cost.

``python -m sim.reference.ccb_study`` fills :class:`~sim.reference.ccb_table.CcbTable` with
random IPv4 tuples under a random key until the first insert answers ``FULL``, for every
candidate organisation, size and seed, and prints a Markdown table (``docs/ccb_table.md`` holds
its output): the load at that insert (min / median over the seeds), the kicks a successful insert
took (mean over every insert; the longest walk seen), the stash in use at the failure, and the
DP16KD block RAMs of the organisation (:func:`bram_count`).

Takes about 10 minutes for the default arguments on one core (the 64K fills dominate);
``--entries 4096 --seeds 10`` gives a first look in seconds.
"""

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass

from .ccb_table import CcbTable, FourTuple, Status

__all__ = ["Organisation", "ORGANISATIONS", "fill_until_full", "bram_count", "memory_brams",
           "main"]

#: ECP5 DP16KD shapes, (depth, width): true dual port up to 18 bits a port, and the 512 x 36
#: pseudo-dual-port shape (one read port, one write port). Lattice TN1264 "ECP5 Memory Usage
#: Guide", table 3 (DP16KD) and PDPW16KD.
TDP_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18))
PDP_SHAPES = TDP_SHAPES + ((512, 36),)
#: Key-store widths: an IPv4 key (all conn_nbrs), the rest of an IPv6 key (IPv6-capable ones).
KEY_LO_BITS, KEY_HI_BITS = 96, 192
STATE_BITS = 2


@dataclass(frozen=True)
class Organisation:
    """One candidate: the :class:`CcbTable` arguments that shape it."""
    name: str
    banks: int
    ways: int
    stash_size: int
    max_kicks: int

    def table(self, entries: int, key: bytes) -> CcbTable:
        return CcbTable(entries, banks=self.banks, ways=self.ways, stash_size=self.stash_size,
                        max_kicks=self.max_kicks, key=key)


ORGANISATIONS = (
    Organisation("1 x 8, stash 8 (one choice)", 1, 8, 8, 0),
    Organisation("2 x 4, stash 8, no kicks (two choices)", 2, 4, 8, 0),
    Organisation("2 x 4, stash 8, 32 kicks", 2, 4, 8, 32),
    Organisation("2 x 4, stash 8, 64 kicks", 2, 4, 8, 64),
    Organisation("2 x 4, stash 0, 128 kicks", 2, 4, 0, 128),
    Organisation("2 x 4, stash 8, 128 kicks", 2, 4, 8, 128),
    Organisation("2 x 2, stash 8, 128 kicks", 2, 2, 8, 128),
    Organisation("2 x 8, stash 8, 16 kicks", 2, 8, 8, 16),
)


def random_ipv4_tuple(rng: random.Random) -> FourTuple:
    return FourTuple(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                     rng.getrandbits(16))


def fill_until_full(organisation: Organisation, entries: int, seed: int) -> CcbTable:
    """A table of ``organisation`` filled with random IPv4 tuples (key and tuples from ``seed``)
    up to and including its first ``FULL`` insert."""
    rng = random.Random(seed)
    table = organisation.table(entries, rng.randbytes(16))
    while table.insert(random_ipv4_tuple(rng))[0] != Status.FULL:
        pass
    return table


def memory_brams(depth: int, width: int, shapes=TDP_SHAPES) -> int:
    """DP16KDs for a ``depth`` x ``width`` memory built from one shape (the cheapest)."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in shapes)


def bram_count(table: CcbTable, *, command_port: bool = False) -> dict[str, int]:
    """DP16KDs of ``table``'s memories.

    ``command_port=False``: the bucket banks may use the 512 x 36 pseudo-dual-port shape (the
    command path reads them through the lookup port in cycles without a lookup); ``True``: every
    memory is true dual port, port B the command path's own.
    """
    bucket_shapes = TDP_SHAPES if command_port else PDP_SHAPES
    buckets = table.banks * memory_brams(table.buckets, table.ways * table.entry_bits,
                                         bucket_shapes)
    counts = {
        "buckets": buckets,
        "key_lo": memory_brams(table.entries, KEY_LO_BITS),
        "key_hi": memory_brams(table.ipv6_entries, KEY_HI_BITS) if table.ipv6_entries else 0,
        "state": memory_brams(table.entries, STATE_BITS),
    }
    counts["total"] = sum(counts.values())
    return counts


def study(entries: int, seeds: int, organisations=ORGANISATIONS) -> list[dict]:
    rows = []
    for organisation in organisations:
        loads, kicks, inserts, walks, stashes = [], 0, 0, [], []
        started = time.monotonic()
        for seed in range(seeds):
            table = fill_until_full(organisation, entries, seed)
            loads.append(table.load)
            kicks += table.counters["kicks"]
            inserts += table.counters["inserted"]
            walks.append(table.counters["longest_walk"])
            stashes.append(table.stash_used)
        rows.append({
            "organisation": organisation.name, "entries": entries,
            "min": min(loads), "median": statistics.median(loads),
            "kicks_mean": kicks / inserts, "longest_walk": max(walks),
            "stash_at_failure": statistics.median(stashes),
            "entry_bits": table.entry_bits,
            "brams": bram_count(table)["total"],
            "brams_command_port": bram_count(table, command_port=True)["total"],
            "seconds": time.monotonic() - started,
        })
    return rows


def markdown(rows: list[dict], seeds: int) -> str:
    lines = [
        f"| organisation (banks x ways) | entries | load at first FULL, min / median "
        f"({seeds} seeds) | kicks / insert, mean | longest walk | entry bits | DP16KD "
        f"(shared port / own port) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['organisation']} | {r['entries']} | {100 * r['min']:.2f} % / "
            f"{100 * r['median']:.2f} % | {r['kicks_mean']:.2f} | {r['longest_walk']} | "
            f"{r['entry_bits']} | {r['brams']} / {r['brams_command_port']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.reference.ccb_study",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[4096, 65536])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--only", type=int, nargs="+", metavar="N",
                        help="only these organisations (0-based rows of the table)")
    args = parser.parse_args(argv)
    organisations = ([ORGANISATIONS[i] for i in args.only] if args.only else ORGANISATIONS)
    for entries in args.entries:
        rows = study(entries, args.seeds, organisations)
        print(markdown(rows, args.seeds))
        print(f"\n({entries} entries: {sum(r['seconds'] for r in rows):.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
