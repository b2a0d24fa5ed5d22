"""Parity fixtures for `sinkhorn` against pip sinkhorn-transformer 0.11.4 `SinkhornSelfAttention`
(eval mode, every weight random).

Cases: the default deterministic `non_permutative=True` sort (soft top-1 block, L = 42, 7
buckets); two top buckets with dim_head ≠ dim/heads; `non_permutative=False` (Gumbel-Sinkhorn),
whose Gumbel noise (`sample_gumbel`, drawn every call) is captured and stored as
`state.sinkhorn_attention.gumbel_noise` (N·H × buckets × buckets); and the causal variant
(`SinkhornCausalAttention`: half the heads rotated, cumulative-average sort net, null buckets;
no map fixture: the Swift test checks its map's causality instead).

The map is query i's row over positions (batch 0, mean over heads), recomputed from the
module's own sort net: softmax over [reordered keys; own-block keys]; a reordered key's weight
goes to the positions its block mixture came from (R's weights).

Usage: /work/venv/bin/python Tools/reference/sinkhorn.py
"""
import os
import sys

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
from sinkhorn_transformer import sinkhorn_transformer as st  # noqa: E402

sys.path.insert(0, _HERE)
import common  # noqa: E402

REFERENCE = "sinkhorn-transformer 0.11.4 SinkhornSelfAttention"

CASES = [
    # name, kwargs, input shape, map query
    ("sinkhorn", dict(dim=24, bucket_size=6, max_seq_len=42, heads=3), (2, 42, 24), 20),
    ("sinkhorn-top2", dict(dim=16, bucket_size=5, max_seq_len=35, heads=2, dim_head=5, n_top_buckets=2), (2, 35, 16), 33),
    ("sinkhorn-gumbel", dict(dim=16, bucket_size=4, max_seq_len=24, heads=2, non_permutative=False, sinkhorn_iter=5,
                             temperature=0.75), (2, 24, 16), 9),
    # L = 22 with blocks of 4: the input padded with zeros to 24 and masked by input_mask, as the
    # Swift module pads; output and map are those of the 22 real tokens
    ("sinkhorn-padded", dict(dim=12, bucket_size=4, max_seq_len=24, heads=2, n_top_buckets=2), (1, 22, 12), 5),
    # causal: 1 plain head and 2 rotated heads, 2 top buckets (nulls included), no map fixture
    ("sinkhorn-causal", dict(dim=18, bucket_size=4, max_seq_len=28, heads=3, causal=True, n_top_buckets=2), (2, 28, 18), None),
]

noise = []
_sample = st.sample_gumbel


def _capture(*a, **k):
    g = _sample(*a, **k)
    noise.append(g.clone())
    return g


st.sample_gumbel = _capture


def reference_map(m, x, i):
    att = m.sinkhorn_attention
    b, t, _ = x.shape
    h, dh, bs = m.heads, m.dim_head, m.bucket_size
    q = st.merge_heads(h, m.to_q(x))                      # b, h, t, dh
    k, v = [st.merge_heads(h, u) for u in m.to_kv(x).chunk(2, dim=-1)]
    nb = t // bs
    noise_saved = list(noise)
    R = att.sort_net(q.reshape(b * h, t, dh), k.reshape(b * h, t, dh), topk=min(att.n_top_buckets, nb))
    if noise_saved != noise:                              # the sort net drew again: reuse the first draw
        noise[:] = noise_saved
    u = i // bs
    row = torch.zeros(t)
    for head in range(h):
        Rh = R[head]                                      # batch 0: (k·nb, nb) or (nb, nb)
        rows = Rh.view(nb, -1, nb)[u]                     # picks for query bucket u: (n, nb)
        b_k = k[0, head].view(nb, bs, dh)
        mix = torch.einsum("pv,vtd->ptd", rows, b_k).reshape(-1, dh)
        own = b_k[u]
        logits = torch.cat([mix, own]) @ q[0, head, i] * dh ** -0.5
        p = logits.softmax(0)
        pm, po = p[:mix.shape[0]].view(rows.shape[0], bs), p[mix.shape[0]:]
        for r in range(rows.shape[0]):
            w = rows[r] / rows[r].sum() if rows[r].sum() > 0 else rows[r]
            for vb in range(nb):
                row[vb * bs:(vb + 1) * bs] += pm[r] * w[vb] / h
        row[u * bs:(u + 1) * bs] += po / h
    return row.reshape(1, 1, t)


def main():
    g = torch.Generator().manual_seed(20021)
    for name, kw, shape, i in CASES:
        m = st.SinkhornSelfAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        noise.clear()
        torch.manual_seed(len(name))
        l = shape[1]
        lp = -(-l // kw["bucket_size"]) * kw["bucket_size"]
        with torch.no_grad():
            if lp > l:
                xp = torch.cat([x, torch.zeros(shape[0], lp - l, shape[2])], 1)
                mask = torch.arange(lp)[None, :].expand(shape[0], -1) < l
                y = m(xp, input_mask=mask)[:, :l]
            else:
                y = m(x)
            extra = {}
            if noise:
                extra["state.sinkhorn_attention.gumbel_noise"] = noise[0]
                torch.manual_seed(len(name))              # the map's sort net draws the same noise again
            amap = reference_map(m, x, i) if i is not None and lp == l else None
        common.save_fixture(name, "sinkhorn", kw, REFERENCE, m, x, y, amap, (0, i) if i is not None else None, extra=extra)


if __name__ == "__main__":
    main()
