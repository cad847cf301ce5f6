/* bf16 streamed kernels for the CPU fast path's 64-channel parts on AVX512-BF16 and AMX-BF16 (Python side:
   srkit/inference/fast/cpu_bf16.py). The float32 kernels (srkit/inference/_cpu_kernels.c) are the model:
   the same row streaming, the same 3-row rings in L2, the same strided destinations; here activations are
   bf16 in memory (the cascade buffer, the rings) and every product takes pairs of adjacent input channels
   times pairs of weights, accumulated in float32: AMX tile products where the CPU has AMX-BF16 (the AMX part
   below), else vdpbf16ps. Bias, ReLU and the residual add run in float32 before the one rounding to bf16.

   Why: bf16 halves every read and write of the 64-channel maps, and oneDNN's bf16 convs through PyTorch
   (a call per conv, full-size tensors between them) measured slower than the float32 streamed kernels.
   Measured on a 2-core Xeon with AMX (scripts/bench_bf16_kernels.py, 640x360): vdpbf16ps runs at half the
   float32 FMA's multiply-adds a cycle there, so the vdpbf16ps kernels lose to the float32 ones (a dense
   residual block 165 ms with Winograd, 301 ms direct, vs 113 ms float32, 86 ms oneDNN bf16); the AMX ones
   win (40-60 ms; a grouped block 48 vs 65-112 ms and oneDNN bf16 97 ms; a 64 -> 256 conv 142 vs 479 ms,
   oneDNN bf16 167 ms; a 1x1 fusion over 2-4 blocks 24-28 ms vs torch's bf16 addmm 49-56 ms), so they replace
   oneDNN's bf16 primitives wherever they serve.
   On a 2-core AMD EPYC Zen 5 (AVX512-BF16, no AMX) the vdpbf16ps kernels win (same script, 640x360): a dense
   block 23.5 ms with Winograd, 36 ms direct, vs 44.6 ms float32 and 23.1 ms oneDNN bf16; a grouped block 15.1
   vs 23.7 ms (oneDNN bf16 15.2); a 1x1 fusion over 2-4 blocks 4.7-8.4 ms vs torch's bf16 addmm 11-12 ms (with
   the next pixels prefetched: 10-15 ms without); a 64 -> 256 conv 74 vs 140 ms. The kernels that tile AMX's
   way (the x2 tail, the wide body, the grouped conv) have vdpbf16ps forms of their block products for it.

   - srkit_bf16_resblock: relu(body(x) + x), body = n 3x3 convs (ReLU after each but possibly the last), then
     optionally a 1x1: a dense residual block (groups 1) or an efficient one (groups 4 + 1x1).
   - srkit_bf16_fuse1x1: a cascade's 1x1 fusion over the buffer's 64-channel blocks, bias and ReLU in the store.
   - srkit_bf16_conv3x3: a dense 3x3 conv from 64 channels to 64 n + bias (+ ReLU), by rows, bf16 or float32
     output (an upsampling conv).
   - srkit_bf16_gconv3x3: a grouped 3x3 conv, 4 groups of 16 channels to 16 m outputs each.
   - srkit_bf16_wide_body: a wide-activation body, 1x1, ReLU, 1x1, 3x3, by rows.
   - srkit_bf16_channel_sums, srkit_bf16_scale_add: an SE-scaled residual's passes over a bf16 map.
   - srkit_bf16_subpixel_tail: the x2 tail, the last upsampling conv + ReLU + the sub-pixel exit
     conv + pixel shuffle, the 256-channel map in a ring of three bf16 rows.
   - srkit_bf16_shuffle_exit (vdpbf16ps only): the exit conv after an x3 pixel shuffle, read from the bf16
     unshuffled map.

   Weights are packed on the Python side as [input pairs][outputs][2] bf16 (one zmm: 16 outputs x 2 inputs).
   A dense 3x3 conv runs as 1-D Winograd F(4,3) when the caller passes transformed weights (input transform in
   float32 from the bf16 rows, rounded to bf16 for the products, output transform in float32), else directly.
   Tensors are NHWC bf16 with a pixel stride in elements. One thread per band of output rows. Every entry
   point checks the strides and sizes it relies on and returns -1 for any it does not serve; -2 when a thread
   could not get its row buffers. The caller checks the CPU (AVX512-BF16). */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX3 4
#define ABI 5         /* bump with any change of the exported functions (cpu_bf16.py: _ABI) */
#define MAXTHREADS 64

typedef uint16_t bf16;
typedef uint32_t pair;  /* two adjacent bf16 channels, the unit vdpbf16ps broadcasts */

int srkit_bf16_abi(void) { return ABI; }
/* The instruction set this build is for: 3, AVX512-BF16 (1 and 2 are the float32 builds'). */
int srkit_bf16_variant(void) { return 3; }

