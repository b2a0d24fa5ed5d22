"""Parity fixtures for `smyrf` against giannisdaras/smyrf `smyrf/torch/attn.py` `SmyrfAttention`
(no pip package). Check the repository out and point FA_REF_SMYRF at it:

    git clone https://github.com/giannisdaras/smyrf && git -C smyrf checkout bbbc82e
    FA_REF_SMYRF=$PWD/smyrf /work/venv/bin/python Tools/reference/smyrf.py

Conventions (conventions.md): queries = keys = values = the input N×L×C, no projections,
`norm_factor` 1 (the forward's default). SMYRF draws new E2LSH projections (alpha ~ N(0,1) of
(C+2)×n_hashes, beta ~ U(0,r) of 1×n_hashes) inside every forward; the script captures the draws
of the call that makes `output` and stores them as `state.alpha` / `state.beta`, which the Swift
module loads instead of drawing.

torch 2 refuses the repository's `torch.tensor(0.).repeat(x.shape[:-1], 1)` (XBOXPLUS.Q/K); while
the reference runs, `Tensor.repeat` given (torch.Size, 1) repeats by the Size alone, the patch
seq-b.md describes (`.repeat(*x.shape[:-1])`).

The map is query i's row over key positions (batch 0): per round, softmax over the keys of its
sorted cluster (positions from `return_attn_map=True`), weighted by the rounds' logsumexps.
"""
import os
import sys

import torch

ROOT = os.environ.get("FA_REF_SMYRF")
if not ROOT:
    sys.exit("set FA_REF_SMYRF to a checkout of github.com/giannisdaras/smyrf (commit bbbc82e)")
sys.path.insert(0, ROOT)
from smyrf.torch import utils as smyrf_utils  # noqa: E402
from smyrf.torch.attn import SmyrfAttention  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

REFERENCE = "giannisdaras/smyrf bbbc82e SmyrfAttention (queries = keys = values = input)"

CASES = [
    # name, kwargs, input shape, map query
    ("smyrf", dict(n_hashes=3, q_cluster_size=8, k_cluster_size=8), (2, 40, 6), 17),
    ("smyrf-1hash", dict(n_hashes=1, q_cluster_size=12, k_cluster_size=12, r=2.5), (1, 36, 5), 3),
]

draws = []
_init = smyrf_utils.E2LSH.__init__


def _capture_init(self, *a, **kw):
    _init(self, *a, **kw)
    draws.append((self.alpha.clone(), self.beta.clone()))


smyrf_utils.E2LSH.__init__ = _capture_init
_repeat = torch.Tensor.repeat


def _repeat_size(self, *sizes):
    if len(sizes) == 2 and isinstance(sizes[0], torch.Size):
        sizes = tuple(sizes[0])
    return _repeat(self, *sizes)


torch.Tensor.repeat = _repeat_size


def reference_map(x, out_positions, alpha_beta, n_hashes, cs, i):
    q_pos, k_pos = out_positions                               # n_hashes, B, L (sorted positions)
    rows, lses = [], []
    for h in range(n_hashes):
        slot = (q_pos[h, 0] == i).nonzero().item()
        c = slot // cs
        keys = k_pos[h, 0, c * cs:(c + 1) * cs]
        logits = x[0, keys] @ x[0, i]
        lses.append(torch.logsumexp(logits, 0))
        row = torch.zeros(x.shape[1])
        row.index_add_(0, keys, torch.softmax(logits, 0))
        rows.append(row)
    w = torch.softmax(torch.stack(lses), 0)
    return sum(w[h] * rows[h] for h in range(n_hashes)).reshape(1, 1, -1)


def main():
    g = torch.Generator().manual_seed(20105)
    for name, kw, shape, i in CASES:
        m = SmyrfAttention(**kw).eval()
        x = torch.randn(shape, generator=g)
        draws.clear()
        torch.manual_seed(len(name))
        with torch.no_grad():
            y, positions = m(x, x, x, return_attn_map=True)
        alpha, beta = draws[0]
        amap = reference_map(x, positions, draws[0], kw["n_hashes"], kw["q_cluster_size"], i)
        common.save_fixture(name, "smyrf", kw, REFERENCE, m, x, y, amap, (0, i),
                            extra={"state.alpha": alpha, "state.beta": beta})


if __name__ == "__main__":
    main()
