"""The SDK's write observer against a real supernode: every attempt is told, with the seq it
carried, and an unregister's tombstone covers attempts whose answer never came.

A fault test's ledger (tests/cluster/test_kill_loop.py) is built on this, so it must not
miss an attempt: one frozen supernode (SIGSTOP) makes attempts time out for real.
"""

from __future__ import annotations

import dataclasses
import signal

import grpc
import pytest

from client_sdk import Client, Identity, Unavailable, WriteAttempt, WriteKind
from client_sdk.errors import SupernodeError
from client_sdk.transport import DirectoryConnection
from tests.integration.process import SupernodeProcess
from tests.integration.records import device
from tests.integration.sdk_support import TEST_CONFIG, unique

KEY = b"k" * 32


class Ledger:
    """What a test keeps: each attempt and how it ended ("ok", or the error's class)."""

    def __init__(self) -> None:
        self.sent: list[WriteAttempt] = []
        self.ended: dict[int, str] = {}  # index in sent -> outcome
        self.expires: dict[int, int | None] = {}

    def write_sent(self, attempt: WriteAttempt) -> None:
        self.sent.append(attempt)

    def _index(self, attempt: WriteAttempt) -> int:
        return max(i for i, sent in enumerate(self.sent) if sent is attempt)

    def write_acknowledged(self, attempt: WriteAttempt, expires_at_ms: int | None) -> None:
        index = self._index(attempt)
        self.ended[index], self.expires[index] = "ok", expires_at_ms

    def write_failed(self, attempt: WriteAttempt, error: SupernodeError) -> None:
        self.ended[self._index(attempt)] = type(error).__name__

    def outcomes(self) -> list[tuple[WriteKind, int, str]]:
        return [(a.kind, a.seq, self.ended.get(i, "open")) for i, a in enumerate(self.sent)]


async def test_every_attempt_is_told_with_its_seq_and_outcome(supernode: SupernodeProcess) -> None:
    ledger = Ledger()
    handle = unique("ledger")
    target = supernode.grpc_target
    async with Client(
        target, Identity.generate(), handle, config=TEST_CONFIG, write_observer=ledger
    ) as client:
        await client.create_account()
        first = await client.register_device("phone", transport_key=KEY)
        second = await client.update_device("phone", endpoints=[])
        assert await client.unregister_device("phone")
    assert ledger.outcomes() == [
        (WriteKind.REGISTER, first.seq, "ok"),
        (WriteKind.REGISTER, second.seq, "ok"),
        (WriteKind.UNREGISTER, second.seq, "ok"),
    ]
    assert second.seq > first.seq
    assert ledger.expires[0] == first.expires_at_ms and ledger.expires[2] is None
    assert {a.target for a in ledger.sent} == {target} and {a.handle for a in ledger.sent} == {
        handle
    }
    assert {a.device_id for a in ledger.sent} == {"phone"}


async def test_an_unregister_covers_the_attempts_that_got_no_answer(
    supernode: SupernodeProcess,
) -> None:
    """The supernode freezes while a renewal is sent: both attempts time out (and may still
    land). Once it is back, the unregister says the highest seq sent, so neither unanswered
    record can be taken afterwards: a late one is refused as a replay."""
    assert supernode.process is not None
    ledger = Ledger()
    identity, handle = Identity.generate(), unique("frozen")
    impatient = dataclasses.replace(TEST_CONFIG, call_deadline_seconds=0.5, max_attempts=2)
    async with Client(
        supernode.grpc_target, identity, handle, config=impatient, write_observer=ledger
    ) as client:
        await client.create_account()
        await client.register_device("phone", transport_key=KEY)
        supernode.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(Unavailable):
                await client.update_device("phone", endpoints=[])
        finally:
            supernode.process.send_signal(signal.SIGCONT)
        after = ledger.outcomes()[1:]
        unanswered = [seq for kind, seq, _ in after if kind is WriteKind.REGISTER]
        assert len(unanswered) == 2, after
        assert all(outcome == "Unavailable" for _, _, outcome in after), after
        await client.unregister_device("phone")
    kind, seq, outcome = ledger.outcomes()[-1]
    assert (kind, outcome) == (WriteKind.UNREGISTER, "ok") and seq == max(unanswered)
    async with DirectoryConnection(supernode.grpc_target) as raw:
        await raw.login(identity, handle)
        assert not (await raw.lookup(handle)).devices
        for late in unanswered:  # as if it were still on its way, or a replayed hint
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await raw.register_device(device(identity, handle, "phone", late))
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert not (await raw.lookup(handle)).devices
