"""Parity fixtures for `fast-weights` against IDSIA lmtool-fwms `CudaNormFastWeightDPFPTransformerLayer`.

Reference: IDSIA/lmtool-fwms src/utils/cuda_fast_weight_layer.py (commit 52ada3d), the paper's
"ours" update (delta rule) with DPFP-ν features (Schlag, Irie, Schmidhuber, "Linear Transformers Are
Secretly Fast Weight Programmers", arXiv 2102.11174). Check out the repository and point
FA_REF_LMTOOL at its `src` folder:

    FA_REF_LMTOOL=/path/to/lmtool-fwms/src python Tools/reference/fast_weights.py

The layer calls `fast_weight_delta`, a CUDA kernel compiled at import time (fast_fast_weight/
fast_weight_cuda.cu). There is no GPU here, so `utils.fast_fast_weight` is replaced by the loop
below, which follows the kernel's forward (per batch and head, with W = 0 at the start):
    v_old = Wᵀk_t;  v_insert = β_t (v_t − v_old);  W += k_t ⊗ v_insert;  out_t = Wᵀq_t.
The other CUDA modules the file imports are stubs (the class uses none of them).
The reference is time-major (L, B, d_model); the fixture stores batch-first N×L×C input and output.
"""
import os
import sys
import types

import torch

import common

SRC = os.environ.get("FA_REF_LMTOOL")
if not SRC:
    sys.exit("set FA_REF_LMTOOL to the src folder of an IDSIA/lmtool-fwms checkout")


def fast_weight_delta(q, k, v, beta, w):
    """The CUDA kernel's forward as a loop: q, k (B, H, L, E), v (B, H, L, M), beta (B, H, L, 1),
    w (B, H, E, M) updated in place; returns (B, H, L, M)."""
    out = torch.zeros(q.shape[:3] + (v.shape[-1],))
    for t in range(q.shape[2]):
        v_old = torch.einsum("bhe,bhem->bhm", k[:, :, t], w)
        v_insert = beta[:, :, t] * (v[:, :, t] - v_old)
        w += torch.einsum("bhe,bhm->bhem", k[:, :, t], v_insert)
        out[:, :, t] = torch.einsum("bhe,bhem->bhm", q[:, :, t], w)
    return out


class _Stub(types.ModuleType):
    def __getattr__(self, name):
        def missing(*a, **k):
            raise RuntimeError(f"{self.__name__}.{name} is a CUDA kernel that is not available here")
        return missing


for mod in ["fast_transformers", "fast_weight_rnn", "fast_weight_rnn_v2", "fast_lstm", "fast_lstm_v2", "fast_lstm_v3",
            "fast_lstm_v4", "rec_update_fwm_tanh"]:
    sys.modules["utils." + mod] = _Stub("utils." + mod)
sys.modules["utils.fast_fast_weight"] = types.SimpleNamespace(fast_weight_delta=fast_weight_delta)
sys.path.insert(0, SRC)
from utils.cuda_fast_weight_layer import CudaNormFastWeightDPFPTransformerLayer  # noqa: E402

REFERENCE = "IDSIA/lmtool-fwms CudaNormFastWeightDPFPTransformerLayer (commit 52ada3d; CUDA delta kernel as a loop)"

CASES = [
    # name, kwargs, (N, L), map query position
    ("fast-weights", dict(n_head=2, d_model=16, d_head=6, n_roll=2), (2, 29), 21),
    ("fast-weights-roll3-prenorm", dict(n_head=3, d_model=12, d_head=4, n_roll=3, pre_lnorm=True), (1, 23), 9),
    ("fast-weights-unnormalised", dict(n_head=2, d_model=8, d_head=4, n_roll=1, skip_attn_normalization=True), (2, 17), 12),
]


def preprocess(m, h):
    """q, k, v, β, the output scale and the normaliser exactly as the layer's forward makes them
    (re-derived here to compute the map; checked against the layer's output below)."""
    if m.pre_lnorm:
        h = m.layer_norm(h)
    slen, bsz, _ = h.shape
    q, k, v, beta = torch.split(m.qkvb_net(h).view(slen, bsz, m.n_head, 3 * m.d_head + 1), (m.d_head,) * 3 + (1,), -1)
    q, k, v, beta = (t.permute(1, 2, 0, 3) for t in (q, k, v, torch.sigmoid(beta)))
    feats = lambda x: m.mul_roll_repeat(torch.cat([torch.relu(x), torch.relu(-x)], -1))
    q, k = feats(q), feats(k)
    q, k = q / q.sum(-1, keepdim=True), k / k.sum(-1, keepdim=True)
    den = torch.ones(q.shape[:3] + (1,))
    if m.normalize_attn_scores:
        z = torch.cumsum(k, 2)
        kd = torch.einsum("bhlj,bhlj->bhl", torch.cat([torch.zeros_like(z[:, :, :1]), z[:, :, :-1]], 2), k)
        kd = torch.cat([torch.ones_like(kd[:, :, :1]), kd[:, :, 1:]], 2)[..., None]
        beta, k = beta * kd, k / (kd + m.eps)
        den = torch.einsum("bhlj,bhlj->bhl", z, q)[..., None] + m.eps
    return h, q, k, v, beta, m.scale / den


def effective_map(m, x_tm, i):
    """Row i of c_ij, the weight of v_j in head output i (∂y_i/∂v_j: the recurrence is linear in v),
    by pushing one-hot values through the reference loop; batch item 0, mean over heads, 1×1×L."""
    h, q, k, v, beta, factor = preprocess(m, x_tm)
    # self-check: the re-derived pieces give the layer's output
    y = fast_weight_delta(q, k, v, beta, torch.zeros(q.shape[:2] + (q.shape[-1], v.shape[-1]))) * factor
    l, b = x_tm.shape[:2]
    attn = m.o_net(y.transpose(1, 2).reshape(b, l, -1).transpose(0, 1))
    out = h + attn if m.pre_lnorm else m.layer_norm(x_tm + attn)
    assert (out - m(x_tm)).abs().max() < 1e-5
    onehot = torch.eye(l)[None, None, :, :].expand(1, q.shape[1], l, l)       # v_j = e_j
    c = fast_weight_delta(q[:1], k[:1], onehot, beta[:1], torch.zeros(1, q.shape[1], q.shape[-1], l)) * factor[:1]
    return c[0, :, i].mean(0).reshape(1, 1, l)


def main():
    g = torch.Generator().manual_seed(2102_11174)
    for name, kw, (n, l), qi in CASES:
        ctor = dict(kw)
        ctor.update(dropout=0.0, layer_id=0, num_layer=1)
        m = CudaNormFastWeightDPFPTransformerLayer(**ctor).eval()
        common.randomise_(m, g)
        x = torch.randn(n, l, kw["d_model"], generator=g)
        with torch.no_grad():
            y = m(x.transpose(0, 1)).transpose(0, 1)                             # time-major inside
            amap = effective_map(m, x.transpose(0, 1), qi)
        common.save_fixture(name, "fast-weights", kw, REFERENCE, m, x, y, amap, (0, qi))


if __name__ == "__main__":
    main()
