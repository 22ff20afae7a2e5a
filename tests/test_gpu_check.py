"""The prepared GPU check cannot rot: its CPU dry run (`--device cpu --tiny`) runs the same code
path end to end and writes a JSON report with every section and a log."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] is True
    assert report["plan"]["tiny"] is True
    assert report["environment"]["device"] == "cpu"

    fit = report["fit"]
    assert "error" not in fit
    assert fit["epochs"] >= 1 and fit["completed"] is True
    assert fit["frames_per_s"] > 0 and fit["projected_s_300_epochs"] > 0
    assert math.isfinite(fit["final_psnr"]) and fit["final_psnr"] > 0
    assert len(fit["psnr_curve"]) == fit["epochs"]
    assert all(math.isfinite(r["train_psnr"]) for r in fit["psnr_curve"])
    for key in ("render_psnr_fp32", "render_psnr_bf16", "render_psnr_bf16_vs_fp32"):
        assert math.isfinite(fit[key])

    decode = report["decode"]
    assert "error" not in decode
    timed = {(r["dtype"], r["batch"]): r for r in decode["runs"]}
    assert set(timed) == {("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)}
    assert all(r["frames_per_s"] > 0 and r["iters"] >= 3 for r in timed.values())
    assert math.isfinite(decode["psnr_bf16_vs_fp32"]) and decode["psnr_bf16_vs_fp32"] > 20
    e2e = decode["decoder_end_to_end"]
    assert e2e["frames_per_s"] > 0 and e2e["shape"] == [8, 36, 64, 3]

    tests = report["tests"]
    assert tests["returncode"] == 0 and tests["ok"] is True
    assert tests["tests"] >= 5 and tests["failures"] == 0 and tests["errors"] == 0

    targets = report["targets"]
    assert targets["meaningful"] is False
    assert {"fit_300_epochs_s", "decode_fps"} <= set(targets)

    log = (out / "gpu_check.log").read_text()
    assert "done in" in log and "fit: PSNR curve" in log and "decode: eager fp32 batch 1" in log
    assert (out / "pytest_gpu.xml").is_file()
