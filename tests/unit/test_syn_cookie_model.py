"""The SYN-cookie golden model (sim/reference/syn_cookie.py; docs/syn_cookie.md) on its own.

Frames are built with scapy and the model's SYN-ACKs parsed back with scapy, which recomputes
both checksums: scapy is the independent checker of the bytes the model builds itself.
"""

import ipaddress
import math
import random

import pytest
from amaranth.lib import data
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from hw import params
from hw.layouts import EventKind, pack, unpack
from hw.syn_cookie.layouts import (
    NO_TS_OPTIONS,
    SYN_TABLE_ENTRY_BYTES,
    CookieIsn,
    HashedOptions,
    RuleAction,
    ServiceMode,
    SynConnectionDetail,
    SynConnectionInfo,
    SynRule,
    SynService,
    VlanMatch,
)
from sim.reference import siphash_vectors
from sim.reference.siphash import siphash
from sim.reference.syn_cookie import (
    Action,
    CookieConfig,
    FourTuple,
    Rule,
    Service,
    SynCookieModel,
    Verdict,
    check_cookie,
    cookie_message,
    cookie_ts_val,
    make_isn,
    mss_index_for,
    options_byte,
    split_isn,
)

LOCAL4, REMOTE4 = "192.0.2.10", "198.51.100.7"
LOCAL6, REMOTE6 = "2001:db8::10", "2001:db8:1::7"
LOCAL_MAC, REMOTE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
PORT = 80
#: A short tick in the tests (2**10 clocks), so that ages are a few thousand clocks.
TICK_LOG2 = 10
TICK = 1 << TICK_LOG2
KEY0 = bytes(range(16))
KEY1 = bytes(range(16, 32))


def _config(**kwargs):
    return CookieConfig(keys=[KEY0, KEY1], tick_log2=TICK_LOG2, ts_offset=123456, **kwargs)


def _model(services=None, **kwargs):
    services = services if services is not None else [
        Service(_addr(LOCAL4), PORT), Service(_addr(LOCAL6), PORT)]
    return SynCookieModel(kwargs.pop("config", None) or _config(), services, **kwargs)


def _addr(text):
    return ipaddress.ip_address(text).packed


def _ip(ipv6, src=None, dst=None):
    if ipv6:
        return IPv6(src=src or REMOTE6, dst=dst or LOCAL6)
    return IP(src=src or REMOTE4, dst=dst or LOCAL4)


def _syn(ipv6=False, *, ts=True, wscale=7, sack=True, mss=1460, ecn=False, vlan=None,
         src=None, sport=40000, seq=0x12345678, ts_val=777):
    options = []
    if mss is not None:
        options.append(("MSS", mss))
    if sack:
        options.append(("SAckOK", b""))
    if ts:
        options.append(("Timestamp", (ts_val, 0)))
    if wscale is not None:
        options.append(("WScale", wscale))
    l2 = Ether(src=REMOTE_MAC, dst=LOCAL_MAC)
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    flags = "SEC" if ecn else "S"
    return bytes(l2 / _ip(ipv6, src) / TCP(sport=sport, dport=PORT, seq=seq, flags=flags,
                                           window=64240, options=options))


def _ack(syn_bytes, synack_bytes, *, ts_val=778, ts_ecr=None, seq_delta=1, ack=None,
         sport=None, src=None, payload=b""):
    """The peer's ACK of a SYN-ACK, built by scapy from the two frames it answers."""
    syn, synack = Ether(syn_bytes), Ether(synack_bytes)
    ipv6 = IPv6 in syn
    syn_tcp, synack_tcp = syn[TCP], synack[TCP]
    options = []
    synack_ts = dict(synack_tcp.options).get("Timestamp")
    if synack_ts is not None:
        options.append(("Timestamp", (ts_val, synack_ts[0] if ts_ecr is None else ts_ecr)))
    tcp = TCP(sport=sport or syn_tcp.sport, dport=syn_tcp.dport,
              seq=(syn_tcp.seq + seq_delta) & 0xFFFFFFFF,
              ack=(synack_tcp.seq + 1) & 0xFFFFFFFF if ack is None else ack,
              flags="A", window=502, options=options)
    l2 = Ether(src=REMOTE_MAC, dst=LOCAL_MAC)
    if Dot1Q in syn:
        l2 = l2 / Dot1Q(vlan=syn[Dot1Q].vlan)
    ip = syn[IPv6] if ipv6 else syn[IP]
    return bytes(l2 / _ip(ipv6, src or ip.src, ip.dst) / tcp / payload)


