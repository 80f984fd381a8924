"""A deliberately simple STTM reference: a recursive quadtree per frame and a plain union-find.

Loops everywhere, nothing shared with sttm_core; written from the method's rules so the fast
implementation can be checked against it.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


def level_sizes(H, W):
    sizes = [(H, W)]
    while H != 2 and W != 2 and (H, W) != (1, 1):
        H, W = math.ceil(H / 2), math.ceil(W / 2)
        sizes.insert(0, (H, W))
    return sizes


def child_indices(i, child_length):
    """Children of node i along one axis; an odd axis starts with a 1-wide block."""
    odd = child_length % 2
    return [r for r in (2 * i - odd, 2 * i + 1 - odd) if r >= 0]


def cosine(a, b):
    return F.cosine_similarity(a.float(), b.float(), dim=0).item()


class FrameTree:
    """The quadtree of one frame [H, W, C]."""

    def __init__(self, frame, area_weighted=False):
        self.frame = frame
        self.sizes = level_sizes(frame.shape[0], frame.shape[1])
        self.leaf = len(self.sizes) - 1
        self.area_weighted = area_weighted
        self.feature = lru_cache(maxsize=None)(self._feature)
        self.box = lru_cache(maxsize=None)(self._box)

    def kids(self, level, i, j):
        h, w = self.sizes[level + 1]
        return [(r, c) for r in child_indices(i, h) for c in child_indices(j, w)]

    def _box(self, level, i, j):
        if level == self.leaf:
            return (i, j, i + 1, j + 1)
        boxes = [self.box(level + 1, r, c) for r, c in self.kids(level, i, j)]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))

    def area(self, level, i, j):
        y0, x0, y1, x1 = self.box(level, i, j)
        return (y1 - y0) * (x1 - x0)

    def _feature(self, level, i, j):
        if level == self.leaf:
            return self.frame[i, j]
        kids = self.kids(level, i, j)
        feats = torch.stack([self.feature(level + 1, r, c) for r, c in kids])
        if not self.area_weighted:
            return feats.mean(0)
        w = torch.tensor([float(self.area(level + 1, r, c)) for r, c in kids], dtype=feats.dtype)
        return (feats * w[:, None]).sum(0) / w.sum()

    def tokens(self, threshold, root_level):
        """[(box, feature)] kept by the coarse-to-fine search, in raster order of box corners."""
        out = []

        def visit(level, i, j):
            f = self.feature(level, i, j)
            if level == self.leaf:
                out.append((self.box(level, i, j), f))
                return
            kids = self.kids(level, i, j)
            sims = [cosine(f, self.feature(level + 1, r, c)) for r, c in kids]
            if len(kids) < 4:  # official rule: a partial edge node also meets child (0, 0)
                sims.append(cosine(f, self.feature(level + 1, 0, 0)))
            if all(s >= threshold for s in sims):
                out.append((self.box(level, i, j), f))
            else:
                for r, c in kids:
                    visit(level + 1, r, c)

        h, w = self.sizes[root_level]
        for i in range(h):
            for j in range(w):
                visit(root_level, i, j)
        return sorted(out, key=lambda bf: (bf[0][0], bf[0][1]))


def contains(a, b):
    return a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2] and a[3] >= b[3]


def find(parent, x):
    while parent[x] != x:
        x = parent[x]
    return x


def union_find(n, edges):
    parent = list(range(n))
    for a, b in edges:
        ra, rb = find(parent, a), find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(parent, i) for i in range(n)]


def official_labels(n, edges):
    """The official code's label spreading, one pair at a time: each pair takes the smaller
    label of its ends, then one pointer jump; stop when labels are idempotent."""
    label = list(range(n))
    while True:
        low = [min(label[a], label[b]) for a, b in edges]
        new = list(label)
        for (a, b), m in zip(edges, low):
            new[a] = min(new[a], m)
            new[b] = min(new[b], m)
        label = [new[new[i]] for i in range(n)]
        if all(label[label[i]] == label[i] for i in range(n)):
            return label


def reference_merge(features, spatial_threshold, temporal_threshold, root_level,
                    mode="official", area_weighted=False):
    """features [T, H, W, C] -> dict(features [N, C] fp32, boxes [N, 5], num_patches [N])."""
    T, H, W, _ = features.shape
    root_level = root_level % len(level_sizes(H, W))
    nodes = []  # (t, box, feature)
    for t in range(T):
        tree = FrameTree(features[t], area_weighted)
        nodes += [(t, box, f) for box, f in tree.tokens(spatial_threshold, root_level)]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for _, b, _ in nodes]

    edges, sims = [], []
    if temporal_threshold is not None:
        for a, (ta, ba, fa) in enumerate(nodes):
            for b, (tb, bb, fb) in enumerate(nodes):
                if tb == ta + 1 and (contains(ba, bb) or contains(bb, ba)):
                    s = cosine(fa, fb)
                    if s >= temporal_threshold:
                        edges.append((a, b))
                        sims.append(s)
    if mode == "official":
        label = official_labels(len(nodes), edges)
    elif mode == "components":
        label = union_find(len(nodes), edges)
    else:  # best_match: each later node keeps its most similar earlier partner
        best = {}
        for (a, b), s in zip(edges, sims):
            if b not in best or s > best[b][0] or (s == best[b][0] and a < best[b][1]):
                best[b] = (s, a)
        label = union_find(len(nodes), [(a, b) for b, (_, a) in best.items()])

    groups = {}
    for i, rep in enumerate(label):
        groups.setdefault(rep, []).append(i)
    feats, boxes, counts = [], [], []
    for rep in sorted(groups):
        members = groups[rep]
        w = [float(areas[i]) if area_weighted else 1.0 for i in members]
        total = sum(f * wi for f, wi in zip((nodes[i][2].float() for i in members), w))
        feats.append(total / sum(w))
        t, (y0, x0, y1, x1), _ = nodes[rep]
        boxes.append((t, y0, x0, y1, x1))
        counts.append(sum(areas[i] for i in members))
    return dict(features=torch.stack(feats), boxes=torch.tensor(boxes),
                num_patches=torch.tensor(counts))


def reference_merge_like(result, other, area_weighted):
    """Each output token: the (area-)weighted mean over its spatial tokens of the reference
    quadtree's feature of the node with that box, in `other`'s frames."""
    trees = [FrameTree(other[t], area_weighted) for t in range(other.shape[0])]
    nodes = {}
    for t, tree in enumerate(trees):  # every node's box -> its feature (coarse first wins)
        for level in reversed(range(len(tree.sizes))):
            h, w = tree.sizes[level]
            for i in range(h):
                for j in range(w):
                    nodes[(t, *tree.box(level, i, j))] = tree.feature(level, i, j)
    sums = torch.zeros(result.num_tokens, other.shape[-1], dtype=torch.float64)
    weights = torch.zeros(result.num_tokens, dtype=torch.float64)
    for box, token in zip(result.spatial_boxes.tolist(), result.spatial_to_token.tolist()):
        t, y0, x0, y1, x1 = box
        w = (y1 - y0) * (x1 - x0) if area_weighted else 1
        sums[token] += w * nodes[(t, y0, x0, y1, x1)].double()
        weights[token] += w
    return sums / weights[:, None]
