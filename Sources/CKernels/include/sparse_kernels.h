#ifndef FASTATTENTION_SPARSE_KERNELS_H
#define FASTATTENTION_SPARSE_KERNELS_H
/* Kernels of the sparse attentions (BucketedAttention, BlockSparseAttention), with runtime CPU
   dispatch (AVX2+FMA when the CPU has it, portable C otherwise), like ckernels.h. Private. */
#include <stddef.h>
#include <stdint.h>

/* The masked softmax of BucketedAttention, row by row in place: s is rows×cols at stride ld,
   key_pos[j] the position of key column j (−1: memory key, never masked; −2: masked memory key
   → padding_value), query_pos[r] the position of row r's query. Each logit is REPLACED by
     padding_value   when key < −1 or key ≥ valid_length (or key == −2),
     causal_value    else when causal and key > query,
     self_value      (has_self) when key == query ≥ 0 (after the masks above),
   then softmax. lse[r] = the row's logsumexp. A row with a NaN (after masking) becomes all NaN
   (lse NaN); a row whose maximum is −inf becomes zeros (lse −inf). */
void fa_bucketed_softmax_rows(float *s, size_t rows, size_t cols, size_t ld,
                              const int32_t *key_pos, const int32_t *query_pos,
                              int causal, float causal_value, int has_self, float self_value,
                              int32_t valid_length, float padding_value, float *lse);

/* row[j] = −inf for each j < n whose bit (bits[j/64] >> j%64) & 1 is clear. */
void fa_mask_bits(float *row, const uint64_t *bits, size_t n);

/* fa_online_softmax_tile (ckernels.h) with row r's logits present only in columns
   [lo[r], hi[r]) (the rest count as −inf and become 0): exp only over the present span. */
void fa_online_softmax_tile_spans(float *s, size_t rows, size_t cols, size_t ld,
                                  const int32_t *lo, const int32_t *hi,
                                  float *m, float *l, float *corr);
/* dst row i (width floats, contiguous) = src row idx[i] (rows ld apart), for i < count: a
   gather without a library call per row (rows are often only 8–64 floats). */
void fa_gather_rows(float *dst, const float *src, size_t ld, const int32_t *idx, size_t count, size_t width);
#endif
