"""Who may see an account's presence and send it offers: visibility and the block list.

The decision is a pure function of the account's signed settings and the caller's handle
(:func:`may_see`); :class:`Privacy` reads the settings from the account's state (a local
read on every node: a cluster mirrors states from etcd into each node's store, so any
replica that answers a read knows them) and applies the decision to answers.

A refused caller sees what it would see of an account with no live device (see
``supernode.v1.PrivacySettings``): an account's existence is public (GetAccount,
CreateAccount's ALREADY_EXISTS), so NOT_FOUND or PERMISSION_DENIED would tell it that it
was refused, where "offline" tells it nothing.

Settings are changed by a request signed with the account's current key, not by the
session alone: a stolen bearer token (which the issue shows an on-path observer could
capture) must not be enough to make its victim visible again or to lift a block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from client_sdk.protocol import wire
from client_sdk.protocol.records import decode_exact
from client_sdk.protocol.signing import PRIVACY_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import check_handle, check_signature
from supernode.directory import account_state, lease
from supernode.directory.accounts import Accounts
from supernode.directory.ports import AccountRegistry
from supernode.directory.validation import Limits
from supernode.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Reason


@dataclass(frozen=True, slots=True)
class Rule:
    """An account's settings, as sets, for the per-call decision."""

    visibility: int
    allowed: frozenset[str]
    blocked: frozenset[str]


def may_see(owner: str, rule: Rule | None, caller: str) -> bool:
    """Whether ``caller`` may see ``owner``'s presence and send it offers.

    The owner always may (its own devices); no settings means everyone; a block beats any
    visibility; CONTACTS admits the allow list only; NOBODY admits no one else.
    """
    if caller == owner or rule is None:
        return True
    if caller in rule.blocked:
        return False
    if rule.visibility == pb.VISIBILITY_NOBODY:
        return False
    if rule.visibility == pb.VISIBILITY_CONTACTS:
        return caller in rule.allowed
    return True


def searchable(rule: Rule | None, caller: str) -> bool:
    """Whether search may show the account to ``caller`` (besides being discoverable):
    never with visibility NOBODY, never to an account it blocked."""
    if rule is None:
        return True
    return rule.visibility != pb.VISIBILITY_NOBODY and caller not in rule.blocked


@lru_cache(maxsize=65536)
def rule_of(state: bytes) -> Rule | None:
    settings = account_state.privacy_of(state)
    if settings is None:
        return None
    return Rule(settings.visibility, frozenset(settings.allowed), frozenset(settings.blocked))


def parse_settings(raw: bytes, limits: Limits) -> pb.PrivacySettings:
    """Decode and validate a settings body (the signature is checked separately)."""
    settings = pb.PrivacySettings()
    decode_exact(raw, settings, "settings")
    check_handle("settings.handle", settings.handle)
    if settings.visibility not in pb.Visibility.values():
        raise InvalidArgument(f"settings.visibility: {settings.visibility} is not a Visibility")
    if settings.seq < 1:
        raise InvalidArgument("settings.seq: must be at least 1 (and above the stored one)")
    for name, handles in (("allowed", settings.allowed), ("blocked", settings.blocked)):
        if len(handles) > limits.max_privacy_handles:
            raise InvalidArgument(
                f"settings.{name}: {len(handles)} handles, at most {limits.max_privacy_handles}"
            )
        for index, handle in enumerate(handles):
            check_handle(f"settings.{name}[{index}]", handle)
    return settings


def hide_devices(lookup_response: bytes) -> bytes:
    """A Lookup answer as a refused caller sees it: the account, no devices."""
    response = pb.LookupResponse.FromString(lookup_response)
    del response.devices[:]
    return response.SerializeToString()


class Privacy:
    """Privacy settings of accounts: changing them (signed), and applying them to answers."""

    def __init__(
        self,
        registry: AccountRegistry,
        accounts: Accounts,
        *,
        limits: Limits,
        policy: lease.LeasePolicy,
        clock_ms: Callable[[], int],
    ) -> None:
        self._registry = registry
        self._accounts = accounts
        self._limits = limits
        self._policy = policy
        self._clock_ms = clock_ms

    # ------------------------------------------------------------------ decisions

    def rule(self, handle: str) -> Rule | None:
        state = self._registry.get_account_state(handle)
        return None if state is None else rule_of(state)

    def may_see(self, caller: str, handle: str) -> bool:
        """The hot path: one cached read of the target's state, then set lookups."""
        if caller == handle:
            return True
        return may_see(handle, self.rule(handle), caller)

    def searchable_by(self, caller: str, handle: str) -> bool:
        return caller == handle or searchable(self.rule(handle), caller)

    def offline_answer(self, handle: str) -> bytes:
        """What a refused caller gets for Lookup: the account and its rotations, no devices
        (NOT_FOUND for a handle nobody created, as for anyone)."""
        stored = self._accounts.get(handle)
        return wire.lookup_response(
            stored.account, [], self._accounts.rotations(handle), stored.signature
        )

    def visible_many(self, caller: str, handles: Sequence[str], answer: bytes) -> tuple[bytes, int]:
        """A LookupMany answer (also a Watch snapshot) with the devices of the handles the
        caller may not see removed, and how many handles that hid. Decoded only when some
        handle is refused."""
        changed = self._registry.changed_accounts(handles)
        refused = {h for h in changed if not self.may_see(caller, h)}
        if not refused:
            return answer, 0
        response = pb.LookupManyResponse.FromString(answer)
        for result in response.results:
            if result.account.handle in refused:
                del result.devices[:]
        return response.SerializeToString(), len(refused)

    # ------------------------------------------------------------------ changes

    def get(self, session_handle: str) -> pb.PrivacySettings:
        state = self._registry.get_account_state(session_handle)
        settings = None if state is None else account_state.privacy_of(state)
        if settings is None:
            return pb.PrivacySettings(handle=session_handle)
        return settings

    async def set(self, session_handle: str, raw: bytes, signature: bytes) -> pb.PrivacySettings:
        """Store new settings for the session's own account: signed by its current key,
        with a seq above the stored one (a replayed older setting is refused)."""
        settings = parse_settings(raw, self._limits)
        check_signature("signature", signature)
        if settings.handle != session_handle:
            raise PermissionDenied(
                f"settings.handle: {settings.handle!r}, but this session belongs to "
                f"{session_handle!r}",
                reason=Reason.NOT_OWNER,
            )
        lease.check_issued_at(
            settings.issued_at_ms, self._clock_ms(), self._policy, "settings.issued_at_ms"
        )
        creation_key = self._accounts.creation_key(session_handle)

        def update(current: bytes | None) -> bytes:
            if current is not None and account_state.parse(current).privacy == raw:
                return current  # a retry of the stored setting: already done
            key = account_state.current_key(current, creation_key)
            if not signature_is_valid(key, PRIVACY_DOMAIN, raw, signature):
                raise PermissionDenied(
                    f"signature: does not verify with the current key of {session_handle!r}",
                    reason=Reason.SIGNATURE_INVALID,
                )
            stored = None if current is None else account_state.privacy_of(current)
            if stored is not None and settings.seq <= stored.seq:
                raise FailedPrecondition(
                    f"settings.seq: {settings.seq} is not greater than stored {stored.seq} "
                    "(a replayed or out-of-order setting)",
                    reason=Reason.STALE_SEQ,
                )
            return account_state.with_privacy(current, raw, signature)

        await self._registry.update_account_state(session_handle, update)
        return settings
