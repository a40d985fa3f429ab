"""``SearchService``: account search, rate limited against scraping per session, per
account (logging in again does not reset it) and per source address."""

import grpc

from client_sdk.protocol import wire
from client_sdk.protocol.v1 import search_pb2
from supernode.directory.accounts import Accounts
from supernode.directory.privacy import Privacy
from supernode.metrics import Metrics
from supernode.overload import Shedding
from supernode.rate import RateLimited
from supernode.ratelimit import TokenBuckets
from supernode.rpc.auth import session_of
from supernode.rpc.handlers import unary_handler
from supernode.rpc.source import RateGates
from supernode.sessions import SessionAuthority

SEARCH_SERVICE = "supernode.v1.SearchService"


class SearchApi:
    def __init__(
        self,
        accounts: Accounts,
        sessions: SessionAuthority,
        buckets: TokenBuckets,
        gates: RateGates | None = None,
        *,
        privacy: Privacy,
    ) -> None:
        """``buckets``: per session; ``gates``: per account and per source; ``privacy``:
        who may find whom (undiscoverable accounts and blockers never show)."""
        self._accounts = accounts
        self._privacy = privacy
        self._sessions = sessions
        self._buckets = buckets
        gates = gates or RateGates.off()
        self._gate = gates.gate("Search")
        self._count_refusal = gates.limiter.count_refusal

    def search(self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> bytes:
        session = session_of(context, self._sessions)
        if not self._buckets.allow(session.session_id):
            self._count_refusal("Search", "session")
            hint = max(1, round(self._buckets.retry_after(session.session_id) * 1000))
            raise RateLimited(
                f"search: rate limit of this session reached, retry in {hint / 1000:.1f} s",
                hint,
                key="session",
            )
        self._gate.check(context, session.handle)
        caller = session.handle
        found = self._accounts.search(
            request.query,
            request.limit,
            lambda handle: self._privacy.searchable_by(caller, handle),
        )
        # SearchResponse{repeated Account accounts = 1, repeated bytes account_signatures = 2}:
        # stored bytes, framed; the signatures parallel to the accounts (b"": none stored).
        return wire.repeated_field(1, [r.account for r in found]) + wire.repeated_field(
            2, [r.signature for r in found]
        )

    def method_handlers(
        self, metrics: Metrics, shedding: Shedding | None = None
    ) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {
            SEARCH_SERVICE: {
                "Search": unary_handler(
                    "Search", search_pb2.SearchRequest, self.search, metrics, shedding
                )
            }
        }
