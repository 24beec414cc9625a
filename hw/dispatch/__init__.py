"""The dispatcher: every received frame's CCB-table lookup, between the packet buffer and the
receive engine (docs/fast_path.md)."""
