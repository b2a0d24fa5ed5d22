#ifndef FASTATTENTION_SEQLOOPS_H
#define FASTATTENTION_SEQLOOPS_H
/* Kernels for the sequential loops of TaLKConv (prefix sums, box gather) and SAC's LSTM edge
   predictor, with runtime dispatch (AVX2+FMA, portable C otherwise); see seqloops.c.
   Private: no stable API. */
#include <stddef.h>
#include <stdint.h>

/* Running sum over `len` rows of `width` channels, as torch.cumsum on float32 (accumulated in
   double, rounded to float per row): s row 0 is 0, s[t + 1][j] = (float) Σ_{u ≤ t} (float)(x[u][j]·inv).
   x has row stride ldx, s row stride lds ((len + 1) rows). */
void fa_talk_prefix(const float *x, size_t len, size_t ldx, size_t width, float inv,
                    float *s, size_t lds);

/* TaLK box read-out for `count` tokens of `width` channels: with rows (rf, rc, lf, lc) =
   rows[4t..4t+3] of s (stride lds) and (ar, al) = alpha[2t], alpha[2t+1],
   y[t][j] = ((1 − ar)·s[rf][j] + ar·s[rc][j]) − (al·s[lf][j] + (1 − al)·s[lc][j]),
   each product and sum rounded separately (no FMA), as the PyTorch reference. y has stride ldy. */
void fa_talk_gather(const float *s, size_t lds, size_t width, size_t count,
                    const int32_t *rows, const float *alpha, float *y, size_t ldy);

/* One-layer LSTM over `len` steps from zero state (torch.nn.LSTM gate order i, f, g, o):
   pre is len×4h (the input part x·W_ihᵀ plus both biases), whh_t is W_hhᵀ (h×4h, row j holds
   column j of W_hh), out is len×h (the hidden states). work needs 8·h + 16 floats.
   Gates: g = pre[t] + Σ_j whh_t[j]·h[j] (j in order, fused multiply-add), then
   c = σ(f)·c + σ(i)·tanh(g), h = σ(o)·tanh(c). */
void fa_lstm_forward(const float *pre, const float *whh_t, size_t len, size_t hd,
                     float *out, float *work);

/* SAC pointer scores of one node over `count` candidates: out[c] = scale · Σ_e src[e]·(tgt[cand[c]][e]
   + dist[bucket[c]][e]), the sum t + d rounded first as the reference; tgt and dist rows of width ed. */
void fa_sac_scores(const float *src, const float *tgt, const float *dist, size_t ed,
                   const int32_t *cand, const int32_t *bucket, size_t count, float scale, float *out);

/* y = σ(x) = 1/(1 + exp(−x)) and y = tanh(x), n elements (in place allowed); within a few ulp
   of the libm functions, NaN propagating. */
void fa_sigmoid(const float *x, float *y, size_t n);
void fa_tanh(const float *x, float *y, size_t n);
#endif
