"""Parity fixtures for `lambda` against lucidrains' lambda-networks 0.4.0 (pip).

Usage: python Tools/reference/lambda.py   (writes Tests/FastAttentionTests/Fixtures/lambda*.safetensors)

`LambdaLayer(dim, dim_k, n=None, r=None, heads, dim_out, dim_u)`: the local-context variant
(r: a Conv3d over (1, r, r)) and the global variant (n: relative position embeddings, n×n input).
The reference has no attention map; `map` is computed here from the reference's own layers for one
query pixel n of batch item 0 (mean over heads):
  [content weights  Σ_k q[n,k] · softmax_m(K)[k,m],
   position weights Σ_k q[n,k] · E[k, m − n]   (E: pos_conv kernel, or rel_pos_emb),
   their sum, then the u·k key maps softmax_m(K)]
weights summed over the u value sets. The script asserts that these weights reproduce the
reference's output: Y[n, h] = Σ_m w_h[m]·v[m] + Σ_k q[n,h,k]·pos_conv.bias[k].
"""
import torch
from lambda_networks import LambdaLayer

import common

REFERENCE = "lambda_networks.LambdaLayer (lambda-networks 0.4.0)"

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    ("lambda", dict(dim=12, dim_k=4, r=5, heads=2, dim_out=8, dim_u=2), (2, 12, 5, 7), (1, 5)),
    ("lambda-global", dict(dim=8, dim_k=3, n=5, heads=3, dim_out=6, dim_u=1), (2, 8, 5, 5), (3, 1)),
]


def position_kernel(m: LambdaLayer, hh: int, ww: int, row: int, col: int) -> torch.Tensor:
    """E[k, u, m] for the query (row, col): the weight the position lambda gives v[u, m]."""
    e = torch.zeros(m.to_k.out_channels // m.u, m.u, hh, ww)
    if m.local_contexts:
        w = m.pos_conv.weight[:, :, 0]                          # k, u, r, r
        r = w.shape[-1]
        for dy in range(r):
            for dx in range(r):
                i, j = row + dy - r // 2, col + dx - r // 2
                if 0 <= i < hh and 0 <= j < ww:
                    e[:, :, i, j] = w[:, :, dy, dx]
    else:
        n = hh
        emb = m.rel_pos_emb[m.rel_pos[:, :, 0], m.rel_pos[:, :, 1]]     # n², n², k, u
        e = emb[row * n + col].permute(1, 2, 0).reshape(e.shape)
    return e


def reference_maps(m: LambdaLayer, x: torch.Tensor, row: int, col: int):
    b, c, hh, ww = x.shape
    h, u = m.heads, m.u
    q = m.norm_q(m.to_q(x))[0].reshape(h, -1, hh * ww)                  # h, k, N
    k = m.to_k(x)[0].reshape(u, -1, hh * ww).softmax(dim=-1)            # u, k, N
    v = m.norm_v(m.to_v(x))[0].reshape(u, -1, hh * ww)                  # u, v, N
    i = row * ww + col
    qn = q[:, :, i]                                                      # h, k
    content = torch.einsum("hk,ukm->hum", qn, k)                         # h, u, N
    pos = torch.einsum("hk,kum->hum", qn, position_kernel(m, hh, ww, row, col).reshape(k.shape[1], u, -1))
    # The weights reproduce the reference's output at (row, col).
    y = torch.einsum("hum,uvm->hv", content + pos, v)
    if m.local_contexts:
        y = y + (qn @ m.pos_conv.bias)[:, None]
    expected = m(x)[0].reshape(h, -1, hh * ww)[:, :, i]
    assert torch.allclose(y, expected, atol=1e-5), (y - expected).abs().max()
    maps = [content.sum(1).mean(0), pos.sum(1).mean(0), (content + pos).sum(1).mean(0)]
    maps = torch.stack(maps + list(k.reshape(-1, hh * ww)))
    return maps.reshape(-1, hh, ww)


def main():
    g = torch.Generator().manual_seed(21028)
    for name, kw, shape, q in CASES:
        m = LambdaLayer(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = reference_maps(m, x, *q)
        common.save_fixture(name, "lambda", kw, REFERENCE, m, x, y, amap, q)


if __name__ == "__main__":
    main()
