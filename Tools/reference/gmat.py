"""A PyTorch reference for GMAT (Gupta & Berant, "GMAT: Global Memory Augmentation for
Transformers", arXiv 2006.03274), written from the paper, and its parity fixtures.

No code of the authors exists (ag1988/gmat holds only a README), so this file is the reference:
a stack of Hugging Face `BertLayer`s (the paper augments BERT/RoBERTa) run over
[M learned memory tokens; L input tokens] with the paper's attention pattern as an additive mask:
  - memory rows attend to every memory slot and every token (dense, O(M·(M+L)));
  - token rows attend to every memory slot and, with `local_radius=r`, to the tokens j with
    |i − j| ≤ r (the sparse "windowed" main sequence the paper augments), or to all tokens
    with `local_radius=None` or ≥ L − 1 (the paper's "BERT + memory" setting).
One softmax per row, the same projections for memory and tokens (BERT's); the output is the
token rows of the last layer. The mask here is dense (clear, not fast); the Swift module never
builds it.

Usage: python Tools/reference/gmat.py   (writes Tests/FastAttentionTests/Fixtures/gmat*.safetensors)
"""
import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

import common

REFERENCE = "Tools/reference/gmat.py GMAT (HF transformers 5.23 BertLayer stack + memory, from the paper)"


class GMAT(nn.Module):
    def __init__(self, hidden_size, num_attention_heads, num_memory=8, local_radius=8, num_hidden_layers=2,
                 intermediate_size=None, hidden_act="gelu", layer_norm_eps=1e-12):
        super().__init__()
        cfg = BertConfig(hidden_size=hidden_size, num_attention_heads=num_attention_heads,
                         intermediate_size=intermediate_size or 4 * hidden_size, hidden_act=hidden_act,
                         layer_norm_eps=layer_norm_eps, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        cfg._attn_implementation = "eager"
        self.num_memory = num_memory
        self.local_radius = local_radius
        self.memory = nn.Parameter(torch.randn(num_memory, hidden_size))
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(num_hidden_layers)])

    def allowed(self, length):
        """(M+L)×(M+L) bool: which key each row may attend to."""
        m, t = self.num_memory, self.num_memory + length
        ok = torch.zeros(t, t, dtype=torch.bool)
        ok[:m, :] = True                      # memory rows: everything
        ok[m:, :m] = True                     # token rows: every memory slot
        if self.local_radius is None:
            ok[m:, m:] = True
        else:
            i = torch.arange(length)
            ok[m:, m:] = (i[:, None] - i[None, :]).abs() <= self.local_radius
        return ok

    def additive_mask(self, length):
        ok = self.allowed(length)
        return torch.where(ok, 0.0, torch.finfo(torch.float32).min)[None, None]

    def forward(self, x, return_probs=False):
        b, length, _ = x.shape
        h = torch.cat([self.memory.expand(b, -1, -1), x], 1)
        mask = self.additive_mask(length)
        probs = []
        for layer in self.layer:
            if return_probs:
                probs.append(attention_probs(layer, h, mask))
            h = layer(h, attention_mask=mask)
        out = h[:, self.num_memory:]
        return (out, probs) if return_probs else out


def attention_probs(layer, h, mask):
    """The layer's softmax weights (B, heads, M+L, M+L), from its own query/key projections."""
    att = layer.attention.self
    b, t, _ = h.shape
    nh, d = att.num_attention_heads, att.attention_head_size
    q = att.query(h).view(b, t, nh, d).transpose(1, 2)
    k = att.key(h).view(b, t, nh, d).transpose(1, 2)
    return (q @ k.transpose(-1, -2) / d ** 0.5 + mask).softmax(-1)


def reference_map(model, x, i):
    """2×1×L for batch item 0, heads averaged: (1) the last layer's direct weights of token i
    over the tokens; (2) those plus its memory weights carried to the tokens by the memory's
    reach, reach⁰ = 0 (learned slots) and reachᵗ = P_mem→tok + P_mem→mem · reachᵗ⁻¹."""
    _, probs = model(x[:1], return_probs=True)
    m = model.num_memory
    p = [pr[0].mean(0) for pr in probs]                     # (M+L)×(M+L) per layer
    reach = torch.zeros(m, x.shape[1])
    for t in range(len(p) - 1):
        reach = p[t][:m, m:] + p[t][:m, :m] @ reach
    row = p[-1][m + i]
    direct = row[m:]
    composed = direct + row[:m] @ reach
    return torch.stack([direct, composed]).unsqueeze(1)


CASES = [
    # name, kwargs, input shape (N, L, C), map query token
    ("gmat", dict(hidden_size=12, num_attention_heads=3, num_memory=3, local_radius=2, num_hidden_layers=2,
                  intermediate_size=20), (2, 13, 12), 5),
    ("gmat-full", dict(hidden_size=8, num_attention_heads=2, num_memory=2, local_radius=100, num_hidden_layers=2,
                       intermediate_size=16), (2, 9, 8), 8),
    ("gmat-wide", dict(hidden_size=8, num_attention_heads=2, num_memory=4, local_radius=3, num_hidden_layers=3,
                       intermediate_size=12), (1, 6, 8), 0),
]


def main():
    g = torch.Generator().manual_seed(20060)
    for name, kw, shape, q in CASES:
        m = GMAT(**kw).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            amap = reference_map(m, x, q)
        common.save_fixture(name, "gmat", kw,
                            REFERENCE, m, x, y, amap, (0, q))


if __name__ == "__main__":
    main()
