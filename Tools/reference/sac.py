"""Parity fixtures for `sac`: Sparse Adaptive Connection (Li, Meng, Zhou, Han, Wu, Li; NeurIPS 2020,
arXiv 2003.09833). No public code exists; `SACAttention` below is a PyTorch reference written
from the paper for FastAttention (it is the reference the Swift module matches):

* The sequence is a graph; an LSTM edge predictor reads the nodes in order and, for every node i
  (source), scores candidate target nodes j with a pointer score that includes the paper's
  distance encoding:  s_ij = src_i · (tgt_j + D[bucket(j − i)]) / sqrt(edge_dim),
  src = W_s h_i (h = LSTM state), tgt = W_t x_j, D a learned embedding of log-bucketed signed
  distances (T5-style, 32 buckets, up to 128).
* To keep the cost O(N·k·D) (never N×N), the candidates of node i are its 2·window+1 neighbours
  (window and i itself; with `causal`, only the window to the left) plus `num_random` random
  positions (uniform over 0..L-1, or over 0..i when causal), the random part drawn once per length
  and injectable as the buffer `random_candidates` (L × num_random). Out-of-range and repeated
  candidates are masked.
* At inference the predictor takes the k = num_edges best-scored candidates (the paper samples
  edges and trains the predictor with REINFORCE; `sample_edges` draws k without replacement from
  the softmax over the candidates, for the injected-edges path).
* Attention over the selected edges only: per head, softmax_j∈E(i)(q_i·k_j / sqrt(d_head)),
  out_i = Σ w_ij v_j, then `to_out`. Edges are shared by the heads.

Usage: python Tools/reference/sac.py   (writes Tests/FastAttentionTests/Fixtures/sac*.safetensors)
"""
import math

import torch
import torch.nn as nn

import common

REFERENCE = "SACAttention, PyTorch reference written from the paper in Tools/reference/sac.py (no public code)"


