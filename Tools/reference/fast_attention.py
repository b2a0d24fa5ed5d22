"""Parity fixtures for `fast-attention` against FANet's FastAttModule, with the paper's 1/n.

Reference: github.com/feinanshan/FANet, Testing/models/fanet/fanet.py, commit d4e5e3c (not on
pip). Check it out and point FA_REF_FANET at the checkout:

    git clone https://github.com/feinanshan/FANet && git -C FANet checkout d4e5e3c
    FA_REF_FANET=$PWD/FANet python Tools/reference/fast_attention.py

fanet.py imports its ResNet backbone (`from .resnet import ...`), which FastAttModule does not
use; the file is loaded as a module of a stand-in package whose `resnet` is an empty stub.
FastAttModule is built as FANet builds it, with fanet.py's own `BatchNorm2d` subclass as
norm_layer (its forward applies only the activation — the BN state is carried but unused).

The paper (arXiv 2007.03815, eq. 3) scales the product by 1/n; the code omits it. The fixture
restores it by a forward pre-hook on `latlayer3` dividing its input y by n = H·W, so everything
else is the reference's own code. Output: `smooth_feat` of forward(x, None, False, True).

Writes Tests/FastAttentionTests/Fixtures/fast-attention*.safetensors.
"""
import importlib.util
import os
import sys
import types

import torch
import torch.nn.functional as F

import common

CHECKOUT = os.environ.get("FA_REF_FANET")
FILE = os.path.join(CHECKOUT or "", "Testing", "models", "fanet", "fanet.py")
if not CHECKOUT or not os.path.isfile(FILE):
    sys.exit("set FA_REF_FANET to a checkout of github.com/feinanshan/FANet (commit d4e5e3c)")


def load_fanet():
    pkg = types.ModuleType("fanet_ref")
    pkg.__path__ = []
    resnet = types.ModuleType("fanet_ref.resnet")
    for name in ["Resnet18", "Resnet34", "Resnet50", "Resnet101", "Resnet152"]:
        setattr(resnet, name, None)
    sys.modules["fanet_ref"] = pkg
    sys.modules["fanet_ref.resnet"] = resnet
    spec = importlib.util.spec_from_file_location("fanet_ref.fanet", FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fanet = load_fanet()
REFERENCE = "feinanshan/FANet Testing/models/fanet/fanet.py FastAttModule (commit d4e5e3c), norm_layer=fanet.BatchNorm2d, 1/n restored"

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    ("fast-attention", dict(in_chan=12, out_chan=5), (2, 12, 5, 7), (3, 6)),
    ("fast-attention-wide", dict(in_chan=8, out_chan=16), (1, 8, 4, 9), (0, 2)),
]


def run(m, x):
    """smooth_feat with y/n: the pre-hook divides latlayer3's input (the attention product y)."""
    n = x.shape[2] * x.shape[3]
    captured = {}

    def restore(mod, inp):
        captured["y"] = inp[0] / n
        return (captured["y"],)

    hook = m.latlayer3.register_forward_pre_hook(restore)
    out = m(x, None, up_flag=False, smf_flag=True)
    hook.remove()
    return out, captured["y"]


def reference_map(m, x, y, row, col):
    """cos(q̂_i, k̂_j)/n for batch item 0 from the reference's own projections, checked against
    the attention product y the module computed: Σ_j w[j]·v_j must equal y at the query."""
    n_, c, h, w = x.shape
    i = row * w + col
    q = F.normalize(m.w_qs(x).view(n_, 32, -1), p=2, dim=1, eps=1e-12)[0]
    k = F.normalize(m.w_ks(x).view(n_, 32, -1), p=2, dim=1, eps=1e-12)[0]
    v = m.w_vs(x).view(n_, c, -1)[0]
    wts = (q[:, i] @ k) / (h * w)
    assert torch.allclose(v @ wts, y[0].reshape(c, -1)[:, i], atol=1e-5), "map disagrees with the output"
    return wts.reshape(1, h, w)


def main():
    g = torch.Generator().manual_seed(200703815)
    for name, kw, shape, q in CASES:
        m = fanet.FastAttModule(kw["in_chan"], out_chan=kw["out_chan"], norm_layer=fanet.BatchNorm2d).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y, att = run(m, x)
            amap = reference_map(m, x, att, *q)
            # Without the hook the reference's output differs (no 1/n): the restored factor matters.
            assert not torch.allclose(m(x, None, up_flag=False, smf_flag=True), y, atol=1e-3)
        common.save_fixture(name, "fast-attention", kw, REFERENCE, m, x, y, amap, q)


if __name__ == "__main__":
    main()
