"""The lmms-eval plugin: `--model sttm` resolved by name through lmms-eval's registry (the
`lmms_eval.models` entry point in pyproject.toml) answers real lmms-eval requests on a tiny
checkpoint and the bundled videos, prefilling each video once.

lmms-eval is an optional extra installed without its dependencies (its pins clash with ours).
When it is not importable here, lmms-eval==0.7.3 and loguru are pip-installed once into
pytest's cache (--no-deps --target). Importing lmms-eval changes global state (warnings
filters, loguru sinks), so it runs in a subprocess (support/lmms_driver.py) whose PYTHONPATH
holds that folder; the assertions are made here, against VideoChat run directly.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import pytest

from sttm_core import STTMConfig
from sttm_core.chat import VideoChat
from sttm_core.lmms_plugin.options import parse_model_args
from sttm_core.merge import OFF
from sttm_core.models.checkpoints import load_model

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
GROUP = "lmms_eval.models"
LMMS_EVAL = ["lmms-eval==0.7.3", "loguru==0.7.3"]
# what pip says when the index cannot be reached or does not serve the pinned versions
UNREACHABLE = ("No matching distribution found", "NewConnectionError", "Network is unreachable",
               "Failed to establish a new connection", "Temporary failure in name resolution",
               "ProxyError", "ConnectTimeout", "Read timed out")
SETTINGS = dict(num_frames=4, max_pixels=28 * 28 * 15, max_new_tokens=6)
QUESTIONS = ["What is shown?", "<image>\nWhich colour dominates?", "Does anything move?",
             "How many objects are there?", "What happens at the end?"]
VIDEO_OF = [0, 1, 0, 0, 1]  # the videos' questions interleave, as a task's docs may


@pytest.fixture(scope="session")
def lmms_env(request, tmp_path_factory):
    """os.environ for a process that imports lmms-eval and sees this checkout's entry point."""
    paths = [*_lmms_eval_site(request, tmp_path_factory), *_entry_point_shim(tmp_path_factory),
             str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def _lmms_eval_site(request, tmp_path_factory) -> list[str]:
    """[] when lmms-eval is importable, else a folder with it (and loguru), installed once."""
    if importlib.util.find_spec("lmms_eval") and importlib.util.find_spec("loguru"):
        return []
    cache = getattr(request.config, "cache", None)
    name = "lmms-eval-site-" + "_".join(s.replace("==", "-") for s in LMMS_EVAL)
    site = Path(cache.mkdir(name) if cache else tmp_path_factory.mktemp(name))
    done = site / "INSTALLED"
    if not done.exists():
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                              "--upgrade", "--target", str(site), *LMMS_EVAL],
                             capture_output=True, text=True)
        if pip.returncode and any(sign in pip.stdout + pip.stderr for sign in UNREACHABLE):
            pytest.skip(f"lmms-eval is not installed and pip cannot get {' '.join(LMMS_EVAL)} "
                        f"from the package index: {pip.stderr.strip().splitlines()[-1]}")
        assert pip.returncode == 0, pip.stdout + pip.stderr
        done.write_text(" ".join(LMMS_EVAL))
    return [str(site)]