static inline __m512 ld16(const bf16 *p) {  /* 16 bf16 -> float32 (exact: a shift) */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline void st16(bf16 *p, __m512 v) {  /* float32 -> 16 bf16, round to nearest even */
    __m256bh h = _mm512_cvtneps_pbh(v);
    _mm256_storeu_si256((__m256i *)p, (__m256i)h);
}
static inline __m512bh bcast(const pair *p) { return (__m512bh)_mm512_set1_epi32((int)*p); }

/* acc[p][m] += sum over input pairs k < K2 of src[p * PS + k] . wk[k][m]: P pixels, M vectors of 16 outputs.
   All compile-time constants, so that the P*M accumulators stay in registers. */
#define ACCUMULATE(P, M, K2, PS, src, wk, acc)                                                              \
    for (int k = 0; k < (K2); k++) {                                                                         \
        __m512bh wv[M];                                                                                      \
        _Pragma("GCC unroll 8") for (int m = 0; m < (M); m++)                                               \
            wv[m] = (__m512bh)_mm512_loadu_si512((const void *)((wk) + ((long)k * (M) + m) * 16));          \
        _Pragma("GCC unroll 64") for (int p = 0; p < (P); p++) {                                            \
            const __m512bh b = bcast((src) + (long)p * (PS) + k);                                           \
            _Pragma("GCC unroll 8") for (int m = 0; m < (M); m++)                                           \
                acc[p * (M) + m] = _mm512_dpbf16_ps(acc[p * (M) + m], b, wv[m]);                             \
        }                                                                                                    \
    }

/* out[(x0 + p) * 16M + 16m] = a KSxKS conv of padded bf16 rows of K channels (float32 out) */
#define KERNEL(NAME, KS, P, M, K)                                                                         \
    static inline __attribute__((always_inline)) void NAME(const bf16 *const *rows, const pair *w,       \
                                                           float *out, int x0) {                          \
        __m512 acc[P * M];                                                                                \
        _Pragma("GCC unroll 64") for (int i = 0; i < P * M; i++) acc[i] = _mm512_setzero_ps();            \
        for (int ky = 0; ky < KS; ky++)                                                                   \
            for (int kx = 0; kx < KS; kx++) {                                                             \
                const pair *src = (const pair *)(rows[ky] + (long)(x0 + kx) * K);                         \
                const pair *wk = w + (long)(ky * KS + kx) * (K / 2) * M * 16;                             \
                ACCUMULATE(P, M, K / 2, K / 2, src, wk, acc)                                              \
            }                                                                                             \
        _Pragma("GCC unroll 64") for (int p = 0; p < P; p++)                                              \
            _Pragma("GCC unroll 8") for (int m = 0; m < M; m++)                                           \
                _mm512_store_ps(out + (long)(x0 + p) * M * 16 + m * 16, acc[p * M + m]);                  \
    }
KERNEL(conv3_g16, 3, 28, 1, 16)   /* grouped 3x3, 16 channels a group in and out, 28 pixels a block */
KERNEL(conv3_d64, 3, 6, 4, 64)    /* dense 3x3, 64 in and out, 6 pixels a block */
KERNEL(conv1_d64, 1, 6, 4, 64)    /* dense 1x1 */

/* Winograd GEMM: out[p][64] = sum over 96 pairs (3 rows x 64 channels) of src[p] . w, 6 rows */
static inline __attribute__((always_inline)) void gemm_d64(const pair *src, const pair *w, float *out) {
    __m512 acc[24];
    _Pragma("GCC unroll 64") for (int i = 0; i < 24; i++) acc[i] = _mm512_setzero_ps();
    ACCUMULATE(6, 4, 96, 96, src, w, acc)
    _Pragma("GCC unroll 64") for (int p = 0; p < 6; p++)
        _Pragma("GCC unroll 8") for (int m = 0; m < 4; m++) _mm512_store_ps(out + p * 64 + m * 16, acc[p * 4 + m]);
}

#define WTC 24  /* Winograd tiles a chunk: a multiple of the GEMM's 6 rows; the chunk's scratch stays in L2 */

/* One output row of a dense 3x3 conv 64 -> 64 (padding 1) as 1-D Winograd F(4,3) along the row (see
   _cpu_kernels.c: wino_row): rows: 3 padded bf16 input rows; u: [6][96 pairs][64][2] bf16; out: float32
   [4 * tiles][64]; scratch v: bf16 [6][WTC][192], mt: float32 [6][WTC][64]. */
static void wino_row(const bf16 *const *rows, int tiles, const pair *u, float *out, bf16 *v, float *mt) {
    for (int t0 = 0; t0 < tiles; t0 += WTC) {
        const int tc = tiles - t0 < WTC ? tiles - t0 : WTC;  /* a multiple of 6: tiles is */
        const __m512 c4 = _mm512_set1_ps(4.f), c5 = _mm512_set1_ps(5.f), c2 = _mm512_set1_ps(2.f);
        for (int t = 0; t < tc; t++)
            for (int ky = 0; ky < 3; ky++)
                for (int k = 0; k < 64; k += 16) {
                    const bf16 *d = rows[ky] + (long)(4 * (t0 + t)) * 64 + k;
                    const __m512 d0 = ld16(d), d1 = ld16(d + 64), d2 = ld16(d + 128), d3 = ld16(d + 192),
                                 d4 = ld16(d + 256), d5 = ld16(d + 320);
                    const __m512 a = _mm512_fnmadd_ps(c4, d2, d4), b = _mm512_fnmadd_ps(c4, d1, d3);
                    const __m512 e = _mm512_sub_ps(d4, d2), f = _mm512_mul_ps(c2, _mm512_sub_ps(d3, d1));
                    bf16 *o = v + (long)t * 192 + ky * 64 + k;
                    const long st = (long)WTC * 192;
                    st16(o, _mm512_add_ps(_mm512_fnmadd_ps(c5, d2, _mm512_mul_ps(c4, d0)), d4));
                    st16(o + st, _mm512_add_ps(a, b));
                    st16(o + 2 * st, _mm512_sub_ps(a, b));
                    st16(o + 3 * st, _mm512_add_ps(e, f));
                    st16(o + 4 * st, _mm512_sub_ps(e, f));
                    st16(o + 5 * st, _mm512_add_ps(_mm512_fnmadd_ps(c5, d3, _mm512_mul_ps(c4, d1)), d5));
                }
        for (int xi = 0; xi < 6; xi++)
            for (int t = 0; t < tc; t += 6)
                gemm_d64((const pair *)(v + ((long)xi * WTC + t) * 192), u + (long)xi * 96 * 64,
                         mt + ((long)xi * WTC + t) * 64);
        const long st = (long)WTC * 64;
        const __m512 c8 = _mm512_set1_ps(8.f);
        for (int t = 0; t < tc; t++)
            for (int m = 0; m < 64; m += 16) {
                const float *q = mt + (long)t * 64 + m;
                const __m512 m0 = _mm512_load_ps(q), m1 = _mm512_load_ps(q + st), m2 = _mm512_load_ps(q + 2 * st),
                             m3 = _mm512_load_ps(q + 3 * st), m4 = _mm512_load_ps(q + 4 * st),
                             m5 = _mm512_load_ps(q + 5 * st);
                const __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
                const __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
                float *y = out + (long)4 * (t0 + t) * 64 + m;
                _mm512_store_ps(y, _mm512_add_ps(_mm512_add_ps(m0, s12), s34));
                _mm512_store_ps(y + 64, _mm512_fmadd_ps(c2, d34, d12));
                _mm512_store_ps(y + 128, _mm512_fmadd_ps(c4, s34, s12));
                _mm512_store_ps(y + 192, _mm512_add_ps(_mm512_fmadd_ps(c8, d34, d12), m5));
            }
    }
}


/* ---- AMX-BF16 (a CPU that has it: Intel Sapphire Rapids and later). The same convs as tile products: a tile
   of 16 pixels x 32 bf16 channels (16 for a grouped conv) times a tile of the packed weights ([pairs][16
   outputs][2]: the kernels' packing is AMX's), accumulated in float32 tiles of 16 pixels x 16 outputs.
   Measured on a 2-core Xeon with AMX: vdpbf16ps does half the multiply-adds per cycle of float32 FMA there,
   so the AVX512-BF16 products above lose to the float32 kernels; the tile products do not. Built only where
   the compiler knows AMX (setup.py passes -mamx-tile -mamx-bf16); run only after srkit_bf16_amx(1) got the
   kernel's permission for the tile state. ---- */
#ifdef __AMX_BF16__
#include <sys/syscall.h>
#include <unistd.h>

static int use_amx = 0;

/* Whether the AMX paths run from now on: asked (want), and Linux lets this process use the tile state (a
   one-way, process-wide permission that oneDNN asks for too; nothing else changes). */
int srkit_bf16_amx(int want) {
    use_amx = want && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
    return use_amx;
}

typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } tilecfg_t;

/* AddressSanitizer does not see tile loads and stores: with SRKIT_CHECK_TILES (scripts/asan_kernels.sh) each
   one first reads (a store also writes back) the first and last byte of every row it covers, which it does see. */
#ifdef SRKIT_CHECK_TILES
static __thread tilecfg_t cur_cfg;
static void touch_rows(const void *p, long stride, int t, int write) {
    volatile char *c = (volatile char *)p;
    for (int r = 0; r < cur_cfg.rows[t]; r++) {
        volatile char *a = c + r * stride, *b = a + cur_cfg.colsb[t] - 1;
        const char va = *a, vb = *b;
        if (write) { *a = va; *b = vb; }
    }
}
#define TLOAD(t, p, s) do { touch_rows((p), (s), t, 0); _tile_loadd(t, (p), (s)); } while (0)
#define TSTORE(t, p, s) do { touch_rows((p), (s), t, 1); _tile_stored(t, (p), (s)); } while (0)
#else
#define TLOAD(t, p, s) _tile_loadd(t, (p), (s))
#define TSTORE(t, p, s) _tile_stored(t, (p), (s))
#endif
enum { CFG_NONE, CFG_D64, CFG_G16 };

/* tiles 0-3: float32 accumulators 16 x 16; dense: 4-5 A (16 pixels x 32 channels), 6-7 B (16 pairs x 16
   outputs); grouped: 4-5 A (16 pixels x 16 channels), 6-7 B (8 pairs x 16 outputs) */
static void tile_config(int kind) {
    tilecfg_t c;
    memset(&c, 0, sizeof(c));
    c.palette = 1;
    for (int t = 0; t < 8; t++) { c.rows[t] = 16; c.colsb[t] = 64; }
    if (kind == CFG_G16) { c.colsb[4] = c.colsb[5] = 32; c.rows[6] = c.rows[7] = 8; }
    _tile_loadconfig(&c);
#ifdef SRKIT_CHECK_TILES
    cur_cfg = c;
#endif
}

/* out[(x0 + p) * 64 + o], p < 32: a KSxKS conv of padded bf16 rows of K channels (64: CFG_D64, 16: CFG_G16)
   to 64 outputs, w [taps][K / 2][64][2] */
static void amx_conv(const bf16 *const *rows, int KS, int K, const bf16 *w, float *out, int x0) {
    for (int j0 = 0; j0 < 64; j0 += 32) {
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        for (int ky = 0; ky < KS; ky++)
            for (int kx = 0; kx < KS; kx++)
                for (int kc = 0; kc < K; kc += 32) {
                    const bf16 *a = rows[ky] + (long)(x0 + kx) * K + kc;
                    const bf16 *b = w + ((long)(ky * KS + kx) * (K / 2) + kc / 2) * 128 + j0 * 2;
                    TLOAD(4, a, 2 * K);
                    TLOAD(5, a + 16 * K, 2 * K);
                    TLOAD(6, b, 256);
                    TLOAD(7, b + 32, 256);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
        float *o = out + (long)x0 * 64 + j0;
        TSTORE(0, o, 256);
        TSTORE(1, o + 16, 256);
        TSTORE(2, o + 16 * 64, 256);
        TSTORE(3, o + 16 * 64 + 16, 256);
    }
}
static void amx_d64(const bf16 *const *rows, int KS, const bf16 *w, float *out, int x0) { amx_conv(rows, KS, 64, w, out, x0); }

/* out[(x0 + p) * 16 + o], p < 64: the x2 tail's exit conv (CFG_D64) over padded rows of the 256-channel map
   (phase-major), skipping the (tap, phase) blocks whose weights are zero; w [36][32][16][2] */
static void amx_exit(const bf16 *const *rows, const bf16 *w, const unsigned char *mask, float *out, int x0) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++)
            for (int q = 0; q < 4; q++) {
                const int tq = (ky * 3 + kx) * 4 + q;
                if (!mask[tq]) continue;
                for (int kc = 0; kc < 64; kc += 32) {
                    const bf16 *a = rows[ky] + (long)(x0 + kx) * 256 + q * 64 + kc;
                    TLOAD(6, w + ((long)tq * 32 + kc / 2) * 32, 64);
                    TLOAD(4, a, 512);
                    TLOAD(5, a + 16 * 256, 512);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 5, 6);
                    TLOAD(4, a + 32 * 256, 512);
                    TLOAD(5, a + 48 * 256, 512);
                    _tile_dpbf16ps(2, 4, 6);
                    _tile_dpbf16ps(3, 5, 6);
                }
            }
    TSTORE(0, out + (long)x0 * 16, 64);
    TSTORE(1, out + (long)(x0 + 16) * 16, 64);
    TSTORE(2, out + (long)(x0 + 32) * 16, 64);
    TSTORE(3, out + (long)(x0 + 48) * 16, 64);
}

