"""Batches of relayed datagrams: bounded in bytes, in order, never empty."""

from collections import deque

from client_sdk.protocol.relay_frames import BATCH_BYTES, take_batch


def test_a_batch_takes_what_fits_in_order() -> None:
    queue = deque([b"a" * 600, b"b" * 600, b"c" * 600])
    assert take_batch(queue, 1200) == [b"a" * 600, b"b" * 600]
    assert list(queue) == [b"c" * 600]


def test_an_oversized_datagram_still_moves_alone() -> None:
    queue = deque([b"x" * 5000, b"y"])
    assert take_batch(queue, 1200) == [b"x" * 5000]
    assert take_batch(queue, 1200) == [b"y"]
    assert not queue


def test_the_default_batch_fits_the_relays_message_limit() -> None:
    """Framing adds at most 3 bytes per datagram of QUIC's size (tag and 2-byte length);
    the relay refuses messages over 64 KiB by default."""
    queue = deque([b"q" * 1200] * 100)
    batch = take_batch(queue)
    assert sum(map(len, batch)) <= BATCH_BYTES
    assert sum(len(d) + 3 for d in batch) < 64 << 10
