"""Write sim/data/demo.pcap: a small, deterministic capture for ``inic replay`` and ``inic demo``.

Run from the repository root: ``python -m sim.data.make_demo_pcap``. The frames: an HTTP exchange
over IPv4 and an HTTPS-like one over IPv6 (handshake, data, acknowledgements, close), a TCP flow
in VLAN 100, ARP, DNS-like queries and answers, ICMP and ICMPv6 echo, and a handful of bad frames
(bad IP and TCP checksums, truncated, runt, IPv4 fragments). Flows are interleaved, each in its own
order.
"""

import random
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP
from scapy.packet import Raw

from sim.frames import ARP_TYPE, C_TAG, IPV4, IPV6, MAC_A, MAC_B, ethernet, pad
from sim.pcap import write_capture

OUTPUT = Path(__file__).with_name("demo.pcap")
SEED = 2024
MSS = 1460


def tcp_session(ip_header, client, server, request, response_bytes, tags=()):
    """Frames of one TCP connection: handshake, request, response in MSS segments (ACK every second
    segment), close. ``ip_header(src, dst)`` builds the IP layer; ``client``/``server`` are
    ``(address, port, mac)``."""
    rng = random.Random(f"{client}{server}")
    frames = []
    seq = {client: rng.getrandbits(32), server: rng.getrandbits(32)}

    def send(sender, receiver, flags, payload=b""):
        ip_version = IPV6 if ":" in sender[0] else IPV4
        segment = TCP(sport=sender[1], dport=receiver[1], flags=flags, seq=seq[sender],
                      ack=seq[receiver] if "A" in flags else 0, window=64240) / Raw(payload)
        frame = ethernet(ip_version, tags, src=sender[2], dst=receiver[2]) / ip_header(
            sender[0], receiver[0]) / segment
        frames.append(pad(bytes(frame)))
        seq[sender] = (seq[sender] + len(payload) + ("S" in flags) + ("F" in flags)) & 0xFFFF_FFFF

    send(client, server, "S")
    send(server, client, "SA")
    send(client, server, "A")
    send(client, server, "PA", request)
    send(server, client, "A")
    response = rng.randbytes(response_bytes)
    for number, start in enumerate(range(0, len(response), MSS), start=1):
        last = start + MSS >= len(response)
        send(server, client, "PA" if last else "A", response[start:start + MSS])
        if number % 2 == 0 or last:
            send(client, server, "A")
    send(client, server, "FA")
    send(server, client, "FA")
    send(client, server, "A")
    return frames


def ipv4_header(src, dst):
    return IP(src=src, dst=dst, ttl=64, flags="DF")


def ipv6_header(src, dst):
    return IPv6(src=src, dst=dst, hlim=64)


def dns_exchanges(count, rng):
    """DNS-like UDP queries and answers, over IPv4 and IPv6 alternately."""
    frames = []
    for number in range(count):
        name = f"host{number}.example.net"
        query_id = rng.getrandbits(16)
        client_port = rng.randrange(1024, 65536)
        if number % 2:
            ip_version, client, server, header = IPV6, "2001:db8::53:a", "2001:db8::53", \
                ipv6_header
        else:
            ip_version, client, server, header = IPV4, "192.0.2.10", "192.0.2.53", ipv4_header
        query = DNS(id=query_id, rd=1, qd=DNSQR(qname=name))
        answer = DNS(id=query_id, qr=1, rd=1, ra=1, qd=DNSQR(qname=name),
                     an=DNSRR(rrname=name, ttl=300, rdata=f"203.0.113.{number + 1}"))
        frames.append(pad(bytes(ethernet(ip_version) / header(client, server)
                                / UDP(sport=client_port, dport=53) / query)))
        frames.append(pad(bytes(ethernet(ip_version, src=MAC_B, dst=MAC_A) / header(server, client)
                                / UDP(sport=53, dport=client_port) / answer)))
    return frames


def arp_and_icmp():
    """ARP for the server, then ICMP and ICMPv6 echo request/reply pairs."""
    frames = [
        pad(bytes(ethernet(ARP_TYPE, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=MAC_A, psrc="192.0.2.10", hwdst="00:00:00:00:00:00", pdst="192.0.2.1"))),
        pad(bytes(ethernet(ARP_TYPE, src=MAC_B, dst=MAC_A) / ARP(
            op=2, hwsrc=MAC_B, psrc="192.0.2.1", hwdst=MAC_A, pdst="192.0.2.10"))),
    ]
    for seq in range(3):
        frames.append(pad(bytes(ethernet(IPV4) / ipv4_header("192.0.2.10", "198.51.100.20")
                                / ICMP(type=8, id=7, seq=seq) / Raw(b"inic" * 14))))
        frames.append(pad(bytes(ethernet(IPV4, src=MAC_B, dst=MAC_A)
                                / ipv4_header("198.51.100.20", "192.0.2.10")
                                / ICMP(type=0, id=7, seq=seq) / Raw(b"inic" * 14))))
        frames.append(bytes(ethernet(IPV6) / ipv6_header("2001:db8::a", "2001:db8:0:1::b")
                            / ICMPv6EchoRequest(id=7, seq=seq, data=b"inic" * 14)))
        frames.append(bytes(ethernet(IPV6, src=MAC_B, dst=MAC_A)
                            / ipv6_header("2001:db8:0:1::b", "2001:db8::a")
                            / ICMPv6EchoReply(id=7, seq=seq, data=b"inic" * 14)))
    return frames


def bad_frames(good_tcp):
    """Bad IP checksum, bad TCP checksum, truncated, runt, and a fragmented UDP datagram."""
    bad_ip = bytearray(good_tcp)
    bad_ip[24] ^= 0x01
    bad_tcp = bytearray(good_tcp)
    bad_tcp[50] ^= 0x01
    datagram = IP(src="192.0.2.10", dst="192.0.2.53", id=4242) / UDP(sport=5000, dport=5001) / Raw(
        bytes(range(256)) * 8)
    fragments = [pad(bytes(ethernet(IPV4) / fragment))
                 for fragment in datagram.fragment(fragsize=1000)]
    return [bytes(bad_ip), bytes(bad_tcp), good_tcp[:40], good_tcp[:10], *fragments]


def demo_frames():
    """All frames of the demo capture, flows interleaved in a fixed pseudo-random order."""
    rng = random.Random(SEED)
    http4 = tcp_session(ipv4_header, ("192.0.2.10", 50312, MAC_A), ("198.51.100.20", 80, MAC_B),
                        b"GET /index.html HTTP/1.1\r\nHost: demo.example\r\n\r\n", 60_000)
    https6 = tcp_session(ipv6_header, ("2001:db8::a", 50313, MAC_A),
                         ("2001:db8:0:1::b", 443, MAC_B), rng.randbytes(517), 45_000)
    tagged = tcp_session(ipv4_header, ("10.100.0.1", 40000, MAC_A), ("10.100.0.2", 5201, MAC_B),
                         b"iperf", 8_000, tags=[(C_TAG, 5 << 13 | 100)])
    flows = [http4, https6, tagged, dns_exchanges(12, rng), arp_and_icmp(),
             bad_frames(http4[3])]
    frames = []
    while any(flows):
        flow = rng.choice([flow for flow in flows if flow])
        frames.append(flow.pop(0))
    return frames


def main():
    frames = demo_frames()
    write_capture(OUTPUT, frames)
    print(f"wrote {len(frames)} frames to {OUTPUT}")


if __name__ == "__main__":
    main()
