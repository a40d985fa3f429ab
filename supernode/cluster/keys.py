"""The cluster's key layout in etcd: nothing per device, per watch or per lookup.

Under the cluster's prefix (``cluster.etcd_prefix``, default ``/supernode``):

``/members/<node>``   JSON ``{"address", "zone", "version", "started_at_ms", "mirror_revision",
                      "peer_address"}`` under the node's own lease: liveness, which expires
                      by itself. ``peer_address``: the mutual-TLS port other nodes call
                      (empty without TLS: the public address serves them).
``/nodes/<node>``     JSON ``{"address", "zone", "joined_at_ms", "state"}``, no lease: the nodes
                      placement is planned over. A node whose member key is gone keeps its
                      partitions until the controller drops it after the down grace period
                      (or an operator decommissions it): liveness is not ownership. ``state``
                      is "active", "leaving" (decommissioned: its partitions move away) or
                      "left" (it holds none; starting it again makes it active).
``/placement``        ``Placement.to_bytes()``: partitions -> nodes, moves in flight, epochs;
                      changed only by the controller, by compare-and-swap on its mod revision.
``/streamed/<node>``  JSON ``{"<partition>": epoch}`` under the node's lease: the partitions it
                      has streamed for the moves begun at those epochs (one write per batch of
                      partitions, never per device); the controller flips them.
``/controller``       the elected controller's node name, under its lease (create-if-absent).
``/accounts/<handle>`` serialized ``supernode.v1.Account`` as its creator signed it, claimed
                      by create-if-absent: handles are unique cluster-wide.
``/account-state/<handle>`` serialized ``supernode.internal.v1.AccountState`` (the account's
                      key rotations and signed privacy settings), absent until the first
                      change; written only by compare-and-swap on its mod revision, so of two
                      concurrent changes (two rotations, say) exactly one is stored.
``/secrets/token``    the 32-byte secret session tokens and relay tickets are signed with,
                      shared so a token issued by one node works on every node.
``/revoked/<name>``   a revoked session or account (``supernode.revocations`` names and
                      encodes it), under a lease of its own that ends when every token it
                      covers has expired: one write per Logout or RevokeSessions, never per
                      call; every node's mirror follows them into its token checks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

MEMBERS = "/members/"
NODES = "/nodes/"
PLACEMENT = "/placement"
CONTROLLER = "/controller"
ACCOUNTS = "/accounts/"
ACCOUNT_STATES = "/account-state/"
STREAMED = "/streamed/"
NODE_STATES = ("active", "leaving", "left")
TOKEN_SECRET = "/secrets/token"
REVOKED = "/revoked/"


class LayoutError(ValueError):
    """A value under a cluster key is not what this layout says (another program wrote it)."""


@dataclass(frozen=True, slots=True)
class MemberInfo:
    address: str
    zone: str = ""
    version: str = ""
    started_at_ms: int = 0
    mirror_revision: int = 0
    peer_address: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> MemberInfo:
        try:
            fields = json.loads(raw)
            return cls(
                address=str(fields["address"]),
                zone=str(fields.get("zone", "")),
                version=str(fields.get("version", "")),
                started_at_ms=int(fields.get("started_at_ms", 0)),
                mirror_revision=int(fields.get("mirror_revision", 0)),
                peer_address=str(fields.get("peer_address", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LayoutError(f"not a member record: {raw[:80]!r}") from exc


@dataclass(frozen=True, slots=True)
class NodeInfo:
    address: str
    zone: str = ""
    joined_at_ms: int = 0
    state: str = "active"

    @property
    def planned(self) -> bool:
        """Whether placement should hold partitions on this node."""
        return self.state == "active"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> NodeInfo:
        try:
            fields = json.loads(raw)
            return cls(
                address=str(fields["address"]),
                zone=str(fields.get("zone", "")),
                joined_at_ms=int(fields.get("joined_at_ms", 0)),
                state=_state(fields.get("state", "active")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LayoutError(f"not a node record: {raw[:80]!r}") from exc


def _state(value: object) -> str:
    if value not in NODE_STATES:
        raise ValueError(f"state {value!r} (one of {', '.join(NODE_STATES)})")
    return str(value)


def streamed_to_bytes(done: dict[int, int]) -> bytes:
    return json.dumps({str(p): epoch for p, epoch in sorted(done.items())}).encode()


def streamed_from_bytes(raw: bytes) -> dict[int, int]:
    try:
        fields = json.loads(raw)
        if not isinstance(fields, dict):
            raise TypeError("not an object")
        done = {int(p): int(epoch) for p, epoch in fields.items()}
    except (ValueError, TypeError) as exc:
        raise LayoutError(f"not a streamed record: {raw[:80]!r}") from exc
    return done


class Keys:
    """The keys of one cluster (one prefix), as bytes for the etcd adapter."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.root = (prefix + "/").encode()

    def _key(self, path: str) -> bytes:
        return (self.prefix + path).encode()

    def member(self, node: str) -> bytes:
        return self._key(MEMBERS + node)

    def node(self, node: str) -> bytes:
        return self._key(NODES + node)

    def account(self, handle: str) -> bytes:
        return self._key(ACCOUNTS + handle)

    def account_state(self, handle: str) -> bytes:
        return self._key(ACCOUNT_STATES + handle)

    @property
    def account_states(self) -> bytes:
        return self._key(ACCOUNT_STATES)

    def revocation(self, name: str) -> bytes:
        return self._key(REVOKED + name)

    @property
    def revoked(self) -> bytes:
        return self._key(REVOKED)

    def streamed_by(self, node: str) -> bytes:
        return self._key(STREAMED + node)

    @property
    def streamed(self) -> bytes:
        return self._key(STREAMED)

    @property
    def members(self) -> bytes:
        return self._key(MEMBERS)

    @property
    def nodes(self) -> bytes:
        return self._key(NODES)

    @property
    def accounts(self) -> bytes:
        return self._key(ACCOUNTS)

    @property
    def placement(self) -> bytes:
        return self._key(PLACEMENT)

    @property
    def controller(self) -> bytes:
        return self._key(CONTROLLER)

    @property
    def token_secret(self) -> bytes:
        return self._key(TOKEN_SECRET)

    def name_under(self, key: bytes, collection: bytes) -> str | None:
        """The node or handle a key names under ``collection`` (``members``...), else None."""
        if key.startswith(collection) and len(key) > len(collection):
            return key[len(collection) :].decode()
        return None