/* out[(x0 + p) * 16 + o], p < 64: a grouped 3x3 conv, one group of 16 channels in and out, w [9][8][16][2] */
static void amx_g16(const bf16 *const *rows, const bf16 *w, float *out, int x0) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
            const bf16 *a = rows[ky] + (long)(x0 + kx) * 16;
            TLOAD(6, w + (ky * 3 + kx) * 256, 64);
            TLOAD(4, a, 32);
            TLOAD(5, a + 16 * 16, 32);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 5, 6);
            TLOAD(4, a + 32 * 16, 32);
            TLOAD(5, a + 48 * 16, 32);
            _tile_dpbf16ps(2, 4, 6);
            _tile_dpbf16ps(3, 5, 6);
        }
    for (int i = 0; i < 4; i++) {
        float *o = out + (long)(x0 + 16 * i) * 16;
        if (i == 0) TSTORE(0, o, 64);
        else if (i == 1) TSTORE(1, o, 64);
        else if (i == 2) TSTORE(2, o, 64);
        else TSTORE(3, o, 64);
    }
}
#define AMX_ON use_amx
#else
int srkit_bf16_amx(int want) { (void)want; return 0; }
#define AMX_ON 0
#define CFG_NONE 0
#define CFG_D64 1
#define CFG_G16 2
static void tile_config(int kind) { (void)kind; }
static void amx_d64(const bf16 *const *rows, int KS, const bf16 *w, float *out, int x0) {
    (void)rows; (void)KS; (void)w; (void)out; (void)x0;
}
static void amx_g16(const bf16 *const *rows, const bf16 *w, float *out, int x0) {
    (void)rows; (void)w; (void)out; (void)x0;
}
static void amx_conv(const bf16 *const *rows, int KS, int K, const bf16 *w, float *out, int x0) {
    (void)rows; (void)KS; (void)K; (void)w; (void)out; (void)x0;
}
static void amx_exit(const bf16 *const *rows, const bf16 *w, const unsigned char *mask, float *out, int x0) {
    (void)rows; (void)w; (void)mask; (void)out; (void)x0;
}
static inline void _tile_release(void) {}
#endif

/* ---- The block products of the kernels that tile AMX's way (the x2 tail, the wide body, the grouped conv) on
   vdpbf16ps, for a CPU with AVX512-BF16 and no AMX (AMD Zen 4/5): the operands and results of amx_conv,
   amx_g16 and amx_exit, 4 pixels x 64 outputs or 16 pixels x 16 outputs at a time in registers. ---- */
static void dp_conv(const bf16 *const *rows, int KS, int K, const bf16 *w, float *out, int x0) {
    const int K2 = K / 2;
    for (int p0 = x0; p0 < x0 + 32; p0 += 4) {
        __m512 acc[16];
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int ky = 0; ky < KS; ky++)
            for (int kx = 0; kx < KS; kx++) {
                const pair *src = (const pair *)(rows[ky] + (long)(p0 + kx) * K);
                const pair *wk = (const pair *)w + (long)(ky * KS + kx) * K2 * 64;
                ACCUMULATE(4, 4, K2, K2, src, wk, acc)
            }
        _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)
            _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++)
                _mm512_store_ps(out + (long)(p0 + p) * 64 + m * 16, acc[p * 4 + m]);
    }
}
static void dp_g16(const bf16 *const *rows, const bf16 *w, float *out, int x0) {
    for (int p0 = x0; p0 < x0 + 64; p0 += 16) {
        __m512 acc[16];
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const pair *src = (const pair *)(rows[ky] + (long)(p0 + kx) * 16);
                const pair *wk = (const pair *)w + (ky * 3 + kx) * 8 * 16;
                ACCUMULATE(16, 1, 8, 8, src, wk, acc)
            }
        _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++) _mm512_store_ps(out + (long)(p0 + p) * 16, acc[p]);
    }
}
static void dp_exit(const bf16 *const *rows, const bf16 *w, const unsigned char *mask, float *out, int x0) {
    for (int p0 = x0; p0 < x0 + 64; p0 += 16) {
        __m512 acc[16];
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++)
                for (int q = 0; q < 4; q++) {
                    const int tq = (ky * 3 + kx) * 4 + q;
                    if (!mask[tq]) continue;
                    const pair *src = (const pair *)(rows[ky] + (long)(p0 + kx) * 256 + q * 64);
                    const pair *wk = (const pair *)w + (long)tq * 32 * 16;
                    ACCUMULATE(16, 1, 32, 128, src, wk, acc)
                }
        _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++) _mm512_store_ps(out + (long)(p0 + p) * 16, acc[p]);
    }
}
/* the block products on AMX where it runs (tiles configured by the caller), else on vdpbf16ps */
static inline void blk_conv(int amx, const bf16 *const *rows, int KS, int K, const bf16 *w, float *out, int x0) {
    if (amx) amx_conv(rows, KS, K, w, out, x0); else dp_conv(rows, KS, K, w, out, x0);
}
static inline void blk_g16(int amx, const bf16 *const *rows, const bf16 *w, float *out, int x0) {
    if (amx) amx_g16(rows, w, out, x0); else dp_g16(rows, w, out, x0);
}
static inline void blk_exit(int amx, const bf16 *const *rows, const bf16 *w, const unsigned char *mask, float *out,
                            int x0) {
    if (amx) amx_exit(rows, w, mask, out, x0); else dp_exit(rows, w, mask, out, x0);
}

/* pixels a block of the direct products: AMX takes 32 (dense) or 64 (grouped) at a time */
static int block_pixels(int amx, int G) { return amx ? (G == 4 ? 64 : 32) : (G == 4 ? 28 : 6); }

static void *alloc_zeroed(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}

static int slot_of(int r) { return ((r % 3) + 3) % 3; }

#define FAILED ((void *)1)  /* what a job returns when it could not get its row buffers */

/* Run fn(job t) for t < n on n threads (the caller's is one); a thread that cannot be started runs its job on
   the caller's thread. Returns 0, or -2 when a job returned FAILED. */
static int parallel(void *(*fn)(void *), void *jobs, size_t job_size, int n) {
    pthread_t th[MAXTHREADS];
    int started[MAXTHREADS] = {0}, failed = 0;
    for (int t = 1; t < n; t++) started[t] = pthread_create(&th[t], NULL, fn, (char *)jobs + t * job_size) == 0;
    for (int t = 1; t < n; t++)
        if (!started[t]) failed |= fn((char *)jobs + t * job_size) == FAILED;
    failed |= fn(jobs) == FAILED;
    for (int t = 1; t < n; t++) {
        void *r = NULL;
        if (started[t]) pthread_join(th[t], &r);
        failed |= r == FAILED;
    }
    return failed ? -2 : 0;
}

static int clamp_threads(int n, long work) {
    if (n < 1) n = 1;
    if (n > MAXTHREADS) n = MAXTHREADS;
    if (n > work) n = (int)(work > 0 ? work : 1);
    return n;
}

/* Copy input row r (pixel stride xs, G groups of K channels) into per-group padded rows
   dst + g * stride + (w + 1) * K; column 0 and the columns past W stay as they are (zero). */
static void load_row(const bf16 *x, long xs, int W, int G, int K, int r, bf16 *dst, long stride) {
    const bf16 *src = x + (long)r * W * xs;
    for (int w = 0; w < W; w++)
        for (int g = 0; g < G; g++) memcpy(dst + g * stride + (long)(w + 1) * K, src + (long)w * xs + g * K, 2 * K);
}

