"""Parity fixtures for `clustered` against fast-transformers 0.4.0 (idiap)
`AttentionLayer(ClusteredAttention(...) / ImprovedClusteredAttention(...), d_model, n_heads)`.

The package's attention classes are Python, but they call C++ CPU extensions (hashing,
Hamming k-means, clustered aggregate/broadcast, clustered sparse products) whose build takes
about 50 minutes on 2 cores (seq-b.md). This script imports the package's *unbuilt* source tree
and puts, in place of each extension, a transliteration of its C++ CPU loop into torch (written
here from `hash_cpu.cpp`, `cluster_cpu.cpp`, `aggregate_cpu.cpp`, `clustered_sparse_product_cpu.cpp`):

    FA_REF_FAST_TRANSFORMERS=$PWD/pytorch-fast-transformers-0.4.0 /work/venv/bin/python Tools/reference/clustered.py

Injected randomness (seq-b.md quirk 1): the hash planes (`normal_` in every forward) and the
initial centroid indices (`np.random.choice`) are recorded from the call that makes `output` and
stored as `state.inner_attention.planes` (bits × (d_keys+1)) and
`state.inner_attention.initial_centroids` (clusters,). An empty cluster would take a hash from
C++ `std::random_device`, which cannot be reproduced: the transliteration raises instead, so a
fixture never depends on it.
"""
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SRC = os.environ.get("FA_REF_FAST_TRANSFORMERS")
if not SRC:
    sys.exit("set FA_REF_FAST_TRANSFORMERS to an unpacked pytorch-fast-transformers-0.4.0 sdist")


def compute_hashes(X, A, H):          # hash_cpu.cpp: bit i = (x·A_i[:D] > A_i[D])
    s = X @ A[:, :-1].T
    bits = (s > A[:, -1]).long()
    H.copy_((bits << torch.arange(A.shape[0])).sum(-1))


def _popcount(x):
    c = torch.zeros_like(x)
    for b in range(64):
        c += (x >> b) & 1
    return c


def cluster(hashes, lengths, centroids, clusters, counts, iterations, bits):   # cluster_cpu.cpp
    N, H, L = hashes.shape
    K = centroids.shape[2]

    def assign():
        d = _popcount(hashes[:, :, :, None] ^ centroids[:, :, None, :])        # N, H, L, K
        clusters.copy_(d.argmin(-1).int())                                      # first minimum

    for _ in range(1, iterations):
        assign()
        for n in range(N):
            for h in range(H):
                for k in range(K):
                    members = hashes[n, h][clusters[n, h] == k]
                    if len(members) == 0:
                        raise RuntimeError("empty cluster: the C++ kernel would draw from std::random_device")
                    ones = ((members[:, None] >> torch.arange(bits)) & 1).sum(0)
                    maj = (2 * ones - len(members)) > 0
                    centroids[n, h, k] = (maj.long() << torch.arange(bits)).sum()
    assign()
    counts.zero_()
    for k in range(K):
        counts[:, :, k] = (clusters == k).sum(-1).int()


def aggregate(X, G, F, Y):            # aggregate_cpu.cpp: Y[g] += X * F[g]
    N, H, L, E = X.shape
    for n in range(N):
        for h in range(H):
            for l in range(L):
                k = G[n, h, l]
                Y[n, h, k] += X[n, h, l] * F[n, h, k]


def broadcast(Y, G, F, X):            # X[l] = Y[g(l)] * F[g(l)]
    N, H, L, E = X.shape
    for n in range(N):
        for h in range(H):
            for l in range(L):
                k = G[n, h, l]
                X[n, h, l] = Y[n, h, k] * F[n, h, k]


def clustered_sparse_dot_product(Q, K, groups, topk, product):   # product[l, j] = q_l · k_topk[g(l), j]
    N, H, L, E = Q.shape
    for n in range(N):
        for h in range(H):
            idx = topk[n, h, groups[n, h].long()]                          # L, k
            product[n, h] = (Q[n, h, :, None, :] * K[n, h][idx]).sum(-1)


def clustered_sparse_weighted_average(weights, values, groups, topk, output):
    N, H, L, k = weights.shape
    for n in range(N):
        for h in range(H):
            idx = topk[n, h, groups[n, h].long()]                          # L, k
            output[n, h] = (weights[n, h, :, :, None] * values[n, h][idx]).sum(1)


def _ext(name, **fns):
    m = types.ModuleType("fast_transformers." + name)
    for k, v in fns.items():
        setattr(m, k, v)

    def missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def call(*a, **k):
            raise RuntimeError(f"{name}.{attr} is not transliterated")
        return call
    m.__getattr__ = missing
    sys.modules[m.__name__] = m


_ext("hashing.hash_cpu", compute_hashes=compute_hashes)
_ext("clustering.hamming.cluster_cpu", cluster=cluster)
_ext("aggregate.aggregate_cpu", aggregate=aggregate, broadcast=broadcast)
_ext("sparse_product.sparse_product_cpu", sparse_dot_product=None, sparse_dot_backward=None,
     sparse_weighted_average=None, sparse_weighted_average_backward=None)
