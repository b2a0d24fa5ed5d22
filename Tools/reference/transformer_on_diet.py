"""Parity fixtures for `transformer-on-a-diet`: a PyTorch masked-dense reference written for this
package from cgraywang/transformer-on-diet (commit 47d9d40, MXNet/GluonNLP; no PyTorch code
exists) and the paper (Wang et al. 2020, arXiv 2002.06170).

Masks restate the repository's `_windowed_mask`, `_dilated_windowed_mask` and
`_dilated_mem_windowed_mask` (row i: i, i - d, ..., k entries, d = d_base**layer; the memory
variant ORs the masks of layers 0..layer; cascade: the last window_size * multiplier**layer
positions; full: causal). Attention is GluonNLP's MultiHeadAttentionCell with a scaled
DotProductAttentionCell, followed by the encoder cell's output Dense `proj` (no bias). The
repository's `TransformerEncoderCell` builds its cell through `_get_attention_cell(...)`
(scripts/language_model/encoder_decoder_language_model.py) without passing `use_bias`, whose
default there is False: proj_query / proj_key / proj_value have **no bias** (`use_bias=True` is a
toolkit option, one case below). Parameter names: the Gluon block structure with PyTorch names
inside.

Usage: python Tools/reference/transformer_on_diet.py
"""
import math

import torch
from torch import nn

import common

REFERENCE = "PyTorch masked-dense port of cgraywang/transformer-on-diet 47d9d40 masks + GluonNLP multi-head attention"


def dilated_rows(n, layer, k, d_base):
    m = torch.zeros(n, n, dtype=torch.bool)
    d = int(math.pow(d_base, layer))
    for i in range(n):
        for j in range(k):
            if i - j * d < 0:
                break
            m[i, i - j * d] = True
    return m


def diet_mask(n, model, layer, k=3, d_base=2, window_size=2, mult=2):
    if model == "full":
        return torch.ones(n, n).tril().bool()
    if model == "cascade":
        w = int(window_size * math.pow(mult, layer))
        i = torch.arange(n).view(n, 1)
        j = torch.arange(n).view(1, n)
        return (j <= i) & (j > i - w)
    if model == "dilated":
        return dilated_rows(n, layer, k, d_base)
    m = torch.zeros(n, n, dtype=torch.bool)
    for lay in range(layer + 1):
        m |= dilated_rows(n, lay, k, d_base)
    return m


class AttentionCell(nn.Module):
    def __init__(self, units, bias):
        super().__init__()
        self.proj_query = nn.Linear(units, units, bias=bias)
        self.proj_key = nn.Linear(units, units, bias=bias)
        self.proj_value = nn.Linear(units, units, bias=bias)


class DietAttention(nn.Module):
    def __init__(self, units, num_heads=4, model="dilated", layer=2, kernel_size=3, d_base=2, window_size=2,
                 window_size_multiplier=2, scaled=True, use_bias=False):
        super().__init__()
        self.heads, self.scaled = num_heads, scaled
        self.mask_args = (model, layer, kernel_size, d_base, window_size, window_size_multiplier)
        self.attention_cell = AttentionCell(units, use_bias)
        self.proj = nn.Linear(units, units, bias=False)

    def forward(self, x):
        b, n, c = x.shape
        d = c // self.heads
        split = lambda t: t.view(b, n, self.heads, d).transpose(1, 2)
        cell = self.attention_cell
        q, k, v = split(cell.proj_query(x)), split(cell.proj_key(x)), split(cell.proj_value(x))
        if self.scaled:
            q = q / math.sqrt(d)
        mask = diet_mask(n, *self.mask_args)
        s = (q @ k.transpose(-1, -2)).masked_fill(~mask, float("-inf"))
        self.last_probs = torch.softmax(s, dim=-1)
        return self.proj((self.last_probs @ v).transpose(1, 2).reshape(b, n, c))


CASES = [
    ("transformer-on-a-diet", dict(units=12, num_heads=3, model="dilated", layer=2), (2, 45, 12), 40),
    ("transformer-on-a-diet-mem", dict(units=8, num_heads=2, model="dilated_mem", layer=3, kernel_size=3), (2, 50, 8), 47),
    ("transformer-on-a-diet-cascade", dict(units=8, num_heads=2, model="cascade", layer=2, window_size=3,
                                           scaled=False, use_bias=True), (1, 37, 8), 30),
    ("transformer-on-a-diet-d3", dict(units=8, num_heads=2, model="dilated", layer=2, kernel_size=4, d_base=3),
     (1, 60, 8), 59),
]


def main():
    # The repository's documented rows (L = 16, row 15).
    assert dilated_rows(16, 2, 3, 2)[15].nonzero().flatten().tolist() == [7, 11, 15]
    assert diet_mask(16, "dilated_mem", 2)[15].nonzero().flatten().tolist() == [7, 11, 13, 14, 15]
    gen = torch.Generator().manual_seed(20020)
    for name, kw, shape, qpos in CASES:
        m = DietAttention(**kw).eval()
        common.randomise_(m, gen)
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            y = m(x)
            amap = m.last_probs[0, :, qpos].mean(0).reshape(1, 1, -1)
        common.save_fixture(name, "transformer-on-a-diet", kw, REFERENCE, m, x, y, amap, (0, qpos))


if __name__ == "__main__":
    main()