/* ---- A residual block ---- */
typedef struct {
    const bf16 *x; long xs;         /* input pixel (h, w) at x + (h * W + w) * xs; also the residual */
    bf16 *y; long ys;               /* output pixel (h, w) at y + (h * W + w) * ys */
    int H, W, G, n3;                /* 3x3 convs: G groups of 64 / G channels (G = 1 or 4) */
    const pair *w3[MAX3];           /* packed [G][3][3][K/2][K][2] */
    const pair *u3[MAX3];           /* Winograd [6][96][64][2] (G = 1 only), or NULL: direct */
    const float *b3[MAX3];          /* [64] */
    const pair *w1; const float *b1;  /* optional 1x1: [32][64][2], [64]; NULL if absent */
    int h0, h1;                     /* this thread's output rows */
} job_t;

typedef struct {
    const job_t *j;
    int K, P3, Wp3, Wp1;
    long rowlen;                    /* bf16 in one padded row of one group: (Wp3 + 2) * K */
    bf16 *ring;                     /* [n3][G][3 slots][rowlen]: input rows of each 3x3 conv */
    int have[MAX3][3];
    float *out;                     /* one conv's output row of one group: [max(Wp3, Wp1)][64] float32 */
    bf16 *t;                        /* the last 3x3's output row, [Wp1][64] bf16, when a 1x1 follows */
    bf16 *v; float *mt;             /* Winograd scratch */
    int amx, cfg;                   /* the AMX path, the tile configuration loaded */
} ctx_t;

static void want_cfg(ctx_t *c, int kind) {
    if (c->cfg != kind) tile_config(kind);
    c->cfg = kind;
}

static bf16 *ring_row(ctx_t *c, int s, int g, int slot) {
    return c->ring + (((long)s * c->j->G + g) * 3 + slot) * c->rowlen;
}

static void conv3_row(ctx_t *c, int s, int g, int r) {
    const bf16 *rows[3];
    for (int ky = 0; ky < 3; ky++) rows[ky] = ring_row(c, s, g, slot_of(r + ky - 1));
    const int K = c->K;
    const pair *w = c->j->w3[s] + (long)g * 9 * (K / 2) * K;
    if (c->amx) {
        want_cfg(c, c->j->G == 4 ? CFG_G16 : CFG_D64);
        for (int x0 = 0; x0 < c->Wp3; x0 += c->P3) {
            if (c->j->G == 4) amx_g16(rows, (const bf16 *)w, c->out, x0);
            else amx_d64(rows, 3, (const bf16 *)w, c->out, x0);
        }
        return;
    }
    if (c->j->u3[s]) {
        wino_row(rows, c->Wp3 / 4, c->j->u3[s], c->out, c->v, c->mt);
        return;
    }
    for (int x0 = 0; x0 < c->Wp3; x0 += c->P3) {
        if (c->j->G == 4) conv3_g16(rows, w, c->out, x0);
        else conv3_d64(rows, w, c->out, x0);
    }
}

/* Make ring s hold row r (the input of 3x3 conv s); r is non-decreasing per stage. */
static void ensure(ctx_t *c, int s, int r) {
    const job_t *j = c->j;
    const int G = j->G, K = c->K, W = j->W, slot = slot_of(r);
    if (c->have[s][slot] == r) return;
    if (r < 0 || r >= j->H) {
        for (int g = 0; g < G; g++) memset(ring_row(c, s, g, slot), 0, sizeof(bf16) * c->rowlen);
    } else if (s == 0) {
        load_row(j->x, j->xs, W, G, K, r, ring_row(c, 0, 0, slot), 3 * c->rowlen);
    } else {
        for (int d = -1; d <= 1; d++) ensure(c, s - 1, r + d);
        const __m512 zero = _mm512_setzero_ps();
        for (int g = 0; g < G; g++) {
            conv3_row(c, s - 1, g, r);
            bf16 *dst = ring_row(c, s, g, slot) + K;  /* column 0 and the columns past W stay zero */
            const float *b = j->b3[s - 1] + g * K;
            for (int w = 0; w < W; w++)
                for (int k = 0; k < K; k += 16)
                    st16(dst + (long)w * K + k,
                         _mm512_max_ps(_mm512_add_ps(_mm512_load_ps(c->out + (long)w * K + k), _mm512_loadu_ps(b + k)), zero));
        }
    }
    c->have[s][slot] = r;
}

/* y[h] = relu(out + bias + x[h]) for channels [c0, c0 + n) of each pixel; out has pixel stride n */
static void finish_row(ctx_t *c, int h, const float *bias, int c0, int n) {
    const job_t *j = c->j;
    const __m512 zero = _mm512_setzero_ps();
    for (int w = 0; w < j->W; w++) {
        const bf16 *xr = j->x + ((long)h * j->W + w) * j->xs + c0;
        bf16 *yr = j->y + ((long)h * j->W + w) * j->ys + c0;
        for (int k = 0; k < n; k += 16) {
            __m512 v = _mm512_add_ps(_mm512_load_ps(c->out + (long)w * n + k), _mm512_loadu_ps(bias + c0 + k));
            st16(yr + k, _mm512_max_ps(_mm512_add_ps(v, ld16(xr + k)), zero));
        }
    }
}

static void *run_block(void *arg) {
    job_t *j = (job_t *)arg;
    ctx_t c = {.j = j};
    c.K = 64 / j->G;
    c.amx = AMX_ON;
    c.cfg = CFG_NONE;
    c.P3 = block_pixels(c.amx, j->G);
    /* whole blocks of the direct products, and of Winograd's GEMM where it may run */
    c.Wp3 = c.amx ? (j->W + c.P3 - 1) / c.P3 * c.P3 : 4 * (((j->W + 3) / 4 + c.P3 - 1) / c.P3 * c.P3);
    c.Wp1 = c.amx ? (j->W + 31) / 32 * 32 : (j->W + 5) / 6 * 6;
    c.rowlen = (long)(c.Wp3 + 8) * c.K;  /* the Winograd tiles read up to 2 pixels past Wp3 + 1 */
    const long wmax = c.Wp3 > c.Wp1 ? c.Wp3 : c.Wp1;
    c.ring = alloc_zeroed(sizeof(bf16) * (size_t)j->n3 * j->G * 3 * c.rowlen);
    c.out = alloc_zeroed(sizeof(float) * (size_t)wmax * 64);
    c.t = alloc_zeroed(sizeof(bf16) * (size_t)wmax * 64);
    c.v = alloc_zeroed(sizeof(bf16) * 6 * WTC * 192);
    c.mt = alloc_zeroed(sizeof(float) * 6 * WTC * 64);
    if (!c.ring || !c.out || !c.t || !c.v || !c.mt) {
        free(c.ring); free(c.out); free(c.t); free(c.v); free(c.mt);
        return FAILED;
    }
    for (int s = 0; s < MAX3; s++) c.have[s][0] = c.have[s][1] = c.have[s][2] = INT32_MIN;
    const int last = j->n3 - 1, K = c.K;
    const __m512 zero = _mm512_setzero_ps();
    for (int h = j->h0; h < j->h1; h++) {
        for (int d = -1; d <= 1; d++) ensure(&c, last, h + d);
        for (int g = 0; g < j->G; g++) {
            conv3_row(&c, last, g, h);
            if (!j->w1) {
                finish_row(&c, h, j->b3[last], g * K, K);
                continue;
            }
            const float *b = j->b3[last] + g * K;  /* ReLU into the 1x1's input row */
            for (int w = 0; w < j->W; w++)
                for (int k = 0; k < K; k += 16)
                    st16(c.t + (long)w * 64 + g * K + k,
                         _mm512_max_ps(_mm512_add_ps(_mm512_load_ps(c.out + (long)w * K + k), _mm512_loadu_ps(b + k)), zero));
        }
        if (j->w1) {
            const bf16 *rows[1] = {c.t};
            if (c.amx) {
                want_cfg(&c, CFG_D64);
                for (int x0 = 0; x0 < c.Wp1; x0 += 32) amx_d64(rows, 1, (const bf16 *)j->w1, c.out, x0);
            } else {
                for (int x0 = 0; x0 < c.Wp1; x0 += 6) conv1_d64(rows, j->w1, c.out, x0);
            }
            finish_row(&c, h, j->b1, 0, 64);
        }
    }
    if (c.amx) _tile_release();
    free(c.ring); free(c.out); free(c.t); free(c.v); free(c.mt);
    return NULL;
}