_ext("sparse_product.clustered_sparse_product_cpu", clustered_sparse_dot_product=clustered_sparse_dot_product,
     clustered_sparse_dot_backward=None, clustered_sparse_weighted_average=clustered_sparse_weighted_average,
     clustered_sparse_weighted_average_backward=None)
for ext in ["causal_product.causal_product_cpu", "local_product.local_product_cpu"]:
    _ext(ext)
sys.path.insert(0, SRC)

from fast_transformers.attention import AttentionLayer, ClusteredAttention, ImprovedClusteredAttention  # noqa: E402
from fast_transformers.masking import FullMask, LengthMask  # noqa: E402
import fast_transformers.attention.clustered_attention as ca  # noqa: E402
import fast_transformers.attention.improved_clustered_attention as ica  # noqa: E402

REFERENCE = "fast-transformers 0.4.0 AttentionLayer(ClusteredAttention / ImprovedClusteredAttention), C++ CPU kernels transliterated"

CASES = [
    # name, layer config, attention kwargs, (N, L), map query
    ("clustered", dict(d_model=24, n_heads=3), dict(attention_type="clustered", clusters=5, bits=16), (2, 37), 20),
    ("clustered-improved", dict(d_model=16, n_heads=2, d_keys=6, d_values=5),
     dict(attention_type="improved-clustered", clusters=4, bits=24, topk=7, iterations=6), (2, 29), 11),
]

record = {}
_normal = torch.nn.init.normal_
_choice = np.random.choice


def _record_normal(t, *a, **k):
    out = _normal(t, *a, **k)
    record["planes"] = t            # hash_bias=False zeroes its last column afterwards, in place
    return out


def _record_choice(*a, **k):
    out = _choice(*a, **k)
    record["centroids"] = torch.tensor(out)
    return out


ca.normal_ = ica.normal_ = _record_normal
import fast_transformers.clustering.hamming as hamming  # noqa: E402
hamming.np = types.SimpleNamespace(random=types.SimpleNamespace(choice=_record_choice))


def reference_map(layer, x, i, improved, att):
    """Row i (batch 0, mean over heads) recomputed from the recorded clustering: the centroid's
    softmax row; improved: top-k entries replaced by the query's renormalised weights."""
    N, L, _ = x.shape
    H = layer.n_heads
    q = layer.query_projection(x).view(N, L, H, -1)[0].transpose(0, 1)      # H, L, E
    k = layer.key_projection(x).view(N, L, H, -1)[0].transpose(0, 1)
    E = q.shape[-1]
    temp = 1 / E ** 0.5
    planes = record["planes"]
    hashes = torch.zeros(H * L, dtype=torch.long)
    compute_hashes(q.reshape(H * L, E), planes, hashes)
    hashes = hashes.view(1, H, L)
    cents = hashes[:, :, record["centroids"]].clone()
    groups = torch.zeros(1, H, L, dtype=torch.int32)
    counts = torch.zeros(1, H, len(record["centroids"]), dtype=torch.int32)
    cluster(hashes, None, cents, groups, counts, att.iterations, att.bits)
    row = torch.zeros(L)
    for h in range(H):
        c = groups[0, h, i].item()
        members = (groups[0, h] == c)
        qc = (q[h][members] * (1.0 / counts[0, h, c].float())).sum(0)
        qk = k[h] @ qc
        a = torch.softmax(temp * qk, 0)
        if improved:
            top = torch.topk(qk, min(att.topk, L)).indices
            bottom = a.clone()
            bottom[top] = 0
            a = bottom.clone()
            a[top] = torch.softmax(temp * (k[h][top] @ q[h, i]), 0) * (1 - bottom.sum())
        row += a / H
    return row.reshape(1, 1, L)


def main():
    g = torch.Generator().manual_seed(20074)
    for name, lkw, akw, (n, l), i in CASES:
        akw = dict(akw)
        kind = akw.pop("attention_type")
        cls = ImprovedClusteredAttention if kind == "improved-clustered" else ClusteredAttention
        att = cls(attention_dropout=0.0, **akw)
        layer = AttentionLayer(att, **lkw).eval()
        common.randomise_(layer, g)
        x = torch.randn(n, l, lkw["d_model"], generator=g)
        torch.manual_seed(len(name))
        np.random.seed(len(name))
        with torch.no_grad():
            y = layer(x, x, x, FullMask(l, l), LengthMask(torch.full((n,), l)), LengthMask(torch.full((n,), l)))
            amap = reference_map(layer, x, i, kind == "improved-clustered", att)
        extra = {"state.inner_attention.planes": record["planes"].clone(),
                 "state.inner_attention.initial_centroids": record["centroids"].long()}
        config = dict(lkw, attention_type=kind, attention_dropout=0.0, **akw)
        common.save_fixture(name, "clustered", config, REFERENCE, layer, x, y, amap, (0, i), extra=extra)


if __name__ == "__main__":
    main()
