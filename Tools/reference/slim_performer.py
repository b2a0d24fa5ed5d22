"""Parity fixtures for `slim-performer` against google-research's SLiM Performer (PyTorch).

Reference: google-research performer/models/slim_performer/pytorch/slim_performer_model.py
`MultiHeadAttention(feature_type, n_heads, hidden_dim, compute_type).full_forward(x, rfs)` with its
`numerator_and_denominator.py` (commit 0c1bbe5). The google-research repository is too large to
clone here (1.1 GB); check out (or copy) just those two files into one folder, with the import of
`numerator_and_denominator` in `slim_performer_model.py` pointed at that folder (the file imports
`performer.models.pytorch.slim_performer.numerator_and_denominator`, which matches no layout), and:

    FA_REF_SLIM=/path/to/that/folder python Tools/reference/slim_performer.py

The random features `rfs` (n_heads × head_dim × M) are drawn by the reference's own `sample_rfs`
on every call; the fixture stores the draw it used under `state.rfs`, which the Swift module loads as
an optional buffer.
"""
import os
import sys

import torch

import common

SRC = os.environ.get("FA_REF_SLIM")
if not SRC:
    sys.exit("set FA_REF_SLIM to a folder holding slim_performer_model.py and numerator_and_denominator.py")
sys.path.insert(0, SRC)
from slim_performer_model import MultiHeadAttention  # noqa: E402

REFERENCE = "google-research slim_performer/pytorch MultiHeadAttention.full_forward (commit 0c1bbe5)"

CASES = [
    # name, kwargs, (N, L), map query position
    ("slim-performer", dict(feature_type="favor+", n_heads=2, hidden_dim=16, compute_type="ps"), (2, 29), 17),
    ("slim-performer-favor2", dict(feature_type="favor+_2", n_heads=3, hidden_dim=24, compute_type="parallel_ps"), (1, 37), 30),
    ("slim-performer-relu", dict(feature_type="relu", n_heads=2, hidden_dim=8, compute_type="ps"), (2, 13), 6),
]


def implicit_map(m, x, rfs, i):
    q, k, _ = m._get_queries_keys_values(x, rfs)         # L, N, H, M
    a = torch.einsum("hm,lhm->hl", q[i, 0], k[:, 0])     # H, L
    a[:, i + 1:] = 0
    a = a / (a.sum(-1, keepdim=True) + 1e-16)
    return a.mean(0).reshape(1, 1, -1)


def main():
    g = torch.Generator().manual_seed(2012_11346)
    torch.manual_seed(11346)
    for name, kw, (n, l), qi in CASES:
        m = MultiHeadAttention(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(n, l, kw["hidden_dim"], generator=g)
        with torch.no_grad():
            rfs = m.sample_rfs(x.device)
            y = m.full_forward(x, rfs)
            amap = implicit_map(m, x, rfs, qi)
        extra = {"state.rfs": rfs} if rfs is not None else None
        common.save_fixture(name, "slim-performer", kw, REFERENCE, m, x, y, amap, (0, qi), extra=extra)


if __name__ == "__main__":
    main()
