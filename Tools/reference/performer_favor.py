"""Parity fixtures for `performer-favor`: FAVOR, the first Performer mechanism.

Paper: Choromanski et al., "Masked Language Modeling for Proteins via Linearly Scalable
Long-Context Transformers", arXiv 2006.03555 (FAVOR: Fast Attention Via Orthogonal Random features).

There is no PyTorch implementation of this paper's FAVOR: performer-pytorch implements only the
later FAVOR+ (positive features). The official code is JAX (google-research
performer/fast_attention/jax/fast_attention.py, `make_fast_softmax_attention`). So the reference
below is written here, in PyTorch, from the paper and that JAX code's math (it imports nothing
from either):

  x' = d^-1/4 x, u = x' Wᵀ, with W (m×d) orthogonal Gaussian blocks scaled by χ_d norms
  trigonometric features (the paper's FAVOR, `nonnegative_features=False`):
      φ(x) = m^-1/2 [cos u, sin u] · exp(‖x'‖²/2 − max over positions of ‖x'‖²/2)
  positive features (`nonnegative_features=True`):
      φ(x) = m^-1/2 (exp(u − ‖x'‖²/2 − stab) + numerical_stabilizer), stab = row max for
      queries, max over all positions and features for keys
  out = φ(Q)(φ(K)ᵀV) / R, R = φ(Q)·Σφ(K) (+2·numerical_stabilizer where |R| ≤ numerical_stabilizer),
  with prefix sums when `unidirectional`; `renormalize_attention=False` skips the division.

The attention is wrapped in the same projections as performer-pytorch's SelfAttention
(to_q, to_k, to_v without bias, to_out with bias), heads split as contiguous channel slices,
and the projection stored as the buffer `fast_attention.projection_matrix`.

Usage: python Tools/reference/performer_favor.py
"""
import math

import torch
from torch import nn

import common

REFERENCE = "Tools/reference/performer_favor.py FavorAttention (written from arXiv 2006.03555 and google-research's JAX fast_attention.py)"


def gaussian_orthogonal_random_matrix(rows, cols, scaling=0, generator=None):
    blocks = []
    for _ in range((rows + cols - 1) // cols):
        q, _ = torch.linalg.qr(torch.randn(cols, cols, generator=generator))
        blocks.append(q.t())
    w = torch.cat(blocks)[:rows]
    mult = (torch.randn(rows, cols, generator=generator).norm(dim=1) if scaling == 0
            else math.sqrt(cols) * torch.ones(rows))
    return torch.diag(mult) @ w


class FavorKernel(nn.Module):
    def __init__(self, dim_head, nb_features, ortho_features=True, ortho_scaling=0, nonnegative_features=False,
                 numerical_stabilizer=1e-6, unidirectional=False, renormalize_attention=True):
        super().__init__()
        w = (gaussian_orthogonal_random_matrix(nb_features, dim_head, ortho_scaling) if ortho_features
             else torch.randn(nb_features, dim_head))
        self.register_buffer("projection_matrix", w)
        self.nonnegative, self.eps = nonnegative_features, numerical_stabilizer
        self.unidirectional, self.renormalize = unidirectional, renormalize_attention

    def features(self, x, is_query):
        """x (B, H, L, d) → (B, H, L, m or 2m)."""
        dn = x.shape[-1] ** -0.25
        ratio = self.projection_matrix.shape[0] ** -0.5
        u = torch.einsum("bhld,md->bhlm", dn * x, self.projection_matrix)
        diag = (x ** 2).sum(-1, keepdim=True) / 2 * dn * dn
        if self.nonnegative:
            stab = u.amax(-1, keepdim=True) if is_query else u.amax((-1, -2), keepdim=True)
            return ratio * (torch.exp(u - diag - stab) + self.eps)
        trig = ratio * torch.cat([torch.cos(u), torch.sin(u)], -1)
        return trig * torch.exp(diag - diag.amax(-2, keepdim=True))

    def forward(self, q, k, v):
        fq, fk = self.features(q, True), self.features(k, False)
        if self.unidirectional:
            s = torch.einsum("bhlm,bhld->bhlmd", fk, v).cumsum(2)
            w = torch.einsum("bhlm,bhlmd->bhld", fq, s)
            r = torch.einsum("bhlm,bhlm->bhl", fq, fk.cumsum(2))
        else:
            w = torch.einsum("bhlm,bhmd->bhld", fq, torch.einsum("bhlm,bhld->bhmd", fk, v))
            r = torch.einsum("bhlm,bhm->bhl", fq, fk.sum(2))
        if not self.renormalize:
            return w
        r = r + 2 * self.eps * (r.abs() <= self.eps)
        return w / r[..., None]


class FavorAttention(nn.Module):
    def __init__(self, dim, heads=8, dim_head=64, nb_features=256, qkv_bias=False, attn_out_bias=True, **favor):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.fast_attention = FavorKernel(dim_head, nb_features, **favor)
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_out = nn.Linear(inner, dim, bias=attn_out_bias)

    def split(self, t):
        b, l, _ = t.shape
        return t.view(b, l, self.heads, -1).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.to_q(x)), self.split(self.to_k(x)), self.split(self.to_v(x))
        out = self.fast_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))

    def implicit_map(self, x, i):
        fa = self.fast_attention
        fq = fa.features(self.split(self.to_q(x)), True)[0, :, i]     # H, m
        fk = fa.features(self.split(self.to_k(x)), False)[0]          # H, L, m
        a = torch.einsum("hm,hlm->hl", fq, fk)
        if fa.unidirectional:
            a[:, i + 1:] = 0
        if fa.renormalize:
            r = a.sum(-1, keepdim=True)
            a = a / (r + 2 * fa.eps * (r.abs() <= fa.eps))
        return a.mean(0).reshape(1, 1, -1)


CASES = [
    # name, kwargs, (N, L), map query position
    ("performer-favor", dict(dim=24, heads=3, dim_head=8, nb_features=20), (2, 37), 9),
    ("performer-favor-causal", dict(dim=16, heads=2, dim_head=8, nb_features=12, unidirectional=True), (2, 29), 21),
    ("performer-favor-positive", dict(dim=12, heads=2, dim_head=6, nb_features=9, nonnegative_features=True,
                                      ortho_scaling=1, unidirectional=True), (1, 23), 7),
]


def main():
    g = torch.Generator().manual_seed(2006_03555)
    torch.manual_seed(0)
    for name, kw, (n, l), qi in CASES:
        m = FavorAttention(**kw).eval()
        common.randomise_(m, g)
        with torch.no_grad():
            # An orthogonal projection (randomise_ made it Gaussian): the fixture carries it either way.
            m.fast_attention.projection_matrix.copy_(gaussian_orthogonal_random_matrix(
                kw["nb_features"], kw["dim_head"], kw.get("ortho_scaling", 0), generator=g))
            x = torch.randn(n, l, kw["dim"], generator=g)
            y = m(x)
            amap = m.implicit_map(x, qi)
        common.save_fixture(name, "performer-favor", kw, REFERENCE, m, x, y, amap, (0, qi))


if __name__ == "__main__":
    main()
