"""Parity fixtures for `bp-transformer`: a pure-PyTorch reference of BP-Transformer
(Ye, Guo, Gan, Qiu, Zhang 2019, "BP-Transformer: Modelling Long-Range Context via Binary
Partitioning", arXiv 1911.04070), written for this package.

The authors' code, yzh119/BPT (commit 3ce980d), needs DGL 0.4, a custom CUDA kernel and Cython
("Currently we do not support CPU training/inference"), so it cannot run here. This file restates
its semantics without copying it:
  * graph: `graph_builder/builder.pyx` `BinaryPartition(length, triu, step)`.build_graph, redone
    below as plain loops over the same pointers (`binary_partition_edges`). Nodes are numbered
    level-major as there: L leaves, then ceil(L/2) level-1 span nodes, ..., one root. Each leaf i
    sends to itself and to every ancestor (bottom-up edges); it receives from `step` nodes per
    level on its left (and right unless triu): leaves i-1..i-step, then at each level the next
    `step` nodes further out, where a node whose span would overlap what the level below already
    covers is replaced by its left (right) child. triu=True (the LM graph) drops right edges.
  * layer: `modules/attention.py` `BPTBlock(dim_model, h, dim_ff)` with rel_pos=False: no-bias
    q/k/v/o projections, per-head logits q.k/sqrt(d_k) over each node's in-edges, softmax over
    in-edges, post-norm residual h = LN_in(h + o), h = LN_inter(h + FFN(h)); every node (leaf
    and span) is updated. Span nodes start at h = 0 (DGL's zero initialiser).
  * stack: `modules/model.py` `BinaryPartitionTransformer.layers` (n_layers BPTBlocks) without
    the embedding, positional encoding, input LayerNorm and generator: input = leaf states.
The sparse graph attention is done here as dense masked attention over the n_nodes x n_nodes
adjacency (dst rows, src columns).

Usage: python Tools/reference/bp_transformer.py
"""
import math

import torch
from torch import nn

import common

REFERENCE = "PyTorch reference of yzh119/BPT BPTBlock stack over BinaryPartition(triu=True) (3ce980d), dense masked graph attention"


def binary_partition_edges(length, step=1, triu=True):
    """(level sizes, src list, dst list) of BinaryPartition's graph, level-major node ids."""
    sizes, shift = [], [0]
    n = length
    while n >= 2:
        sizes.append(n)
        shift.append(shift[-1] + n)
        n = (n + 1) >> 1
    sizes.append(1)                                   # the root
    src, dst = [], []
    for i in range(length):
        v, base = i, 0
        left, right = v - 1, v + 1
        left_overlap = right_overlap = False
        for j in range(len(sizes)):
            for k in range(step):
                if not triu and right < sizes[j]:
                    src.append(shift[j - 1] + 2 * right + 1 if right_overlap else shift[j] + right)
                    dst.append(i)
                    right_overlap = False
                right += 1
                if left >= 0:
                    src.append(shift[j - 1] + 2 * left if left_overlap else shift[j] + left)
                    dst.append(i)
                    left_overlap = False
                left -= 1
            if left % 2 == 0:
                left_overlap = True
            if right % 2 == 1:
                right_overlap = True
            left >>= 1
            right >>= 1
            src.append(i)                             # leaf -> its ancestor at level j (j=0: self)
            dst.append(base + v)
            base += sizes[j]
            v >>= 1
    return sizes, src, dst


def node_spans(length, sizes):
    """(level, first leaf, leaf count) of every node, level-major."""
    spans = []
    for j, n in enumerate(sizes):
        w = 1 << j
        for p in range(n):
            s = p * w
            spans.append((j, s, min(length, s + w) - s))
    return spans


class PositionwiseFeedForward(nn.Module):
    def __init__(self, dim_model, dim_ff):
        super().__init__()
        self.w_1 = nn.Linear(dim_model, dim_ff)
        self.w_2 = nn.Linear(dim_ff, dim_model)

    def forward(self, x):
        return self.w_2(torch.relu(self.w_1(x)))


