#ifndef FASTATTENTION_CBLAS_SHIM_H
#define FASTATTENTION_CBLAS_SHIM_H
#include <cblas.h>

/* LAPACK routines that libopenblas exports (Fortran calling convention).
   Debian's libopenblas-dev ships no lapacke.h, so the two we use are declared here. */
void sgeqrf_(const int *m, const int *n, float *a, const int *lda, float *tau,
             float *work, const int *lwork, int *info);
void sorgqr_(const int *m, const int *n, const int *k, float *a, const int *lda,
             const float *tau, float *work, const int *lwork, int *info);
#endif
