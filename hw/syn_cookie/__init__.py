"""The SYN-cookie unit (SPEC §9; design: docs/syn_cookie.md). Formats: :mod:`.layouts`;
golden model: sim/reference/syn_cookie.py. The gateware comes in later steps of issue 11."""
