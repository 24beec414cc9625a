"""Capture reading and writing: round trips, synthetic Ethernet for raw IP, loopback and Linux
cooked captures (cross-checked with scapy's own decoding), one-line errors, and the committed demo
capture."""

import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether, Loopback, LoopbackOpenBSD
from scapy.utils import PcapWriter, rdpcap, wrpcapng

from sim.data.make_demo_pcap import OUTPUT as DEMO_PCAP
from sim.data.make_demo_pcap import demo_frames
from sim.frames import directed_frames, random_mix
from sim.pcap import (
    SYNTHETIC_DST_MAC,
    SYNTHETIC_SRC_MAC,
    CaptureError,
    read_capture,
    write_capture,
)

IPV4_PACKET = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1, dport=2))
IPV6_PACKET = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=2))


def synthetic(ethertype, payload):
    return SYNTHETIC_DST_MAC + SYNTHETIC_SRC_MAC + ethertype.to_bytes(2, "big") + payload


def write_linktype(path, linktype, records):
    write_capture(path, records, linktype)
    return path


def test_round_trip(tmp_path):
    frames = directed_frames()
    write_capture(tmp_path / "directed.pcap", frames)
    assert read_capture(tmp_path / "directed.pcap") == (frames, False)


def test_write_is_deterministic(tmp_path):
    frames = random_mix(30, seed=1)
    write_capture(tmp_path / "a.pcap", frames)
    write_capture(tmp_path / "b.pcap", frames)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


def test_empty_capture_round_trip(tmp_path):
    write_capture(tmp_path / "none.pcap", [])
    assert read_capture(tmp_path / "none.pcap") == ([], False)


def test_pcapng(tmp_path):
    frames = random_mix(20, seed=2)
    wrpcapng(str(tmp_path / "mix.pcapng"), [Ether(frame) for frame in frames])
    assert read_capture(tmp_path / "mix.pcapng") == (frames, False)


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip_gets_synthetic_ethernet(tmp_path, linktype):
    path = write_linktype(tmp_path / "raw.pcap", linktype, [IPV4_PACKET, IPV6_PACKET])
    assert read_capture(path) == ([synthetic(0x0800, IPV4_PACKET),
                                   synthetic(0x86DD, IPV6_PACKET)], True)


def write_with_scapy(path, linktype, packets, endianness=""):
    """Write ``packets`` (scapy packets or bytes) with scapy's own writer."""
    with PcapWriter(str(path), linktype=linktype, endianness=endianness) as writer:
        for packet in packets:
            writer.write(packet)
    return path


def assert_ip_layers_match_scapy(path, frames, link_header_bytes):
    """Each synthetic frame, decoded by scapy, carries an IP layer (IPv4 or IPv6 as its
    EtherType says) equal to the bytes after the link header of the record scapy reads."""
    records = rdpcap(str(path))
    assert len(records) == len(frames)
    for record, frame in zip(records, frames):
        ether = Ether(frame)
        ip = ether[IPv6] if ether.type == 0x86DD else ether[IP]
        assert bytes(ip) == bytes(record)[link_header_bytes:]
        assert ip.version == (6 if ether.type == 0x86DD else 4)


IPV4_UDP = bytes(IP(src="198.51.100.7", dst="203.0.113.9") / UDP(sport=53, dport=5353) / b"dns")


@pytest.mark.parametrize("linktype, packets, ethertype", [
    (228, [IPV4_PACKET, IPV4_UDP], 0x0800),
    (229, [IPV6_PACKET], 0x86DD),
], ids=["ipv4", "ipv6"])
def test_raw_ipv4_ipv6_link_types(tmp_path, linktype, packets, ethertype):
    path = write_with_scapy(tmp_path / "raw.pcap", linktype, packets)
    frames, synthetic_l2 = read_capture(path)
    assert (frames, synthetic_l2) == ([synthetic(ethertype, p) for p in packets], True)
    assert_ip_layers_match_scapy(path, frames, 0)


@pytest.mark.parametrize("endianness", ["<", ">"], ids=["little-endian", "big-endian"])
def test_bsd_loopback(tmp_path, endianness):
    """DLT_NULL: the address family in host byte order (scapy writes this host's, little-endian),
    whatever the file header's order; AF_INET6 as each BSD numbers it."""
    packets = [Loopback(type=2) / IP(IPV4_PACKET), Loopback(type=24) / IPv6(IPV6_PACKET),
               Loopback(type=28) / IPv6(IPV6_PACKET), Loopback(type=30) / IPv6(IPV6_PACKET)]
    path = write_with_scapy(tmp_path / "null.pcap", 0, packets, endianness)
    frames, synthetic_l2 = read_capture(path)
    assert synthetic_l2
    assert frames == [synthetic(0x0800, IPV4_PACKET)] + [synthetic(0x86DD, IPV6_PACKET)] * 3
    assert_ip_layers_match_scapy(path, frames, 4)


