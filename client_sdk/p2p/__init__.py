"""Peer-to-peer connections: ICE (aioice) and the supernode relay as datagram paths, QUIC
(aioquic, sans-IO) over whichever path wins, peers authenticated by the transport keys in
their signed device records. The supernode routes signaling and, as a last resort,
ciphertext; it can neither read nor hijack a connection.
"""
