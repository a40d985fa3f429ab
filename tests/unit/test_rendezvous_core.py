"""Signaling, tickets and the relay as pure state, with injected clocks."""

import pytest

from client_sdk.protocol.v1 import rendezvous_pb2 as pb
from supernode.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SupernodeError,
)
from supernode.overload import Overloaded
from supernode.ratelimit import TokenBuckets
from supernode.rendezvous.relay import RelayHub, RelayLimits, RelaySide
from supernode.rendezvous.signaling import Answer, Switchboard
from supernode.rendezvous.tickets import Endpoint, TicketAuthority

ALICE, BOB, CAROL = Endpoint("alice", "a1"), Endpoint("bob", "b1"), Endpoint("carol", "c1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def seconds(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tickets(clock: Clock) -> TicketAuthority:
    return TicketAuthority(b"k" * 32, clock_ms=clock.ms, ttl_ms=60_000)


def test_ticket_binds_two_devices_and_expires(tickets: TicketAuthority, clock: Clock) -> None:
    raw, issued = tickets.issue(ALICE, BOB)
    ticket = tickets.verify(raw)
    assert ticket == issued
    assert ticket.side_of("alice", "a1") == 0 and ticket.side_of("bob", "b1") == 1
    with pytest.raises(PermissionDenied):
        ticket.side_of("alice", "other-device")
    with pytest.raises(PermissionDenied, match="not issued by this supernode"):
        TicketAuthority(b"x" * 32, clock_ms=clock.ms, ttl_ms=1).verify(raw)
    with pytest.raises(PermissionDenied):
        tickets.verify(b"short")
    clock.now += 60
    with pytest.raises(DeadlineExceeded):
        tickets.verify(raw)


def switchboard(
    tickets: TicketAuthority,
    clock: Clock,
    live: set[Endpoint] | None = None,
    *,
    offer_rate: float = 1,
    offer_burst: int = 2,
    **bounds: int,
) -> Switchboard:
    """``live``: the devices that may listen (None: every device)."""
    return Switchboard(
        tickets,
        TokenBuckets(rate=offer_rate, burst=offer_burst, clock=clock.seconds),
        is_live=lambda h, d: live is None or Endpoint(h, d) in live,
        clock_ms=clock.ms,
        answer_timeout_ms=5_000,
        **bounds,
    )


def test_offer_answer_round_trip(tickets: TicketAuthority, clock: Clock) -> None:
    board = switchboard(tickets, clock, {ALICE, BOB})
    delivered: list[pb.IncomingOffer] = []
    board.listen(BOB, delivered.append, lambda e: None)
    answers: list[Answer] = []
    pending = board.offer(b"s", ALICE, BOB, b"offer", answers.append)
    assert [(o.offer_id, o.from_handle, o.payload) for o in delivered] == [
        (pending.offer_id, "alice", b"offer")
    ]
    with pytest.raises(PermissionDenied):
        board.answer("carol", pending.offer_id, Answer(b"x", False, ""))
    board.answer("bob", pending.offer_id, Answer(b"answer", False, ""))
    assert answers == [Answer(b"answer", False, "")]
    with pytest.raises(NotFound):
        board.answer("bob", pending.offer_id, Answer(b"again", False, ""))


def test_offer_refusals(tickets: TicketAuthority, clock: Clock) -> None:
    board = switchboard(tickets, clock, {ALICE, BOB})
    with pytest.raises(FailedPrecondition, match="not listening"):
        board.offer(b"s", ALICE, BOB, b"", lambda a: None)
    with pytest.raises(FailedPrecondition, match="from_device_id"):
        board.offer(b"s", CAROL, BOB, b"", lambda a: None)
    with pytest.raises(ResourceExhausted, match="rate limit"):
        board.offer(b"s", ALICE, BOB, b"", lambda a: None)  # third offer within burst 2
    with pytest.raises(FailedPrecondition, match="no live record"):
        board.listen(CAROL, lambda o: None, lambda e: None)


def test_listen_replacement_and_close(tickets: TicketAuthority, clock: Clock) -> None:
    board = switchboard(tickets, clock, {BOB})
    ended: list[SupernodeError] = []
    first = board.listen(BOB, lambda o: None, ended.append)
    second = board.listen(BOB, lambda o: None, ended.append)
    assert isinstance(ended[0], Aborted)
    board.stop_listening(first)  # the replaced one leaving does not unregister the new one
    assert board.listening == 1
    board.close()
    assert board.closed and board.listening == 0 and len(ended) == 2
    del second


class Side:
    def __init__(self) -> None:
        self.ready = 0
        self.received: list[bytes] = []
        self.ended: list[SupernodeError | None] = []

    def relay_side(self) -> RelaySide:
        return RelaySide(
            lambda: setattr(self, "ready", self.ready + 1), self.received.append, self.ended.append
        )


def test_relay_pairs_forwards_and_limits(tickets: TicketAuthority, clock: Clock) -> None:
    hub = RelayHub(tickets, RelayLimits(max_bytes=100, max_bytes_per_second=60,
                                        idle_timeout_seconds=10, max_datagram_bytes=50),
                   clock=clock.seconds)  # fmt: skip
    raw, _ = tickets.issue(ALICE, BOB)
    a, b = Side(), Side()
    session, ia = hub.join(raw, "alice", "a1", a.relay_side(), clock.ms())
    assert not session.ready and a.ready == 0
    hub.forward(session, ia, b"early")  # nobody there yet: dropped
    _, ib = hub.join(raw, "bob", "b1", b.relay_side(), clock.ms())
    assert a.ready == b.ready == 1 and hub.sessions == 1
    with pytest.raises(PermissionDenied, match="already used"):
        hub.join(raw, "bob", "b1", Side().relay_side(), clock.ms())
    hub.forward(session, ia, b"x" * 40)
    hub.forward(session, ib, b"y" * 20)
    hub.forward(session, ia, b"z" * 10)  # over 60 bytes per second: dropped
    assert b.received == [b"x" * 40] and a.received == [b"y" * 20]
    with pytest.raises(ResourceExhausted, match="at most 50"):
        hub.forward(session, ia, b"x" * 51)
    clock.now += 1
    hub.forward(session, ia, b"x" * 40)
    with pytest.raises(ResourceExhausted, match="100 bytes"):
        hub.forward(session, ia, b"x" * 1)
    hub.leave(session, ia, None)
    assert b.ended == [None] and hub.sessions == 0


def test_relay_sweeps_idle_and_abandoned_sessions(tickets: TicketAuthority, clock: Clock) -> None:
    hub = RelayHub(tickets, RelayLimits(idle_timeout_seconds=10), clock=clock.seconds)
    raw, _ = tickets.issue(ALICE, BOB)
    a, b = Side(), Side()
    hub.join(raw, "alice", "a1", a.relay_side(), clock.ms())
    hub.join(raw, "bob", "b1", b.relay_side(), clock.ms())
    lonely_raw, _ = tickets.issue(ALICE, CAROL)
    lonely = Side()
    hub.join(lonely_raw, "alice", "a1", lonely.relay_side(), clock.ms())
    clock.now += 61  # past idle timeout and ticket expiry
    assert hub.sweep(clock.ms()) == 2
    assert "idle" in str(a.ended[0]) and "never joined" in str(lonely.ended[0])


def test_offers_unread_by_a_listener_are_bounded_in_bytes(
    tickets: TicketAuthority, clock: Clock
) -> None:
    board = switchboard(
        tickets,
        clock,
        offer_rate=1000,
        offer_burst=1000,
        max_queued_bytes=150_000,
        max_node_queued_bytes=1 << 20,
    )
    delivered: list[pb.IncomingOffer] = []
    ended: list[SupernodeError] = []
    listener = board.listen(BOB, delivered.append, ended.append)
    for _ in range(2):
        board.offer(b"s", ALICE, BOB, b"x" * 60_000, lambda a: None)
    assert board.queued_bytes == listener.queued_bytes > 120_000
    with pytest.raises(FailedPrecondition, match="not reading its offers"):
        board.offer(b"s", ALICE, BOB, b"x" * 60_000, lambda a: None)
    assert len(ended) == 1 and isinstance(ended[0], ResourceExhausted)
    assert board.listening == 0 and board.queued_bytes == 0
    with pytest.raises(FailedPrecondition, match="not listening"):
        board.offer(b"s", ALICE, BOB, b"x", lambda a: None)


def test_offers_unread_on_the_node_are_bounded_and_retried_later(
    tickets: TicketAuthority, clock: Clock
) -> None:
    board = switchboard(
        tickets,
        clock,
        offer_rate=1000,
        offer_burst=1000,
        max_queued_bytes=130_000,
        max_node_queued_bytes=150_000,
    )
    bob = board.listen(BOB, lambda o: None, lambda e: None)
    board.listen(CAROL, lambda o: None, lambda e: None)
    board.offer(b"s", ALICE, BOB, b"x" * 60_000, lambda a: None)
    board.offer(b"s", ALICE, CAROL, b"x" * 60_000, lambda a: None)
    with pytest.raises(Overloaded) as refused:
        board.offer(b"s", ALICE, BOB, b"x" * 60_000, lambda a: None)
    assert refused.value.retry_after_ms > 0
    board.written(bob, bob.queued_bytes)  # bob read his
    board.offer(b"s", ALICE, BOB, b"x" * 60_000, lambda a: None)
