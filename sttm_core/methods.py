"""Every token reduction STTM Studio runs, in one registry: STTM and the baselines it is
compared with. The config, the runtime, the sweeps, the app and the docs read it.

Each method turns a video's features [T, H, W, C] (through a VideoTokenMerger that holds their
pyramid) into a MergeResult, so everything downstream treats them alike. What a method takes
(`Method.takes`) is one record of sttm_core.reduction, and `parse` is the one way to make it
from user values, at every boundary (app, sweeps, lmms-eval, benchmarks, STTMConfig):
  thresholds  Thresholds: tauS / tauT set by hand, root level, temporal rule
  budget      Budget: the share of tokens to keep; STTM's thresholds are chosen per video
  root        RootGrid: a root level whose grid fixes the token count
  nothing     AllTokens: nothing is merged (the reference)
The paper's baselines (ToMe, DyCoke, FrameFusion) and its joint octree (Table 6) live in files
of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

from torch import Tensor

from .baselines import drop_by_attention, uniform_pooling
from .budget import thresholds_for_budget
from .dycoke import dycoke
from .framefusion import frame_fusion
from .merge import OFF, MergeResult, VideoTokenMerger
from .octree import OctreePyramid, octree_for_budget
from .reduction import (ALIASES, DOES, RECORDS, Budget, Reduction, ReductionError, RootGrid,
                        Thresholds, check_value)
from .tome import SNIPPET_FRAMES, tome


TAKES = ("thresholds", "budget", "root", "nothing")


@dataclass(frozen=True)
class Thresholded:
    """A method whose tokens are STTM's own merge at some thresholds (set by hand, or found for
    the budget), so whatever holds the merge's evidence re-thresholds it (the app's page)."""

    quadtree: bool  # the spatial step runs (False: every patch is its own box)
    temporal: str   # merging across frames: "user" (the user's switch), "on" or "off"

    def in_time(self, switch: bool) -> bool:
        """Whether it merges across frames, given the user's switch."""
        return {"on": True, "off": False}.get(self.temporal, switch)


@dataclass(frozen=True)
class Method:
    name: str          # STTMConfig.method, the sweeps' CSV value
    label: str         # what people read: the app, tables, plots
    takes: str         # one of TAKES
    query_aware: bool  # looks at the question: a video prefix cannot be reused across questions
    summary: str       # what it does, in one line
    reduce: Callable[[VideoTokenMerger, Reduction, Tensor | None], MergeResult]
    # True: kept tokens keep their original position ids, gaps and all (FastV drops tokens);
    # False: on 1D RoPE models the reduced sequence is renumbered (STTM, as the official code)
    keeps_positions: bool = False
    thresholded: Thresholded | None = None  # None: a reduction of its own (not STTM's merge)

    @property
    def record(self) -> type:
        """The sttm_core.reduction record this method reads."""
        return RECORDS[self.takes]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.record))

    def reads(self, **values) -> dict:
        """The values among these that this method's record has (settings shared by methods
        of every kind, e.g. a sweep's root level), to pass on to `parse`."""
        return {name: v for name, v in values.items() if ALIASES.get(name, name) in self.fields}

    def parse(self, **values) -> Reduction:
        """User values -> this method's record, each checked once. A name is a record field
        or one of its ALIASES (tau_s, tau_t, keep_ratio); a None for a field the record lacks
        counts as not given; a missing field takes the record's default. Raises
        ReductionError quoting the value as the caller spelled it."""
        given: dict[str, object] = {}
        for name, value in values.items():
            field = ALIASES.get(name, name)
            if field not in self.fields:
                if value is None:
                    continue
                why = ("; for a token budget use method='sttm_budget' (or a baseline)"
                       if field == "budget" else f": it {DOES[self.takes]}")
                raise ReductionError(f"method={self.name!r} takes no {name}{why}")
            if field in given:
                raise ReductionError(f"{name} is given twice (also as {field})")
            try:
                check_value(field, name, value)
            except ReductionError as err:
                if field != "budget":
                    raise
                raise ReductionError(f"method={self.name!r} keeps a token budget: {err}") from None
            given[field] = value
        if self.record is Budget and "budget" not in given:
            raise ReductionError(f"method={self.name!r} keeps a token budget: budget must be a "
                                 "number in (0, 1], got none")
        return self.record(**given)


def _all_tokens(merger, p, attention):
    return merger.merge(OFF, OFF, -1)


def _sttm(merger, p: Thresholds, attention):
    return merger.merge_at(p)  # the record whole: no field is unpacked on the way


def _budget(temporal: bool, spatial: bool = True):
    def reduce(merger, p: Budget, attention):
        root_level = merger.usable_level(p.root_level) if spatial else -1
        return thresholds_for_budget(merger, p.budget, root_level=root_level,
                                     temporal=temporal, temporal_mode=p.temporal_mode).result
    return reduce


def _uniform(merger, p: Budget, attention):
    return uniform_pooling(merger.pyramid.levels[-1], p.budget)


def _fastv(merger, p: Budget, attention):
    if attention is None:
        raise ValueError("FastV needs the attention of the last prompt token (a question)")
    return drop_by_attention(merger.pyramid.levels[-1], attention, p.budget,
                             keep_every_frame=merger.keep_every_frame)


def _root_pool(merger, p: RootGrid, attention):
    # every root node whole (tauS = -1 stops each one), nothing across frames: the frame
    # average-pooled to the root grid, a single granularity (the paper's Table 5)
    return merger.merge_at(Thresholds(-1.0, OFF, p.root_level))


