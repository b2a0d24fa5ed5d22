"""Parity fixtures for `kronecker` against lucidrains' kronecker-attention-pytorch 0.0.6 (pip).

Usage: python Tools/reference/kronecker.py   (writes Tests/FastAttentionTests/Fixtures/kronecker*.safetensors)

`KroneckerSelfAttention(dim, heads, dim_heads)` on N×C×H×W. The reference's (H+W)×(H+W)
softmax over [row means ; column means] is captured as its forward computes it (its module-level
`einsum` is wrapped), and `map` is drawn back on H×W for one query pixel (i, j) of batch item 0,
mean over heads: a summary token's weight is spread over the pixels it averages (a row token over
its row / W, a column token over its column / H), giving
  [row token i's attention drawn back, column token H+j's attention drawn back, their sum]
The sum is the exact weight each input pixel carries in y[:, i, j] (total 2); the script checks
that it reproduces the reference's output.
"""
import torch
import kronecker_attention_pytorch.kronecker_attention_pytorch as kap
from kronecker_attention_pytorch import KroneckerSelfAttention

import common

REFERENCE = "kronecker_attention_pytorch.KroneckerSelfAttention (kronecker-attention-pytorch 0.0.6)"

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    ("kronecker", dict(dim=12, heads=3, dim_heads=4), (2, 12, 5, 7), (3, 1)),
    ("kronecker-default-dim-heads", dict(dim=6, heads=2), (1, 6, 4, 9), (0, 8)),
]


class EinsumRecorder:
    """Stands in for the reference module's `einsum`: keeps the attention it multiplies by v."""
    def __init__(self):
        self.attn = None

    def __call__(self, eq, *ops):
        if eq == "bhij,bhdj->bhdi":
            self.attn = ops[0]
        return torch.einsum(eq, *ops)


def drawn_back(attn: torch.Tensor, h: int, w: int, token: int) -> torch.Tensor:
    """Row `token` of an (H+W)×(H+W) attention as weights over the H×W pixels."""
    a = attn[token]
    return a[:h, None] / w + a[None, h:] / h


def main():
    g = torch.Generator().manual_seed(20070)
    for name, kw, shape, q in CASES:
        m = KroneckerSelfAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        rec = EinsumRecorder()
        kap.einsum = rec
        with torch.no_grad():
            y = m(x)
        kap.einsum = torch.einsum
        _, c, h, w = shape
        i, j = q
        attn = rec.attn[0]                                              # heads, H+W, H+W
        per_head = torch.stack([torch.stack([drawn_back(a, h, w, i), drawn_back(a, h, w, h + j)]) for a in attn])
        # The per-pixel weights reproduce the output: y[:, i, j] = to_out(Σ_p w_h(p) v(x_p)) per head.
        with torch.no_grad():
            wv = m.to_qkv.weight[2 * m.to_out.in_channels:, :, 0]       # (h d), C
            v = torch.einsum("oc,chw->ohw", wv, x[0]).reshape(kw["heads"], -1, h, w)
            o = torch.einsum("ahw,adhw->ad", per_head.sum(1), v).reshape(-1)
            yy = m.to_out.weight[:, :, 0] @ o + 2 * m.to_out.bias
            assert torch.allclose(yy, y[0, :, i, j], atol=1e-5), (yy - y[0, :, i, j]).abs().max()
        maps = per_head.mean(0)
        amap = torch.cat([maps, maps.sum(0, keepdim=True)])
        common.save_fixture(name, "kronecker", kw, REFERENCE, m, x, y, amap, q,
                            extra={"attention": rec.attn[0].contiguous()})


if __name__ == "__main__":
    main()
