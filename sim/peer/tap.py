"""Attach to a TAP device that lives in another network namespace, without blocking.

A TAP is found by name in the network namespace of the thread that attaches (``TUNSETIFF``), but
once attached its file descriptor works from anywhere. :func:`open_tap` therefore steps into the
namespace (``setns``, which Python 3.11's ``os`` lacks, through libc), attaches and steps back at
once: the simulator process keeps its own namespace for everything else.

:class:`Tap` reads whole frames (one ``read`` is one frame) without ever waiting: the simulator
must not stall on the kernel.
"""

import ctypes
import errno
import fcntl
import os
import struct
from pathlib import Path

__all__ = ["Tap", "open_tap"]

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
#: Largest frame a read returns: the TAP's 1500-byte MTU plus the Ethernet header, with room for
#: a VLAN tag; longer reads are harmless.
READ_BYTES = 2048


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def open_tap(netns: Path | str | None, name: str) -> int:
    """A non-blocking file descriptor attached to the TAP ``name`` of the namespace whose handle
    is ``netns`` (``/run/netns/NAME``; None: this process's namespace)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY) if netns is not None else None
    try:
        if target is not None:
            _setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(),
                                                        _IFF_TAP | _IFF_NO_PI))
            except OSError:
                os.close(fd)
                raise
        finally:
            if target is not None:
                _setns(own)
    finally:
        os.close(own)
        if target is not None:
            os.close(target)
    return fd


class Tap:
    """Frames in and out of an attached TAP file descriptor, never blocking.

    Members
    -------
    write_drops : int
        Frames the kernel refused (its queue full): on a real wire, frames lost in the cable.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.write_drops = 0

    def read_frames(self, limit: int) -> list[bytes]:
        """Up to ``limit`` frames the kernel has sent, oldest first; [] when none is waiting."""
        frames = []
        while len(frames) < limit:
            try:
                frames.append(os.read(self.fd, READ_BYTES))
            except BlockingIOError:
                break
        return frames

    def write_frame(self, frame: bytes) -> bool:
        """Give ``frame`` to the kernel; False (and counted) if it had no room."""
        try:
            os.write(self.fd, frame)
            return True
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ENOBUFS):
                raise
            self.write_drops += 1
            return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
