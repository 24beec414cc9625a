"""The SYN-cookie unit's classifier and matcher (hw/syn_cookie/match.py) against the golden model
(``sim.reference.syn_cookie.SynCookieModel.match``).

The producer writes table entries (the model's ``Service.entry()`` / ``Rule.entry()``, the
:class:`~hw.syn_cookie.layouts.SynService` / ``SynRule`` the host writes) and offers frames
(:class:`~hw.syn_cookie.layouts.SynMatchInput`, built from the model's ``TcpFrame``), recording
the clock of every write and of every frame accepted; the consumer takes the verdicts (with
random backpressure or always ready) and the counter pulses. Afterwards the scoreboard replays
writes and frames into the model in clock order (a write in clock ``w`` applies from the frame
accepted in ``w + WRITE_DELAY`` on; a frame decides its caps in its S3 clock, accepted +
CAPS_CLOCK) and compares
every verdict field by field and every counter.
"""

import dataclasses
import random

import pytest

from hw import params
from hw.layouts import L3Type, TcpFlags, pack, unpack
from hw.syn_cookie.layouts import (
    CookieOp,
    RuleAction,
    ServiceMode,
    SynControl,
    SynMatchAction,
    SynMatchInput,
    SynMatchVerdict,
    VlanMatch,
)
from hw.syn_cookie.match import SynMatcher
from sim.reference.syn_cookie import (
    COUNTER_NAMES,
    CookieConfig,
    Rule,
    Service,
    SynCookieModel,
    TcpFrame,
    TcpOptions,
)

from .amaranth_sim import run_testbenches

#: A short refill interval (128 clocks) so that tests cross many.
INTERVAL_LOG2 = 7
MSS_IPV4 = (500, 1200, 1400, 1460)
MSS_IPV6 = (1220, 1400, 4000, 8940)
#: The matcher's counters (the rest move downstream).
MATCHER_COUNTERS = ("syns_seen", "syns_to_slow", "syns_denied", "syns_capped", "syns_asked")
SYN, ACK = TcpFlags.SYN, TcpFlags.ACK


@dataclasses.dataclass
class Frame:
    """A frame as the test offers it: its fields (the model's view), the window shift as sent,
    and the descriptor bits that make it the unit's or not."""
    tcp: TcpFrame
    raw_wscale: int | None = None
    looked_up: bool = True
    hit: bool = False
    candidate: bool = True
    vlan_count: int | None = None       # None: from tcp.vlan_tci

    @property
    def eligible(self):
        return (self.looked_up and not self.hit and self.candidate
                and self._vlan_count() <= 1)

    def _vlan_count(self):
        if self.vlan_count is not None:
            return self.vlan_count
        return int(self.tcp.vlan_tci is not None)

    def fields(self):
        """The :class:`SynMatchInput` fields."""
        t, o = self.tcp, self.tcp.options
        size = 16 if t.ipv6 else 4
        assert len(t.src_ip) == len(t.dst_ip) == size
        return {
            "frame": {
                "frame": {
                    "summary": {
                        "l3": L3Type.IPV6 if t.ipv6 else L3Type.IPV4,
                        "candidate": int(self.candidate), "vlan_count": self._vlan_count(),
                        "vlan0": (t.vlan_tci or 0) & 0xFFF, "tcp_flags": t.flags,
                        "sport": t.sport, "dport": t.dport, "l2_valid": 1, "addr_valid": 1,
                        "l4_valid": 1},
                    "tcp": {"src": int.from_bytes(t.src_ip, "big"),
                            "dst": int.from_bytes(t.dst_ip, "big"),
                            "seq": t.seq, "ack": t.ack, "window": t.window}},
                "looked_up": int(self.looked_up), "hit": int(self.hit)},
            "options": {
                "mss_present": int(o.mss is not None), "mss": o.mss or 0,
                "wscale_present": int(self.raw_wscale is not None),
                "wscale": self.raw_wscale or 0, "sack_permitted": int(o.sack_permitted),
                "timestamps": int(o.timestamps), "ts_val": o.ts_val or 0,
                "ts_ecr": o.ts_ecr or 0},
        }


@dataclasses.dataclass
class Setup:
    """The registers around the matcher for one run."""
    enable: bool = True
    default_deny: bool = False
    global_cap: tuple | None = None     # (rate, burst)
    active_key: int = 1
    age_limit: int = 2
    time: int = 0x1234
    ts_clock: int = 0x89ABCDEF


