/* The float32 streamed kernels for AVX-512F (16 floats a register, 32 registers): the 16-float vector layer and the register-blocked
   innermost products for this register file, then the shared streaming code (fp32_streamed.h). */
#include <immintrin.h>
#include <stdint.h>

#define VARIANT 1
#define VARIANT 1
typedef __m512 v16;
#define v_load _mm512_load_ps
#define v_loadu _mm512_loadu_ps
#define v_store _mm512_store_ps
#define v_storeu _mm512_storeu_ps
#define v_zero _mm512_setzero_ps
#define v_set1 _mm512_set1_ps
#define v_add _mm512_add_ps
#define v_sub _mm512_sub_ps
#define v_mul _mm512_mul_ps
#define v_max _mm512_max_ps
#define v_fmadd _mm512_fmadd_ps
#define v_fnmadd _mm512_fnmadd_ps
static inline v16 v_loadbf(const uint16_t *p) {  /* 16 bf16 -> float32 (exact: a shift) */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* acc[p][m] += sum over input channels k < K of src[p * PS + k] * wk[k][m] for P pixels and M vectors of 16
   output channels. K, P, M (and PS where given as a constant) are compile-time constants, so that the P*M
   accumulators and the input offsets stay in registers. */
#define ACCUMULATE(P, M, K, PS, src, wk, acc)                                                               \
    for (int k = 0; k < (K); k++) {                                                                          \
        __m512 wv[M];                                                                                        \
        _Pragma("GCC unroll 8") for (int m = 0; m < (M); m++)                                               \
            wv[m] = _mm512_loadu_ps((wk) + (long)k * (M) * 16 + m * 16);                                    \
        _Pragma("GCC unroll 64") for (int p = 0; p < (P); p++) {                                            \
            __m512 b = _mm512_set1_ps((src)[(long)p * (PS) + k]);                                           \
            _Pragma("GCC unroll 8") for (int m = 0; m < (M); m++)                                           \
                acc[p * (M) + m] = _mm512_fmadd_ps(b, wv[m], acc[p * (M) + m]);                             \
        }                                                                                                    \
    }

/* out[(x0 + p) * 16M + 16m] = sum over taps (ky, kx) and input channels k of
   rows[ky][(x0 + p + kx) * K + k] * w[ky][kx][k][m]: a KSxKS conv of padded rows of K channels. */
#define KERNEL(NAME, KS, P, M, K)                                                                         \
    static inline __attribute__((always_inline)) void NAME(const float *const *rows, const float *w,     \
                                                           float *out, int x0) {                          \
        __m512 acc[P * M];                                                                                \
        _Pragma("GCC unroll 64") for (int i = 0; i < P * M; i++) acc[i] = _mm512_setzero_ps();            \
        for (int ky = 0; ky < KS; ky++)                                                                   \
            for (int kx = 0; kx < KS; kx++) {                                                             \
                const float *src = rows[ky] + (long)(x0 + kx) * K;                                        \
                const float *wk = w + (long)(ky * KS + kx) * K * M * 16;                                  \
                ACCUMULATE(P, M, K, K, src, wk, acc)                                                      \
            }                                                                                             \
        _Pragma("GCC unroll 64") for (int p = 0; p < P; p++)                                              \
            _Pragma("GCC unroll 8") for (int m = 0; m < M; m++)                                           \
                _mm512_store_ps(out + (long)(x0 + p) * M * 16 + m * 16, acc[p * M + m]);                  \
    }
/* grouped 3x3, 16 channels per group in and out (a grouped residual block), 28 pixels a block */
KERNEL(conv3_g16, 3, 28, 1, 16)
/* grouped 3x3, 16 channels per group in, 64 out (a grouped upsampling conv) */
KERNEL(conv3_g16m4, 3, 6, 4, 16)
/* dense 3x3 and 1x1 with 64 channels in and out, 6 pixels a block */
KERNEL(conv3_d64, 3, 6, 4, 64)
KERNEL(conv1_d64, 1, 6, 4, 64)

/* out[p * 16M + 16m] = sum over k < K of src[p * K + k] * w[k][m], P rows of a [rows][K] matrix */
#define GEMM(NAME, P, M, K)                                                                               \
    static inline __attribute__((always_inline)) void NAME(const float *src, const float *w, float *out) {\
        __m512 acc[P * M];                                                                                \
        _Pragma("GCC unroll 64") for (int i = 0; i < P * M; i++) acc[i] = _mm512_setzero_ps();            \
        ACCUMULATE(P, M, K, K, src, w, acc)                                                               \
        _Pragma("GCC unroll 64") for (int p = 0; p < P; p++)                                              \
            _Pragma("GCC unroll 8") for (int m = 0; m < M; m++)                                           \
                _mm512_store_ps(out + (long)p * M * 16 + m * 16, acc[p * M + m]);                         \
    }
GEMM(gemm_g16, 28, 1, 48)   /* Winograd: 3 rows x 16 channels in, 16 out */
GEMM(gemm_d64, 6, 4, 192)   /* Winograd: 3 rows x 64 channels in, 64 out */
GEMM(gemm_g16m4, 6, 4, 48)  /* Winograd: 3 rows x 16 channels in, 64 out */
GEMM(gemm_k64, 6, 4, 64)    /* a wide body's first 1x1: 64 in, a 64-channel chunk out */
GEMM(gemm_k64n, 6, 4, 64)   /* a wide body's second 1x1: a 64-channel chunk of its input, 64 out */


static inline __attribute__((always_inline)) void exit_block(const float *const *rows, const float *w,
                                                             const unsigned char *mask, float *out, int x0) {
    __m512 acc[28];
    _Pragma("GCC unroll 64") for (int i = 0; i < 28; i++) acc[i] = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++)
            for (int q = 0; q < 4; q++) {
                const int tq = (ky * 3 + kx) * 4 + q;
                if (!mask[tq]) continue;
                const float *src = rows[ky] + (long)(x0 + kx) * 256 + q * 64;
                const float *wk = w + (long)tq * 64 * 16;
                ACCUMULATE(28, 1, 64, 256, src, wk, acc)
            }
    _Pragma("GCC unroll 64") for (int p = 0; p < 28; p++) _mm512_store_ps(out + (long)(x0 + p) * 16, acc[p]);
}

#define SXP 14                      /* 2 zmm accumulators each, 32 registers */

/* relu(W [x_0 .. x_{n-1}] + b) for 6 pixels of a cascade buffer (block 0 at src0 with pixel stride
   stride0, blocks 1.. at src with stride), into tmp [6][64]: srkit_fuse1x1's product. */
static inline __attribute__((always_inline)) void fuse_pixels6(const float *src0, long stride0,
        const float *src, long stride, int nchunks, const float *w, const float *b, float *tmp) {
    const v16 zero = v_zero();
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = zero;
    ACCUMULATE(6, 4, 64, stride0, src0, w, acc)
    for (int c = 1; c < nchunks; c++) {
        const float *s = src + c * 64, *wk = w + (long)c * 64 * 64;
        ACCUMULATE(6, 4, 64, stride, s, wk, acc)
    }
    for (int p = 0; p < 6; p++)
        for (int m = 0; m < 4; m++)
            v_store(tmp + p * 64 + m * 16, v_max(v_add(acc[p * 4 + m], v_loadu(b + m * 16)), zero));
}

#include "fp32_streamed.h"
