"""One app process with many concurrent lookups: coalesced into LookupMany, or one call each.

What an app sees through the SDK (verification of every record included), against a real
``supernode serve`` loaded with a generated data set, in one run::

    .venv/bin/python -m benchmarks.coalescing                    # 64 in flight, 10 s each
    .venv/bin/python -m benchmarks.coalescing --concurrency 8 --seconds 5 --json out.json

Modes 1 and 2 run ``--concurrency`` tasks that look up random handles back to back for
``--seconds`` after a warm-up, with and without coalescing; mode 3 ("watched") watches
``--contacts`` handles and looks them up one at a time, answered in process from the watch
(``client_sdk.contacts``). Each prints lookups per second, the latency each caller saw
(p50, p99, p99.9, HdrHistogram), and how many gRPC calls the client made.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

from benchmarks.dataset import Dataset
from benchmarks.histogram import new_histogram, record_us, summarize
from benchmarks.systems.supernode import SupernodeSystem
from client_sdk import Client, ClientConfig, Identity


@dataclasses.dataclass(frozen=True)
class ModeResult:
    mode: str
    lookups: int
    seconds: float
    lookups_per_second: float
    batches: int
    p50_us: int
    p99_us: int
    p999_us: int


async def _run_mode(
    target: str, users: int, *, coalesce: bool, concurrency: int, seconds: float, warmup: float
) -> ModeResult:
    config = ClientConfig(plaintext=True, coalesce_lookups=coalesce)
    client = Client(
        target, Identity.generate(), f"bench.app{random.randrange(10**9)}", config=config
    )
    async with client:
        await client.create_account("Bench App")
        histogram = new_histogram()
        counting = False
        done = 0
        rng = random.Random(7)

        async def worker(stop_at: float) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                handle = Dataset.handle(rng.randrange(users))
                started = time.perf_counter()
                await client.lookup(handle)
                if counting:
                    record_us(histogram, (time.perf_counter() - started) * 1e6)
                    done += 1

        await asyncio.gather(*(worker(time.monotonic() + warmup) for _ in range(concurrency)))
        counting = True
        coalescer = client._lookups  # the batch count is the point of the mode
        batches_before = sum(c.batches_sent for c in coalescer.values())
        started = time.monotonic()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        batches = sum(c.batches_sent for c in coalescer.values()) - batches_before
    summary = summarize(histogram)
    return ModeResult(
        mode="coalesced" if coalesce else "one call each",
        lookups=done,
        seconds=round(elapsed, 2),
        lookups_per_second=round(done / elapsed),
        batches=batches if coalesce else done,
        p50_us=summary.p50,
        p99_us=summary.p99,
        p999_us=summary.p999,
    )


async def _run_watched(target: str, users: int, *, seconds: float, contacts: int) -> ModeResult:
    """Lookups of contacts the app watches: answered in process from the watch."""
    config = ClientConfig(plaintext=True)
    client = Client(
        target, Identity.generate(), f"bench.app{random.randrange(10**9)}", config=config
    )
    async with client:
        await client.create_account("Bench App")
        handles = [Dataset.handle(i) for i in range(min(contacts, users))]
        watch = client.watch(handles)
        async for _snapshot in watch:  # the snapshot
            break
        rng = random.Random(7)
        histogram = new_histogram()
        hits_before = client.contacts.hits
        done = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            handle = handles[rng.randrange(len(handles))]
            began = time.perf_counter()
            await client.lookup(handle)
            record_us(histogram, (time.perf_counter() - began) * 1e6)
            done += 1
            if done % 256 == 0:
                await asyncio.sleep(0)  # answers from memory never wait: let the watch run
        elapsed = time.monotonic() - started
        local = client.contacts.hits - hits_before
        await watch.close()
    summary = summarize(histogram)
    return ModeResult(
        mode="watched",
        lookups=done,
        seconds=round(elapsed, 2),
        lookups_per_second=round(done / elapsed),
        batches=done - local,  # lookups that went to the server
        p50_us=summary.p50,
        p99_us=summary.p99,
        p999_us=summary.p999,
    )


async def run(args: argparse.Namespace) -> list[ModeResult]:
    system = SupernodeSystem()
    await system.start(Dataset(args.users))
    try:
        target = system.workloads()[0].target
        results = []
        for coalesce in (False, True):
            results.append(
                await _run_mode(
                    target,
                    args.users,
                    coalesce=coalesce,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
            )
        results.append(
            await _run_watched(target, args.users, seconds=args.seconds, contacts=args.contacts)
        )
        return results
    finally:
        await system.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000, help="users in the data set")
    parser.add_argument("--concurrency", type=int, default=64, help="lookups in flight")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per mode")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured time per mode")
    parser.add_argument("--contacts", type=int, default=500, help="handles watched (mode 3)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.users < 1 or args.concurrency < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--users and --concurrency must be positive, --seconds too")
    results = asyncio.run(run(args))
    print(
        f"{'mode':<14} {'lookups/s':>10} {'calls':>8} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9}"
    )
    for r in results:
        print(
            f"{r.mode:<14} {r.lookups_per_second:>10} {r.batches:>8} "
            f"{r.p50_us:>8} {r.p99_us:>8} {r.p999_us:>9}"
        )
    single, coalesced, _ = results
    ratio = coalesced.lookups_per_second / single.lookups_per_second
    print(f"coalesced / one call each: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
