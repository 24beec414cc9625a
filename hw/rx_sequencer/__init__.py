"""Receive sequencer (SPEC §3): parse, validate and summarize every frame at line rate."""

from .sequencer import RxSequencer

__all__ = ["RxSequencer"]
