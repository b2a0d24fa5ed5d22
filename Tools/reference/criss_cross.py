"""Parity fixtures for `criss-cross` against mmcv's CrissCrossAttention (mmcv-lite 2.1.0).

Usage: python Tools/reference/criss_cross.py   (writes Tests/FastAttentionTests/Fixtures/criss-cross*.safetensors)

mmcv-lite has no compiled ops, so `import mmcv.ops` fails; mmcv/ops/cc_attention.py is pure PyTorch
and is loaded directly as a file. `recurrence` R applies the same module R times, as mmseg's
CCHead does (y = cca(cca(x)) for R = 2). Every parameter random, gamma.scale (0-dim) included.

The maps are the reference's own attention: the module's `F.softmax` is wrapped to record the
B×H×W×(H+W) weights it computes. For query p of batch item 0 the 1-hop map scatters the last
application's weights on p's column (entries 0..H-1) and row (entries H..H+W-1); the 2-hop map
(R >= 2) is row p of the dense product M_R · M_(R-1) of the last two applications' cross
matrices, built densely here (tiny sizes) as an independent check of the O((H+W)^2) composition.
"""
import importlib.util
import os

import mmcv
import torch
import torch.nn.functional as F

import common

PATH = os.path.join(os.path.dirname(mmcv.__file__), "ops", "cc_attention.py")
spec = importlib.util.spec_from_file_location("mmcv_cc_attention", PATH)
cc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cc)

REFERENCE = f"mmcv.ops.CrissCrossAttention (mmcv-lite {mmcv.__version__}, cc_attention.py loaded as a file)"


class RecordingF:
    """torch.nn.functional with `softmax` recording its outputs."""

    def __init__(self):
        self.records = []

    def __getattr__(self, name):
        return getattr(F, name)

    def softmax(self, *args, **kwargs):
        out = F.softmax(*args, **kwargs)
        self.records.append(out.detach().clone())
        return out


CASES = [
    # name, in_channels, recurrence, input shape (N, C, H, W), map query (row, col)
    ("criss-cross", 32, 1, (2, 32, 6, 7), (2, 5)),
    ("criss-cross-recurrence2", 20, 2, (2, 20, 7, 5), (4, 1)),
]


def cross_matrix(attn: torch.Tensor) -> torch.Tensor:
    """Dense L×L matrix of one image's criss-cross weights attn (H×W×(H+W))."""
    h, w = attn.shape[0], attn.shape[1]
    m = torch.zeros(h * w, h * w, dtype=torch.float64)
    for r in range(h):
        for c in range(w):
            p = r * w + c
            for i in range(h):
                m[p, i * w + c] += attn[r, c, i]
            for j in range(w):
                m[p, r * w + j] += attn[r, c, h + j]
    return m


def main():
    g = torch.Generator().manual_seed(18111)
    for name, channels, recurrence, shape, (qr, qc) in CASES:
        m = cc.CrissCrossAttention(channels).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        rec = RecordingF()
        cc.F = rec
        with torch.no_grad():
            y = x
            for _ in range(recurrence):
                y = m(y)
        cc.F = F
        assert len(rec.records) == recurrence
        h, w = shape[2], shape[3]
        p = qr * w + qc
        last = cross_matrix(rec.records[-1][0])
        maps = [last[p]]
        if recurrence >= 2:
            maps.append(last[p] @ cross_matrix(rec.records[-2][0]))
        amap = torch.stack(maps).reshape(len(maps), h, w).float()
        common.save_fixture(name, "criss-cross", dict(in_channels=channels, recurrence=recurrence), REFERENCE,
                            m, x, y, amap, (qr, qc))


if __name__ == "__main__":
    main()
