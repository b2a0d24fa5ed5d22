"""Parity fixtures for `reformer` against Hugging Face transformers 5.23.0
`LSHSelfAttention(config, layer_idx=0)` (models/reformer/modeling_reformer.py), built from a
`ReformerConfig(attn_layers=['lsh'], ...)` with random weights (nothing downloaded).

HF draws its rotations inside every forward as `torch.manual_seed(hash_seed); torch.randn(H, d,
n_hashes, num_buckets/2)`. The script makes the same draw and stores it as `state.random_rotations`,
which the Swift module uses instead of drawing: that is how parity is exact.

Cases: several rounds with chunks before and after (L = 40, 5 chunks a round); causal
(`is_decoder`) on L = 37, padded to 40 with an attention mask exactly as `ReformerModel` pads
(padding tokens get their own bucket and are masked as keys); and L <= chunk length (full
shared-QK attention, no hashing).

The map is query i's row over key positions, rebuilt from HF's `attention_probs` (sorted,
chunked layout) with the sort recomputed from the returned buckets and the per-round logsumexps
captured from `ReverseSort` (the round weights).

Usage: /work/venv/bin/python Tools/reference/reformer.py
"""
import os
import sys

import torch
from transformers import ReformerConfig
from transformers.models.reformer import modeling_reformer as mr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

REFERENCE = "transformers 5.23.0 LSHSelfAttention (attn_layers=['lsh'])"

CASES = [
    # name, config, (N, L), padded length, map query
    ("reformer", dict(hidden_size=24, num_attention_heads=3, attention_head_size=8, lsh_attn_chunk_length=8,
                      num_buckets=4, num_hashes=2, lsh_num_chunks_before=1, lsh_num_chunks_after=1,
                      is_decoder=False, hash_seed=3), (2, 40), 40, 13),
    ("reformer-causal", dict(hidden_size=16, num_attention_heads=2, attention_head_size=6, lsh_attn_chunk_length=8,
                             num_buckets=6, num_hashes=3, lsh_num_chunks_before=1, lsh_num_chunks_after=0,
                             is_decoder=True, hash_seed=11), (2, 37), 40, 30),
    ("reformer-full", dict(hidden_size=16, num_attention_heads=2, attention_head_size=8, lsh_attn_chunk_length=8,
                           num_buckets=4, num_hashes=2, lsh_num_chunks_before=1, lsh_num_chunks_after=0,
                           is_decoder=True, hash_seed=5), (2, 7), 7, 5),
    # factorised buckets: 2 × 4 = 8 buckets from 1 + 2 rotation columns
    ("reformer-factorised", dict(hidden_size=12, num_attention_heads=2, attention_head_size=4, lsh_attn_chunk_length=4,
                                 num_buckets=[2, 4], num_hashes=2, lsh_num_chunks_before=1, lsh_num_chunks_after=0,
                                 is_decoder=False, hash_seed=7), (1, 28), 28, 9),
]

captured = {}
_reverse_apply = mr.ReverseSort.apply


def _capture(out_vectors, logits, sorted_idx, undo_idx):
    o, lg = _reverse_apply(out_vectors, logits, sorted_idx, undo_idx)
    captured["logits"] = lg.detach().clone()            # B, H, n_hashes·L, unsorted
    return o, lg


mr.ReverseSort.apply = _capture


def reference_map(m, cfg, probs, buckets, length, n_valid, i):
    """Row i (batch 0) over key positions, mean over heads, as the forward combines it."""
    h_count, c = cfg.num_attention_heads, cfg.lsh_attn_chunk_length
    row = torch.zeros(n_valid)
    if length <= c:  # standard attention: probs B, H, L, L
        return probs[0, :, i, :n_valid].mean(0).reshape(1, 1, n_valid)
    nh = cfg.num_hashes
    for h in range(h_count):
        flat = buckets[0, h].reshape(-1)                          # n_hashes·L, offset buckets
        sorted_idx = mr._stable_argsort(flat.view(1, 1, -1), dim=-1).view(-1)
        per_hash = sorted_idx % length
        chunks = per_hash.view(-1, c)                             # n_chunks, c
        n_chunks = chunks.shape[0]
        lse = captured["logits"][0, h].view(nh, length)[:, i]
        w = torch.exp(lse - torch.logsumexp(lse, 0))
        for r in range(nh):
            slot = (sorted_idx == r * length + i).nonzero().item()
            ch, within = divmod(slot, c)
            keys = torch.cat([chunks[(ch + o) % n_chunks] for o in range(-cfg.lsh_num_chunks_before,
                                                                         cfg.lsh_num_chunks_after + 1)])
            p = probs[0, h, ch, within]
            for j, kp in enumerate(keys.tolist()):
                if kp < n_valid:
                    row[kp] += w[r] * p[j] / h_count
    return row.reshape(1, 1, n_valid)


def main():
    g = torch.Generator().manual_seed(20014)
    for name, kw, (n, l), lp, i in CASES:
        cfg = ReformerConfig(attn_layers=["lsh"], **kw)
        m = mr.LSHSelfAttention(cfg, layer_idx=0).eval()
        common.randomise_(m, g)
        # randomise_ also draws the non-persistent mask constants (-1e5 self, -1e9 masked): restore them.
        for b, v in [("self_mask_value_float32", -1e5), ("mask_value_float32", -1e9),
                     ("self_mask_value_float16", -1e3), ("mask_value_float16", -1e4)]:
            getattr(m, b).fill_(v)
        x = torch.randn(n, l, kw["hidden_size"], generator=g)
        xp = torch.cat([x, torch.zeros(n, lp - l, kw["hidden_size"])], 1)
        mask = torch.cat([torch.ones(n, l, dtype=torch.long), torch.zeros(n, lp - l, dtype=torch.long)], 1)
        with torch.no_grad():
            o = m(xp, attention_mask=mask if lp > l else None, output_attentions=True)
        y = o.hidden_states[:, :l]
        amap = reference_map(m, cfg, o.attention_probs, o.buckets, lp, l, i)
        torch.manual_seed(kw["hash_seed"])
        nb = kw["num_buckets"]
        half = sum(nb) // 2 if isinstance(nb, list) else nb // 2
        rot = torch.randn(kw["num_attention_heads"], kw["attention_head_size"], kw["num_hashes"], half)
        config = {k: v for k, v in kw.items() if k != "hash_seed"}
        common.save_fixture(name, "reformer", config, REFERENCE, m, x, y, amap, (0, i),
                            extra={"state.random_rotations": rot})


if __name__ == "__main__":
    main()
