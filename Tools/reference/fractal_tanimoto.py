"""Parity fixtures for `fractal-tanimoto` (FracTAL, arXiv 2009.02062).

The reference is feevos/ceecnet (commit 9dc76f8) nn/layers/attention.py `FTAttention2D` and
nn/layers/ftnmt.py `FTanimoto`, written for MXNet Gluon. MXNet does not run here, so this file
holds a PyTorch transliteration with the same block structure, written from reading that code
(nothing copied): Gluon's child names (`att`, `query`, `key`, `value`, `conv2d`, `norm_layer`,
`norm`) with PyTorch's parameter names inside each layer, as shared/references/conventions.md
specifies — `att.query.conv2d.weight`, `att.query.norm_layer.{weight,bias,running_mean,running_var}`,
..., `att.norm.*` (Gluon's gamma/beta are weight/bias). The reviewer of shared/references/2d.md
checked the same math against real MXNet 1.9.1 to 4.5e-7.

Quirks kept from ceecnet:
  - the input channel count is inferred by Gluon (in_channels=0); here it is a constructor
    argument, and the Swift side takes it from the input;
  - q, k, v are sigmoid(BN(conv(x))) with a bias-free conv, grouped by `nheads`;
  - FTanimoto sums d = 0..depth-1 of 1/(2^d (pp+ll) - (2^{d+1}-1) pl + eps), times (pl + eps),
    scaled 1/depth; depth 0 means one term with scale 1; eps = 1e-5 in both places;
  - the similarity is averaged with that of the complements 1-p, 1-l;
  - spatial similarity sums over channels (axis 1), channel similarity over (H, W) -- the
    spatial one ignores `nheads`;
  - output = BN(0.5 * (att_chan * v + att_spat * v)), MXNet BN eps 1e-5, running stats in eval.

Usage: /work/venv/bin/python Tools/reference/fractal_tanimoto.py
"""
import torch
from torch import nn

import common

REFERENCE = "ceecnet FTAttention2D (MXNet Gluon, commit 9dc76f8), PyTorch transliteration"


class FTanimoto(nn.Module):
    """Fractal Tanimoto similarity with complement, over `axis` with keepdims."""

    def __init__(self, depth=5, smooth=1.0e-5, axis=(2, 3)):
        super().__init__()
        assert depth >= 0
        self.depth, self.scale = (1, 1.0) if depth == 0 else (depth, 1.0 / depth)
        self.smooth = smooth
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]

    def inner_prod(self, p, l):
        return (p * l).sum(dim=self.axis, keepdim=True)

    def tnmt_base(self, p, l):
        tpl, tpp, tll = self.inner_prod(p, l), self.inner_prod(p, p), self.inner_prod(l, l)
        num = tpl + self.smooth
        den = 0.0
        for d in range(self.depth):
            a = 2.0 ** d
            b = -(2.0 * a - 1.0)
            den = den + 1.0 / (a * (tpp + tll) + b * tpl + self.smooth)
        return num * den * self.scale

    def forward(self, p, l):
        return 0.5 * (self.tnmt_base(p, l) + self.tnmt_base(1.0 - p, 1.0 - l))


class Conv2DNormed(nn.Module):
    """ceecnet's Conv2DNormed with norm='BatchNorm': bias-free conv, then BatchNorm."""

    def __init__(self, in_channels, channels, kernel_size, padding, groups):
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, channels, kernel_size, padding=padding, groups=groups, bias=False)
        self.norm_layer = nn.BatchNorm2d(channels, eps=1e-5)

    def forward(self, x):
        return self.norm_layer(self.conv2d(x))


class RelFTAttention2D(nn.Module):
    def __init__(self, in_channels, nkeys, kernel_size=3, padding=1, nheads=1, ftdepth=5):
        super().__init__()
        self.query = Conv2DNormed(in_channels, nkeys, kernel_size, padding, nheads)
        self.key = Conv2DNormed(in_channels, nkeys, kernel_size, padding, nheads)
        self.value = Conv2DNormed(in_channels, nkeys, kernel_size, padding, nheads)
        self.metric_channel = FTanimoto(depth=ftdepth, axis=[2, 3])
        self.metric_space = FTanimoto(depth=ftdepth, axis=1)
        self.norm = nn.BatchNorm2d(nkeys, eps=1e-5)

    def similarities(self, x1, x2):
        q = torch.sigmoid(self.query(x1))
        k = torch.sigmoid(self.key(x2))
        return self.metric_space(q, k), self.metric_channel(q, k)   # N,1,H,W ; N,C,1,1

    def forward(self, x1, x2, x3):
        att_spat, att_chan = self.similarities(x1, x2)
        v = torch.sigmoid(self.value(x3))
        return self.norm(0.5 * (att_chan * v + att_spat * v))


class FTAttention2D(nn.Module):
    def __init__(self, in_channels, nkeys, kernel_size=3, padding=1, nheads=1, norm="BatchNorm",
                 norm_groups=None, ftdepth=5):
        super().__init__()
        assert norm == "BatchNorm" and norm_groups is None
        self.att = RelFTAttention2D(in_channels, nkeys, kernel_size, padding, nheads, ftdepth)

    def forward(self, x):
        return self.att(x, x, x)


CASES = [
    # name, config (the Swift --set keys), in_channels, input shape, map query
    ("fractal-tanimoto", dict(nkeys=16, kernel_size=3, padding=1, nheads=1, ftdepth=5), 16, (2, 16, 6, 7), (2, 5)),
    # grouped convs, input channels != nkeys, a 5x5 kernel with "valid"-ish padding (output smaller)
    ("fractal-tanimoto-heads", dict(nkeys=8, kernel_size=5, padding=1, nheads=2, ftdepth=3), 12, (2, 12, 7, 9), (0, 0)),
    # depth 0 (one term, scale 1) and a 1x1 kernel
    ("fractal-tanimoto-depth0", dict(nkeys=6, kernel_size=1, padding=0, nheads=1, ftdepth=0), 4, (1, 4, 5, 3), (4, 2)),
]


def main():
    g = torch.Generator().manual_seed(200902062)
    for name, cfg, cin, shape, q in CASES:
        m = FTAttention2D(cin, **cfg).eval()
        common.randomise_(m, g, std=0.5)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            att_spat, att_chan = m.att.similarities(x, x)
        # map: the spatial similarity of batch item 0 (1×H'×W'); the channel similarity beside it.
        common.save_fixture(name, "fractal-tanimoto", cfg, REFERENCE, m, x, y, att_spat[0], q,
                            extra={"map_channel": att_chan[0].reshape(-1)})


if __name__ == "__main__":
    main()
