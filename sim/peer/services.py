"""What the host stack does with the connections ``inic peer`` serves (pure Python: the same
services run between two :class:`host_driver.tcp.TcpStack` in the unit tests).

- ``echo`` (the default): sends back every byte it receives; closes when the peer closes.
- ``discard``: reads and drops everything; closes when the peer closes.
- ``reply:N``: reads everything until the peer closes its side, then sends N bytes
  (:func:`sim.peer.pattern.pattern` with ``REPLY_SEED``) and closes: a half-close test.

With an offload (:class:`host_driver.offload.HostOffload`, ``inic peer`` without
``--no-offload``) a service reads each connection through posted receives
(:class:`sim.offload_app.Reader`): once the connection is handed out, the NIC places the payload
straight into those buffers (RCVMDL); before, and after a flush, the host copies into them. Each
receive holds ``SEGMENTS_PER_RECEIVE`` of the peer's full segments: a segment longer than the space
left in an RCVMDL flushes the connection (SPEC §8), so the size is a multiple of the segment's.

Each connection's figures (bytes each way, a SHA-256 of what arrived, its negotiated options, its
TCP counters) end up in ``inic peer --json``.
"""

import dataclasses
import hashlib
import types

from host_driver.tcp import Connection, State

from ..offload_app import Reader
from .pattern import REPLY_SEED, pattern

__all__ = ["Service", "ServedConnection", "parse_service", "SERVICES"]

SERVICES = ("echo", "discard", "reply:N")
#: Bytes taken from a connection's receive queue per poll.
RECV_CHUNK = 1 << 20
#: With an offload: full segments of the peer per posted receive (as sim/offload_app.py's Reader).
SEGMENTS_PER_RECEIVE = 45
TIMESTAMP_OPTION_BYTES = 12


def parse_service(text: str) -> tuple[str, int]:
    """``(kind, reply_bytes)`` from ``echo``, ``discard`` or ``reply:N``; `ValueError` otherwise."""
    kind, _, count = text.partition(":")
    if kind in ("echo", "discard") and not count:
        return kind, 0
    if kind == "reply" and count.isdigit():
        return kind, int(count)
    raise ValueError(f"service {text!r}: expected one of {', '.join(SERVICES)}")


@dataclasses.dataclass
class ServedConnection:
    """One connection a :class:`Service` serves, and what crossed it."""
    conn: Connection
    bytes_in: int = 0
    bytes_out: int = 0
    replied: bool = False
    closed: bool = False
    reader: Reader | None = None     # the posted receives, with an offload
    _hash: "hashlib._Hash" = dataclasses.field(default_factory=hashlib.sha256, repr=False)

    @property
    def done(self) -> bool:
        """Both sides closed (the connection reached CLOSED or TIME-WAIT)."""
        return self.conn.state in (State.CLOSED, State.TIME_WAIT)

    def summary(self) -> dict:
        c = self.conn
        return {
            "local_port": c.local_port, "remote": c.remote_ip, "remote_port": c.remote_port,
            "state": c.state.value, "error": c.error, "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out, "sha256_in": self._hash.hexdigest(),
            "options": negotiated(c), "stats": dataclasses.asdict(c.stats),
        }


def negotiated(conn: Connection) -> dict:
    """The options a connection agreed on with its peer, as the host stack sees them."""
    return {"send_mss": conn.send_mss,
            "snd_wscale": getattr(conn, "snd_wscale", None),
            "rcv_wscale": getattr(conn, "rcv_wscale", None),
            "sack": getattr(conn, "sack_permitted", False),
            "timestamps": getattr(conn, "timestamps", False)}


class Service:
    """Serves ``kind`` (see the module docstring) on every connection given to :meth:`serve`;
    call :meth:`poll` after each step of the stack (with ``offload``, a
    :class:`host_driver.offload.HostOffload`, after its :meth:`~HostOffload.pump`): each
    connection is then read through posted receives once its handshake is done."""

    def __init__(self, kind: str = "echo", reply_bytes: int = 0, offload=None):
        if kind not in ("echo", "discard", "reply"):
            raise ValueError(f"unknown service {kind!r}")
        self.kind, self.reply_bytes = kind, reply_bytes
        self.offload = offload
        self.connections: list[ServedConnection] = []

    def serve(self, conn: Connection) -> ServedConnection:
        served = ServedConnection(conn)
        self.connections.append(served)
        return served

    def _reader(self, conn: Connection) -> Reader:
        """Posted receives for ``conn`` (synchronized: its MSS and options agreed). The peer's
        full segment is the MSS less the timestamp option (one MTU both ways)."""
        segment = conn.send_mss - TIMESTAMP_OPTION_BYTES * bool(conn.timestamps)
        setup = types.SimpleNamespace(offload=self.offload, memory=self.offload.memory)
        return Reader(setup, conn, chunk=SEGMENTS_PER_RECEIVE * segment)

    def poll(self) -> None:
        for served in self.connections:
            if not served.closed:
                self._move(served)

    def _move(self, served: ServedConnection) -> None:
        conn = served.conn
        if conn.state is State.CLOSED:
            served.closed = True
            return
        if self.offload is not None and served.reader is None:
            if conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
                return      # nothing to read before the handshake ends
            served.reader = self._reader(conn)
        for data in self._received(served):
            served.bytes_in += len(data)
            served._hash.update(data)
            if self.kind == "echo":
                conn.send(data)
                served.bytes_out += len(data)
        if conn.eof and (served.reader is None or not served.reader.posted):
            if self.kind == "reply" and not served.replied:
                conn.send(pattern(self.reply_bytes, REPLY_SEED))
                served.bytes_out += self.reply_bytes
                served.replied = True
            conn.close()
            served.closed = True

    @staticmethod
    def _received(served: ServedConnection):
        """What arrived since the last poll: from the posted receives that completed (with an
        offload), else from the receive queue."""
        conn, reader = served.conn, served.reader
        if reader is not None:
            reader.pump()
            if reader.data:
                yield bytes(reader.data)
                reader.data.clear()
            return
        while data := conn.recv(RECV_CHUNK) if conn.recv_queue else b"":
            yield data

    @property
    def done(self) -> bool:
        return all(s.done for s in self.connections)