# --- Frames ---------------------------------------------------------------------------------------

def in_prefix(rng, prefix, prefix_len):
    """A random address of ``prefix``'s family inside ``prefix / prefix_len``."""
    bits = 8 * len(prefix)
    host = rng.getrandbits(bits) & ((1 << (bits - prefix_len)) - 1)
    number = int.from_bytes(prefix, "big") >> (bits - prefix_len) << (bits - prefix_len) | host
    return number.to_bytes(len(prefix), "big")


def flip(addr, bit):
    """``addr`` with bit ``bit`` flipped, counted from the first (most significant) bit."""
    number = int.from_bytes(addr, "big") ^ 1 << (8 * len(addr) - 1 - bit)
    return number.to_bytes(len(addr), "big")


def near(rng, prefix, prefix_len):
    """An address at a prefix's edge: inside it, or out by the last prefix bit, or in by the
    first bit past it."""
    addr = in_prefix(rng, prefix, prefix_len)
    choice = rng.randrange(3)
    if choice == 1 and prefix_len > 0:
        addr = flip(addr, prefix_len - 1)
    elif choice == 2 and prefix_len < 8 * len(prefix):
        addr = flip(addr, prefix_len)
    return addr


def random_options(rng):
    raw_wscale = rng.choice([None, 0, 7, 14, 15, 200, rng.randrange(256)])
    ts = rng.random() < 0.6
    options = TcpOptions(
        mss=rng.choice([None, 536, 1220, 1400, 1460, 9000, rng.getrandbits(16)]),
        wscale=None if raw_wscale is None else min(raw_wscale, 14),
        sack_permitted=rng.random() < 0.5,
        ts_val=rng.getrandbits(32) if ts else None,
        ts_ecr=rng.getrandbits(32) if ts else None)
    return options, raw_wscale


def make_frame(rng, *, ipv6, src, dst, dport, flags, vlan_tci=None, **descriptor):
    options, raw_wscale = random_options(rng)
    tcp = TcpFrame(dst_mac=rng.randbytes(6), src_mac=rng.randbytes(6), vlan_tci=vlan_tci,
                   ipv6=ipv6, src_ip=src, dst_ip=dst, sport=rng.getrandbits(16), dport=dport,
                   seq=rng.getrandbits(32), ack=rng.getrandbits(32), flags=int(flags),
                   window=rng.getrandbits(16), options=options, payload_len=0)
    return Frame(tcp, raw_wscale, **descriptor)


_FLAGS = [SYN] * 6 + [ACK] * 3 + [
    SYN | TcpFlags.ECE | TcpFlags.CWR, SYN | TcpFlags.ECE, SYN | ACK, SYN | TcpFlags.RST,
    SYN | TcpFlags.FIN, ACK | TcpFlags.PSH, ACK | TcpFlags.FIN, ACK | TcpFlags.RST, TcpFlags.RST,
    0, SYN | TcpFlags.PSH | TcpFlags.URG]


def random_frame(rng, services, rules, *, p_other=0.1):
    """A frame aimed at the tables: its destination near a random service's prefix (port and
    VLAN mostly right), its source near a random rule's; sometimes anything, sometimes not the
    unit's (a table hit, not a candidate, two tags, not looked up)."""
    ipv6 = rng.random() < 0.5
    size = 16 if ipv6 else 4
    same = [s for s in services if s is not None and s.ipv6 == ipv6]
    service = rng.choice(same) if same and rng.random() < 0.85 else None
    if service is not None:
        plen = 8 * size if service.prefix_len is None else service.prefix_len
        dst = near(rng, service.local_ip, plen)
        dport = service.port if rng.random() < 0.9 else service.port ^ 1 << rng.randrange(16)
        vlan_tci = rng.choice([None, service.vlan_id | rng.randrange(16) << 12,
                               rng.getrandbits(16)])
    else:
        dst, dport, vlan_tci = rng.randbytes(size), rng.getrandbits(16), None
        if rng.random() < 0.3:
            vlan_tci = rng.getrandbits(16)
    same_rules = [r for r in rules if r is not None and len(r.remote_ip) == size]
    rule = rng.choice(same_rules) if same_rules and rng.random() < 0.85 else None
    src = near(rng, rule.remote_ip, rule.prefix_len) if rule else rng.randbytes(size)
    descriptor = {}
    if rng.random() < p_other:
        descriptor = rng.choice([{"hit": True}, {"candidate": False}, {"looked_up": False},
                                 {"vlan_count": 2}])
    return make_frame(rng, ipv6=ipv6, src=src, dst=dst, dport=dport, flags=rng.choice(_FLAGS),
                      vlan_tci=vlan_tci, **descriptor)