def _tuple_of(packet):
    """The model's FourTuple of a scapy SYN (the sender is the remote end)."""
    ip = packet[IPv6] if IPv6 in packet else packet[IP]
    return FourTuple(_addr(ip.src), _addr(ip.dst), packet[TCP].sport, packet[TCP].dport)


def _checksums_ok(frame_bytes):
    """scapy's own checksums of the frame equal the ones in it (IPv4 header and TCP)."""
    packet = Ether(frame_bytes)
    rebuilt = packet.copy()
    if IP in rebuilt:
        del rebuilt[IP].chksum
    del rebuilt[TCP].chksum
    rebuilt = Ether(bytes(rebuilt))
    ok = rebuilt[TCP].chksum == packet[TCP].chksum
    if IP in packet:
        ok &= rebuilt[IP].chksum == packet[IP].chksum
    return ok


# --- SipHash --------------------------------------------------------------------------------------

def test_siphash24_published_vectors():
    for n, row in enumerate(siphash_vectors.SIP64):
        assert siphash(siphash_vectors.KEY, siphash_vectors.message(n), 2, 4) == \
            int.from_bytes(row, "little"), n


def test_cookie_hash_is_c_siphash24():
    """The model's SipHash-2-4 of cookie messages against the C implementation (dev extra)."""
    siphash24 = pytest.importorskip("siphash24")
    rng = random.Random(2)
    for _ in range(200):
        key, message = rng.randbytes(16), rng.randbytes(params.SYN_HASH_MESSAGE_BYTES)
        assert siphash(key, message, 2, 4) == \
            int.from_bytes(siphash24.siphash24(message, key=key).digest(), "little")


# --- Round trip ----------------------------------------------------------------------------------

ROUND_TRIPS = [
    # ipv6, ts, wscale, sack, mss, ecn
    (False, True, 7, True, 1460, False),
    (False, True, None, False, 1400, True),
    (False, False, 7, True, 1460, True),
    (True, True, 14, True, 9000, True),
    (True, True, 3, False, 1440, False),
    (True, False, None, False, None, False),
]


