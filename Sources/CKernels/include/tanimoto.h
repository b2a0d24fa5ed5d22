#ifndef FASTATTENTION_TANIMOTO_H
#define FASTATTENTION_TANIMOTO_H
/* Inner products for FracTAL's fractal Tanimoto similarities (FastAttention/Spatial/FracTAL.swift),
   in Double, vectorised with runtime dispatch (AVX-512F, AVX2, portable C). Private. */
#include <stddef.h>

/* q, k: C×L maps of one image. Adds, per pixel i (over channels), into pix[s·L + i] and, per
   channel c (over pixels), into chan[5·c + s] the five sums s = 0..4 of q·k, q·q, k·k, q, k. */
void fa_tanimoto_sums(const float *q, const float *k, size_t C, size_t L, double *pix, double *chan);

/* y[i] = 1/(1 + exp(−(x[i]·a + b))) for n elements (a folded BatchNorm, then a sigmoid), with
   exp from fa_exp. y may be x. */
void fa_sigmoid_affine(const float *x, float *y, size_t n, float a, float b);
#endif