def random_service(rng, ipv6=None):
    ipv6 = rng.random() < 0.5 if ipv6 is None else ipv6
    size = 16 if ipv6 else 4
    vlan = rng.choice(list(VlanMatch))
    return Service(
        local_ip=rng.randbytes(size), port=rng.choice([80, 443, rng.getrandbits(16)]),
        prefix_len=rng.choice([None, 0, 1, 8 * size - 1, rng.randrange(8 * size + 1)]),
        vlan=vlan, vlan_id=rng.getrandbits(12), mode=rng.choice(list(ServiceMode)),
        mss=rng.getrandbits(16), window=rng.getrandbits(16), wscale=rng.randrange(15),
        sack=rng.random() < 0.7, timestamps=rng.random() < 0.7, ecn=rng.random() < 0.7)


def random_rule(rng, ipv6=None, *, p_capped=0.4):
    ipv6 = rng.random() < 0.5 if ipv6 is None else ipv6
    size = 16 if ipv6 else 4
    capped = rng.random() < p_capped
    return Rule(remote_ip=rng.randbytes(size),
                prefix_len=rng.choice([0, 1, 8 * size, rng.randrange(8 * size + 1)]),
                action=RuleAction.DENY if rng.random() < 0.3 else RuleAction.ALLOW,
                rate=rng.randrange(4) if capped else None, burst=rng.randrange(6))


# --- Simulation -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """What a simulation recorded."""
    writes: list        # (clock, "service" | "rule", index, entry or None)
    frames: list        # (accept clock, Frame)
    verdicts: list      # unpacked SynMatchVerdict, in order
    pulses: dict        # counter name -> pulses seen
    accepted: list      # accept clocks
    taken: list         # clocks a verdict was taken
    refused: list       # clocks a frame was offered while i.ready was low


def simulate(items, setup, *, p_gap=0.0, p_stall=0.0, seed=0, interval_log2=INTERVAL_LOG2):
    """Run ``items`` (``("service", index, Service | None)``, ``("rule", index, Rule | None)``,
    ``("idle", clocks)``, or a :class:`Frame`) through a new matcher, in order."""
    dut = SynMatcher(interval_log2=interval_log2)
    rng = random.Random(seed)
    n_frames = sum(isinstance(item, Frame) for item in items)
    run = Run([], [], [], dict.fromkeys(COUNTER_NAMES, 0), [], [], [])
    done = [False]
    mask = (1 << interval_log2) - 1

    async def producer(ctx):
        ctx.set(dut.control.as_value(), pack(SynControl, {
            "enable": int(setup.enable), "active_key": setup.active_key,
            "age_limit": setup.age_limit, "default_deny": int(setup.default_deny),
            "global_capped": int(setup.global_cap is not None)}))
        rate, burst = setup.global_cap or (0, 0)
        ctx.set(dut.global_cap.as_value(), rate | burst << 16)
        ctx.set(dut.global_cap_written, 1)
        ctx.set(dut.time, setup.time)
        ctx.set(dut.ts_clock, setup.ts_clock)
        ctx.set(dut.mss_ipv4.as_value(), sum(v << 16 * i for i, v in enumerate(MSS_IPV4)))
        ctx.set(dut.mss_ipv6.as_value(), sum(v << 16 * i for i, v in enumerate(MSS_IPV6)))
        await ctx.tick()
        ctx.set(dut.global_cap_written, 0)
        cycle = 1
        for item in items:
            if isinstance(item, Frame):
                while rng.random() < p_gap:
                    await ctx.tick()
                    cycle += 1
                ctx.set(dut.i.payload.as_value(), pack(SynMatchInput, item.fields()))
                ctx.set(dut.i.valid, 1)
                while True:
                    _, _, ready, clock = await ctx.tick().sample(dut.i.ready,
                                                                 dut._interval_clock)
                    assert clock == cycle & mask
                    cycle += 1
                    if ready:
                        run.frames.append((cycle - 1, item))
                        run.accepted.append(cycle - 1)
                        break
                    run.refused.append(cycle - 1)
                ctx.set(dut.i.valid, 0)
            elif item[0] == "idle":
                await ctx.tick().repeat(item[1])
                cycle += item[1]
            else:
                kind, index, entry = item
                port = dut.service_write if kind == "service" else dut.rule_write
                ctx.set(port.enable, 1)
                ctx.set(port.index, index)
                ctx.set(port.entry.as_value(), 0 if entry is None else entry.entry())
                await ctx.tick()
                run.writes.append((cycle, kind, index, entry))
                cycle += 1
                ctx.set(port.enable, 0)
        done[0] = True

    async def consumer(ctx):
        cycle = 0
        limit = 40 * len(items) + 200
        while (len(run.verdicts) < n_frames or not done[0]) and cycle < limit:
            ready = int(rng.random() >= p_stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, counts = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.as_value(), dut.counts.as_value())
            cycle += 1
            for n, name in enumerate(COUNTER_NAMES):
                run.pulses[name] += counts >> n & 1
            if valid and ready:
                run.verdicts.append(unpack(SynMatchVerdict, payload))
                run.taken.append(cycle - 1)
        ctx.set(dut.o.ready, 1)
        for _ in range(8):
            _, _, valid, counts = await ctx.tick().sample(dut.o.valid, dut.counts.as_value())
            assert not valid, "a verdict for no frame"
            assert counts == 0, "a count for no frame"

    run_testbenches(dut, producer, consumer)
    assert len(run.verdicts) == n_frames
    return run


