"""Parity fixtures for `routing` against pip routing-transformer 1.6.1
`routing_transformer.routing_transformer.SelfAttention` with routed heads only
(`local_attn_heads=0`), in eval mode.

Every weight, mem key/value and the k-means `means` random; `initted` set true, so the
reference uses the loaded means as they are (no initialisation from the data) — that is how
parity is exact. Cases: non-causal (zero-size mem_key (H, C, 0, d)); causal with 2 mem kv per
cluster and dim_head ≠ dim/heads; shared_qk (keys = normalised queries, self −5e4).

The map is query i's row over key positions (batch 0, mean over heads), rebuilt from the
package's own routing (`Kmeans.forward` dists and `distribution` top-k): for every cluster that
routed i, its softmax over [mem; cluster keys] with the reference's masks, averaged over those
clusters with count + 1e-5, mem weights dropped.

Usage: /work/venv/bin/python Tools/reference/routing.py
"""
import os
import sys

import torch
import torch.nn.functional as F
from routing_transformer import routing_transformer as rt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

REFERENCE = "routing-transformer 1.6.1 SelfAttention (local_attn_heads=0)"

CASES = [
    # name, kwargs, input shape, map query
    ("routing", dict(dim=24, depth=1, max_seq_len=40, heads=3, local_attn_heads=0, window_size=8), (2, 40, 24), 17),
    ("routing-causal", dict(dim=16, depth=1, max_seq_len=36, heads=2, local_attn_heads=0, window_size=12,
                            dim_head=6, causal=True, num_mem_kv=2), (2, 36, 16), 30),
    ("routing-shared", dict(dim=12, depth=1, max_seq_len=30, heads=2, local_attn_heads=0, window_size=6,
                            shared_qk=True), (1, 30, 12), 4),
]


def reference_map(m, x, i):
    ga = m.global_attn
    b, t, _ = x.shape
    h, dh = m.heads, m.dim_head
    split = lambda v: v.reshape(b, t, h, dh).transpose(1, 2)
    q = split(m.to_q(x))
    k = split(m.to_k(x)) if not m.shared_qk else q
    v = split(m.to_v(x))
    wsz = min(ga.window_size, t)
    if ga.shared_qk:
        dists, _ = ga.kmeans(q)
        k = F.normalize(k, dim=-1)
        indices = kv_indices = rt.distribution(dists, wsz)
    else:
        dists, _ = ga.kmeans(torch.cat((q, k), dim=2))
        qd, kd = rt.split_at_index(2, t, dists)
        indices, kv_indices = rt.distribution(qd, wsz), rt.distribution(kd, wsz)
    nc = ga.num_clusters
    row = torch.zeros(t)
    for head in range(h):
        qi = indices[0, head].view(nc, wsz)
        ki = kv_indices[0, head].view(nc, wsz)
        hits = [(c, s) for c in range(nc) for s in range(wsz) if qi[c, s] == i]
        for c, s in hits:
            keys = k[0, head, ki[c]]
            dots = torch.cat([ga.mem_key[head, c] @ q[0, head, i], keys @ q[0, head, i]]) * dh ** -0.5
            mem = ga.num_mem_kv
            if ga.causal:
                dots[mem:][ki[c] > i] = -torch.finfo(dots.dtype).max
            if ga.shared_qk:
                dots[mem:][ki[c] == i] = rt.TOKEN_SELF_ATTN_VALUE
            p = dots.softmax(0)[mem:]
            row.index_add_(0, ki[c], p / (len(hits) + 1e-5) / h)
    return row.reshape(1, 1, t)


def main():
    g = torch.Generator().manual_seed(20035)
    for name, kw, shape, i in CASES:
        m = rt.SelfAttention(**kw).eval()
        common.randomise_(m, g)
        with torch.no_grad():
            m.global_attn.kmeans.initted.fill_(True)
            x = torch.randn(shape, generator=g)
            y, _ = m(x)
            amap = reference_map(m, x, i)
        common.save_fixture(name, "routing", kw, REFERENCE, m, x, y, amap, (0, i))


if __name__ == "__main__":
    main()
