"""The metrics port's routing and readiness, on the real registry of a node's metrics."""

import errno
import urllib.error
import urllib.request

from supernode.metrics import Metrics


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readiness_follows_the_lifecycle_and_the_extra_check() -> None:
    metrics = Metrics()
    member_missing: list[str | None] = [None]
    port = metrics.serve_http("127.0.0.1", 0, lambda: member_missing[0])
    base = f"http://127.0.0.1:{port}"
    try:
        assert _get(f"{base}/readyz") == (503, "not ready: starting\n")
        assert _get(f"{base}/healthz") == (200, "ok\n")  # alive while starting
        metrics.not_ready = None
        assert _get(f"{base}/readyz") == (200, "ready\n")
        member_missing[0] = "not a live member"
        assert _get(f"{base}/readyz") == (503, "not ready: not a live member\n")
        member_missing[0] = None
        metrics.not_ready = "draining"
        assert _get(f"{base}/readyz") == (503, "not ready: draining\n")
        status, body = _get(f"{base}/metrics")
        assert status == 200 and "supernode_build_info{" in body
        assert _get(f"{base}/nothing")[0] == 404
    finally:
        metrics.stop_http()


def test_a_taken_port_is_the_binds_own_error() -> None:
    """Its errno intact: ``supernode.startup.binding`` turns it into the one line naming
    ``server.metrics_listen`` (tests/integration/test_startup_errors.py)."""
    first = Metrics()
    port = first.serve_http("127.0.0.1", 0)
    try:
        second = Metrics()
        try:
            second.serve_http("127.0.0.1", port)
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
        else:
            raise AssertionError("a second bind of a taken port succeeded")
    finally:
        first.stop_http()
