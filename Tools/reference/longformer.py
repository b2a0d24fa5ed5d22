"""Parity fixtures for `longformer` against HF transformers 5.23.0
`LongformerSelfAttention(config, layer_id=0)` (random weights from a config, nothing downloaded).

Call convention (as `LongformerModel` prepares it): attention_mask (B, L) = +10000 for global
tokens (positions 0..global_tokens-1, as conventions.md says), 0 for local; no masked tokens.
The map is the reference's own probabilities for the map query: for a local query its
`attn_probs` row (global columns first, then the 2w+1 band) scattered to key positions; for a
global query its `global_attn_probs` row. Mean over heads, batch item 0.

HF has no dilation (only allenai's CUDA kernel has `attention_dilation`). The toolkit's
`attention_dilation=d` is checked against a dense masked reference written here from the
Longformer paper (keys i + d*m, |m| <= w, plus the global columns; global rows unchanged),
using the same HF module's weights.

Usage: python Tools/reference/longformer.py
"""
import math

import torch
from transformers import LongformerConfig
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

import common

REFERENCE = "transformers 5.23.0 LongformerSelfAttention(config, layer_id=0)"

CASES = [
    # name, config kwargs, global tokens, (N, L, C), map query, dilation
    ("longformer", dict(hidden_size=16, num_attention_heads=2, attention_window=8), 0, (2, 40, 16), 21, 1),
    ("longformer-global", dict(hidden_size=12, num_attention_heads=3, attention_window=6), 3, (2, 42, 12), 30, 1),
    ("longformer-global-query", dict(hidden_size=8, num_attention_heads=2, attention_window=4), 2, (1, 28, 8), 1, 1),
    ("longformer-dilated", dict(hidden_size=8, num_attention_heads=2, attention_window=6), 2, (2, 36, 8), 23, 2),
    ("longformer-autoregressive", dict(hidden_size=8, num_attention_heads=2, attention_window=8), 2, (1, 34, 8), 20, -1),
]


def hf_forward(m, x, g, output_attentions=True):
    b, l, _ = x.shape
    mask = torch.zeros(b, l)
    mask[:, :g] = 10000.0
    is_global = mask > 0
    return m(x, attention_mask=mask, is_index_masked=mask < 0, is_index_global_attn=is_global,
             is_global_attn=bool(is_global.any()), output_attentions=output_attentions)


def dilated_reference(m, x, g, w, d, causal=False):
    """Dense masked attention: local rows over {j : |i-j| <= w*d, (i-j) % d == 0} | {j < g} with the
    local projections; global rows (i < g) over all keys with the *_global projections. With
    `causal` (the toolkit's autoregressive mode) only j <= i, for global rows too."""
    b, l, c = x.shape
    h = m.num_heads
    hd = c // h
    split = lambda t: t.view(b, l, h, hd).transpose(1, 2)
    q, k, v = split(m.query(x)) / math.sqrt(hd), split(m.key(x)), split(m.value(x))
    i = torch.arange(l).view(l, 1)
    j = torch.arange(l).view(1, l)
    allowed = (((i - j).abs() <= w * d) & (torch.remainder(i - j, d) == 0)) | (j < g)
    if causal:
        allowed = allowed & (j <= i)
    s = (q @ k.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    p = torch.softmax(s, dim=-1)
    out = (p @ v).transpose(1, 2).reshape(b, l, c)
    if g > 0:
        qg = split(m.query_global(x)) / math.sqrt(hd)
        kg, vg = split(m.key_global(x)), split(m.value_global(x))
        sg = qg[:, :, :g] @ kg.transpose(-1, -2)
        if causal:
            sg = sg.masked_fill(j > torch.arange(g).view(g, 1), float("-inf"))
        pg = torch.softmax(sg, dim=-1)
        out[:, :g] = (pg @ vg).transpose(1, 2).reshape(b, g, c)
        p = p.clone()
        p[:, :, :g] = pg
    return out, p


def main():
    gen = torch.Generator().manual_seed(20040)
    for name, cfg, g, shape, qpos, dil in CASES:
        hf = dict(cfg, attention_window=[cfg["attention_window"]])       # one entry per layer; layer 0 is used
        config = LongformerConfig(**hf, attention_probs_dropout_prob=0.0)
        m = LongformerSelfAttention(config, layer_id=0).eval()
        common.randomise_(m, gen)
        x = torch.randn(shape, generator=gen)
        w = cfg["attention_window"] // 2
        l = shape[1]
        with torch.no_grad():
            if dil == -1:
                y, p = dilated_reference(m, x, g, w, 1, causal=True)
                amap = p[0, :, qpos, :].mean(0).reshape(1, 1, l)
            elif dil == 1:
                outs = hf_forward(m, x, g)
                y = outs[0]
                # The dense reference used for dilation agrees with HF at d = 1.
                y1, _ = dilated_reference(m, x, g, w, 1)
                assert torch.allclose(y, y1, atol=1e-5), (name, (y - y1).abs().max())
                if qpos < g:
                    row = outs[2][0, :, qpos, :]                        # H, L
                else:
                    probs = outs[1][0, qpos]                            # H, g + 2w + 1
                    row = torch.zeros(probs.shape[0], l)
                    row[:, :g] = probs[:, :g]
                    for t in range(2 * w + 1):
                        key = qpos - w + t
                        if 0 <= key < l:
                            row[:, key] += probs[:, g + t]
                amap = row.mean(0).reshape(1, 1, l)
            else:
                y, p = dilated_reference(m, x, g, w, dil)
                amap = p[0, :, qpos, :].mean(0).reshape(1, 1, l)
        kw = dict(cfg)
        if g:
            kw["global_tokens"] = g
        if dil > 1:
            kw["attention_dilation"] = dil
        if dil == -1:
            kw["autoregressive"] = True
        common.save_fixture(name, "longformer", kw, REFERENCE + ("" if dil == 1 else " weights; dense masked reference from the paper"),
                            m, x, y, amap, (0, qpos))


if __name__ == "__main__":
    main()
