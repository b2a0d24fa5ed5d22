"""A PyTorch reference for ETC's global-local attention (Ainslie et al., "ETC: Encoding Long and
Structured Inputs in Transformers", arXiv 2004.08483), and its parity fixtures.

The only code of the authors is TF2/Keras: google-research/google-research `etcmodel`
(`layers/attention.py` FusedGlobalLocalAttention, QkvRelativeAttention,
QkvRelativeLocalAttention; `layers/transformer.py` GlobalLocalTransformerLayers;
`layers/wrappers.py` ResidualBlock; `feature_utils.py` RelativePositionGenerator;
`models/input_utils.py` make_fixed_block_side_inputs). This file re-states that math in PyTorch
(written here, not copied), taking the "full" attention path etcmodel itself uses for
L ≤ 1024 (dense logits with the local mask; the Swift module never builds them):

  - g global tokens, one per block of B long tokens ("fixed blocks"), all starting from one
    learned `global_token_embedding` (make_fixed_block_side_inputs gives every global token the
    same id); B = `num_tokens_per_block` when given, else B = ⌈L / global_seq_len⌉, so at most
    `global_seq_len` global tokens (ETC's fixed global length; this keeps the cost linear in L);
  - fused attention: a long token attends in ONE softmax to the long tokens within
    `local_radius` (l2l) and to the global tokens (l2g); a global token in one softmax to all
    global tokens (g2g) and all long tokens (g2l); `use_hard_l2g_mask` / `use_hard_g2l_mask`
    restrict l2g / g2l to the token's own block;
  - relative positions (`relative_pos_max_distance` M > 0): logits += q·E[id] + b[id] before the
    1/√d scale, ids clipped offsets (0; 1..M right; M+1..2M left) for l2l and g2g, and
    2M+1 / 2M+2 for "other block" / "own block" in l2g and g2l; separate tables for long and
    global queries; masked logits get −10000 after the scale;
  - projections shared between the four pieces by default (`share_qkv_projections`), or per
    piece; separate long/global output projections unless `share_att_output_projection`;
  - each layer: post-LayerNorm (eps 1e-12) residual around the fused attention (separate norms
    for long and global), then a gelu (tanh form) feed-forward residual block shared by long and
    global (`share_feed_forward_params`); `use_pre_activation_order` moves the norms in front.

Output: the long tokens of the last layer.

Usage: python Tools/reference/etc.py   (writes Tests/FastAttentionTests/Fixtures/etc*.safetensors)
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

import common

REFERENCE = "Tools/reference/etc.py ETC (PyTorch restatement of google-research etcmodel GlobalLocalTransformerLayers, fixed blocks)"


def relative_id(offset, max_distance):
    """etcmodel RelativePositionGenerator id of key − query `offset` (tensor)."""
    return torch.where(offset >= 0, offset.clamp(max=max_distance), max_distance + (-offset).clamp(max=max_distance))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


class FeedForward(nn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.dense_0 = nn.Linear(hidden, intermediate)
        self.dense_1 = nn.Linear(intermediate, hidden)
        self.layer_norm = nn.LayerNorm(hidden, eps=1e-12)

    def block(self, x, pre):
        if pre:
            return x + self.dense_1(gelu_tanh(self.dense_0(self.layer_norm(x))))
        return self.layer_norm(x + self.dense_1(gelu_tanh(self.dense_0(x))))


class FusedGlobalLocalAttention(nn.Module):
    def __init__(self, hidden, heads, local_radius, relative_vocab_size, share_kv, share_qkv, share_output):
        super().__init__()
        self.heads, self.d, self.r = heads, hidden // heads, local_radius
        lin = lambda: nn.Linear(hidden, hidden)
        self.long_query_projection, self.l2l_key_projection, self.l2l_value_projection = lin(), lin(), lin()
        if not (share_qkv or share_kv):
            self.l2g_key_projection, self.l2g_value_projection = lin(), lin()
        if not share_qkv:
            self.global_query_projection, self.g2g_key_projection, self.g2g_value_projection = lin(), lin(), lin()
            if not share_kv:
                self.g2l_key_projection, self.g2l_value_projection = lin(), lin()
        self.long_output_projection = lin()
        if not share_output:
            self.global_output_projection = lin()
        self.share_kv, self.share_qkv, self.share_output = share_kv, share_qkv, share_output
        if relative_vocab_size:
            for side in ("long", "global"):
                setattr(self, f"{side}_relative_emb_table", nn.Parameter(torch.randn(relative_vocab_size, heads, self.d) * 0.5))
                setattr(self, f"{side}_relative_bias_table", nn.Parameter(torch.zeros(relative_vocab_size, heads)))
        self.relative = bool(relative_vocab_size)

    def proj(self, name):
        """The projection a piece uses under the sharing options (etcmodel's aliasing)."""
        if self.share_qkv:
            table = {"global_query_projection": "long_query_projection"}
            for piece in ("l2g", "g2g", "g2l"):
                table[f"{piece}_key_projection"] = "l2l_key_projection"
                table[f"{piece}_value_projection"] = "l2l_value_projection"
        elif self.share_kv:
            table = {"l2g_key_projection": "l2l_key_projection", "l2g_value_projection": "l2l_value_projection",
                     "g2l_key_projection": "g2g_key_projection", "g2l_value_projection": "g2g_value_projection"}
        else:
            table = {}
        if self.share_output:
            table["global_output_projection"] = "long_output_projection"
        return getattr(self, table.get(name, name))

    def heads_of(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d)

    def attend(self, q, k, v, allowed, rel_ids, side):
        """q B×Q×H×d, k/v B×K×H×d, allowed Q×K bool, rel_ids Q×K long or None → B×Q×H×d, probs B×H×Q×K."""
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k)
        if rel_ids is not None:
            emb, bias = getattr(self, f"{side}_relative_emb_table"), getattr(self, f"{side}_relative_bias_table")
            allrel = torch.einsum("bqhd,rhd->bhqr", q, emb) + bias.t()[None, :, None, :]
            idx = rel_ids[None, None].expand(q.shape[0], self.heads, -1, -1)
            scores = scores + torch.gather(allrel, 3, idx)
        scores = scores / math.sqrt(self.d)
        scores = scores + (-10000.0) * (~allowed).float()
        probs = scores.softmax(-1)
        return torch.einsum("bhqk,bkhd->bqhd", probs, v), probs

    def forward(self, long, glob, side):
        b, n, _ = long.shape
        p = self.proj
        # long queries over [long keys (local), global keys]
        q = self.heads_of(p("long_query_projection")(long))
        k = torch.cat([self.heads_of(p("l2l_key_projection")(long)), self.heads_of(p("l2g_key_projection")(glob))], 1)
        v = torch.cat([self.heads_of(p("l2l_value_projection")(long)), self.heads_of(p("l2g_value_projection")(glob))], 1)
        long_ctx, long_probs = self.attend(q, k, v, side["long_allowed"], side.get("long_ids"), "long")
        # global queries over [global keys, long keys]
        qg = self.heads_of(p("global_query_projection")(glob))
        kg = torch.cat([self.heads_of(p("g2g_key_projection")(glob)), self.heads_of(p("g2l_key_projection")(long))], 1)
        vg = torch.cat([self.heads_of(p("g2g_value_projection")(glob)), self.heads_of(p("g2l_value_projection")(long))], 1)
        glob_ctx, glob_probs = self.attend(qg, kg, vg, side["global_allowed"], side.get("global_ids"), "global")
        long_out = p("long_output_projection")(long_ctx.reshape(b, n, -1))
        glob_out = p("global_output_projection")(glob_ctx.reshape(b, glob.shape[1], -1))
        return long_out, glob_out, long_probs, glob_probs