def test_bsd_loopback_from_a_big_endian_host(tmp_path):
    """A DLT_NULL record captured on a big-endian host: its family is read in that order."""
    records = [struct.pack(">I", 2) + IPV4_PACKET, struct.pack(">I", 30) + IPV6_PACKET,
               struct.pack("<I", 2) + IPV4_UDP]
    path = write_linktype(tmp_path / "null_be.pcap", 0, records)
    assert read_capture(path) == ([synthetic(0x0800, IPV4_PACKET), synthetic(0x86DD, IPV6_PACKET),
                                   synthetic(0x0800, IPV4_UDP)], True)


def test_openbsd_loopback(tmp_path):
    """DLT_LOOP: the address family in network byte order."""
    packets = [LoopbackOpenBSD(type=2) / IP(IPV4_PACKET),
               LoopbackOpenBSD(type=24) / IPv6(IPV6_PACKET)]
    path = write_with_scapy(tmp_path / "loop.pcap", 108, packets)
    assert bytes(packets[0])[:4] == b"\x00\x00\x00\x02"
    frames, synthetic_l2 = read_capture(path)
    assert (frames, synthetic_l2) == ([synthetic(0x0800, IPV4_PACKET),
                                       synthetic(0x86DD, IPV6_PACKET)], True)
    assert_ip_layers_match_scapy(path, frames, 4)


def test_linux_cooked_sll(tmp_path):
    records = [bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=0x0800)) + IPV4_PACKET,
               bytes(CookedLinux(proto=0x86DD)) + IPV6_PACKET,
               bytes(CookedLinux(proto=0x0806)) + bytes(28)]
    path = write_linktype(tmp_path / "sll.pcap", 113, records)
    assert read_capture(path) == ([synthetic(0x0800, IPV4_PACKET), synthetic(0x86DD, IPV6_PACKET),
                                   synthetic(0x0806, bytes(28))], True)


def test_linux_cooked_sll2(tmp_path):
    records = [bytes(CookedLinuxV2(proto=0x0800, ifindex=3)) + IPV4_PACKET,
               bytes(CookedLinuxV2(proto=0x86DD)) + IPV6_PACKET]
    path = write_linktype(tmp_path / "sll2.pcap", 276, records)
    assert read_capture(path) == ([synthetic(0x0800, IPV4_PACKET),
                                   synthetic(0x86DD, IPV6_PACKET)], True)


def test_errors_are_one_line(tmp_path):
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a capture at all\n")
    write_linktype(tmp_path / "wifi.pcap", 105, [b"\x00" * 30])
    write_linktype(tmp_path / "short_sll.pcap", 113, [b"\x00" * 10])
    write_linktype(tmp_path / "osi_null.pcap", 0,
                   [struct.pack("<I", 2) + IPV4_PACKET, struct.pack("<I", 7) + bytes(20)])
    # Little-endian in a DLT_LOOP capture, whose family is big-endian: 0x02000000, not 2.
    write_linktype(tmp_path / "le_loop.pcap", 108, [struct.pack("<I", 2) + IPV4_PACKET])
    write_linktype(tmp_path / "short_loop.pcap", 108, [b"\x00\x00"])
    write_capture(tmp_path / "cut.pcap", [IPV4_PACKET])
    (tmp_path / "cut.pcap").write_bytes((tmp_path / "cut.pcap").read_bytes()[:-5])
    for name, message in [
        ("missing.pcap", "no such file"),
        ("", "not a file"),
        ("empty.pcap", "empty file"),
        ("notes.txt", "not a pcap or pcapng capture"),
        ("wifi.pcap", "unsupported link type 105"),
        ("short_sll.pcap", "record 1 is shorter than its 16-byte Linux cooked header"),
        ("osi_null.pcap", "record 2 has loopback address family 7 "),
        ("le_loop.pcap", "record 1 has loopback address family 33554432 "),
        ("short_loop.pcap", "record 1 is shorter than its 4-byte loopback header"),
        ("cut.pcap", "record 1 is cut short"),
    ]:
        with pytest.raises(CaptureError) as error:
            read_capture(tmp_path / name)
        text = str(error.value)
        assert message in text and "\n" not in text and str(tmp_path) in text


def test_demo_capture_is_committed_and_current():
    frames, synthetic_l2 = read_capture(DEMO_PCAP)
    assert not synthetic_l2
    assert 150 <= len(frames) <= 250
    assert frames == demo_frames()
