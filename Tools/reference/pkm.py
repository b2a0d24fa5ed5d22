"""Parity fixtures for `product-key-memory` against PKM (pip product-key-memory==0.3.0).

The package imports colt5-attention (and through it local-attention, hyper-connections,
torch-einops-utils) at import time; install them with --no-deps as listed in the report.

The map is the query token's memory-slot weights: a forward hook on the `values` EmbeddingBag
(or Embedding, in the concat mode) records the slot indices the forward really used and, with
`per_sample_weights`, their gate weights; they are summed per slot (a·num_keys + b) over the
heads onto the num_keys×num_keys grid, as the output sums the heads.

(Named pkm.py: a script named product_key_memory.py would shadow the package.)

Usage: python Tools/reference/pkm.py
       (writes Tests/FastAttentionTests/Fixtures/product-key-memory*.safetensors)
"""
import torch
from product_key_memory import PKM

import common

REFERENCE = "product_key_memory.PKM (pip product-key-memory 0.3.0)"

CASES = [
    # name, kwargs, (N, L), map query token
    ("product-key-memory", dict(dim=12, heads=3, num_keys=7, topk=4, dim_head=5), (2, 11), 6),
    ("product-key-memory-variants", dict(dim=8, heads=2, num_keys=6, topk=3, dim_head=4, pre_layernorm=True,
                                         norm_output=True, non_competitive_gates=True), (2, 9), 3),
    ("product-key-memory-concat", dict(dim=10, heads=2, num_keys=5, topk=3, dim_head=6,
                                       concat_values_and_combine=True), (1, 13), 12),
]


def main():
    g = torch.Generator().manual_seed(19070)
    for name, kw, (n, l), i in CASES:
        m = PKM(**kw).eval()
        common.randomise_(m, g, std=0.5)
        x = torch.randn(n, l, kw["dim"], generator=g)
        seen = {}

        def hook(module, args, kwargs, out):
            seen["indices"] = args[0]
            seen["weights"] = kwargs.get("per_sample_weights")
        handle = m.values.register_forward_hook(hook, with_kwargs=True)
        with torch.no_grad():
            y = m(x)
        handle.remove()
        nk, h, k = kw["num_keys"], kw["heads"], kw["topk"]
        idx = seen["indices"].reshape(n, l, h * k)[0, i]
        w = seen["weights"]
        # Concat mode: the Embedding is read without weights (a quirk): every selected slot counts 1.
        w = torch.ones(h * k) if w is None else w.reshape(n, l, h * k)[0, i]
        grid = torch.zeros(nk * nk).index_add_(0, idx, w).reshape(1, nk, nk)
        common.save_fixture(name, "product-key-memory", kw, REFERENCE, m, x, y, grid, (0, i))


if __name__ == "__main__":
    main()