@pytest.mark.parametrize("ipv6,ts,wscale,sack,mss,ecn", ROUND_TRIPS)
def test_round_trip(ipv6, ts, wscale, sack, mss, ecn):
    model = _model()
    now = 5 * TICK + 17
    syn_bytes = _syn(ipv6, ts=ts, wscale=wscale, sack=sack, mss=mss, ecn=ecn)
    decision = model.decide(syn_bytes, now)
    assert decision.action is Action.SYN_ACK
    assert decision.counters == {"syns_seen": 1, "syns_answered": 1}
    reply = decision.reply
    assert len(reply) >= params.MIN_TX_FRAME_BYTES
    assert _checksums_ok(reply)

    synack, syn = Ether(reply), Ether(syn_bytes)
    tcp = synack[TCP]
    assert synack.dst == REMOTE_MAC and synack.src == LOCAL_MAC
    assert (synack[IPv6 if ipv6 else IP].src, synack[IPv6 if ipv6 else IP].dst) == \
        ((LOCAL6, REMOTE6) if ipv6 else (LOCAL4, REMOTE4))
    assert tcp.flags == ("SAE" if ecn and ts else "SA")
    assert (tcp.sport, tcp.dport) == (PORT, syn[TCP].sport)
    assert tcp.ack == syn[TCP].seq + 1
    # seq = the cookie, recomputed here from the fields of the SYN as scapy reads them.
    hashed = options_byte(ts, wscale if ts else None, sack and ts, ecn and ts)
    table = params.SYN_MSS_TABLE_IPV6 if ipv6 else params.SYN_MSS_TABLE_IPV4
    expected_index = mss_index_for(mss, table, ipv6)
    message = cookie_message(_tuple_of(syn),
                             syn[TCP].seq, hashed, expected_index, 5)
    assert tcp.seq == make_isn(0, 5, expected_index, siphash(KEY0, message, 2, 4))
    options = dict(tcp.options)
    assert options["MSS"] == 1460                 # the service's own MSS
    if ts:
        ts_val, ts_ecr = options["Timestamp"]
        assert ts_ecr == 777
        assert ts_val & 0xF == (0xF if wscale is None else wscale)
        assert (ts_val >> 4 & 1, ts_val >> 5 & 1) == (int(sack), int(ecn))
        assert ("WScale" in options) == (wscale is not None)
        assert ("SAckOK" in options) == sack
    else:
        assert set(options) == {"MSS"}            # MSS only

    ack = model.decide(_ack(syn_bytes, reply), now + TICK)
    assert ack.action is Action.CONNECTION
    assert ack.counters == {"cookies_valid": 1}
    conn = ack.connection
    assert conn.iss == tcp.seq and conn.irs == syn[TCP].seq
    assert conn.mss == table[expected_index]
    assert conn.timestamps == ts
    assert conn.snd_wscale == (wscale if ts else None)
    assert conn.rcv_wscale == (7 if ts and wscale is not None else 0)
    assert (conn.sack, conn.ecn) == ((sack, ecn) if ts else (False, False))
    assert conn.ts_recent == (778 if ts else None)
    assert conn.age == 1
    kind, tag, detail = ack.event
    assert kind is EventKind.CONNECTION
    info = unpack(SynConnectionInfo, tag)
    assert (int(info.mss), int(info.timestamps), int(info.sack)) == \
        (conn.mss, int(ts), int(conn.sack))
    assert int(unpack(SynConnectionDetail, detail).service) == (1 if ipv6 else 0)


def test_syn_ack_with_vlan_keeps_the_tag():
    model = _model([Service(_addr(LOCAL4), PORT, vlan=VlanMatch.TAGGED, vlan_id=42)])
    assert model.decide(_syn(vlan=41), 0).action is Action.SLOW
    decision = model.decide(_syn(vlan=42), 0)
    assert decision.action is Action.SYN_ACK
    assert Ether(decision.reply)[Dot1Q].vlan == 42
    assert _checksums_ok(decision.reply)


def test_mss_index_is_the_table_entry_at_or_below():
    v4, v6 = params.SYN_MSS_TABLE_IPV4, params.SYN_MSS_TABLE_IPV6
    assert v4 == (536, 1300, 1440, 1460) and v6 == (1220, 1420, 1440, 8940)
    assert [mss_index_for(m, v4, False) for m in (None, 100, 536, 1299, 1300, 1452, 9000)] == \
        [0, 0, 0, 0, 1, 2, 3]
    assert [mss_index_for(m, v6, True) for m in (None, 1440, 1460, 8940)] == [0, 2, 2, 3]


def test_ts_val_never_ahead_of_the_clock():
    for ts_now in (0, 5, 63, 64, 1000, 0xFFFFFFFF):
        for opts in (0, 0x0F, 0x3F, 0x17):
            ts = cookie_ts_val(ts_now, opts)
            assert ts & 0x3F == opts
            assert 0 <= (ts_now - ts) % (1 << 32) < 64


# --- The exact check ------------------------------------------------------------------------------

def _cookie_pair(ipv6=False, **syn_kwargs):
    model = _model()
    syn_bytes = _syn(ipv6, **syn_kwargs)
    reply = model.decide(syn_bytes, 3 * TICK).reply
    return model, syn_bytes, reply


