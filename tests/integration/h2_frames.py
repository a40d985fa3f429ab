"""A proxy that counts the HTTP/2 frames crossing it: keepalive PINGs and GOAWAYs, seen on
the wire instead of guessed from timing."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

from tests.integration.tap import RecordingProxy

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 section 3.4: the client's first bytes
_HEADER = 9  # RFC 9113 section 4.1: length (3), type (1), flags (1), stream id (4)
_NAMES = {0x6: "PING", 0x7: "GOAWAY"}
_ACK = 0x1


class FrameParser:
    """Reads one direction of a cleartext HTTP/2 connection; counts its frames by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._buffer = bytearray()
        self.side = ""  # "client" or "server": who sends these bytes

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if not self.side:
            if len(self._buffer) < len(_PREFACE) and _PREFACE.startswith(self._buffer):
                return
            self.side = "client" if self._buffer.startswith(_PREFACE) else "server"
            if self.side == "client":
                del self._buffer[: len(_PREFACE)]
        while len(self._buffer) >= _HEADER:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < _HEADER + length:
                return
            kind, flags = self._buffer[3], self._buffer[4]
            name = _NAMES.get(kind)
            if name == "PING" and flags & _ACK:
                name = "PING ACK"
            if name is not None:
                self.counts[name] += 1
            del self._buffer[: _HEADER + length]


class _Observed:
    """A stream reader whose bytes also go to a parser."""

    def __init__(self, reader: asyncio.StreamReader, parser: FrameParser) -> None:
        self._reader = reader
        self._parser = parser

    async def read(self, n: int = -1) -> bytes:
        data = await self._reader.read(n)
        self._parser.feed(data)
        return data


class FrameCountingProxy(RecordingProxy):
    """A ``RecordingProxy`` that also counts the PING, PING ACK and GOAWAY frames of each
    direction of each connection through it (one ``FrameParser`` per direction)."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.directions: list[FrameParser] = []

    def sent_by(self, side: str) -> list[Counter[str]]:
        """Frame counts of each connection's ``side`` ("client" or "server") so far."""
        return [parser.counts.copy() for parser in self.directions if parser.side == side]

    def total(self, name: str) -> int:
        return sum(parser.counts[name] for parser in self.directions)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = FrameParser()
        self.directions.append(parser)
        await super()._pump(cast(asyncio.StreamReader, _Observed(reader, parser)), writer)