class Layer(nn.Module):
    def __init__(self, hidden, heads, intermediate, local_radius, relative_vocab_size, share_ff, share_kv, share_qkv,
                 share_output, pre):
        super().__init__()
        self.fused_att = FusedGlobalLocalAttention(hidden, heads, local_radius, relative_vocab_size, share_kv, share_qkv,
                                                   share_output)
        self.layer_norm_0 = nn.LayerNorm(hidden, eps=1e-12)
        self.layer_norm_1 = nn.LayerNorm(hidden, eps=1e-12)
        if share_ff:
            self.feed_forward = FeedForward(hidden, intermediate)
        else:
            self.long_feed_forward = FeedForward(hidden, intermediate)
            self.global_feed_forward = FeedForward(hidden, intermediate)
        self.share_ff, self.pre = share_ff, pre

    def forward(self, long, glob, side):
        if self.pre:
            la, ga, lp, gp = self.fused_att(self.layer_norm_0(long), self.layer_norm_1(glob), side)
            long, glob = long + la, glob + ga
        else:
            la, ga, lp, gp = self.fused_att(long, glob, side)
            long, glob = self.layer_norm_0(long + la), self.layer_norm_1(glob + ga)
        lf = self.feed_forward if self.share_ff else self.long_feed_forward
        gf = self.feed_forward if self.share_ff else self.global_feed_forward
        return lf.block(long, self.pre), gf.block(glob, self.pre), lp, gp


