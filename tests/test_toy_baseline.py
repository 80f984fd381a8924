"""A new reduction is one registry entry: registered (tests/support/toy_baseline.py) before the
rest is imported, it appears in the sweep's methods, the app's menu and the page protocol, the
lmms plugin's method=, the README's table (methods_table), and runs at its budget."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sttm_core.methods import methods_table

pytestmark = pytest.mark.core
TESTS = Path(__file__).parent

PROBE = """
import json, sys
sys.path.insert(0, {tests!r})
import support.toy_baseline  # the one registration
import torch
from sttm_core import STTMConfig
from sttm_core.methods import methods_table, reduce_tokens
from sttm_core.lmms_plugin.options import reduction_config
from sttm_core.sweep.cli import build_parser
from sttm_viz.protocol import METHOD_MENU, page_protocol

args = build_parser().parse_args(["videos", "--features", "pixel", "--methods", "toy_pool",
                                  "--budgets", "0.5"])
config = reduction_config({{"pretrained": "x", "method": "toy_pool", "keep_ratio": "0.5"}})
result = reduce_tokens(torch.randn(2, 8, 8, 16), config)
print(json.dumps({{"sweep": args.methods, "menu": METHOD_MENU.get("Toy pooling"),
                  "page": page_protocol({{}})["methods"]["toy_pool"]["computed"],
                  "lmms": [config.method, config.budget], "keep": result.keep_ratio,
                  "table": "| `toy_pool` | Toy pooling | budget | no |" in methods_table()}}))
"""


def test_a_toy_baseline_registered_in_one_file_appears_everywhere():
    done = subprocess.run([sys.executable, "-c", PROBE.format(tests=str(TESTS))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["sweep"] == ["toy_pool"] and seen["menu"] == "toy_pool"
    assert seen["page"] == "server" and seen["lmms"] == ["toy_pool", 0.5]
    assert abs(seen["keep"] - 0.5) < 0.1 and seen["table"]


def test_the_readme_table_is_the_registry():
    readme = (TESTS.parent / "README.md").read_text()
    assert methods_table() in readme, ("README's methods table is stale: paste the output of "
                                       "python -c 'from sttm_core.methods import methods_table "
                                       "as t; print(t())'")
