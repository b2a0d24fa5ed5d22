"""Parity fixtures for `axial` against lucidrains' axial-attention 0.6.1 (pip).

Usage: python Tools/reference/axial.py   (writes Tests/FastAttentionTests/Fixtures/axial*.safetensors)

`AxialAttention(dim, num_dimensions=2, heads, dim_heads, dim_index=1, sum_axial_out)` on N×C×H×W.
`axial_attentions.0` attends along H (the columns), `.1` along W (the rows). The reference does
not expose its attention weights, so `map` is recomputed here from the reference's own layers
(`fn.to_q`, `fn.to_kv`) on the sequences the reference attends over, for one query pixel:
  sum mode:        [column softmax, row softmax, column + row]
  sequential mode: [row softmax (2nd hop, on the 1st hop's output), column softmax of the query
                    pixel (1st hop), the composed 2-hop map row(w')·column_(r,w')(h') at (h', w')]
each the mean over heads (per hop, so the 2-hop map composes head-means); `map_head1` is the same
for head 1 alone.
"""
import torch
from axial_attention import AxialAttention

import common

REFERENCE = "axial_attention.AxialAttention (axial-attention 0.6.1)"

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    ("axial", dict(dim=12, num_dimensions=2, heads=3, dim_index=1, sum_axial_out=True), (2, 12, 5, 7), (3, 2)),
    ("axial-sequential", dict(dim=8, num_dimensions=2, heads=2, dim_heads=6, dim_index=1, sum_axial_out=False),
     (2, 8, 6, 5), (1, 4)),
]


def weights(fn, seq: torch.Tensor, i: int, head) -> torch.Tensor:
    """Softmax weights (L) that position i of the sequence seq (L×C) gives every position, from
    SelfAttention `fn`'s own layers: head `head`, or the mean over heads when None."""
    e, h = fn.dim_heads, fn.heads
    q = fn.to_q(seq).reshape(-1, h, e)                     # L, heads, e
    k = fn.to_kv(seq).chunk(2, dim=-1)[0].reshape(-1, h, e)
    w = (torch.einsum("he,lhe->hl", q[i], k) * e ** -0.5).softmax(dim=-1)   # heads, L
    return w.mean(0) if head is None else w[head]


def reference_maps(m: AxialAttention, x: torch.Tensor, row: int, col: int, head=None) -> torch.Tensor:
    col_fn, row_fn = m.axial_attentions[0].fn, m.axial_attentions[1].fn
    x0 = x[0]                                              # C, H, W
    _, hh, ww = x0.shape
    column = torch.zeros(hh, ww)
    column[:, col] = weights(col_fn, x0[:, :, col].t(), row, head)
    rowmap = torch.zeros(hh, ww)
    if m.sum_axial_out:
        rowmap[row, :] = weights(row_fn, x0[:, row, :].t(), col, head)
        return torch.stack([column, rowmap, column + rowmap])
    first = m.axial_attentions[0](x)[0]                    # C, H, W: the 1st hop's output
    rowmap[row, :] = weights(row_fn, first[:, row, :].t(), col, head)
    composed = torch.zeros(hh, ww)
    for w in range(ww):
        composed[:, w] = rowmap[row, w] * weights(col_fn, x0[:, :, w].t(), row, head)
    return torch.stack([rowmap, column, composed])


def main():
    g = torch.Generator().manual_seed(19121)
    for name, kw, shape, q in CASES:
        m = AxialAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            maps = reference_maps(m, x, *q)
            head1 = reference_maps(m, x, *q, head=1)
        common.save_fixture(name, "axial", kw, REFERENCE, m, x, y, maps, q, extra={"map_head1": head1})


if __name__ == "__main__":
    main()
