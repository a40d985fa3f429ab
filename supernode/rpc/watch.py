"""``PresenceService.Watch``: the stream over :class:`supernode.directory.watch.WatchHub`."""

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_handle
from supernode.directory.presence import Change
from supernode.directory.privacy import Privacy
from supernode.directory.watch import ChangeEvent, Subscription, WatchHub
from supernode.errors import Reason, ResourceExhausted, Unavailable
from supernode.metrics import Metrics
from supernode.overload import Shedding
from supernode.rpc.auth import session_of
from supernode.rpc.directory import PRESENCE_SERVICE, PresenceApi, settled
from supernode.rpc.handlers import server_stream_handler
from supernode.rpc.source import RateGates
from supernode.sessions import SessionAuthority

_KINDS = {
    Change.ONLINE: (pb.CHANGE_KIND_ONLINE, pb.OFFLINE_REASON_UNSPECIFIED),
    Change.UPDATED: (pb.CHANGE_KIND_UPDATED, pb.OFFLINE_REASON_UNSPECIFIED),
    Change.UNREGISTERED: (pb.CHANGE_KIND_OFFLINE, pb.OFFLINE_REASON_UNREGISTERED),
    Change.EXPIRED: (pb.CHANGE_KIND_OFFLINE, pb.OFFLINE_REASON_EXPIRED),
}


def change_message(epoch: str, event: ChangeEvent) -> bytes:
    kind, reason = _KINDS[event.change]
    change = pb.DeviceChange(
        handle=event.handle, device_id=event.device_id, kind=kind, reason=reason
    )
    if event.device is not None:
        change.device.ParseFromString(event.device)
    return pb.WatchEvent(epoch=epoch, revision=event.revision, change=change).SerializeToString()


_TOO_SLOW = (
    "watch: consumer too slow, events were dropped; reconnect with the last position to resume"
)


class WatchApi:
    def __init__(
        self,
        hub: WatchHub,
        presence: PresenceApi,
        sessions: SessionAuthority,
        metrics: Metrics,
        privacy: Privacy,
        shedding: Shedding | None = None,
        gates: RateGates | None = None,
    ) -> None:
        """``privacy``: a watched handle the caller may not see shows no devices and no
        changes; checked per event, so a block or a narrower visibility takes effect on
        open streams at once. ``gates``: the process's rate limits (stream opens)."""
        self._gate = (gates or RateGates.off()).gate("Watch")
        self._privacy = privacy
        self._hub = hub
        self._presence = presence
        self._sessions = sessions
        self._metrics = metrics
        self._shedding = shedding

    async def watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        session = session_of(context, self._sessions)
        self._gate.check(context, session.handle)
        for index, handle in enumerate(request.handles):
            check_handle(f"handles[{index}]", handle)
        if self._hub.closed:
            raise Unavailable(
                "watch: supernode shutting down, reconnect elsewhere", reason=Reason.SHUTTING_DOWN
            )
        news = asyncio.Event()
        hub = self._hub
        held: list[Subscription] = []

        def cut() -> None:
            # Cut off (too slow, stalled), perhaps while gRPC is stuck writing to a client
            # that does not read: what the watch holds is freed now; the stream ends with
            # RESOURCE_EXHAUSTED as soon as gRPC takes the message in hand (the client
            # reads again) or the connection ends. (Neither cancelling this task nor
            # aborting the call from another one works while a write is pending: grpc.aio
            # then sends no status at all, and the client would wait for ever.)
            news.set()
            for subscription in held:
                hub.unsubscribe(subscription)

        start = hub.subscribe(
            session.session_id,
            request.handles,
            news.set,
            epoch=request.epoch,
            revision=request.revision,
            cut=cut,
        )
        subscription = start.subscription
        held.append(subscription)
        caller, privacy = session.handle, self._privacy
        try:
            if start.resumed:
                yield pb.WatchEvent(
                    epoch=hub.epoch, revision=start.revision, resumed=True
                ).SerializeToString()
                for event in start.backlog:
                    if privacy.may_see(caller, event.handle):
                        yield change_message(hub.epoch, event)
                    else:
                        self._metrics.count_hidden("Watch")
            else:
                # Same event-loop step as subscribe(): no change can fall in between.
                handles = sorted(subscription.handles)
                raw = await settled(self._presence.lookup_many(handles))
                visible, hidden = privacy.visible_many(caller, handles, raw)
                self._metrics.count_hidden("Watch", hidden)
                answer = pb.LookupManyResponse.FromString(visible)
                if answer.unanswered:  # past max_response_bytes: one message cannot hold it
                    raise ResourceExhausted(
                        f"handles: the snapshot of {len(subscription.handles)} handles is "
                        "larger than the server's max_response_bytes; watch fewer handles "
                        "per stream (split them over several watches)",
                        reason=Reason.REQUEST_TOO_LARGE,
                    )
                snapshot = pb.WatchSnapshot(handles=answer.results, not_found=answer.not_found)
                yield pb.WatchEvent(
                    epoch=hub.epoch, revision=start.revision, snapshot=snapshot
                ).SerializeToString()
            while True:
                await news.wait()
                news.clear()
                if hub.closed:
                    raise Unavailable(
                        "watch: supernode shutting down, resume elsewhere",
                        reason=Reason.SHUTTING_DOWN,
                    )
                if subscription.interrupted:
                    raise Unavailable(
                        f"watch: {subscription.interrupted}; resume to resync", reason=Reason.RESYNC
                    )
                if subscription.overflowed:
                    raise ResourceExhausted(_TOO_SLOW, reason=Reason.TOO_SLOW)
                for event in subscription.drain():
                    if not privacy.may_see(caller, event.handle):
                        self._metrics.count_hidden("Watch")
                        continue
                    yield change_message(hub.epoch, event)
                    self._metrics.notification_delay.observe(time.monotonic() - event.committed_at)
        finally:
            hub.unsubscribe(subscription)

    def method_handlers(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {
            PRESENCE_SERVICE: {
                "Watch": server_stream_handler(
                    "Watch", pb.WatchRequest, self.watch, self._metrics, self._shedding
                )
            }
        }
