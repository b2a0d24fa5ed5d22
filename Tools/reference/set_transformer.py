"""Parity fixtures for `set-transformer` against the authors' ISAB and PMA.

Reference: juho-lee/set_transformer `modules.py` (commit 73432c6), not a pip package. Check it
out and name the folder:

    git clone https://github.com/juho-lee/set_transformer && git -C set_transformer checkout 73432c6
    FA_REF_SET_TRANSFORMER=$PWD/set_transformer python Tools/reference/set_transformer.py

Writes Tests/FastAttentionTests/Fixtures/set-transformer*.safetensors.
"""
import importlib.util
import math
import os
import sys

import torch

import common

REPO = "juho-lee/set_transformer @ 73432c6"


def load_modules():
    root = os.environ.get("FA_REF_SET_TRANSFORMER")
    if not root:
        sys.exit("set FA_REF_SET_TRANSFORMER to a checkout of https://github.com/juho-lee/set_transformer (commit 73432c6)")
    spec = importlib.util.spec_from_file_location("set_transformer_modules", os.path.join(root, "modules.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CASES = [
    # name, class, kwargs, input shape (N, L, C), map query token (ISAB) or None (PMA)
    ("set-transformer", "ISAB", dict(dim_in=12, dim_out=16, num_heads=4, num_inds=5, ln=True), (2, 13, 12), 6),
    ("set-transformer-noln", "ISAB", dict(dim_in=10, dim_out=10, num_heads=2, num_inds=3, ln=False), (2, 7, 10), 0),
    ("set-transformer-pma", "PMA", dict(dim=12, num_heads=3, num_seeds=4, ln=True), (2, 11, 12), None),
    ("set-transformer-pma-noln", "PMA", dict(dim=8, num_heads=2, num_seeds=1, ln=False), (1, 9, 8), None),
]


def head_weights(mab, q_in, k_in):
    """The MAB's softmax weights per head (H, Lq, Lk) for batch item 0, from its own fc_q/fc_k
    outputs, split as its forward splits them."""
    q, k = mab.fc_q(q_in[:1]), mab.fc_k(k_in[:1])
    d = mab.dim_V // mab.num_heads
    q_ = torch.cat(q.split(d, 2), 0)
    k_ = torch.cat(k.split(d, 2), 0)
    return torch.softmax(q_.bmm(k_.transpose(1, 2)) / math.sqrt(mab.dim_V), 2)


def main():
    mod = load_modules()
    g = torch.Generator().manual_seed(18100)
    for name, cls, kw, shape, q in CASES:
        m = getattr(mod, cls)(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            if cls == "ISAB":
                ind = m.I
                h = m.mab0(ind, x[:1])
                a0 = head_weights(m.mab0, ind, x)            # H, m, L
                a1 = head_weights(m.mab1, x, h)              # H, L, m
                # two hops per head, row q of A1·A0, then the mean over heads: 1×1×L
                amap = torch.einsum("hm,hml->hl", a1[:, q, :], a0).mean(0).reshape(1, 1, -1)
                mq = (0, q)
            else:
                a = head_weights(m.mab, m.S, x)               # H, k, L
                amap = a.mean(0).unsqueeze(1)                 # k, 1, L
                mq = None
        common.save_fixture(name, "set-transformer", kw, f"{cls} ({REPO})", m, x, y, amap, mq)


if __name__ == "__main__":
    main()
