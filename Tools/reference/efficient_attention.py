"""Parity fixtures for `efficient-attention` against the authors' EfficientAttention.

Reference: github.com/cmsflash/efficient-attention, efficient_attention.py, commit 46a5f9e
(not on pip). Check it out and point FA_REF_EFFICIENT_ATTENTION at the checkout:

    git clone https://github.com/cmsflash/efficient-attention && git -C efficient-attention checkout 46a5f9e
    FA_REF_EFFICIENT_ATTENTION=$PWD/efficient-attention python Tools/reference/efficient_attention.py

Writes Tests/FastAttentionTests/Fixtures/efficient-attention*.safetensors.
"""
import os
import sys

import torch
import torch.nn.functional as F

import common

CHECKOUT = os.environ.get("FA_REF_EFFICIENT_ATTENTION")
if not CHECKOUT or not os.path.isfile(os.path.join(CHECKOUT, "efficient_attention.py")):
    sys.exit("set FA_REF_EFFICIENT_ATTENTION to a checkout of github.com/cmsflash/efficient-attention (commit 46a5f9e)")
sys.path.insert(0, CHECKOUT)
from efficient_attention import EfficientAttention  # noqa: E402

REFERENCE = "cmsflash/efficient-attention EfficientAttention (commit 46a5f9e)"

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    # 10 key channels over 3 heads: 3 per head, key channel 9 projected but unused (the quirk).
    ("efficient-attention", dict(in_channels=12, key_channels=10, head_count=3, value_channels=9), (2, 12, 5, 7), (3, 1)),
    ("efficient-attention-1head", dict(in_channels=16, key_channels=8, head_count=1, value_channels=16), (1, 16, 6, 4), (0, 3)),
]


def reference_map(m, x, row, col):
    """The implicit row for batch item 0: mean over heads of Q̂[:, i]ᵀ K̂, from the reference's
    own projections. Also checks it against the reference's attended values (captured at the
    reprojection's input): per head, Σ_j w[j]·v[:, j] must equal what the module computed."""
    captured = {}
    hook = m.reprojection.register_forward_pre_hook(lambda mod, inp: captured.setdefault("agg", inp[0]))
    m(x)
    hook.remove()
    n, _, h, w = x.shape
    i = row * w + col
    keys = m.keys(x).reshape(n, m.key_channels, h * w)
    queries = m.queries(x).reshape(n, m.key_channels, h * w)
    values = m.values(x).reshape(n, m.value_channels, h * w)
    dk, dv = m.key_channels // m.head_count, m.value_channels // m.head_count
    agg = captured["agg"].reshape(n, m.value_channels, h * w)
    rows = []
    for hd in range(m.head_count):
        k = F.softmax(keys[:, hd * dk:(hd + 1) * dk], dim=2)[0]
        q = F.softmax(queries[:, hd * dk:(hd + 1) * dk], dim=1)[0]
        wts = q[:, i] @ k
        v = values[0, hd * dv:(hd + 1) * dv]
        assert torch.allclose(v @ wts, agg[0, hd * dv:(hd + 1) * dv, i], atol=1e-5), "map disagrees with the output"
        assert abs(wts.sum().item() - 1) < 1e-5
        rows.append(wts)
    return torch.stack(rows).mean(0).reshape(1, h, w)


def main():
    g = torch.Generator().manual_seed(181201243)
    for name, kw, shape, q in CASES:
        m = EfficientAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = reference_map(m, x, *q)
        common.save_fixture(name, "efficient-attention", kw, REFERENCE, m, x, y, amap, q)


if __name__ == "__main__":
    main()