@pytest.mark.parametrize("ipv6", [False, True])
def test_exact_check_refuses_every_neighbour(ipv6):
    model, syn_bytes, reply = _cookie_pair(ipv6)
    isn = Ether(reply)[TCP].seq
    now = 3 * TICK + 5
    assert model.decide(_ack(syn_bytes, reply), now).action is Action.CONNECTION
    for delta in range(-80, 81):
        if delta:
            frame = _ack(syn_bytes, reply, ack=(isn + 1 + delta) & 0xFFFFFFFF)
            assert model.decide(frame, now).action is Action.SLOW, delta
    key_slot, time, mss_index, hash_bits = split_isn(isn)
    for other in range(4):
        if other != mss_index:
            forged = make_isn(key_slot, time, other, hash_bits)
            frame = _ack(syn_bytes, reply, ack=forged + 1)
            assert model.decide(frame, now).counters == {"cookies_invalid": 1}, other


def test_exact_check_refuses_other_option_bits():
    model, syn_bytes, reply = _cookie_pair(wscale=7, sack=True)
    ts_val = dict(Ether(reply)[TCP].options)["Timestamp"][0]
    now = 3 * TICK
    for bits in range(64):
        frame = _ack(syn_bytes, reply, ts_ecr=(ts_val & ~0x3F) | bits)
        expected = Action.CONNECTION if bits == ts_val & 0x3F else Action.SLOW
        assert model.decide(frame, now).action is expected, bits
    # Without timestamps the ACK claims MSS only: refused too.
    no_ts = Ether(_ack(syn_bytes, reply))
    no_ts[TCP].options = []
    del no_ts[IP].chksum, no_ts[IP].len, no_ts[TCP].chksum, no_ts[TCP].dataofs
    assert model.decide(bytes(no_ts), now).counters == {"cookies_invalid": 1}


def test_ack_of_another_tuple_is_invalid():
    model, syn_bytes, reply = _cookie_pair()
    now = 3 * TICK
    for kwargs in ({"sport": 40001}, {"src": "198.51.100.8"}, {"seq_delta": 2}):
        assert model.decide(_ack(syn_bytes, reply, **kwargs), now).counters == \
            {"cookies_invalid": 1}, kwargs
    assert model.decide(_ack(syn_bytes, reply), now).action is Action.CONNECTION


def test_replay_past_the_age_limit_is_expired():
    model, syn_bytes, reply = _cookie_pair()     # made at tick 3, age limit 1
    ack = _ack(syn_bytes, reply)
    assert model.decide(ack, 3 * TICK).connection.age == 0
    assert model.decide(ack, 4 * TICK + TICK - 1).connection.age == 1
    assert model.decide(ack, 5 * TICK).counters == {"cookies_expired": 1}
    assert model.decide(ack, 6 * TICK).counters == {"cookies_expired": 1}
    # Four ticks on, the ISN's time bits alias to age 0: the hash (over the whole counter) fails.
    assert model.decide(ack, 7 * TICK).counters == {"cookies_invalid": 1}
    assert model.counters["cookies_valid"] == 2


def test_key_rotation_under_traffic():
    model = _model()
    cfg = model.config
    old_syn = _syn(sport=1000)
    old_reply = model.decide(old_syn, 0).reply
    assert split_isn(Ether(old_reply)[TCP].seq)[0] == 0
    # The host writes a new key into the idle slot, then makes it the active one.
    cfg.keys[1] = bytes(range(100, 116))
    cfg.active_key = 1
    new_syn = _syn(sport=1001)
    new_reply = model.decide(new_syn, TICK).reply
    assert split_isn(Ether(new_reply)[TCP].seq)[0] == 1
    assert model.decide(_ack(old_syn, old_reply), TICK).action is Action.CONNECTION
    assert model.decide(_ack(new_syn, new_reply), TICK).action is Action.CONNECTION
    # Next rotation (after the age limit): slot 0 is overwritten; its cookies die with it.
    cfg.keys[0] = bytes(range(200, 216))
    cfg.active_key = 0
    assert model.decide(_ack(old_syn, old_reply), TICK).counters == {"cookies_invalid": 1}
    assert model.decide(_ack(new_syn, new_reply), TICK).action is Action.CONNECTION


