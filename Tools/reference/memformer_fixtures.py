"""Parity fixtures for `memformer` against Memformer (pip memformer==0.3.1, lucidrains; WIP, no
official code), encoder-only: `Memformer(dim, num_memory_slots, num_mem_updates, encoder_only=True,
mem_update_attn_heads, enc_num_tokens, enc_max_seq_len, enc_depth, enc_heads)`.

(Named memformer_fixtures.py: a script named memformer.py would shadow the package.)

The reference takes token ids; FastAttention's module takes features. The fixture's `input` is
what the encoder's `token_emb` makes of the ids (so reference(ids) = ours(token_emb(ids)));
`encoder.token_emb.weight` stays in the state_dict and is accepted, unused, on loading.
Each fixture runs several segments, the memory of each call feeding the next:
  input   N×(S·L)×dim embedded tokens, the S segments side by side
  output  the S `enc_out`s side by side
  mem_<s> the memory after segment s (1-based); the first segment starts from `memory_slots`
  map     for the last segment, query token i: (0) the last encoder layer's self-attention row
          with the T5 relative bias (mean over heads), (1) the first memory update's weights on
          the tokens, mean over slots and heads
The rows are recomputed from the modules' own layers and inputs (captured by forward pre-hooks)
and the encoder's own `rel_pos_emb` for the bias.

Usage: python Tools/reference/memformer_fixtures.py
       (writes Tests/FastAttentionTests/Fixtures/memformer*.safetensors)
"""
import torch
from einops import rearrange
from memformer import Memformer

import common

REFERENCE = "memformer.Memformer(encoder_only=True) (pip memformer 0.3.1)"

CASES = [
    # name, kwargs, N, L per segment, segments, map query
    ("memformer", dict(dim=12, num_memory_slots=5, num_mem_updates=1, mem_update_attn_heads=2,
                       enc_num_tokens=40, enc_max_seq_len=64, enc_depth=2, enc_heads=3), 1, 37, 2, 30),
    ("memformer-updates", dict(dim=8, num_memory_slots=3, num_mem_updates=2, mem_update_attn_heads=4,
                               enc_num_tokens=20, enc_max_seq_len=16, enc_depth=1, enc_heads=2), 2, 11, 3, 5),
]


def rows(attn, x, context, bias, mask, attend_self):
    """Softmax rows (B, H, i, j) of a memformer Attention on its inputs, from its own layers."""
    h = attn.heads
    kv_in = torch.cat((x, context), 1) if attend_self else (x if context is None else context)
    q = rearrange(attn.to_q(x), "b n (h d) -> b h n d", h=h)
    k = rearrange(attn.to_kv(kv_in).chunk(2, -1)[0], "b n (h d) -> b h n d", h=h)
    dots = torch.einsum("bhid,bhjd->bhij", q, k) * attn.scale
    if bias is not None:
        dots = dots + bias(*dots.shape[-2:])
    if mask is not None:
        dots = dots.masked_fill(~mask[:, None], -torch.finfo(dots.dtype).max)
    return dots.softmax(-1)


def main():
    g = torch.Generator().manual_seed(20100)
    for name, kw, n, l, segments, i in CASES:
        m = Memformer(encoder_only=True, **kw).eval()
        common.randomise_(m, g, std=0.4)
        ids = torch.randint(kw["enc_num_tokens"], (n, segments * l), generator=g)
        seen = {}
        last_self = m.encoder.layer_blocks.layers[-1][0].fn.fn

        def keep_self(mod, a, k):
            seen["self_x"] = a[0]

        def keep_update(mod, a, k):                      # the first update of each segment
            if "upd" not in seen:
                seen["upd"] = (a[0], a[1], k["mask"])
        h1 = last_self.register_forward_pre_hook(keep_self, with_kwargs=True)
        h2 = m.mem_updater.register_forward_pre_hook(keep_update, with_kwargs=True)
        extra, outs, mems = {}, [], None
        with torch.no_grad():
            for s in range(segments):
                seen.pop("upd", None)
                enc, mems = m(ids[:, s * l:(s + 1) * l], mems=mems)
                outs.append(enc)
                extra[f"mem_{s + 1}"] = mems
            x = m.encoder.token_emb(ids)
            a = rows(last_self, seen["self_x"], None, m.encoder.layer_blocks.rel_pos_emb, None, False)
            mem_in, enc_in, mask = seen["upd"]
            w = rows(m.mem_updater, mem_in, enc_in, None, mask, True)       # B, H, slots, slots + L
            nslots = kw["num_memory_slots"]
            amap = torch.stack([a[0, :, i].mean(0), w[0, :, :, nslots:].mean((0, 1))]).reshape(2, 1, l)
        h1.remove()
        h2.remove()
        common.save_fixture(name, "memformer", dict(kw, encoder_only=True), REFERENCE, m, x, torch.cat(outs, 1),
                            amap, (0, i), extra=extra)


if __name__ == "__main__":
    main()
