"""Parity fixtures for `random-feature`: Random Feature Attention (RFA, gated RFA).

Paper: Peng, Pappas, Yogatama, Schwartz, Smith, Kong, "Random Feature Attention", ICLR 2021,
arXiv 2103.02143. No official code was released (nothing on PyPI or in the code stores), so this
reference is written here from the paper's §2–3:

  per head, q and k ℓ2-normalised, then random Fourier features of the Gaussian kernel
      φ(x) = D^-1/2 [sin(w_1·x), …, sin(w_D·x), cos(w_1·x), …, cos(w_D·x)],
      w_i = σ ∘ w̃_i, w̃_i ~ N(0, I) (fixed at evaluation; buffer `random_matrices`), σ learned
      (`sigma`, one per head and dimension), so φ(x)·φ(y) ≈ exp(−‖σ∘(x−y)‖²/2)
  arc-cos variant (`feature_map='arccos'`): φ(x) = D^-1/2 ReLU(Wx)
  RFA:   out_t = φ(q_t)ᵀ Σ_j φ(k_j)⊗v_j / (φ(q_t)·Σ_j φ(k_j))   (j ≤ t when causal)
  gated RFA (causal): g_t = sigmoid(w_g·x_t + b_g), one gate per head (`gate_proj`),
      S_t = g_t S_{t−1} + (1 − g_t) φ(k_t)⊗v_t,  z_t = g_t z_{t−1} + (1 − g_t) φ(k_t),
      out_t = φ(q_t)ᵀS_t / (φ(q_t)·z_t)
  with fairseq-style projections q_proj, k_proj, v_proj, out_proj (bias), heads as contiguous
  channel slices. The paper states no guard for the sin/cos denominator (which can vanish); this
  reference adds 2·eps where |den| ≤ eps (eps 1e-6, as the JAX Performer code does).

The gated recurrence is run literally, one step at a time; the Swift port computes it with the
chunked decayed prefix sums of the kernelised core, so parity tests that they agree.

Usage: python Tools/reference/random_feature.py
"""
import torch
from torch import nn

import common

REFERENCE = "Tools/reference/random_feature.py RandomFeatureAttention (written from arXiv 2103.02143 §3; no official code)"


class RandomFeatureAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, num_features=64, causal=True, gate=True, feature_map="sincos", eps=1e-6):
        super().__init__()
        assert embed_dim % num_heads == 0 and (causal or not gate)
        self.h, self.d, self.D = num_heads, embed_dim // num_heads, num_features
        self.causal, self.gate, self.feature_map, self.eps = causal, gate, feature_map, eps
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        if gate:
            self.gate_proj = nn.Linear(embed_dim, num_heads)
        self.sigma = nn.Parameter(torch.ones(num_heads, self.d))
        self.register_buffer("random_matrices", torch.randn(num_heads, num_features, self.d))

    def phi(self, x):
        """x (B, L, H, d) → (B, L, H, 2D or D)."""
        x = x / x.norm(dim=-1, keepdim=True)
        u = torch.einsum("blhd,hkd->blhk", x * self.sigma, self.random_matrices)
        if self.feature_map == "arccos":
            return torch.relu(u) / self.D ** 0.5
        return torch.cat([torch.sin(u), torch.cos(u)], -1) / self.D ** 0.5

    def heads(self, t):
        return t.view(t.shape[0], t.shape[1], self.h, self.d)

    def gates(self, x):
        return torch.sigmoid(self.gate_proj(x))                     # B, L, H

    def guard(self, den):
        return den + 2 * self.eps * (den.abs() <= self.eps)

    def forward(self, x):
        b, l, c = x.shape
        fq, fk = self.phi(self.heads(self.q_proj(x))), self.phi(self.heads(self.k_proj(x)))
        v = self.heads(self.v_proj(x))
        if not self.causal:
            s = torch.einsum("blhm,blhd->bhmd", fk, v)
            z = fk.sum(1)
            out = torch.einsum("blhm,bhmd->blhd", fq, s) / self.guard(torch.einsum("blhm,bhm->blh", fq, z))[..., None]
            return self.out_proj(out.reshape(b, l, c))
        g = self.gates(x) if self.gate else torch.zeros(b, l, self.h)
        w = (1 - g) if self.gate else torch.ones(b, l, self.h)
        s = torch.zeros(b, self.h, fk.shape[-1], self.d)
        z = torch.zeros(b, self.h, fk.shape[-1])
        outs = []
        for t in range(l):                                          # the recurrence, literally
            if self.gate:
                s = g[:, t, :, None, None] * s
                z = g[:, t, :, None] * z
            s = s + w[:, t, :, None, None] * torch.einsum("bhm,bhd->bhmd", fk[:, t], v[:, t])
            z = z + w[:, t, :, None] * fk[:, t]
            num = torch.einsum("bhm,bhmd->bhd", fq[:, t], s)
            outs.append(num / self.guard(torch.einsum("bhm,bhm->bh", fq[:, t], z))[..., None])
        return self.out_proj(torch.stack(outs, 1).reshape(b, l, c))

    def implicit_map(self, x, i):
        """Row i of the effective weights a_ij = φ(q_i)·φ(k_j)·w_j·Π_{j<t≤i} g_t / den_i for batch
        item 0, mean over heads, as 1×1×L."""
        fq, fk = self.phi(self.heads(self.q_proj(x))), self.phi(self.heads(self.k_proj(x)))
        a = torch.einsum("hm,lhm->hl", fq[0, i], fk[0])             # H, L
        if self.causal:
            a[:, i + 1:] = 0
        if self.gate:
            g = self.gates(x)[0]                                     # L, H
            for j in range(i + 1):
                a[:, j] = a[:, j] * (1 - g[j]) * torch.prod(g[j + 1:i + 1], 0)
        a = a / self.guard(a.sum(-1, keepdim=True))
        return a.mean(0).reshape(1, 1, -1)


CASES = [
    # name, kwargs, (N, L), map query position
    ("random-feature", dict(embed_dim=16, num_heads=2, num_features=12), (2, 29), 19),
    ("random-feature-noncausal", dict(embed_dim=24, num_heads=3, num_features=10, causal=False, gate=False), (1, 37), 8),
    ("random-feature-arccos", dict(embed_dim=12, num_heads=2, num_features=7, feature_map="arccos", gate=False), (2, 23), 15),
]


def main():
    g = torch.Generator().manual_seed(2103_02143)
    for name, kw, (n, l), qi in CASES:
        m = RandomFeatureAttention(**kw).eval()
        common.randomise_(m, g)
        with torch.no_grad():
            m.sigma.copy_(1 + 0.5 * torch.rand(m.sigma.shape, generator=g))
            m.random_matrices.copy_(torch.randn(m.random_matrices.shape, generator=g))
            x = torch.randn(n, l, kw["embed_dim"], generator=g)
            y = m(x)
            amap = m.implicit_map(x, qi)
        common.save_fixture(name, "random-feature", kw, REFERENCE, m, x, y, amap, (0, qi))


if __name__ == "__main__":
    main()
