"""Parity fixtures for `star-transformer` against fastNLP 1.0.1's StarTransformer.

The module file is imported directly (fastNLP's package __init__ pulls in much more than
torch and numpy): pip install --no-deps fastnlp==1.0.1.

Usage: python Tools/reference/star_transformer.py   (writes Tests/FastAttentionTests/Fixtures/star-transformer*.safetensors)
"""
import importlib.util
import math
import os

import torch
import torch.nn.functional as F

import common

REFERENCE = "fastNLP 1.0.1 StarTransformer (modules/torch/encoder/star_transformer.py)"


def load_class():
    spec = importlib.util.find_spec("fastNLP")
    path = os.path.join(os.path.dirname(spec.origin), "modules", "torch", "encoder", "star_transformer.py")
    s = importlib.util.spec_from_file_location("fastnlp_star_transformer", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod.StarTransformer


CASES = [
    # name, kwargs, input shape (N, L, C), map query token
    ("star-transformer", dict(hidden_size=12, num_layers=2, num_head=3, head_dim=5), (2, 11, 12), 0),
    ("star-transformer-pos", dict(hidden_size=8, num_layers=3, num_head=2, head_dim=4, max_len=16), (2, 9, 8), 4),
    ("star-transformer-short", dict(hidden_size=6, num_layers=1, num_head=2, head_dim=3), (1, 2, 6), 1),
]


def ring_alphas(att, x, ax):
    """The five ring weights per head (H, L, 5) of batch item 0, from the layer's own WQ/WK on
    its inputs (x: B, C, L, 1 normalised tokens; ax: B, C, 2, L embeddings and relay)."""
    nh, hd, L = att.nhead, att.head_dim, x.shape[2]
    q = att.WQ(x)[:1].view(nh, hd, L)
    k = att.WK(x)[:1].view(nh, hd, L)
    zero = torch.zeros(nh, hd, 1)
    kpad = torch.cat([zero, k, zero], 2)
    ak = att.WK(ax)[:1].view(nh, hd, 2, L)
    keys = torch.stack([kpad[:, :, 0:L], kpad[:, :, 1:L + 1], kpad[:, :, 2:L + 2], ak[:, :, 0], ak[:, :, 1]], 3)
    logits = (q.unsqueeze(3) * keys).sum(1) / math.sqrt(hd)          # H, L, 5
    return logits.softmax(2)


def star_betas(att, x, y):
    """The relay's weights per head (H, 1+L) over [s, tokens] for batch item 0."""
    nh, hd = att.nhead, att.head_dim
    q = att.WQ(x)[:1].view(nh, hd)
    k = att.WK(y)[:1].view(nh, hd, -1)
    return (torch.einsum("hd,hdl->hl", q, k) / math.sqrt(hd)).softmax(1)


def reference_map(m, x, i):
    """Two rows, 2×1×L: (1) the last layer's ring weights on tokens plus the relay weight spread
    by the relay's reach, (2) the last relay's weights over the tokens; both mean over heads."""
    rings, stars = [], []
    hooks = []
    for t in range(m.iters):
        hooks.append(m.ring_att[t].register_forward_hook(
            lambda mod, args, kwargs, out: rings.append(ring_alphas(mod, args[0], kwargs["ax"])), with_kwargs=True))
        hooks.append(m.star_att[t].register_forward_hook(
            lambda mod, args, out: stars.append(star_betas(mod, args[0], args[1]))))
    B, L, _ = x.shape
    m(x, torch.ones(B, L, dtype=torch.bool))
    for h in hooks:
        h.remove()
    reach = torch.full((L,), 1.0 / L)
    for t in range(m.iters - 1):
        reach = (stars[t][:, 1:] + stars[t][:, :1] * reach).mean(0)
    a = rings[-1][:, i, :].mean(0)                                    # 5
    composed = a[4] * reach
    if i > 0:
        composed[i - 1] += a[0]
    composed[i] += a[1] + a[3]
    if i < L - 1:
        composed[i + 1] += a[2]
    relay = stars[-1][:, 1:].mean(0)
    return torch.stack([composed, relay]).unsqueeze(1)


def main():
    cls = load_class()
    g = torch.Generator().manual_seed(19020)
    for name, kw, shape, q in CASES:
        m = cls(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            nodes, _relay = m(x, torch.ones(shape[0], shape[1], dtype=torch.bool))
            amap = reference_map(m, x, q)
        common.save_fixture(name, "star-transformer", kw, REFERENCE, m, x, nodes, amap, (0, q))


if __name__ == "__main__":
    main()
