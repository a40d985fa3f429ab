"""The cluster benchmark: its pure parts (the plan, the renewal records and how many to
sign), then the whole run in quick mode: an older revision's worktree, both single nodes,
two 3-node clusters (replication factor 1 and 3) with their etcds, every workload measured
with zero errors by the Python generator and every native (h2load) case judged good by the
servers' own counters, the report saved, and nothing left behind. Timings are never asserted:
they depend on the machine."""

from __future__ import annotations

import pickle
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.cluster import (
    RENEW,
    RENEWAL_RATE_CEILING,
    RENEWALS,
    RF1,
    RF3,
    TARGETS,
    Point,
    RenewalSigner,
    SignedRenewals,
    load_spec,
    plan,
    renewal_spec,
    renewals_needed,
    settings_from_args,
)
from benchmarks.dataset import Dataset
from benchmarks.systems.base import ClientSpec
from client_sdk.protocol.signing import DEVICE_RECORD_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from tests.integration.bench_runs import ROOT, run_quick_and_load

WORKLOADS = {
    ("before", "lookup"),
    ("after", "lookup"),
    ("after", RENEW),
    (RF1, "lookup-local"),
    (RF1, "lookup-forwarded"),
    (RF1, "lookup-proxied"),
    (RF1, "lookup-ring"),
    (RF1, "lookup-many-10-local"),
    (RF1, "lookup-many-10-mixed"),
    (RF3, "lookup-one"),
    (RF3, "lookup-ring"),
    (RF3, "lookup-quorum"),
    (RF3, RENEW),
}
QUICK_CONCURRENCY = (1, 4)
COMPARISONS = 10


def test_rounds_alternate_the_systems_at_each_concurrency() -> None:
    before, after = ClientSpec("before", "lookup", "x"), ClientSpec("after", "lookup", "y")
    points = plan([before, after], (1, 16), rounds=2)
    assert [(p.round, p.concurrency, p.client.system) for p in points] == [
        (r, c, s) for r in (1, 2) for c in (1, 16) for s in ("before", "after")
    ]


def _renewals(signed: SignedRenewals) -> list[tuple[int, str, pb.DeviceRecord, bool]]:
    """(target, token, record, signature valid) of every call, checked with the user's key."""
    dataset = Dataset(8)
    found = []
    for node, token, raw in signed.calls:
        request = pb.RegisterDeviceRequest.FromString(raw)
        record = pb.DeviceRecord.FromString(request.signed.record)
        index = int(record.handle.removeprefix("user"))
        key = dataset.identities[index % len(dataset.identities)].public_key
        valid = signature_is_valid(
            key, DEVICE_RECORD_DOMAIN, request.signed.record, request.signed.signature
        )
        found.append((node, signed.tokens[token], record, valid))
    return found


def test_renewals_renew_every_device_in_turn_with_a_higher_seq_over_the_targets(
    tmp_path: Path,
) -> None:
    tokens = ["token-0", "token-1", "token-2"]  # users 0-2: six devices
    signer = RenewalSigner(Dataset(8), tokens, ["a:1", "b:2", "c:3"], tmp_path)
    first = _renewals(signer.sign(10, now_ms=1_000))
    second = _renewals(signer.sign(4, now_ms=2_000))
    calls = first + second
    assert all(valid for *_, valid in calls)
    assert [node for node, *_ in calls] == [i % 3 for i in range(14)]
    assert all(token == f"token-{int(r.handle[4:])}" for _, token, r, _ in calls)
    assert [r.issued_at_ms for _, _, r, _ in calls] == [1_000] * 10 + [2_000] * 4
    # Devices come round in a fixed order; each time with the next seq (the loaded one is 1).
    devices = [(r.handle, r.device_id) for _, _, r, _ in calls]
    assert len(set(devices[:6])) == 6 and devices[6:12] == devices[:6]
    seqs: dict[tuple[str, str], list[int]] = {}
    for device, (_, _, record, _) in zip(devices, calls, strict=True):
        seqs.setdefault(device, []).append(record.seq)
    assert all(s == list(range(2, 2 + len(s))) for s in seqs.values())
    assert Counter(len(s) for s in seqs.values()) == {3: 2, 2: 4}
    assert signer.signed == 14


