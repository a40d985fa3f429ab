"""ICE with aioice: gather host and server-reflexive candidates, run connectivity checks.

aioice facts this module is shaped by (measured, see the project's findings): remote
candidates must end with ``add_remote_candidate(None)`` or ``connect()`` never fails;
``connect()`` has no timeout of its own; a failed check takes ~64 s with the default STUN
retries, so :func:`limit_stun_retries` lowers them (hole punching still succeeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aioice
from aioice import ice as aioice_ice
from aioice import stun

# Two retransmissions: a failed pair gives up in ~3.5 s instead of ~64 s.
STUN_RETRIES = 2
# Consent checks (RFC 7675) run every ~5 s; aioice closes the pair after 6 failures
# (~30 s). The path policy now decides, in seconds, when direct is unusable and moves the
# connection to the relay; the pair is kept open longer so that it can be found again
# when the network comes back (UDP blocked for a minute, a Wi-Fi hand-over), and still
# ends after ~2 min of silence, as consent expiry demands.
CONSENT_FAILURES = 24


def quiet_candidate_logs() -> None:
    """aioice logs every candidate and candidate pair at INFO: the user's and the peer's IP
    addresses, in any app that logs at INFO. Unless the app chose a level for the "aioice"
    logger itself, its records start at WARNING (set it to INFO to debug ICE)."""
    logger = logging.getLogger("aioice")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def limit_stun_retries(retries: int = STUN_RETRIES) -> None:
    """aioice reads these module-level settings; they affect every aioice user in the
    process (the retry limit, and the consent expiry above)."""
    stun.RETRY_MAX = retries
    aioice_ice.CONSENT_FAILURES = CONSENT_FAILURES


class IceAgent:
    def __init__(self, *, controlling: bool, stun_server: tuple[str, int] | None) -> None:
        self.connection = aioice.Connection(
            ice_controlling=controlling, stun_server=stun_server, use_ipv6=False
        )

    async def gather(self, *, enabled: bool = True) -> None:
        """Gather candidates; with ``enabled`` False, none are offered (relay-only privacy)."""
        if enabled:
            await self.connection.gather_candidates()

    @property
    def ufrag(self) -> str:
        return str(self.connection.local_username)

    @property
    def password(self) -> str:
        return str(self.connection.local_password)

    def candidates(self) -> list[str]:
        return [candidate.to_sdp() for candidate in self.connection.local_candidates]

    async def connect(
        self, ufrag: str, password: str, candidates: list[str], *, within: float
    ) -> bool:
        """Run the checks against the peer's candidates; True once a pair works."""
        self.connection.remote_username = ufrag
        self.connection.remote_password = password
        for line in candidates:
            with contextlib.suppress(ValueError):  # a peer's junk line costs only that line
                await self.connection.add_remote_candidate(aioice.Candidate.from_sdp(line))
        await self.connection.add_remote_candidate(None)
        try:
            async with asyncio.timeout(within):
                await self.connection.connect()
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def close(self) -> None:
        await self.connection.close()
