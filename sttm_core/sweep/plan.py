"""What a sweep runs: settings (grid points, budgets, baselines, all tokens), the videos of a
QA set, and the cells (setting, video) still missing from the results."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from ..config import STTMConfig
from ..methods import METHODS, parse, registered
from ..qa import QAError, QAItem
from .results import done_cells, fmt


@dataclass(frozen=True)
class Setting:
    """One reduction setting: a method (sttm_core.methods) at a (tauS, tauT) grid point, at a
    token budget, or all tokens."""

    method: str                      # a key of METHODS
    tau_s: float | None = None       # grid point: tauS
    tau_t: float | None = None       # grid point: tauT (None = temporal merging off)
    budget: float | None = None      # keep ratio asked for; tauS/tauT chosen per video

    @property
    def is_grid(self) -> bool:
        return self.tau_s is not None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(method, tau_s, tau_t, budget) as written in the CSV files."""
        tau_t = ("none" if self.tau_t is None else fmt(self.tau_t)) if self.is_grid else ""
        return self.method, fmt(self.tau_s), tau_t, fmt(self.budget)

    @property
    def label(self) -> str:
        name = METHODS[self.method].label
        if self.is_grid:
            tau_t = "off" if self.tau_t is None else f"{self.tau_t:g}"
            return f"{name} τS {self.tau_s:g} τT {tau_t}"
        return name if self.budget is None else f"{name} {self.budget:.0%}"

    def config(self, root_level: int, merge_layer: int, temporal_mode: str = "official",
               **where) -> STTMConfig:
        """root_level, temporal_mode: the sweep's, for the methods that read them; where:
        other STTMConfig fields the whole sweep shares (position_rule)."""
        own = dict(tau_s=self.tau_s, tau_t=self.tau_t) if self.is_grid else dict(budget=self.budget)
        shared = registered(self.method).reads(root_level=root_level, temporal_mode=temporal_mode)
        return STTMConfig.of(self.method, parse(self.method, **own, **shared),
                             merge_layer=merge_layer, **where)


def plan_settings(methods, tau_s, tau_t, budgets, reference: bool) -> list[Setting]:
    """The settings of a sweep, in the registry's order: all tokens first (when `reference`),
    each method that takes thresholds at every grid point (tau_s x tau_t), each method that
    takes a budget at every budget, each method that takes a root level once."""
    settings = [Setting("all")] if reference else []
    for method in (m for m in METHODS.values() if m.name in methods):
        if method.takes == "thresholds":
            settings += [Setting(method.name, s, t) for s, t in product(tau_s, tau_t)]
        elif method.takes == "budget":
            settings += [Setting(method.name, budget=b) for b in budgets]
        elif method.takes == "root":
            settings.append(Setting(method.name))
    return settings


@dataclass
class Video:
    """One video of the QA set and its questions."""

    key: str                  # path relative to the QA folder (stable across working dirs)
    path: Path
    items: list[QAItem]

    @property
    def category(self) -> str:
        """The most common category of its questions ('' when none has one)."""
        counts = Counter(i.category for i in self.items if i.category)
        return counts.most_common(1)[0][0] if counts else ""


@dataclass
class Cell:
    setting: Setting
    video: Video

    @property
    def key(self) -> tuple:
        return (*self.setting.key, self.video.key)


def group_videos(items: list[QAItem], root: Path) -> list[Video]:
    """Questions grouped by video, videos sorted by key (the shard order). Rows and all-token
    answers are keyed by (video, question id): a QAError if one video's questions share an id
    (load_qa refuses such files; this guards items built in code)."""
    groups: dict[str, Video] = {}
    for item in items:
        key = _video_key(item.video, root)
        video = groups.setdefault(key, Video(key, item.video, []))
        if any(other.id == item.id for other in video.items):
            raise QAError(f"{key}: two questions share the id {item.id!r}; the sweep matches "
                          "answers to questions by id, so each needs its own")
        video.items.append(item)
    return [groups[k] for k in sorted(groups)]


def _video_key(video: Path, root: Path) -> str:
    try:
        return video.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(video.resolve())


def pending_cells(videos: list[Video], settings: list[Setting], rows: list[dict],
                  pixel: bool) -> list[Cell]:
    """Cells some of whose rows are missing, in video order then setting order."""
    done = done_cells(rows)
    cells = []
    for video in videos:
        wanted = {""} if pixel else {i.id for i in video.items}
        cells += [Cell(s, video) for s in settings
                  if not wanted <= done.get((*s.key, video.key), set())]
    return cells
