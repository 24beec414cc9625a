"""Every failing path of a placed-and-routed design, from nextpnr's SDF (``inic synth --paths``).

nextpnr reports one critical path per clock; closing timing on a block means knowing all of them.
This reads the SDF nextpnr writes (``--sdf``: every cell delay as an IOPATH, every routed net as
an INTERCONNECT, every setup check), propagates arrival times from each register's (or block
RAM's) clock-to-output, and lists the endpoints that miss the clock period, grouped by their start
and end register's name (the HDL name with nextpnr's cell suffixes stripped), worst first, with
the worst path of each group hop by hop.

It was written to close the CCB table's timing (docs/ccb_table.md, Synthesis), where the worst
path alone kept hiding hundreds of others. Paths from the reset pin are left out, as nextpnr
leaves them out of the clock's Fmax; constants are not timed.
"""

import re
from collections import defaultdict, deque
from dataclasses import dataclass

__all__ = ["PathGroup", "failing_paths", "format_paths"]

_TOKEN = re.compile(r'\(|\)|"[^"]*"|(?:\\.|[^\s()"])+')
#: Pins whose IOPATHs start at a clock: a register's or a block RAM's clock-to-output.
_CLOCK_PINS = ("CLK", "CLKA", "CLKB")


@dataclass(frozen=True)
class PathGroup:
    """Failing endpoints sharing a start and an end register name."""
    start: str
    end: str
    slack_ps: float             # the worst of the group (negative)
    endpoints: int
    path: tuple                 # ((arrival ps, "cell/pin"), ...) of the worst endpoint


def _parse(text):
    stack = [[]]
    for token in _TOKEN.findall(text):
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    return stack[0][0]


def _unescape(name):
    return re.sub(r"\\(.)", r"\1", name)


def _delay(values):
    """The largest number of ``((min:typ:max) ...)`` in ps."""
    best = 0.0
    for value in values:
        if isinstance(value, list) and value:
            for part in value[0].split(":"):
                if part:
                    best = max(best, float(part))
    return best


def _register(node):
    cell = node.rsplit("/", 1)[0]
    cell = re.sub(r"_TRELLIS_FF_Q(_\d+)?$|\$.*$|_LUT4.*$|_CCU2C.*$|_DP16KD.*$", "", cell)
    return re.sub(r"(\.\d+)+$", "", cell)


def failing_paths(sdf_text, period_ps):
    """The failing endpoints of ``sdf_text`` at ``period_ps``: ``(endpoints checked, [PathGroup,
    ...] worst first)``."""
    edges = defaultdict(list)       # "cell/pin" -> [("cell/pin", ps)]
    launch, setup = {}, {}
    for cell in _parse(sdf_text):
        if not (isinstance(cell, list) and cell and cell[0] == "CELL"):
            continue
        instance = next((_unescape(item[1]) if len(item) > 1 else "" for item in cell
                         if isinstance(item, list) and item[0] == "INSTANCE"), "")
        for item in cell:
            if not (isinstance(item, list) and item[0] in ("DELAY", "TIMINGCHECK")):
                continue
            for block in item[1:]:
                entries = block[1:] if isinstance(block, list) and block[0] in (
                    "ABSOLUTE", "INCREMENT") else [block]
                for entry in entries:
                    if not isinstance(entry, list):
                        continue
                    if entry[0] == "IOPATH":
                        source, sink = entry[1], f"{instance}/{_unescape(entry[2])}"
                        delay = _delay(entry[3:])
                        if isinstance(source, list) or source in _CLOCK_PINS:
                            launch[sink] = max(launch.get(sink, 0.0), delay)
                        else:
                            edges[f"{instance}/{_unescape(source)}"].append((sink, delay))
                    elif entry[0] == "INTERCONNECT":
                        source = _unescape(entry[1])
                        if not source.startswith("$PACKER_"):       # constants
                            edges[source].append((_unescape(entry[2]), _delay(entry[3:])))
                    elif entry[0] in ("SETUP", "SETUPHOLD"):
                        pin = entry[1][-1] if isinstance(entry[1], list) else entry[1]
                        node = f"{instance}/{_unescape(pin)}"
                        setup[node] = max(setup.get(node, 0.0), _delay(entry[3:4]))
    # Longest paths in topological order (Kahn); only clock-to-outputs start paths.
    nodes = set(edges) | set(launch) | set(setup)
    indegree = defaultdict(int)
    for outs in edges.values():
        for sink, _ in outs:
            indegree[sink] += 1
            nodes.add(sink)
    arrival = {n: launch.get(n, float("-inf")) for n in nodes}
    previous = {}
    queue = deque(n for n in nodes if indegree[n] == 0)
    while queue:
        node = queue.popleft()
        for sink, delay in edges.get(node, ()):
            if sink not in launch and arrival[node] + delay > arrival[sink]:
                arrival[sink] = arrival[node] + delay
                previous[sink] = node
            indegree[sink] -= 1
            if indegree[sink] == 0:
                queue.append(sink)
    groups = {}
    for node, setup_ps in setup.items():
        if arrival.get(node, float("-inf")) == float("-inf"):
            continue
        slack = period_ps - arrival[node] - setup_ps
        if slack >= 0:
            continue
        chain = [node]
        while chain[-1] in previous:
            chain.append(previous[chain[-1]])
        if chain[-1].startswith("rst"):
            continue
        key = (_register(chain[-1]), _register(node))
        path = tuple((arrival[n], n) for n in reversed(chain))
        if key not in groups or slack < groups[key][0]:
            groups[key] = (slack, groups.get(key, (0, 0))[1] + 1, path)
        else:
            groups[key] = (groups[key][0], groups[key][1] + 1, groups[key][2])
    ranked = sorted(groups.items(), key=lambda item: item[1][0])
    return len(setup), [PathGroup(start, end, slack, count, path)
                        for (start, end), (slack, count, path) in ranked]


def format_paths(checked, groups, *, detail=5):
    """A text report: one line per group, then the ``detail`` worst groups hop by hop."""
    failing = sum(group.endpoints for group in groups)
    lines = [f"{failing} failing endpoints of {checked}, in {len(groups)} groups "
             "(start -> end register):"]
    lines += [f"{g.slack_ps:8.0f} ps  x{g.endpoints:<5d} {g.start} -> {g.end}" for g in groups]
    for group in groups[:detail]:
        lines += ["", f"{group.slack_ps:.0f} ps: {group.start} -> {group.end}"]
        before = 0.0
        for arrival, node in group.path:
            lines.append(f"  {arrival:7.0f} ps (+{arrival - before:5.0f})  {node}")
            before = arrival
    return "\n".join(lines)
