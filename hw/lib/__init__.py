"""Parts more than one block uses: checksum accumulator, FIFOs, counter bank, byte order, SipHash.

A block imports these, never another block's private parts.
"""
