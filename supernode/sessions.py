"""Sessions: login challenges and the bearer tokens that authenticate every other call.

A device proves it holds its account key by signing a fresh challenge; it then gets a
short-lived token, an HMAC over (expiry, session id, handle) with a secret kept in the
store, so any supernode sharing the secret checks a token in microseconds with no lookup.
Challenges are HMAC-protected too (no server state needed to check them) and single use
within their short lifetime.
"""

import base64
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from client_sdk.protocol.signing import LOGIN_DOMAIN, signature_is_valid
from client_sdk.protocol.validation import check_handle, check_signature, key_defect
from supernode.errors import InvalidArgument, PermissionDenied, Unauthenticated

_TOKEN_VERSION = 1
_CHALLENGE_VERSION = 1
_MAC_BYTES = 32
_TOKEN_HEADER = struct.Struct(">BQ8s")  # version, expires_at_ms, session id
_CHALLENGE_HEADER = struct.Struct(">BQ16s")  # version, expires_at_ms, nonce
SECRET_BYTES = 32
# Tokens of cluster nodes calling each other name this pseudo-handle plus the node's name;
# no account can have it ("~" is not a handle character), so no client holds such a token.
NODE_HANDLE_PREFIX = "~node/"


@dataclass(frozen=True, slots=True)
class Session:
    handle: str
    session_id: bytes
    expires_at_ms: int


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
    ) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"session secret must be at least {SECRET_BYTES} bytes")
        self._secret = secret
        self._clock_ms = clock_ms
        self._token_ttl_ms = token_ttl_seconds * 1000
        self._challenge_ttl_ms = challenge_ttl_seconds * 1000
        self._used_challenges: OrderedDict[bytes, int] = OrderedDict()
        # token -> session: a dict hit instead of base64 + HMAC on every lookup.
        self._verified: OrderedDict[str, Session] = OrderedDict()
        self._cache_size = token_cache_size

    # ------------------------------------------------------------------ challenges

    def challenge(self, handle: str) -> tuple[bytes, int]:
        check_handle("handle", handle)
        expires_at_ms = self._clock_ms() + self._challenge_ttl_ms
        header = _CHALLENGE_HEADER.pack(_CHALLENGE_VERSION, expires_at_ms, secrets.token_bytes(16))
        return header + _mac(self._secret, b"challenge" + handle.encode(), header), expires_at_ms

    def login(
        self, handle: str, challenge: bytes, signature: bytes, account_key: bytes
    ) -> IssuedToken:
        """Check the signed challenge and issue a token for ``handle``."""
        check_signature("signature", signature)
        if len(challenge) != _CHALLENGE_HEADER.size + _MAC_BYTES:
            raise InvalidArgument("challenge: not a challenge issued by GetChallenge")
        header, mac = challenge[: _CHALLENGE_HEADER.size], challenge[_CHALLENGE_HEADER.size :]
        if not hmac.compare_digest(mac, _mac(self._secret, b"challenge" + handle.encode(), header)):
            raise Unauthenticated("challenge: not issued by this supernode for this handle")
        _, expires_at_ms, _ = _CHALLENGE_HEADER.unpack(header)
        now_ms = self._clock_ms()
        if expires_at_ms <= now_ms:
            raise Unauthenticated("challenge: expired, ask for a new one")
        self._forget_used_challenges(now_ms)
        if challenge in self._used_challenges:
            raise Unauthenticated("challenge: already used, ask for a new one")
        weakness = key_defect(account_key)
        if weakness is not None:  # stored before weak keys were refused: nobody may log in
            raise PermissionDenied(f"handle: the account key of {handle!r} is {weakness}")
        if not signature_is_valid(account_key, LOGIN_DOMAIN, challenge, signature):
            raise PermissionDenied(f"signature: does not verify with the account key of {handle!r}")
        self._used_challenges[challenge] = expires_at_ms
        return self._issue(handle, now_ms)

    def _forget_used_challenges(self, now_ms: int) -> None:
        while self._used_challenges:
            oldest, expires_at_ms = next(iter(self._used_challenges.items()))
            if expires_at_ms > now_ms:
                break
            del self._used_challenges[oldest]

    # ------------------------------------------------------------------ tokens

    def now_ms(self) -> int:
        return self._clock_ms()

    def issue(self, handle: str) -> IssuedToken:
        """A token without a login: for a cluster node's own calls (``NODE_HANDLE_PREFIX``)."""
        return self._issue(handle, self._clock_ms())

    def _issue(self, handle: str, now_ms: int) -> IssuedToken:
        expires_at_ms = now_ms + self._token_ttl_ms
        payload = _TOKEN_HEADER.pack(_TOKEN_VERSION, expires_at_ms, secrets.token_bytes(8))
        payload += handle.encode()
        raw = payload + _mac(self._secret, b"token", payload)
        return IssuedToken(base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), expires_at_ms)

    def authenticate(self, token: str) -> Session:
        """The session a token stands for; UNAUTHENTICATED when it is forged or expired."""
        session = self._verified.get(token)
        if session is None:
            session = self._verify(token)
            self._verified[token] = session
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        if session.expires_at_ms <= self._clock_ms():
            self._verified.pop(token, None)
            raise Unauthenticated("authorization: token expired, log in again")
        return session

    def _verify(self, token: str) -> Session:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError as exc:
            raise Unauthenticated("authorization: malformed bearer token") from exc
        if len(raw) < _TOKEN_HEADER.size + _MAC_BYTES + 3:
            raise Unauthenticated("authorization: malformed bearer token")
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, _mac(self._secret, b"token", payload)):
            raise Unauthenticated("authorization: token not issued by this supernode")
        version, expires_at_ms, session_id = _TOKEN_HEADER.unpack_from(payload)
        if version != _TOKEN_VERSION:
            raise Unauthenticated(f"authorization: token version {version} not supported")
        return Session(payload[_TOKEN_HEADER.size :].decode(), session_id, expires_at_ms)
