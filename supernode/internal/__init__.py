"""Contracts private to the server: never served on the public listener, never in the SDK."""
