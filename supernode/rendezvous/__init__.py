"""Helping peers find a path to each other: STUN, signaling (rendezvous) and the relay."""
