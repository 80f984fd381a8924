"""Temporal half of STTM: merge tokens of consecutive frames whose boxes are nested.

Quadtree nodes of every frame come from the same geometry, so two nodes of frames t and t+1
overlap iff one contains the other, and then they share the top-left patch of the smaller one.
Reading the patch-level token map of t and t+1 at those patches lists every candidate pair
once, in memory linear in T*H*W (no [T-1, M, M] all-pairs tensor).

Grouping modes (`TEMPORAL_MODES`):
  official    every similar pair; labels spread by the official code's union-find, which stops
              as soon as the labels are idempotent and so can leave a similar pair in two
              groups. The default: it gives exactly the official implementation's tokens.
  components  every similar pair; whole connected components merge (the paper's description).
  best_match  each token joins only its most similar nested token of the previous frame.
`keep_every_frame` then, if asked, gives every frame left without a token of its own one back
(models that write a timestamp before each frame need a token after each).
Shape legend: T frames, H x W leaf grid, S spatial tokens, P candidate pairs, N output tokens.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .quadtree import cosine_to_each

TEMPORAL_MODES = ("official", "components", "best_match")


def candidate_pairs(token_map: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Nested token pairs of consecutive frames.

    token_map: [T, H, W] spatial token of each patch; boxes: [S, 5] (t, y0, x0, y1, x1).
    Returns (earlier, later): [P] token indices in frames t and t+1.
    """
    earlier, later = token_map[:-1], token_map[1:]  # [T-1, H, W]
    top = torch.maximum(boxes[earlier, 1], boxes[later, 1])  # top-left of the smaller box
    left = torch.maximum(boxes[earlier, 2], boxes[later, 2])
    H, W = token_map.shape[1:]
    rows = torch.arange(H, device=token_map.device)[:, None]
    cols = torch.arange(W, device=token_map.device)[None, :]
    once = (top == rows) & (left == cols)  # [T-1, H, W] one patch per overlapping pair
    return earlier[once], later[once]


def pair_similarity(features: Tensor, earlier: Tensor, later: Tensor,
                    head_dim: int | None = None) -> Tensor:
    """[P] fp32 cosine similarity of each pair (averaged over heads with head_dim)."""
    return cosine_to_each(features[later][:, None], features[earlier], head_dim)[:, 0]


def group_labels(n: int, earlier: Tensor, later: Tensor, similarity: Tensor, threshold: float,
                 mode: str = "official") -> Tensor:
    """[n] label of each token: the smallest index (earliest frame, then top-left) of its group."""
    similar = similarity >= threshold
    earlier, later, similarity = earlier[similar], later[similar], similarity[similar]
    if mode == "best_match":
        return _best_match_roots(n, earlier, later, similarity)
    return _spread_min_labels(n, earlier, later, until_converged=mode == "components")


def _spread_min_labels(n: int, a: Tensor, b: Tensor, until_converged: bool) -> Tensor:
    """Vectorised union-find: each pair takes the smaller label of its ends, then pointer jumping.

    The official code stops once labels are idempotent (label[label] == label); a pair whose
    ends still disagree then stays split. until_converged keeps going until every pair agrees,
    which yields connected components.
    """
    label = torch.arange(n, device=a.device)
    while True:
        low = torch.minimum(label[a], label[b])
        label.scatter_reduce_(0, a, low, reduce="amin")
        label.scatter_reduce_(0, b, low, reduce="amin")
        label = label[label]
        settled = torch.equal(label, label[label])
        if settled and (not until_converged or torch.equal(label[a], label[b])):
            return label


def _best_match_roots(n: int, earlier: Tensor, later: Tensor, similarity: Tensor) -> Tensor:
    """Each later token points at its most similar earlier partner (ties: the smaller index);
    the pointers form a forest whose roots, found by pointer jumping, label the groups."""
    best = torch.full((n,), -torch.inf, device=similarity.device)
    best.scatter_reduce_(0, later, similarity, reduce="amax")
    is_best = similarity == best[later]
    parent = torch.arange(n, device=later.device)
    parent.scatter_reduce_(0, later[is_best], earlier[is_best], reduce="amin")
    while not torch.equal(parent, parent[parent]):
        parent = parent[parent]
    return parent


def keep_every_frame(label: Tensor, frame: Tensor, num_frames: int) -> Tensor:
    """Labels in which every frame keeps at least one token of its own.

    label: [S] group representative of each spatial token (labels point straight at it, as
    `group_labels` leaves them); frame: [S] frame of each token, sorted (tokens are in (t, y0,
    x0) order, and every frame has at least one). A frame none of whose tokens represents a
    group would vanish from the merged sequence; its first token (the top-left one) leaves its
    group and becomes its own (label[i] = i). The other members keep their representative, so
    a frame that already has a token of its own changes nothing.
    """
    frames = torch.arange(num_frames, device=frame.device)
    own = torch.zeros(num_frames, dtype=torch.bool, device=frame.device)
    own[frame[label == torch.arange(len(label), device=label.device)]] = True
    if bool(own.all()):
        return label
    first = torch.searchsorted(frame.contiguous(), frames)[~own]  # [F] first token of each frame without one
    label = label.clone()
    label[first] = first
    return label


def merge_groups(features: Tensor, weights: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
    """Average each group's features (weighted, accumulated in fp32; output in input dtype).

    features: [S, C], weights: [S], label: [S] group representative of each token.
    Returns (group features [N, C], token -> group index [S]); groups keep their
    representatives' order.
    """
    is_rep = label == torch.arange(len(label), device=label.device)
    group_of = (torch.cumsum(is_rep, 0) - 1)[label]  # [S]
    n = int(is_rep.sum())
    w = weights.float()
    sums = torch.zeros(n, features.shape[1], device=features.device)
    sums.index_add_(0, group_of, features.float() * w[:, None])
    total = torch.zeros(n, device=features.device).index_add_(0, group_of, w)
    return (sums / total[:, None]).to(features.dtype), group_of
