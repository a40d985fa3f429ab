"""How ``lookup``, ``search`` and ``watch`` print SDK values: JSON documents (keys are the
SDK's field names; keys and signatures in hex; enums as their values) and human lines.
Pure functions, so every shape is tested without a node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from client_sdk import Account, Device, Endpoint, EventKind, Presence, PresenceEvent, SearchResult


def account_json(account: Account) -> dict[str, Any]:
    return {
        "handle": account.handle,
        "display_name": account.display_name,
        "account_key": account.account_key.hex(),
        "discoverable": account.discoverable,
        "created_at_ms": account.created_at_ms,
    }


def device_json(device: Device) -> dict[str, Any]:
    return {
        "handle": device.handle,
        "device_id": device.device_id,
        "seq": device.seq,
        "status": device.status.value,
        "issued_at_ms": device.issued_at_ms,
        "ttl_seconds": device.ttl_seconds,
        "expires_at_ms": device.expires_at_ms,
        "attached_supernode": device.attached_supernode,
        "endpoints": [_endpoint(e) for e in device.endpoints],
        "capabilities": list(device.capabilities),
        "transport_key": device.transport_key.hex(),
    }


def _endpoint(endpoint: Endpoint) -> str:
    """``udp:192.0.2.1:5000/host``; an IPv6 address in brackets."""
    address = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
    return f"{endpoint.protocol.value}:{address}:{endpoint.port}/{endpoint.type.value}"


def presence_json(presence: Presence) -> dict[str, Any]:
    return {
        "account": account_json(presence.account),
        "devices": [device_json(d) for d in presence.devices],
    }


def search_json(query: str, results: Sequence[SearchResult]) -> dict[str, Any]:
    return {
        "query": query,
        "results": [
            {"handle": r.handle, "display_name": r.display_name, "account_key": r.account_key.hex()}
            for r in results
        ],
    }


def event_json(event: PresenceEvent) -> dict[str, Any]:
    """One ``watch --json`` line."""
    document: dict[str, Any] = {"kind": event.kind.value}
    if event.kind is EventKind.SNAPSHOT:
        snapshot = event.snapshot or {}
        document["snapshot"] = {h: presence_json(p) for h, p in sorted(snapshot.items())}
        document["not_found"] = sorted(event.not_found)
        document["after_gap"] = event.after_gap
        return document
    document["handle"] = event.handle
    document["device_id"] = event.device_id
    if event.device is not None:
        document["device"] = device_json(event.device)
    if event.reason is not None:
        document["reason"] = event.reason.value
    return document


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def render_presence(presence: Presence) -> str:
    account = presence.account
    lines = [
        f"{account.handle}  {account.display_name!r}  key {account.account_key.hex()[:16]}...  "
        f"{'discoverable' if account.discoverable else 'not discoverable'}  "
        f"{len(presence.devices)} device(s) online"
    ]
    if presence.devices:
        rows = [("DEVICE", "STATUS", "SEQ", "EXPIRES_MS", "ATTACHED", "ENDPOINTS")]
        rows += [
            (
                d.device_id,
                d.status.value,
                str(d.seq),
                str(d.expires_at_ms),
                d.attached_supernode or "-",
                " ".join(_endpoint(e) for e in d.endpoints) or "-",
            )
            for d in presence.devices
        ]
        lines += _table(rows)
    return "\n".join(lines) + "\n"


def render_search(results: Sequence[SearchResult]) -> str:
    if not results:
        return "no matches\n"
    rows = [("HANDLE", "DISPLAY NAME", "KEY")]
    rows += [(r.handle, r.display_name or "-", r.account_key.hex()[:16] + "...") for r in results]
    return "\n".join(_table(rows)) + "\n"


def render_event(event: PresenceEvent) -> str:
    """One human line per event (a snapshot: one line per watched handle)."""
    if event.kind is EventKind.SNAPSHOT:
        prefix = "snapshot after gap" if event.after_gap else "snapshot"
        lines = [
            f"{prefix} {h}: {len(p.devices)} device(s) "
            + " ".join(f"{d.device_id}={d.status.value}" for d in p.devices)
            for h, p in sorted((event.snapshot or {}).items())
        ]
        lines += [f"{prefix} {h}: no such account" for h in sorted(event.not_found)]
        return "".join(line.rstrip() + "\n" for line in lines)
    detail = ""
    if event.device is not None:
        detail = f" seq {event.device.seq} {event.device.status.value}"
    if event.reason is not None:
        detail = f" ({event.reason.value})"
    return f"{event.kind.value} {event.handle}/{event.device_id}{detail}\n"
