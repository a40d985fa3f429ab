"""Relay frames of several datagrams (``RelayFrame.datagrams``), for both sides.

One gRPC stream message per QUIC datagram made the relay cost a stream message (~tens of
microseconds of Python on each of four hops: client write, relay read, relay write, client
read) per 1200-byte packet, which capped a relayed connection near 2-3 MB/s. Whatever is
queued when the stream is ready for its next message now leaves as one frame, up to
``BATCH_BYTES``. Each side sends batches only to a peer that announced it reads them
(``RelayJoin.batches``, ``RelayReady.batches``), so old clients and relays keep working.
"""

from __future__ import annotations

from collections import deque

# Half the relay's default limit on a received message (``limits.max_message_bytes``,
# 64 KiB), framing included; ~27 datagrams of QUIC's 1200 bytes.
BATCH_BYTES = 32 << 10


def take_batch(queue: deque[bytes], limit: int = BATCH_BYTES) -> list[bytes]:
    """Pop datagrams off the front of ``queue`` while they fit in ``limit`` bytes; always
    at least one (``queue`` must not be empty), so an oversized datagram still moves on
    (the relay refuses it by its own per-datagram limit)."""
    batch = [queue.popleft()]
    size = len(batch[0])
    while queue and size + len(queue[0]) <= limit:
        datagram = queue.popleft()
        batch.append(datagram)
        size += len(datagram)
    return batch