# --- Forgery --------------------------------------------------------------------------------------

TUPLE = FourTuple(_addr(REMOTE4), _addr(LOCAL4), 40000, PORT)


def _accepted(config, isns, time_now=3):
    options = options_byte(True, 7, True, False)
    return sum(check_cookie(config, TUPLE, isn, 0x1000, options, time_now).verdict
               is Verdict.VALID for isn in isns)


def _binomial_bound(n, p, sigmas=5):
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


def test_forged_cookies_accepted_at_the_predicted_rate():
    """With the check cut to a few hash bits, forged ACKs pass at the rate the arithmetic says:
    aimed ones (right key slot, time bits and MSS index, random hash) at 2**-h, random 32-bit
    ones at (age_limit + 1) / 2**time_bits * 2**-h."""
    rng = random.Random(11)
    tries = 40000
    config = _config(check_hash_bits=9)
    aimed = [make_isn(0, 3, rng.randrange(4), rng.getrandbits(27)) for _ in range(tries)]
    low, high = _binomial_bound(tries, 2 ** -9)
    assert low <= _accepted(config, aimed) <= high

    config = _config(check_hash_bits=7)
    p = (config.age_limit + 1) / 2 ** params.SYN_ISN_TIME_BITS * 2 ** -7
    low, high = _binomial_bound(tries, p)
    assert low <= _accepted(config, [rng.getrandbits(32) for _ in range(tries)]) <= high


def test_no_forged_cookie_passes_at_full_width():
    """Full width: 100k random ACKs, expected acceptances 100e3 * 2**-28 = 0.0004."""
    rng = random.Random(12)
    assert _accepted(_config(), [rng.getrandbits(32) for _ in range(100_000)]) == 0


# --- Services, rules, caps, modes -----------------------------------------------------------------

def test_syn_without_service_goes_to_the_slow_path():
    model = _model([Service(_addr(LOCAL4), 443)])
    decision = model.decide(_syn(), 0)
    assert (decision.action, decision.counters) == \
        (Action.SLOW, {"syns_seen": 1, "syns_to_slow": 1})
    # An IPv6 SYN never matches an IPv4 service; a non-SYN for no service is not counted.
    assert model.decide(_syn(True), 0).action is Action.SLOW
    assert model.decide(_ack(_syn(), _model().decide(_syn(), 0).reply), 0).action is Action.PASS


def test_service_prefix_match():
    model = _model([Service(_addr("192.0.2.0"), PORT, prefix_len=24)])
    assert model.decide(_syn(), 0).action is Action.SYN_ACK
    other = bytes(Ether(src=REMOTE_MAC, dst=LOCAL_MAC) / IP(src=REMOTE4, dst="192.0.3.10")
                  / TCP(dport=PORT, flags="S"))
    assert model.decide(other, 0).action is Action.SLOW


def test_deny_rules_in_order_and_default():
    rules = [Rule(_addr("198.51.100.7"), 32, RuleAction.ALLOW),
             Rule(_addr("198.51.100.0"), 24, RuleAction.DENY)]
    model = _model(rules=rules)
    assert model.decide(_syn(), 0).action is Action.SYN_ACK
    decision = model.decide(_syn(src="198.51.100.9"), 0)
    assert (decision.action, decision.counters) == \
        (Action.DROP, {"syns_seen": 1, "syns_denied": 1})
    assert model.decide(_syn(src="203.0.113.1"), 0).action is Action.SYN_ACK
    strict = _model(rules=rules, default_deny=True)
    assert strict.decide(_syn(src="203.0.113.1"), 0).counters["syns_denied"] == 1
    assert strict.decide(_syn(True), 0).counters["syns_denied"] == 1   # no IPv6 rule


