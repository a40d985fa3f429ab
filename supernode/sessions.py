"""Sessions: login challenges and the bearer tokens that authenticate every other call.

A device proves it holds its account key by signing a fresh challenge; it then gets a
short-lived token, an HMAC over (audience, issue and expiry times, session id, handle) with a
secret kept in the store, so any supernode sharing the secret checks a token in
microseconds with no lookup. Challenges are HMAC-protected too (no server state needed to
check them) and single use within their short lifetime.

What a token is bound to (each part is under the MAC, so none can be changed):

- its **audience**: a client session (``Audience.SESSION``, from Login) or a cluster node's
  own calls (``Audience.NODE``); a node token is refused by every public method and a client
  token by the internal cluster service. A challenge is MACed for another purpose
  ("challenge", and the handle it was asked for), so it can never pass as a token either;
- its **account**: the handle it was issued for; every call acts as that handle only;
- its **lifetime**: issued and expiry times; and its **session id**, which revocation names.

Revocation (:mod:`supernode.revocations`): Logout revokes the calling session, and
RevokeSessions, signed by the account key over a fresh challenge, every session of the
account issued until then. A check then also consults the revocations this process knows.
"""

import base64
import enum
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from client_sdk.protocol.signing import LOGIN_DOMAIN, REVOKE_SESSIONS_DOMAIN, signature_is_valid
from client_sdk.protocol.validation import check_handle, check_signature, key_defect
from supernode.errors import InvalidArgument, PermissionDenied, Reason, Unauthenticated
from supernode.revocations import (
    Revocation,
    Revocations,
    account_revocation,
    session_revocation,
)

# Version 2 added the audience, the issue time and a 16-byte session id. A version 1 token
# (issued before an upgrade, by this node or a peer not yet upgraded) is still accepted until
# it expires, so a rolling upgrade breaks no session: its audience follows from its handle
# (only node tokens name NODE_HANDLE_PREFIX), its issue time from its expiry.
_TOKEN_VERSION = 2
_TOKEN_V1_HEADER = struct.Struct(">BQ8s")  # version, expires_at_ms, session id
_CHALLENGE_VERSION = 1
_MAC_BYTES = 32
# version, audience, issued_at_ms, expires_at_ms, session id; the handle follows.
_TOKEN_HEADER = struct.Struct(">BBQQ16s")
_CHALLENGE_HEADER = struct.Struct(">BQ16s")  # version, expires_at_ms, nonce
SECRET_BYTES = 32
# Tokens of cluster nodes calling each other name this pseudo-handle plus the node's name;
# no account can have it ("~" is not a handle character), so no client holds such a token.
NODE_HANDLE_PREFIX = "~node/"


class Audience(enum.IntEnum):
    """Who a token was issued to, and so which services accept it."""

    SESSION = 1  # a client, by Login: the public services
    NODE = 2  # a cluster node, for its calls to other nodes: the internal cluster service


@dataclass(frozen=True, slots=True)
class Session:
    handle: str
    session_id: bytes
    expires_at_ms: int
    issued_at_ms: int = 0
    audience: Audience = Audience.SESSION


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at_ms: int


def _mac(secret: bytes, purpose: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, purpose + b"\x00" + payload, hashlib.sha256).digest()


