"""ToMe (Bolya et al., "Token Merging: Your ViT but Faster"), as the STTM paper runs it on video
tokens: bipartite soft matching per frame, per 4-frame snippet or over the whole video.

One round on m tokens: tokens alternate into sets A (even places) and B (odd places); each A
token finds its most similar B token (cosine, fp32); the r most similar of those edges merge,
A into B, as size-weighted averages (so a token stays the plain mean of its patches). Rounds
repeat (r <= m/2 each) until the snippet holds its share of the budget. Between rounds tokens
are kept in the raster order of their first patches (ToMe's own code reorders them by score;
the order only decides which tokens are A and B next). A merged token sits at its first patch,
like STTM's (sttm_core.patch_groups).
Shape legend: T frames, H x W patch grid, C channels, n patches of a snippet, m its tokens.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .merge import MergeResult
from .patch_groups import representatives, result_from_groups
from .quadtree import unit_max_abs
from .temporal import keep_every_frame as give_frames_a_token

SNIPPET_FRAMES = {"tome_frame": 1, "tome_snippet": 4, "tome_video": None}  # None: all frames


def tome(features: Tensor, keep_ratio: float, snippet_frames: int | None, method: str, *,
         keep_every_frame: bool = False) -> MergeResult:
    """ToMe on each snippet of `snippet_frames` frames (None: the whole video) to keep_ratio of
    the patches. features [T, H, W, C]. The budget is spread over snippets by cumulative
    rounding, so the total is round(keep_ratio * T*H*W) (at least one token per snippet).
    keep_every_frame: a frame left without a token of its own gets its first patch back."""
    T, H, W, C = features.shape
    step = T if snippet_frames is None else min(snippet_frames, T)
    group = torch.empty(T * H * W, dtype=torch.long, device=features.device)  # [P]
    done = 0
    for t0 in range(0, T, step):
        x = features[t0:t0 + step].reshape(-1, C)                    # [n, C]
        n = len(x)
        target = round(keep_ratio * (done + n)) - round(keep_ratio * done)
        group[done:done + n] = done + bipartite_groups(x, min(max(target, 1), n))
        done += n
    if keep_every_frame and step > 1:  # per frame, every frame keeps its own tokens anyway
        frame = torch.arange(T, device=group.device).repeat_interleave(H * W)
        group = give_frames_a_token(representatives(group), frame, T)
    return result_from_groups(features, group, method)


def bipartite_groups(x: Tensor, target: int) -> Tensor:
    """[n] the first patch of each patch's token after ToMe rounds down to `target` tokens.
    x [n, C] patch features in raster order."""
    n = len(x)
    owner = torch.arange(n, device=x.device)   # [n] current token of each patch
    first = owner.clone()                        # [m] first patch of each token
    tokens = x.float()                           # [m, C] token means
    size = torch.ones(n, device=x.device)        # [m] patches per token
    while len(tokens) > target:
        into = _one_round(tokens, len(tokens) - target)  # [m] token each one goes into
        owner, first, tokens, size = _fold(into, owner, first, tokens, size)
    return first[owner]


def _one_round(tokens: Tensor, excess: int) -> Tensor:
    """[m] for each token the token it merges into this round (itself if none): the
    min(excess, m // 2) A tokens whose best B match is most similar."""
    m = len(tokens)
    r = min(excess, m // 2)
    a = torch.arange(0, m, 2, device=tokens.device)  # [ma] set A: even places
    b = torch.arange(1, m, 2, device=tokens.device)  # [mb] set B: odd places
    unit = unit_max_abs(tokens)  # exact rescaling: no fp32 overflow in the norms
    unit = unit / unit.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best, match = (unit[a] @ unit[b].T).max(dim=1)   # [ma] most similar B of each A
    src = best.argsort(descending=True, stable=True)[:r]
    into = torch.arange(m, device=tokens.device)
    into[a[src]] = b[match[src]]
    return into


def _fold(into: Tensor, owner: Tensor, first: Tensor, tokens: Tensor, size: Tensor):
    """Apply one round's merges: size-weighted means, survivors in the raster order of their
    first patches."""
    m, C = tokens.shape
    sums = torch.zeros(m, C, device=tokens.device).index_add_(0, into, tokens * size[:, None])
    sizes = torch.zeros(m, device=tokens.device).index_add_(0, into, size)
    firsts = torch.full_like(first, len(owner)).scatter_reduce_(0, into, first, "amin")
    alive = (into == torch.arange(m, device=into.device)).nonzero().flatten()
    alive = alive[firsts[alive].argsort()]           # [m'] raster order of first patches
    place = torch.full((m,), -1, dtype=torch.long, device=into.device)
    place[alive] = torch.arange(len(alive), device=into.device)
    return (place[into[owner]], firsts[alive], sums[alive] / sizes[alive, None], sizes[alive])