int srkit_bf16_resblock(const bf16 *x, long xs, bf16 *y, long ys, int H, int W, int G, int n3,
                        const pair *const *w3, const pair *const *u3, const float *const *b3, const pair *w1,
                        const float *b1, int nthreads) {
    if ((G != 1 && G != 4) || n3 < 1 || n3 > MAX3 || H < 1 || W < 1 || !x || !y || !w3 || !b3 || xs < 64 ||
        ys < 64 || (w1 == NULL) != (b1 == NULL) || (u3 && G != 1))
        return -1;
    for (int s = 0; s < n3; s++)
        if (!w3[s] || !b3[s]) return -1;
    const int n = clamp_threads(nthreads, H);
    job_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++) {
        job_t jt = {.x = x, .xs = xs, .y = y, .ys = ys, .H = H, .W = W, .G = G, .n3 = n3, .w1 = w1, .b1 = b1,
                    .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
        for (int s = 0; s < n3; s++) { jt.w3[s] = w3[s]; jt.u3[s] = u3 ? u3[s] : NULL; jt.b3[s] = b3[s]; }
        jobs[t] = jt;
    }
    return parallel(run_block, jobs, sizeof(job_t), n);
}

/* ---- A cascade's 1x1 fusion: y = relu(W [x_0 .. x_{n-1}] + b) over n 64-channel blocks of the cascade buffer
   (pixel stride bs), bias and ReLU in the store. Block 0 is read from `first` (pixel stride fs) when given. ---- */
typedef struct {
    const bf16 *buf; long bs; const bf16 *first; long fs; int nchunks; long p0, p1;
    const pair *w; const float *b;  /* [nchunks * 32][64][2], [64] */
    bf16 *y; long ys;
} fuse_t;

/* the AMX form: blocks of 32 pixels, the products through a float32 row block */
static void *run_fuse_amx(fuse_t *j) {
    const __m512 zero = _mm512_setzero_ps();
    bf16 *pad = alloc_zeroed(sizeof(bf16) * 32 * 64 * MAX3);
    float *acc = alloc_zeroed(sizeof(float) * 32 * 64);
    if (!pad || !acc) {
        free(pad); free(acc);
        return FAILED;
    }
    tile_config(CFG_D64);
    for (long p0 = j->p0; p0 < j->p1; p0 += 32) {
        const bf16 *src = j->buf + p0 * j->bs, *src0 = j->first ? j->first + p0 * j->fs : src;
        long stride = j->bs, stride0 = j->first ? j->fs : j->bs;
        const int np = j->p1 - p0 < 32 ? (int)(j->p1 - p0) : 32;
        if (np < 32) {
            memset(pad, 0, sizeof(bf16) * 32 * 64 * MAX3);
            for (int p = 0; p < np; p++) {
                memcpy(pad + p * 64 * j->nchunks, src0 + p * stride0, sizeof(bf16) * 64);
                memcpy(pad + p * 64 * j->nchunks + 64, src + p * j->bs + 64, sizeof(bf16) * 64 * (j->nchunks - 1));
            }
            src = src0 = pad;
            stride = stride0 = 64 * j->nchunks;
        }
        const bf16 *w = (const bf16 *)j->w;
        for (int j0 = 0; j0 < 64; j0 += 32) {
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            for (int c = 0; c < j->nchunks; c++)
                for (int kc = 0; kc < 64; kc += 32) {
                    const bf16 *a = c ? src + c * 64 + kc : src0 + kc;
                    const long as = c ? stride : stride0;
                    const bf16 *b = w + ((long)c * 32 + kc / 2) * 128 + j0 * 2;
                    TLOAD(4, a, as * 2);
                    TLOAD(5, a + 16 * as, as * 2);
                    TLOAD(6, b, 256);
                    TLOAD(7, b + 32, 256);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            TSTORE(0, acc + j0, 256);
            TSTORE(1, acc + j0 + 16, 256);
            TSTORE(2, acc + 16 * 64 + j0, 256);
            TSTORE(3, acc + 16 * 64 + j0 + 16, 256);
        }
        for (int p = 0; p < np; p++)
            for (int m = 0; m < 64; m += 16)
                st16(j->y + (p0 + p) * j->ys + m,
                     _mm512_max_ps(_mm512_add_ps(_mm512_load_ps(acc + p * 64 + m), _mm512_loadu_ps(j->b + m)), zero));
    }
    _tile_release();
    free(pad); free(acc);
    return NULL;
}

static void *run_fuse(void *arg) {
    fuse_t *j = (fuse_t *)arg;
    if (AMX_ON) return run_fuse_amx(j);
    const __m512 zero = _mm512_setzero_ps();
    bf16 pad[6 * 64 * MAX3] __attribute__((aligned(64)));  /* the last, partial block of pixels */
    for (long p0 = j->p0; p0 < j->p1; p0 += 6) {
        const bf16 *src = j->buf + p0 * j->bs, *src0 = j->first ? j->first + p0 * j->fs : src;
        long stride = j->bs, stride0 = j->first ? j->fs : j->bs;
        const int np = j->p1 - p0 < 6 ? (int)(j->p1 - p0) : 6;
        if (np < 6) {
            memset(pad, 0, sizeof(pad));
            for (int p = 0; p < np; p++) {
                memcpy(pad + p * 64 * j->nchunks, src0 + p * stride0, sizeof(bf16) * 64);
                memcpy(pad + p * 64 * j->nchunks + 64, src + p * j->bs + 64, sizeof(bf16) * 64 * (j->nchunks - 1));
            }
            src = src0 = pad;
            stride = stride0 = 64 * j->nchunks;
        }
        if (np == 6 && p0 + 12 <= j->p1)  /* the next block's pixels, from memory: the buffer is far larger than L2 */
            for (int p = 6; p < 12; p++) {
                const bf16 *q0 = src0 + p * stride0, *q = src + p * stride;
                _mm_prefetch((const char *)q0, _MM_HINT_T0);
                _mm_prefetch((const char *)(q0 + 32), _MM_HINT_T0);
                for (int c = 1; c < j->nchunks; c++) {
                    _mm_prefetch((const char *)(q + c * 64), _MM_HINT_T0);
                    _mm_prefetch((const char *)(q + c * 64 + 32), _MM_HINT_T0);
                }
            }
        __m512 acc[24];
        for (int i = 0; i < 24; i++) acc[i] = zero;
        {
            const pair *s = (const pair *)src0;
            ACCUMULATE(6, 4, 32, stride0 / 2, s, j->w, acc)
        }
        for (int c = 1; c < j->nchunks; c++) {
            const pair *s = (const pair *)(src + c * 64), *wk = j->w + (long)c * 32 * 64;
            ACCUMULATE(6, 4, 32, stride / 2, s, wk, acc)
        }
        for (int p = 0; p < np; p++)
            for (int m = 0; m < 4; m++)
                st16(j->y + (p0 + p) * j->ys + m * 16,
                     _mm512_max_ps(_mm512_add_ps(acc[p * 4 + m], _mm512_loadu_ps(j->b + m * 16)), zero));
    }
    return NULL;
}

int srkit_bf16_fuse1x1(const bf16 *buf, long bs, const bf16 *first, long fs, int nchunks, long npix, const pair *w,
                       const float *b, bf16 *y, long ys, int nthreads) {
    /* pairs are read as 32-bit words: even strides keep them whole */
    if (nchunks < 1 || nchunks > MAX3 || npix < 1 || !buf || !w || !b || !y || bs < 64L * nchunks || bs % 2 ||
        ys < 64 || (first && (fs < 64 || fs % 2)))
        return -1;
    const int bp = AMX_ON ? 32 : 6;  /* pixels a block */
    const long blocks = (npix + bp - 1) / bp;
    const int n = clamp_threads(nthreads, blocks);
    fuse_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++) {
        long p0 = blocks * t / n * bp, p1 = blocks * (t + 1) / n * bp;
        jobs[t] = (fuse_t){.buf = buf, .bs = bs, .first = first, .fs = fs, .nchunks = nchunks, .p0 = p0,
                           .p1 = p1 < npix ? p1 : npix, .w = w, .b = b, .y = y, .ys = ys};
    }
    return parallel(run_fuse, jobs, sizeof(fuse_t), n);
}

/* ---- A dense 3x3 conv, 64 channels in, 64 n out, + bias, optional ReLU, by rows; bf16 or float32 out ---- */
typedef struct {
    const bf16 *x; long xs; int H, W, nchunks, relu;
    const pair *w, *u; const float *b;  /* direct [nchunks][3][3][32][64][2] or Winograd [nchunks][6][96][64][2] */
    bf16 *y; float *yf; long ys;
    int h0, h1;
} conv_t;

