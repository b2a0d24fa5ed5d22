"""Reference and parity fixtures for `input-independent`: attention with learned,
input-independent weights, after Wu, Hsieh, Chen, Chi, Lee, "Input-independent Attention Weights
Are Expressive Enough: A Study of Attention in Self-supervised Audio Transformers" (arXiv 2006.05174).

The paper publishes no code. This module is written here from the paper's description (each head's
attention weights are a learned L×L matrix that does not depend on the input, softmax-normalised
and applied to the values of a Mockingjay-style self-attention layer whose query and key
projections are thereby dropped); the Swift port `InputIndependentAttention` matches it. The
hand-crafted `init="local"` start (Gaussian bands of width 2^h per head, from the diagonal to
near-uniform) is this toolkit's choice in the spirit of the paper's "specific set of attention
weights" used for initialisation, not the paper's exact set.

Usage: python Tools/reference/input_independent.py
       (writes Tests/FastAttentionTests/Fixtures/input-independent*.safetensors)
"""
import math

import torch
from torch import nn

import common

REFERENCE = "Tools/reference/input_independent.py InputIndependentAttention (written from arXiv 2006.05174; no official code)"


class InputIndependentAttention(nn.Module):
    """y = to_out(concat_h softmax(A_h) · to_v(x)_h), A_h ∈ R^{L×L} learned (`attention_logits`).

    causal=True sets A_h[i, j] = -inf for j > i before the softmax."""

    def __init__(self, dim, seq_len, heads=8, dim_head=None, causal=False, init="local"):
        super().__init__()
        assert dim % heads == 0 or dim_head is not None, "dim must be divisible by heads unless dim_head is given"
        self.heads, self.seq_len, self.causal = heads, seq_len, causal
        self.dim_head = dim_head or dim // heads
        inner = heads * self.dim_head
        self.attention_logits = nn.Parameter(torch.empty(heads, seq_len, seq_len))
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.Linear(inner, dim)
        with torch.no_grad():
            if init == "random":
                bound = math.sqrt(3.0 / seq_len)           # xavier-uniform of one L×L head
                self.attention_logits.uniform_(-bound, bound)
            elif init == "local":
                pos = torch.arange(seq_len, dtype=torch.float32)
                dist2 = (pos[:, None] - pos[None, :]) ** 2
                for h in range(heads):
                    self.attention_logits[h] = -dist2 / (2.0 * 4.0 ** h)
            else:
                raise ValueError(f"init must be 'local' or 'random', not {init!r}")

    def attention(self) -> torch.Tensor:
        """The weights every input gets: softmax over keys of the (masked) logits, (H, L, L)."""
        logits = self.attention_logits
        if self.causal:
            future = torch.ones(self.seq_len, self.seq_len, dtype=torch.bool).triu(1)
            logits = logits.masked_fill(future, float("-inf"))
        return logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        assert n == self.seq_len, f"L must equal seq_len={self.seq_len}, got {n}"
        v = self.to_v(x).view(b, n, self.heads, self.dim_head).transpose(1, 2)   # b, h, n, dh
        out = self.attention() @ v                                               # b, h, n, dh
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


CASES = [
    # name, kwargs, input shape (N, L, dim), map query position
    ("input-independent", dict(dim=12, seq_len=22, heads=3), (2, 22, 12), 7),
    ("input-independent-causal", dict(dim=10, seq_len=15, heads=2, dim_head=4, causal=True), (2, 15, 10), 6),
]


def main():
    g = torch.Generator().manual_seed(20065)
    for name, kw, shape, i in CASES:
        m = InputIndependentAttention(**kw).eval()
        common.randomise_(m, g, std=1.0)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = m.attention()[:, i, :].mean(dim=0).reshape(1, 1, -1)
        common.save_fixture(name, "input-independent", kw, REFERENCE, m, x, y, amap, (0, i))


if __name__ == "__main__":
    main()
