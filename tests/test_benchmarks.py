"""The benchmark scripts run and report what the README's tables show (no timing asserts)."""
import argparse
import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_ttft_reports_fixed_thresholds_budgets_merge_time_and_peak_memory():
    ttft = runpy.run_path(str(BENCHMARKS / "ttft.py"))
    args = argparse.Namespace(arch="tiny-qwen2-vl", model=None, num_layers=None, frames=4,
                              max_pixels=None, merge_layer=2, device="cpu", attn="sdpa",
                              repeats=1, skip_fastv=False)
    result = ttft["run"](args)
    rows = {r["label"]: r for r in result["rows"]}
    assert list(rows) == ["all tokens", "STTM τ 0.85/0.60", "STTM τ 0.80/0.60", "STTM 50%",
                          "STTM 30%", "STTM 15%", "FastV 50%", "FastV 30%", "FastV 15%"]
    assert rows["STTM τ 0.85/0.60"]["method"] == "sttm"  # fixed thresholds: no budget search
    assert rows["all tokens"]["merge_s"] is None
    assert all(r["merge_s"] > 0 for label, r in rows.items() if label != "all tokens")
    assert all(r["peak_mib"] > 0 and r["prefill_mib"] >= 0 for r in rows.values())
    assert rows["STTM 30%"]["tokens"][1] < rows["all tokens"]["tokens"][1]