def _tome(method: str):
    def reduce(merger, p: Budget, attention):
        return tome(merger.pyramid.levels[-1], p.budget, SNIPPET_FRAMES[method], method,
                    keep_every_frame=merger.keep_every_frame)
    return reduce


def _dycoke(merger, p: Budget, attention):
    return dycoke(merger.pyramid.levels[-1], p.budget, keep_every_frame=merger.keep_every_frame)


def _framefusion(merger, p: Budget, attention):
    if attention is None:
        raise ValueError("FrameFusion needs the attention of the last prompt token (a question): "
                         "it drops the tokens that question attends to least")
    return frame_fusion(merger.pyramid.levels[-1], attention, p.budget,
                        keep_every_frame=merger.keep_every_frame)


def _octree(merger, p: Budget, attention):
    # searched from the whole video's node: the quadtree's root grid can be the patch grid
    # itself (small grids), where an octree started from it could not merge even in time
    pyramid = OctreePyramid(merger.pyramid.levels[-1], merger.head_dim, merger.area_weighted)
    return octree_for_budget(pyramid, p.budget, 0,
                             keep_every_frame=merger.keep_every_frame)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("all", "All tokens", "nothing", False,
           "nothing merged: every patch stays a token (the reference)", _all_tokens),
    Method("sttm", "STTM", "thresholds", False,
           "quadtree tokens per frame (τS), then nested tokens merged across frames (τT)", _sttm,
           thresholded=Thresholded(True, "user")),
    Method("sttm_budget", "STTM budget", "budget", False,
           "STTM with τS and τT chosen per video to keep the budget", _budget(temporal=True),
           thresholded=Thresholded(True, "user")),
    Method("uniform", "Uniform pooling", "budget", False,
           "every frame average-pooled to one coarser grid of the budget's size", _uniform),
    Method("spatial_only", "Spatial only", "budget", False,
           "STTM's quadtree tokens per frame, no merging across frames", _budget(temporal=False),
           thresholded=Thresholded(True, "off")),
    Method("temporal_only", "Temporal only", "budget", False,
           "patches merged across frames only, no quadtree", _budget(True, spatial=False),
           thresholded=Thresholded(False, "on")),
    Method("fastv", "FastV", "budget", True,
           "keeps the patches the question's last token attends to most at layer k-1, drops "
           "the rest for layers k onwards", _fastv, keeps_positions=True),
    Method("root_pool", "Root-grid pooling", "root", False,
           "every frame average-pooled to the root grid: one granularity, no search "
           "(the paper's Table 5)", _root_pool),
    Method("tome_frame", "ToMe per frame", "budget", False,
           "ToMe's bipartite soft matching inside each frame, rounds until the budget",
           _tome("tome_frame")),
    Method("tome_snippet", "ToMe per snippet", "budget", False,
           "ToMe's bipartite soft matching inside each 4-frame snippet", _tome("tome_snippet")),
    Method("tome_video", "ToMe per video", "budget", False,
           "ToMe's bipartite soft matching over all the video's patches at once",
           _tome("tome_video")),
    Method("dycoke", "DyCoke", "budget", False,
           "DyCoke's temporal merging: in groups of 4 frames, the patches most similar to the "
           "same place in the compared frame join it", _dycoke),
    Method("framefusion", "FrameFusion", "budget", True,
           "merges patches similar to the same place in the previous frame, then drops the "
           "tokens the question's last token attends to least", _framefusion,
           keeps_positions=True),
    Method("octree", "Joint octree", "budget", False,
           "one spatio-temporal tree over (t, y, x) searched coarse to fine, one τ chosen per "
           "video to keep the budget (the paper's Table 6)", _octree),
)}


def parse(method: str, **values) -> Reduction:
    """The one parse of a reduction's values: `method`'s record (sttm_core.reduction) from
    user values, e.g. parse("sttm", tau_s=0.85, tau_t=0.6) or parse("uniform", budget=0.3).
    Raises ReductionError (a ValueError) naming the value at fault as it was spelled."""
    return registered(method).parse(**values)


def registered(method: str) -> Method:
    if method not in METHODS:
        raise ReductionError(f"method={method!r} is not one of {', '.join(METHODS)}")
    return METHODS[method]


def reduce_tokens(features: Tensor | VideoTokenMerger, config, attention: Tensor | None = None,
                  *, keep_every_frame: bool = False) -> MergeResult:
    """Apply an STTMConfig's reduction to video features [T, H, W, C] (or a prepared merger, which
    brings its own keep_every_frame). attention [T, H, W]: what each patch receives from the
    last prompt token at the layer before the merge layer (FastV only). keep_every_frame: no
    frame loses all its tokens (a property of the model family, see merge_video_tokens)."""
    merger = features if isinstance(features, VideoTokenMerger) else VideoTokenMerger(
        features, head_dim=config.head_dim, area_weighted=config.area_weighted,
        keep_every_frame=keep_every_frame)
    result = METHODS[config.method].reduce(merger, config.reduction, attention)
    return replace(result, method=config.method)


def methods_table() -> str:
    """The registry as the README's Markdown table (tests/test_toy_baseline.py checks the README
    holds it)."""
    rows = [f"| `{m.name}` | {m.label} | {m.takes} | {'yes' if m.query_aware else 'no'} | "
            f"{m.summary} |" for m in METHODS.values()]
    return "\n".join(["| method | label | takes | query-aware | what it does |",
                      "|---|---|---|---|---|", *rows])

