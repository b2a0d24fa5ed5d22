"""Parity fixtures for `em-attention` against EMANet's EMAU (eval mode).

Reference: github.com/XiaLiPKU/EMANet, network.py `EMAU(c, k, stage_num)`, commit f09ffac (not
on pip). Check it out and point FA_REF_EMANET at the checkout:

    git clone https://github.com/XiaLiPKU/EMANet && git -C EMANet checkout f09ffac
    FA_REF_EMANET=$PWD/EMANet python Tools/reference/em_attention.py

network.py builds its norm layer as `partial(SynchronizedBatchNorm2d, momentum=settings.BN_MOM)`
(from the vendored bn_lib, which is stubbed: it does not import on Python ≥ 3.7);
the module-level `norm_layer` is replaced by `partial(nn.BatchNorm2d, momentum=settings.BN_MOM)`
before EMAU is built (identical in eval mode, and what conventions.md prescribes). The bases
buffer `mu` is randomised without re-normalising, as a checkpoint's momentum-averaged bases are
(train.py mixes them without normalising).

Besides the output x of EMAU's (x, mu), each fixture stores `mu_out` (the returned bases) and the
map: the responsibilities z of the last EM iteration, recorded from EMAU's own softmax call.

Writes Tests/FastAttentionTests/Fixtures/em-attention*.safetensors.
"""
import os
import sys
import types
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

import common

CHECKOUT = os.environ.get("FA_REF_EMANET")
if not CHECKOUT or not os.path.isfile(os.path.join(CHECKOUT, "network.py")):
    sys.exit("set FA_REF_EMANET to a checkout of github.com/XiaLiPKU/EMANet (commit f09ffac)")
sys.path.insert(0, CHECKOUT)
# bn_lib (a vendored Synchronized-BatchNorm) does not import on Python ≥ 3.7 (`async=True` in
# bn_lib/nn/parallel); network.py only takes SynchronizedBatchNorm2d from it, which is replaced
# below anyway, so bn_lib is stood in for by nn.BatchNorm2d.
for name in ["bn_lib", "bn_lib.nn", "bn_lib.nn.modules"]:
    sys.modules[name] = types.ModuleType(name)
sys.modules["bn_lib.nn.modules"].SynchronizedBatchNorm2d = nn.BatchNorm2d
import network  # noqa: E402
import settings  # noqa: E402

network.norm_layer = partial(nn.BatchNorm2d, momentum=settings.BN_MOM)
REFERENCE = "XiaLiPKU/EMANet network.py EMAU (commit f09ffac), SyncBN -> nn.BatchNorm2d, eval"

CASES = [
    # name, kwargs, input shape (N, C, H, W)
    ("em-attention", dict(c=12, k=5, stage_num=3), (2, 12, 5, 7)),
    ("em-attention-1stage", dict(c=8, k=3, stage_num=1), (1, 8, 6, 4)),
]


def run(m, x):
    """EMAU's forward, recording the output of its (only) softmax call — the responsibilities z
    of each EM stage; the last one is what x̂ = μ zᵀ uses."""
    recorded = []
    softmax = F.softmax

    def recording(*args, **kwargs):
        out = softmax(*args, **kwargs)
        recorded.append(out)
        return out

    captured = {}
    hook = m.conv2.register_forward_pre_hook(lambda mod, inp: captured.setdefault("xhat", inp[0].clone()))
    F.softmax = recording
    try:
        y, mu = m(x)
    finally:
        F.softmax = softmax
        hook.remove()
    assert len(recorded) == m.stage_num
    z = recorded[-1]                                                   # N × n × k
    # Check: conv2's input is ReLU(μ zᵀ) with the returned μ and the recorded z.
    xhat = torch.relu(mu @ z.permute(0, 2, 1)).reshape(captured["xhat"].shape)
    assert torch.allclose(xhat, captured["xhat"], atol=1e-5)
    return y, mu, z


def main():
    g = torch.Generator().manual_seed(190713426)
    for name, kw, shape in CASES:
        m = network.EMAU(**kw).eval()
        common.randomise_(m, g)
        with torch.no_grad():
            # Larger conv1 weights give distinct, confident responsibilities (with std 0.3 every z
            # row is near-uniform and every base converges to the mean, testing little).
            m.conv1.weight.mul_(4)
        mu_before = m.mu.clone()
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y, mu, z = run(m, x)
        assert torch.equal(m.mu, mu_before), "eval forward must not touch the bases buffer"
        h, w = shape[2], shape[3]
        amap = z[0].permute(1, 0).reshape(kw["k"], h, w)               # k × H × W, batch item 0
        common.save_fixture(name, "em-attention", kw, REFERENCE, m, x, y, amap, extra={"mu_out": mu})


if __name__ == "__main__":
    main()