class SessionAuthority:
    """Issues challenges and tokens and checks them. Time comes from an injected clock."""

    def __init__(
        self,
        secret: bytes,
        *,
        clock_ms: Callable[[], int],
        token_ttl_seconds: int = 3600,
        challenge_ttl_seconds: int = 30,
        token_cache_size: int = 100_000,
        revocations: Revocations | None = None,
    ) -> None:
        """``revocations``: what this process knows to be revoked (shared with whoever
        keeps it current: the store's loader, a worker's feed, a cluster's mirror)."""
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"session secret must be at least {SECRET_BYTES} bytes")
        self._secret = secret
        self._clock_ms = clock_ms
        self._token_ttl_ms = token_ttl_seconds * 1000
        self._challenge_ttl_ms = challenge_ttl_seconds * 1000
        # Used challenges are remembered by the process that issued them, so a challenge is
        # only redeemed there: its MAC covers this random issuer (new at every start), and
        # another node of the cluster (same secret) or this one restarted refuses it. Else a
        # captured challenge and signature could be redeemed once more on each other node.
        self._issuer = secrets.token_bytes(16)
        self._used_challenges: OrderedDict[bytes, int] = OrderedDict()
        # token -> session: a dict hit instead of base64 + HMAC on every lookup.
        self._verified: OrderedDict[str, Session] = OrderedDict()
        self._cache_size = token_cache_size
        self.revocations = Revocations() if revocations is None else revocations

    # ------------------------------------------------------------------ challenges

    def challenge(self, handle: str) -> tuple[bytes, int]:
        check_handle("handle", handle)
        expires_at_ms = self._clock_ms() + self._challenge_ttl_ms
        header = _CHALLENGE_HEADER.pack(_CHALLENGE_VERSION, expires_at_ms, secrets.token_bytes(16))
        return header + self._challenge_mac(handle, header), expires_at_ms

    def _challenge_mac(self, handle: str, header: bytes) -> bytes:
        return _mac(self._secret, b"challenge" + self._issuer + handle.encode(), header)

    def login(
        self, handle: str, challenge: bytes, signature: bytes, account_key: bytes
    ) -> IssuedToken:
        """Check the signed challenge and issue a token for ``handle``."""
        now_ms = self._redeem(handle, challenge, signature, account_key, LOGIN_DOMAIN)
        return self._issue(handle, Audience.SESSION, now_ms)

    def revoke_all(
        self, handle: str, challenge: bytes, signature: bytes, account_key: bytes
    ) -> Revocation:
        """Check a challenge signed for RevokeSessions; the revocation of every session of
        ``handle`` issued until now. It is kept until the last of them would have expired."""
        now_ms = self._redeem(handle, challenge, signature, account_key, REVOKE_SESSIONS_DOMAIN)
        return account_revocation(handle, now_ms, now_ms + self._token_ttl_ms)

    def revoke_issued_until_now(self, handle: str) -> Revocation:
        """The revocation of every session of ``handle`` issued until now, with no
        challenge: for a caller that proved the account key otherwise (a key rotation,
        signed by the old key: sessions that key opened end with it)."""
        now_ms = self._clock_ms()
        return account_revocation(handle, now_ms, now_ms + self._token_ttl_ms)

    def logout(self, session: Session) -> Revocation:
        """The revocation of one session, kept until its token would have expired."""
        return session_revocation(session.session_id, session.expires_at_ms)

    def _redeem(
        self, handle: str, challenge: bytes, signature: bytes, account_key: bytes, domain: bytes
    ) -> int:
        """Check a challenge and its signature for ``domain``, mark it used; the time now."""
        check_signature("signature", signature)
        if len(challenge) != _CHALLENGE_HEADER.size + _MAC_BYTES:
            raise InvalidArgument(
                "challenge: not a challenge issued by GetChallenge", reason=Reason.INVALID_FIELD
            )
        header, mac = challenge[: _CHALLENGE_HEADER.size], challenge[_CHALLENGE_HEADER.size :]
        if not hmac.compare_digest(mac, self._challenge_mac(handle, header)):
            raise Unauthenticated(
                "challenge: not issued by this supernode (since its start) for this handle; "
                "ask it for a new one",
                reason=Reason.CHALLENGE_INVALID,
            )
        _, expires_at_ms, _ = _CHALLENGE_HEADER.unpack(header)
        now_ms = self._clock_ms()
        if expires_at_ms <= now_ms:
            raise Unauthenticated(
                "challenge: expired, ask for a new one", reason=Reason.CHALLENGE_EXPIRED
            )
        self._forget_used_challenges(now_ms)
        if challenge in self._used_challenges:
            raise Unauthenticated(
                "challenge: already used, ask for a new one", reason=Reason.CHALLENGE_USED
            )
        weakness = key_defect(account_key)
        if weakness is not None:  # stored before weak keys were refused: nobody may log in
            raise PermissionDenied(
                f"handle: the account key of {handle!r} is {weakness}",
                reason=Reason.ACCOUNT_KEY_WEAK,
            )
        if not signature_is_valid(account_key, domain, challenge, signature):
            raise PermissionDenied(
                f"signature: does not verify with the account key of {handle!r}",
                reason=Reason.SIGNATURE_INVALID,
            )
        self._used_challenges[challenge] = expires_at_ms
        return now_ms

    def _forget_used_challenges(self, now_ms: int) -> None:
        while self._used_challenges:
            oldest, expires_at_ms = next(iter(self._used_challenges.items()))
            if expires_at_ms > now_ms:
                break
            del self._used_challenges[oldest]

    # ------------------------------------------------------------------ tokens

    def now_ms(self) -> int:
        return self._clock_ms()

    def issue_node_token(self, node: str) -> IssuedToken:
        """A token without a login, for a cluster node's own calls to other nodes."""
        return self._issue(NODE_HANDLE_PREFIX + node, Audience.NODE, self._clock_ms())

    def _issue(self, handle: str, audience: Audience, now_ms: int) -> IssuedToken:
        expires_at_ms = now_ms + self._token_ttl_ms
        payload = _TOKEN_HEADER.pack(
            _TOKEN_VERSION, audience, now_ms, expires_at_ms, secrets.token_bytes(16)
        )
        payload += handle.encode()
        raw = payload + _mac(self._secret, b"token", payload)
        return IssuedToken(base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), expires_at_ms)

    def authenticate(self, token: str, audience: Audience = Audience.SESSION) -> Session:
        """The session a token stands for; UNAUTHENTICATED when it is forged, expired or
        revoked, PERMISSION_DENIED when it was issued for another audience."""
        session = self._verified.get(token)
        if session is None:
            session = self._verify(token)
            self._verified[token] = session
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        if session.audience is not audience:  # a genuine token, for somewhere else
            raise PermissionDenied(
                "authorization: this token is not a client session token, log in"
                if audience is Audience.SESSION
                else "authorization: only nodes of this cluster may call this service",
                reason=Reason.TOKEN_AUDIENCE,
            )
        if session.expires_at_ms <= self._clock_ms():
            self._verified.pop(token, None)
            raise Unauthenticated(
                "authorization: token expired, log in again", reason=Reason.TOKEN_EXPIRED
            )
        if self.revocations.covers(session.handle, session.session_id, session.issued_at_ms):
            raise Unauthenticated(
                "authorization: session ended (logged out or revoked), log in",
                reason=Reason.SESSION_REVOKED,
            )
        return session

    def _verify(self, token: str) -> Session:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError as exc:
            raise Unauthenticated("authorization: malformed bearer token") from exc
        if len(raw) < _TOKEN_V1_HEADER.size + _MAC_BYTES + 3:
            raise Unauthenticated("authorization: malformed bearer token")
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, _mac(self._secret, b"token", payload)):
            raise Unauthenticated("authorization: token not issued by this supernode")
        version = payload[0]
        if version == 1:
            return self._verified_v1(payload)
        if version != _TOKEN_VERSION or len(payload) < _TOKEN_HEADER.size + 3:
            raise Unauthenticated(f"authorization: token version {version} not supported, log in")
        _, audience, issued_at_ms, expires_at_ms, session_id = _TOKEN_HEADER.unpack_from(payload)
        try:
            kind = Audience(audience)
        except ValueError as exc:
            raise Unauthenticated("authorization: token for an unknown audience") from exc
        handle = payload[_TOKEN_HEADER.size :].decode()
        return Session(handle, session_id, expires_at_ms, issued_at_ms, kind)

    def _verified_v1(self, payload: bytes) -> Session:
        _, expires_at_ms, session_id = _TOKEN_V1_HEADER.unpack_from(payload)
        handle = payload[_TOKEN_V1_HEADER.size :].decode()
        audience = Audience.NODE if handle.startswith(NODE_HANDLE_PREFIX) else Audience.SESSION
        issued_at_ms = expires_at_ms - self._token_ttl_ms
        return Session(handle, session_id, expires_at_ms, issued_at_ms, audience)