def test_per_prefix_cap_and_refill():
    interval = 1 << params.SYN_CAP_INTERVAL_LOG2
    model = _model(rules=[Rule(_addr("198.51.100.0"), 24, rate=2, burst=3)])
    verdicts = [model.decide(_syn(sport=1000 + i), 0).action for i in range(5)]
    assert verdicts == [Action.SYN_ACK] * 3 + [Action.DROP] * 2
    assert model.counters["syns_capped"] == 2
    assert model.decide(_syn(src="203.0.113.1"), 0).action is Action.SYN_ACK  # not in the prefix
    assert model.decide(_syn(), interval - 1).action is Action.DROP
    verdicts = [model.decide(_syn(), interval).action for _ in range(3)]
    assert verdicts == [Action.SYN_ACK] * 2 + [Action.DROP]
    verdicts = [model.decide(_syn(), 10 * interval).action for _ in range(4)]
    assert verdicts == [Action.SYN_ACK] * 3 + [Action.DROP]      # refilled only up to the burst


def test_global_cap_and_both_buckets():
    interval = 1 << params.SYN_CAP_INTERVAL_LOG2
    model = _model(rules=[Rule(_addr("198.51.100.0"), 24, rate=1, burst=1)], global_cap=(1, 2))
    assert model.decide(_syn(), 0).action is Action.SYN_ACK            # rule 0, global 1
    assert model.decide(_syn(), 0).action is Action.DROP               # rule empty
    assert model.decide(_syn(src="203.0.113.1"), 0).action is Action.SYN_ACK   # global 0
    assert model.decide(_syn(src="203.0.113.2"), 0).action is Action.DROP      # global empty
    assert model.counters["syns_capped"] == 2
    assert model.decide(_syn(src="203.0.113.2"), interval).action is Action.SYN_ACK


def test_ask_mode_accept_and_deny():
    model = _model([Service(_addr(LOCAL4), PORT, mode=ServiceMode.ASK, wscale=5)])
    syn_bytes = _syn()
    asked = model.decide(syn_bytes, TICK)
    assert asked.action is Action.ASK and asked.reply is None
    kind, _, detail = asked.event
    assert kind is EventKind.SYN_ASK
    assert int(unpack(SynConnectionDetail, detail).rcv_wscale) == 5
    accepted = model.accept(syn_bytes, 2 * TICK)
    assert accepted.action is Action.SYN_ACK and _checksums_ok(accepted.reply)
    assert dict(Ether(accepted.reply)[TCP].options)["WScale"] == 5
    assert model.decide(_ack(syn_bytes, accepted.reply), 2 * TICK).action is Action.CONNECTION
    assert model.decide(_syn(sport=2), 2 * TICK).action is Action.ASK
    assert model.deny().counters == {"asks_denied": 1}
    # SYN_ACCEPT of a frame that is no SYN of an ask service answers nothing.
    assert model.accept(_ack(syn_bytes, accepted.reply), 2 * TICK).action is Action.PASS
    assert _model().accept(syn_bytes, 0).action is Action.PASS
    assert model.counters["asks_accepted"] == 1


def test_counters_add_up():
    rng = random.Random(3)
    model = _model([Service(_addr(LOCAL4), PORT),
                    Service(_addr(LOCAL4), 81, mode=ServiceMode.ASK)],
                   rules=[Rule(_addr("198.51.100.0"), 26, RuleAction.DENY),
                          Rule(_addr("198.51.100.64"), 26, rate=1, burst=4)])
    acks = 0
    for i in range(200):
        src = f"198.51.100.{rng.randrange(256)}"
        syn_bytes = _syn(src=src, sport=1000 + i)
        if rng.random() < 0.3:      # to the ask service, or to no service
            syn_bytes = bytes(Ether(src=REMOTE_MAC, dst=LOCAL_MAC) / IP(src=src, dst=LOCAL4)
                              / TCP(sport=i, dport=rng.choice([81, 82]), flags="S"))
        decision = model.decide(syn_bytes, i * 1000)
        if decision.action is Action.ASK:
            model.accept(syn_bytes, i * 1000) if rng.random() < 0.5 else model.deny()
        if decision.reply is not None and rng.random() < 0.5:
            acks += 1
            model.decide(_ack(syn_bytes, decision.reply), i * 1000 + 1)
    c = model.counters
    assert c["syns_seen"] == 200
    assert c["syns_seen"] == (c["syns_to_slow"] + c["syns_denied"] + c["syns_capped"]
                              + c["syns_tx_full"] + c["syns_asked"] + c["syns_answered"]
                              - c["asks_accepted"])
    assert c["syns_asked"] == c["asks_accepted"] + c["asks_denied"]
    assert c["cookies_valid"] == acks and c["cookies_invalid"] == c["cookies_expired"] == 0
    assert all(c[name] > 0 for name in ("syns_to_slow", "syns_denied", "syns_capped",
                                        "asks_accepted", "asks_denied"))


