"""JSON rows from packed RxStatus words, and the replay summary."""

import ipaddress

from amaranth.lib import data

from hw.layouts import HashType, L3Type, L4Type, RxStatus, pack, unpack
from sim.frames import directed_frames, random_mix
from sim.reference.rx_status import ERROR_NAMES, JSON_KEYS, expected_errors, expected_status
from sim.status_json import format_summary, status_to_json, summarize

TCP_STATUS = {
    "length": 74, "l2_valid": 1, "vlan_count": 1, "vlan0": 100, "ethertype": 0x0800,
    "l3": L3Type.IPV4, "l4": L4Type.TCP, "ip_proto": 6, "addr_valid": 1, "l4_valid": 1,
    "ip_csum_valid": 1, "ip_csum_ok": 1, "l4_csum_valid": 1, "l4_csum_ok": 1, "candidate": 1,
    "hash_type": HashType.IP_4TUPLE, "hash": 0x0051CC17, "src": 0xC0000201, "dst": 0xC6336414,
    "sport": 49152, "dport": 80, "seq": 1, "ack": 2, "window": 3, "tcp_flags": 0x18,
    "payload_len": 16, "l3_offset": 18, "l4_offset": 38, "payload_offset": 58,
}


def status(**fields):
    return unpack(RxStatus, pack(RxStatus, fields))


def test_tcp_row():
    assert status_to_json(status(**TCP_STATUS), 7) == {
        "frame": 7, "len": 74, "vlan": [100], "ethertype": 0x0800, "l3": "ipv4", "l4": "tcp",
        "ip_csum_ok": True, "l4_csum_ok": True, "fragment": False, "ip_options": False,
        "malformed": False, "src": "192.0.2.1", "dst": "198.51.100.20", "sport": 49152,
        "dport": 80, "tcp_flags": "PA", "seq": 1, "ack": 2, "window": 3, "payload_len": 16,
        "hash": "0051cc17", "candidate": True,
    }


def test_keys_in_order_and_integer_input():
    bits = pack(RxStatus, TCP_STATUS)
    assert list(status_to_json(bits, 0)) == list(JSON_KEYS)
    assert status_to_json(bits, 0) == status_to_json(unpack(RxStatus, bits), 0)


def test_valid_bits_make_nulls():
    """Fields that are set but not marked valid read as null."""
    row = status_to_json(status(**TCP_STATUS | {"l2_valid": 0, "addr_valid": 0, "l4_valid": 0,
                                                "ip_csum_valid": 0, "l4_csum_valid": 0}), 0)
    for key in ("vlan", "ethertype", "l4", "ip_csum_ok", "l4_csum_ok", "fragment", "ip_options",
                "src", "dst", "sport", "dport", "tcp_flags", "seq", "ack", "window",
                "payload_len"):
        assert row[key] is None, key
    assert row["l3"] == "ipv4" and row["hash"] == "0051cc17"


def test_udp_has_no_tcp_fields_and_bad_l4_len_no_payload_len():
    row = status_to_json(status(**TCP_STATUS | {"l4": L4Type.UDP}), 0)
    assert (row["sport"], row["seq"], row["ack"], row["window"], row["tcp_flags"]) == (
        49152, None, None, None, None)
    row = status_to_json(status(**TCP_STATUS | {"errors": {"bad_l4_len": 1}, "malformed": 1}), 0)
    assert row["payload_len"] is None and row["sport"] == 49152 and row["malformed"] is True


def test_ipv6_addresses_flags_vlans_and_hash_text():
    src, dst = ipaddress.IPv6Address("2001:db8::a"), ipaddress.IPv6Address("fe80::1:0:0:2")
    row = status_to_json(status(**TCP_STATUS | {
        "l3": L3Type.IPV6, "src": int(src), "dst": int(dst), "tcp_flags": 0xFF, "vlan_count": 2,
        "vlan1": 4095, "hash": 0xA}), 0)
    assert (row["src"], row["dst"]) == ("2001:db8::a", "fe80::1:0:0:2")
    assert row["tcp_flags"] == "FSRPAUEC" and row["vlan"] == [100, 4095]
    assert row["hash"] == "0000000a"
    assert status_to_json(status(**TCP_STATUS | {"tcp_flags": 0}), 0)["tcp_flags"] == ""
    assert status_to_json(status(**TCP_STATUS | {"vlan_count": 0}), 0)["vlan"] == []


