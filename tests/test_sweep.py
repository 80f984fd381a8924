"""The threshold sweep (`python -m sttm_core.sweep`): pixel and model sweeps, resuming, the
per-process part files and a real two-process run under accelerate launch."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sttm_core import sweep
from sttm_core.examples import examples_dir
from sttm_core.qa import load_qa

EXAMPLES = examples_dir()
QA = EXAMPLES / "qa.jsonl"
VIDEOS = sorted({item.video.name for item in load_qa(QA)})
PIXEL = ["--features", "pixel", "--frames", "8", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def stable(rows) -> list[dict]:
    """Rows without the timing column, which differs from run to run."""
    return [{k: v for k, v in r.items() if k != "merge_s"} for r in rows]


def keys(rows) -> list[tuple]:
    return [tuple(r[k] for k in sweep.KEY) for r in rows]


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} was not written"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000, f"{path.name} is not a real PNG"
    assert len(data) <= 300_000, f"{path.name} is {len(data)} bytes"


@pytest.mark.core
def test_pixel_sweep_rows_monotone_plots(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep.main([str(QA), *PIXEL, "--tau-s", "0.6,0.8,0.95", "--tau-t", "0.5,0.7,none",
                       "--budgets", "0.3", "--methods", "sttm,sttm_budget,uniform", "--out",
                       str(out)]) == 0
    rows = read(out / "results.csv")
    settings = {(r["method"], r["tau_s"], r["tau_t"], r["budget"]) for r in rows}
    assert len(settings) == 9 + 2 and {r["video"] for r in rows} == set(VIDEOS)
    assert len(rows) == len(settings) * len(VIDEOS) == len(set(keys(rows)))
    keep = {(r["video"], r["tau_s"], r["tau_t"]): (float(r["keep_ratio"]),
                                                   float(r["spatial_keep_ratio"]))
            for r in rows if r["tau_s"]}
    for video in VIDEOS:
        for tau_t in ("0.5", "0.7", "none"):  # a lower tauS only coarsens the partition
            spatial = [keep[video, s, tau_t][1] for s in ("0.6", "0.8", "0.95")]
            assert spatial == sorted(spatial) and spatial[0] < spatial[-1]
        for tau_s in ("0.6", "0.8", "0.95"):  # a lower tauT only adds merged pairs
            total = [keep[video, tau_s, t][0] for t in ("0.5", "0.7", "none")]
            assert total == sorted(total)
            assert keep[video, tau_s, "none"][0] == keep[video, tau_s, "none"][1]
    by_category = {r["category"] for r in rows}
    assert {"static", "fast_motion", "scene_cuts"} <= by_category
    summary = read(out / "summary.csv")
    assert [s["label"] for s in summary][-2:] == ["STTM budget 30%", "Uniform pooling 30%"]
    assert abs(float(summary[-2]["keep_ratio"]) - 0.3) < 0.02
    for name in ("keep_by_category.png", "keep_vs_tau.png"):
        assert_png(out / name)
    printed = capsys.readouterr().out
    assert "STTM τS 0.6 τT 0.5" in printed and "no recommendation" in printed


def pixel_args(out: Path, *extra) -> list[str]:
    return [str(QA), *PIXEL, "--tau-s", "0.7,0.9", "--tau-t", "0.6,none", "--budgets", "0.3",
            "--methods", "sttm,sttm_budget,temporal_only", "--out", str(out), "--no-plots", *extra]


@pytest.mark.core
def test_resume_recomputes_exactly_the_missing_cells(tmp_path):
    out = tmp_path / "out"
    first = sweep.run(sweep.parse_args(pixel_args(out)))
    full = read(out / "results.csv")
    assert len(first.computed) == len(full) == 6 * len(VIDEOS)
    # interrupted: the last 5 cells never written, and a row cut off in the middle
    lost = full[-5:]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sweep.PIXEL_COLUMNS)
        writer.writeheader()
        writer.writerows(full[:-5])
        f.write(",".join(lost[0][c] for c in sweep.PIXEL_COLUMNS)[:-3])  # no newline
    again = sweep.run(sweep.parse_args(pixel_args(out)))
    assert sorted(again.computed) == sorted(k[:5] for k in keys(lost))
    assert stable(read(out / "results.csv")) == stable(full)  # same rows and order, no doubles
    complete = sweep.run(sweep.parse_args(pixel_args(out)))
    assert complete.computed == [] and stable(read(out / "results.csv")) == stable(full)
    # a wider sweep in the same folder runs only its new setting
    wider = sweep.run(sweep.parse_args(pixel_args(out, "--tau-s", "0.7,0.9,0.8")))
    assert {k[:4] for k in wider.computed} == {("sttm", "0.8", "0.6", ""),
                                               ("sttm", "0.8", "none", "")}
    assert len(wider.computed) == 2 * len(VIDEOS)


@pytest.mark.core
def test_part_files_of_an_interrupted_parallel_run_are_merged(tmp_path):
    out = tmp_path / "out"
    sweep.run(sweep.parse_args(pixel_args(out)))
    full = read(out / "results.csv")
    for name, part in (("results.csv", full[:20]), ("results.part0.csv", full[20:35]),
                       ("results.part1.csv", full[30:])):  # rows 30-34 written twice
        with (out / name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sweep.PIXEL_COLUMNS)
            writer.writeheader()
            writer.writerows(part)
    outcome = sweep.run(sweep.parse_args(pixel_args(out)))
    assert outcome.computed == []
    assert read(out / "results.csv") == full
    assert not list(out.glob("results.part*"))


@pytest.mark.model
def test_model_sweep_end_to_end(tmp_path, tiny_checkpoints, capsys):
    qa = tmp_path / "qa.jsonl"
    questions = [dict(video=str(EXAMPLES / "static.mp4"), question="What colour is the circle?",
                      options=["pink", "blue", "orange"], answer="C", category="static", id="s1"),
                 dict(video=str(EXAMPLES / "static.mp4"), question="How many shapes?",
                      options=["2", "5"], category="static", id="s2"),  # no answer
                 dict(video=str(EXAMPLES / "scene_cuts.mp4"), question="How many cuts?",
                      options=["1", "2", "3"], answer="B", category="scene_cuts", id="c1")]
    qa.write_text("\n".join(json.dumps(q) for q in questions))
    out = tmp_path / "out"
    argv = [str(qa), "--model", str(tiny_checkpoints["tiny-qwen2-vl"]), "--device", "cpu",
            "--tau-s", "0.8", "--tau-t", "0.6", "--budgets", "0.5", "--methods",
            "sttm,sttm_budget,uniform,fastv", "--frames", "6", "--max-new-tokens", "2",
            "--max-pixels", str(28 * 28 * 24), "--out", str(out), "--quiet"]
    assert sweep.main(argv) == 0
    rows = read(out / "results.csv")
    assert len(rows) == 5 * 3 and len(set(keys(rows))) == 15  # (all + 4 settings) x 3 questions
    for r in rows:
        assert r["correct"] in (("",) if r["question_id"] == "s2" else ("0", "1"))
        assert float(r["ttft_s"]) > 0
        assert int(r["tokens_after"]) <= int(r["tokens_before"])
        # --max-pixels reached the frames: uncapped, 3 token frames hold >= 3 x 128 tokens
        assert int(r["tokens_before"]) < 3 * 128
        if r["method"] == "all":
            assert r["agree"] == r["kl"] == "" and float(r["keep_ratio"]) == 1
        else:
            assert r["agree"] in ("0", "1") and float(r["kl"]) >= -1e-6
    assert max(float(r["kl"]) for r in rows if r["kl"]) > 0  # merging changes the logits
    assert {r["keep_ratio"] for r in rows if r["method"] == "fastv"} == {"0.5"}
    assert min(float(r["keep_ratio"]) for r in rows if r["method"] == "sttm") < 1
    summary = read(out / "summary.csv")
    assert [s["label"] for s in summary] == ["All tokens", "STTM τS 0.8 τT 0.6", "STTM budget 50%",
                                             "Uniform pooling 50%", "FastV 50%"]
    assert all(s["accuracy"] and s["ttft_cold_s"] for s in summary)
    assert all(s["agreement"] and s["kl"] for s in summary[1:])
    for name in ("pareto.png", "by_category.png", "ttft.png"):
        assert_png(out / name)
    printed = capsys.readouterr().out
    # the rule, recomputed: the fewest tokens among STTM settings within 1 point of all tokens
    floor = float(summary[0]["accuracy"]) - 1.0
    eligible = [s for s in summary if s["method"] in ("sttm", "sttm_budget")
                and float(s["accuracy"]) >= floor - 1e-9]
    if eligible:
        best = min(eligible, key=lambda s: float(s["keep_ratio"]))
        assert f"recommended: {best['label']} keeps" in printed
    else:
        assert "no STTM setting meets accuracy >=" in printed

    # resume after losing one video's STTM rows: all tokens re-runs in memory for agree / kl
    lost = [r for r in rows if r["method"] in ("sttm", "sttm_budget")
            and r["video"].endswith("scene_cuts.mp4")]
    kept = [r for r in rows if r not in lost]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sweep.MODEL_COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
    again = sweep.run(sweep.parse_args(argv + ["--no-plots"]))
    assert sorted(k[0] for k in again.computed) == ["sttm", "sttm_budget"]
    redone = dict(zip(keys(read(out / "results.csv")), read(out / "results.csv")))
    assert len(redone) == len(rows) and len(lost) == 2
    for r in lost:
        new = redone[tuple(r[k] for k in sweep.KEY)]
        assert (new["choice"], new["agree"]) == (r["choice"], r["agree"])
        assert float(new["kl"]) == pytest.approx(float(r["kl"]), rel=1e-4, abs=1e-7)


@pytest.mark.core
def test_bad_arguments_fail_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.parse_args([str(QA), "--features", "pixel", "--tau-s", "0.8", "--methods", "uniform"])
    assert "give --budgets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.parse_args([str(QA), "--features", "pixel", "--budgets", "1.5"])
    with pytest.raises(SystemExit):
        sweep.parse_args([str(QA)])  # neither --model nor --features


@pytest.mark.core
def test_recommendation_picks_fewest_tokens_within_the_allowed_drop():
    summary = [dict(method="all", label="all tokens", keep_ratio=1.0, accuracy=80.0,
                    agreement=None),
               dict(method="sttm", label="a", keep_ratio=0.5, accuracy=79.5, agreement=90.0),
               dict(method="sttm", label="b", keep_ratio=0.3, accuracy=79.0, agreement=80.0),
               dict(method="sttm", label="c", keep_ratio=0.1, accuracy=70.0, agreement=60.0),
               dict(method="uniform", label="u", keep_ratio=0.05, accuracy=80.0, agreement=99.0)]
    assert sweep.recommend(summary, 1.0)[0]["label"] == "b"
    assert sweep.recommend(summary, 0.6)[0]["label"] == "a"
    best, why = sweep.recommend(summary, 0.1)
    assert best is None and "no STTM setting meets" in why
    no_answers = [dict(r, accuracy=None) for r in summary]
    assert sweep.recommend(no_answers, 15.0)[0]["label"] == "a"  # agreement >= 85%


@pytest.mark.core
def test_two_processes_under_accelerate_launch(tmp_path, free_port):
    """`accelerate launch --multi_gpu` is torchrun: two real processes. (`--cpu` would start
    only one: accelerate runs several CPU processes only through mpirun.) On a machine without
    CUDA the sweep puts them in a gloo process group on CPU."""
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    sweep.run(sweep.parse_args(pixel_args(single)))
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"),  # no user accelerate config applies
               CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(free_port),
               "-m", "sttm_core.sweep", *[a for a in pixel_args(parallel)
                                          if a not in ("--quiet", "--no-plots")]]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    merged, reference = read(parallel / "results.csv"), read(single / "results.csv")
    # each process ran its own half of the videos: disjoint shards that add up to the sweep
    shards = re.findall(r"process (\d)/2: (\d+) videos, (\d+) of", done.stderr)
    assert sorted(rank for rank, _, _ in shards) == ["0", "1"], done.stderr[-3000:]
    assert sum(int(v) for _, v, _ in shards) == len(VIDEOS)
    assert sum(int(c) for _, _, c in shards) == len(reference)
    assert len(merged) == len(set(keys(merged))) == len(reference)
    assert set(keys(merged)) == set(keys(reference))
    assert {k: r["keep_ratio"] for k, r in zip(keys(merged), merged)} == \
           {k: r["keep_ratio"] for k, r in zip(keys(reference), reference)}
    assert not list(parallel.glob("results.part*"))
    assert read(parallel / "summary.csv") and (parallel / "keep_by_category.png").is_file()
    assert done.stdout.count("STTM τS 0.7 τT 0.6") == 1  # only the main process reports


@pytest.mark.core
def test_unparseable_replies_agree_only_when_their_texts_match():
    import torch

    from sttm_core.qa import QAItem
    from sttm_core.scoring import Answer

    item = QAItem(Path("v.mp4"), "q", ["a", "b"])

    def answer(text, choice):
        return Answer(item, text, choice, 0.1, torch.zeros(3), None, None)

    assert answer("B", "B").agrees_with(answer("(b)", "B"))
    assert not answer("A", "A").agrees_with(answer("B", "B"))
    assert not answer("no idea", None).agrees_with(answer("maybe", None))
    assert answer(" zzz", None).agrees_with(answer("zzz ", None))
    assert not answer("A", "A").agrees_with(answer("zzz", None))


@pytest.mark.core
def test_duplicate_question_ids_stop_the_sweep_before_any_work(tmp_path, capsys):
    # the all-token answers are keyed by id: two questions sharing one used to give one row
    # and a wrong agreement, silently
    qa = tmp_path / "qa.jsonl"
    records = [json.loads(line) for line in QA.read_text().splitlines()[:2]]
    for rec in records:
        rec["video"], rec["id"] = str(EXAMPLES / rec["video"]), "same"
    qa.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        sweep.main([str(qa), *PIXEL, "--tau-s", "0.7", "--tau-t", "0.6", "--methods", "sttm",
                    "--out", str(out), "--no-plots"])
    assert "duplicate question id(s): id 'same' is shared by questions 1 and 2" \
        in str(exit_.value.code)
    assert not (out / "results.csv").exists()


@pytest.mark.core
def test_sweep_refuses_items_of_one_video_that_share_an_id():
    from sttm_core.qa import QAError
    from sttm_core.sweep.plan import group_videos

    items = load_qa(QA)
    first = next(i for i in items[1:] if i.video == items[0].video)
    first.id = items[0].id
    with pytest.raises(QAError, match=f"share the id {items[0].id!r}"):
        group_videos(items, EXAMPLES)
    other = next(i for i in items if i.video != items[0].video)
    other.id, first.id = items[0].id, "own"  # the same id on another video is a separate row
    assert len(group_videos(items, EXAMPLES)) == len(VIDEOS)


@pytest.mark.core
def test_paper_tables_without_a_model(tmp_path, capsys, caplog):
    out = tmp_path / "out"
    assert sweep.main([str(QA), *PIXEL, "--paper-table", "5", "--root-levels", "0,1",
                       "--tau-s", "0.8", "--out", str(out)]) == 0
    cells = read(out / "table5.csv")
    assert [(c["row"], c["method"]) for c in cells] == [
        ("root level 0", "root_pool"), ("root level 0", "sttm"),
        ("root level 1", "root_pool"), ("root level 1", "sttm")]
    keep = [float(c["keep_ratio"]) for c in cells]
    assert keep[0] < keep[2] and keep[0] < keep[1] and keep[2] < keep[3]  # quadtree adds detail
    assert_png(out / "table5.png")
    assert (out / "table5" / "root_level-1" / "results.csv").is_file()  # an ordinary sweep
    assert "Table 5: Single vs multiple granularity" in capsys.readouterr().out

    with caplog.at_level("WARNING"):
        assert sweep.main([str(QA), *PIXEL, "--budgets", "0.5,0.3", "--out", str(tmp_path / "all"),
                           "--no-plots"]) == 0
    assert "fastv, framefusion rank tokens by a question's attention" in caplog.text
    methods = {r["method"] for r in read(tmp_path / "all" / "summary.csv")}
    assert {"tome_frame", "tome_snippet", "tome_video", "dycoke"} <= methods
    assert not {"fastv", "framefusion"} & methods
    for table, why in (("8", "needs --model"),):
        with pytest.raises(SystemExit):
            sweep.parse_args([str(QA), *PIXEL, "--paper-table", table])
        assert why in capsys.readouterr().err


def test_a_model_that_cannot_run_ends_the_sweep_with_why(tmp_path, tiny_checkpoints):
    """A frame-size cap on fixed-size frames, or weights that are not there: one line, no
    traceback."""
    common = [str(QA), "--device", "cpu", "--frames", "4", "--limit", "1", "--tau-s", "0.8",
              "--tau-t", "0.6", "--out", str(tmp_path), "--quiet"]
    llava = str(tiny_checkpoints["tiny-llava-onevision"])
    with pytest.raises(SystemExit, match=r"^sttm-sweep: max_pixels=20000: a frame-size cap "
                                         r"applies to the Qwen-VL families"):
        sweep.main([*common, "--model", llava, "--max-pixels", "20000"])
    with pytest.raises(SystemExit, match=r"^sttm-sweep: could not load the model .*no such "
                                         r"checkpoint directory"):
        sweep.main([*common, "--model", str(tmp_path / "no-such-checkpoint")])
