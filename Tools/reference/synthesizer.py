"""Parity fixtures for `synthesizer` against leaderj1001's Synthesizer classes (GitHub
leaderj1001/Synthesizer-Rethinking-Self-Attention-Transformer-Models, synthesizer.py at commit
3ee5829438a8f9c063ae485e77c9ce7649d24139; not a pip package, not copied here).

Set-up:  git clone https://github.com/leaderj1001/Synthesizer-Rethinking-Self-Attention-Transformer-Models
         git -C Synthesizer-Rethinking-Self-Attention-Transformer-Models checkout 3ee5829438a8f9c063ae485e77c9ce7649d24139
Usage:   FA_REF_SYNTHESIZER=/path/to/that/checkout python Tools/reference/synthesizer.py
         (writes Tests/FastAttentionTests/Fixtures/synthesizer*.safetensors; the file imports torchvision)

The reference's bugs are kept, as the Swift port reproduces them: SynthesizerRandom applies no
softmax to R; FactorizedSynthesizerRandom is a rank-8 input-dependent QKᵀ without 1/√d;
FactorizedSynthesizerDense tiles both factors with `.repeat`.
"""
import os
import sys

import torch

import common

REPO = "leaderj1001/Synthesizer-Rethinking-Self-Attention-Transformer-Models"
COMMIT = "3ee5829438a8f9c063ae485e77c9ce7649d24139"
REFERENCE = f"{REPO} synthesizer.py @ {COMMIT[:7]}"


def load_reference():
    path = os.environ.get("FA_REF_SYNTHESIZER")
    if not path or not os.path.isfile(os.path.join(path, "synthesizer.py")):
        sys.exit(f"set FA_REF_SYNTHESIZER to a checkout of github.com/{REPO} at {COMMIT}")
    sys.path.insert(0, path)
    import synthesizer
    return synthesizer


def main():
    s = load_reference()
    cases = [
        # name, class, constructor args, input shape (N, L, in_dims), map query position
        ("synthesizer", s.SynthesizerDense, (12, 21), (2, 21, 12), 8),
        ("synthesizer-random", s.SynthesizerRandom, (12, 21), (2, 21, 12), 20),
        ("synthesizer-factorized-dense", s.FactorizedSynthesizerDense, (10, 24), (2, 24, 10), 5),
        ("synthesizer-factorized-random", s.FactorizedSynthesizerRandom, (12,), (2, 19, 12), 0),
    ]
    g = torch.Generator().manual_seed(20050)
    for name, cls, args, shape, i in cases:
        m = cls(*args).eval()
        common.randomise_(m, g)
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y, attention = m(x)
        amap = attention[0, i].reshape(1, 1, -1).clone()
        config = dict(in_dims=shape[2], sentence_length=shape[1])
        common.save_fixture(name, "synthesizer", config, f"{REFERENCE} {cls.__name__}", m, x, y, amap, (0, i))

    # The paper's dense synthesizer: W1 is d×d (the reference's is L wide), W2 maps d → L. The
    # reference's forward with its `dense` swapped for the paper's widths (hidden_dims = in_dims).
    d, l = 12, 21
    m = s.SynthesizerDense(d, l).eval()
    m.dense = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, l))
    common.randomise_(m, g)
    x = torch.randn((2, l, d), generator=g)
    with torch.no_grad():
        y, attention = m(x)
    amap = attention[0, 13].reshape(1, 1, -1).clone()
    common.save_fixture("synthesizer-paper-hidden", "synthesizer", dict(in_dims=d, sentence_length=l, hidden_dims=d),
                        f"{REFERENCE} SynthesizerDense with the paper's d-wide W1", m, x, y, amap, (0, 13))


if __name__ == "__main__":
    main()
