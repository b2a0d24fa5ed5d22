"""Parity fixtures for `non-local` against mmcv's NonLocal2d (mmcv-lite 2.1.0).

Usage: python Tools/reference/non_local.py   (writes Tests/FastAttentionTests/Fixtures/non-local*.safetensors)
"""
import torch
from mmcv.cnn import NonLocal2d

import common

REFERENCE = "mmcv.cnn.NonLocal2d (mmcv-lite 2.1.0)"

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    ("non-local", dict(in_channels=32, reduction=2, use_scale=True, mode="embedded_gaussian"), (2, 32, 6, 7), (2, 5)),
    ("non-local-bn-subsample", dict(in_channels=16, reduction=4, mode="embedded_gaussian", sub_sample=True,
                                    norm_cfg="BN"), (2, 16, 8, 5), (7, 1)),
    ("non-local-dot-product", dict(in_channels=12, reduction=2, mode="dot_product"), (1, 12, 5, 9), (0, 8)),
    ("non-local-gaussian", dict(in_channels=8, reduction=2, mode="gaussian"), (2, 8, 7, 4), (3, 3)),
    ("non-local-concatenation", dict(in_channels=8, reduction=1, mode="concatenation"), (1, 8, 4, 6), (1, 2)),
]


def reference_map(m: NonLocal2d, x: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """Row i of the reference's own pairwise matrix for batch item 0, on the key grid."""
    n = x.size(0)
    if m.mode == "gaussian":
        theta = x.view(n, m.in_channels, -1).permute(0, 2, 1)
        phi = m.phi(x).view(n, m.in_channels, -1) if m.sub_sample else x.view(n, m.in_channels, -1)
    elif m.mode == "concatenation":
        theta = m.theta(x).view(n, m.inter_channels, -1, 1)
        phi = m.phi(x).view(n, m.inter_channels, 1, -1)
    else:
        theta = m.theta(x).view(n, m.inter_channels, -1).permute(0, 2, 1)
        phi = m.phi(x).view(n, m.inter_channels, -1)
    w = getattr(m, m.mode)(theta, phi)[0]
    h, wd = x.shape[2], x.shape[3]
    kh, kw = (h // 2, wd // 2) if m.sub_sample else (h, wd)
    return w[row * wd + col].reshape(1, kh, kw)


def main():
    g = torch.Generator().manual_seed(20181)
    for name, kw, shape, q in CASES:
        ctor = dict(kw)
        if ctor.get("norm_cfg") == "BN":
            ctor["norm_cfg"] = dict(type="BN")
        m = NonLocal2d(**ctor).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = reference_map(m, x, *q)
        common.save_fixture(name, "non-local", kw, REFERENCE, m, x, y, amap, q)


if __name__ == "__main__":
    main()
