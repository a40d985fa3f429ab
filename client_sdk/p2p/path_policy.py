"""Which path carries the connection: a pure state machine fed with events and time.

"P2P first, the relay as backup": the direct (ICE) path is preferred while it works; when it
goes silent the connection moves to the relay, which stays joined for exactly this, and it
moves back once the direct path answers again. The decision rests on the paths themselves,
not on QUIC: each side sends small probes down every path and the peer answers each one on
the path it came by, so a round trip proves both directions of that path (a NAT or firewall
that starts dropping UDP in either direction silences the direct path for both peers).

Shaped like aioquic's ``QuicConnection``: inputs are method calls with ``now``; outputs are
pulled (:meth:`PathPolicy.probes_to_send`, :meth:`PathPolicy.next_event`,
:meth:`PathPolicy.get_timer`). No sockets, no clock, no event loop: ``paths.PathSwitch`` is
the asyncio shell that sends the probes and calls :meth:`PathPolicy.handle_timer`.

Rules (one place, each tested in ``tests/unit/test_path_policy.py``):

- Preference: direct while it is *up*, else the relay, else whatever path is left.
- Direct goes *down* when no probe on it was answered for ``dead_after`` seconds (a path
  just proven by ICE counts as answered when added), or when the peer's traffic arrives on
  the relay while direct has gone unanswered for ``suspect_after`` (or was never answered by
  a probe): the peer gave up on direct first (or chose the relay at setup), so follow it
  instead of sending into a path it no longer reads.
- Direct comes back *up* after ``recover_after`` answers to probes sent since it went down;
  one lucky datagram through a flapping NAT is not enough.
- Direct is probed every ``probe_interval`` whether up or down (that is what finds it again);
  the relay every ``relay_keepalive`` seconds, which keeps an idle relay session open (the
  relay ends sessions idle for longer than its announced idle timeout).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field

_TOKEN_BITS = 64


class PathKind(enum.Enum):
    DIRECT = "direct"
    RELAY = "relay"


@dataclass(frozen=True)
class PathPolicySettings:
    """Timing of the probes and of the decisions; the defaults switch within ~3-4 s."""

    # Direct probes: one per second is ~30 bytes/s each way, cheap next to QUIC's traffic.
    probe_interval: float = 1.0
    # Silence that makes direct "down": three probe intervals, so one or two lost probes
    # on a lossy link do not move the connection.
    dead_after: float = 3.0
    # Silence after which the peer's move to the relay is believed at once.
    suspect_after: float = 1.5
    # Answers needed before direct is used again.
    recover_after: int = 2
    # Relay keepalive probes; the relay's own idle timeout (30 s by default) caps it.
    relay_keepalive: float = 10.0


class PathChangeReason(enum.Enum):
    SETUP = "setup"  # the first path chosen
    PATH_ADDED = "path added"
    DIRECT_SILENT = "direct path silent"
    PEER_MOVED = "peer moved to the relay"
    DIRECT_ANSWERS = "direct path answers again"
    PATH_CLOSED = "path closed"


@dataclass(frozen=True)
class PathChange:
    """The connection moved from ``old`` to ``new`` (None: no path) at ``at``.

    ``waited_seconds`` is how long the switch took as the policy saw it: on leaving the
    direct path, the time since it last answered (the outage the connection sat through
    before moving); on returning to it, the time since its first answer after the outage.
    None where no such time exists (setup, a path closing).
    """

    at: float
    old: PathKind | None
    new: PathKind | None
    reason: PathChangeReason
    waited_seconds: float | None = None


@dataclass(frozen=True)
class Probe:
    """Send a probe carrying ``token`` down the path of ``kind``."""

    kind: PathKind
    token: int


@dataclass
class _Path:
    kind: PathKind
    interval: float
    next_probe_at: float
    # Evidence that the path works: the last probe answer, or when it was added proven.
    last_heard: float | None
    answered_ever: bool = False
    down_since: float | None = None
    recovering_since: float | None = None  # first answer after going down
    answers_since_down: int = 0


@dataclass
class PathPolicy:
    """Chooses the active path from probe answers, peer traffic and time; see the module."""

    settings: PathPolicySettings = field(default_factory=PathPolicySettings)
    # Tokens make probe answers unguessable to an off-path sender (ICE hands our sockets
    # any datagram from anywhere); pass a seeded ``random.Random`` in tests.
    rng: random.Random = field(default_factory=random.SystemRandom)
    active: PathKind | None = None
    _paths: dict[PathKind, _Path] = field(default_factory=dict)
    _outstanding: dict[int, tuple[PathKind, float]] = field(default_factory=dict)
    _probes: list[Probe] = field(default_factory=list)
    _events: deque[PathChange] = field(default_factory=deque)

    # ------------------------------------------------------------------ inputs

    def add(
        self, kind: PathKind, now: float, *, proven: bool, keepalive: float | None = None
    ) -> None:
        """A path is usable; ``proven``: it just carried a round trip (ICE's checks).

        A direct path added unproven starts down and must earn ``recover_after`` answers.
        ``keepalive`` caps the relay's probe interval (a third of its idle timeout, say).
        """
        if kind is PathKind.DIRECT:
            interval = self.settings.probe_interval
        else:
            interval = self.settings.relay_keepalive
            if keepalive is not None:
                interval = min(interval, keepalive)
        path = _Path(kind, interval, now + interval, now if proven else None)
        if not proven:
            path.down_since = now
        self._paths[kind] = path
        self._choose(now, PathChangeReason.PATH_ADDED)

    def remove(self, kind: PathKind, now: float) -> None:
        """The path ended for good (relay session closed, ICE consent expired)."""
        if self._paths.pop(kind, None) is None:
            return
        for token in [t for t, (k, _) in self._outstanding.items() if k is kind]:
            del self._outstanding[token]
        self._choose(now, PathChangeReason.PATH_CLOSED)

    def probe_answered(self, kind: PathKind, token: int, now: float) -> None:
        """An answer to one of our probes arrived on ``kind``; anything else is ignored."""
        sent = self._outstanding.get(token)
        path = self._paths.get(kind)
        if sent is None or sent[0] is not kind or path is None:
            return  # unknown, stale or forged, or an answer on another path than the probe's
        del self._outstanding[token]
        path.last_heard = now
        path.answered_ever = True
        if path.down_since is not None and sent[1] >= path.down_since:
            path.answers_since_down += 1
            if path.recovering_since is None:
                path.recovering_since = now
            if path.answers_since_down >= self.settings.recover_after:
                path.down_since = None
        self._choose(now, PathChangeReason.DIRECT_ANSWERS)

    def peer_sent(self, kind: PathKind, now: float) -> None:
        """The peer's connection traffic (not a probe) arrived on ``kind``."""
        direct = self._paths.get(PathKind.DIRECT)
        if kind is not PathKind.RELAY or direct is None or direct.down_since is not None:
            return
        heard = direct.last_heard
        if not direct.answered_ever or heard is None or now - heard >= self.settings.suspect_after:
            self._go_down(direct, now)
            self._choose(now, PathChangeReason.PEER_MOVED)

    def handle_timer(self, now: float) -> None:
        """Send the probes that are due and notice a direct path gone silent."""
        for path in self._paths.values():
            if now >= path.next_probe_at:
                self._probe(path, now)
        direct = self._paths.get(PathKind.DIRECT)
        if direct is not None and direct.down_since is None and self._silent(direct, now):
            self._go_down(direct, now)
            self._choose(now, PathChangeReason.DIRECT_SILENT)
        self._forget_unanswered(now)

    # ------------------------------------------------------------------ outputs

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: no path)."""
        times = [path.next_probe_at for path in self._paths.values()]
        direct = self._paths.get(PathKind.DIRECT)
        if direct is not None and direct.down_since is None and direct.last_heard is not None:
            times.append(direct.last_heard + self.settings.dead_after)
        return min(times, default=None)

    def probes_to_send(self) -> list[Probe]:
        probes, self._probes = self._probes, []
        return probes

    def next_event(self) -> PathChange | None:
        return self._events.popleft() if self._events else None

    def is_up(self, kind: PathKind) -> bool:
        path = self._paths.get(kind)
        return path is not None and path.down_since is None

    # ------------------------------------------------------------------ internals

    def _silent(self, path: _Path, now: float) -> bool:
        return path.last_heard is None or now - path.last_heard >= self.settings.dead_after

    def _go_down(self, path: _Path, now: float) -> None:
        path.down_since = now
        path.recovering_since = None
        path.answers_since_down = 0

    def _probe(self, path: _Path, now: float) -> None:
        token = self.rng.getrandbits(_TOKEN_BITS)
        self._outstanding[token] = (path.kind, now)
        self._probes.append(Probe(path.kind, token))
        path.next_probe_at = now + path.interval

    def _forget_unanswered(self, now: float) -> None:
        # An answer later than this would not change any decision; bounds the table.
        horizon = 2 * max(self.settings.dead_after, self.settings.relay_keepalive)
        for token in [t for t, (_, sent) in self._outstanding.items() if now - sent > horizon]:
            del self._outstanding[token]

    def _preferred(self) -> PathKind | None:
        if self.is_up(PathKind.DIRECT):
            return PathKind.DIRECT
        if PathKind.RELAY in self._paths:
            return PathKind.RELAY
        return PathKind.DIRECT if PathKind.DIRECT in self._paths else None

    def _choose(self, now: float, reason: PathChangeReason) -> None:
        new = self._preferred()
        if new is self.active:
            return
        old, self.active = self.active, new
        if old is None and new is not None:
            reason = PathChangeReason.SETUP
        waited = None
        direct = self._paths.get(PathKind.DIRECT)
        if reason is PathChangeReason.DIRECT_ANSWERS and direct is not None:
            waited = None if direct.recovering_since is None else now - direct.recovering_since
            direct.recovering_since = None
        elif reason in (PathChangeReason.DIRECT_SILENT, PathChangeReason.PEER_MOVED):
            assert direct is not None
            waited = None if direct.last_heard is None else now - direct.last_heard
        self._events.append(PathChange(now, old, new, reason, waited))
