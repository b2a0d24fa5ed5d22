"""Parity fixtures for `linformer` against lucidrains' LinformerSelfAttention (pip linformer==0.2.3).

Usage: python Tools/reference/linformer.py   (writes Tests/FastAttentionTests/Fixtures/linformer*.safetensors)
"""
import os
import sys

import torch

# This script is named after the module id, which is also the pip package's name: import the
# package with the script's own folder off the path, then put it back for `common`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
from linformer import LinformerSelfAttention  # noqa: E402

sys.path.insert(0, _HERE)
import common  # noqa: E402

REFERENCE = "linformer.LinformerSelfAttention (pip linformer 0.2.3)"

CASES = [
    # name, kwargs, input shape (N, L, dim), map query position
    ("linformer", dict(dim=24, seq_len=45, k=12, heads=3), (2, 45, 24), 17),
    # one shared key/value projection of one head, dim_head ≠ dim / heads, E = F
    ("linformer-shared", dict(dim=16, seq_len=30, k=7, heads=2, dim_head=5, one_kv_head=True, share_kv=True),
     (2, 30, 16), 29),
]


def reference_map(m: LinformerSelfAttention, x: torch.Tensor, i: int) -> torch.Tensor:
    """Query i's softmax weights over the k projected slots (batch item 0, from the module's own
    layers), taken back to positions through E = proj_k: w_j = mean_h sum_s A[h,i,s] E[j,s]."""
    b, n, _ = x.shape
    h, dh, k = m.heads, m.dim_head, m.k
    q = m.to_q(x).reshape(b, n, h, dh).transpose(1, 2)                     # b, h, n, dh
    keys = torch.einsum("bnd,nk->bkd", m.to_k(x), m.proj_k[:n])            # b, k, kv_dim
    keys = keys.reshape(b, k, -1, dh).transpose(1, 2).expand(-1, h, -1, -1)  # b, h, k, dh
    attn = (torch.einsum("bhnd,bhkd->bhnk", q, keys) * dh ** -0.5).softmax(dim=-1)
    row = attn[0, :, i, :]                                                   # h, k
    return (row @ m.proj_k[:n].T).mean(dim=0).reshape(1, 1, n)


def main():
    g = torch.Generator().manual_seed(20064)
    for name, kw, shape, i in CASES:
        m = LinformerSelfAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = reference_map(m, x, i)
        common.save_fixture(name, "linformer", kw, REFERENCE, m, x, y, amap, (0, i))


if __name__ == "__main__":
    main()
