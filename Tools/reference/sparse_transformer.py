"""Parity fixtures for `sparse-transformer`: a PyTorch masked-dense reference of the Sparse
Transformer patterns (Child et al. 2019, arXiv 1904.10509).

The official code, openai/sparse_attention `attention.py` (commit c53f3bd), is TF1 + a GPU-only
blocksparse op, so it cannot run here. This file re-states its semantics in PyTorch, written for
this package (no code copied):
  * `get_attn_mask(n, mode, local_attn_ctx)`: 'all' k <= q; 'local' q - l < k <= q;
    'strided' k <= q and (q - k) % l == 0.
  * `attention_impl`: logits q.k / sqrt(d_head), w*mask - 1e9*(1 - mask), softmax, @ v.
  * 'fixed' exists only as `get_blocksparse_obj`'s block layout: per head pattern h % num_verts,
    summary key blocks kb with kb % (l/blocksize) in that pattern's `vertsize` offsets counted
    down from l/blocksize - 1; the query block's own l-chunk; no key block after the query block;
    inside diagonal blocks k <= q (the mask callback).
Toolkit extensions mirrored here: `merged` (strided heads attend to local | strided, the paper's
merged head), `causal=False` (mirrored masks), `image_width` (l = W), l = ceil(sqrt(L)) when unset
(fixed: ceil(sqrt(c*L)) rounded up to c = blocksize*vertsize, at least num_verts patterns).
Projections are `query`, `key`, `value` nn.Linear (DeepSpeed BertSparseSelfAttention names).

Usage: python Tools/reference/sparse_transformer.py
"""
import math

import torch
from torch import nn

import common

REFERENCE = "PyTorch masked-dense port of openai/sparse_attention get_attn_mask / get_blocksparse_obj (c53f3bd)"


def default_ctx(n, mode, blocksize, num_verts, vertsize):
    ceil_sqrt = lambda m: math.isqrt(m - 1) + 1 if m > 1 else 1
    if mode != "fixed":
        return ceil_sqrt(n)
    unit = blocksize * vertsize
    root = ceil_sqrt(unit * n)          # the l minimising l + c*n/l, c = blocksize*vertsize
    return unit * max((root + unit - 1) // unit, num_verts)


def pattern_mask(n, mode, ctx, causal, merged=True, blocksize=32, pattern=0, vertsize=1):
    """Boolean n x n mask (query rows, key columns) of one head."""
    q = torch.arange(n).view(n, 1)
    k = torch.arange(n).view(1, n)
    allowed = (k <= q) if causal else torch.ones(n, n, dtype=torch.bool)
    near = (q - k).abs() < ctx
    if mode == "all":
        m = torch.ones(n, n, dtype=torch.bool)
    elif mode == "local":
        m = near
    elif mode == "strided":
        m = torch.remainder(q - k, ctx) == 0
        if merged:
            m = m | near
    elif mode == "fixed":
        stride = ctx // blocksize
        offsets = torch.tensor([stride - 1 - pattern * vertsize - i for i in range(vertsize)])
        summary = torch.isin(torch.div(k, blocksize, rounding_mode="floor") % stride, offsets)
        own_chunk = torch.div(k, ctx, rounding_mode="floor") == torch.div(q, ctx, rounding_mode="floor")
        m = summary | own_chunk
    else:
        raise ValueError(mode)
    return m & allowed


class SparseTransformerAttention(nn.Module):
    def __init__(self, n_embd, heads=4, attn_mode="strided", local_attn_ctx=None, blocksize=32, num_verts=4,
                 vertsize=1, merged=True, causal=True, image_width=None):
        super().__init__()
        self.heads, self.mode, self.blocksize = heads, attn_mode, blocksize
        self.num_verts, self.vertsize, self.merged, self.causal = num_verts, vertsize, merged, causal
        self.ctx = local_attn_ctx or image_width
        self.query = nn.Linear(n_embd, n_embd)
        self.key = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)

    def masks(self, n):
        ctx = self.ctx or default_ctx(n, self.mode, self.blocksize, self.num_verts, self.vertsize)
        return torch.stack([pattern_mask(n, self.mode, ctx, self.causal, self.merged, self.blocksize,
                                         h % self.num_verts, self.vertsize) for h in range(self.heads)])

    def forward(self, x):
        b, n, c = x.shape
        d = c // self.heads
        split = lambda t: t.view(b, n, self.heads, d).transpose(1, 2)   # B, H, L, d
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        mask = self.masks(n).float().unsqueeze(0)                        # 1, H, L, L
        w = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        w = w * mask + -1e9 * (1 - mask)
        w = torch.softmax(w, dim=-1)
        self.last_probs = w
        a = torch.matmul(w, v)                                           # B, H, L, d
        return a.transpose(1, 2).reshape(b, n, c)


CASES = [
    # name, kwargs, (N, L, C), map query position
    ("sparse-transformer", dict(n_embd=12, heads=3, attn_mode="strided", local_attn_ctx=7, blocksize=4), (2, 45, 12), 38),
    ("sparse-transformer-strided-only", dict(n_embd=8, heads=2, attn_mode="strided", local_attn_ctx=6, blocksize=8,
                                             merged=False), (2, 40, 8), 29),
    ("sparse-transformer-fixed", dict(n_embd=16, heads=4, attn_mode="fixed", local_attn_ctx=12, blocksize=4,
                                      num_verts=2, vertsize=1), (2, 50, 16), 47),
    ("sparse-transformer-local", dict(n_embd=8, heads=2, attn_mode="local", local_attn_ctx=5, blocksize=4), (1, 33, 8), 20),
    ("sparse-transformer-all", dict(n_embd=8, heads=2, attn_mode="all", blocksize=4), (1, 21, 8), 11),
    ("sparse-transformer-fixed-default-ctx", dict(n_embd=8, heads=2, attn_mode="fixed", blocksize=2, num_verts=2),
     (1, 70, 8), 66),
    ("sparse-transformer-bidirectional", dict(n_embd=8, heads=2, attn_mode="strided", blocksize=4, causal=False),
     (1, 30, 8), 12),
    ("sparse-transformer-image-fixed", dict(n_embd=8, heads=2, attn_mode="fixed", image_width=8, blocksize=2,
                                            num_verts=2, vertsize=2, causal=True), (1, 40, 8), 27),
]


def main():
    g = torch.Generator().manual_seed(19041)
    for name, kw, shape, qpos in CASES:
        m = SparseTransformerAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = m.last_probs[0, :, qpos, :].mean(0).reshape(1, 1, -1)
        common.save_fixture(name, "sparse-transformer", kw, REFERENCE, m, x, y, amap, (0, qpos))


if __name__ == "__main__":
    main()
