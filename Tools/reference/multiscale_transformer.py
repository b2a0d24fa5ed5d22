"""Parity fixtures for `multiscale-transformer`: a PyTorch masked-dense reference of two-scale
"retina" attention, written for this package from the paper (Subramanian et al. 2020,
arXiv 2005.00581; no code was released). See the Swift type's doc comment for the definition:
tokens z = [x; span means of `pool` tokens], fine keys within `window` of the query, coarse keys
for spans that end at least `window` positions before it (not causal: or start `window` after).

Usage: python Tools/reference/multiscale_transformer.py
"""
import math

import torch
from torch import nn

import common

REFERENCE = "PyTorch masked-dense retina attention written from arXiv 2005.00581 (no released code)"


class RetinaAttention(nn.Module):
    def __init__(self, dim, heads=4, window=32, pool=8, causal=True):
        super().__init__()
        self.heads, self.window, self.pool, self.causal = heads, window, pool, causal
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def mask(self, l):
        m = -(-l // self.pool)
        i = torch.arange(l).view(l, 1)
        j = torch.arange(l).view(1, l)
        fine = (j - i).abs() < self.window
        if self.causal:
            fine = fine & (j <= i)
        start = (torch.arange(m) * self.pool).view(1, m)
        end = start + self.pool - 1
        coarse = end <= i - self.window
        if not self.causal:
            coarse = coarse | (start >= i + self.window)
        return torch.cat([fine, coarse], dim=1)                         # L, L + M

    def forward(self, x):
        b, l, c = x.shape
        m = -(-l // self.pool)
        pad = torch.zeros(b, m * self.pool - l, c)
        counts = torch.cat([torch.ones(l), torch.zeros(m * self.pool - l)]).view(m, self.pool).sum(1)
        means = torch.cat([x, pad], 1).view(b, m, self.pool, c).sum(2) / counts.view(1, m, 1)
        z = torch.cat([x, means], 1)
        d = c // self.heads
        split = lambda t: t.view(b, -1, self.heads, d).transpose(1, 2)
        q = split(self.query(x)) / math.sqrt(d)
        k, v = split(self.key(z)), split(self.value(z))
        s = (q @ k.transpose(-1, -2)).masked_fill(~self.mask(l), float("-inf"))
        p = torch.softmax(s, -1)
        self.last_probs = p
        return self.out((p @ v).transpose(1, 2).reshape(b, l, c))

    def map_row(self, i, l):
        p = self.last_probs[0, :, i].mean(0)
        row = p[:l].clone()
        for s in range(p.shape[0] - l):
            lo, hi = s * self.pool, min(l, (s + 1) * self.pool)
            row[lo:hi] += p[l + s] / (hi - lo)
        return row.reshape(1, 1, l)


CASES = [
    ("multiscale-transformer", dict(dim=12, heads=3, window=6, pool=4), (2, 45, 12), 41),
    ("multiscale-transformer-bidirectional", dict(dim=8, heads=2, window=5, pool=3, causal=False), (1, 38, 8), 17),
    ("multiscale-transformer-long", dict(dim=8, heads=2, window=9, pool=5), (1, 70, 8), 66),
]


def main():
    gen = torch.Generator().manual_seed(20050)
    for name, kw, shape, qpos in CASES:
        m = RetinaAttention(**kw).eval()
        common.randomise_(m, gen)
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            y = m(x)
            amap = m.map_row(qpos, shape[1])
        common.save_fixture(name, "multiscale-transformer", kw, REFERENCE, m, x, y, amap, (0, qpos))


if __name__ == "__main__":
    main()
