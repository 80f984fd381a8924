"""Summaries of a sweep: per-setting means, the recommended setting, a text table."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from .plan import Setting
from .results import KEY, fmt

STTM = ("sttm", "sttm_budget")  # the settings a recommendation chooses from

SUMMARY_COLUMNS = ("method", "tau_s", "tau_t", "budget", "label", "videos", "questions",
                   "keep_ratio", "spatial_keep_ratio", "tokens_after", "accuracy", "acc_drop",
                   "agreement", "kl", "ttft_s", "ttft_cold_s")


def summarize(rows: list[dict], settings: list[Setting]) -> list[dict]:
    """Per setting (in `settings` order; those without rows are left out):
    keep_ratio / spatial_keep_ratio / tokens_after: means over videos (each video's own mean);
    accuracy, agreement: % of graded / compared questions; acc_drop: all-token accuracy minus
    this one, in points; kl: mean first-token KL(all || this), nats; ttft_s: mean TTFT of every
    question; ttft_cold_s: mean TTFT of the replies that prefilled the video (each video's
    first question; every question for query-aware FastV)."""
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in KEY[:4])].append(row)
    summary = [_summary_row(s, groups[s.key]) for s in settings if groups.get(s.key)]
    reference = next((r["accuracy"] for r in summary if r["method"] == "all"), None)
    for row in summary:
        row["acc_drop"] = (reference - row["accuracy"]
                           if reference is not None and row["accuracy"] is not None else None)
    return summary


def _summary_row(setting: Setting, rows: list[dict]) -> dict:
    per_video = defaultdict(list)
    for row in rows:
        per_video[row["video"]].append(row)

    def video_mean(column):
        return mean([mean(_floats(r[column] for r in v)) for v in per_video.values()])

    graded = _floats(r.get("correct", "") for r in rows)
    agree = _floats(r.get("agree", "") for r in rows)
    cold = [r for r in rows if r.get("cache_reused") == "0"]
    return dict(zip(SUMMARY_COLUMNS[:4], setting.key), label=setting.label,
                videos=len(per_video), questions=sum(1 for r in rows if r["question_id"]),
                keep_ratio=video_mean("keep_ratio"),
                spatial_keep_ratio=video_mean("spatial_keep_ratio"),
                tokens_after=video_mean("tokens_after"),
                accuracy=_percent(graded), acc_drop=None, agreement=_percent(agree),
                kl=mean(_floats(r.get("kl", "") for r in rows)),
                ttft_s=mean(_floats(r.get("ttft_s", "") for r in rows)),
                ttft_cold_s=mean(_floats(r.get("ttft_s", "") for r in cold)))


def _floats(values) -> list[float]:
    return [float(v) for v in values if v not in ("", None, "nan")]


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _percent(values: list[float]) -> float | None:
    return 100 * sum(values) / len(values) if values else None


def write_summary(path: Path, summary: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows({k: fmt(v) for k, v in row.items()} for row in summary)


def recommend(summary: list[dict], max_drop: float) -> tuple[dict | None, str]:
    """The STTM setting (thresholds or budget) with the lowest keep ratio whose accuracy is at least the all-token
    accuracy minus `max_drop` points (agreement >= 100 - max_drop % when no question has an
    answer); (None, why) when none qualifies or there is nothing to judge by."""
    sttm = [r for r in summary if r["method"] in STTM and r["keep_ratio"] is not None]
    reference = next((r for r in summary if r["method"] == "all"), None)
    if reference and reference["accuracy"] is not None:
        floor, metric = reference["accuracy"] - max_drop, "accuracy"
        rule = (f"accuracy >= {floor:.1f}% (all tokens {reference['accuracy']:.1f}% "
                f"- {max_drop:g} points)")
    elif sttm and sttm[0]["agreement"] is not None:
        floor, metric = 100 - max_drop, "agreement"
        rule = f"agreement with all tokens >= {floor:.1f}% (no answers: fidelity)"
    else:
        return None, "no recommendation: no answers to score (pixel features merge only)"
    ok = [r for r in sttm if r[metric] is not None and r[metric] >= floor - 1e-9]
    if not ok:
        return None, f"no STTM setting meets {rule}"
    best = min(ok, key=lambda r: (r["keep_ratio"], -r[metric]))
    return best, (f"recommended: {best['label']} keeps {best['keep_ratio']:.1%} of the video "
                  f"tokens with {metric} {best[metric]:.1f}%, the fewest of those with {rule}")


TABLE = (("keep", "keep_ratio", ".3f"), ("spatial", "spatial_keep_ratio", ".3f"),
         ("acc %", "accuracy", ".1f"), ("drop", "acc_drop", ".1f"),
         ("agree %", "agreement", ".1f"), ("KL", "kl", ".4f"), ("TTFT s", "ttft_cold_s", ".3f"))


def format_table(summary: list[dict]) -> str:
    """The summary as a fixed-width text table (columns with no value at all left out)."""
    columns = [c for c in TABLE if any(r[c[1]] is not None for r in summary)]
    width = max([len(r["label"]) for r in summary] + [7])
    head = f"{'setting':<{width}}" + "".join(f" {title:>8}" for title, _, _ in columns)
    lines = [head, "-" * len(head)]
    for r in summary:
        lines.append(f"{r['label']:<{width}}" + "".join(
            f" {'-' if r[key] is None else format(r[key], spec):>8}" for _, key, spec in columns))
    return "\n".join(lines)