def _entry_point_shim(tmp_path_factory) -> list[str]:
    """[] when the installed sttm-studio declares this checkout's lmms_eval.models entry points
    (CI: `pip install -e .` of this checkout). Otherwise (installed from another checkout, or
    not installed) a folder with a dist-info named like the project that declares them: found
    before site-packages, it stands in for the installed metadata in the subprocess."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = declared_entry_points()
    try:
        installed = metadata.distribution("sttm-studio").entry_points.select(group=GROUP)
    except metadata.PackageNotFoundError:
        installed = []
    if {ep.name: ep.value for ep in installed} == declared:
        return []
    folder = tmp_path_factory.mktemp("entry_points")
    info = folder / f"sttm_studio-{pyproject['project']['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sttm-studio\n"
                                   f"Version: {pyproject['project']['version']}\n")
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\n" + "".join(f"{name} = {value}\n" for name, value in declared.items()))
    return [str(folder)]


def declared_entry_points() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]


def drive(env, tmp_path, runs) -> dict:
    """Run support/lmms_driver.py on these runs; returns what it found."""
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps({"task": "videomme", "split": "test", "runs": runs}))
    done = subprocess.run([sys.executable, "-m", "support.lmms_driver", str(spec), str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(out.read_text())


def direct_answers(checkpoint, config, requests) -> tuple[list[str], list[int]]:
    """Each question asked of a fresh VideoChat (no prefix shared with anything), cut at
    its stop strings: what the plugin must return, in request order; and each prompt's
    tokens before merging (its frames capped by max_pixels)."""
    loaded = load_model(str(checkpoint), device="cpu", max_pixels=SETTINGS["max_pixels"])
    texts, lengths = [], []
    for request in requests:
        chat = VideoChat(loaded, config, num_frames=SETTINGS["num_frames"],
                         max_new_tokens=SETTINGS["max_new_tokens"])
        chat.load_video(request["video"], SETTINGS["num_frames"])
        question = request["context"].replace("<image>", "").strip()
        reply = chat.ask(question, max_new_tokens=request["gen_kwargs"]["max_new_tokens"])
        text = reply.text
        for stop in request["gen_kwargs"]["until"]:
            text = text.split(stop)[0]
        texts.append(text)
        lengths.append(reply.tokens_before)
    return texts, lengths


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_lmms_eval_resolves_sttm_and_answers_requests(lmms_env, tiny_checkpoints, examples,
                                                      tmp_path):
    checkpoint = tiny_checkpoints["tiny-qwen2-vl"]
    videos = [str(examples / "static.mp4"), str(examples / "camera_pan.mp4")]
    requests = [{"context": q, "video": videos[v],
                 "gen_kwargs": {"max_new_tokens": 6, "temperature": 0, "do_sample": False,
                                "num_beams": 1, "top_p": 1.0, "until": ["\n\n"]}}
                for q, v in zip(QUESTIONS, VIDEO_OF)]
    common = (f"pretrained={checkpoint},device=cpu,num_frames={SETTINGS['num_frames']},"
              f"max_pixels={SETTINGS['max_pixels']}")
    sttm_log, fastv_log = tmp_path / "sttm.jsonl", tmp_path / "new_folder" / "fastv.jsonl"
    refused_log = tmp_path / "refused.jsonl"
    found = drive(lmms_env, tmp_path, [
        {"model_args": f"{common},tau_s=0.85,tau_t=0.65,merge_layer=2,log_file={sttm_log}",
         "requests": requests},
        {"model_args": f"{common},method=fastv,keep_ratio=0.5,merge_layer=1,log_file={fastv_log}",
         "requests": requests},
        {"model_args": f"{common},log_file={refused_log}",  # the 2nd request's video is missing
         "requests": [requests[0], dict(requests[1], video=str(tmp_path / "gone.mp4"))]}])

    declared = declared_entry_points()  # lmms-eval loaded this checkout's entry point
    assert {name: found["entry_points"].get(name) for name in declared} == declared
    assert found["listed"] and found["class"] == "sttm_core.lmms_plugin.model.STTMLmms"
    assert Path(found["sttm_core"]).resolve().parent.parent == ROOT  # this checkout's code ran
    sttm, fastv, refused = found["runs"]
    # a bad request stops the run before any question is answered
    assert "task videomme, doc 1: the video" in refused["error"] and "gone.mp4" in refused["error"]
    assert refused_log.read_text() == ""
    configs = [STTMConfig(0.85, 0.65, root_level=1, merge_layer=2),
               STTMConfig(method="fastv", keep_ratio=0.5, merge_layer=1)]
    assert [sttm["config"], fastv["config"]] == [asdict(c) for c in configs]
    for run, config, log_file in zip((sttm, fastv), configs, (sttm_log, fastv_log)):
        expected, lengths = direct_answers(checkpoint, config, requests)
        assert len(set(expected)) > 1  # otherwise the order would go unchecked
        assert run["texts"] == expected  # one answer per request, in request order
        rows = read_log(log_file)
        assert len(rows) == len(requests)
        # max_pixels= reached the frames (uncapped, each of 2 token frames has >= 128 tokens)
        assert [r["tokens_before"] for r in sorted(rows, key=lambda r: r["doc_id"])] == lengths
        assert max(lengths) < 2 * 128
        # answered grouped by video (first video first); doc ids are request indices
        assert [r["doc_id"] for r in rows] == [0, 2, 3, 1, 4]
        assert [r["video"] for r in rows] == [videos[VIDEO_OF[r["doc_id"]]] for r in rows]
        assert {r["task"] for r in rows} == {"videomme"}
        assert all(r["tokens_after"] < r["tokens_before"] and 0 < r["keep_ratio"] < 1
                   and r["ttft_s"] > 0 for r in rows)
        assert run["token_counts"] == [
            {"input_tokens": r["tokens_after"], "output_tokens": r["num_generated"]}
            for r in sorted(rows, key=lambda r: r["doc_id"])]
        assert "loglikelihood" in run["loglikelihood_refused"]
    # STTM ignores the question: each video is prefilled once, by its first question.
    # FastV keeps the patches the question attends to: a prefill for every question.
    assert [r["cache_reused"] for r in read_log(sttm_log)] == [False, True, True, False, True]
    assert not any(r["cache_reused"] for r in read_log(fastv_log))


def test_sttm_core_never_imports_lmms_eval(lmms_env, tmp_path):
    code = ("import importlib.util, sys, sttm_core, sttm_core.chat, sttm_core.lmms_plugin, "
            "sttm_core.lmms_plugin.options; print(importlib.util.find_spec('lmms_eval') is not "
            "None, any(m.split('.')[0] == 'lmms_eval' for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=lmms_env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]  # importable there, yet not imported


# --- model_args, parsed without lmms-eval ---------------------------------------------------------

def test_model_args_become_the_config_and_the_settings():
    # values as lmms-eval's handle_arg_string leaves them: numbers parsed, "-1" a float
    s = parse_model_args({"pretrained": "ckpt", "tau_s": 0.9, "tau_t": "none", "root_level": -1.0,
                          "merge_layer": 0, "num_frames": 128, "max_pixels": 200704,
                          "dtype": "bfloat16", "log_file": "run.jsonl", "batch_size": "1"})
    assert s.config == STTMConfig(0.9, OFF, root_level=-1, merge_layer=0)
    assert (s.pretrained, s.num_frames, s.max_pixels, s.dtype, s.log_file) == (
        "ckpt", 128, 200704, "bfloat16", "run.jsonl")
    assert parse_model_args({"pretrained": "x", "tau_s": "OFF"}).config.spatial_threshold is OFF
    defaults = parse_model_args({"pretrained": "x", "batch_size": 1})
    assert defaults.config == STTMConfig() and defaults.num_frames == 32
    assert defaults.max_new_tokens == 32 and defaults.device is None


@pytest.mark.parametrize("args, config", [
    ({"keep_ratio": 0.3}, STTMConfig(method="sttm_budget", keep_ratio=0.3)),
    ({"method": "uniform", "keep_ratio": 0.5}, STTMConfig(method="uniform", keep_ratio=0.5)),
    ({"method": "all", "merge_layer": 3}, STTMConfig.all_tokens(merge_layer=3)),
])
def test_a_keep_ratio_means_a_budget_method(args, config):
    assert parse_model_args({"pretrained": "x", **args}).config == config


@pytest.mark.parametrize("args, says", [
    ({}, "pretrained="),
    ({"tau": 0.8}, "unknown model_args tau"),
    ({"batch_size": 4}, "one request at a time"),
    ({"batch_size": "auto"}, "one request at a time"),
    ({"method": "tome"}, "not one of"),
    ({"method": "uniform", "keep_ratio": 0.5, "tau_s": 0.8}, "takes no tau_s"),
    ({"method": "all", "tau_t": 0.6}, "merges nothing"),
    ({"tau_s": 0.8, "keep_ratio": 0.5, "method": "sttm"}, "takes no keep_ratio"),
    ({"method": "fastv"}, "keep_ratio must be"),
    ({"tau_t": "high"}, "tau_t='high' is not a number"),
    ({"merge_layer": 1.5}, "merge_layer=1.5 is not an integer"),
    ({"num_frames": 0}, "num_frames=0 must be >= 1"),
    ({"dtype": "fp8"}, "dtype='fp8'"),
])
def test_bad_model_args_are_refused_with_the_reason(args, says):
    with pytest.raises(ValueError, match=says):
        parse_model_args({"pretrained": "x", **args} if args else {})
