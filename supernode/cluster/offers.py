"""Rendezvous across nodes: an offer goes to the node the callee's device is attached to.

The callee's record names that node (``Device.attached_supernode``, stamped by the node that
admitted the registration, where the device also keeps its Listen stream). The caller's node
admits the offer (rate, caller liveness), finds the callee's node through a replica of the
handle, and hands the offer over (``ClusterService.DeliverOffer``); that node delivers it to
the listener and returns the answer. A device whose node died listens elsewhere before its
record says so: the offer then looks for it on the live members.
"""

from __future__ import annotations

from client_sdk.protocol.v1 import directory_pb2 as dpb
from client_sdk.protocol.v1 import rendezvous_pb2 as rpb
from supernode.cluster.peers import Peers
from supernode.cluster.routing import ClusterPresence
from supernode.cluster.view import ClusterView
from supernode.errors import FailedPrecondition, SupernodeError, Unavailable
from supernode.internal.v1 import cluster_pb2 as pb
from supernode.rendezvous.tickets import Endpoint
from supernode.rpc.directory import settled
from supernode.rpc.rendezvous import Deliver

_MARGIN_S = 2.0  # beyond the callee's answer time: the hand-over itself


class ClusterOffers:
    def __init__(
        self, presence: ClusterPresence, peers: Peers, view: ClusterView, *, answer_timeout_ms: int
    ) -> None:
        self._presence = presence
        self._peers = peers
        self._view = view
        self._timeout_s = answer_timeout_ms / 1000 + _MARGIN_S

    async def route(
        self, caller: Endpoint, callee: Endpoint, payload: bytes, here: Deliver
    ) -> rpb.ConnectResponse:
        """The node the callee's record names first; when that node is unreachable or the
        device no longer listens there (it failed over before its record was renewed),
        this node and then every other live member, until one has its listener."""
        name = self._presence.name
        recorded = await self.attached_node(callee)
        candidates = list(dict.fromkeys([recorded or name, name, *sorted(self._view.members)]))
        refusal: SupernodeError | None = None
        for node in candidates:
            try:
                if node == name:
                    return await here(caller, callee, payload)
                return await self.deliver(node, caller, callee, payload)
            except Unavailable as exc:  # that node is gone: look further
                refusal = refusal or exc
            except FailedPrecondition as exc:  # not listening there: look further
                if refusal is None or isinstance(refusal, Unavailable):
                    refusal = exc
        assert refusal is not None
        raise refusal

    async def attached_node(self, callee: Endpoint) -> str | None:
        """The node the callee's live record names, or None when it names none."""
        raw = await settled(self._presence.lookup(callee.handle))
        for device in dpb.LookupResponse.FromString(raw).devices:
            record = dpb.DeviceRecord.FromString(device.signed.record)
            if record.device_id == callee.device_id:
                return device.attached_supernode or None
        return None

    async def deliver(
        self, node: str, caller: Endpoint, callee: Endpoint, payload: bytes
    ) -> rpb.ConnectResponse:
        request = pb.DeliverOfferRequest(
            caller_handle=caller.handle,
            caller_device_id=caller.device_id,
            callee_handle=callee.handle,
            callee_device_id=callee.device_id,
            payload=payload,
        )
        self._presence.count_forwarded("DeliverOffer")
        raw = await self._peers.unary(
            node,
            self._view.peer_address_of(node),
            "DeliverOffer",
            request.SerializeToString(),
            deadline_s=self._timeout_s,
        )
        return rpb.ConnectResponse.FromString(raw)
