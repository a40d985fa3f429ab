"""What a node knows of its cluster: members, nodes, placement, controller, shared secret,
revoked sessions.

Pure state, fed by etcd watch events (``supernode.cluster.mirror`` does the I/O) and
persisted in the node's store, so a node restarted while etcd is down still knows where
every partition lives. Accounts are not held here: the mirror writes them into the store
(``supernode.store.Store.insert_account``), where lookups and search read them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from supernode.cluster.etcd import EventKind, WatchEvent
from supernode.cluster.keys import (
    Keys,
    LayoutError,
    MemberInfo,
    NodeInfo,
    streamed_from_bytes,
    streamed_to_bytes,
)
from supernode.cluster.placement import Placement, PlacementError


@dataclass(frozen=True, slots=True)
class AccountSeen:
    """An account the mirror must make readable locally."""

    handle: str
    account: bytes


@dataclass(frozen=True, slots=True)
class StateSeen:
    """An account's state (rotations, privacy) the mirror must make readable locally."""

    handle: str
    state: bytes


@dataclass(slots=True)
class Applied:
    """What one batch of etcd events changed, for the node to act on."""

    @property
    def structural(self) -> bool:
        """Anything but accounts: the persisted view must be rewritten."""
        return (
            self.members_changed
            or self.placement_changed
            or self.streamed_changed
            or self.other_changed
        )

    accounts: list[AccountSeen] = field(default_factory=list)
    states: list[StateSeen] = field(default_factory=list)
    members_changed: bool = False
    placement_changed: bool = False
    streamed_changed: bool = False  # a node reported partitions streamed (the controller flips)
    other_changed: bool = False  # the controller or the shared secret
    # Revocations put (name -> value) or gone (name -> None: their lease ended). Kept in the
    # store one key each (``supernode.store`` ``revoked/``), not in the persisted view: one
    # revocation must not rewrite all of them.
    revoked: dict[str, bytes | None] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # keys whose values did not parse


@dataclass
class ClusterView:
    members: dict[str, MemberInfo] = field(default_factory=dict)  # live (under a lease)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)  # joined (planned over)
    placement: Placement | None = None
    # node -> partition -> the epoch of the move it streamed the partition for
    streamed: dict[str, dict[int, int]] = field(default_factory=dict)
    controller: str = ""
    token_secret: bytes = b""
    # Revoked sessions, name -> value (``supernode.revocations``), as etcd holds them now.
    # Not in ``to_bytes``: the store keeps them a key each (``stored_view`` loads them).
    revoked: dict[str, bytes] = field(default_factory=dict)
    revision: int = 0  # the last etcd revision applied

    def address_of(self, node: str) -> str:
        """Where to reach a node: its member record, else its node record, else its name."""
        member = self.members.get(node)
        if member is not None:
            return member.address
        known = self.nodes.get(node)
        return known.address if known is not None else node

    def peer_address_of(self, node: str) -> str:
        """Where other nodes call ``node``'s internal service: its peer port (mutual TLS)
        when its member record names one, else its address."""
        member = self.members.get(node)
        if member is not None and member.peer_address:
            return member.peer_address
        return self.address_of(node)

    def replace_with(self, other: ClusterView) -> None:
        """Take ``other``'s contents in place: every component holds this one view, so a
        resync rebuilds a fresh one and swaps the contents rather than the object."""
        for item in fields(self):
            setattr(self, item.name, getattr(other, item.name))

    def apply(self, keys: Keys, events: Iterable[WatchEvent], revision: int) -> Applied:
        applied = Applied()
        for event in events:
            try:
                self._apply_one(keys, event, applied)
            except (LayoutError, PlacementError, UnicodeDecodeError) as exc:
                applied.ignored.append(f"{event.key[:80]!r}: {exc}")
        self.revision = max(self.revision, revision)
        return applied

    def _apply_one(self, keys: Keys, event: WatchEvent, applied: Applied) -> None:
        put = event.kind is EventKind.PUT
        key = event.key
        if (name := keys.name_under(key, keys.members)) is not None:
            if put:
                self.members[name] = MemberInfo.from_bytes(event.value)
            else:
                self.members.pop(name, None)
            applied.members_changed = True
        elif (name := keys.name_under(key, keys.nodes)) is not None:
            if put:
                self.nodes[name] = NodeInfo.from_bytes(event.value)
            else:
                self.nodes.pop(name, None)
            applied.members_changed = True
        elif (handle := keys.name_under(key, keys.accounts)) is not None:
            if put:
                applied.accounts.append(AccountSeen(handle, event.value))
        elif (handle := keys.name_under(key, keys.account_states)) is not None:
            if put:
                applied.states.append(StateSeen(handle, event.value))
        elif (name := keys.name_under(key, keys.streamed)) is not None:
            if put:
                self.streamed[name] = streamed_from_bytes(event.value)
            else:
                self.streamed.pop(name, None)
            applied.streamed_changed = True
        elif key == keys.placement:
            self.placement = Placement.from_bytes(event.value) if put else None
            applied.placement_changed = True
        elif key == keys.controller:
            self.controller = event.value.decode() if put else ""
            applied.other_changed = True
        elif (name := keys.name_under(key, keys.revoked)) is not None:
            if put:
                self.revoked[name] = event.value
            else:
                self.revoked.pop(name, None)
            applied.revoked[name] = event.value if put else None
        elif key == keys.token_secret and put:
            self.token_secret = event.value
            applied.other_changed = True

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """Everything but accounts and revocations (the store holds those a key each), for
        the node's store."""
        return json.dumps(
            {
                "revision": self.revision,
                "members": {n: m.to_bytes().decode() for n, m in self.members.items()},
                "nodes": {n: i.to_bytes().decode() for n, i in self.nodes.items()},
                "placement": "" if self.placement is None else self.placement.to_bytes().decode(),
                "streamed": {n: streamed_to_bytes(d).decode() for n, d in self.streamed.items()},
                "controller": self.controller,
                "token_secret": base64.b64encode(self.token_secret).decode(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClusterView:
        try:
            fields = json.loads(raw)
            placement = fields["placement"]
            return cls(
                members={
                    n: MemberInfo.from_bytes(v.encode()) for n, v in fields["members"].items()
                },
                nodes={n: NodeInfo.from_bytes(v.encode()) for n, v in fields["nodes"].items()},
                placement=Placement.from_bytes(placement.encode()) if placement else None,
                streamed={  # absent in views stored before moves existed
                    n: streamed_from_bytes(v.encode())
                    for n, v in fields.get("streamed", {}).items()
                },
                controller=str(fields["controller"]),
                token_secret=base64.b64decode(fields["token_secret"]),
                revision=int(fields["revision"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LayoutError(f"the stored cluster view is unreadable: {exc}") from exc
