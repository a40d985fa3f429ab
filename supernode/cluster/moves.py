"""Moving partitions while serving: the controller's next step from here to a planned placement.

``placement.plan`` says where every partition should be; this module says how to get there
without losing a write or failing a read ("rebuilding the plane in flight"). A partition
whose replicas must change gets a *move* (``Placement.moves``): from then on coordinators
write to the old and the new replica set, a quorum in each, while the nodes the move adds
stream the partition from a majority of the old replicas (``supernode.cluster.mover``) and
report it under ``/streamed/<node>``. Once every added node has reported the partition at
the epoch its move began, one transaction *flips* it: the new set becomes the read set.
Reads use the old set until then, so they never see a replica that is still filling.

Why a majority and not one replica: a write is acknowledged by a quorum, so a single
replica may lack it; a majority of the old set always holds every acknowledged write.

At most ``max_moving`` partitions move at once, bounding the streaming load a join or a
decommission puts on the cluster. Pure: the controller (``membership.py``) does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from supernode.cluster.placement import Placement

# node -> partition -> the ``changed_at`` epoch of the move the node streamed it for
Streamed = Mapping[str, Mapping[int, int]]


def streamed_for(placement: Placement, partition: int, streamed: Streamed) -> bool:
    """Whether every node the move of ``partition`` adds has streamed it for this move."""
    since = placement.changed_at(partition)
    return all(
        streamed.get(node, {}).get(partition, 0) >= since for node in placement.incoming(partition)
    )


def advance(
    current: Placement,
    destination: Sequence[tuple[str, ...]],
    streamed: Streamed,
    *,
    max_moving: int,
) -> Placement:
    """The next placement on the way from ``current`` to ``destination`` (one row per
    partition, owner first), or ``current`` itself when there is nothing to do yet.

    * A moving partition whose added nodes all streamed it flips to its destination.
    * A moving partition whose destination changed (a member came or went) is redirected
      and starts again (``changed`` bumps, so earlier reports no longer count); one whose
      destination is where it already is stops moving.
    * A partition that only changes owner, or only loses replicas, changes at once: no
      node needs data it lacks.
    * Other partitions start moving, in partition order, while fewer than ``max_moving``
      are in flight.

    ``changed[p]`` becomes the new epoch for every partition whose write targets changed.
    """
    if len(destination) != current.partitions:
        raise ValueError(f"destination: {len(destination)} rows for {current.partitions}")
    if max_moving < 1:
        raise ValueError(f"max_moving: {max_moving} (need at least 1)")
    epoch = current.epoch + 1
    replicas = list(current.replicas)
    moves = dict(current.moves)
    changed = [current.changed_at(p) for p in range(current.partitions)]
    waiting: list[int] = []
    dirty = False
    for p, (now, want) in enumerate(zip(current.replicas, destination, strict=True)):
        going = moves.get(p)
        if going is not None and set(going) == set(want):
            if streamed_for(current, p, streamed):
                replicas[p] = want
                del moves[p]
                changed[p] = epoch
                dirty = True
            elif going != want:  # only the owner differs: no data moves, nothing restarts
                moves[p] = want
                dirty = True
            continue
        if going is not None:  # redirected: the destination it was streamed for is gone
            del moves[p]
            changed[p] = epoch
            dirty = True
        if want == now:
            continue
        if set(want) <= set(now):  # a new owner, or fewer replicas: nothing to stream
            replicas[p] = want
            changed[p] = epoch if set(want) != set(now) else changed[p]
            dirty = True
        else:
            waiting.append(p)
    for p in waiting[: max(0, max_moving - len(moves))]:
        moves[p] = destination[p]
        changed[p] = epoch
        dirty = True
    if not dirty:
        return current
    return Placement(epoch, current.replication_factor, tuple(replicas), moves, tuple(changed))


def moving_to(placement: Placement, node: str) -> dict[int, int]:
    """The partitions ``node`` must stream now: partition -> the epoch its move began."""
    return {
        p: placement.changed_at(p) for p in sorted(placement.moves) if node in placement.incoming(p)
    }