class BPTBlock(nn.Module):
    def __init__(self, dim_model, h, dim_ff):
        super().__init__()
        self.h, self.d_k = h, dim_model // h
        self.norm_in = nn.LayerNorm(dim_model)
        self.norm_inter = nn.LayerNorm(dim_model)
        self.proj_q = nn.Linear(dim_model, dim_model, bias=False)
        self.proj_k = nn.Linear(dim_model, dim_model, bias=False)
        self.proj_v = nn.Linear(dim_model, dim_model, bias=False)
        self.proj_o = nn.Linear(dim_model, dim_model, bias=False)
        self.ffn = nn.Sequential(PositionwiseFeedForward(dim_model, dim_ff), nn.Dropout(0.0))

    def probs(self, hn, adj):
        b, n, c = hn.shape
        split = lambda t: t.view(b, n, self.h, self.d_k).transpose(1, 2)     # B, H, n, d_k
        q, k = split(self.proj_q(hn)), split(self.proj_k(hn))
        e = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d_k)       # B, H, n(dst), n(src)
        e = e.masked_fill(~adj, float("-inf"))
        return torch.softmax(e, dim=-1)

    def forward(self, hn, adj):
        b, n, c = hn.shape
        p = self.probs(hn, adj)
        v = self.proj_v(hn).view(b, n, self.h, self.d_k).transpose(1, 2)
        a = torch.matmul(p, v).transpose(1, 2).reshape(b, n, c)
        hn = self.norm_in(hn + self.proj_o(a))
        return self.norm_inter(hn + self.ffn(hn))


class BPTStack(nn.Module):
    def __init__(self, dim_model, h=4, dim_ff=None, n_layers=2, step=4, triu=True):
        super().__init__()
        self.step, self.triu = step, triu
        self.layers = nn.ModuleList([BPTBlock(dim_model, h, dim_ff or 4 * dim_model) for _ in range(n_layers)])

    def graph(self, length):
        sizes, src, dst = binary_partition_edges(length, self.step, self.triu)
        n = sum(sizes)
        adj = torch.zeros(n, n, dtype=torch.bool)
        adj[torch.tensor(dst), torch.tensor(src)] = True
        return sizes, adj

    def forward(self, x, map_query=None):
        b, length, c = x.shape
        sizes, adj = self.graph(length)
        hn = torch.cat([x, x.new_zeros(b, sum(sizes) - length, c)], 1)     # span nodes start at 0
        for i, layer in enumerate(self.layers):
            if map_query is not None and i == len(self.layers) - 1:
                w = layer.probs(hn, adj)[0, :, map_query, :].mean(0)         # over nodes
                self.last_map = spread(w, length, sizes)
            hn = layer(hn, adj)
        return hn[:, :length]


def spread(w, length, sizes):
    """Node weights onto positions: a span node's weight divided evenly over its leaves."""
    out = torch.zeros(length)
    for node, (j, s, cnt) in enumerate(node_spans(length, sizes)):
        out[s:s + cnt] += w[node] / cnt
    return out.view(1, 1, length)


CASES = [
    # name, kwargs, (N, L, C), map query position
    ("bp-transformer", dict(dim_model=12, h=3, dim_ff=20, n_layers=2, step=2, block_size=4), (2, 27, 12), 25),
    ("bp-transformer-step1", dict(dim_model=8, h=2, dim_ff=12, n_layers=3, step=1, block_size=8), (1, 37, 8), 36),
    ("bp-transformer-short", dict(dim_model=8, h=2, dim_ff=8, n_layers=1, step=3), (2, 5, 8), 4),
]


def check_graph():
    """The edge list against the paper's promises, for the causal graph."""
    for length in (1, 2, 5, 16, 27, 37):
        for step in (1, 2, 3):
            sizes, src, dst = binary_partition_edges(length, step, True)
            spans = node_spans(length, sizes)
            for i in range(length):
                cover = [0] * length
                for s, d in zip(src, dst):
                    if d == i:
                        j, first, cnt = spans[s]
                        for t in range(first, first + cnt):
                            cover[t] += 1
                # leaf i's in-nodes tile [0, i] exactly once: causal, no overlap, full context
                assert cover == [1] * (i + 1) + [0] * (length - i - 1), (length, step, i, cover)


def main():
    check_graph()
    g = torch.Generator().manual_seed(19110)
    for name, kw, shape, qpos in CASES:
        args = {k: v for k, v in kw.items() if k != "block_size"}
        m = BPTStack(**args).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x, map_query=qpos)
        common.save_fixture(name, "bp-transformer", kw, REFERENCE, m, x, y, m.last_map, (0, qpos))


if __name__ == "__main__":
    main()
