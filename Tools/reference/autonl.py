"""Parity fixtures for `autonl`: the official TF `non_local_op` math, transliterated to PyTorch
here, run on the parameters of the PyTorch port's module.

No runnable reference does both: the official code (github.com/LiYingwei/AutoNL, model_def.py
`non_local_op` + `MnasBlock._call_non_local`, commit 6fec214) is TensorFlow 1.x, and the PyTorch
port its README links (github.com/meijieru/yet_another_mobilenet_series, models/mobilenet_base.py
`Nonlocal`, commit 6715961) divides by (H/1)·W instead of H·W (`f = f / H * W`). So this script
builds the port's `Nonlocal(n_feature, nl_c, nl_s)` — its depthwise conv and BatchNorm, under its
state_dict keys — and computes the TF math with them (`tf_non_local` below: our own
transliteration, written from model_def.py). As a check on the transliteration, the same code
with the port's normaliser must reproduce the port's own forward.

    git clone https://github.com/meijieru/yet_another_mobilenet_series && git -C yet_another_mobilenet_series checkout 6715961
    FA_REF_YET_ANOTHER_MOBILENET_SERIES=$PWD/yet_another_mobilenet_series python Tools/reference/autonl.py

The port's module imports `utils.config.FLAGS` (an argparse/yaml app config); it is stubbed
with an object without `nl_norm`, so the port uses its default ZeroInitBN (randomised here).

Writes Tests/FastAttentionTests/Fixtures/autonl*.safetensors.
"""
import importlib.util
import os
import sys
import types

import torch

import common

CHECKOUT = os.environ.get("FA_REF_YET_ANOTHER_MOBILENET_SERIES")
FILE = os.path.join(CHECKOUT or "", "models", "mobilenet_base.py")
if not CHECKOUT or not os.path.isfile(FILE):
    sys.exit("set FA_REF_YET_ANOTHER_MOBILENET_SERIES to a checkout of "
             "github.com/meijieru/yet_another_mobilenet_series (commit 6715961)")


def load_port():
    sys.path.insert(0, CHECKOUT)
    config = types.ModuleType("utils.config")
    config.FLAGS = types.SimpleNamespace()          # no `nl_norm`: ZeroInitBN, as by default
    import utils  # noqa: F401  (the checkout's package; utils.common is imported by the file)
    sys.modules["utils.config"] = config
    spec = importlib.util.spec_from_file_location("mobilenet_base", FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


port = load_port()
REFERENCE = ("TF AutoNL non_local_op math (LiYingwei/AutoNL 6fec214), transliterated to PyTorch, on the "
             "parameters of meijieru/yet_another_mobilenet_series Nonlocal (6715961)")

CASES = [
    # name, kwargs, input shape (N, C, H, W), map query (row, col)
    ("autonl", dict(n_feature=16, nl_c=0.25, nl_s=2), (2, 16, 7, 5), (5, 4)),       # odd H, W: a 4×3 key grid
    ("autonl-full", dict(n_feature=12, nl_c=1.0, nl_s=1), (1, 12, 6, 9), (2, 7)),
    ("autonl-stride3", dict(n_feature=10, nl_c=0.3, nl_s=3), (2, 10, 8, 7), (7, 0)),  # int(0.3·10) = 3
]


def tf_non_local(m, x, port_normaliser=False):
    """model_def.py `_call_non_local` (embed=False, softmax=False) in NCHW: θ = the first
    int(nl_c·C) channels, φ/g = the same on x[:, :, ::s, ::s]; f = (θᵀφ)g computed by whichever
    association TF picks (both are evaluated and compared); f / (H·W); y = x + BN(dwconv3×3(f)).
    With `port_normaliser`, f / H * W as the port writes it."""
    n, c, h, w = x.shape
    s = m.nl_s
    xr = x[:, :, ::s, ::s]
    ct = int(m.nl_c * c)
    theta, phi, g = x[:, :ct], xr[:, :ct], xr
    dense = torch.einsum("nabcd,nicd->niab", torch.einsum("niab,nicd->nabcd", theta, phi), g)
    assoc = torch.einsum("nij,nihw->njhw", torch.einsum("nihw,njhw->nij", phi, g), theta)
    assert torch.allclose(dense, assoc, rtol=1e-4, atol=1e-4)
    reduced_hw = (h // s) * (w // s)
    f = dense if (h * w) * reduced_hw * c * (1 + m.nl_c) < (h * w) * c ** 2 * m.nl_c + reduced_hw * c ** 2 * m.nl_c else assoc
    f = f / h * w if port_normaliser else f / (h * w)
    return x + m.bn(m.depthwise_conv(f)), f


def reference_map(m, x, f, row, col):
    """θ_i·φ_j/(H·W) for batch item 0 over the key grid, checked against f: Σ_j w[j]·g_j = f_i."""
    n, c, h, w = x.shape
    xr = x[0, :, ::m.nl_s, ::m.nl_s]
    ct = int(m.nl_c * c)
    wts = torch.einsum("i,ihw->hw", x[0, :ct, row, col], xr[:ct]) / (h * w)
    assert torch.allclose(torch.einsum("hw,chw->c", wts, xr), f[0, :, row, col], atol=1e-5)
    return wts.unsqueeze(0)


def main():
    g = torch.Generator().manual_seed(200401961)
    for name, kw, shape, q in CASES:
        m = port.Nonlocal(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            assert torch.allclose(tf_non_local(m, x, port_normaliser=True)[0], m(x), atol=1e-5), \
                "the transliteration does not reproduce the port with the port's normaliser"
            y, f = tf_non_local(m, x)
            assert not torch.allclose(y, m(x), atol=1e-3)
            amap = reference_map(m, x, f, *q)
        common.save_fixture(name, "autonl", kw, REFERENCE, m, x, y, amap, q)


if __name__ == "__main__":
    main()