def test_no_timestamps_options_constant():
    assert options_byte(False, 7, True, True) == NO_TS_OPTIONS == 0x0F


def test_option_walker_budget():
    """Options past SYN_OPTION_STEPS steps (an option, or up to 4 NOPs, per step) are ignored,
    as the hardware's walker ignores them: here the MSS is the ninth step."""
    model = _model()
    nops = [("NOP", None)] * 4
    late = [("SAckOK", b"")] + nops * 7 + [("MSS", 1300)]
    early = [("SAckOK", b"")] + nops * 6 + [("MSS", 1300)]
    for options, index in ((late, 0), (early, 1)):
        syn_bytes = bytes(Ether(src=REMOTE_MAC, dst=LOCAL_MAC) / IP(src=REMOTE4, dst=LOCAL4)
                          / TCP(sport=5, dport=PORT, flags="S", options=options))
        reply = model.decide(syn_bytes, 0).reply
        assert split_isn(Ether(reply)[TCP].seq)[2] == index


# --- The model against the formats of hw/syn_cookie/layouts.py -----------------------------------

def test_isn_and_options_are_the_layouts():
    rng = random.Random(5)
    for _ in range(200):
        key, time, mss, hash_ = rng.getrandbits(1), rng.getrandbits(2), rng.getrandbits(2), \
            rng.getrandbits(27)
        isn = make_isn(key, time, mss, hash_)
        assert isn == pack(CookieIsn, {"key_slot": key, "time": time, "mss_index": mss,
                                       "hash": hash_})
        assert split_isn(isn) == (key, time, mss, hash_)
    for wscale in (0, 7, 14, None):
        for sack in (False, True):
            for ecn in (False, True):
                bits = {"wscale": 0xF if wscale is None else wscale, "sack": int(sack),
                        "ecn": int(ecn)}
                assert options_byte(True, wscale, sack, ecn) == \
                    pack(HashedOptions, {"ts_options": bits, "timestamps": 1})


def test_table_entries_fit_and_unpack():
    service = Service(_addr(LOCAL6), 443, prefix_len=64, vlan=VlanMatch.TAGGED, vlan_id=7,
                      mode=ServiceMode.ASK, mss=1440, wscale=9)
    entry = unpack(SynService, service.entry())
    assert (int(entry.local_ip), int(entry.prefix_len), int(entry.port)) == \
        (int.from_bytes(_addr(LOCAL6), "big"), 64, 443)
    assert (entry.vlan, int(entry.vlan_id), entry.mode) == (VlanMatch.TAGGED, 7, ServiceMode.ASK)
    assert (int(entry.ipv6), int(entry.valid), int(entry.mss), int(entry.wscale)) == \
        (1, 1, 1440, 9)
    rule = unpack(SynRule, Rule(_addr("198.51.100.0"), 24, rate=5, burst=9).entry())
    assert (int(rule.remote_ip), int(rule.prefix_len), int(rule.ipv6)) == \
        (int.from_bytes(_addr("198.51.100.0"), "big"), 24, 0)
    assert (rule.action, int(rule.capped), int(rule.rate), int(rule.burst)) == \
        (RuleAction.ALLOW, 1, 5, 9)
    assert data.Layout.cast(SynService).size == data.Layout.cast(SynRule).size == \
        8 * SYN_TABLE_ENTRY_BYTES
