"""Parity fixtures for `scram` (SCRAM, arXiv 1905.10308).

SCRAM has no public code. This is a reference written here from the paper: Calian, Roelants,
Cali, Carr, Dubba, Reid, Zhang, "SCRAM: Spatially Coherent Randomized Attention Maps", 2019.
The paper's idea (abstract, Sec. 1): attention maps of images are spatially coherent and sparse,
so PatchMatch (Barnes et al. 2009, with the k-nearest-neighbour generalisation of Barnes et al.
2010) can find each query's most compatible keys in O(n log n), and the non-local mean is then
taken over those keys only.

The layer defined here (a non-local mean with 1x1 projections, as in the paper's setting):
    q = query(x), k = key(x) (key_channels), v = value(x) (value_channels); 1x1 convs with bias
    s(i, j) = q_i . k_j                      (computed in float64 for the search)
    N(i)    = the `topk` keys PatchMatch finds for query i (maximum inner product search)
    y_i     = sum_{j in N(i)} softmax_j(s(i, j) / sqrt(key_channels)) v_j       (N x value_channels x H x W)

PatchMatch, per image, on the H x W grid of queries and the same grid of keys:
  (topk is capped at HW: on a map with fewer keys every key is found)
  init:   candidate j = min(floor(u * HW), HW - 1) for the topk draws u of `init_draws[b, i]`; duplicates are
          dropped and a set left short is filled with the next key indices (j0+1, j0+2, ... mod HW);
  for t in range(iterations), queries in scan order (t even: rows top-down, columns left-right;
          t odd: reversed), each query in turn:
    propagation: for each scan-order predecessor n (t even: left then up; t odd: right then down)
          and each of its current candidates j: propose j itself (neighbouring queries attend to
          the same keys) and j shifted by the query offset (i - n) when inside the grid;
    random search (around each of the query's candidates, as PatchMatch's k-NN generalisation
          does): for the c-th best candidate (y0, x0) of the set as it stands after propagation,
          radii R_m = max(H, W) / 2^m, m = 0..M-1 with M = floor(log2(max(H, W))) + 1: propose
          (clamp(y0 + floor(R_m (2u - 1) + 0.5)), clamp(x0 + floor(R_m (2u' - 1) + 0.5))) with
          (u, u') = search_draws[b, t, i, c, m];
    a proposal enters the candidate set when it is not in it and beats the set's worst score
    (the set keeps the topk best distinct keys seen).
  Cost: O(HW * iterations * topk * log(max(H, W)) * key_channels) = O(n log n D) for fixed topk.
The random draws are buffers `init_draws` (B, HW, topk) and `search_draws` (B, iterations, HW, topk, M, 2),
uniform in [0, 1); the Swift port reads them from the weights file, or draws them from its
`seed` (per image b: its init draws, then its search draws).

Keys: query.{weight,bias} (key_channels, C, 1, 1), key.*, value.{weight,bias} (value_channels, C, 1, 1),
init_draws, search_draws. Config: in_channels, key_channels, value_channels, topk, iterations (+ seed).

Usage: /work/venv/bin/python Tools/reference/scram.py
"""
import math
import sys

import torch
from torch import nn

import common

REFERENCE = "own PyTorch reference from the paper (Tools/reference/scram.py); no public code"


def radii_count(h, w):
    return int(math.floor(math.log2(max(h, w)))) + 1


class TopK:
    def __init__(self, k):
        self.k, self.idx, self.score = k, [], []

    def offer(self, j, s):
        if j in self.idx:
            return
        if len(self.idx) < self.k:
            self.idx.append(j)
            self.score.append(s)
            return
        worst = min(range(self.k), key=lambda t: self.score[t])
        if s > self.score[worst]:
            self.idx[worst], self.score[worst] = j, s

    def ranked(self):
        """The candidates, best first (a snapshot)."""
        return [self.idx[t] for t in sorted(range(len(self.idx)), key=lambda t: -self.score[t])]


