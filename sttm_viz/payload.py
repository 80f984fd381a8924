"""What the page receives: plain JSON built from sttm_core results (never from a model).

Once per video and feature source (`video_payload`): the merge evidence (every similarity a
threshold tests, float32 little-endian in base64), the frames as JPEG data URLs (OpenCV), the
pyramid's grids and the notes the readout needs. The spatial half goes as decisions, each
quadtree node's τS interval per root level (sttm_core/decisions.py), which the page filters
(sttm_viz/web/merge.js); the τT half as the nested pairs' similarities, over which the page
runs the official union-find (sttm_viz/web/unionfind.js). Per budget: the thresholds
sttm_core's budget search chooses (`budget_table`). Per server-side reduction (a baseline,
FastV): its tokens (`tokens_json`).
Shape legend: T frames, H x W patch grid, S spatial boxes, N tokens.
"""
from __future__ import annotations

import base64

import numpy as np
import torch

from sttm_core import OFF, MergeResult, VideoTokenMerger
from sttm_core.budget import thresholds_for_budget
from sttm_core.decisions import SpatialIntervals, spatial_intervals
from sttm_core.evidence import MergeEvidence

BUDGETS = [round(0.05 + 0.01 * k, 2) for k in range(96)]  # the budget slider's values
FRAME_SIDE = 448     # longest side of a frame as sent (the map shows it at most this large)
JPEG_QUALITY = 85


def f32_base64(x: torch.Tensor) -> str:
    """A float tensor as base64 of its float32 little-endian bytes (the page's Float32Array)."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return base64.b64encode(data.tobytes()).decode("ascii")


def i32_list(x) -> list[int]:
    return [int(v) for v in np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x).ravel()]


def evidence_json(ev: MergeEvidence) -> dict:
    """{grid, sizes, spatial: the τS intervals (`intervals_json`), pairs: b64 [T-1, P_f],
    keep_every_frame: the model's merge gives every frame a token}."""
    return {"grid": list(ev.grid), "sizes": [list(s) for s in ev.sizes],
            "spatial": intervals_json(spatial_intervals(ev)),
            "pairs": f32_base64(ev.pair_similarity), "keep_every_frame": ev.keep_every_frame}


def intervals_json(iv: SpatialIntervals) -> dict:
    """{high: b64 [T, nodes above the leaves], low: [b64 [T, nodes below level r] per root level
    r], and one frame's node geometry: level [M], box [M * 4] (y0, x0, y1, x1), parent [M],
    order [M]}. What is the same everywhere is left for the page to fill in: high = +inf on the
    leaves, low_r = -inf on level r (a third less to send on 14x14)."""
    off = iv.offsets
    return {"high": f32_base64(iv.high[:, :off[-2]]),
            "low": [f32_base64(low[:, off[r + 1] - off[r]:]) for r, low in enumerate(iv.low)],
            "level": i32_list(iv.level), "box": i32_list(iv.box), "parent": i32_list(iv.parent),
            "order": i32_list(iv.order)}


def frames_json(frames: np.ndarray, max_side: int = FRAME_SIDE) -> list[str]:
    """uint8 frames [T, H_img, W_img, 3] RGB -> JPEG data URLs, longest side <= max_side."""
    import cv2

    T, h, w, _ = frames.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    urls = []
    for frame in frames:
        bgr = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
        if scale < 1:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("could not encode a frame as JPEG")
        urls.append("data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii"))
    return urls


def tokens_json(result: MergeResult) -> dict:
    """A server-made reduction as the page draws it: spatial boxes [S, 5] sorted by
    (t, y0, x0) and the output token of each (-1: dropped, e.g. FastV)."""
    result = result.cpu()
    boxes, to_token = result.spatial_boxes, result.spatial_to_token
    if bool((result.token_map < 0).any()):  # dropped patches (FastV, FrameFusion): 1x1 boxes
        # that belong to no token
        T, H, W = result.grid
        dropped = (result.token_map < 0).nonzero()
        extra = torch.cat([dropped, dropped[:, 1:] + 1], dim=1)
        boxes = torch.cat([boxes, extra])
        to_token = torch.cat([to_token, torch.full((len(extra),), -1, dtype=torch.long)])
    _, H, W = result.grid
    order = torch.argsort(boxes[:, 0] * H * W + boxes[:, 1] * W + boxes[:, 2])
    return {"method": result.method, "boxes": i32_list(boxes[order]),
            "to_token": i32_list(to_token[order])}


def budget_table(merger: VideoTokenMerger, root_level: int, temporal: bool,
                 budgets: list[float] = BUDGETS) -> dict:
    """The thresholds the budget search chooses for each budget: {"tau_s": [...], "tau_t":
    [...], "keep": [...]} (None: that half off), for one root level, temporal on or off."""
    rows = {"tau_s": [], "tau_t": [], "keep": []}
    for ratio in budgets:
        choice = thresholds_for_budget(merger, ratio, root_level=root_level, temporal=temporal)
        rows["tau_s"].append(_plain(choice.spatial_threshold))
        rows["tau_t"].append(_plain(choice.temporal_threshold))
        rows["keep"].append(round(choice.keep_ratio, 6))
    return {"root": root_level, "temporal": temporal, "budgets": list(budgets), **rows}


def _plain(threshold: float | None) -> float | None:
    return OFF if threshold is OFF else float(threshold)


def video_payload(video, source: str, notes: list[str]) -> dict:
    """Everything the page needs of one video's features (a session.VideoFeatures): sent once
    per video and feature source; the page re-thresholds from it by itself."""
    from pathlib import Path

    T = len(video.frames)
    return {"id": video.id, "video": Path(video.clip.path).name, "frames_sampled": video.clip.num_frames,
            "token_frames": T, "source": source, "notes": [n for n in notes if n],
            "evidence": evidence_json(video.evidence), "frames": frames_json(video.frames),
            "budgets": BUDGETS}
