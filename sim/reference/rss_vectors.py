"""Microsoft's published RSS verification vectors, the one copy every test uses.

# Ref: Microsoft NDIS docs, "Verifying the RSS Hash Calculation" (default key hw.params.MS_RSS_KEY);
# the same table is in the Intel 82599 datasheet. The table has five IPv4 rows and three IPv6 rows.
"""

__all__ = ["MS_RSS_VECTORS"]

#: (source address, source port, destination address, destination port,
#:  hash of the 2-tuple, hash of the 4-tuple)
MS_RSS_VECTORS = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323E8FC2, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xD718262A, 0xC626B0EA),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xD2D0A5DE, 0x5C2B394A),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xAFC7327F),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x5D1809C5, 0x10E828A2),
    ("3ffe:2501:200:1fff::7", 2794, "3ffe:2501:200:3::1", 1766, 0x2CC18CD5, 0x40207D3D),
    ("3ffe:501:8::260:97ff:fe40:efab", 14230, "ff02::1", 4739, 0x0F0C461C, 0xDDE51BBF),
    ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, "fe80::200:f8ff:fe21:67cf", 38024,
     0x4B61E985, 0x02D1FEEF),
]
