"""The join benchmark (benchmarks.cluster_join) in quick mode: a real etcd and three nodes,
a 4th joining under an open-loop lookup load and watched renewals. Checked: every phase has
figures, the new node really received partitions, no acknowledged renewal's event went
missing. Timings are never asserted: they depend on the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cluster_join import AFTER, JOIN, STEADY, settings_from_args
from tests.integration.bench_runs import run_quick_and_load


def test_settings_refuse_a_rate_or_share_out_of_range() -> None:
    with pytest.raises(SystemExit, match="lookup-rate"):
        settings_from_args(["--lookup-rate", "-5"])
    for share in ("0", "1.5"):
        with pytest.raises(SystemExit, match="stream-share"):
            settings_from_args(["--stream-share", share])
    quick = settings_from_args(["--quick"])
    assert (quick.users, quick.steady_s) == (200, 3.0)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_join_benchmark_measures_every_phase_and_misses_no_notification(
    tmp_path: Path,
) -> None:
    stdout, data = run_quick_and_load("benchmarks.cluster_join", tmp_path)
    assert "| phase |" in stdout

    phases = {row["phase"]: row for row in data["phases"]}
    assert list(phases) == [STEADY, JOIN, AFTER]
    for name, row in phases.items():
        assert row["lookups"] > 0 and row["lookup_p99_us"] > 0, name
        failed = sum(row["lookups_failed"].values())
        assert row["lookup_success"] == pytest.approx(1 - failed / row["lookups"]), name
        assert row["missed"] == 0, (name, row)
    run = data["run"]
    assert run["join"]["partitions_streamed"] > 0 and run["join"]["stream_versions"] > 0
    assert run["unexpected_events"] == 0
    # Notified renewals carry a delay; the steady phase always holds some.
    assert phases[STEADY]["notified"] > 0 and phases[STEADY]["delay_p99_us"] > 0
