"""Run a recording proxy in a lab namespace; what it saw goes to a file on SIGTERM.

python -m tests.nat.tap_proxy LISTEN_HOST:PORT UPSTREAM_HOST:PORT OUT_FILE
"""

import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.integration.tap import RecordingProxy


async def main(listen: str, upstream: str, out: Path) -> None:
    host, port = listen.rsplit(":", 1)
    proxy = await RecordingProxy(upstream, (host, int(port))).start()
    print(json.dumps({"event": "ready", "address": proxy.address}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await asyncio.to_thread(out.write_bytes, bytes(proxy.recorded))
    await proxy.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
