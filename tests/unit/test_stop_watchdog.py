"""A stop that hangs still ends the process (supernode.server._exit_if_stuck)."""

import subprocess
import sys

PROGRAM = """
import logging, time
logging.basicConfig(level="INFO")
from supernode.server import _exit_if_stuck
_exit_if_stuck(0.3)
time.sleep(30)  # a stop that never finishes
"""


def test_a_stuck_stop_exits_with_a_logged_reason() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 1
    assert "shutdown did not finish within 0 s; exiting now" in done.stderr
