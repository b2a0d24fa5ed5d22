"""Parity fixtures for `permutohedral` (PAM, arXiv 1907.00641).

Reference: SamuelJoutard/Permutohedral_attention_module (commit c86b810), PAM/PAM.py `PAM` and the
pure-torch lattice PAM/PL_with_grad_torch_HT.py `PermutohedralLattice` with PAM/HashTable_GPU.py.
That code is 3D (Conv3d, three centred voxel coordinates) and CUDA-only (torch.cuda tensor types,
a dense 2**30 hash table). This file holds a 2D, CPU transliteration written here from reading
it (nothing copied):

  PAM2d(in_f, filt_f, out_f, n_split) -- the reference's layout with Conv2d and two coordinates:
    keys `scaling_spatial` (1, 2, 1, 1), `conv_feat.{weight,bias}` ((filt_f*n_split), in_f+2, 1, 1),
    `conv_desc.{weight,bias}` ((out_f*n_split), in_f, 1, 1);
    p = (i - H//2, j - W//2) * scaling_spatial; f = leaky_relu(conv_feat([x; p])) (slope 0.01);
    v = conv_desc(x); per split s: y_s = lattice(f_s, v_s); output cat_s y_s, N x out_f*n_split x H x W.

  lattice(f, v), f: B x d x N, v: B x c x N -- the reference's permutohedral filter:
    1. elevate to d+1 dims with E (column k = [1]*k + [-k] + [0]*(d-k) scaled 1/sqrt(k(k+1))),
       times sqrt(2/3)*(d+1);
    2. nearest remainder-0 point (round-half-even of e/(d+1), times d+1), ranks of e - rem0
       (0 = largest) plus the sum of the rounded coordinates, wrapped into [0, d] with rem0 moved
       by -+(d+1);
    3. barycentric weights from the ascending sort of y = (e - rem0)/(d+1):
       b0 = 1 + y_min - y_max, b_k = y_(k) - y_(k-1);
    4. simplex vertex k of a point: key = rem0[:d] + canonical[k][rank[:d]], canonical[k] =
       [k]*(d+1-k) + [k-(d+1)]*k; lattice points live in ONE table shared by the whole batch
       (so a point made by one image carries blur between points of another, as in the reference);
    5. splat v * b_k onto vertex k; blur along each of the d+1 lattice directions in turn (offset
       +d on that axis and -1 on the others, both ways) with weights [1/2, 1, 1/2], every point
       updated from the previous direction's values; points absent from the table contribute 0;
    6. slice: sum_k b_k * value(vertex k) * alpha, alpha = 1/(1 + 2^-d). No normalisation.
  The lattice approximates y_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j up to a constant factor.

  Differences from the reference that do not change results on these inputs: the hash table here
  is keyed on the exact integer lattice coordinates (the reference hashes them into 2**30 slots
  with a float polynomial and would merge colliding points), and it runs on the CPU.

With FA_REF_PAM=<checkout of SamuelJoutard/Permutohedral_attention_module at c86b810> the script
also loads the reference's own lattice, patched at load time to run on the CPU (.cuda() removed,
cuda tensor types -> CPU, torch.sparse.LongTensor -> sparse_coo_tensor, table 2**30 -> 2**24)
and prints its difference from this transliteration on the fixture's features.

Usage: /work/venv/bin/python Tools/reference/permutohedral.py
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import common

REFERENCE = "SamuelJoutard/Permutohedral_attention_module PAM (c86b810), 2D CPU transliteration"


def elevation_matrix(d):
    e = np.zeros((d + 1, d))
    for k in range(1, d + 1):
        e[:k, k - 1] = 1.0
        e[k, k - 1] = -float(k)
        e[:, k - 1] *= math.sqrt(1.0 / (k * (k + 1)))
    return e * math.sqrt(2.0 / 3.0) * (d + 1)


def lattice(feat, desc):
    """feat B x d x N, desc B x c x N -> B x c x N (float32 throughout, like the reference)."""
    b_, d, n = feat.shape
    d1 = d + 1
    e = F.conv1d(feat, torch.tensor(elevation_matrix(d), dtype=torch.float32)[:, :, None])   # B, d+1, N
    v = torch.round(e / d1)
    rem0 = v * d1
    order = torch.argsort(e - rem0, dim=1, descending=True)
    rank = torch.argsort(order, dim=1) + v.sum(1, keepdim=True).long()
    fix = (rank < 0).long() - (rank > d).long()
    rank = rank + fix * d1
    rem0 = rem0 + (fix * d1).float()
    y = (e - rem0) / d1
    ys = torch.sort(y, dim=1)[0]
    bary = ys - torch.cat([ys[:, -1:] - 1.0, ys[:, :-1]], 1)                                 # B, d+1, N
    canonical = torch.tensor([[k] * (d1 - k) + [k - d1] * k for k in range(d1)])

    table = {}
    vertex_index = torch.zeros(d1, b_, n, dtype=torch.long)
    rem0_i = rem0.round().long()
    for k in range(d1):
        keys = canonical[k][rank[:, :d]] + rem0_i[:, :d]                                      # B, d, N
        for bi in range(b_):
            for i in range(n):
                key = tuple(keys[bi, :, i].tolist())
                if key not in table:
                    table[key] = len(table)
                vertex_index[k, bi, i] = table[key]
    points = list(table.keys())
    m = len(points)
    neighbours = []
    for direction in range(d1):
        offset = [d if i == direction else -1 for i in range(d)]
        plus = [table.get(tuple(p[i] + offset[i] for i in range(d)), -1) for p in points]
        minus = [table.get(tuple(p[i] - offset[i] for i in range(d)), -1) for p in points]
        neighbours.append((torch.tensor(plus), torch.tensor(minus)))

    c = desc.shape[1]
    grid = torch.zeros(b_, c, m + 1)              # slot m: "absent", always 0
    for k in range(d1):
        grid.index_put_((torch.arange(b_)[:, None, None], torch.arange(c)[None, :, None],
                         vertex_index[k][:, None, :].expand(b_, c, n)),
                        desc * bary[:, k:k + 1], accumulate=True)
    for direction in range(d1):
        plus, minus = neighbours[direction]
        plus = torch.where(plus < 0, torch.tensor(m), plus)
        minus = torch.where(minus < 0, torch.tensor(m), minus)
        grid = torch.cat([grid[:, :, :m] + 0.5 * (grid[:, :, plus] + grid[:, :, minus]), grid[:, :, m:]], 2)
    alpha = 1.0 / (1.0 + 2.0 ** (-d))
    out = 0.0
    for k in range(d1):
        out = out + torch.gather(grid, 2, vertex_index[k][:, None, :].expand(b_, c, n)) * bary[:, k:k + 1] * alpha
    return out


def exact_gaussian(feat, desc):
    """sum_j exp(-|f_i - f_j|^2 / 2) v_j, B x c x N (dense, for checks)."""
    d2 = torch.cdist(feat.transpose(1, 2).double(), feat.transpose(1, 2).double()) ** 2
    return torch.einsum("bij,bcj->bci", torch.exp(-0.5 * d2), desc.double()).float()


class PAM2d(nn.Module):
    def __init__(self, in_f, filt_f, out_f, n_split):
        super().__init__()
        self.in_f, self.filt_f, self.out_f, self.n_split = in_f, filt_f, out_f, n_split
        self.conv_feat = nn.Conv2d(in_f + 2, filt_f * n_split, 1)
        self.conv_desc = nn.Conv2d(in_f, out_f * n_split, 1)
        self.scaling_spatial = nn.Parameter(torch.randn(1, 2, 1, 1))

    def features(self, x):
        n, _, h, w = x.shape
        gi, gj = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
        spatial = torch.stack([gi, gj], 0).float()[None].repeat(n, 1, 1, 1) * self.scaling_spatial
        feat = F.leaky_relu(self.conv_feat(torch.cat([x, spatial], 1)))
        return feat.reshape(n, self.n_split * self.filt_f, -1)

    def forward(self, x):
        n, _, h, w = x.shape
        feat = self.features(x)
        desc = self.conv_desc(x).reshape(n, self.n_split * self.out_f, -1)
        out = torch.cat([lattice(feat[:, k * self.filt_f:(k + 1) * self.filt_f],
                                 desc[:, k * self.out_f:(k + 1) * self.out_f]) for k in range(self.n_split)], 1)
        return out.reshape(n, self.out_f * self.n_split, h, w)


def gaussian_map(m, x, row, col):
    """Per split: exp(-|f_q - f_j|^2/2) over j, normalised to sum 1, for batch item 0."""
    h, w = x.shape[2], x.shape[3]
    feat = m.features(x[:1])[0].double()                    # n_split*filt_f, N
    q = row * w + col
    maps = []
    for k in range(m.n_split):
        f = feat[k * m.filt_f:(k + 1) * m.filt_f]
        wts = torch.exp(-0.5 * ((f - f[:, q:q + 1]) ** 2).sum(0))
        maps.append((wts / wts.sum()).reshape(h, w))
    return torch.stack(maps).float()


def reference_lattice(path):
    """The reference's own PermutohedralLattice, patched at load time to run on the CPU."""
    import types

    def load(name, extra=None):
        src = open(os.path.join(path, "PAM", name)).read()
        for a, b in [(".cuda()", ""), ("torch.cuda.FloatTensor", "torch.FloatTensor"),
                     ("torch.cuda.LongTensor", "torch.LongTensor"), ("torch.cuda.DoubleTensor", "torch.DoubleTensor"),
                     ("torch.sparse.LongTensor(", "torch.sparse_coo_tensor("), ("2**30", "2**24"),
                     ("device=torch.device('cuda:0')", "")]:
            src = src.replace(a, b)
        mod = types.ModuleType(name[:-3])
        if extra:
            mod.__dict__.update(extra)
        exec(compile(src, name, "exec"), mod.__dict__)
        return mod
    ht = load("HashTable_GPU.py")
    sys.modules["HashTable_GPU"] = ht
    return load("PL_with_grad_torch_HT.py").PermutohedralLattice


