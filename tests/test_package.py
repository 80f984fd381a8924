"""The project as users install it: a wheel with the bundled examples and both commands, which
work from any folder."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.core
ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_packages_the_examples_and_the_commands(tmp_path):
    source = tmp_path / "source"  # setuptools builds inside the source tree: use a copy
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)], check=True)
    (wheel,) = tmp_path.glob("sttm_studio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    examples = sorted(p.name for p in (ROOT / "assets" / "examples").iterdir())
    assert sorted(n.rsplit("/", 1)[1] for n in names
                  if n.startswith("sttm_assets/examples/")) == examples
    for module in ("sttm_core/models/registry.py", "sttm_core/sweep/cli.py", "sttm_viz/app.py",
                   "sttm_core/lmms_plugin/model.py", "sttm_core/evidence.py"):
        assert module in names
    web = sorted(p.name for p in (ROOT / "sttm_viz" / "web").iterdir())
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("sttm_viz/web/")) == web
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "sttm-studio = sttm_viz.app:main" in text
    assert "sttm-sweep = sttm_core.sweep.cli:main" in text
    assert "[lmms_eval.models]\nsttm = sttm_core.lmms_plugin:manifests" in text


@pytest.mark.parametrize("command, says", [("sttm-studio", "--no-model"),
                                           ("sttm-sweep", "--budgets")])
def test_commands_answer_help_from_another_folder(tmp_path, command, says):
    done = subprocess.run([command, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"usage: {command}" in done.stdout and says in done.stdout


def test_an_installed_package_finds_its_examples(tmp_path):
    code = ("from sttm_core.examples import examples_dir; d = examples_dir(); "
            "print(len(list(d.glob('*.mp4'))), (d / 'qa.jsonl').is_file())")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["8", "True"]


def test_the_readme_lists_every_reduction_method_as_the_registry_has_it():
    from sttm_core.methods import METHODS

    readme = (ROOT / "README.md").read_text()
    for m in METHODS.values():
        row = (f"| `{m.name}` | {m.label} | {m.takes} | {'yes' if m.query_aware else 'no'} | "
               f"{m.summary} |")
        assert row in readme, f"README's methods table is out of date for {m.name}"
