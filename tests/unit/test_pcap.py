"""Capture reading and writing: round trips, synthetic Ethernet for raw IP and Linux cooked
captures, one-line errors, and the committed demo capture."""

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.utils import wrpcapng

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
    write_capture(tmp_path / "cut.pcap", [IPV4_PACKET])
    (tmp_path / "cut.pcap").write_bytes((tmp_path / "cut.pcap").read_bytes()[:-5])
    for name, message in [
        ("missing.pcap", "no such file"),
        ("", "not a file"),
        ("empty.pcap", "empty file"),
        ("notes.txt", "not a pcap or pcapng capture"),
        ("wifi.pcap", "unsupported link type 105"),
        ("short_sll.pcap", "record 1 is shorter than its 16-byte Linux cooked header"),
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
