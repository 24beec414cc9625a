"""CCB table (SPEC §3, issue 9): TCP 4-tuple -> conn_nbr + state, one lookup per clock."""

from .table import CcbTable

__all__ = ["CcbTable"]
