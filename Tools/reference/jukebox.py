"""Parity fixtures for `jukebox` against openai/jukebox `FactoredAttention`
(jukebox/transformer/factored_attention.py, commit 08efbbc), attn_func 0 (dense), 1 (row),
2 (column), 3 (previous row). Non-sampling forward, eval mode.

The reference is not a pip package: check out openai/jukebox and point FA_REF_JUKEBOX at the
checkout's root (the folder holding `jukebox/`). Only factored_attention.py, ops.py and
utils/checkpoint.py are imported (no apex needed: ops.py falls back to torch's LayerNorm).

The map is the reference's own recorded weights (`record_attn=True`, `m.w`) for the map query,
scattered back to absolute key positions, mean over heads, batch item 0.

Usage: FA_REF_JUKEBOX=/path/to/jukebox python Tools/reference/jukebox.py
"""
import os
import sys

import torch

import common

ROOT = os.environ.get("FA_REF_JUKEBOX")
if not ROOT or not os.path.isdir(os.path.join(ROOT, "jukebox")):
    sys.exit("set FA_REF_JUKEBOX to a checkout of github.com/openai/jukebox (commit 08efbbc)")
sys.path.insert(0, ROOT)
from jukebox.transformer.factored_attention import FactoredAttention  # noqa: E402

REFERENCE = "openai/jukebox 08efbbc jukebox/transformer/factored_attention.py FactoredAttention"

CASES = [
    # name, kwargs, batch, map query
    ("jukebox", dict(n_in=12, n_ctx=40, n_state=12, n_head=3, mask=True, attn_func=1, blocks=5), 2, 29),
    # blocks != block_ctx (8 rows of 5): a port that swapped the two (stride n_ctx/block_ctx) would differ.
    ("jukebox-column", dict(n_in=8, n_ctx=40, n_state=8, n_head=2, mask=True, attn_func=2, blocks=8), 2, 27),
    ("jukebox-prev-row", dict(n_in=12, n_ctx=32, n_state=8, n_head=2, mask=True, attn_func=3, blocks=4), 2, 21),
    ("jukebox-row-unmasked", dict(n_in=8, n_ctx=30, n_state=8, n_head=2, mask=False, attn_func=1, blocks=3), 1, 14),
    ("jukebox-dense", dict(n_in=8, n_ctx=20, n_state=8, n_head=2, mask=True, attn_func=0, blocks=4), 1, 13),
]


def map_row(m, kw, i, l):
    """Row of query i (batch 0) from the recorded weights, scattered to absolute key positions."""
    w = m.w.float()
    bc = kw["n_ctx"] // kw["blocks"]
    row = torch.zeros(w.shape[1], l)
    f = kw["attn_func"]
    if f == 0:
        row[:] = w[0, :, i, :]
    elif f == 1:
        row[:, (i // bc) * bc:(i // bc + 1) * bc] = w[i // bc, :, i % bc, :]
    elif f == 2:
        row[:, (i % bc)::bc] = w[i % bc, :, i // bc, :]
    elif f == 3:
        blk = i // bc
        assert blk > 0, "block 0 attends to zero padding: pick a later query"
        row[:, (blk - 1) * bc:blk * bc] = w[blk, :, i % bc, :]
    return row.mean(0).reshape(1, 1, l)


def main():
    gen = torch.Generator().manual_seed(20053)
    for name, kw, batch, qpos in CASES:
        m = FactoredAttention(**kw).eval()
        common.randomise_(m, gen)
        m.record_attn = True
        x = torch.randn(batch, kw["n_ctx"], kw["n_in"], generator=gen)
        with torch.no_grad():
            y = m(x)
        amap = map_row(m, kw, qpos, kw["n_ctx"])
        common.save_fixture(name, "jukebox", kw, REFERENCE, m, x, y, amap, (0, qpos))


if __name__ == "__main__":
    main()
