"""Parity fixtures for `cbam` against the authors' CBAM (Jongchan/attention-module MODELS/cbam.py).

Usage: FA_REF_ATTENTION_MODULE=/path/to/attention-module python Tools/reference/cbam.py
       (writes Tests/FastAttentionTests/Fixtures/cbam*.safetensors)

The reference is not a pip package: check out https://github.com/Jongchan/attention-module
(commit 459efad) and point FA_REF_ATTENTION_MODULE at the checkout; `CBAM` is imported from its
MODELS/cbam.py, never copied. Every parameter and BN statistic random. The map is the
reference's spatial gate σ(SpatialGate.spatial(compress(ChannelGate(x)))) of batch item 0;
`channel_gate` (N×C×1×1) is σ of the summed MLP outputs, recomputed from the reference's layers.
"""
import os
import sys

import torch
import torch.nn.functional as F

import common

CHECKOUT = os.environ.get("FA_REF_ATTENTION_MODULE")
if not CHECKOUT or not os.path.isfile(os.path.join(CHECKOUT, "MODELS", "cbam.py")):
    sys.exit("set FA_REF_ATTENTION_MODULE to a checkout of https://github.com/Jongchan/attention-module "
             "(commit 459efad), the folder that holds MODELS/cbam.py")
sys.path.insert(0, os.path.join(CHECKOUT, "MODELS"))
from cbam import CBAM, logsumexp_2d  # noqa: E402

REFERENCE = "Jongchan/attention-module MODELS/cbam.py CBAM (commit 459efad)"

CASES = [
    # name, kwargs, input shape (N, C, H, W)
    ("cbam", dict(gate_channels=32, reduction_ratio=4, pool_types=["avg", "max"], no_spatial=False), (2, 32, 6, 7)),
    ("cbam-lp-lse", dict(gate_channels=24, reduction_ratio=3, pool_types=["avg", "max", "lp", "lse"], no_spatial=False),
     (2, 24, 9, 5)),
    ("cbam-no-spatial", dict(gate_channels=16, reduction_ratio=4, pool_types=["lse"], no_spatial=True), (1, 16, 4, 7)),
]


def channel_gate(gate, x):
    """σ(Σ_pool mlp(pool(x))), N×C×1×1, from the reference's own MLP."""
    h, w = x.shape[2], x.shape[3]
    pools = {"avg": lambda: F.avg_pool2d(x, (h, w), stride=(h, w)),
             "max": lambda: F.max_pool2d(x, (h, w), stride=(h, w)),
             "lp": lambda: F.lp_pool2d(x, 2, (h, w), stride=(h, w)),
             "lse": lambda: logsumexp_2d(x)}
    total = sum(gate.mlp(pools[p]()) for p in gate.pool_types)
    return torch.sigmoid(total).view(x.shape[0], x.shape[1], 1, 1)


def hidden_alive(gate, x):
    """Per pool type, how many MLP hidden units are active (ReLU > 0) on some batch item: a pool
    whose units are all dead contributes only the last layer's bias, and the fixture would not
    test it (with reduction_ratio=16 on 16 channels the one hidden unit was dead on lse)."""
    h, w = x.shape[2], x.shape[3]
    pools = {"avg": lambda: F.avg_pool2d(x, (h, w), stride=(h, w)), "max": lambda: F.max_pool2d(x, (h, w), stride=(h, w)),
             "lp": lambda: F.lp_pool2d(x, 2, (h, w), stride=(h, w)), "lse": lambda: logsumexp_2d(x)}
    return {p: int((gate.mlp[1](gate.mlp[0](pools[p]())) > 0).any(0).sum()) for p in gate.pool_types}


def main():
    g = torch.Generator().manual_seed(18071)
    for name, kw, shape in CASES:
        m = CBAM(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            a = channel_gate(m.ChannelGate, x)
            assert torch.allclose(x * a, m.ChannelGate(x))
            alive = hidden_alive(m.ChannelGate, x)
            assert all(alive.values()), f"{name}: a pool type has no active hidden unit: {alive}"
            amap = None
            if not kw["no_spatial"]:
                x1 = m.ChannelGate(x[:1])
                amap = torch.sigmoid(m.SpatialGate.spatial(m.SpatialGate.compress(x1)))[0]   # 1, H, W
                assert torch.allclose(x1 * amap, m.SpatialGate(x1))
        common.save_fixture(name, "cbam", kw, REFERENCE, m, x, y, amap, (0, 0) if amap is not None else None,
                            extra={"channel_gate": a})


if __name__ == "__main__":
    main()