static void *run_conv(void *arg) {
    conv_t *j = (conv_t *)arg;
    const int amx = AMX_ON, W = j->W, Wp = amx ? (W + 31) / 32 * 32 : 4 * (((W + 3) / 4 + 5) / 6 * 6);
    const long xlen = (long)(Wp + 8) * 64;
    bf16 *xr = alloc_zeroed(sizeof(bf16) * 3 * xlen), *v = alloc_zeroed(sizeof(bf16) * 6 * WTC * 192);
    float *out = alloc_zeroed(sizeof(float) * (size_t)Wp * 64), *mt = alloc_zeroed(sizeof(float) * 6 * WTC * 64);
    if (!xr || !out || !v || !mt) {
        free(xr); free(out); free(v); free(mt);
        return FAILED;
    }
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    const __m512 zero = _mm512_setzero_ps();
    if (amx) tile_config(CFG_D64);
    for (int h = j->h0; h < j->h1; h++) {
        for (int rr = h - 1; rr <= h + 1; rr++) {
            const int s = slot_of(rr);
            if (have[s] == rr) continue;
            have[s] = rr;
            if (rr < 0 || rr >= j->H) memset(xr + s * xlen, 0, sizeof(bf16) * xlen);
            else load_row(j->x, j->xs, W, 1, 64, rr, xr + s * xlen, 0);
        }
        const bf16 *rows[3] = {xr + slot_of(h - 1) * xlen, xr + slot_of(h) * xlen, xr + slot_of(h + 1) * xlen};
        for (int q = 0; q < j->nchunks; q++) {
            if (amx)
                for (int x0 = 0; x0 < Wp; x0 += 32) amx_d64(rows, 3, (const bf16 *)(j->w + (long)q * 9 * 32 * 64), out, x0);
            else if (j->u) wino_row(rows, Wp / 4, j->u + (long)q * 6 * 96 * 64, out, v, mt);
            else
                for (int x0 = 0; x0 < Wp; x0 += 6) conv3_d64(rows, j->w + (long)q * 9 * 32 * 64, out, x0);
            for (int m = 0; m < 4; m++) {
                const __m512 b = _mm512_loadu_ps(j->b + q * 64 + m * 16);
                for (int w = 0; w < W; w++) {
                    __m512 r = _mm512_add_ps(_mm512_load_ps(out + (long)w * 64 + m * 16), b);
                    if (j->relu) r = _mm512_max_ps(r, zero);
                    const long at = ((long)h * W + w) * j->ys + q * 64 + m * 16;
                    if (j->yf) _mm512_storeu_ps(j->yf + at, r);
                    else st16(j->y + at, r);
                }
            }
        }
    }
    if (amx) _tile_release();
    free(xr); free(out); free(v); free(mt);
    return NULL;
}

/* y (bf16) or yf (float32, when given; y is then NULL) */
int srkit_bf16_conv3x3(const bf16 *x, long xs, int H, int W, int nchunks, const pair *w, const pair *u,
                       const float *b, int relu, bf16 *y, float *yf, long ys, int nthreads) {
    if (nchunks < 1 || H < 1 || W < 1 || !x || (!w && !u) || !b || (!y == !yf) || xs < 64 || ys < 64L * nchunks)
        return -1;
    const int n = clamp_threads(nthreads, H);
    conv_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (conv_t){.x = x, .xs = xs, .H = H, .W = W, .nchunks = nchunks, .relu = relu, .w = w, .u = u,
                           .b = b, .y = y, .yf = yf, .ys = ys,
                           .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_conv, jobs, sizeof(conv_t), n);
}

/* ---- The x2 tail: y = pixel_shuffle(exit'(relu(up(x))), 2), streamed as _cpu_kernels.c's
   srkit_subpixel_tail: up (3x3, 64 -> 256, groups 1 or 4) into a ring of three bf16 rows of the 256-channel
   map, phase-major ((i * 2 + j) * 64 + c), and the sub-pixel exit conv (256 -> 12) from it, skipping the
   (tap, phase) blocks whose weights are all zero; the float32 image written with any strides. ---- */
typedef struct {
    const bf16 *x; long xs;
    int H, W, G;
    const bf16 *wa; const float *ba;  /* up: [4 chunks][3][3][K/2][64][2], bias [256] phase-major */
    const bf16 *we; const float *be;  /* exit': [36][32][16][2], bias [16] (12 used) */
    const unsigned char *mask;        /* [36] */
    float *y; long sy, sx, sc;
    int h0, h1;
} tail_t;

static void *run_tail(void *arg) {
    tail_t *j = (tail_t *)arg;
    const int amx = AMX_ON, W = j->W, G = j->G, K = 64 / G, Wp = (W + 63) / 64 * 64;
    const long xlen = (long)(Wp + 8) * K, elen = (long)(Wp + 8) * 256;
    bf16 *xr = alloc_zeroed(sizeof(bf16) * 3 * G * xlen), *er = alloc_zeroed(sizeof(bf16) * 3 * elen);
    float *out = alloc_zeroed(sizeof(float) * (size_t)Wp * 64);
    if (!xr || !er || !out) {
        free(xr); free(er); free(out);
        return FAILED;
    }
    int xhave[3] = {INT32_MIN, INT32_MIN, INT32_MIN}, ehave[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    const __m512 zero = _mm512_setzero_ps();
    for (int h = j->h0; h < j->h1; h++) {
        for (int r = h - 1; r <= h + 1; r++) {   /* ring E holds relu(up(x)) rows h-1..h+1 */
            const int es = slot_of(r);
            if (ehave[es] == r) continue;
            ehave[es] = r;
            bf16 *erow = er + es * elen;
            if (r < 0 || r >= j->H) { memset(erow, 0, sizeof(bf16) * elen); continue; }
            for (int rr = r - 1; rr <= r + 1; rr++) {
                const int s = slot_of(rr);
                if (xhave[s] == rr) continue;
                xhave[s] = rr;
                if (rr < 0 || rr >= j->H)
                    for (int g = 0; g < G; g++) memset(xr + (g * 3 + s) * xlen, 0, sizeof(bf16) * xlen);
                else
                    load_row(j->x, j->xs, W, G, K, rr, xr + s * xlen, 3 * xlen);
            }
            if (amx) tile_config(G == 4 ? CFG_G16 : CFG_D64);
            for (int q = 0; q < 4; q++) {         /* chunk q: 64 outputs from group q (G = 4) or all inputs */
                const int g = G == 4 ? q : 0;
                const bf16 *rows[3];
                for (int ky = 0; ky < 3; ky++) rows[ky] = xr + (g * 3 + slot_of(r + ky - 1)) * xlen;
                for (int x0 = 0; x0 < Wp; x0 += 32) blk_conv(amx, rows, 3, K, j->wa + (long)q * 9 * K * 64, out, x0);
                for (int m = 0; m < 4; m++) {      /* vector m of chunk q -> its phase-major place */
                    const int off = G == 4 ? m * 64 + q * 16 : q * 64 + m * 16;
                    const __m512 b = _mm512_loadu_ps(j->ba + off);
                    for (int w = 0; w < W; w++)
                        st16(erow + (long)(w + 1) * 256 + off,
                             _mm512_max_ps(_mm512_add_ps(_mm512_load_ps(out + (long)w * 64 + m * 16), b), zero));
                }
            }
        }
        const bf16 *rows[3] = {er + slot_of(h - 1) * elen, er + slot_of(h) * elen, er + slot_of(h + 1) * elen};
        if (amx) tile_config(CFG_D64);
        for (int x0 = 0; x0 < Wp; x0 += 64) blk_exit(amx, rows, j->we, j->mask, out, x0);
        for (int w = 0; w < W; w++)
            for (int o = 0; o < 3; o++)
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) {
                        const int k = o * 4 + a * 2 + b;
                        j->y[(long)(2 * h + a) * j->sy + (long)(2 * w + b) * j->sx + o * j->sc] =
                            out[(long)w * 16 + k] + j->be[k];
                    }
    }
    if (amx) _tile_release();
    free(xr); free(er); free(out);
    return NULL;
}

int srkit_bf16_subpixel_tail(const bf16 *x, long xs, int H, int W, int G, const bf16 *wa, const float *ba,
                             const bf16 *we, const float *be, const unsigned char *mask, float *y, long sy, long sx,
                             long sc, int nthreads) {
    if ((G != 1 && G != 4) || H < 1 || W < 1 || !x || !y || !wa || !ba || !we || !be || !mask ||
        xs < 64 || sc != 1 || sx < 3 || sy < 2L * W * sx)
        return -1;
    const int n = clamp_threads(nthreads, H);
    tail_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (tail_t){.x = x, .xs = xs, .H = H, .W = W, .G = G, .wa = wa, .ba = ba, .we = we, .be = be,
                           .mask = mask, .y = y, .sy = sy, .sx = sx, .sc = sc,
                           .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_tail, jobs, sizeof(tail_t), n);
}

