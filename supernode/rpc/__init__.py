"""The gRPC edge: parse the request, call the domain, map results and errors to statuses.

Handlers are registered as generic handlers on raw bytes, so stored bytes go out without a
decode/re-encode and a malformed request is our INVALID_ARGUMENT rather than gRPC's INTERNAL.
"""
