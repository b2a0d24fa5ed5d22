"""Parity fixtures for `performer` against pip performer-pytorch 1.1.4 `SelfAttention`.

Usage: python Tools/reference/performer.py
(performer-pytorch==1.1.4 with local-attention, axial-positional-embedding and hyper-connections,
installed --no-deps.)

The projection matrix is a buffer of the reference's state_dict (`fast_attention.projection_matrix`),
so the fixture carries it; `randomise_` replaces it with random values like every other tensor.
The causal reference runs its pure-torch prefix-sum fallback (no CUDA kernel here); its key
stabiliser is a max over all positions, which the Swift port reproduces.
"""
import torch
from performer_pytorch import SelfAttention
from performer_pytorch.performer_pytorch import generalized_kernel, softmax_kernel

import common

REFERENCE = "performer-pytorch 1.1.4 SelfAttention"

CASES = [
    # name, kwargs, (N, L), map query position
    ("performer", dict(dim=24, heads=3, dim_head=8, nb_features=20, causal=False, qkv_bias=True), (2, 37), 11),
    ("performer-causal", dict(dim=16, heads=2, dim_head=8, nb_features=12, causal=True), (2, 29), 20),
    ("performer-generalized", dict(dim=12, heads=2, dim_head=6, nb_features=9, generalized_attention=True,
                                   attn_out_bias=False), (1, 23), 5),
    ("performer-no-projection", dict(dim=12, heads=3, dim_head=4, no_projection=True), (2, 19), 13),
    # The causal forms of the other two kernels (no_projection: exp(k), no softmax over positions), L past one
    # 64-position chunk of the Swift kernel so the carried prefix state is used too.
    ("performer-no-projection-causal", dict(dim=12, heads=2, dim_head=6, no_projection=True, causal=True), (1, 70), 66),
    ("performer-generalized-causal", dict(dim=8, heads=2, dim_head=4, nb_features=7, generalized_attention=True,
                                          causal=True, qkv_bias=True), (2, 77), 70),
]


def implicit_map(m, x, i):
    """Row i of the implicit weight matrix for batch item 0, mean over heads, from the
    reference's own kernel functions, as 1×1×L."""
    fa = m.fast_attention
    n, l, _ = x.shape
    q = m.to_q(x).view(n, l, m.heads, -1).transpose(1, 2)
    k = m.to_k(x).view(n, l, m.heads, -1).transpose(1, 2)
    if fa.no_projection:
        fq, fk = q.softmax(-1), (torch.exp(k) if fa.causal else k.softmax(-2))    # as FastAttention.forward
    elif fa.generalized_attention:
        fq = generalized_kernel(q, projection_matrix=fa.projection_matrix, kernel_fn=fa.kernel_fn)
        fk = generalized_kernel(k, projection_matrix=fa.projection_matrix, kernel_fn=fa.kernel_fn)
    else:
        fq = softmax_kernel(q, projection_matrix=fa.projection_matrix, is_query=True)
        fk = softmax_kernel(k, projection_matrix=fa.projection_matrix, is_query=False)
    a = torch.einsum("hd,hjd->hj", fq[0, :, i], fk[0])      # H, L
    if fa.causal:
        a[:, i + 1:] = 0
        den = a.sum(-1, keepdim=True) + 1e-6 * fq[0, :, i].sum(-1, keepdim=True)
    else:
        den = a.sum(-1, keepdim=True)
    return (a / den).mean(0).reshape(1, 1, l)


def main():
    g = torch.Generator().manual_seed(2009_14794)
    for name, kw, (n, l), qi in CASES:
        m = SelfAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(n, l, kw["dim"], generator=g)
        with torch.no_grad():
            y = m(x)
            amap = implicit_map(m, x, qi)
        common.save_fixture(name, "performer", kw, REFERENCE, m, x, y, amap, (0, qi))


if __name__ == "__main__":
    main()