# --- Scoreboard -----------------------------------------------------------------------------------

def new_model(setup, services=(), rules=(), interval_log2=INTERVAL_LOG2):
    config = CookieConfig(mss_ipv4=MSS_IPV4, mss_ipv6=MSS_IPV6, cap_interval_log2=interval_log2,
                          age_limit=setup.age_limit, active_key=setup.active_key)
    return SynCookieModel(config, list(services), list(rules), default_deny=setup.default_deny,
                          global_cap=setup.global_cap, enable=setup.enable)


def expected_cookie(model, frame, result, setup):
    """The cookie request fields the verdict must carry (those its op uses)."""
    t, o = frame.tcp, frame.tcp.options
    tuple_ = {"ipv6": int(t.ipv6), "remote_ip": int.from_bytes(t.src_ip, "big"),
              "local_ip": int.from_bytes(t.dst_ip, "big"), "remote_port": t.sport,
              "local_port": t.dport, "seq": t.seq, "time": setup.time}
    if result.action is SynMatchAction.CHECK:
        fields = {**tuple_, "op": CookieOp.CHECK, "ack": t.ack, "timestamps": int(o.timestamps),
                  "age_limit": setup.age_limit}
        if o.timestamps:
            fields["ts"] = o.ts_ecr
        return fields
    offer = model.syn_offer(t, model.services[result.service])
    fields = {**tuple_, "op": CookieOp.MAKE, "timestamps": int(offer["timestamps"]),
              "ts": setup.ts_clock, "mss_index": offer["mss_index"],
              "key_slot": setup.active_key}
    if offer["timestamps"]:
        fields["ts_options"] = offer["options"] & 0x3F
    return fields


def expected_offer(model, frame, result):
    t = frame.tcp
    service = model.services[result.service]
    offer = model.syn_offer(t, service)
    return {"window": service.window, "mss": service.mss,
            "wscale_ok": int(offer["wscale"] is not None), "wscale": service.wscale,
            "sack": int(offer["sack"]), "timestamps": int(offer["timestamps"]),
            "ecn": int(offer["ecn"]),
            "ts_ecr": t.options.ts_val if offer["timestamps"] else 0}


def _cookie_fields(verdict, names):
    c = verdict.cookie
    values = {}
    for name in names:
        if name == "ts_options":
            values[name] = c.ts_options.as_value().value
        else:
            values[name] = getattr(c, name)
    return values


