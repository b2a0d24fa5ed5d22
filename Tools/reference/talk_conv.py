"""Parity fixtures for `talk-conv`: Time-aware Large Kernel (TaLK) convolutions (2002.03184).

The authors' code (lioutasb/TaLKConvolutions @ 501a457, `talkconv/talkconv_fairseq/talkconv_module.py`
`TaLKConv` with the CUDA kernels `TaLKConvEncoderKernel` / `TaLKConvDecoderKernel` in
`talkconv/talkconv_module/talk_convolution_cuda.cu`) needs a CUDA extension, fairseq and apex, so it
cannot run here. `TaLKConvReference` below is a pure-PyTorch reference written from the paper and
the kernels' arithmetic (not a copy): the same constructor, the same parameters (`offsets`), the
same time-major (T, B, C) layout, in eval mode (offset dropout off, no incremental state):

  K = min_len_left + min_len_right + 1          (also in decode mode, where the right side is 0)
  S = cumsum_t(x / K)                            per (batch, head, channel), heads C = H·R
  l, r = sigmoid(offsets(x))                     per token and head ([:H] left, [H:] right)
  a = clamp(t − l·min_len_left, 0, T−1),  z = clamp(t + r·min_len_right, 0, T−1)   (decode: z = t)
  out_t = (1−α_z)·S[⌊z⌋] + α_z·S[⌈z⌉] − (α_a·S[⌊a⌋−1] + (1−α_a)·S[⌈a⌉−1]),  S[−1] = 0,
          α_z = z − ⌊z⌋, α_a = ⌈a⌉ − a

i.e. a box of weight 1/K over [a, z] with linearly interpolated fractional edges. The script checks
the prefix-sum form against the explicit box weights (an O(T²) matrix built position by position)
and saves the box row of the map query (mean over heads) as the map.

Usage: python Tools/reference/talk_conv.py   (writes Tests/FastAttentionTests/Fixtures/talk-conv*.safetensors)
"""
import torch
import torch.nn as nn

import common

REFERENCE = "TaLKConv math of lioutasb/TaLKConvolutions @ 501a457 (CUDA kernels), pure-PyTorch reference in Tools/reference/talk_conv.py"


class TaLKConvReference(nn.Module):
    def __init__(self, hid_dim, offsets_dropout=0.0, decode=False, num_heads=1, min_len_left=1, min_len_right=1):
        super().__init__()
        self.hid_dim, self.decode, self.num_heads = hid_dim, decode, num_heads
        self.min_len_left, self.min_len_right = min_len_left, min_len_right
        self.offsets = nn.Linear(hid_dim, num_heads * (1 if decode else 2), bias=True)

    def edges(self, x):
        """Window edges a, z (T, B·H) in fractional positions."""
        t_len, b, _ = x.shape
        h = self.num_heads
        off = torch.sigmoid(self.offsets(x))
        t = torch.arange(t_len, dtype=x.dtype).view(t_len, 1)
        a = (t - off[:, :, :h].reshape(t_len, b * h) * self.min_len_left).clamp(0, t_len - 1)
        if self.decode:
            z = t.expand(t_len, b * h)
        else:
            z = (t + off[:, :, h:].reshape(t_len, b * h) * self.min_len_right).clamp(0, t_len - 1)
        return a, z

    def forward(self, x):
        t_len, b, c = x.shape
        h = self.num_heads
        k = self.min_len_left + self.min_len_right + 1
        s = torch.cumsum(x.reshape(t_len, b * h, c // h) * (1 / k), 0)
        s0 = torch.cat([torch.zeros_like(s[:1]), s], 0)          # s0[i + 1] = S[i], s0[0] = S[-1] = 0

        def at(idx):                                              # S[idx] for idx in -1..T-1, (T, B·H, R)
            return torch.gather(s0, 0, (idx + 1).unsqueeze(-1).expand(-1, -1, s.shape[-1]))

        a, z = self.edges(x)
        fl, cl = a.floor().long().clamp(0, t_len - 1), a.ceil().long().clamp(0, t_len - 1)
        fr, cr = z.floor().long().clamp(0, t_len - 1), z.ceil().long().clamp(0, t_len - 1)
        al, ar = (cl - a).unsqueeze(-1), (z - fr).unsqueeze(-1)
        right = (1 - ar) * at(fr) + ar * at(cr)
        left = al * at(fl - 1) + (1 - al) * at(cl - 1)
        return (right - left).reshape(t_len, b, c)

    def box(self, x):
        """The explicit weights (B·H, T, T): row t is the box over [a_t, z_t] with interpolated
        edges, times 1/K, built position by position."""
        t_len = x.shape[0]
        k = self.min_len_left + self.min_len_right + 1
        a, z = self.edges(x)
        w = torch.zeros(a.shape[1], t_len, t_len)
        for p in range(a.shape[1]):
            for t in range(t_len):
                at, zt = a[t, p].item(), z[t, p].item()
                fl, cl = int(torch.tensor(at).floor()), int(torch.tensor(at).ceil())
                fr, cr = int(torch.tensor(zt).floor()), int(torch.tensor(zt).ceil())
                al, ar = cl - at, zt - fr
                for j in range(t_len):
                    right = (1 - ar) * (j <= fr) + ar * (j <= cr)
                    left = al * (j <= fl - 1) + (1 - al) * (j <= cl - 1)
                    w[p, t, j] = (right - left) / k
        return w


CASES = [
    # name, kwargs, (N, L), map query
    ("talk-conv", dict(hid_dim=12, num_heads=3, min_len_left=4, min_len_right=7), (2, 23), 11),
    ("talk-conv-decode", dict(hid_dim=8, num_heads=2, decode=True, min_len_left=6, min_len_right=1), (2, 19), 9),
    ("talk-conv-wide", dict(hid_dim=6, num_heads=1, min_len_left=30, min_len_right=30), (1, 17), 0),
]


def main():
    g = torch.Generator().manual_seed(20020)
    for name, kw, (n, l), i in CASES:
        m = TaLKConvReference(**kw).eval()
        common.randomise_(m, g, std=0.8)
        x = torch.randn(n, l, kw["hid_dim"], generator=g)          # ours: N×L×C
        with torch.no_grad():
            xt = x.transpose(0, 1).contiguous()                    # the reference: T×B×C
            y = m(xt).transpose(0, 1)
            w = m.box(xt)                                          # B·H, T, T
            h, r = kw["num_heads"], kw["hid_dim"] // kw["num_heads"]
            explicit = torch.einsum("ptj,jpr->tpr", w, xt.reshape(l, n * h, r)).reshape(l, n, -1).transpose(0, 1)
            assert torch.allclose(explicit, y, atol=1e-5), f"{name}: prefix-sum form differs from the box"
            amap = w[:h, i].mean(0).reshape(1, 1, l)               # batch 0, mean over heads
        common.save_fixture(name, "talk-conv", kw, REFERENCE, m, x, y, amap, (0, i))


if __name__ == "__main__":
    main()
