"""The fast path (issue 10): receive engine, CCB mover, ACK builder (docs/fast_path.md)."""
