"""Checks every MergeResult must pass, shared by the merge and baseline tests."""
import torch


def check_bookkeeping(x, r, contiguous=True):
    T, H, W, _ = x.shape
    assert int(r.num_patches.sum()) == T * H * W
    # each frame's spatial boxes tile it exactly, and the token map agrees with them
    cover = torch.zeros(T, H, W, dtype=torch.long)
    for (t, y0, x0, y1, x1), token in zip(r.spatial_boxes.tolist(), r.spatial_to_token.tolist()):
        cover[t, y0:y1, x0:x1] += 1
        assert (r.token_map[t, y0:y1, x0:x1] == token).all()
    assert (cover == 1).all()
    # a token's box is its first occurrence; its patches add up over every frame it spans
    for n, (t, y0, x0, y1, x1) in enumerate(r.boxes.tolist()):
        assert (r.token_map[t, y0:y1, x0:x1] == n).all()
        assert int((r.token_map == n).sum()) == int(r.num_patches[n])
        first, last = r.frame_span[n].tolist()
        assert first == t and (r.token_map[last] == n).any()
        if contiguous:  # linked pairs are consecutive frames, so a chain misses no frame
            assert all((r.token_map[f] == n).any() for f in range(first, last + 1))
    keys = r.boxes[:, 0] * H * W + r.boxes[:, 1] * W + r.boxes[:, 2]
    assert (keys[1:] > keys[:-1]).all()  # sorted by (t, y0, x0) of the first occurrence
