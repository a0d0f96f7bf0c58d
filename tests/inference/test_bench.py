"""`python -m core bench --json`: the report's shape and its invariants (never its timings: the
machine is shared, so speed is measured by running the command, not asserted in tests)."""

from __future__ import annotations

import json

from core.cli import main


def test_bench_reports_cascade_and_same_work_figures(capsys):
    assert (
        main(
            [
                "bench",
                "--json",
                "--repeats",
                "1",
                "--naive-slices",
                "2",
                "--agreement-images",
                "0",
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert set(res["scan"]) == {"tcia_24x256", "brats_155x240"}
    for s in res["scan"].values():
        assert 1 <= s["tumor_type_slices_read"] <= s["slices"]
        assert s["ours_s"] > 0 and s["ours_every_slice_s"] > 0 and s["naive_s"] > 0
        assert abs(s["speedup"] - s["naive_s"] / s["ours_s"]) < 1e-9
        assert abs(s["speedup_same_work"] - s["naive_s"] / s["ours_every_slice_s"]) < 1e-9
    assert res["scan"]["brats_155x240"]["naive_estimated_from_slices"] == 2
    for a in res["agreement"]["tasks"].values():  # fp32 against itself
        assert a["identical_labels_pct"] == 100.0 and a["precision"] == "fp32"
    assert res["cam"]["cached_hit"] is True
    assert set(res["targets_met"]) >= {"scan_24_s<=2", "speedup>=5 (155-slice scan, cascade)", "labels>=99.5%"}
    assert set(res["flip_tta"]) == {"presence", "tumor_type"}
