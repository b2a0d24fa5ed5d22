"""Parity fixtures for `tensor-low-rank` (RecoNet, arXiv 2008.00490).

RecoNet has no official code, so this is a reference written here from the paper:
Chen, Zhu, Sun, He, Li, Shen, Yu, "Tensor Low-Rank Reconstruction for Semantic Segmentation",
ECCV 2020.

  CP form of the 3D context (the paper's central equation, Sec. 3):
      A = sum_{i=1..r} lambda_i * v_C^i (x) v_H^i (x) v_W^i,   A in R^{C x H x W}
  Tensor Generation Module (TGM, Sec. 3.2): three generators, each a global average pool of the
  feature X over the two other axes, then r separate 1x1 convolutions and a sigmoid:
      v_C^i = sigmoid(Conv1x1_C^i(GAP_{H,W}(X)))   in R^C
      v_H^i = sigmoid(Conv1x1_H^i(GAP_{C,W}(X)))   in R^H   (H treated as the channel axis)
      v_W^i = sigmoid(Conv1x1_W^i(GAP_{C,H}(X)))   in R^W   (W treated as the channel axis)
  Tensor Reconstruction Module (TRM, Sec. 3.3): the weighted sum of the r rank-1 tensors, A,
  applied to the feature as an element-wise (3D) attention:  Y = X (.) A.

Choices this reference makes where the paper leaves the layer open (stated so a port can
follow them):
  - the r convolutions of a generator are stored stacked as one 1x1 conv with r*D outputs
    (rank-major: output i*D + d is conv i's output d), bias-free (as the first author's public
    TGMandTRM code), keys `channel_generator.weight` (r*C, C, 1, 1), `height_generator.weight`
    (r*H, H, 1, 1), `width_generator.weight` (r*W, W, 1, 1);
  - lambda is a learnable vector `lam` (r), used as it is (no softmax), initialised to 1/r;
  - the module returns Y = X (.) A; the head's concatenation with X and the following conv are
    not part of the attention module;
  - H and W are fixed by the generators' weights (constructor `height`, `width`).
Config keys: in_channels, height, width, rank.

Usage: /work/venv/bin/python Tools/reference/tensor_low_rank.py
"""
import torch
from torch import nn

import common

REFERENCE = "own PyTorch reference from the paper (Tools/reference/tensor_low_rank.py)"


class TensorLowRank(nn.Module):
    def __init__(self, in_channels, height, width, rank=16):
        super().__init__()
        self.c, self.h, self.w, self.rank = in_channels, height, width, rank
        self.channel_generator = nn.Conv2d(in_channels, rank * in_channels, 1, bias=False)
        self.height_generator = nn.Conv2d(height, rank * height, 1, bias=False)
        self.width_generator = nn.Conv2d(width, rank * width, 1, bias=False)
        self.lam = nn.Parameter(torch.full((rank,), 1.0 / rank))

    def factors(self, x):
        n = x.shape[0]
        pc = x.mean(dim=(2, 3), keepdim=True)                                  # N, C, 1, 1
        ph = x.permute(0, 2, 1, 3).mean(dim=(2, 3), keepdim=True)              # N, H, 1, 1
        pw = x.permute(0, 3, 1, 2).mean(dim=(2, 3), keepdim=True)              # N, W, 1, 1
        vc = torch.sigmoid(self.channel_generator(pc)).view(n, self.rank, self.c)
        vh = torch.sigmoid(self.height_generator(ph)).view(n, self.rank, self.h)
        vw = torch.sigmoid(self.width_generator(pw)).view(n, self.rank, self.w)
        return vc, vh, vw

    def attention(self, x):
        vc, vh, vw = self.factors(x)
        # sum_i lam_i vc_i (x) vh_i (x) vw_i, written as the sum the paper draws.
        a = torch.zeros(x.shape[0], self.c, self.h, self.w)
        for i in range(self.rank):
            a = a + self.lam[i] * vc[:, i, :, None, None] * vh[:, i, None, :, None] * vw[:, i, None, None, :]
        return a

    def forward(self, x):
        return x * self.attention(x)


CASES = [
    # name, config, input shape, map query (unused: bases)
    ("tensor-low-rank", dict(in_channels=8, height=5, width=7, rank=3), (2, 8, 5, 7), (0, 0)),
    ("tensor-low-rank-r5", dict(in_channels=6, height=9, width=4, rank=5), (1, 6, 9, 4), (0, 0)),
]


def main():
    g = torch.Generator().manual_seed(2008490)
    for name, cfg, shape, q in CASES:
        m = TensorLowRank(**cfg).eval()
        common.randomise_(m, g, std=0.5)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            vc, vh, vw = m.factors(x)
            bases = vh[0, :, :, None] * vw[0, :, None, :]                     # r, H, W
            a = m.attention(x)
        common.save_fixture(name, "tensor-low-rank", cfg, REFERENCE, m, x, y, bases, q,
                            extra={"attention": a})


if __name__ == "__main__":
    main()