def check(run, setup, services=(), rules=(), interval_log2=INTERVAL_LOG2):
    """Replay the run into the model; compare every verdict and counter. Returns the model's
    results, in order."""
    model = new_model(setup, services, rules, interval_log2)
    full = new_model(setup, services, rules, interval_log2)     # decide_fields: all counters
    delay = SynMatcher.WRITE_DELAY
    events = [(clock + delay - 0.5, "write", (kind, index, entry))
              for clock, kind, index, entry in run.writes]
    events += [(clock, "frame", frame) for clock, frame in run.frames]
    events.sort(key=lambda e: e[0])
    results = []
    counted = dict.fromkeys(COUNTER_NAMES, 0)
    for clock, what, payload in events:
        if what == "write":
            kind, index, entry = payload
            # The rule's bucket is full from the S3 clock (accepted + CAPS_CLOCK) of the first
            # frame that sees the write (accepted w + WRITE_DELAY).
            applied = int(clock + 0.5) + SynMatcher.CAPS_CLOCK
            for m in (model, full):
                if kind == "service":
                    m.set_service(index, entry)
                else:
                    m.set_rule(index, entry, applied)
            continue
        frame = payload
        now = int(clock) + SynMatcher.CAPS_CLOCK       # S3: the caps' clock
        tcp = frame.tcp if frame.eligible and setup.enable else None
        result = model.match(tcp, now)
        full.decide_fields(tcp, now)
        for name in result.counters:
            counted[name] += 1
        service = None if result.service is None else model.services[result.service]
        expected = {}
        if result.action in (SynMatchAction.MAKE, SynMatchAction.CHECK):
            expected["cookie"] = expected_cookie(model, frame, result, setup)
        if result.action is SynMatchAction.MAKE:
            expected["offer"] = expected_offer(model, frame, result)
        results.append((frame, result, service, expected))

    makes = checks = 0
    for n, ((frame, result, service, expected), verdict) in enumerate(
            zip(results, run.verdicts, strict=True)):
        where = f"frame {n}: {frame}, model {result}"
        assert verdict.action == result.action, where
        assert (verdict.service_matched, verdict.service) == (
            int(result.service is not None), result.service or 0), where
        assert (verdict.rule_matched, verdict.rule) == (
            int(result.rule is not None), result.rule or 0), where
        if result.action in (SynMatchAction.MAKE, SynMatchAction.ASK, SynMatchAction.CHECK):
            assert verdict.rcv_wscale == service.wscale, where
        if "cookie" in expected:
            assert _cookie_fields(verdict, expected["cookie"]) == expected["cookie"], where
        if result.action is SynMatchAction.MAKE:
            makes += 1
            offer = {name: getattr(verdict.offer, name) for name in
                     ("window", "mss", "wscale_ok", "wscale", "sack", "timestamps", "ecn",
                      "ts_ecr")}
            assert offer == expected["offer"], where
        checks += result.action is SynMatchAction.CHECK

    for name in MATCHER_COUNTERS:
        assert run.pulses[name] == counted[name] == full.counters[name], name
    assert full.counters["syns_answered"] == makes
    assert sum(full.counters[f"cookies_{v}"] for v in ("valid", "invalid", "expired")) == checks
    assert all(run.pulses[name] == 0 for name in COUNTER_NAMES if name not in MATCHER_COUNTERS)
    return [result for _, result, _, _ in results]


def writes_of(services=(), rules=()):
    return ([("service", n, s) for n, s in enumerate(services) if s is not None]
            + [("rule", n, r) for n, r in enumerate(rules) if r is not None])


def actions(results):
    return {a: sum(r.action is a for r in results) for a in SynMatchAction}


# --- Tests ----------------------------------------------------------------------------------------

V4 = bytes([10, 1, 2, 3])
V6 = bytes.fromhex("20010db8000000010000000000000042")


