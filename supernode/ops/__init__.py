"""What an operator runs beside ``serve``: node status and backups through the node's admin
socket (:mod:`supernode.ops.admin`), offline restore (:mod:`supernode.ops.backup`), and a
data client for poking at the directory with a stored identity (:mod:`supernode.ops.data`).

Command-line parsing is in :mod:`supernode.ops.commands`; ``supernode.cli`` only registers it.
"""
