"""inic host side: the host-driver model (rings, commands, events) and its host stack.

The driver model arrives with the host-interface issue; until then this package is empty.
"""
