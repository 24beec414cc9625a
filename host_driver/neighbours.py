"""Neighbours of a host on one Ethernet link: ARP for IPv4, neighbour discovery for IPv6.

`Neighbours` is the link-layer half of :class:`host_driver.tcp.TcpStack`: it answers ARP requests
and Neighbour Solicitations for the host's addresses, learns neighbours' MACs from them and from
replies, and resolves the MAC of a neighbour the host wants to send to. A frame for a neighbour
whose MAC is unknown waits in that neighbour's queue (at most ``queue_len`` frames, the oldest
dropped first) while requests go out every ``timeout`` seconds, ``tries`` times in all; then the
waiting frames are dropped. Like the stack it has no threads and reads time only from ``clock()``.

Simplifications: entries never age (no NUD states, no probes of our own: an entry is replaced when
new information about the neighbour arrives), no proxy ARP, no router discovery, no DAD of our own
addresses, no MLD reports (a switch that snoops MLD would not forward our solicited-node multicast).
Received NS/NA whose hop limit is not 255 are dropped (RFC 4861 §7.1.1), as are those with a bad
checksum, a nonzero code, a short body or an option of length zero.
"""

# Ref: RFC 826 (ARP, including its "merge" rule); RFC 4861 §4.3-4.4 (NS/NA formats), §7.1
# (validation), §7.2 (address resolution); RFC 4862 §5.4.3 (answering a DAD probe); RFC 4291
# §2.5.6, §2.7.1 (link-local addresses, solicited-node multicast); RFC 2464 §4, §7 (EUI-64 from a
# MAC, IPv6 multicast over Ethernet).

import dataclasses
import ipaddress
import struct
from collections import deque

from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from host_driver.checksum import csum_ipv6_magic, csum_partial

__all__ = ["Neighbours", "link_local_address", "solicited_node_address", "multicast_mac",
           "BROADCAST_MAC", "ETH_MIN_FRAME"]

ETH_MIN_FRAME = 60  # IEEE 802.3 minimum frame without FCS: shorter frames are zero-padded
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ALL_NODES = "ff02::1"
UNSPECIFIED = "::"
ND_HOP_LIMIT = 255  # RFC 4861 §7.1.1: anything else did not come from this link
ICMPV6 = 58
ND_SOLICIT, ND_ADVERT = 135, 136
OPT_SOURCE_LL, OPT_TARGET_LL = 1, 2