def patchmatch(q, k, h, w, topk, iterations, init_draws, search_draws):
    """q, k: HW x D float64; returns per query the list of topk key indices (best first)."""
    n = h * w
    topk = min(topk, n)     # a map with fewer keys than topk: every key
    score = lambda i, j: float((q[i] * k[j]).sum())
    sets = []
    for i in range(n):
        s = TopK(topk)
        for u in init_draws[i, :topk].tolist():
            s.offer(min(int(math.floor(u * n)), n - 1), score(i, min(int(math.floor(u * n)), n - 1)))
        j0 = s.idx[0]
        step = 1
        while len(s.idx) < topk:
            s.offer((j0 + step) % n, score(i, (j0 + step) % n))
            step += 1
        sets.append(s)
    m_count = radii_count(h, w)
    for t in range(iterations):
        forward = t % 2 == 0
        order = range(n) if forward else range(n - 1, -1, -1)
        for i in order:
            y, x = divmod(i, w)
            preds = [(y, x - 1), (y - 1, x)] if forward else [(y, x + 1), (y + 1, x)]
            for (ny, nx) in preds:
                if not (0 <= ny < h and 0 <= nx < w):
                    continue
                dy, dx = y - ny, x - nx
                for j in list(sets[ny * w + nx].idx):
                    sets[i].offer(j, score(i, j))
                    ky, kx = divmod(j, w)
                    sy, sx = ky + dy, kx + dx
                    if 0 <= sy < h and 0 <= sx < w:
                        sets[i].offer(sy * w + sx, score(i, sy * w + sx))
            centres = sets[i].ranked()
            for c, centre in enumerate(centres):
                y0, x0 = divmod(centre, w)
                for m in range(m_count):
                    r = max(h, w) / (2.0 ** m)
                    u, v = search_draws[t, i, c, m].tolist()
                    sy = min(max(y0 + int(math.floor(r * (2 * u - 1) + 0.5)), 0), h - 1)
                    sx = min(max(x0 + int(math.floor(r * (2 * v - 1) + 0.5)), 0), w - 1)
                    sets[i].offer(sy * w + sx, score(i, sy * w + sx))
    return [s.ranked() for s in sets]


class SCRAM(nn.Module):
    def __init__(self, in_channels, key_channels, value_channels, topk=8, iterations=4):
        super().__init__()
        self.key_channels, self.topk, self.iterations = key_channels, topk, iterations
        self.query = nn.Conv2d(in_channels, key_channels, 1)
        self.key = nn.Conv2d(in_channels, key_channels, 1)
        self.value = nn.Conv2d(in_channels, value_channels, 1)

    def set_draws(self, batch, h, w, generator):
        n = h * w
        self.register_buffer("init_draws", torch.rand(batch, n, self.topk, generator=generator))
        self.register_buffer("search_draws", torch.rand(batch, self.iterations, n, self.topk, radii_count(h, w), 2,
                                                        generator=generator))

    def neighbours(self, x):
        """Per image, per query: the found keys (best first) and their softmax weights."""
        b_, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2).double()       # B, HW, Dk
        k = self.key(x).flatten(2).transpose(1, 2).double()
        result = []
        for b in range(b_):
            idx = patchmatch(q[b], k[b], h, w, self.topk, self.iterations, self.init_draws[b], self.search_draws[b])
            idx = torch.tensor(idx)                                    # HW, min(topk, HW)
            s = (q[b][:, None, :] * k[b][idx]).sum(-1) / math.sqrt(self.key_channels)
            result.append((idx, torch.softmax(s, dim=-1)))
        return result

    def forward(self, x):
        b_, _, h, w = x.shape
        v = self.value(x).flatten(2).transpose(1, 2).double()           # B, HW, Dv
        out = []
        for b, (idx, wts) in enumerate(self.neighbours(x)):
            out.append((wts[:, :, None] * v[b][idx]).sum(1))          # HW, Dv
        return torch.stack(out).transpose(1, 2).reshape(b_, -1, h, w).float()


CASES = [
    # name, config, input shape, map query
    ("scram", dict(in_channels=8, key_channels=4, value_channels=6, topk=4, iterations=3), (2, 8, 6, 7), (2, 5)),
    ("scram-k1", dict(in_channels=6, key_channels=6, value_channels=6, topk=1, iterations=2), (1, 6, 9, 5), (8, 0)),
]


def main():
    g = torch.Generator().manual_seed(1905)
    for name, cfg, shape, q in CASES:
        m = SCRAM(**cfg).eval()
        m.set_draws(shape[0], shape[2], shape[3], g)
        common.randomise_(m, g, std=0.5)
        with torch.no_grad():
            m.init_draws.copy_(torch.rand(m.init_draws.shape, generator=g))
            m.search_draws.copy_(torch.rand(m.search_draws.shape, generator=g))
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            idx, wts = m.neighbours(x)[0]
            amap = torch.zeros(shape[2] * shape[3], dtype=torch.float64)
            i = q[0] * shape[3] + q[1]
            amap[idx[i]] = wts[i]
            # how close to exact: found sets vs exact top-k over all keys (batch item 0)
            qq = m.query(x).flatten(2).transpose(1, 2).double()[0]
            kk = m.key(x).flatten(2).transpose(1, 2).double()[0]
            exact = (qq @ kk.T).topk(cfg["topk"], dim=1).indices
            agree = sum(set(a.tolist()) == set(b.tolist()) for a, b in zip(idx, exact)) / len(idx)
            print(f"{name}: found sets equal to the exact top-k for {agree:.0%} of queries", file=sys.stderr)
        common.save_fixture(name, "scram", cfg, REFERENCE, m, x, y, amap.reshape(1, shape[2], shape[3]), q)


if __name__ == "__main__":
    main()
