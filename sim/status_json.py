"""The JSON form of the receive status word (docs/status_word.md) and the replay summary.

:func:`status_to_json` turns the gateware's :class:`hw.layouts.RxStatus` into the row that
:func:`sim.reference.rx_status.expected_status` computes from the frame, so the two compare with
``==``.
"""

import ipaddress

from hw.layouts import L3Type, L4Type, RxStatus, unpack

from .reference.rx_status import JSON_KEYS, TCP_FLAG_LETTERS

__all__ = ["status_to_json", "summarize", "format_summary"]

L3_NAMES = ("ipv4", "ipv6", "arp", "other")
L4_NAMES = ("tcp", "udp", "icmp", "other", "none")


def status_to_json(status, index: int) -> dict:
    """The JSON row of one status word (an ``RxStatus`` view or its integer), frame ``index``.

    Fields the ``*_valid`` bits mark as not applying are ``None``; ``synthetic_l2`` is the caller's.
    """
    if isinstance(status, int):
        status = unpack(RxStatus, status)
    row = dict.fromkeys(JSON_KEYS)
    l3 = _enum_field(status, "l3", L3Type)
    row.update(
        frame=index, len=status.length, l3=l3, malformed=bool(status.malformed),
        hash=f"{status.hash:08x}", candidate=bool(status.candidate),
    )
    if status.l2_valid:
        row["vlan"] = [status.vlan0, status.vlan1][:status.vlan_count]
        row["ethertype"] = status.ethertype
    if status.ip_csum_valid:
        row["ip_csum_ok"] = bool(status.ip_csum_ok)
    if status.l4_csum_valid:
        row["l4_csum_ok"] = bool(status.l4_csum_ok)
    if status.addr_valid:
        l4 = _enum_field(status, "l4", L4Type)
        row.update(
            l4=None if l4 == "none" else l4, fragment=bool(status.fragment),
            ip_options=bool(status.ip_options),
            src=_address_text(status.src, l3), dst=_address_text(status.dst, l3),
        )
        if status.l4_valid:
            row.update(sport=status.sport, dport=status.dport)
            if l4 == "tcp":
                row.update(
                    seq=status.seq, ack=status.ack, window=status.window,
                    tcp_flags="".join(letter for bit, letter in enumerate(TCP_FLAG_LETTERS)
                                      if status.tcp_flags >> bit & 1),
                )
            if not status.errors.bad_l4_len:
                row["payload_len"] = status.payload_len
    return row


def _enum_field(status, name, enum_type):
    """Lower-case member name of an enum field, or ``unknown(N)`` for a value outside the enum."""
    field = status.shape()[name]
    raw = status.as_bits() >> field.offset & ((1 << field.width) - 1)
    try:
        return enum_type(raw).name.lower()
    except ValueError:
        return f"unknown({raw})"


def _address_text(value, l3):
    """IPv6 text for an IPv6 frame, else dotted IPv4 text from the low 32 bits."""
    if l3 == "ipv6":
        return str(ipaddress.IPv6Address(value))
    return str(ipaddress.IPv4Address(value & 0xFFFF_FFFF))


def summarize(rows: list[dict]) -> dict:
    """Counts over status rows: frames by l3 and by l4 (``none`` for null), candidates, checksum
    failures, malformed frames and fragments."""
    by_l3 = dict.fromkeys(L3_NAMES, 0)
    by_l4 = dict.fromkeys(L4_NAMES, 0)
    for row in rows:
        by_l3[row["l3"]] = by_l3.get(row["l3"], 0) + 1
        l4 = row["l4"] or "none"
        by_l4[l4] = by_l4.get(l4, 0) + 1
    return {
        "frames": len(rows),
        "l3": by_l3,
        "l4": by_l4,
        "candidates": sum(row["candidate"] for row in rows),
        "ip_csum_bad": sum(row["ip_csum_ok"] is False for row in rows),
        "l4_csum_bad": sum(row["l4_csum_ok"] is False for row in rows),
        "malformed": sum(row["malformed"] for row in rows),
        "fragments": sum(bool(row["fragment"]) for row in rows),
    }


def format_summary(summary: dict) -> str:
    """The summary of :func:`summarize` as a few aligned lines for the terminal; with the keys
    ``inic replay --offload`` adds (``paths``, ``handouts``, ``flushes``), three lines more."""
    def counts(by_name):
        return "  ".join(f"{name} {count}" for name, count in by_name.items())
    lines = [
        ("frames", str(summary["frames"])),
        ("by l3", counts(summary["l3"])),
        ("by l4", counts(summary["l4"])),
        ("candidates", str(summary["candidates"])),
        ("ip csum bad", str(summary["ip_csum_bad"])),
        ("l4 csum bad", str(summary["l4_csum_bad"])),
        ("malformed", str(summary["malformed"])),
        ("fragments", str(summary["fragments"])),
    ]
    if "paths" in summary:      # inic replay --offload (sim/offload_replay.py)
        lines += [
            ("by path", counts(summary["paths"])),
            ("handouts", "  ".join(f"{tuple_text} conn {outcome}" if isinstance(outcome, int)
                                   else f"{tuple_text} {outcome}"
                                   for tuple_text, outcome in summary["handouts"].items())),
            ("flushes", counts(summary["flushes"]) or "none"),
        ]
    return "\n".join(f"{label:<12} {value}" for label, value in lines)
