"""Parity fixtures for `bp-transformer` against yzh119/BPT (commit 3ce980d).

BPT runs only with DGL and its own CUDA kernels. What is used from the repository is the graph:
`graph_builder/builder.pyx` `BinaryPartition(length, triu, step)`, compiled with Cython
(pip install cython==3.0.11) from a checkout named by FA_REF_BPT. The block's math
(`modules/attention.py` `BPTBlock.forward`: q, k, v projections without bias; e = q.k / sqrt(d_k)
over each node's in-edges; edge softmax; a = sum e v; h = norm_in(h + proj_o(a));
h = norm_inter(h + ffn(h))) is restated here as dense masked attention over the edge multiset
(a duplicate edge counts twice, as in DGL's edge softmax), in a module with BPTBlock's
attribute names so the state_dict keys are BPTBlock's. Span nodes start at zero (DGL's
zero initializer), leaves are the input; the leaves' new states are the output. The builder's
edges are stored in the fixture (`edges_src`, `edges_dst`) so the Swift graph is checked too.

Usage: FA_REF_BPT=/path/to/BPT python Tools/reference/bp_transformer.py
"""
import math
import os
import subprocess
import sys

import torch
from torch import nn

import common

ROOT = os.environ.get("FA_REF_BPT")
if not ROOT or not os.path.isfile(os.path.join(ROOT, "graph_builder", "builder.pyx")):
    sys.exit("set FA_REF_BPT to a checkout of github.com/yzh119/BPT (commit 3ce980d)")
GB = os.path.join(ROOT, "graph_builder")
if not any(f.startswith("graphbuilder") and f.endswith(".so") for f in os.listdir(GB)):
    subprocess.run([sys.executable, "-c", (
        "import numpy as np; from setuptools import setup, Extension; from Cython.Build import cythonize;"
        "setup(name='gb', ext_modules=cythonize([Extension('graphbuilder', ['builder.pyx'], language='c++',"
        " include_dirs=[np.get_include()])], language_level=3), script_args=['build_ext', '--inplace'])")],
        cwd=GB, check=True, stdout=subprocess.DEVNULL)
sys.path.insert(0, GB)
from graphbuilder import BinaryPartition  # noqa: E402

REFERENCE = "yzh119/BPT 3ce980d BinaryPartition graph (compiled builder) + BPTBlock math as dense masked PyTorch"


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.w_1 = nn.Linear(d, ff)
        self.w_2 = nn.Linear(ff, d)


class Block(nn.Module):
    """BPTBlock's parameters under its attribute names; forward as dense masked attention."""

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

    def forward(self, x, counts):
        b, l, c = x.shape
        nodes = counts.shape[0]
        hz = torch.cat([x, torch.zeros(b, nodes - l, c)], 1)
        split = lambda t: t.view(b, nodes, self.h, self.d_k).transpose(1, 2)
        q, k, v = split(self.proj_q(hz)), split(self.proj_k(hz)), split(self.proj_v(hz))
        s = q @ k.transpose(-1, -2) / math.sqrt(self.d_k)
        s = s.masked_fill(counts == 0, float("-inf"))
        e = torch.exp(s - s.amax(-1, keepdim=True)) * counts
        p = e / e.sum(-1, keepdim=True)
        self.last_probs = p
        a = (p @ v).transpose(1, 2).reshape(b, nodes, c)
        hz = self.norm_in(hz + self.proj_o(a))
        f = self.ffn[0]
        hz = self.norm_inter(hz + f.w_2(torch.relu(f.w_1(hz))))
        return hz[:, :l]


def edge_counts(g):
    src, dst, _ = g.get_edges()
    n = g.number_of_nodes
    counts = torch.zeros(n, n)
    for s, d in zip(src.tolist(), dst.tolist()):
        counts[d, s] += 1
    return counts, torch.tensor(src.astype("float32")), torch.tensor(dst.astype("float32"))


def node_spans(g, l):
    spans, n, lvl = [], l, 0
    sizes = []
    while n >= 2:
        sizes.append(n)
        n = (n + 1) >> 1
    sizes.append(1)
    for lvl, size in enumerate(sizes):
        for v in range(size):
            spans.append((0, l) if lvl == len(sizes) - 1 and len(sizes) > 1 else (min(l, v << lvl), min(l, (v + 1) << lvl)))
    return spans


CASES = [
    ("bp-transformer", dict(dim_model=12, h=3, dim_ff=24, step=2, triu=False), (2, 45, 12), 30),
    ("bp-transformer-triu", dict(dim_model=8, h=2, dim_ff=16, step=1, triu=True), (1, 37, 8), 36),
    ("bp-transformer-step4", dict(dim_model=8, h=2, dim_ff=16, step=4, triu=False), (1, 50, 8), 3),
]


def main():
    gen = torch.Generator().manual_seed(19110)
    for name, kw, shape, qpos in CASES:
        g = BinaryPartition(shape[1], kw["triu"], kw["step"])
        counts, src, dst = edge_counts(g)
        m = Block(kw["dim_model"], kw["h"], kw["dim_ff"]).eval()
        common.randomise_(m, gen)
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            y = m(x, counts)
            p = m.last_probs[0, :, qpos].mean(0)
            amap = torch.zeros(shape[1])
            for u, (lo, hi) in enumerate(node_spans(g, shape[1])):
                if p[u] != 0:
                    amap[lo:hi] += p[u] / (hi - lo)
        common.save_fixture(name, "bp-transformer", kw, REFERENCE, m, x, y, amap.reshape(1, 1, -1), (0, qpos),
                            extra={"edges_src": src, "edges_dst": dst})


if __name__ == "__main__":
    main()