def test_services_by_prefix_port_vlan():
    # Services of both families at every kind of prefix length (the whole address, /0, /1, an
    # odd one, one short of the whole), ports, VLAN any / untagged / tagged; frames at each
    # prefix's edges (in, out by the last prefix bit, in by the first host bit), on and off the
    # port, tagged or not; SYNs, ACKs and other flags. First valid slot wins, so overlapping
    # services and an emptied slot are in the table too.
    rng = random.Random(1)
    services = [
        Service(V4, 80), Service(V4, 80, prefix_len=24, vlan=VlanMatch.UNTAGGED),
        Service(V4, 443, prefix_len=13, vlan=VlanMatch.TAGGED, vlan_id=5,
                mode=ServiceMode.ASK),
        Service(bytes(4), 22, prefix_len=0), Service(V4, 8080, prefix_len=31),
        Service(V6, 80), Service(V6, 80, prefix_len=64, vlan=VlanMatch.TAGGED, vlan_id=4095),
        Service(V6, 443, prefix_len=1), Service(V6, 443, prefix_len=127),
        Service(bytes(16), 22, prefix_len=0, vlan=VlanMatch.UNTAGGED), None,
        Service(V4, 25, prefix_len=7, mode=ServiceMode.ASK), Service(V6, 25, prefix_len=65),
    ]
    items = writes_of(services)
    items.append(("service", 10, Service(V4, 7)))
    items.append(("service", 10, None))              # written, then emptied
    for _ in range(400):
        items.append(random_frame(rng, services, [], p_other=0.0))
    run = simulate(items, Setup(), p_gap=0.2, seed=1)
    results = check(run, Setup(), interval_log2=INTERVAL_LOG2)
    counts = actions(results)
    assert counts[SynMatchAction.MAKE] > 30 and counts[SynMatchAction.ASK] > 10
    assert counts[SynMatchAction.TO_SLOW] > 20 and counts[SynMatchAction.CHECK] > 30
    assert counts[SynMatchAction.PASS] > 20
    assert len({r.service for r in results if r.service is not None}) >= 10


@pytest.mark.parametrize("default_deny", [False, True])
def test_rules_first_match_and_default(default_deny):
    # Allow and deny rules of both families, nested (a deny inside an allow and the other way
    # round: the first valid slot wins), /0, whole addresses; sources at every rule's edges;
    # no rule matched: default_deny decides.
    rng = random.Random(2 + default_deny)
    setup = Setup(default_deny=default_deny)
    services = [Service(bytes(4), 80, prefix_len=0), Service(bytes(16), 80, prefix_len=0),
                Service(V4, 443, mode=ServiceMode.ASK)]
    allow, deny = RuleAction.ALLOW, RuleAction.DENY
    rules = [
        Rule(bytes([192, 168, 7, 9]), 32, deny), Rule(bytes([192, 168, 0, 0]), 16, allow),
        Rule(bytes([192, 0, 0, 0]), 8, deny), Rule(bytes([172, 16, 0, 0]), 12, allow),
        Rule(bytes.fromhex("fe800000000000000000000000000001"), 128, allow),
        Rule(bytes.fromhex("fe800000000000000000000000000000"), 10, deny),
        Rule(bytes.fromhex("20010db8000000000000000000000000"), 32, allow),
        Rule(bytes.fromhex("20010db8800000000000000000000000"), 33, deny),
        None, Rule(bytes([10, 0, 0, 0]), 9, allow), Rule(bytes([10, 128, 0, 0]), 9, deny),
        Rule(bytes(16), 1, allow),
    ]
    items = writes_of(services, rules)
    for _ in range(260):
        frame = random_frame(rng, services, rules, p_other=0.0)
        if rng.random() < 0.6:      # mostly SYNs to a service: the rules are what is tested
            frame.tcp = dataclasses.replace(frame.tcp, flags=int(SYN), dport=80)
        items.append(frame)
    run = simulate(items, setup, seed=2)
    results = check(run, setup)
    counts = actions(results)
    assert counts[SynMatchAction.DENIED] > 30 and counts[SynMatchAction.MAKE] > 30
    ruled = [r for r in results if r.action in (SynMatchAction.MAKE, SynMatchAction.DENIED)]
    assert sum(r.rule is None for r in ruled) > 10
    assert len({r.rule for r in ruled}) >= 10


