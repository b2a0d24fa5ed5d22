"""Parity fixtures for `global-context` against mmcv's ContextBlock (mmcv-lite 2.1.0).

Usage: python Tools/reference/global_context.py   (writes Tests/FastAttentionTests/Fixtures/global-context*.safetensors)

Every parameter random (mmcv zero-initialises the last conv of each transform, which would make
the add and mul terms vacuous). The map is the reference's own softmax over H·W of conv_mask(x)
for batch item 0 (uniform 1/(H·W) with avg pooling).
"""
import torch
from mmcv.cnn import ContextBlock

import common

REFERENCE = "mmcv.cnn.ContextBlock (mmcv-lite 2.1.0)"

CASES = [
    # name, kwargs, input shape (N, C, H, W)
    ("global-context", dict(in_channels=32, ratio=1 / 4, pooling_type="att", fusion_types=("channel_add",)), (2, 32, 6, 7)),
    ("global-context-mul", dict(in_channels=24, ratio=1 / 8, pooling_type="att", fusion_types=("channel_mul",)), (2, 24, 7, 5)),
    ("global-context-add-mul", dict(in_channels=16, ratio=0.3, pooling_type="att",
                                    fusion_types=("channel_add", "channel_mul")), (2, 16, 5, 9)),
    ("global-context-avg", dict(in_channels=20, ratio=1 / 4, pooling_type="avg",
                                fusion_types=("channel_mul", "channel_add")), (1, 20, 4, 6)),
]


def reference_map(m: ContextBlock, x: torch.Tensor) -> torch.Tensor:
    """The context weights alpha of batch item 0, 1×H×W."""
    h, w = x.shape[2], x.shape[3]
    if m.pooling_type == "avg":
        return torch.full((1, h, w), 1.0 / (h * w))
    logits = m.conv_mask(x[:1]).view(1, 1, h * w)
    return m.softmax(logits).view(1, h, w)


def main():
    g = torch.Generator().manual_seed(19041)
    for name, kw, shape in CASES:
        m = ContextBlock(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = reference_map(m, x)
        config = dict(kw)
        config["ratio"] = repr(kw["ratio"])
        common.save_fixture(name, "global-context", config, REFERENCE, m, x, y, amap, (0, 0))


if __name__ == "__main__":
    main()
