"""The benchmark report's smoke run: it completes, writes both files, and its figures are numbers."""
import json
import math

import torch

from diffusion_edu import bench, heun


def test_steps_for_counts_model_evaluations():
    assert bench.steps_for(heun, 19) == 10 and bench.steps_for(heun, 20) == 10  # 19 evaluations fit in 20
    assert bench.steps_for(bench.ddim, 20) == 20


def test_quick_bench_writes_markdown_and_json(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "BENCH.md"
    report = bench.run(quick=True, out=out)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["quick"] is True and saved["n_eval"] == 200
    text = out.read_text()
    assert text.startswith("# Benchmarks") and "--quick" in text and "## Goals" in text
    rows = report["uncond"] + report["cond"] + report["toys"] + report["training_curve"]
    ratios = [r.get("fdd_ratio", r.get("sw_ratio")) for r in rows]
    assert ratios and all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in ratios)
    assert all(0 <= r["accuracy"] <= 1 for r in report["cond"])
    assert report["memory_mib"]["train"] > 0 and report["memory_mib"]["sample"] > 0
    assert report["notebooks"] and all(r["passed"] for r in report["notebooks"])
    [graded] = report["grading"]
    assert graded["points"] == "10 / 10" and graded["seconds"] > 0 and "## Classroom" in text
