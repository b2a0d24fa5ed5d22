"""Parity fixtures for `nystromformer` against Hugging Face's NystromformerSelfAttention
(pip transformers==5.23.0, built from a config with random weights — nothing is downloaded).

Usage: python Tools/reference/nystromformer.py   (writes Tests/FastAttentionTests/Fixtures/nystromformer*.safetensors)
"""
import math

import torch
from transformers import NystromformerConfig
from transformers.models.nystromformer.modeling_nystromformer import NystromformerSelfAttention

import common

REFERENCE = "transformers.NystromformerSelfAttention (transformers 5.23.0)"

CASES = [
    # name, config fields, input shape (N, L, hidden), map query position
    # landmarks + depthwise conv residual; batch 2 so the batch-global pinv coefficient matters
    ("nystromformer", dict(hidden_size=24, num_attention_heads=3, num_landmarks=8, segment_means_seq_len=40,
                           conv_kernel_size=5), (2, 40, 24), 13),
    # landmarks, no conv (conv_kernel_size None in HF, 0 here)
    ("nystromformer-noconv", dict(hidden_size=16, num_attention_heads=2, num_landmarks=6, segment_means_seq_len=36,
                                  conv_kernel_size=None), (3, 36, 16), 35),
    # num_landmarks == seq_len: HF falls back to exact softmax attention
    ("nystromformer-exact", dict(hidden_size=12, num_attention_heads=2, num_landmarks=10, segment_means_seq_len=10,
                                 conv_kernel_size=3), (2, 10, 12), 4),
]


def reference_map(mod: NystromformerSelfAttention, x: torch.Tensor, i: int) -> torch.Tensor:
    """Row i (batch item 0, mean over heads) of the implicit L×L matrix K1·pinv(K2)·K3. HF returns
    K1·pinv(K2) (B, H, L, m) with output_attentions; K3 = softmax(q̃ kᵀ) is rebuilt from its layers."""
    b, n, _ = x.shape
    h, d, m = mod.num_attention_heads, mod.attention_head_size, mod.num_landmarks
    _, probs = mod(x, output_attentions=True)
    if m == n:
        return probs[0, :, i, :].mean(dim=0).reshape(1, 1, n)
    s = math.sqrt(math.sqrt(d))
    q = mod.query(x).view(b, n, h, d).transpose(1, 2) / s
    k = mod.key(x).view(b, n, h, d).transpose(1, 2) / s
    q_land = q.reshape(b, h, m, n // m, d).mean(dim=-2)
    k3 = torch.softmax(q_land @ k.transpose(-1, -2), dim=-1)                # b, h, m, n
    row = (probs[0, :, i, :].unsqueeze(1) @ k3[0]).squeeze(1)               # h, n
    return row.mean(dim=0).reshape(1, 1, n)


def main():
    g = torch.Generator().manual_seed(21023)
    for name, fields, shape, i in CASES:
        kernel = fields["conv_kernel_size"]
        # transformers 5.x validates conv_kernel_size as an int; the model code still takes None
        # (no conv, as older configs allowed), so that case is built with an int and the conv
        # switched off on the layer the way its own forward tests it.
        cfg = NystromformerConfig(attention_probs_dropout_prob=0.0, **dict(fields, conv_kernel_size=kernel or 65))
        mod = NystromformerSelfAttention(cfg).eval()
        if kernel is None:
            mod.conv_kernel_size = None
            del mod.conv
        common.randomise_(mod, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            (y,) = mod(x)
            amap = reference_map(mod, x, i)
        settings = dict(fields, conv_kernel_size=fields["conv_kernel_size"] or 0)
        common.save_fixture(name, "nystromformer", settings, REFERENCE, mod, x, y, amap, (0, i))


if __name__ == "__main__":
    main()