CASES = [
    # name, config, input shape, map query, feature scale (conv_feat weight std)
    ("permutohedral", dict(in_f=8, filt_f=3, out_f=4, n_split=2), (2, 8, 6, 7), (2, 5)),
    ("permutohedral-d2", dict(in_f=5, filt_f=2, out_f=3, n_split=1), (1, 5, 9, 4), (8, 0)),
    ("permutohedral-d5", dict(in_f=6, filt_f=5, out_f=2, n_split=3), (1, 6, 5, 8), (0, 7)),
]


def main():
    g = torch.Generator().manual_seed(1907641)
    ref_path = os.environ.get("FA_REF_PAM")
    for name, cfg, shape, q in CASES:
        m = PAM2d(**cfg).eval()
        common.randomise_(m, g, std=0.4)
        with torch.no_grad():
            m.scaling_spatial.copy_(torch.rand(1, 2, 1, 1, generator=g) * 0.4 + 0.1)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = gaussian_map(m, x, *q)
            feat = m.features(x)
            desc = m.conv_desc(x).reshape(shape[0], -1, shape[2] * shape[3])
            ff, dd = feat[:, :m.filt_f], desc[:, :m.out_f]
            approx, exact = lattice(ff, dd), exact_gaussian(ff, dd)
            corr = np.corrcoef(approx.flatten().numpy(), exact.flatten().numpy())[0, 1]
            scale = float((approx * exact).sum() / (exact * exact).sum())
            print(f"{name}: lattice vs exact Gaussian: correlation {corr:.4f}, scale {scale:.3f}", file=sys.stderr)
            if ref_path:
                pl = reference_lattice(ref_path)
                ref = pl.apply(ff.contiguous(), dd.contiguous())
                print(f"{name}: reference lattice vs transliteration: max |diff| {float((ref - approx).abs().max()):.2e}",
                      file=sys.stderr)
        common.save_fixture(name, "permutohedral", cfg, REFERENCE, m, x, y, amap, q)


if __name__ == "__main__":
    main()