def link_local_address(mac: str) -> str:
    """fe80:: with the modified EUI-64 interface identifier of ``mac`` (RFC 4291 §2.5.1)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:6]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def solicited_node_address(address: str) -> str:
    """ff02::1:ffXX:XXXX, the low 24 bits of ``address`` (RFC 4291 §2.7.1)."""
    low = ipaddress.IPv6Address(address).packed[13:]
    return str(ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low))


def multicast_mac(address: str) -> str:
    """33:33 and the low 32 bits of the IPv6 multicast ``address`` (RFC 2464 §7)."""
    return ":".join(f"{b:02x}" for b in b"\x33\x33" + ipaddress.IPv6Address(address).packed[12:])


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@dataclasses.dataclass
class _Pending:
    """A resolution under way: the frames waiting for the MAC, requests sent, next retry."""

    frames: deque
    tries: int
    deadline: float


class Neighbours:
    """The neighbour cache and the ARP / NDP protocol machines of one host.

    Parameters
    ----------
    mac : str
        The host's MAC, lower case.
    ipv4 : str or None
        The host's IPv4 address (None: no ARP).
    ipv6 : sequence of str
        The host's IPv6 unicast addresses, normalised, link-local first (empty: no NDP).
    send_frame, clock : callables
        As for the stack.
    count : Callable[[str, int], None]
        Adds to one of the stack's `TcpStats` counters.
    timeout : float
        Seconds between two requests for the same neighbour.
    tries : int
        Requests sent before the waiting frames are dropped.
    queue_len : int
        Frames that may wait for one neighbour.
    on_resolved, on_failed : Callable[[str, ...], None]
        Called with the address (and the MAC) when a resolution ends.

    Members
    -------
    cache : dict[str, str]
        Known neighbours, address to MAC (read it; write it only in tests).
    """

    def __init__(self, mac, ipv4, ipv6, send_frame, clock, count, *, timeout, tries, queue_len,
                 on_resolved, on_failed):
        self._mac = mac
        self._ipv4 = ipv4
        self._ipv6 = tuple(ipv6)
        self._send_frame = send_frame
        self._clock = clock
        self._count = count
        self._timeout, self._tries, self._queue_len = timeout, tries, queue_len
        self._on_resolved, self._on_failed = on_resolved, on_failed
        self.cache: dict[str, str] = {}
        self._pending: dict[str, _Pending] = {}
        self._solicited = {ipaddress.IPv6Address(solicited_node_address(a)).packed: a
                           for a in self._ipv6}

    @property
    def link_macs(self) -> frozenset[str]:
        """The destination MACs the host takes frames for: its own, broadcast, and the IPv6
        multicast MACs of all-nodes and of its solicited-node addresses."""
        macs = {self._mac}
        if self._ipv4 is not None:
            macs.add(BROADCAST_MAC)
        if self._ipv6:
            macs.add(multicast_mac(ALL_NODES))
            macs.update(multicast_mac(solicited_node_address(a)) for a in self._ipv6)
        return frozenset(macs)

    def is_solicited_node(self, dst: bytes) -> bool:
        """``dst`` (16 bytes) is the solicited-node multicast address of one of ours."""
        return dst in self._solicited

    # -- Sending through the cache ---------------------------------------------------------

    def send(self, address: str, frame: bytes) -> None:
        """Send ``frame`` (its destination MAC still to fill) to the neighbour at ``address``,
        resolving its MAC first if it is unknown."""
        mac = self.cache.get(address)
        if mac is not None:
            self._send_frame(_mac_bytes(mac) + frame[6:])
            return
        pending = self._pending.get(address)
        if pending is None:
            pending = self._pending[address] = _Pending(deque(), 0, 0.0)
            self._request(address, pending)
        if len(pending.frames) == self._queue_len:
            pending.frames.popleft()
            self._count("neighbour_drops", 1)
        pending.frames.append(frame)

    def learn(self, address: str, mac: str, create: bool = True) -> None:
        """Record that ``address`` is at ``mac``; with ``create`` False only update an entry that
        exists or a resolution under way. Frames waiting for ``address`` go out."""
        if not create and address not in self.cache and address not in self._pending:
            return
        self.cache[address] = mac
        pending = self._pending.pop(address, None)
        if pending is not None:
            for frame in pending.frames:
                self._send_frame(_mac_bytes(mac) + frame[6:])
            self._on_resolved(address, mac)

    def poll(self, now: float) -> None:
        """Retry the resolutions whose timer ran out; give up on those that tried enough."""
        for address, pending in list(self._pending.items()):
            if now < pending.deadline:
                continue
            if pending.tries < self._tries:
                self._request(address, pending)
                continue
            del self._pending[address]
            self._count("neighbour_drops", len(pending.frames))
            self._count("resolution_failures", 1)
            self._on_failed(address)

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def _request(self, address: str, pending: _Pending) -> None:
        """Send one ARP request (broadcast) or Neighbour Solicitation (solicited-node multicast,
        with our source link-layer address option)."""
        pending.tries += 1
        pending.deadline = self._clock() + self._timeout
        self._count("neighbour_requests_sent", 1)
        if ":" not in address:
            packet = Ether(src=self._mac, dst=BROADCAST_MAC) / ARP(
                op=1, hwsrc=self._mac, psrc=self._ipv4, hwdst="00:00:00:00:00:00", pdst=address)
        else:
            group = solicited_node_address(address)
            packet = (Ether(src=self._mac, dst=multicast_mac(group))
                      / IPv6(src=self._source_for(address), dst=group, hlim=ND_HOP_LIMIT)
                      / ICMPv6ND_NS(tgt=address) / ICMPv6NDOptSrcLLAddr(lladdr=self._mac))
        self._emit(packet)

    def _source_for(self, address: str) -> str:
        """Our address to send from to ``address``: link-local to link-local, else the global."""
        if ipaddress.IPv6Address(address).is_link_local or len(self._ipv6) == 1:
            return self._ipv6[0]
        return self._ipv6[1]

    def _emit(self, packet) -> None:
        self._send_frame(bytes(packet).ljust(ETH_MIN_FRAME, b"\0"))

    # -- Receiving -------------------------------------------------------------------------

    def arp_arrives(self, src_mac: str, body: bytes) -> bool:
        """Handle an ARP packet (the bytes after the EtherType); False if it was not for us."""
        # Ref: RFC 826, "Packet Reception": Ethernet/IPv4 only, merge, then answer a request.
        if self._ipv4 is None or len(body) < 28:
            return False
        htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", body[:8])
        if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) or op not in (1, 2):
            return False
        sha, spa, tpa = body[8:14], body[14:18], body[24:28]
        sender = str(ipaddress.IPv4Address(spa))
        sender_mac = _mac_text(sha)
        for_us = tpa == ipaddress.IPv4Address(self._ipv4).packed
        valid_sender = sender != "0.0.0.0" and sha[0] & 1 == 0 and sender != self._ipv4
        if valid_sender:
            self.learn(sender, sender_mac, create=for_us)
        if not for_us:
            return False
        if op == 1:
            reply = Ether(src=self._mac, dst=sender_mac) / ARP(
                op=2, hwsrc=self._mac, psrc=self._ipv4, hwdst=sender_mac, pdst=sender)
            self._emit(reply)
            self._count("arp_replies_sent", 1)
        return True

    def ndisc_arrives(self, src_mac: str, src: bytes, dst: bytes, hop_limit: int,
                      body: bytes) -> bool:
        """Handle an ICMPv6 NS or NA (``body`` from the ICMPv6 type on); False if it was not
        valid or not for us."""
        kind = body[0] if body else None
        if (kind not in (ND_SOLICIT, ND_ADVERT) or hop_limit != ND_HOP_LIMIT or len(body) < 24
                or body[1] != 0):
            return False
        if csum_ipv6_magic(src, dst, len(body), ICMPV6, csum_partial(body)):
            self._count("checksum_errors", 1)
            return False
        options = self._options(body[24:])
        if options is None:
            return False
        target = str(ipaddress.IPv6Address(body[8:24]))
        source = str(ipaddress.IPv6Address(src))
        if kind == ND_SOLICIT:
            return self._solicitation(src_mac, source, dst, target, options)
        return self._advertisement(dst, body[4], target, options)

    def _solicitation(self, src_mac, source, dst, target, options) -> bool:
        # Ref: RFC 4861 §7.1.1 (validity), §7.2.3 (learn, answer); RFC 4862 §5.4.3 (a DAD probe
        # for our address is answered to all-nodes, not solicited).
        if target not in self._ipv6 or ipaddress.IPv6Address(target).is_multicast:
            return False
        dad = source == UNSPECIFIED
        if dad and (OPT_SOURCE_LL in options or dst not in self._solicited):
            return False
        lladdr = options.get(OPT_SOURCE_LL)
        if lladdr is not None:
            self.learn(source, lladdr)
        if dad:
            to, to_mac, flags = ALL_NODES, multicast_mac(ALL_NODES), {"S": 0}
        else:
            to, flags = source, {"S": 1}
            to_mac = lladdr or self.cache.get(source) or src_mac
        reply = (Ether(src=self._mac, dst=to_mac)
                 / IPv6(src=target, dst=to, hlim=ND_HOP_LIMIT)
                 / ICMPv6ND_NA(R=0, O=1, tgt=target, **flags)
                 / ICMPv6NDOptDstLLAddr(lladdr=self._mac))
        self._emit(reply)
        self._count("neighbour_adverts_sent", 1)
        return True

    def _advertisement(self, dst, flags, target, options) -> bool:
        # Ref: RFC 4861 §7.1.2 (a solicited NA is never multicast), §7.2.5 (what to update).
        solicited, override = bool(flags & 0x40), bool(flags & 0x20)
        if solicited and dst[0] == 0xFF:
            return False
        lladdr = options.get(OPT_TARGET_LL)
        if lladdr is None or target in self._ipv6:
            return False
        if target in self._pending or override or target not in self.cache:
            self.learn(target, lladdr, create=target in self._pending)
        return True

    @staticmethod
    def _options(raw: bytes) -> dict[int, str] | None:
        """The link-layer address options in ``raw`` by type; None if an option is malformed."""
        options: dict[int, str] = {}
        while raw:
            if len(raw) < 2 or raw[1] == 0 or len(raw) < 8 * raw[1]:
                return None
            kind, size = raw[0], 8 * raw[1]
            if kind in (OPT_SOURCE_LL, OPT_TARGET_LL) and size == 8:
                options[kind] = _mac_text(raw[2:8])
            raw = raw[size:]
        return options