@pytest.mark.parametrize("global_cap", [None, (3, 5)])
def test_caps_per_prefix_global_and_refill(global_cap):
    # Capped rules (rate 0, 1, 2 a 128-clock interval, bursts 0..4), an uncapped one, and the
    # global bucket: SYNs in bursts and pauses over 40 intervals, so buckets run dry, refill
    # (saturating at burst), and a SYN capped by one bucket takes from neither. A rule
    # rewritten mid-run is refilled full.
    rng = random.Random(4)
    setup = Setup(global_cap=global_cap)
    services = [Service(bytes(4), 80, prefix_len=0), Service(bytes(16), 80, prefix_len=0,
                                                              mode=ServiceMode.ASK)]
    rules = [Rule(bytes([10, 0, 0, 1]), 32, rate=0, burst=2),
             Rule(bytes([10, 0, 0, 0]), 24, rate=1, burst=3),
             Rule(bytes([10, 0, 0, 0]), 8, rate=2, burst=4),
             Rule(bytes(16), 0, rate=1, burst=1),
             Rule(bytes([11, 0, 0, 0]), 8), Rule(bytes([12, 0, 0, 0]), 8, rate=2, burst=0)]
    items = writes_of(services, rules)
    sources = [bytes([10, 0, 0, 1]), bytes([10, 0, 0, 7]), bytes([10, 9, 9, 9]),
               bytes([11, 2, 3, 4]), bytes([12, 0, 0, 1])]
    for burst in range(60):
        for _ in range(rng.randrange(1, 8)):
            ipv6 = rng.random() < 0.2
            src = rng.randbytes(16) if ipv6 else rng.choice(sources)
            items.append(make_frame(rng, ipv6=ipv6, src=src,
                                    dst=rng.randbytes(16 if ipv6 else 4), dport=80, flags=SYN))
        items.append(("idle", rng.randrange(0, 250)))
        if burst == 30:
            items.append(("rule", 1, Rule(bytes([10, 0, 0, 0]), 24, rate=2, burst=2)))
    run = simulate(items, setup, p_gap=0.3, seed=4)
    results = check(run, setup)
    counts = actions(results)
    assert counts[SynMatchAction.CAPPED] > 40
    assert counts[SynMatchAction.MAKE] + counts[SynMatchAction.ASK] > 40
    assert len({clock >> INTERVAL_LOG2 for clock in run.accepted}) > 30


def test_descriptors_not_the_units_pass_uncounted():
    # Frames the unit does not take: a CCB-table hit, not looked up, not a candidate, two VLAN
    # tags; then the unit off. SYNs and ACKs to a service all pass, uncounted.
    rng = random.Random(5)
    services = [Service(bytes(4), 80, prefix_len=0)]
    items = writes_of(services)
    for descriptor in ({"hit": True}, {"looked_up": False}, {"candidate": False},
                       {"vlan_count": 2}):
        for flags in (SYN, ACK):
            items.append(make_frame(rng, ipv6=False, src=rng.randbytes(4),
                                    dst=rng.randbytes(4), dport=80, flags=flags, **descriptor))
    results = check(simulate(items, Setup(), seed=5), Setup(), services)
    assert all(r.action is SynMatchAction.PASS for r in results)
    off = Setup(enable=False)
    items = writes_of(services) + [
        make_frame(rng, ipv6=False, src=rng.randbytes(4), dst=rng.randbytes(4), dport=80,
                   flags=flags) for flags in (SYN, ACK, SYN, ACK)]
    results = check(simulate(items, off, seed=6), off, services)
    assert all(r.action is SynMatchAction.PASS for r in results)


def test_random_tables_frames_back_to_back_with_backpressure():
    # Random tables (both families, any prefix, VLAN, mode, caps, deny), frames aimed at them
    # back to back with random backpressure, tables rewritten and slots emptied while frames
    # are in flight; the global cap on. Every verdict and every counter as the model's.
    rng = random.Random(7)
    setup = Setup(global_cap=(5, 10), default_deny=False)
    services = [random_service(rng) if rng.random() < 0.9 else None
                for _ in range(params.SYN_SERVICES)]
    rules = [random_rule(rng) if rng.random() < 0.9 else None for _ in range(params.SYN_RULES)]
    items = writes_of(services, rules)
    live_services, live_rules = list(services), list(rules)
    for _ in range(1400):
        if rng.random() < 0.02:
            index = rng.randrange(params.SYN_SERVICES)
            live_services[index] = random_service(rng) if rng.random() < 0.8 else None
            items.append(("service", index, live_services[index]))
        if rng.random() < 0.02:
            index = rng.randrange(params.SYN_RULES)
            live_rules[index] = random_rule(rng) if rng.random() < 0.8 else None
            items.append(("rule", index, live_rules[index]))
        items.append(random_frame(rng, live_services, live_rules))
    run = simulate(items, setup, p_stall=0.3, seed=8)
    results = check(run, setup)
    counts = actions(results)
    assert all(counts[a] > 10 for a in SynMatchAction), str(counts)
    assert run.refused


