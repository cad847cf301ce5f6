/* The float32 streamed kernels for AVX2 + FMA (8 floats a register, 16 registers): the 16-float vector layer and the register-blocked
   innermost products for this register file, then the shared streaming code (fp32_streamed.h). */
#include <immintrin.h>
#include <stdint.h>

#define VARIANT 2
#define VARIANT 2
typedef struct { __m256 lo, hi; } v16;
static inline v16 v_load(const float *p) { v16 r = {_mm256_load_ps(p), _mm256_load_ps(p + 8)}; return r; }
static inline v16 v_loadu(const float *p) { v16 r = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; return r; }
static inline void v_store(float *p, v16 a) { _mm256_store_ps(p, a.lo); _mm256_store_ps(p + 8, a.hi); }
static inline void v_storeu(float *p, v16 a) { _mm256_storeu_ps(p, a.lo); _mm256_storeu_ps(p + 8, a.hi); }
static inline v16 v_zero(void) { v16 r = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return r; }
static inline v16 v_set1(float x) { v16 r = {_mm256_set1_ps(x), _mm256_set1_ps(x)}; return r; }
#define V2(NAME, OP) static inline v16 NAME(v16 a, v16 b) { v16 r = {OP(a.lo, b.lo), OP(a.hi, b.hi)}; return r; }
V2(v_add, _mm256_add_ps)
V2(v_sub, _mm256_sub_ps)
V2(v_mul, _mm256_mul_ps)
V2(v_max, _mm256_max_ps)
static inline v16 v_fmadd(v16 a, v16 b, v16 c) {
    v16 r = {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; return r;
}
static inline v16 v_fnmadd(v16 a, v16 b, v16 c) {
    v16 r = {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)}; return r;
}
static inline __m256 bf8(const uint16_t *p) {  /* 8 bf16 -> float32 (exact: a shift) */
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline v16 v_loadbf(const uint16_t *p) { v16 r = {bf8(p), bf8(p + 8)}; return r; }

/* AVX2: the same products register-blocked for 16 ymm registers. a[p][0..1] += sum over k < K of
   src[p * PS + k] * wk[k * WS + 0..15] for PB pixels: 2 PB accumulators, 2 weight registers, 1 broadcast. */
#define ACC2(PB, K, PS, WS, src, wk, a)                                                                      \
    for (int k = 0; k < (K); k++) {                                                                          \
        const __m256 w0 = _mm256_loadu_ps((wk) + (long)k * (WS)), w1 = _mm256_loadu_ps((wk) + (long)k * (WS) + 8); \
        _Pragma("GCC unroll 8") for (int p = 0; p < (PB); p++) {                                             \
            const __m256 b = _mm256_set1_ps((src)[(long)p * (PS) + k]);                                     \
            a[p][0] = _mm256_fmadd_ps(b, w0, a[p][0]);                                                       \
            a[p][1] = _mm256_fmadd_ps(b, w1, a[p][1]);                                                       \
        }                                                                                                    \
    }
/* pixels a register block: 6 where P allows it, else 4 (P is 6 or 28) */
#define PB(P) ((P) % 6 == 0 ? 6 : 4)
#define ZERO2(PB, a) _Pragma("GCC unroll 8") for (int p = 0; p < (PB); p++) a[p][0] = a[p][1] = _mm256_setzero_ps();
#define STORE2(PB, a, dst, stride)                                                                           \
    _Pragma("GCC unroll 8") for (int p = 0; p < (PB); p++) {                                                 \
        _mm256_store_ps((dst) + (long)p * (stride), a[p][0]);                                                \
        _mm256_store_ps((dst) + (long)p * (stride) + 8, a[p][1]);                                            \
    }

/* out[(x0 + p) * 16M + 16m] = sum over taps (ky, kx) and input channels k of
   rows[ky][(x0 + p + kx) * K + k] * w[ky][kx][k][m]: a KSxKS conv of padded rows of K channels. */
#define KERNEL(NAME, KS, P, M, K)                                                                         \
    static inline __attribute__((always_inline)) void NAME(const float *const *rows, const float *w,     \
                                                           float *out, int x0) {                          \
        for (int m = 0; m < (M); m++)                                                                     \
            for (int pb = 0; pb < (P); pb += PB(P)) {                                                     \
                __m256 a[PB(P)][2];                                                                       \
                ZERO2(PB(P), a)                                                                           \
                for (int ky = 0; ky < KS; ky++)                                                           \
                    for (int kx = 0; kx < KS; kx++) {                                                     \
                        const float *src = rows[ky] + (long)(x0 + pb + kx) * K;                           \
                        const float *wk = w + (long)(ky * KS + kx) * K * M * 16 + m * 16;                 \
                        ACC2(PB(P), K, K, M * 16, src, wk, a)                                             \
                    }                                                                                     \
                STORE2(PB(P), a, out + (long)(x0 + pb) * M * 16 + m * 16, M * 16)                         \
            }                                                                                             \
    }
KERNEL(conv3_g16, 3, 28, 1, 16)
KERNEL(conv3_g16m4, 3, 6, 4, 16)
KERNEL(conv3_d64, 3, 6, 4, 64)
KERNEL(conv1_d64, 1, 6, 4, 64)

/* out[p * 16M + 16m] = sum over k < K of src[p * K + k] * w[k][m], P rows of a [rows][K] matrix */
#define GEMM(NAME, P, M, K)                                                                               \
    static inline __attribute__((always_inline)) void NAME(const float *src, const float *w, float *out) {\
        for (int m = 0; m < (M); m++)                                                                     \
            for (int pb = 0; pb < (P); pb += PB(P)) {                                                     \
                __m256 a[PB(P)][2];                                                                       \
                ZERO2(PB(P), a)                                                                           \
                ACC2(PB(P), K, K, M * 16, src + (long)pb * K, w + m * 16, a)                              \
                STORE2(PB(P), a, out + (long)pb * M * 16 + m * 16, M * 16)                                \
            }                                                                                             \
    }
GEMM(gemm_g16, 28, 1, 48)
GEMM(gemm_d64, 6, 4, 192)
GEMM(gemm_g16m4, 6, 4, 48)
GEMM(gemm_k64, 6, 4, 64)
GEMM(gemm_k64n, 6, 4, 64)


static inline __attribute__((always_inline)) void exit_block(const float *const *rows, const float *w,
                                                             const unsigned char *mask, float *out, int x0) {
    for (int pb = 0; pb < 28; pb += 4) {
        __m256 a[4][2];
        ZERO2(4, a)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++)
                for (int q = 0; q < 4; q++) {
                    const int tq = (ky * 3 + kx) * 4 + q;
                    if (!mask[tq]) continue;
                    const float *src = rows[ky] + (long)(x0 + pb + kx) * 256 + q * 64;
                    ACC2(4, 64, 256, 16, src, w + (long)tq * 64 * 16, a)
                }
        STORE2(4, a, out + (long)(x0 + pb) * 16, 16)
    }
}

#define SXP 3                       /* pixels a register block: 2 x 2 ymm accumulators each, 16 registers */

/* relu(W [x_0 .. x_{n-1}] + b) for 6 pixels of a cascade buffer (block 0 at src0 with pixel stride
   stride0, blocks 1.. at src with stride), into tmp [6][64]: srkit_fuse1x1's product. */
static inline __attribute__((always_inline)) void fuse_pixels6(const float *src0, long stride0,
        const float *src, long stride, int nchunks, const float *w, const float *b, float *tmp) {
    const v16 zero = v_zero();
    for (int m = 0; m < 4; m++) {
        __m256 a[6][2];
        ZERO2(6, a)
        ACC2(6, 64, stride0, 64, src0, w + m * 16, a)
        for (int c = 1; c < nchunks; c++)
            ACC2(6, 64, stride, 64, src + c * 64, w + (long)c * 64 * 64 + m * 16, a)
        for (int p = 0; p < 6; p++) {
            v16 r = {a[p][0], a[p][1]};
            v_store(tmp + p * 64 + m * 16, v_max(v_add(r, v_loadu(b + m * 16)), zero));
        }
    }
}

#include "fp32_streamed.h"