/* ---- A wide-activation body: y = conv3x3(W3)(conv1x1(W2)(relu(conv1x1(W1)(x)))), 64 channels in and
   out, 64 c1 in the middle, the second 1x1's outputs zero-padded to 64, streamed by rows as _cpu_kernels.c's
   srkit_wide_body: the wide map lives per block of 32 pixels, the 64-padded map in a ring of three rows. ---- */
typedef struct {
    const bf16 *x; long xs; bf16 *y; long ys;
    int H, W, c1;
    const bf16 *w1; const float *b1;  /* [c1][32][64][2], [64 c1] */
    const bf16 *w2; const float *b2;  /* [32 c1][64][2], [64] */
    const bf16 *w3; const float *b3;  /* [3][3][32][64][2], [64] */
    int h0, h1;
} body_t;

/* row r of relu(x W1 + b1) W2 + b2 into dst + (w + 1) * 64 for w < W (the rest of dst stays zero) */
static void body_row(const body_t *j, int amx, int r, bf16 *xrow, bf16 *t1, float *tmp, bf16 *dst) {
    const int W = j->W, Wp = (W + 31) / 32 * 32, C1 = 64 * j->c1;
    const __m512 zero = _mm512_setzero_ps();
    load_row(j->x, j->xs, W, 1, 64, r, xrow - 64, 0);  /* xrow[w] = x[r][w]; xrow's pixels past W stay zero */
    for (int x0 = 0; x0 < Wp; x0 += 32) {
        const bf16 *src[1] = {xrow + (long)x0 * 64};
        for (int c = 0; c < j->c1; c++) {
            blk_conv(amx, src, 1, 64, j->w1 + (long)c * 32 * 128, tmp, 0);
            for (int p = 0; p < 32; p++)
                for (int m = 0; m < 64; m += 16)
                    st16(t1 + (long)p * C1 + c * 64 + m, _mm512_max_ps(_mm512_add_ps(_mm512_load_ps(tmp + p * 64 + m),
                                                                                      _mm512_loadu_ps(j->b1 + c * 64 + m)), zero));
        }
        const bf16 *mid[1] = {t1};
        blk_conv(amx, mid, 1, C1, j->w2, tmp, 0);
        for (int p = 0; p < 32 && x0 + p < W; p++)
            for (int m = 0; m < 64; m += 16)
                st16(dst + (long)(x0 + p + 1) * 64 + m, _mm512_add_ps(_mm512_load_ps(tmp + p * 64 + m), _mm512_loadu_ps(j->b2 + m)));
    }
}

static void *run_body(void *arg) {
    body_t *j = (body_t *)arg;
    const int amx = AMX_ON, W = j->W, Wp = (W + 31) / 32 * 32;
    const long rowlen = (long)(Wp + 8) * 64;
    bf16 *ring = alloc_zeroed(sizeof(bf16) * 3 * rowlen), *xrow = alloc_zeroed(sizeof(bf16) * (size_t)(Wp + 1) * 64);
    bf16 *t1 = alloc_zeroed(sizeof(bf16) * 32 * 64 * (size_t)j->c1);
    float *tmp = alloc_zeroed(sizeof(float) * 32 * 64), *out = alloc_zeroed(sizeof(float) * (size_t)Wp * 64);
    if (!ring || !xrow || !t1 || !tmp || !out) {
        free(ring); free(xrow); free(t1); free(tmp); free(out);
        return FAILED;
    }
    if (amx) tile_config(CFG_D64);
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    for (int h = j->h0; h < j->h1; h++) {
        for (int r = h - 1; r <= h + 1; r++) {
            const int slot = slot_of(r);
            if (have[slot] == r) continue;
            have[slot] = r;
            if (r < 0 || r >= j->H) memset(ring + slot * rowlen, 0, sizeof(bf16) * rowlen);
            else body_row(j, amx, r, xrow + 64, t1, tmp, ring + slot * rowlen);
        }
        const bf16 *rows[3] = {ring + slot_of(h - 1) * rowlen, ring + slot_of(h) * rowlen, ring + slot_of(h + 1) * rowlen};
        for (int x0 = 0; x0 < Wp; x0 += 32) blk_conv(amx, rows, 3, 64, j->w3, out, x0);
        for (int w = 0; w < W; w++)
            for (int m = 0; m < 64; m += 16)
                st16(j->y + ((long)h * W + w) * j->ys + m,
                     _mm512_add_ps(_mm512_load_ps(out + (long)w * 64 + m), _mm512_loadu_ps(j->b3 + m)));
    }
    if (amx) _tile_release();
    free(ring); free(xrow); free(t1); free(tmp); free(out);
    return NULL;
}

int srkit_bf16_wide_body(const bf16 *x, long xs, bf16 *y, long ys, int H, int W, int c1, const bf16 *w1,
                         const float *b1, const bf16 *w2, const float *b2, const bf16 *w3, const float *b3,
                         int nthreads) {
    if (H < 1 || W < 1 || c1 < 1 || c1 > 64 || !x || !y || !w1 || !b1 || !w2 || !b2 || !w3 || !b3 ||
        xs < 64 || ys < 64)
        return -1;
    const int n = clamp_threads(nthreads, H);
    body_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (body_t){.x = x, .xs = xs, .y = y, .ys = ys, .H = H, .W = W, .c1 = c1, .w1 = w1, .b1 = b1,
                           .w2 = w2, .b2 = b2, .w3 = w3, .b3 = b3,
                           .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_body, jobs, sizeof(body_t), n);
}

/* ---- An SE-scaled residual's passes over a bf16 map (torch's bf16 reductions and pointwise ops measured 2-4x
   slower than float32 ones here): channel sums, and out = b * f + x * s. ---- */
typedef struct {
    const bf16 *b; long bs; const bf16 *x; long xs; bf16 *o; long os;
    const float *f; float s; long p0, p1;
    float sums[64] __attribute__((aligned(64)));
} pw_t;

static void *run_sums(void *arg) {
    pw_t *j = (pw_t *)arg;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (long p = j->p0; p < j->p1; p++)
        for (int m = 0; m < 4; m++) acc[m] = _mm512_add_ps(acc[m], ld16(j->b + p * j->bs + m * 16));
    for (int m = 0; m < 4; m++) _mm512_store_ps(j->sums + m * 16, acc[m]);
    return NULL;
}

/* sums[c] = sum over npix pixels of b[p * bs + c], c < 64, accumulated in float32 (per thread, then added) */
int srkit_bf16_channel_sums(const bf16 *b, long bs, long npix, float *sums, int nthreads) {
    if (!b || !sums || npix < 1 || bs < 64) return -1;
    const int n = clamp_threads(nthreads, npix);
    pw_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (pw_t){.b = b, .bs = bs, .p0 = npix * t / n, .p1 = npix * (t + 1) / n};
    parallel(run_sums, jobs, sizeof(pw_t), n);
    for (int c = 0; c < 64; c++) {
        float s = 0;
        for (int t = 0; t < n; t++) s += jobs[t].sums[c];
        sums[c] = s;
    }
    return 0;
}

static void *run_scale_add(void *arg) {
    pw_t *j = (pw_t *)arg;
    const __m512 s = _mm512_set1_ps(j->s);
    for (long p = j->p0; p < j->p1; p++)
        for (int m = 0; m < 64; m += 16)
            st16(j->o + p * j->os + m, _mm512_fmadd_ps(ld16(j->b + p * j->bs + m), _mm512_loadu_ps(j->f + m),
                                                       _mm512_mul_ps(ld16(j->x + p * j->xs + m), s)));
    return NULL;
}

/* o = b * f + x * s over npix pixels of 64 channels (f per channel, float32), each map with its pixel stride */
int srkit_bf16_scale_add(const bf16 *b, long bs, const float *f, const bf16 *x, long xs, float s, bf16 *o, long os,
                         long npix, int nthreads) {
    if (!b || !f || !x || !o || npix < 1 || bs < 64 || xs < 64 || os < 64) return -1;
    const int n = clamp_threads(nthreads, npix / 1024 + 1);
    pw_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (pw_t){.b = b, .bs = bs, .x = x, .xs = xs, .o = o, .os = os, .f = f, .s = s,
                         .p0 = npix * t / n, .p1 = npix * (t + 1) / n};
    return parallel(run_scale_add, jobs, sizeof(pw_t), n);
}

/* ---- A grouped 3x3 conv, 64 channels in 4 groups of 16, each group to `per` outputs (a multiple of
   16), + bias, optional ReLU, by rows, bf16 or float32 out: a grouped upsampling conv. Per group and row:
   chunks of 64 outputs, then of 16, as _cpu_kernels.c's srkit_gconv3x3. ---- */
