"""The benchmark report's smoke run: it completes, writes both files, and its figures are numbers."""
import json
import math

import pytest
import torch

from diffusion_edu import heun
from diffusion_edu.course import bench, report as bench_report


def test_steps_for_counts_model_evaluations():
    assert bench.steps_for(heun, 19) == 10 and bench.steps_for(heun, 20) == 10  # 19 evaluations fit in 20
    assert bench.steps_for(bench.ddim, 20) == 20


def test_quick_bench_writes_markdown_and_json(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "BENCH.md"
    report = bench_report.run(quick=True, out=out)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["quick"] is True and saved["n_eval"] == 200 and saved["seeds"] == 2
    text = out.read_text()
    assert "## Chapter 09" in text
    assert text.startswith("# Benchmarks") and "--quick" in text and "## Goals" in text and "## Floors" in text
    digit_rows = report["uncond"] + report["cond"] + report["training_curve"]
    ratios = [row[space]["fdd_ratio"] for row in digit_rows for space in ("cnn", "mlp")]
    ratios += [row["sw_ratio"] for row in report["toys"]]
    ratios += [row[space]["mean"] for m in report["latent"]["models"].values() for row in m["rows"].values()
               for space in ("cnn", "mlp")]  # chapter 09
    assert ratios and all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in ratios)
    assert all(row["cnn"]["lo"] <= row["cnn"]["fdd_ratio"] <= row["cnn"]["hi"] for row in digit_rows)
    for space in ("cnn", "mlp"):  # equal class counts sit below the honest floor; one real draw scatters about it
        f = report["floors"][space]
        assert 0 < f["stratified"] < f["fdd"] and f["draw_lo"] < 1 < f["draw_hi"]
    assert all(0 <= r["accuracy"] <= 1 for r in report["cond"])
    assert report["memory_mib"]["train"] > 0 and report["memory_mib"]["sample"] > 0
    assert report["notebooks"] and all(r["passed"] for r in report["notebooks"])
    [graded] = report["grading"]
    assert graded["points"] == "10 / 10" and graded["seconds"] > 0 and "## Classroom" in text


def test_one_section_is_re_measured_and_the_rest_kept(tmp_path, monkeypatch):
    out = tmp_path / "BENCH.md"
    calls = []
    fake = {name: (lambda j, name=name: calls.append(name) or f"{name} figures") for name in bench.sections(True)}
    monkeypatch.setattr(bench, "sections", lambda quick: fake)
    monkeypatch.setattr(bench, "judges", lambda n: {})
    monkeypatch.setattr(bench_report, "render", lambda report: "rendered")
    bench_report.run(quick=True, out=out, only=["toys"])
    assert calls == ["toys"] and not out.exists(), "a partial run writes the JSON only"
    bench_report.run(quick=True, out=out)
    calls.clear()
    bench_report.run(quick=True, out=out, only=["peer", "toys"])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert calls == ["peer", "toys"] and saved["uncond"] == "uncond figures" and out.read_text() == "rendered"
    with pytest.raises(ValueError, match="only must name sections among"):
        bench_report.run(quick=True, out=out, only=["uncondd"])
