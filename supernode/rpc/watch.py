"""``PresenceService.Watch``: the stream over :class:`supernode.directory.watch.WatchHub`."""

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_handle
from supernode.directory.presence import Change
from supernode.directory.watch import ChangeEvent, WatchHub
from supernode.errors import ResourceExhausted, Unavailable
from supernode.metrics import Metrics
from supernode.overload import Shedding
from supernode.rpc.auth import session_of
from supernode.rpc.directory import PRESENCE_SERVICE, PresenceApi, settled
from supernode.rpc.handlers import server_stream_handler
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


class WatchApi:
    def __init__(
        self,
        hub: WatchHub,
        presence: PresenceApi,
        sessions: SessionAuthority,
        metrics: Metrics,
        shedding: Shedding | None = None,
    ) -> None:
        self._hub = hub
        self._presence = presence
        self._sessions = sessions
        self._metrics = metrics
        self._shedding = shedding

    async def watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        session = session_of(context, self._sessions)
        for index, handle in enumerate(request.handles):
            check_handle(f"handles[{index}]", handle)
        if self._hub.closed:
            raise Unavailable("watch: supernode shutting down, reconnect elsewhere")
        news = asyncio.Event()
        hub = self._hub
        start = hub.subscribe(
            session.session_id,
            request.handles,
            news.set,
            epoch=request.epoch,
            revision=request.revision,
        )
        subscription = start.subscription
        try:
            if start.resumed:
                yield pb.WatchEvent(
                    epoch=hub.epoch, revision=start.revision, resumed=True
                ).SerializeToString()
                for event in start.backlog:
                    yield change_message(hub.epoch, event)
            else:
                # Same event-loop step as subscribe(): no change can fall in between.
                answer = pb.LookupManyResponse.FromString(
                    await settled(self._presence.lookup_many(sorted(subscription.handles)))
                )
                if answer.unanswered:  # past max_response_bytes: one message cannot hold it
                    raise ResourceExhausted(
                        f"handles: the snapshot of {len(subscription.handles)} handles is "
                        "larger than the server's max_response_bytes; watch fewer handles "
                        "per stream (split them over several watches)"
                    )
                snapshot = pb.WatchSnapshot(handles=answer.results, not_found=answer.not_found)
                yield pb.WatchEvent(
                    epoch=hub.epoch, revision=start.revision, snapshot=snapshot
                ).SerializeToString()
            while True:
                await news.wait()
                news.clear()
                if hub.closed:
                    raise Unavailable("watch: supernode shutting down, resume elsewhere")
                if subscription.interrupted:
                    raise Unavailable(f"watch: {subscription.interrupted}; resume to resync")
                if subscription.overflowed:
                    raise ResourceExhausted(
                        "watch: consumer too slow, events were dropped; "
                        "reconnect with the last position to resume"
                    )
                for event in subscription.drain():
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
