"""Parity fixtures for `compressive` against the Compressive Transformer's attention layer
(pip compressive-transformer-pytorch==0.4.0, `SelfAttention`; it imports mogrifier==0.0.5).

Each fixture runs the layer in eval mode over consecutive segments of one sequence, carrying the
memories (mem, compressed mem) from each call to the next, as `CompressiveTransformer` does:
  input            N×(S·seq_len)×dim: the S segments side by side
  output           the S segment outputs side by side
  mem_in, cmem_in  the memories the first segment starts from (empty or random)
  mem_<s>, cmem_<s>  the memories returned after segment s (1-based)
  map              the last segment's query row over its own positions (mean over heads)
  map_row          the full row over [cmem | mem | segment] (mean over heads)
The softmax rows are the ones the forward really used: a forward hook on the layer's
`attn_dropout` (identity in eval) records its input.

Usage: python Tools/reference/compressive.py
       (writes Tests/FastAttentionTests/Fixtures/compressive*.safetensors)
"""
import torch
from compressive_transformer_pytorch.compressive_transformer_pytorch import SelfAttention

import common

REFERENCE = "compressive_transformer_pytorch SelfAttention (pip compressive-transformer-pytorch 0.4.0)"

CASES = [
    # name, kwargs, N, segments, random initial memories (mem rows, cmem rows) or None, map query
    # ratio 3 with old-memory lengths 2 and 10: left pads of 2 and 1 (the len % ratio quirk), and
    # the conv drops trailing rows.
    ("compressive", dict(dim=12, seq_len=10, mem_len=8, cmem_len=4, cmem_ratio=3, heads=3), 2, 3, None, 7),
    ("compressive-memories", dict(dim=8, seq_len=6, mem_len=6, cmem_len=3, cmem_ratio=2, heads=2), 2, 2, (5, 2), 4),
    ("compressive-nocmem", dict(dim=8, seq_len=5, mem_len=3, cmem_len=0, cmem_ratio=4, heads=4), 1, 3, None, 0),
]


def main():
    g = torch.Generator().manual_seed(19110)
    for name, kw, n, segments, start, i in CASES:
        m = SelfAttention(**kw).eval()
        common.randomise_(m, g, std=0.4)
        dim, t = kw["dim"], kw["seq_len"]
        x = torch.randn(n, segments * t, dim, generator=g)
        if start:
            mem = torch.randn(n, start[0], dim, generator=g)
            cmem = torch.randn(n, start[1], dim, generator=g)
        else:
            mem = cmem = torch.empty(n, 0, dim)
        extra = {"mem_in": mem, "cmem_in": cmem}
        rows = []
        handle = m.attn_dropout.register_forward_hook(lambda mod, args, out: rows.append(args[0]))
        outs = []
        with torch.no_grad():
            for s in range(segments):
                y, memory, _ = m(x[:, s * t:(s + 1) * t], memories=(mem, cmem))
                mem, cmem = memory.mem, memory.compressed_mem
                outs.append(y)
                extra[f"mem_{s + 1}"] = mem.float()
                extra[f"cmem_{s + 1}"] = cmem.float()
        handle.remove()
        row = rows[-1][0, :, i].mean(0)                        # batch 0, query i: [cmem | mem | segment]
        extra["map_row"] = row
        common.save_fixture(name, "compressive", kw, REFERENCE, m, x, torch.cat(outs, 1),
                            row[-t:].reshape(1, 1, t).clone(), (0, i), extra=extra)


if __name__ == "__main__":
    main()
