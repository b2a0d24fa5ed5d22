"""Parity fixtures for `linear-transformer` against fast-transformers 0.4.0 (idiap).

Reference: pytorch-fast-transformers 0.4.0 `AttentionLayer(LinearAttention(d_keys), d_model, n_heads,
d_keys, d_values)` and, for the causal case, `RecurrentAttentionLayer(RecurrentLinearAttention(d_keys),
...)` stepped over the sequence with the same state_dict.

The package needs C++ extensions to build (about 50 minutes on 2 cores, CPU only). Neither
class used here calls them: LinearAttention and RecurrentLinearAttention are pure PyTorch. So the
script imports the package's *unbuilt* source tree with the extension modules stubbed out:

    pip download --no-deps --no-build-isolation --no-binary :all: pytorch-fast-transformers==0.4.0
    tar xzf pytorch-fast-transformers-0.4.0.tar.gz
    FA_REF_FAST_TRANSFORMERS=$PWD/pytorch-fast-transformers-0.4.0 python Tools/reference/linear_transformer.py

The causal oracle is the authors' recurrent form (their `CausalLinearAttention` calls the C++
`causal_product`, which computes the same prefix sums; seq-b.md §5 measured them equal to 1.2e-7
on a CPU build). The script also checks the non-causal layer against the masked explicit formula
with an all-visible mask, and the recurrent output against the explicit masked formula.
"""
import os
import sys
import types

import torch

import common

SRC = os.environ.get("FA_REF_FAST_TRANSFORMERS")
if not SRC:
    sys.exit("set FA_REF_FAST_TRANSFORMERS to an unpacked pytorch-fast-transformers-0.4.0 sdist (see the docstring)")


class _Unbuilt(types.ModuleType):
    """Stands in for a C++ extension that was not built: importing works, calling raises."""

    def __getattr__(self, name):
        if name.startswith("__"):          # __file__, __path__...: absent, as on a real module
            raise AttributeError(name)

        def missing(*a, **k):
            raise RuntimeError(f"{self.__name__}.{name} is a C++ extension that was not built")
        return missing


for ext in ["causal_product.causal_product_cpu", "hashing.hash_cpu", "aggregate.aggregate_cpu",
            "clustering.hamming.cluster_cpu", "sparse_product.sparse_product_cpu",
            "sparse_product.clustered_sparse_product_cpu", "local_product.local_product_cpu"]:
    sys.modules["fast_transformers." + ext] = _Unbuilt("fast_transformers." + ext)
sys.path.insert(0, SRC)

from fast_transformers.attention import AttentionLayer, LinearAttention  # noqa: E402
from fast_transformers.masking import FullMask, LengthMask  # noqa: E402
from fast_transformers.recurrent.attention import RecurrentAttentionLayer, RecurrentLinearAttention  # noqa: E402

REFERENCE = "fast-transformers 0.4.0 AttentionLayer(LinearAttention) / RecurrentAttentionLayer(RecurrentLinearAttention)"

CASES = [
    # name, config, (N, L), map query position
    ("linear-transformer", dict(d_model=24, n_heads=3, d_keys=6, d_values=5, causal=False), (2, 37), 20),
    ("linear-transformer-causal", dict(d_model=16, n_heads=2, causal=True), (2, 29), 17),
]


def implicit_map(layer, x, i, causal):
    """Row i of φ(Q)φ(K)ᵀ / Σ for batch item 0, mean over heads, from the layer's own
    projections and feature map, as 1×1×L."""
    with torch.no_grad():
        n, l, _ = x.shape
        h = layer.n_heads
        q = layer.query_projection(x).view(n, l, h, -1)
        k = layer.key_projection(x).view(n, l, h, -1)
        fm = layer.inner_attention.feature_map
        fq, fk = fm.forward_queries(q), fm.forward_keys(k)
        a = torch.einsum("nlhd,nshd->nhls", fq, fk)[0, :, i]       # H, L
        if causal:
            a[:, i + 1:] = 0
        a = a / (a.sum(-1, keepdim=True) + layer.inner_attention.eps)
        return a.mean(0).reshape(1, 1, l)


def explicit(layer, x, causal):
    """The explicit masked formula, for a self-check of the reference runs."""
    n, l, _ = x.shape
    h = layer.n_heads
    q = layer.query_projection(x).view(n, l, h, -1)
    k = layer.key_projection(x).view(n, l, h, -1)
    v = layer.value_projection(x).view(n, l, h, -1)
    fm = layer.inner_attention.feature_map
    a = torch.einsum("nlhd,nshd->nhls", fm.forward_queries(q), fm.forward_keys(k))
    if causal:
        a = a * torch.tril(torch.ones(l, l))
    a = a / (a.sum(-1, keepdim=True) + layer.inner_attention.eps)
    return layer.out_projection(torch.einsum("nhls,nshd->nlhd", a, v).reshape(n, l, -1))


def main():
    g = torch.Generator().manual_seed(2006_16236)
    for name, cfg, (n, l), qi in CASES:
        d_keys = cfg.get("d_keys") or cfg["d_model"] // cfg["n_heads"]
        kw = dict(d_model=cfg["d_model"], n_heads=cfg["n_heads"], d_keys=cfg.get("d_keys"), d_values=cfg.get("d_values"))
        x = torch.randn(n, l, cfg["d_model"], generator=g)
        with torch.no_grad():
            if not cfg["causal"]:
                layer = AttentionLayer(LinearAttention(d_keys), **kw).eval()
                common.randomise_(layer, g)
                y = layer(x, x, x, FullMask(l, device=x.device), LengthMask(x.new_full((n,), l, dtype=torch.int64)),
                          LengthMask(x.new_full((n,), l, dtype=torch.int64)))
            else:
                layer = RecurrentAttentionLayer(RecurrentLinearAttention(d_keys), **kw).eval()
                common.randomise_(layer, g)
                state, ys = None, []
                for t in range(l):
                    yt, state = layer(x[:, t], x[:, t], x[:, t], state=state)
                    ys.append(yt)
                y = torch.stack(ys, 1)
            err = (y - explicit(layer, x, cfg["causal"])).abs().max().item()
            assert err < 1e-5, f"{name}: reference disagrees with the explicit formula by {err}"
            amap = implicit_map(layer, x, qi, cfg["causal"])
        config = {k: v for k, v in cfg.items() if v is not None}
        common.save_fixture(name, "linear-transformer", config, REFERENCE, layer, x, y, amap, (0, qi))


if __name__ == "__main__":
    main()
