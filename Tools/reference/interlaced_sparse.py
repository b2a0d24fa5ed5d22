"""Parity fixtures for `interlaced-sparse` against the authors' ISA_Block (openseg.pytorch).

Usage: FA_REF_OPENSEG=/path/to/openseg.pytorch python Tools/reference/interlaced_sparse.py
       (writes Tests/FastAttentionTests/Fixtures/interlaced-sparse*.safetensors)

The reference is not a pip package: check out github.com/openseg-group/openseg.pytorch
(commit aefc755 was used) and name the checkout in FA_REF_OPENSEG. Its
lib/models/modules/isa_block.py is loaded as a file; `ModuleHelper.BNReLU` is stubbed as
BatchNorm2d + ReLU, which is what the reference builds for bn_type='torchbn'
(references/conventions.md), so the rest of the repository (logger, CUDA extensions) is not needed.

The reference's two softmax maps are captured as its forward computes them (its module-level `F`
is wrapped), and `map` is composed from them for one query pixel of batch item 0:
  [long-range row of the query over its strided lattice, short-range row over its block,
   composed long-then-short map] on the unpadded H×W grid (padding pixels' weights cropped).
"""
import importlib.util
import os
import sys
import types

import torch
from torch import nn
from torch.nn import functional as F

import common

REFERENCE = "openseg.pytorch ISA_Block (aefc755), bn_type='torchbn'"

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    # H=5, W=7 with blocks 4×3: pads 3 (1 top, 2 bottom) and 2 (1 left, 1 right).
    ("interlaced-sparse", dict(in_channels=8, key_channels=6, value_channels=5, out_channels=7,
                               down_factor=[4, 3], bn_type="torchbn"), (2, 8, 5, 7), (3, 5)),
    # No padding (H, W multiples of the block).
    ("interlaced-sparse-nopad", dict(in_channels=6, key_channels=4, value_channels=6, out_channels=6,
                                     down_factor=[2, 3], bn_type="torchbn"), (1, 6, 4, 9), (1, 7)),
]


def load_reference():
    root = os.environ.get("FA_REF_OPENSEG")
    if not root:
        sys.exit("set FA_REF_OPENSEG to a checkout of github.com/openseg-group/openseg.pytorch (commit aefc755)")
    helper = types.ModuleType("lib.models.tools.module_helper")

    class ModuleHelper:
        @staticmethod
        def BNReLU(num_features, bn_type=None, **kwargs):
            assert bn_type == "torchbn", bn_type
            return nn.Sequential(nn.BatchNorm2d(num_features, **kwargs), nn.ReLU())

    helper.ModuleHelper = ModuleHelper
    for name in ("lib", "lib.models", "lib.models.tools"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["lib.models.tools.module_helper"] = helper
    path = os.path.join(root, "lib", "models", "modules", "isa_block.py")
    spec = importlib.util.spec_from_file_location("openseg_isa_block", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class SoftmaxRecorder:
    """Stands in for the reference module's `F`: records every softmax it takes."""
    def __init__(self):
        self.maps = []

    def __getattr__(self, name):
        return getattr(F, name)

    def softmax(self, x, dim=None):
        y = F.softmax(x, dim=dim)
        self.maps.append(y)
        return y


def composed_maps(long_sim, short_sim, shape, factor, row, col):
    """The three maps for query (row, col) of batch item 0 from the reference's own weights.
    long_sim: (n·dh·dw, gh·gw, gh·gw); short_sim: (n·gh·gw, dh·dw, dh·dw)."""
    h, w = shape
    dh, dw = factor
    gh, gw = -(-h // dh), -(-w // dw)
    ph, pw = (gh * dh - h) // 2, (gw * dw - w) // 2
    i, j = row + ph, col + pw                                   # in the padded grid
    gi, li, gj, lj = i // dh, i % dh, j // dw, j % dw
    full = torch.zeros(3, gh * dh, gw * dw)
    for pi in range(gh * dh):
        for pj in range(gw * dw):
            gi2, li2, gj2, lj2 = pi // dh, pi % dh, pj // dw, pj % dw
            if (li2, lj2) == (li, lj):                          # the query's lattice
                full[0, pi, pj] = long_sim[li * dw + lj, gi * gw + gj, gi2 * gw + gj2]
            if (gi2, gj2) == (gi, gj):                          # the query's block
                full[1, pi, pj] = short_sim[gi * gw + gj, li * dw + lj, li2 * dw + lj2]
            # through the one pixel of the query's block that shares (pi, pj)'s offset
            a2 = short_sim[gi * gw + gj, li * dw + lj, li2 * dw + lj2]
            a1 = long_sim[li2 * dw + lj2, gi * gw + gj, gi2 * gw + gj2]
            full[2, pi, pj] = a2 * a1
    return full[:, ph:ph + h, pw:pw + w]


def main():
    ref = load_reference()
    g = torch.Generator().manual_seed(19071)
    for name, kw, shape, q in CASES:
        m = ref.ISA_Block(**kw).eval()
        common.randomise_(m, g, std=0.8)
        with torch.no_grad():
            # Every BN random but mostly positive after its ReLU, so that neither the outputs nor
            # the softmax logits are mostly zero (a vacuous parity check otherwise).
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.bias.add_(0.8)
                    mod.running_mean.mul_(0.3)
        x = torch.randn(shape, generator=g)
        rec = SoftmaxRecorder()
        ref.F = rec
        with torch.no_grad():
            y = m(x)
        ref.F = F
        assert len(rec.maps) == 2
        amap = composed_maps(rec.maps[0], rec.maps[1], shape[2:], kw["down_factor"], *q)
        config = {k: v for k, v in kw.items()}
        common.save_fixture(name, "interlaced-sparse", config, REFERENCE, m, x, y, amap, q)


if __name__ == "__main__":
    main()