def test_out_of_range_l4_is_shown():
    offset = data.Layout.cast(RxStatus)["l4"].offset
    bits = pack(RxStatus, TCP_STATUS) | 0b111 << offset
    assert status_to_json(bits, 0)["l4"] == "unknown(7)"


def status_fields_for(frame):
    """RxStatus fields a correct sequencer gives for ``frame``, from the reference row and errors
    (the valid bits, offsets and hash type are what the JSON needs, nothing more)."""
    row = expected_status(frame)
    errors = expected_errors(frame)
    fields = {
        "length": row["len"], "l3": L3Type[row["l3"].upper()],
        "hash": int(row["hash"], 16), "malformed": int(row["malformed"]),
        "candidate": int(row["candidate"]),
        "errors": {name: name in errors for name in ERROR_NAMES},
    }
    if row["vlan"] is not None:
        fields.update(l2_valid=1, vlan_count=len(row["vlan"]), ethertype=row["ethertype"])
        fields.update({f"vlan{index}": vid for index, vid in enumerate(row["vlan"])})
    for key in ("ip_csum_ok", "l4_csum_ok"):
        if row[key] is not None:
            fields.update({key.replace("_ok", "_valid"): 1, key: int(row[key])})
    if row["src"] is not None:
        fields.update(addr_valid=1, l4=L4Type[row["l4"].upper()], fragment=int(row["fragment"]),
                      ip_options=int(row["ip_options"]),
                      src=int(ipaddress.ip_address(row["src"])),
                      dst=int(ipaddress.ip_address(row["dst"])))
    if row["sport"] is not None:
        fields.update(l4_valid=1, sport=row["sport"], dport=row["dport"],
                      payload_len=row["payload_len"] or 0)
    if row["seq"] is not None:
        fields.update(seq=row["seq"], ack=row["ack"], window=row["window"],
                      tcp_flags=sum(1 << "FSRPAUEC".index(letter) for letter in row["tcp_flags"]))
    return fields


def test_json_of_a_correct_status_word_equals_the_reference_row():
    """For every directed frame and a random mix, the nulls of status_to_json (from the valid bits)
    line up with the reference model's."""
    for index, frame in enumerate(directed_frames() + random_mix(100, seed=5)):
        word = pack(RxStatus, status_fields_for(frame))
        assert status_to_json(word, index) == expected_status(frame, index)


def test_summary():
    rows = [expected_status(frame, index) for index, frame in enumerate(directed_frames())]
    summary = summarize(rows)
    assert summary["frames"] == len(rows)
    assert sum(summary["l3"].values()) == sum(summary["l4"].values()) == len(rows)
    assert summary["l4"]["none"] == sum(row["l4"] is None for row in rows)
    assert summary["candidates"] == sum(row["candidate"] for row in rows) > 0
    assert summary["ip_csum_bad"] == sum(row["ip_csum_ok"] is False for row in rows) > 0
    assert summary["l4_csum_bad"] == sum(row["l4_csum_ok"] is False for row in rows) > 0
    assert summary["malformed"] == sum(row["malformed"] for row in rows) > 0
    assert summary["fragments"] == sum(row["fragment"] is True for row in rows) > 0
    text = format_summary(summary)
    assert text.splitlines()[0].split() == ["frames", str(len(rows))]
    assert f"ipv4 {summary['l3']['ipv4']}" in text and "l4 csum bad" in text


def test_empty_summary():
    summary = summarize([])
    assert summary["frames"] == 0 and summary["l4"] == dict.fromkeys(summary["l4"], 0)
    assert "frames" in format_summary(summary)