def bucket(rel, num_buckets=32, max_distance=128):
    """Signed log buckets of relative distances j − i (T5 bidirectional): 16 per sign, 8 exact."""
    half = num_buckets // 2
    ret = (rel > 0).long() * half
    n = rel.abs()
    max_exact = half // 2
    large = max_exact + (torch.log(n.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).long()
    large = large.clamp(max=half - 1)
    return ret + torch.where(n < max_exact, n, large)


class SACAttention(nn.Module):
    def __init__(self, dim, heads=2, num_edges=8, window=2, num_random=16, hidden_dim=None, edge_dim=None, causal=False):
        super().__init__()
        hidden_dim, edge_dim = hidden_dim or dim, edge_dim or dim
        self.heads, self.num_edges, self.window, self.num_random, self.causal = heads, num_edges, window, num_random, causal
        self.edge_dim = edge_dim
        self.edge_predictor = nn.Module()
        self.edge_predictor.lstm = nn.LSTM(dim, hidden_dim, batch_first=True)
        self.edge_predictor.source = nn.Linear(hidden_dim, edge_dim, bias=False)
        self.edge_predictor.target = nn.Linear(dim, edge_dim, bias=False)
        self.edge_predictor.distance = nn.Embedding(32, edge_dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def draw_random(self, length, generator=None):
        if self.causal:
            u = torch.rand(length, self.num_random, generator=generator)
            return (u * (torch.arange(length) + 1)[:, None]).floor().long()
        return torch.randint(length, (length, self.num_random), generator=generator)

    def candidates(self, length, random_candidates):
        """(L, C) candidate positions and a validity mask (in range, first occurrence)."""
        offsets = torch.arange(-self.window, 1 if self.causal else self.window + 1)
        local = torch.arange(length)[:, None] + offsets[None, :]
        cand = torch.cat([local, random_candidates], 1)
        valid = (cand >= 0) & (cand < length)
        if self.causal:
            valid &= cand <= torch.arange(length)[:, None]
        c = cand.shape[1]
        earlier = (cand[:, :, None] == cand[:, None, :]) & valid[:, None, :] & torch.ones(c, c, dtype=torch.bool).tril(-1)
        valid &= ~earlier.any(-1)
        return cand.clamp(0, length - 1), valid

    def scores(self, x, random_candidates):
        """Pointer scores (N, L, C) over the candidates (−inf where invalid), and the candidates."""
        n, length, _ = x.shape
        cand, valid = self.candidates(length, random_candidates)
        h, _ = self.edge_predictor.lstm(x)
        src = self.edge_predictor.source(h)                                  # N, L, E
        tgt = self.edge_predictor.target(x)                                  # N, L, E
        rel = cand - torch.arange(length)[:, None]
        t = tgt[:, cand] + self.edge_predictor.distance(bucket(rel))[None]   # N, L, C, E
        s = torch.einsum("nle,nlce->nlc", src, t) / math.sqrt(self.edge_dim)
        return s.masked_fill(~valid[None], float("-inf")), cand

    def select_edges(self, s, cand):
        """Top-k candidates per node: (N, L, k) positions, −1 where fewer than k are valid."""
        k = min(self.num_edges, s.shape[-1])
        top, idx = s.topk(k, -1)
        edges = torch.gather(cand[None].expand(s.shape[0], -1, -1), 2, idx)
        return edges.masked_fill(top == float("-inf"), -1)

    def sample_edges(self, s, cand, generator):
        """k edges per node drawn without replacement from softmax over the valid candidates."""
        n, length, _ = s.shape
        p = s.softmax(-1).reshape(n * length, -1)
        k = min(self.num_edges, s.shape[-1])
        valid = torch.isfinite(s).reshape(n * length, -1).sum(-1)
        out = torch.full((n * length, k), -1, dtype=torch.long)
        for r in range(n * length):
            m = min(k, int(valid[r]))
            pick = torch.multinomial(p[r], m, replacement=False, generator=generator)
            out[r, :m] = cand.reshape(-1, cand.shape[-1])[r % length][pick]
        return out.reshape(n, length, k)

    def attend(self, x, edges):
        """Multi-head softmax attention of each node over its edges (N, L, k; −1 = none)."""
        n, length, dim = x.shape
        h = self.heads
        q = self.to_q(x).view(n, length, h, -1)
        k = self.to_k(x).view(n, length, h, -1)
        v = self.to_v(x).view(n, length, h, -1)
        safe = edges.clamp(min=0)
        bidx = torch.arange(n)[:, None, None]
        kk, vv = k[bidx, safe], v[bidx, safe]                                # N, L, k, H, d
        logits = torch.einsum("nlhd,nlkhd->nlhk", q, kk) / math.sqrt(dim // h)
        logits = logits.masked_fill((edges < 0)[:, :, None, :], float("-inf"))
        w = logits.softmax(-1)
        out = torch.einsum("nlhk,nlkhd->nlhd", w, vv).reshape(n, length, dim)
        return self.to_out(out), w

    def forward(self, x, random_candidates, edges=None):
        if edges is None:
            s, cand = self.scores(x, random_candidates)
            edges = self.select_edges(s, cand)
        return self.attend(x, edges)[0]


CASES = [
    # name, kwargs, (N, L), map query
    ("sac", dict(dim=12, heads=3, num_edges=5, window=2, num_random=6, hidden_dim=10, edge_dim=8), (2, 29), 13),
    ("sac-causal", dict(dim=8, heads=2, num_edges=4, window=3, num_random=4, causal=True), (2, 23), 11),
]


def main():
    g = torch.Generator().manual_seed(20039)
    for name, kw, (n, l), i in CASES:
        m = SACAttention(**kw).eval()
        common.randomise_(m, g, std=0.5)
        x = torch.randn(n, l, kw["dim"], generator=g)
        rnd = m.draw_random(l, g)
        with torch.no_grad():
            s, cand = m.scores(x, rnd)
            edges = m.select_edges(s, cand)
            y, w = m.attend(x, edges)
            assert torch.equal(y, m(x, rnd))
            top = s.sort(-1, descending=True)[0]
            finite = torch.isfinite(top[..., kw["num_edges"]])
            gap = (top[..., kw["num_edges"] - 1] - top[..., kw["num_edges"]])[finite].min().item()
            assert gap > 1e-4, f"{name}: k-th/k+1-th score margin {gap} too small for float32"
            sampled = m.sample_edges(s, cand, g)
            y_sampled = m.attend(x, sampled)[0]
            # Map: (0) attention weights on the selected edges (batch 0, query i, mean over heads);
            # (1) the predictor's softmax over the candidate pool.
            amap = torch.zeros(2, l)
            for j, e in enumerate(edges[0, i].tolist()):
                if e >= 0:
                    amap[0, e] += w[0, i, :, j].mean()
            p = s[0, i].softmax(-1)
            amap[1].index_add_(0, cand[i], torch.where(torch.isfinite(s[0, i]), p, torch.zeros_like(p)))
        state = dict(m.state_dict())
        common.save_fixture(name, "sac", kw, REFERENCE, m, x, y, amap.reshape(2, 1, l), (0, i),
                            extra={"state.random_candidates": rnd, "edges": edges, "sampled_edges": sampled,
                                   "sampled_output": y_sampled})
        print(f"{name}: score margin {gap:.4g}, state keys {len(state)}")


if __name__ == "__main__":
    main()
