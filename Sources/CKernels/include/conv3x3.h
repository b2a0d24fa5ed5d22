#ifndef FASTATTENTION_CONV3X3_H
#define FASTATTENTION_CONV3X3_H
/* Winograd F(4×4, 3×3) transforms for 3×3, stride-1 convolutions (Lavin & Gray 2016,
   interpolation points 0, ±1, ±2, ∞). The 36 transformed-domain products are GEMMs run by the
   caller (TensorCore's Conv.swift); these are the three transforms around them, vectorised
   over 16 tiles (or 16 input channels for the weights) with runtime dispatch: AVX-512F,
   AVX2+FMA, or portable C. Private: no stable API.

   Layouts: ξ = 6·i + j indexes the 6×6 transformed tile.
     u[ξ][O][C]   transformed weights,          U = G g Gᵀ
     v[ξ][C][nt]  transformed input tiles,      V = Bᵀ d B  (d: the 6×6 input patch)
     m[ξ][O][nt]  transformed output tiles,     M_ξ = U_ξ · V_ξ (the caller's GEMMs)
   Tiles are numbered t = ty·tiles_w + tx over one image; a call handles tiles t0..<t0+nt.
   Tile (ty, tx) covers output rows 4ty..4ty+3 and columns 4tx..4tx+3 and reads input rows
   4ty−ph .. 4ty−ph+5, columns 4tx−pw .. 4tx−pw+5 (zero outside the image). */
#include <stddef.h>

/* u[ξ][o][c] for output channels o0..<o1 of w (O×C×3×3). */
void fa_wino43_weights(const float *w, size_t O, size_t C, size_t o0, size_t o1, float *u);

/* v[ξ][c][k] (k < nt, row stride nt) for input channels c0..<c1 of one image x (C×H×W). */
void fa_wino43_input(const float *x, size_t C, size_t H, size_t W, size_t ph, size_t pw,
                     size_t tiles_w, size_t t0, size_t nt, size_t c0, size_t c1, float *v);

/* out[o][y][x] = (Aᵀ M A)[y−4ty][x−4tx] + bias[o] (bias may be NULL: no term) for output
   channels o0..<o1 of one image out (O×Ho×Wo), inside the output only. The tiles partition
   the output, so out needs no initialisation. */
void fa_wino43_output(const float *m, const float *bias, size_t O, size_t Ho, size_t Wo, size_t tiles_w,
                      size_t t0, size_t nt, size_t o0, size_t o1, float *out);

/* The transforms dispatch on fa_isa() (ckernels.h). */
#endif
