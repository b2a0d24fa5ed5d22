"""Parity fixtures for `informer` against Informer2020's ProbSparse self-attention.

Reference: zhouhaoyi/Informer2020 `models/attn.py` (commit 29f2a73) `AttentionLayer(ProbAttention(...))`,
not a pip package (it imports `utils/masking.py` from the same checkout). Check it out and name
the folder:

    git clone https://github.com/zhouhaoyi/Informer2020 && git -C Informer2020 checkout 29f2a73
    FA_REF_INFORMER=$PWD/Informer2020 python Tools/reference/informer.py

The reference draws its key samples with `torch.randint(L_K, (L_Q, U_part))` on every call from
the global RNG. The script draws them once under a seed, re-seeds, and runs the forward, so the
forward draws the same tensor; it is saved as `state.index_sample` (int64, L×U_part), the buffer
the Swift module takes instead of its own draw (conventions.md). The selected queries (`M_top`)
are recorded by wrapping the reference's `_prob_QK`, and the script checks that the u-th and
(u+1)-th sparsity scores are far enough apart for float32 to select the same queries.

Writes Tests/FastAttentionTests/Fixtures/informer*.safetensors.
"""
import math
import os
import sys

import torch

import common

REPO = "zhouhaoyi/Informer2020 @ 29f2a73"
REFERENCE = "Informer2020 models/attn.py AttentionLayer(ProbAttention) @ 29f2a73"


def load_classes():
    root = os.environ.get("FA_REF_INFORMER")
    if not root:
        sys.exit("set FA_REF_INFORMER to a checkout of https://github.com/zhouhaoyi/Informer2020 (commit 29f2a73)")
    sys.path.insert(0, root)
    from models.attn import AttentionLayer, ProbAttention
    return AttentionLayer, ProbAttention


CASES = [
    # name, AttentionLayer kwargs, ProbAttention kwargs, (N, L), map query, sample seed
    ("informer", dict(d_model=12, n_heads=3), dict(mask_flag=False, factor=5), (2, 37), 11, 1),
    ("informer-masked", dict(d_model=16, n_heads=2, mix=True), dict(mask_flag=True, factor=3), (2, 29), 17, 2),
    ("informer-dkeys", dict(d_model=8, n_heads=2, d_keys=6, d_values=5), dict(mask_flag=False, factor=2), (1, 23), 4, 3),
]


def sparsity(layer, x, idx):
    """The reference's query sparsity measure M (N, H, L), recomputed from its own projections
    for the margin check: max_s q·k_s − Σ_s q·k_s / L_K over the sampled keys."""
    n, l, _ = x.shape
    h = layer.n_heads
    q = layer.query_projection(x).view(n, l, h, -1).transpose(1, 2)
    k = layer.key_projection(x).view(n, l, h, -1).transpose(1, 2)
    qk = torch.einsum("nhld,nhlsd->nhls", q, k[:, :, idx, :])
    return qk.max(-1)[0] - qk.sum(-1) / l


def reference_map(layer, attns, index, i, mask_flag):
    """Two maps (2, 1, L) for batch item 0 and query i:
    (0) the weights query i's output row uses, mean over heads: its softmax row where i is an
        active query of the head (`attns` row), else the lazy fallback — 1/L (mean of V) without
        the mask, 1 on every j <= i (un-normalised cumsum of V) with it;
    (1) the fraction of heads in which each position is an active query."""
    h, l = attns.shape[1], attns.shape[-1]
    rows, active = [], torch.zeros(l)
    for head in range(h):
        sel = index[0, head].tolist()
        active[sel] += 1.0 / h
        if i in sel:
            rows.append(attns[0, head, i])
        elif mask_flag:
            rows.append((torch.arange(l) <= i).float())
        else:
            rows.append(torch.full((l,), 1.0 / l))
    return torch.stack([torch.stack(rows).mean(0), active]).reshape(2, 1, l)


def main():
    AttentionLayer, ProbAttention = load_classes()
    g = torch.Generator().manual_seed(20120)
    for name, lkw, pkw, (n, l), i, seed in CASES:
        inner = ProbAttention(attention_dropout=0.0, output_attention=True, **pkw)
        layer = AttentionLayer(inner, **lkw).eval()
        common.randomise_(layer, g, std=0.5)
        x = torch.randn(n, l, lkw["d_model"], generator=g)
        f = pkw["factor"]
        u_part = min(f * math.ceil(math.log(l)), l)
        recorded = {}
        original = inner._prob_QK

        def record(*a, **kw):
            scores, top = original(*a, **kw)
            recorded["index"] = top
            return scores, top
        inner._prob_QK = record
        torch.manual_seed(seed)
        idx = torch.randint(l, (l, u_part))
        torch.manual_seed(seed)
        with torch.no_grad():
            y, attns = layer(x, x, x, None)
            m = sparsity(layer, x, idx)
        index = recorded["index"]
        s = m.sort(-1, descending=True)[0]
        u = index.shape[-1]
        if u < l:
            gap = (s[..., u - 1] - s[..., u]).min().item()
            assert gap > 1e-5 * s.abs().max().item(), f"{name}: top-u margin {gap} too small for float32"
            assert (m.topk(u, -1)[1].sort(-1)[0] == index.sort(-1)[0]).all(), "recomputed selection differs"
        amap = reference_map(layer, attns, index, i, pkw["mask_flag"])
        config = dict(lkw, **pkw)
        common.save_fixture(name, "informer", config, REFERENCE, layer, x, y, amap, (0, i),
                            extra={"state.index_sample": idx, "active_index": index.sort(-1)[0]})
        print(f"{name}: u={u} of L={l}, U_part={u_part}, top-u margin {gap if u < l else 0:.4g}", file=sys.stderr)


if __name__ == "__main__":
    main()
