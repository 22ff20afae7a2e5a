"""The report's BD table: a delta that cannot be computed is reported as missing, with why."""

from gnerv.evaluation.report import bd_rates


def test_rate_delta_without_psnr_delta_is_reported_not_crashed():
    curves = {
        "gnerv": ([1.0, 2.0, 3.0], [30.0, 33.0, 35.0]),
        # overlaps in PSNR (so a BD-rate exists) but not in rate (so no BD-PSNR)
        "x264": ([0.1, 0.2, 0.3], [28.0, 31.0, 34.0]),
    }
    (row,) = bd_rates(curves)
    assert row["bd_rate_percent"] is not None and row["bd_rate_percent"] > 0
    assert row["bd_psnr_db"] is None and "bd_psnr_db" in row["note"]


def test_identical_curves_give_zero():
    c = ([1.0, 2.0, 3.0], [30.0, 33.0, 35.0])
    (row,) = bd_rates({"gnerv": c, "x265": c})
    assert abs(row["bd_rate_percent"]) < 1e-9 and abs(row["bd_psnr_db"]) < 1e-9
    assert "note" not in row