def test_each_renewal_point_gets_its_own_file_and_one_client(tmp_path: Path) -> None:
    settings = settings_from_args(["--quick"])
    signer = RenewalSigner(Dataset(8), ["t0", "t1"], ["a:1", "b:2"], tmp_path)
    point = Point(1, renewal_spec(RF3, ["a:1", "b:2"]), concurrency=16)
    spec = load_spec(settings, point)
    assert (spec.connections, spec.processes, spec.concurrency) == (1, 1, 16)
    assert spec.client.options[TARGETS] == "a:1,b:2"
    first = signer.prepare(spec, 5)
    path = Path(first.client.options[RENEWALS])
    batch = pickle.loads(path.read_bytes())
    assert isinstance(batch, SignedRenewals) and len(batch.calls) == 5
    second = signer.prepare(spec, 3)
    assert not path.exists()  # the previous point's records are removed
    assert Path(second.client.options[RENEWALS]) != path
    assert RENEWALS not in spec.client.options  # the workload's own spec is unchanged


def test_renewals_are_signed_for_twice_the_measured_rate_else_the_ceiling() -> None:
    assert renewals_needed(4.0, None) == int(RENEWAL_RATE_CEILING * 4) + 100
    assert renewals_needed(4.0, 900.0) == 1800 * 4 + 100
    assert renewals_needed(1.0, 0.0) >= 100  # a point that measured nothing still sends


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_cluster_benchmark_measures_every_workload_and_cleans_up(tmp_path: Path) -> None:
    stdout, data = run_quick_and_load("benchmarks.cluster", tmp_path)
    assert "| comparison |" in stdout

    rows = {(r["system"], r["workload"], r["concurrency"]) for r in data["rows"]}
    assert rows == {(*w, c) for w in WORKLOADS for c in QUICK_CONCURRENCY}
    for figure in data["figures"]:
        where = (figure["system"], figure["workload"], figure["concurrency"])
        assert figure["failure"] is None and figure["errors"] == 0, (where, figure["error_kinds"])
        assert figure["completed"] > 0, where
    assert len(data["comparisons"]) == COMPARISONS * len(QUICK_CONCURRENCY)
    run = data["run"]
    assert {c: run["clusters"][c]["replication_factor"] for c in (RF1, RF3)} == {RF1: 1, RF3: 3}
    forwarded = run["forwarded_calls"]
    # Replication factor 1: node 0 really forwarded the forwarded workloads.
    assert forwarded[RF1]["Lookup"] > 0 and forwarded[RF1]["LookupMany"] > 0
    # Replication factor 3: ONE lookups stayed on node 0, QUORUM ones asked its peers, and
    # renewals coordinated by node 0 were written to the other replicas.
    assert forwarded[RF3]["Lookup"] == 0
    assert forwarded[RF3]["Versions"] > 0 and forwarded[RF3]["Apply"] > 0
    assert all(run["renewals_signed"][s] > 0 for s in ("after", RF3))

    # The native generator's cases: every one measured, judged by the servers' counters.
    native = {row["label"]: row for row in data["native"]}
    assert len(native) == 7 and len(data["native_comparisons"]) == 3
    for label, row in native.items():
        assert row["failures"] == [] and row["rounds"] == 1, (label, row["failures"])
        assert row["req_per_s"] > 0 and row["cpu_ms_per_op"] is not None, label
    assert "## Native generator (h2load)" in stdout

    for removed in (run["before_tree"], run["renewals_dir"]):
        assert not Path(removed).exists()
    worktrees = subprocess.run(
        ["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert run["before_tree"] not in worktrees
