"""Transmit side: frames from several sources onto MAC TX (docs/tx_path.md)."""
