"""Parity fixtures for `big-bird` against HF transformers 5.23.0 `BigBirdBlockSparseAttention(config)`
(random weights from a config, nothing downloaded). Masks come from
`BigBirdModel.create_masks_for_block_sparse_attn` (all tokens real, or zero-padded to a multiple
of block_size with the pads masked, as `BigBirdModel` pads).

Cases:
  big-bird           eval mode: HF draws no random blocks, every "random" block is key block 0
                     (counted 1 + r times in the softmax).
  big-bird-random    train mode (no dropout in this layer) with seed 3: HF's own random blocks,
                     captured and stored as the buffer `rand_attn` (heads, L/b - 2, r) the
                     toolkit loads instead of drawing.
  big-bird-ragged    L = 50, block 4: HF on the input zero-padded to 52 with the pads masked;
                     the first 50 rows are the expected output.
  big-bird-short     L <= (5 + 2r) * block_size: BigBirdModel switches to `original_full`; the
                     reference is plain softmax attention with the same query/key/value weights.
The map is rebuilt from the reference's own softmax pieces (recorded while it runs) for the map
query, because HF's dense `attention_probs` loses the mass of duplicated blocks in eval mode.

Usage: python Tools/reference/big_bird.py
"""
import math

import torch
from transformers import BigBirdConfig
from transformers.models.big_bird import modeling_big_bird as mbb

import common

REFERENCE = "transformers 5.23.0 BigBirdBlockSparseAttention(config)"


class SoftmaxRecorder:
    """Records every softmax the layer takes (first, second, middle, second-last, last part)."""

    def __init__(self):
        self.outputs = []
        self.original = mbb.nn.functional.softmax

    def __enter__(self):
        def rec(*a, **k):
            y = self.original(*a, **k)
            self.outputs.append(y)
            return y
        mbb.nn.functional.softmax = rec
        return self

    def __exit__(self, *exc):
        mbb.nn.functional.softmax = self.original


def map_row(pieces, rand_attn, qpos, b, nb, l):
    """Row of batch 0 for query qpos (mean over heads) from the recorded softmax pieces."""
    first, second, middle, second_last, last = pieces
    qb, r_in = divmod(qpos, b)
    h = first.shape[1]
    row = torch.zeros(h, nb * b)
    blocks = lambda idx: torch.cat([torch.arange(i * b, (i + 1) * b) for i in idx])
    if qb == 0:
        row[:, :] = first[0, :, r_in]
    elif qb == nb - 1:
        row[:, :] = last[0, :, r_in]
    else:
        for hh in range(h):
            rnd = rand_attn[hh]                                   # (nb - 2, r)
            if qb == 1:
                keys, w = [0, 1, 2, nb - 1] + rnd[0].tolist(), second[0, hh, r_in]
            elif qb == nb - 2:
                keys, w = [0, nb - 3, nb - 2, nb - 1] + rnd[-1].tolist(), second_last[0, hh, r_in]
            else:
                keys = [0, qb - 1, qb, qb + 1] + rnd[qb - 1].tolist() + [nb - 1]
                w = middle[0, hh, qb - 2, r_in]
            row[hh].index_add_(0, blocks(keys), w)
    return row[:, :l].mean(0).reshape(1, 1, l)


def run_case(name, cfg, shape, qpos, train_seed=None, gen=None):
    config = BigBirdConfig(**cfg, attention_type="block_sparse", max_position_embeddings=512,
                           attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
    m = mbb.BigBirdBlockSparseAttention(config, seed=train_seed)
    m.train(train_seed is not None)
    common.randomise_(m, gen)
    x = torch.randn(shape, generator=gen)
    n, l, c = shape
    b, r = cfg["block_size"], cfg["num_random_blocks"]
    kw = dict(cfg)
    if l <= (5 + 2 * r) * b:
        # BigBirdModel's switch to original_full: plain softmax attention, same weights.
        with torch.no_grad():
            hd = c // cfg["num_attention_heads"]
            split = lambda t: t.view(n, l, -1, hd).transpose(1, 2)
            p = torch.softmax(split(m.query(x)) @ split(m.key(x)).transpose(-1, -2) / math.sqrt(hd), dim=-1)
            y = (p @ split(m.value(x))).transpose(1, 2).reshape(n, l, c)
            amap = p[0, :, qpos].mean(0).reshape(1, 1, l)
        common.save_fixture(name, "big-bird", kw, REFERENCE + " (BigBirdModel's original_full fallback)", m, x, y,
                            amap, (0, qpos))
        return
    lp = (l + b - 1) // b * b
    xp = torch.cat([x, torch.zeros(n, lp - l, c)], dim=1)
    mask = torch.cat([torch.ones(n, l), torch.zeros(n, lp - l)], dim=1)
    blocked, band, from_m, to_m = mbb.BigBirdModel.create_masks_for_block_sparse_attn(mask, b)
    captured = {}
    original_plan = m._bigbird_block_rand_mask_with_head

    def capture(*a, **k):
        out = original_plan(*a, **k)
        captured["rand_attn"] = [t.copy() for t in out]
        return out
    m._bigbird_block_rand_mask_with_head = capture
    with torch.no_grad(), SoftmaxRecorder() as rec:
        y, _ = m(xp, band_mask=band, from_mask=from_m, to_mask=to_m, from_blocked_mask=blocked,
                 to_blocked_mask=blocked)
    del m._bigbird_block_rand_mask_with_head
    y = y[:, :l]
    rand_attn = torch.tensor(captured["rand_attn"]).long()          # heads, nb - 2, r
    amap = map_row(rec.outputs, rand_attn, qpos, b, lp // b, l)
    if train_seed is not None:
        m.register_buffer("rand_attn", rand_attn)
    else:
        assert int(rand_attn.abs().sum()) == 0, "eval mode draws no random blocks"
    common.save_fixture(name, "big-bird", kw, REFERENCE + (" train mode, seed %d" % train_seed if train_seed is not None
                                                           else " eval mode"), m, x, y, amap, (0, qpos))


def main():
    gen = torch.Generator().manual_seed(20071)
    base = dict(hidden_size=16, num_attention_heads=2, block_size=4, num_random_blocks=2, use_bias=True)
    run_case("big-bird", base, (2, 52, 16), 27, gen=gen)
    run_case("big-bird-random", dict(base, hidden_size=12, num_attention_heads=3), (1, 60, 12), 33, train_seed=3, gen=gen)
    run_case("big-bird-ragged", dict(base, num_random_blocks=1, use_bias=False), (1, 50, 16), 49, gen=gen)
    run_case("big-bird-short", dict(base, num_random_blocks=1), (1, 26, 16), 9, gen=gen)


if __name__ == "__main__":
    main()
