"""Parity fixtures for `memory-compressed` against MemoryCompressedAttention
(pip memory-compressed-attention==0.0.7).

Usage: python Tools/reference/memory_compressed.py
       (writes Tests/FastAttentionTests/Fixtures/memory-compressed*.safetensors)
"""
import torch
import torch.nn.functional as F
from memory_compressed_attention import MemoryCompressedAttention

import common

REFERENCE = "memory_compressed_attention.MemoryCompressedAttention (pip memory-compressed-attention 0.0.7)"

CASES = [
    # name, kwargs, input shape (N, L, dim), map query position
    ("memory-compressed", dict(dim=24, heads=3, compression_factor=3), (2, 23, 24), 9),       # left pad 1
    ("memory-compressed-causal", dict(dim=16, heads=2, causal=True, compression_factor=4), (2, 30, 16), 6),  # pad 2
    ("memory-compressed-causal-nopad", dict(dim=8, heads=2, causal=True, compression_factor=3), (1, 27, 8), 13),
]


def reference_map(m: MemoryCompressedAttention, x: torch.Tensor, i: int) -> torch.Tensor:
    """Query i's softmax weights over [null] + compressed blocks (batch item 0, mean over heads),
    recomputed from the module's own layers as its forward does; each block's weight is spread
    evenly over the block's real (unpadded) positions. Returns (1, 1, L) and the null weight."""
    b, t, d = x.shape
    h, cf = m.heads, m.compression_factor
    q, k, _ = m.to_qkv(x).chunk(3, dim=-1)
    pad = cf - t % cf
    if pad < cf:
        k = F.pad(k, (0, 0, pad, 0))
    else:
        pad = 0
    k = torch.cat((m.null_k.expand(b, -1, -1), m.compress_fn(k)), dim=1)
    q, k = (u.reshape(*u.shape[:2], h, -1).transpose(1, 2) for u in (q, k))
    dots = torch.einsum("bhid,bhjd->bhij", q, k) * d ** -0.5
    if m.causal:
        mask_k = F.pad(torch.arange(t), (pad, 0)).reshape(-1, cf).max(dim=-1).values
        mask = F.pad(torch.arange(t)[:, None] < mask_k[None, :], (1, 0), value=False)
        dots.masked_fill_(mask, -torch.finfo(dots.dtype).max)
    w = dots.softmax(dim=-1)[0, :, i, :].mean(dim=0)          # 1 + blocks
    out = torch.zeros(t)
    for j in range(1, w.numel()):
        lo, hi = max((j - 1) * cf - pad, 0), j * cf - pad
        out[lo:hi] = w[j] / (hi - lo)
    return out.reshape(1, 1, t), w[0]


def main():
    g = torch.Generator().manual_seed(18011)
    for name, kw, shape, i in CASES:
        m = MemoryCompressedAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap, null = reference_map(m, x, i)
        common.save_fixture(name, "memory-compressed", kw, REFERENCE, m, x, y, amap, (0, i),
                            extra={"map_null_weight": null.reshape(1)})


if __name__ == "__main__":
    main()
