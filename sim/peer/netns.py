"""The kernel's side of the wire: a network namespace holding one TAP device.

:class:`PeerNamespace` creates the namespace, the TAP device in it (the kernel's end of the wire,
with its own MAC, IPv4 and IPv6 address) and the namespace's TCP settings, and deletes it all again
when its ``with`` block ends, whatever the reason (an exception, Ctrl-C, SIGTERM, SIGHUP: those
signals are turned into exceptions while the block runs). The TAP is persistent until then, so the
simulation process can attach to it (:func:`sim.peer.tap.open_tap`) and detach without the
kernel's addresses going away.

Only addresses inside the namespace are used (SPEC §10): the kernel's end is ``PEER``, the host
stack behind the simulated NIC is ``HOST``; both live on the namespace's one link.
"""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["Interrupted", "Endpoint", "HOST", "PEER", "TAP_NAME", "DEFAULT_NAMESPACE", "TcpOptions",
           "PeerNamespace", "NamespaceError", "missing_requirement", "unique_namespace_name"]


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One end of the namespace's link: MAC, IPv4 and IPv6 address (both in one /24 and /64)."""
    mac: str
    ipv4: str
    ipv6: str
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64


#: The host stack behind the simulated NIC (answers ARP and neighbour solicitations itself).
HOST = Endpoint("02:00:00:00:00:01", "10.77.0.1", "fd77::1")
#: The kernel's TAP end inside the namespace.
PEER = Endpoint("02:00:00:00:00:02", "10.77.0.2", "fd77::2")
TAP_NAME = "inic0"
DEFAULT_NAMESPACE = "inic-peer"
NETNS_DIR = Path("/run/netns")


@dataclasses.dataclass(frozen=True)
class TcpOptions:
    """The namespace kernel's TCP options (its per-namespace sysctls); Linux's defaults are on."""
    timestamps: bool = True
    sack: bool = True
    window_scaling: bool = True

    def sysctls(self) -> dict[str, str]:
        return {"net.ipv4.tcp_timestamps": str(int(self.timestamps)),
                "net.ipv4.tcp_sack": str(int(self.sack)),
                "net.ipv4.tcp_window_scaling": str(int(self.window_scaling))}


class NamespaceError(RuntimeError):
    """The namespace could not be made; the message is one line for the user."""


def missing_requirement() -> str | None:
    """Why this process cannot run a kernel peer (one line), or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and TAP devices): run it as root"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (the TUN/TAP driver), which this machine does not have"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2): apt-get install iproute2"
    return None


def unique_namespace_name(tag: str) -> str:
    """A namespace name unique to this process (parallel test workers never share one)."""
    return f"inic-t{os.getpid()}-{tag}"[:15]


_TEST_NAME = re.compile(r"inic-t(\d+)-")


def remove_stale_test_namespaces() -> list[str]:
    """Delete test namespaces whose process is gone (a worker killed with SIGKILL cannot clean
    up after itself); returns their names."""
    removed = []
    for path in NETNS_DIR.glob("inic-t*") if NETNS_DIR.is_dir() else ():
        match = _TEST_NAME.match(path.name)
        if match and not Path(f"/proc/{match[1]}").exists():
            subprocess.run(["ip", "netns", "delete", path.name], capture_output=True)
            removed.append(path.name)
    return removed


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise NamespaceError(f"`{' '.join(argv)}` failed: {message[-1] if message else '?'}")
    return result.stdout


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived while the namespace existed (raised to unwind to the cleanup)."""


@contextmanager
def _signals_raise():
    """SIGTERM and SIGHUP raise :class:`Interrupted` while the block runs (SIGINT already raises
    KeyboardInterrupt), so ``finally`` clauses run; the old handlers come back afterwards."""
    def interrupt(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    old = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with suppress(ValueError):      # not the main thread: leave the handlers alone
            old[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


class PeerNamespace:
    """A network namespace ``name`` with the TAP ``TAP_NAME`` as the kernel's end of the wire.

    Use as a context manager; it exists inside the ``with`` block only. The TAP gets ``peer``'s
    MAC and addresses (IPv6 without duplicate address detection, so it is usable at once), and the
    namespace's kernel the TCP ``options``.

    Members
    -------
    name, peer, host, options : str, Endpoint, Endpoint, TcpOptions
        As given.
    """

    def __init__(self, name: str = DEFAULT_NAMESPACE, *, peer: Endpoint = PEER,
                 host: Endpoint = HOST, options: TcpOptions | None = None):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name):
            raise ValueError(f"namespace name {name!r}: 1-15 of A-Z a-z 0-9 _ . -")
        self.name, self.peer, self.host = name, peer, host
        self.options = options or TcpOptions()
        self._created = False

    @property
    def path(self) -> Path:
        """The namespace's handle (what ``setns`` opens)."""
        return NETNS_DIR / self.name

    def __enter__(self):
        problem = missing_requirement()
        if problem:
            raise NamespaceError(problem)
        if self.path.exists():
            raise NamespaceError(f"network namespace {self.name} exists already (another "
                                 f"`inic peer` running? remove it: ip netns delete {self.name})")
        self._signals = _signals_raise()
        self._signals.__enter__()
        try:
            _run("ip", "netns", "add", self.name)
            self._created = True
            self._configure()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self._created:
                subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
                self._created = False
        finally:
            self._signals.__exit__(None, None, None)
        return False

    def _configure(self):
        ip = ("ip", "-n", self.name)
        for key, value in {"net.ipv6.conf.all.accept_dad": "0",
                           "net.ipv6.conf.default.accept_dad": "0",
                           # No router in this namespace: do not ask for one every few seconds.
                           "net.ipv6.conf.default.router_solicitations": "0",
                           **self.options.sysctls()}.items():
            self.sysctl(key, value)
        _run(*ip, "link", "set", "lo", "up")
        _run(*ip, "tuntap", "add", "dev", TAP_NAME, "mode", "tap")
        _run(*ip, "link", "set", TAP_NAME, "address", self.peer.mac, "mtu", "1500")
        _run(*ip, "addr", "add", f"{self.peer.ipv4}/{self.peer.ipv4_prefix}", "dev", TAP_NAME)
        _run(*ip, "-6", "addr", "add", f"{self.peer.ipv6}/{self.peer.ipv6_prefix}", "dev",
             TAP_NAME, "nodad")
        _run(*ip, "link", "set", TAP_NAME, "up")

    def sysctl(self, key: str, value: str) -> None:
        """Set ``key`` to ``value`` in the namespace (per-namespace sysctls only)."""
        path = Path("/proc/sys") / key.replace(".", "/")
        _run("ip", "netns", "exec", self.name, "sh", "-c", f"echo {value} > {path}")

    def read_sysctl(self, key: str) -> str:
        path = Path("/proc/sys") / key.replace(".", "/")
        return _run("ip", "netns", "exec", self.name, "cat", str(path)).strip()

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def environment(self, port: int) -> dict[str, str]:
        """What a command run in the namespace is told (``--run``): where the host stack is."""
        return {"INIC_HOST_IPV4": self.host.ipv4, "INIC_HOST_IPV6": self.host.ipv6,
                "INIC_HOST_MAC": self.host.mac, "INIC_PEER_IPV4": self.peer.ipv4,
                "INIC_PEER_IPV6": self.peer.ipv6, "INIC_PORT": str(port),
                "INIC_NETNS": self.name}
