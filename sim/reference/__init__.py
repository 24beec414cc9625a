"""Golden models in plain Python: RSS Toeplitz hash, Internet checksums, the receive status word."""