typedef struct {
    const bf16 *x; long xs; int H, W, per, relu;
    const bf16 *w; const float *b;   /* [4 groups][64-output chunks [9][8][64][2] ..., then [9][8][16][2] ...] */
    bf16 *y; float *yf; long ys;
    int h0, h1;
} gconv_t;

static void *run_gconv(void *arg) {
    gconv_t *j = (gconv_t *)arg;
    const int amx = AMX_ON, W = j->W, Wp = (W + 63) / 64 * 64;
    const long xlen = (long)(Wp + 8) * 16;
    bf16 *xr = alloc_zeroed(sizeof(bf16) * 4 * 3 * xlen);
    float *out = alloc_zeroed(sizeof(float) * (size_t)Wp * 64);
    if (!xr || !out) {
        free(xr); free(out);
        return FAILED;
    }
    if (amx) tile_config(CFG_G16);
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    const int full = j->per / 64, rest = (j->per % 64) / 16;
    const long gw = 9L * 16 * j->per;          /* one group's packed weights, in bf16 */
    const __m512 zero = _mm512_setzero_ps();
    for (int h = j->h0; h < j->h1; h++) {
        for (int rr = h - 1; rr <= h + 1; rr++) {
            const int s = slot_of(rr);
            if (have[s] == rr) continue;
            have[s] = rr;
            if (rr < 0 || rr >= j->H)
                for (int g = 0; g < 4; g++) memset(xr + (g * 3 + s) * xlen, 0, sizeof(bf16) * xlen);
            else
                load_row(j->x, j->xs, W, 4, 16, rr, xr + s * xlen, 3 * xlen);
        }
        for (int g = 0; g < 4; g++) {
            const bf16 *rows[3];
            for (int ky = 0; ky < 3; ky++) rows[ky] = xr + (g * 3 + slot_of(h + ky - 1)) * xlen;
            for (int c = 0; c < full + rest; c++) {
                const int wide = c < full, n = wide ? 64 : 16;
                const int o0 = g * j->per + (wide ? c * 64 : full * 64 + (c - full) * 16);
                const bf16 *w = j->w + g * gw + (wide ? (long)c * 9 * 16 * 64 : (long)full * 9 * 16 * 64 + (long)(c - full) * 9 * 16 * 16);
                if (wide) for (int x0 = 0; x0 < Wp; x0 += 32) blk_conv(amx, rows, 3, 16, w, out, x0);
                else for (int x0 = 0; x0 < Wp; x0 += 64) blk_g16(amx, rows, w, out, x0);
                for (int m = 0; m < n; m += 16) {
                    const __m512 b = _mm512_loadu_ps(j->b + o0 + m);
                    for (int x = 0; x < W; x++) {
                        __m512 r = _mm512_add_ps(_mm512_load_ps(out + (long)x * n + m), b);
                        if (j->relu) r = _mm512_max_ps(r, zero);
                        const long at = ((long)h * W + x) * j->ys + o0 + m;
                        if (j->yf) _mm512_storeu_ps(j->yf + at, r);
                        else st16(j->y + at, r);
                    }
                }
            }
        }
    }
    if (amx) _tile_release();
    free(xr); free(out);
    return NULL;
}

int srkit_bf16_gconv3x3(const bf16 *x, long xs, int H, int W, int per, const bf16 *w, const float *b, int relu,
                        bf16 *y, float *yf, long ys, int nthreads) {
    if (H < 1 || W < 1 || per < 16 || per % 16 || !x || !w || !b || (!y == !yf) || xs < 64 || ys < 4L * per)
        return -1;
    const int n = clamp_threads(nthreads, H);
    gconv_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (gconv_t){.x = x, .xs = xs, .H = H, .W = W, .per = per, .relu = relu, .w = w, .b = b, .y = y,
                            .yf = yf, .ys = ys, .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_gconv, jobs, sizeof(gconv_t), n);
}

/* ---- The exit conv after an x R pixel shuffle (the x3 branch) from the bf16 unshuffled map, as
   _cpu_kernels.c's srkit_shuffle_exit: each low-resolution row copied once, phase-major, into a ring of three
   bf16 rows; each output pixel's taps are phase blocks of its 3x3 low-resolution neighbourhood (blocks whose
   weights are all zero skipped); the float32 image written with any strides. vdpbf16ps on every bf16 CPU: the
   32 output lanes (27 used at R = 3) are two vectors, no AMX tile shape. ---- */
#define SXB 12  /* output pixels a block: 24 accumulators */
typedef struct {
    const bf16 *x; long xs;
    int H, W, G, R;
    const pair *we; const float *be;  /* [9 taps][R^2 phases][32 pairs][32][2]: lane o * R^2 + a * R + b; [3] */
    const unsigned char *mask;        /* [9][R^2] */
    float *y; long sy, sx, sc;
    int h0, h1;
} bsexit_t;

static void *run_shuffle_exit(void *arg) {
    bsexit_t *j = (bsexit_t *)arg;
    const int W = j->W, R = j->R, RR = R * R, C = 64 * RR, K = 64 / j->G;
    const long rowlen = (long)(W + 2 + SXB) * C;  /* padded at both ends; a last block reads past W */
    bf16 *ring = alloc_zeroed(sizeof(bf16) * 3 * rowlen);
    float *out = alloc_zeroed(sizeof(float) * (size_t)(W + SXB) * 32);
    if (!ring || !out) {
        free(ring); free(out);
        return FAILED;
    }
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    for (int h = j->h0; h < j->h1; h++) {
        for (int r = h - 1; r <= h + 1; r++) {
            const int s = slot_of(r);
            if (have[s] == r) continue;
            have[s] = r;
            bf16 *row = ring + s * rowlen;
            if (r < 0 || r >= j->H) { memset(row, 0, sizeof(bf16) * rowlen); continue; }
            for (int w = 0; w < W; w++) {         /* [g][q][k] -> [q][g * K + k] */
                const bf16 *src = j->x + ((long)r * W + w) * j->xs;
                bf16 *dst = row + (long)(w + 1) * C;
                for (int g = 0; g < j->G; g++)
                    for (int q = 0; q < RR; q++)
                        memcpy(dst + q * 64 + g * K, src + (long)(g * RR + q) * K, sizeof(bf16) * K);
            }
        }
        const bf16 *rows[3] = {ring + slot_of(h - 1) * rowlen, ring + slot_of(h) * rowlen,
                               ring + slot_of(h + 1) * rowlen};
        for (int x0 = 0; x0 < W; x0 += SXB) {
            __m512 acc[2 * SXB];
            _Pragma("GCC unroll 24") for (int i = 0; i < 2 * SXB; i++) acc[i] = _mm512_setzero_ps();
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    for (int q = 0; q < RR; q++) {
                        const int tq = (ky * 3 + kx) * RR + q;
                        if (!j->mask[tq]) continue;
                        const pair *src = (const pair *)(rows[ky] + (long)(x0 + kx) * C + q * 64);
                        const pair *wk = j->we + (long)tq * 32 * 32;
                        ACCUMULATE(SXB, 2, 32, C / 2, src, wk, acc)
                    }
            _Pragma("GCC unroll 12") for (int p = 0; p < SXB; p++) {
                _mm512_storeu_ps(out + (long)(x0 + p) * 32, acc[2 * p]);
                _mm512_storeu_ps(out + (long)(x0 + p) * 32 + 16, acc[2 * p + 1]);
            }
        }
        for (int w = 0; w < W; w++)
            for (int o = 0; o < 3; o++)
                for (int a = 0; a < R; a++)
                    for (int b = 0; b < R; b++)
                        j->y[(long)(R * h + a) * j->sy + (long)(R * w + b) * j->sx + o * j->sc] =
                            out[(long)w * 32 + o * RR + a * R + b] + j->be[o];
    }
    free(ring); free(out);
    return NULL;
}

int srkit_bf16_shuffle_exit(const bf16 *x, long xs, int H, int W, int G, int R, const pair *we, const float *be,
                            const unsigned char *mask, float *y, long sy, long sx, long sc, int nthreads) {
    if ((G != 1 && G != 4) || (R != 2 && R != 3) || H < 1 || W < 1 || !x || !y || !we || !be || !mask ||
        xs < 64L * R * R || sc != 1 || sx < 3 || sy < (long)R * W * sx)
        return -1;
    const int n = clamp_threads(nthreads, H);
    bsexit_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (bsexit_t){.x = x, .xs = xs, .H = H, .W = W, .G = G, .R = R, .we = we, .be = be, .mask = mask,
                             .y = y, .sy = sy, .sx = sx, .sc = sc,
                             .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_shuffle_exit, jobs, sizeof(bsexit_t), n);
}
