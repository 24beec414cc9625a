"""Golden models in plain Python: RSS Toeplitz hash, SipHash, Internet checksums, the receive status
word, the SYN-cookie unit (syn_cookie.py)."""