class ETC(nn.Module):
    def __init__(self, hidden_size, num_attention_heads, local_radius, num_tokens_per_block=None, global_seq_len=16,
                 num_hidden_layers=2,
                 intermediate_size=None, relative_pos_max_distance=0, relative_vocab_size=None,
                 share_feed_forward_params=True, share_kv_projections=False, share_qkv_projections=True,
                 share_att_output_projection=False, use_hard_g2l_mask=False, use_hard_l2g_mask=False,
                 use_pre_activation_order=False):
        super().__init__()
        m = relative_pos_max_distance
        if m > 0 and relative_vocab_size is None:
            relative_vocab_size = 2 * m + 3
        self.local_radius, self.tokens_per_block, self.global_seq_len = local_radius, num_tokens_per_block, global_seq_len
        self.max_distance = m
        self.hard_g2l, self.hard_l2g = use_hard_g2l_mask, use_hard_l2g_mask
        self.global_token_embedding = nn.Parameter(torch.randn(hidden_size))
        self.layers = nn.ModuleList([
            Layer(hidden_size, num_attention_heads, intermediate_size or 4 * hidden_size, local_radius,
                  relative_vocab_size if m > 0 else None, share_feed_forward_params, share_kv_projections,
                  share_qkv_projections, share_att_output_projection, use_pre_activation_order)
            for _ in range(num_hidden_layers)])

    def side_inputs(self, n):
        """Fixed blocks: masks and relative ids as make_fixed_block_side_inputs +
        make_global_local_transformer_side_inputs give them (no padding)."""
        self.block = self.tokens_per_block or -(-n // self.global_seq_len)
        g = (n + self.block - 1) // self.block
        i, k = torch.arange(n), torch.arange(g)
        sentence = i // self.block
        own = sentence[:, None] == k[None, :]                                  # n×g
        local = (i[None, :] - i[:, None]).abs() <= self.local_radius          # n×n
        l2g = own if self.hard_l2g else torch.ones(n, g, dtype=torch.bool)
        g2l = own.t() if self.hard_g2l else torch.ones(g, n, dtype=torch.bool)
        side = {"long_allowed": torch.cat([local, l2g], 1),
                "global_allowed": torch.cat([torch.ones(g, g, dtype=torch.bool), g2l], 1)}
        if self.max_distance > 0:
            v0 = 2 * self.max_distance + 1
            l2l_ids = relative_id(i[None, :] - i[:, None], self.max_distance)
            g2g_ids = relative_id(k[None, :] - k[:, None], self.max_distance)
            side["long_ids"] = torch.cat([l2l_ids, v0 + own.long()], 1)
            side["global_ids"] = torch.cat([g2g_ids, v0 + own.t().long()], 1)
        return g, side

    def forward(self, x, return_probs=False):
        b, n, c = x.shape
        g, side = self.side_inputs(n)
        long, glob = x, self.global_token_embedding.expand(b, g, c)
        probs = []
        for layer in self.layers:
            long, glob, lp, gp = layer(long, glob, side)
            probs.append((lp, gp))
        return (long, probs) if return_probs else long


def reference_map(model, x, i):
    """3×1×L for batch item 0, heads averaged, last layer: (1) l2l weights of long token i;
    (2) its l2g weights, each global token's spread evenly over that token's block; (3) l2l plus
    the l2g weights carried to the tokens by the globals' reach: reach⁰ = 0,
    reachᵗ = P_g2l + P_g2g·reachᵗ⁻¹ over the earlier layers."""
    _, probs = model(x[:1], return_probs=True)
    n = x.shape[1]
    g = (n + model.block - 1) // model.block
    reach = torch.zeros(g, n)
    for lp, gp in probs[:-1]:
        p = gp[0].mean(0)                                                     # g×(g+n)
        reach = p[:, g:] + p[:, :g] @ reach
    row = probs[-1][0][0].mean(0)[i]                                           # n + g: long keys, then global keys
    local, l2g = row[:n], row[n:]
    sizes = torch.bincount(torch.arange(n) // model.block, minlength=g).float()
    spread = (l2g / sizes)[torch.arange(n) // model.block]
    composed = local + l2g @ reach
    return torch.stack([local, spread, composed]).unsqueeze(1)


CASES = [
    # name, kwargs, input shape (N, L, C), map query token
    ("etc", dict(hidden_size=12, num_attention_heads=3, local_radius=2, num_tokens_per_block=4, num_hidden_layers=2,
                 intermediate_size=16, relative_pos_max_distance=3), (2, 13, 12), 6),
    ("etc-unshared-hard", dict(hidden_size=8, num_attention_heads=2, local_radius=3, num_tokens_per_block=5,
                               num_hidden_layers=2, intermediate_size=12, relative_pos_max_distance=2,
                               relative_vocab_size=9, share_feed_forward_params=False, share_qkv_projections=False,
                               share_kv_projections=True, use_hard_g2l_mask=True, use_hard_l2g_mask=True),
     (2, 11, 8), 10),
    ("etc-plain", dict(hidden_size=8, num_attention_heads=2, local_radius=1, global_seq_len=4,
                       num_hidden_layers=2, intermediate_size=8, relative_pos_max_distance=0,
                       share_qkv_projections=False, share_att_output_projection=True, use_pre_activation_order=True),
     (1, 10, 8), 0),
    # 35 global tokens: more than one tile of 32 global rows.
    ("etc-many-globals", dict(hidden_size=8, num_attention_heads=2, local_radius=2, num_tokens_per_block=2,
                              num_hidden_layers=2, intermediate_size=8, relative_pos_max_distance=1),
     (1, 70, 8), 33),
]


def main():
    gen = torch.Generator().manual_seed(20040)
    for name, kw, shape, q in CASES:
        m = ETC(**kw).eval()
        common.randomise_(m, gen)
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            y = m(x)
            amap = reference_map(m, x, q)
        common.save_fixture(name, "etc", kw, REFERENCE, m, x, y, amap, (0, q))


if __name__ == "__main__":
    main()