def test_one_frame_a_clock_and_latency():
    # Back to back with o.ready high: a frame accepted every clock but the one a refill
    # interval keeps free, each verdict LATENCY clocks after its frame; with the full 2**17
    # interval the matcher takes 10GbE's minimum-frame rate (one per 8 clocks) 8 times over.
    rng = random.Random(9)
    services = [random_service(rng) for _ in range(params.SYN_SERVICES)]
    rules = [random_rule(rng) for _ in range(params.SYN_RULES)]
    frames = [random_frame(rng, services, rules) for _ in range(600)]
    run = simulate(writes_of(services, rules) + frames, Setup(global_cap=(4, 8)), seed=9)
    check(run, Setup(global_cap=(4, 8)))
    first, last = run.accepted[0], run.accepted[-1]
    span = last - first + 1
    # The clocks refused are the two whose frames would reach S3 in the interval's last clock,
    # when the buckets refill, or in the one before (the global take is applied a clock late).
    mask = (1 << INTERVAL_LOG2) - 1
    refills = [c for c in range(first, last + 1)
               if c & mask in (mask - 1 - SynMatcher.CAPS_CLOCK, mask - SynMatcher.CAPS_CLOCK)]
    assert span == len(frames) + len(refills)
    assert run.refused == refills
    assert [t - a for a, t in zip(run.accepted, run.taken, strict=True)] == (
        [SynMatcher.latency] * len(frames))


def test_writes_take_effect_between_frames():
    # The one service and the one rule every frame matches, rewritten every one to three frames
    # under back-to-back SYNs and ACKs (mode, MSS, window, shift; ALLOW capped with a new
    # burst, DENY, the slot emptied): each frame's verdict is the one of the tables written
    # before it was accepted (WRITE_DELAY), in every stage, its bucket's too.
    rng = random.Random(10)
    items = []
    for _ in range(160):
        items.append(("service", 0, rng.choice([
            None, Service(bytes(4), 80, prefix_len=0, mode=rng.choice(list(ServiceMode)),
                          mss=rng.getrandbits(16), window=rng.getrandbits(16),
                          wscale=rng.randrange(15))])))
        for _ in range(rng.randrange(1, 4)):
            items.append(make_frame(rng, ipv6=False, src=rng.randbytes(4), dst=rng.randbytes(4),
                                    dport=80, flags=SYN if rng.random() < 0.8 else ACK))
        items.append(("rule", 0, rng.choice([
            None, Rule(bytes(4), 0, RuleAction.DENY),
            Rule(bytes(4), 0, rate=0, burst=rng.randrange(3))])))
        for _ in range(rng.randrange(1, 4)):
            items.append(make_frame(rng, ipv6=False, src=rng.randbytes(4), dst=rng.randbytes(4),
                                    dport=80, flags=SYN))
    setup = Setup(default_deny=True)
    results = check(simulate(items, setup, seed=10), setup)
    counts = actions(results)
    assert all(counts[a] > 10 for a in SynMatchAction if a is not SynMatchAction.PASS), counts


def test_capped_by_one_bucket_takes_from_neither():
    # Both caps at once: the global bucket (1 a 128-clock interval) runs dry first, and the SYNs
    # it caps must leave the rule's bucket (no refill, 6 tokens) untouched: it lasts 6
    # intervals, not fewer.
    rng = random.Random(11)
    setup = Setup(global_cap=(1, 1))
    services = [Service(bytes(4), 80, prefix_len=0)]
    rules = [Rule(bytes([10, 0, 0, 0]), 8, rate=0, burst=6)]
    items = writes_of(services, rules)
    for _ in range(10):
        for _ in range(4):
            items.append(make_frame(rng, ipv6=False, src=bytes([10, 1, 2, 3]),
                                    dst=rng.randbytes(4), dport=80, flags=SYN))
        items.append(("idle", 130))
    results = check(simulate(items, setup, seed=11), setup)
    counts = actions(results)
    assert counts[SynMatchAction.CAPPED] > 20 and counts[SynMatchAction.MAKE] >= 6, counts
