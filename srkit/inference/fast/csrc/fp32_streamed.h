#ifndef SRKIT_FP32_STREAMED_H
#define SRKIT_FP32_STREAMED_H
/* Streamed kernels for the CPU fast path's 64-channel parts (Python side: srkit/inference/fast/cpu_fp32.py).

Why: at 64 channels such a layer is bound by memory traffic as much as by arithmetic. One library
call per conv reads and writes a full-size tensor (59 MB at 640x360), and each block output is then copied
into the cascade buffer; oneDNN as PyTorch calls it cannot read or write a strided slice in place. Measured
on a 2-core Xeon (AVX-512), 640x360, alone: a grouped residual block (groups 4, with its 1x1) 55 ms here vs
150-170 ms as oneDNN calls plus the copy; a dense residual block 73 ms vs 155-175 ms; the x2 tail 87-104 ms
(grouped) and 187-217 ms (dense) vs 267-430 ms.

- srkit_resblock: relu(body(x) + x), body = n 3x3 convs (stride 1, zero padding 1, ReLU after each but
  possibly the last), then optionally a 1x1 conv: a plain residual block (3x3, ReLU, 3x3) and an efficient
  one (grouped 3x3, ReLU, grouped 3x3, ReLU, 1x1). Each row of every intermediate is made just
  before it is needed and lives in a ring of three rows in L2, so the block reads x once and writes its
  output once, straight into the caller's strided destination (a slice of the cascade buffer).
- srkit_subpixel_tail: the last x2 upsampling conv + ReLU + the sub-pixel exit conv + pixel shuffle, with
  the 256-channel map in a ring of three rows instead of memory.
- srkit_shuffle_exit: the exit conv after an x3 pixel shuffle, read from the unshuffled map.
- srkit_shuffle_resize: a pixel shuffle and the bicubic resize after it (an overscaling model), as one pass,
  optionally with the exit conv after the resize.
- srkit_fuse1x1: a cascade's 1x1 fusion over the buffer's 64-channel blocks, bias and ReLU in the store.
- srkit_conv3x3: any other dense 3x3 conv from 64 channels to 64 n, + bias (+ ReLU), by rows.
- srkit_gconv3x3: a grouped 3x3 conv, 4 groups of 16 channels to 16 m outputs each, + bias (+ ReLU), by rows.
- srkit_wide_body: a wide-activation body, 1x1 (64 -> 64 c1), ReLU, 1x1 (-> at most 64), 3x3 (-> 64), by rows:
  the wide maps never stored.

The 3x3 convs run as 1-D Winograd F(4,3) along the row when the caller passes transformed weights (2x fewer
multiplications; the dense convs gain 1.4-1.6x, the grouped ones little), else directly. Tensors are NHWC
float32 with a pixel stride (the channels of the buffer they live in). One thread per band of output rows; a
band recomputes the halo rows it needs.

One build per instruction set (setup.py), each a file of its own that includes this shared part:
fp32_avx512.c (AVX-512F: 16 floats a register, 32 registers) and fp32_avx2.c (AVX2 + FMA: 8 floats, 16
registers). The shared code works on 16-float vectors (v16: one zmm, or a pair of ymm); only the innermost
products are written per instruction set, register-blocked to fit its register file. The
caller checks the CPU. Every entry point checks the strides and sizes it relies on and returns -1 for any
it does not serve. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX3 4        /* most 3x3 convs in one body */
#define ABI 7         /* bump with any change of the exported functions (srkit/inference/fast/cpu_fp32.py: _ABI) */

/* The version of the exported functions' arguments: a library built from older source is not called. */
int srkit_kernels_abi(void) { return ABI; }
#define MAXTHREADS 64

/* Which instruction set this build is for: 1 AVX-512F, 2 AVX2 + FMA. */
int srkit_kernels_variant(void) { return VARIANT; }


/* A 3x3 conv (padding 1) of one output row as 1-D Winograd F(4,3) along the row: per tile of 4 output
   pixels, each of the three input rows is transformed to 6 values (BT d), the 6 products are GEMMs over
   3 rows x K input channels against weights transformed in float64 on the Python side (G g), and the
   4 outputs come back by AT m. 2x fewer multiplications than the direct conv, the same 3-row ring.
   rows: 3 padded input rows (pixel stride K); u: [6][3K][CO]; out: [4 * tiles][CO]; scratch v: [6][TC][3K],
   mt: [6][TC][CO], TC tiles a chunk (a multiple of the GEMM's P; the chunk's v stays in L2). */
static int wino_p(int K, int CO) { return K == 16 && CO == 16 ? 28 : 6; }
static int wino_tc(int K, int CO) { return K == 16 && CO == 16 ? 56 : 24; }
static long wino_scratch(int K, int CO) { return 6L * wino_tc(K, CO) * (3 * K > CO ? 3 * K : CO); }

static void wino_row(const float *const *rows, int K, int CO, int tiles, const float *u, float *out,
                     float *v, float *mt) {
    const int K3 = 3 * K, P = wino_p(K, CO), TC = wino_tc(K, CO);
    for (int t0 = 0; t0 < tiles; t0 += TC) {
        const int tc = tiles - t0 < TC ? tiles - t0 : TC;  /* a multiple of P: tiles is */
        for (int t = 0; t < tc; t++)
            for (int ky = 0; ky < 3; ky++)
                for (int k = 0; k < K; k += 16) {
                    const float *d = rows[ky] + (long)(4 * (t0 + t)) * K + k;
                    const v16 d0 = v_loadu(d), d1 = v_loadu(d + K),
                                 d2 = v_loadu(d + 2 * K), d3 = v_loadu(d + 3 * K),
                                 d4 = v_loadu(d + 4 * K), d5 = v_loadu(d + 5 * K);
                    const v16 c4 = v_set1(4.f), c5 = v_set1(5.f), c2 = v_set1(2.f);
                    const v16 a = v_fnmadd(c4, d2, d4);           /* d4 - 4 d2 */
                    const v16 b = v_fnmadd(c4, d1, d3);           /* d3 - 4 d1 */
                    const v16 e = v_sub(d4, d2);
                    const v16 f = v_mul(c2, v_sub(d3, d1));
                    float *o = v + (long)t * K3 + ky * K + k;
                    const long st = (long)TC * K3;
                    v_storeu(o, v_add(v_fnmadd(c5, d2, v_mul(c4, d0)), d4));
                    v_storeu(o + st, v_add(a, b));
                    v_storeu(o + 2 * st, v_sub(a, b));
                    v_storeu(o + 3 * st, v_add(e, f));
                    v_storeu(o + 4 * st, v_sub(e, f));
                    v_storeu(o + 5 * st, v_add(v_fnmadd(c5, d3, v_mul(c4, d1)), d5));
                }
        for (int xi = 0; xi < 6; xi++)
            for (int t = 0; t < tc; t += P) {
                const float *src = v + ((long)xi * TC + t) * K3;
                const float *w = u + (long)xi * K3 * CO;
                float *dst = mt + ((long)xi * TC + t) * CO;
                if (P == 28) gemm_g16(src, w, dst);
                else if (K == 64) gemm_d64(src, w, dst);
                else gemm_g16m4(src, w, dst);
            }
        const long st = (long)TC * CO;
        const v16 c2 = v_set1(2.f), c4 = v_set1(4.f), c8 = v_set1(8.f);
        for (int t = 0; t < tc; t++)
            for (int m = 0; m < CO; m += 16) {
                const float *q = mt + (long)t * CO + m;
                const v16 m0 = v_load(q), m1 = v_load(q + st), m2 = v_load(q + 2 * st),
                             m3 = v_load(q + 3 * st), m4 = v_load(q + 4 * st),
                             m5 = v_load(q + 5 * st);
                const v16 s12 = v_add(m1, m2), d12 = v_sub(m1, m2);
                const v16 s34 = v_add(m3, m4), d34 = v_sub(m3, m4);
                float *y = out + (long)4 * (t0 + t) * CO + m;
                v_store(y, v_add(v_add(m0, s12), s34));
                v_store(y + CO, v_fmadd(c2, d34, d12));
                v_store(y + 2 * CO, v_fmadd(c4, s34, s12));
                v_store(y + 3 * CO, v_add(v_fmadd(c8, d34, d12), m5));
            }
    }
}

static void *alloc_zeroed(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}

static int slot_of(int r) { return ((r % 3) + 3) % 3; }

#define FAILED ((void *)1)  /* what a job returns when it could not get its row buffers */

/* Run fn(job t) for t < n on n threads (the caller's thread is one of them); a thread that cannot be
   started runs its job on the caller's thread. Returns 0, or -2 when a job returned FAILED. */
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
   dst + g * stride + (w + 1) * K; columns 0 and past W are left as they are (zero). */
static void load_row(const float *x, long xs, int W, int G, int K, int r, float *dst, long stride) {
    const float *src = x + (long)r * W * xs;
    for (int w = 0; w < W; w++) {
        const float *sp = src + (long)w * xs;
        for (int g = 0; g < G; g++) {
            float *d = dst + g * stride + (long)(w + 1) * K;
            for (int k = 0; k < K; k += 16) v_storeu(d + k, v_loadu(sp + g * K + k));
        }
    }
}

typedef struct {
    const float *x; long xs;        /* input pixel (h, w) at x + (h * W + w) * xs; also the residual */
    float *y; long ys;              /* output pixel (h, w) at y + (h * W + w) * ys */
    int H, W, G, n3;                /* 3x3 convs: G groups of 64 / G channels (G = 1 or 4) */
    const float *w3[MAX3], *b3[MAX3];   /* packed [G][3][3][K][K], bias [64] */
    const float *u3[MAX3];          /* the same as Winograd F(4,3) weights [G][6][3K][K], or NULL: direct */
    const float *w1, *b1;           /* optional 1x1: packed [64][64], bias [64]; NULL if absent */
    int h0, h1;                     /* this thread's output rows */
} job_t;

typedef struct {
    const job_t *j;
    int K, P3, Wp3, Wp1;
    long rowlen;                    /* floats in one padded row of one group: (Wp3 + 2) * K */
    float *ring;                    /* [n3][G][3 slots][rowlen]: input rows of each 3x3 conv */
    int have[MAX3][3];              /* the row each slot holds */
    float *out;                     /* one conv's output row of one group: [max(Wp3, Wp1)][64] */
    float *t;                       /* the last 3x3's output row, NHWC [Wp1][64], when a 1x1 follows */
    float *v, *mt;                  /* Winograd scratch */
} ctx_t;

static float *ring_row(ctx_t *c, int s, int g, int slot) {
    return c->ring + (((long)s * c->j->G + g) * 3 + slot) * c->rowlen;
}

/* out = conv3 s of ring rows r-1, r, r+1, group g */
static void conv3_row(ctx_t *c, int s, int g, int r) {
    const float *rows[3];
    for (int ky = 0; ky < 3; ky++) rows[ky] = ring_row(c, s, g, slot_of(r + ky - 1));
    const int K = c->K;
    if (c->j->u3[s]) {
        wino_row(rows, K, K, c->Wp3 / 4, c->j->u3[s] + (long)g * 18 * K * K, c->out, c->v, c->mt);
        return;
    }
    const float *w = c->j->w3[s] + (long)g * 9 * K * K;
    for (int x0 = 0; x0 < c->Wp3; x0 += c->P3) {
        if (c->j->G == 4) conv3_g16(rows, w, c->out, x0);
        else conv3_d64(rows, w, c->out, x0);
    }
}

/* Make ring s hold row r (input of 3x3 conv s). Called with non-decreasing r per stage. */
static void ensure(ctx_t *c, int s, int r) {
    const job_t *j = c->j;
    const int G = j->G, K = c->K, W = j->W, slot = slot_of(r);
    if (c->have[s][slot] == r) return;
    if (r < 0 || r >= j->H) {
        for (int g = 0; g < G; g++) memset(ring_row(c, s, g, slot), 0, sizeof(float) * c->rowlen);
    } else if (s == 0) {
        load_row(j->x, j->xs, W, G, K, r, ring_row(c, 0, 0, slot), 3 * c->rowlen);
    } else {
        for (int d = -1; d <= 1; d++) ensure(c, s - 1, r + d);
        const v16 zero = v_zero();
        for (int g = 0; g < G; g++) {
            conv3_row(c, s - 1, g, r);
            float *dst = ring_row(c, s, g, slot) + K;  /* column 0 and columns past W stay zero */
            const float *b = j->b3[s - 1] + g * K;
            for (int w = 0; w < W; w++)
                for (int k = 0; k < K; k += 16)
                    v_storeu(dst + (long)w * K + k,
                                     v_max(v_add(v_load(c->out + (long)w * K + k),
                                                                 v_loadu(b + k)), zero));
        }
    }
    c->have[s][slot] = r;
}

/* y[h] = relu(out + bias + x[h]) for channels [c0, c0 + n) of each pixel; out has pixel stride n */
static void finish_row(ctx_t *c, int h, const float *bias, int c0, int n) {
    const job_t *j = c->j;
    const v16 zero = v_zero();
    for (int w = 0; w < j->W; w++) {
        const float *xr = j->x + ((long)h * j->W + w) * j->xs + c0;
        float *yr = j->y + ((long)h * j->W + w) * j->ys + c0;
        for (int k = 0; k < n; k += 16) {
            v16 v = v_add(v_load(c->out + (long)w * n + k), v_loadu(bias + c0 + k));
            v_storeu(yr + k, v_max(v_add(v, v_loadu(xr + k)), zero));
        }
    }
}

static void *run(void *arg) {
    job_t *j = (job_t *)arg;
    ctx_t c = {.j = j};
    c.K = 64 / j->G;
    c.P3 = j->G == 4 ? 28 : 6;
    /* a multiple of 4 Winograd tiles' P and so of P3: both forms of the conv fit it */
    c.Wp3 = 4 * (((j->W + 3) / 4 + c.P3 - 1) / c.P3 * c.P3);
    c.Wp1 = (j->W + 5) / 6 * 6;
    c.rowlen = (long)(c.Wp3 + 2) * c.K;
    const long wmax = c.Wp3 > c.Wp1 ? c.Wp3 : c.Wp1;
    c.ring = alloc_zeroed(sizeof(float) * (size_t)j->n3 * j->G * 3 * c.rowlen);
    c.out = alloc_zeroed(sizeof(float) * (size_t)wmax * 64);
    c.t = alloc_zeroed(sizeof(float) * (size_t)wmax * 64);
    c.v = alloc_zeroed(sizeof(float) * wino_scratch(c.K, c.K));
    c.mt = alloc_zeroed(sizeof(float) * wino_scratch(c.K, c.K));
    if (!c.ring || !c.out || !c.t || !c.v || !c.mt) {
        free(c.ring); free(c.out); free(c.t); free(c.v); free(c.mt);
        return FAILED;
    }
    for (int s = 0; s < MAX3; s++) c.have[s][0] = c.have[s][1] = c.have[s][2] = INT32_MIN;
    const int last = j->n3 - 1, K = c.K;
    const v16 zero = v_zero();
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
                    v_store(c.t + (long)w * 64 + g * K + k,
                                    v_max(v_add(v_load(c.out + (long)w * K + k),
                                                                v_loadu(b + k)), zero));
        }
        if (j->w1) {
            const float *rows[1] = {c.t};
            for (int x0 = 0; x0 < c.Wp1; x0 += 6) conv1_d64(rows, j->w1, c.out, x0);
            finish_row(&c, h, j->b1, 0, 64);
        }
    }
    free(c.ring); free(c.out); free(c.t); free(c.v); free(c.mt);
    return NULL;
}

/* relu(body(x) + x) into y. Returns 0; -1 for a shape it does not serve; -2 when a thread could not get its
   row buffers (y is then partly written; the Python side raises MemoryError). */
int srkit_resblock(const float *x, long xs, float *y, long ys, int H, int W, int G, int n3,
                   const float *const *w3, const float *const *u3, const float *const *b3, const float *w1,
                   const float *b1, int nthreads) {
    /* 64 channels a pixel in and out, each set of 3x3 weights, bias: what the loops below read */
    if ((G != 1 && G != 4) || n3 < 1 || n3 > MAX3 || H < 1 || W < 1 || !x || !y || !w3 || !b3 || xs < 64 ||
        ys < 64 || (w1 == NULL) != (b1 == NULL))
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
    return parallel(run, jobs, sizeof(job_t), n);
}

/* Make the input ring xr ([G][3 slots][xlen], per-group padded rows) hold rows r-1..r+1 of x. */
static void ensure_x_rows(const float *x, long xs, int H, int W, int G, int r, float *xr, long xlen, int *have) {
    const int K = 64 / G;
    for (int rr = r - 1; rr <= r + 1; rr++) {
        const int s = slot_of(rr);
        if (have[s] == rr) continue;
        have[s] = rr;
        if (rr < 0 || rr >= H)
            for (int g = 0; g < G; g++) memset(xr + (g * 3 + s) * xlen, 0, sizeof(float) * xlen);
        else
            load_row(x, xs, W, G, K, rr, xr + s * xlen, 3 * xlen);
    }
}

/* ---- The x2 tail: y = pixel_shuffle(exit'(relu(up(x))), 2), streamed ----
   up: 3x3, 64 -> 256 channels, G = 1 or 4 groups; exit': the sub-pixel form of the exit conv
   (srkit.fast.SubPixelExit), 3x3, 256 -> 12 channels. The 256-channel map (4x the input) is never
   stored: up's rows live in a ring of three. up's outputs are laid out phase-major, (i * 2 + j) * 64 + c
   for pixel-shuffle channel c * 4 + i * 2 + j, so that each exit tap reads whole 64-channel phase blocks
   and skips the blocks whose weights are all zero (a 3x3 conv at twice the resolution touches 16 of the 36
   (tap, phase) pairs). */
typedef struct {
    const float *x; long xs;
    int H, W, G;
    const float *wa, *ba;           /* up: [4 chunks][3][3][K][64], bias [256] phase-major */
    const float *ua;                /* up as Winograd weights [4 chunks][6][3K][64], or NULL: direct */
    const float *we, *be;           /* exit': [9 taps][4 phases][64][16], bias [16] (12 used) */
    const unsigned char *mask;      /* [9][4]: 1 where that tap and phase block has a nonzero weight */
    float *y; long sy, sx, sc;      /* output pixel (Y, X) channel o at y + Y * sy + X * sx + o * sc */
    int h0, h1;
} tail_t;


static void *run_tail(void *arg) {
    tail_t *j = (tail_t *)arg;
    const int W = j->W, G = j->G, K = 64 / G;
    const int WpA = 4 * (((W + 3) / 4 + 5) / 6 * 6), WpE = (W + 27) / 28 * 28, wmax = WpA > WpE ? WpA : WpE;
    const long xlen = (long)(wmax + 2) * K, elen = (long)(WpE + 2) * 256;
    float *xr = alloc_zeroed(sizeof(float) * 3 * G * xlen);   /* [G][3 slots][xlen] */
    float *er = alloc_zeroed(sizeof(float) * 3 * elen);       /* [3 slots][elen] */
    float *out = alloc_zeroed(sizeof(float) * (size_t)wmax * 64);
    float *v = alloc_zeroed(sizeof(float) * wino_scratch(K, 64));
    float *mt = alloc_zeroed(sizeof(float) * wino_scratch(K, 64));
    if (!xr || !er || !out || !v || !mt) {
        free(xr); free(er); free(out); free(v); free(mt);
        return FAILED;
    }
    int xhave[3] = {INT32_MIN, INT32_MIN, INT32_MIN}, ehave[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    const v16 zero = v_zero();
    for (int h = j->h0; h < j->h1; h++) {
        for (int r = h - 1; r <= h + 1; r++) {   /* ring E holds relu(up(x)) rows h-1..h+1 */
            const int es = slot_of(r);
            if (ehave[es] == r) continue;
            ehave[es] = r;
            float *erow = er + es * elen;
            if (r < 0 || r >= j->H) { memset(erow, 0, sizeof(float) * elen); continue; }
            ensure_x_rows(j->x, j->xs, j->H, W, G, r, xr, xlen, xhave);
            for (int q = 0; q < 4; q++) {         /* chunk q: 64 outputs from group q (G = 4) or all inputs */
                const int g = G == 4 ? q : 0;
                const float *rows[3];
                for (int ky = 0; ky < 3; ky++) rows[ky] = xr + (g * 3 + slot_of(r + ky - 1)) * xlen;
                if (j->ua) {
                    wino_row(rows, K, 64, WpA / 4, j->ua + (long)q * 18 * K * 64, out, v, mt);
                } else {
                    const float *w = j->wa + (long)q * 9 * K * 64;
                    for (int x0 = 0; x0 < WpA; x0 += 6) {
                        if (G == 4) conv3_g16m4(rows, w, out, x0);
                        else conv3_d64(rows, w, out, x0);
                    }
                }
                for (int m = 0; m < 4; m++) {      /* vector m of chunk q -> its phase-major place */
                    const int off = G == 4 ? m * 64 + q * 16 : q * 64 + m * 16;
                    const v16 b = v_loadu(j->ba + off);
                    for (int w = 0; w < W; w++)
                        v_storeu(erow + (long)(w + 1) * 256 + off,
                                         v_max(v_add(v_load(out + (long)w * 64 + m * 16), b),
                                                       zero));
                }
            }
        }
        const float *rows[3] = {er + slot_of(h - 1) * elen, er + slot_of(h) * elen, er + slot_of(h + 1) * elen};
        for (int x0 = 0; x0 < WpE; x0 += 28) exit_block(rows, j->we, j->mask, out, x0);
        for (int w = 0; w < W; w++)
            for (int o = 0; o < 3; o++)
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) {
                        const int k = o * 4 + a * 2 + b;
                        j->y[(long)(2 * h + a) * j->sy + (long)(2 * w + b) * j->sx + o * j->sc] =
                            out[(long)w * 16 + k] + j->be[k];
                    }
    }
    free(xr); free(er); free(out); free(v); free(mt);
    return NULL;
}

int srkit_subpixel_tail(const float *x, long xs, int H, int W, int G, const float *wa, const float *ua, const float *ba,
                        const float *we, const float *be, const unsigned char *mask,
                        float *y, long sy, long sx, long sc, int nthreads) {
    /* the output is written NHWC, 3 channels, at twice the size: each pixel and row apart from the next */
    if ((G != 1 && G != 4) || H < 1 || W < 1 || !x || !y || !wa || !ba || !we || !be || !mask || xs < 64 ||
        sc != 1 || sx < 3 || sy < 2L * W * sx)
        return -1;
    const int n = clamp_threads(nthreads, H);
    tail_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (tail_t){.x = x, .xs = xs, .H = H, .W = W, .G = G, .wa = wa, .ua = ua, .ba = ba, .we = we, .be = be,
                           .mask = mask, .y = y, .sy = sy, .sx = sx, .sc = sc,
                           .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_tail, jobs, sizeof(tail_t), n);
}

/* ---- The exit conv after an x R pixel shuffle (the x3 branch), without the shuffled map ----
   x: the upsampling conv's output at the low resolution, NHWC (pixel stride xs), its 64 R^2 channels in the
   order the fast path emits for the shuffle (srkit.inference.fast.shuffle_order): [G groups][R^2 phases]
   [64/G]. y = exit(pixel_shuffle(x, R)) + bias, 3 channels at R times the size, read from x directly: each
   low-resolution row is copied once, phase-major, into a zero-padded ring of three rows, and each output
   pixel's 3x3 taps are phase blocks of the 3x3 low-resolution neighbourhood; blocks whose weights are all
   zero are skipped (25 of 81 at R = 3). The 64-channel map at R^2 times the pixels is never stored. */
typedef struct {
    const float *x; long xs;
    int H, W, G, R;
    const float *we, *be;           /* [9 taps][R^2 phases][64][32]: lane o * R^2 + a * R + b; bias [3] */
    const unsigned char *mask;      /* [9][R^2]: 1 where that tap and phase block has a nonzero weight */
    float *y; long sy, sx, sc;      /* output pixel (Y, X) channel o at y + Y * sy + X * sx + o * sc */
    int h0, h1;
} sexit_t;

static void *run_shuffle_exit(void *arg) {
    sexit_t *j = (sexit_t *)arg;
    const int W = j->W, R = j->R, RR = R * R, C = 64 * RR, K = 64 / j->G;
    const long rowlen = (long)(W + 2 + SXP) * C;   /* padded at both ends; a last block reads past W */
    float *ring = alloc_zeroed(sizeof(float) * 3 * rowlen);
    float *out = alloc_zeroed(sizeof(float) * (size_t)(W + SXP) * 32);
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
            float *row = ring + s * rowlen;
            if (r < 0 || r >= j->H) { memset(row, 0, sizeof(float) * rowlen); continue; }
            for (int w = 0; w < W; w++) {         /* [g][q][k] -> [q][g * K + k] */
                const float *src = j->x + ((long)r * W + w) * j->xs;
                float *dst = row + (long)(w + 1) * C;
                for (int g = 0; g < j->G; g++)
                    for (int q = 0; q < RR; q++)
                        memcpy(dst + q * 64 + g * K, src + (long)(g * RR + q) * K, sizeof(float) * K);
            }
        }
        const float *rows[3] = {ring + slot_of(h - 1) * rowlen, ring + slot_of(h) * rowlen,
                                ring + slot_of(h + 1) * rowlen};
        for (int x0 = 0; x0 < W; x0 += SXP) {
            v16 acc[SXP][2];
            for (int p = 0; p < SXP; p++) acc[p][0] = acc[p][1] = v_zero();
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    for (int q = 0; q < RR; q++) {
                        const int tq = (ky * 3 + kx) * RR + q;
                        if (!j->mask[tq]) continue;
                        const float *src = rows[ky] + (long)(x0 + kx) * C + q * 64;
                        const float *wk = j->we + (long)tq * 64 * 32;
                        for (int k = 0; k < 64; k++) {
                            const v16 w0 = v_loadu(wk + k * 32), w1 = v_loadu(wk + k * 32 + 16);
                            _Pragma("GCC unroll 16") for (int p = 0; p < SXP; p++) {
                                const v16 b = v_set1(src[(long)p * C + k]);
                                acc[p][0] = v_fmadd(b, w0, acc[p][0]);
                                acc[p][1] = v_fmadd(b, w1, acc[p][1]);
                            }
                        }
                    }
            for (int p = 0; p < SXP; p++) {
                v_storeu(out + (long)(x0 + p) * 32, acc[p][0]);
                v_storeu(out + (long)(x0 + p) * 32 + 16, acc[p][1]);
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

int srkit_shuffle_exit(const float *x, long xs, int H, int W, int G, int R, const float *we, const float *be,
                       const unsigned char *mask, float *y, long sy, long sx, long sc, int nthreads) {
    /* x rows are W pixels of xs floats apart; the output is 3 channels at R times the size, NHWC */
    if ((G != 1 && G != 4) || (R != 2 && R != 3) || H < 1 || W < 1 || !x || !y || !we || !be || !mask ||
        xs < 64L * R * R || sc != 1 || sx < 3 || sy < (long)R * W * sx)
        return -1;
    const int n = clamp_threads(nthreads, H);
    sexit_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (sexit_t){.x = x, .xs = xs, .H = H, .W = W, .G = G, .R = R, .we = we, .be = be, .mask = mask,
                            .y = y, .sy = sy, .sx = sx, .sc = sc,
                            .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_shuffle_exit, jobs, sizeof(sexit_t), n);
}

/* ---- Pixel shuffle by R, then a bicubic resize, as one pass (an overscaling model's upsampler output),
   optionally with the exit conv after it ----
   x: the upsampling conv's output at the low resolution (H x W, pixel stride xs), 64 R^2 channels in the fast
   path's shuffle order [G][R^2 phases][64/G], float32 or (xbf16) bf16. Resized pixel (Y, X), channel
   c = g * 64/G + k: the sum over 4 x 4 taps of wy[Y][t] wx[X][u] shuffled[iy[Y][t]][ix[X][u]][c], where
   shuffled pixel (y, x) is low-resolution pixel (y / R, x / R), phase (y % R) * R + x % R. The taps
   (edge-clamped indices and weights) come from the caller (srkit.core.resize.bicubic_taps). The shuffled map,
   R^2 times the input's pixels, is never made.
   With exit weights (we: [64][32], lane o * 9 + dy * 3 + dx = exit[o][c][dy][dx]; be [3]) the output is the
   exit conv (3x3, 64 -> 3, zero padding) of the resized map instead, and that map is never made either: each
   resized row is projected at once to the 27 products its pixels give their 3x3 neighbours (P, a ring of three
   rows), and an output pixel sums its 9 neighbours' lanes. */
typedef struct {
    const void *x; long xs; int xbf16;          /* float32, or bf16 where xbf16 */
    int H, W, G, R, Ho, Wo;
    const int *iy, *ix; const float *wy, *wx;   /* [Ho][4], [Wo][4] */
    const float *we, *be;                       /* the exit conv, or NULL */
    float *y; long sy, sx, sc;                  /* output pixel (Y, X) channel c at y + Y * sy + X * sx + c * sc */
    int h0, h1;
} sresize_t;

/* The resize runs separably: each shuffled row a band's outputs read is resized along the row once, into a
   ring of four (the 4 vertical taps of an output row are 4 consecutive rows, edge-clamped: distinct mod 4),
   and an output pixel sums 4 of those rows' pixels instead of 16 shuffled pixels. */
typedef struct {
    float *h;        /* [4][Wo][64]: shuffled row have[s] resized along the row */
    int have[4];
} hring_t;

/* hr->h slot s = shuffled row yy resized along the row: pixel X the sum of wx[X][u] shuffled[yy][ix[X][u]]
   (x float32, or bf16 where xbf16: T its element, LOAD its 16-element load) */
#define HRESIZE_ROW(NAME, T, LOAD)                                                                           \
    static void NAME(const sresize_t *j, int yy, float *dst) {                                              \
        const int R = j->R, RR = R * R, K = 64 / j->G, KV = K / 16;                                         \
        const T *row = (const T *)j->x + (long)(yy / R) * j->W * j->xs;                                     \
        const long pa = (long)(yy % R) * R;                                                                  \
        for (int X = 0; X < j->Wo; X++) {                                                                    \
            v16 acc[4] = {v_zero(), v_zero(), v_zero(), v_zero()};                                           \
            for (int u = 0; u < 4; u++) {                                                                    \
                const int xx = j->ix[X * 4 + u];                                                             \
                const v16 w = v_set1(j->wx[X * 4 + u]);                                                      \
                const T *px = row + (long)(xx / R) * j->xs + (pa + xx % R) * K;                              \
                for (int g = 0; g < j->G; g++)                                                               \
                    for (int m = 0; m < KV; m++)                                                             \
                        acc[g * KV + m] = v_fmadd(w, LOAD(px + (long)g * RR * K + m * 16), acc[g * KV + m]); \
            }                                                                                                \
            for (int v = 0; v < 4; v++) v_storeu(dst + (long)X * 64 + v * 16, acc[v]);                      \
        }                                                                                                    \
    }
HRESIZE_ROW(hresize_row_f32, float, v_loadu)
HRESIZE_ROW(hresize_row_bf16, uint16_t, v_loadbf)

/* n resized pixels (Y, X0 ..), 64 channels each, to dst + i * ds */
static void resize_pixels(const sresize_t *j, hring_t *hr, int Y, int X0, int n, float *dst, long ds) {
    const float *rows[4];
    v16 wy[4];
    for (int t = 0; t < 4; t++) {
        const int yy = j->iy[Y * 4 + t], s = yy & 3;
        if (hr->have[s] != yy) {
            (j->xbf16 ? hresize_row_bf16 : hresize_row_f32)(j, yy, hr->h + (long)s * j->Wo * 64);
            hr->have[s] = yy;
        }
        rows[t] = hr->h + (long)s * j->Wo * 64;
        wy[t] = v_set1(j->wy[Y * 4 + t]);
    }
    for (int X = X0; X < X0 + n; X++) {
        float *o = dst + (long)(X - X0) * ds;
        for (int v = 0; v < 4; v++) {
            const long c = (long)X * 64 + v * 16;
            v16 acc = v_mul(wy[0], v_loadu(rows[0] + c));
            for (int t = 1; t < 4; t++) acc = v_fmadd(wy[t], v_loadu(rows[t] + c), acc);
            v_storeu(o + v * 16, acc);
        }
    }
}

/* ring row (pixel X at + (X + 1) * 32, zero at both ends) = the 27 exit products of resized row Y */
static void project_row(const sresize_t *j, hring_t *hr, int Y, float *prow, float *f) {
    for (int X0 = 0; X0 < j->Wo; X0 += SXP) {
        const int n = j->Wo - X0 < SXP ? j->Wo - X0 : SXP;
        resize_pixels(j, hr, Y, X0, n, f, 64);
        v16 acc[SXP][2];
        for (int p = 0; p < SXP; p++) acc[p][0] = acc[p][1] = v_zero();
        for (int k = 0; k < 64; k++) {
            const v16 w0 = v_loadu(j->we + k * 32), w1 = v_loadu(j->we + k * 32 + 16);
            _Pragma("GCC unroll 16") for (int p = 0; p < SXP; p++) {
                const v16 b = v_set1(f[p * 64 + k]);  /* past n: last block's stale pixels, not stored */
                acc[p][0] = v_fmadd(b, w0, acc[p][0]);
                acc[p][1] = v_fmadd(b, w1, acc[p][1]);
            }
        }
        for (int p = 0; p < n; p++) {
            v_storeu(prow + (long)(X0 + p + 1) * 32, acc[p][0]);
            v_storeu(prow + (long)(X0 + p + 1) * 32 + 16, acc[p][1]);
        }
    }
}

static void *run_shuffle_resize(void *arg) {
    sresize_t *j = (sresize_t *)arg;
    const long rowlen = (long)(j->Wo + 2) * 32;
    hring_t hr = {.h = alloc_zeroed(sizeof(float) * 4 * (size_t)j->Wo * 64), .have = {-1, -1, -1, -1}};
    float *ring = j->we ? alloc_zeroed(sizeof(float) * 3 * rowlen) : NULL;
    float *f = j->we ? alloc_zeroed(sizeof(float) * SXP * 64) : NULL;
    if (!hr.h || (j->we && (!ring || !f))) {
        free(hr.h); free(ring); free(f);
        return FAILED;
    }
    if (!j->we) {
        for (int Y = j->h0; Y < j->h1; Y++) resize_pixels(j, &hr, Y, 0, j->Wo, j->y + (long)Y * j->sy, j->sx);
        free(hr.h);
        return NULL;
    }
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    for (int Y = j->h0; Y < j->h1; Y++) {
        for (int r = Y - 1; r <= Y + 1; r++) {
            const int s = slot_of(r);
            if (have[s] == r) continue;
            have[s] = r;
            if (r < 0 || r >= j->Ho) memset(ring + s * rowlen, 0, sizeof(float) * rowlen);
            else project_row(j, &hr, r, ring + s * rowlen, f);
        }
        const float *rows[3] = {ring + slot_of(Y - 1) * rowlen, ring + slot_of(Y) * rowlen,
                                ring + slot_of(Y + 1) * rowlen};
        for (int X = 0; X < j->Wo; X++)
            for (int o = 0; o < 3; o++) {
                float sum = j->be[o];
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) sum += rows[dy][(long)(X + dx) * 32 + o * 9 + dy * 3 + dx];
                j->y[(long)Y * j->sy + (long)X * j->sx + o * j->sc] = sum;
            }
    }
    free(hr.h); free(ring); free(f);
    return NULL;
}

int srkit_shuffle_resize(const void *x, long xs, int xbf16, int H, int W, int G, int R, int Ho, int Wo,
                         const int *iy, const float *wy, const int *ix, const float *wx, const float *we,
                         const float *be, float *y, long sy, long sx, long sc, int nthreads) {
    const int chans = we ? 3 : 64;
    if ((G != 1 && G != 4) || R < 2 || R > 8 || H < 1 || W < 1 || Ho < 1 || Wo < 1 || !x || !y || !iy || !ix ||
        !wy || !wx || (we && !be) || xs < 64L * R * R || sc != 1 || sx < chans || sy < (long)Wo * sx)
        return -1;
    for (int i = 0; i < Ho * 4; i++)   /* every tap inside the shuffled map: it is read, not clamped, here */
        if (iy[i] < 0 || iy[i] >= H * R) return -1;
    for (int i = 0; i < Wo * 4; i++)
        if (ix[i] < 0 || ix[i] >= W * R) return -1;
    const int n = clamp_threads(nthreads, Ho);
    sresize_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (sresize_t){.x = x, .xs = xs, .xbf16 = xbf16 != 0, .H = H, .W = W, .G = G, .R = R, .Ho = Ho,
                              .Wo = Wo, .iy = iy, .ix = ix, .wy = wy, .wx = wx, .we = we, .be = be, .y = y,
                              .sy = sy, .sx = sx, .sc = sc, .h0 = (int)((long)Ho * t / n),
                              .h1 = (int)((long)Ho * (t + 1) / n)};
    return parallel(run_shuffle_resize, jobs, sizeof(sresize_t), n);
}

/* ---- A cascade's 1x1 fusion: y = relu(W [x_0 .. x_{n-1}] + b) over n 64-channel blocks of the cascade
   buffer (pixel stride bs), as one pass with bias and ReLU in the store. Block 0 (the cascade's input) is read
   from `first` (pixel stride fs) when given, so that it need not be copied into the buffer. ---- */
typedef struct {
    const float *buf; long bs; const float *first; long fs; int nchunks; long p0, p1;
    const float *w, *b;             /* [nchunks][64][64] (input-major), [64] */
    float *y; long ys;
} fuse_t;

static void *run_fuse(void *arg) {
    fuse_t *j = (fuse_t *)arg;
    float tmp[6 * 64] __attribute__((aligned(64)));
    float pad[6 * 64 * MAX3] __attribute__((aligned(64)));  /* the last, partial block of pixels */
    for (long p0 = j->p0; p0 < j->p1; p0 += 6) {
        const float *src = j->buf + p0 * j->bs, *src0 = j->first ? j->first + p0 * j->fs : src;
        long stride = j->bs, stride0 = j->first ? j->fs : j->bs;
        const int np = j->p1 - p0 < 6 ? (int)(j->p1 - p0) : 6;
        if (np < 6) {
            memset(pad, 0, sizeof(pad));
            for (int p = 0; p < np; p++) {
                memcpy(pad + p * 64 * j->nchunks, src0 + p * stride0, sizeof(float) * 64);
                memcpy(pad + p * 64 * j->nchunks + 64, src + p * j->bs + 64, sizeof(float) * 64 * (j->nchunks - 1));
            }
            src = src0 = pad;
            stride = stride0 = 64 * j->nchunks;
        }
        if (np == 6 && p0 + 12 <= j->p1)  /* the next block's pixels, from memory: the buffer is far larger than L2 */
            for (int p = 6; p < 12; p++)
                for (int c = 0; c < j->nchunks; c++)
                    for (int l = 0; l < 64; l += 16)
                        _mm_prefetch((const char *)(c ? src + p * stride + c * 64 + l : src0 + p * stride0 + l),
                                     _MM_HINT_T0);
        fuse_pixels6(src0, stride0, src, stride, j->nchunks, j->w, j->b, tmp);
        for (int p = 0; p < np; p++) memcpy(j->y + (p0 + p) * j->ys, tmp + p * 64, sizeof(float) * 64);
    }
    return NULL;
}

int srkit_fuse1x1(const float *buf, long bs, const float *first, long fs, int nchunks, long npix, const float *w,
                  const float *b, float *y, long ys, int nthreads) {
    if (nchunks < 1 || nchunks > MAX3 || npix < 1 || !buf || !w || !b || !y || bs < 64L * nchunks || ys < 64 ||
        (first && fs < 64))
        return -1;
    const int n = clamp_threads(nthreads, (npix + 5) / 6);
    fuse_t jobs[MAXTHREADS];
    const long blocks = (npix + 5) / 6;
    for (int t = 0; t < n; t++) {
        long p0 = blocks * t / n * 6, p1 = blocks * (t + 1) / n * 6;
        jobs[t] = (fuse_t){.buf = buf, .bs = bs, .first = first, .fs = fs, .nchunks = nchunks, .p0 = p0,
                           .p1 = p1 < npix ? p1 : npix, .w = w, .b = b, .y = y, .ys = ys};
    }
    return parallel(run_fuse, jobs, sizeof(fuse_t), n);
}

/* ---- A dense 3x3 conv, 64 channels in, 64 n out (stride 1, zero padding 1), + bias, optional ReLU, streamed
   by rows as Winograd F(4,3): a dense x3 upsampling conv, the first x2 stage at x4. ---- */
typedef struct {
    const float *x; long xs; int H, W, nchunks, relu;
    const float *u, *b;             /* [nchunks][6][192][64], bias [64 nchunks] */
    float *y; long ys;
    int h0, h1;
} conv_t;

static void *run_conv(void *arg) {
    conv_t *j = (conv_t *)arg;
    const int W = j->W, Wp = 4 * (((W + 3) / 4 + 5) / 6 * 6);
    const long xlen = (long)(Wp + 2) * 64;
    float *xr = alloc_zeroed(sizeof(float) * 3 * xlen), *out = alloc_zeroed(sizeof(float) * (size_t)Wp * 64);
    float *v = alloc_zeroed(sizeof(float) * wino_scratch(64, 64));
    float *mt = alloc_zeroed(sizeof(float) * wino_scratch(64, 64));
    if (!xr || !out || !v || !mt) {
        free(xr); free(out); free(v); free(mt);
        return FAILED;
    }
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    const v16 zero = v_zero();
    for (int h = j->h0; h < j->h1; h++) {
        ensure_x_rows(j->x, j->xs, j->H, W, 1, h, xr, xlen, have);
        const float *rows[3] = {xr + slot_of(h - 1) * xlen, xr + slot_of(h) * xlen, xr + slot_of(h + 1) * xlen};
        for (int q = 0; q < j->nchunks; q++) {
            wino_row(rows, 64, 64, Wp / 4, j->u + (long)q * 6 * 192 * 64, out, v, mt);
            for (int m = 0; m < 4; m++) {
                const v16 b = v_loadu(j->b + q * 64 + m * 16);
                for (int w = 0; w < W; w++) {
                    v16 r = v_add(v_load(out + (long)w * 64 + m * 16), b);
                    if (j->relu) r = v_max(r, zero);
                    v_storeu(j->y + ((long)h * W + w) * j->ys + q * 64 + m * 16, r);
                }
            }
        }
    }
    free(xr); free(out); free(v); free(mt);
    return NULL;
}

int srkit_conv3x3(const float *x, long xs, int H, int W, int nchunks, const float *u, const float *b, int relu,
                  float *y, long ys, int nthreads) {
    if (nchunks < 1 || H < 1 || W < 1 || !x || !u || !b || !y || xs < 64 || ys < 64L * nchunks) return -1;
    const int n = clamp_threads(nthreads, H);
    conv_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (conv_t){.x = x, .xs = xs, .H = H, .W = W, .nchunks = nchunks, .relu = relu, .u = u, .b = b,
                           .y = y, .ys = ys, .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_conv, jobs, sizeof(conv_t), n);
}

/* ---- A wide-activation body: y = conv3x3(W3)(conv1x1(W2)(relu(conv1x1(W1)(x)))), 64 channels in and out, C1 = 64 c1
   channels in the middle (the wide activation), C2 <= 64 after the second 1x1 (zero-padded to 64), streamed by
   rows: the C1- and C2-channel maps are never stored (per pixel block of 6 in L1, then a ring of three rows of
   the 64-padded map for the 3x3), and y is written with any pixel stride (a slice of a cascade buffer). ---- */
typedef struct {
    const float *x; long xs; float *y; long ys;
    int H, W, c1;
    const float *w1, *b1;           /* [c1][64 in][64 out] (output chunks), [64 c1] */
    const float *w2, *b2;           /* [c1][64 in][64 out] (input chunks, outputs padded to 64), [64] */
    const float *w3, *u3, *b3;      /* 3x3 [3][3][64][64] direct, or Winograd [6][192][64] (u3 != NULL), [64] */
    int h0, h1;
} body_t;

/* one row r of the padded map t2 = conv1x1(W2)(relu(conv1x1(W1)(x))) + b2 into dst + (w + 1) * 64 */
static void body_rows(const body_t *j, int r, float *xrow, float *t1, float *acc, float *dst) {
    const int W = j->W, Wp = (W + 5) / 6 * 6;
    const float *src = j->x + (long)r * W * j->xs;
    for (int w = 0; w < W; w++) memcpy(xrow + (long)w * 64, src + (long)w * j->xs, sizeof(float) * 64);
    const v16 zero = v_zero();
    for (int x0 = 0; x0 < Wp; x0 += 6) {
        for (int c = 0; c < j->c1; c++) {  /* t1 chunk c = relu(x W1_c + b1_c), [6][64] */
            gemm_k64(xrow + (long)x0 * 64, j->w1 + (long)c * 64 * 64, acc);
            for (int p = 0; p < 6; p++)
                for (int m = 0; m < 64; m += 16)
                    v_store(t1 + ((long)c * 6 + p) * 64 + m,
                            v_max(v_add(v_load(acc + p * 64 + m), v_loadu(j->b1 + c * 64 + m)), zero));
        }
        float *o = dst + (long)(x0 + 1) * 64;
        for (int p = 0; p < 6; p++)
            for (int m = 0; m < 64; m += 16) v_storeu(o + p * 64 + m, v_loadu(j->b2 + m));
        for (int c = 0; c < j->c1; c++) {  /* t2 += t1_c W2_c */
            gemm_k64n(t1 + (long)c * 6 * 64, j->w2 + (long)c * 64 * 64, acc);
            for (int p = 0; p < 6; p++)
                for (int m = 0; m < 64; m += 16)
                    v_storeu(o + p * 64 + m, v_add(v_loadu(o + p * 64 + m), v_load(acc + p * 64 + m)));
        }
    }
    /* the columns past W (the last block's padding) must read as zero in the 3x3 */
    memset(dst + (long)(W + 1) * 64, 0, sizeof(float) * 64 * (Wp + 1 - W));
}

static void *run_body(void *arg) {
    body_t *j = (body_t *)arg;
    const int W = j->W, Wp = (W + 5) / 6 * 6, Wq = 4 * (((W + 3) / 4 + 5) / 6 * 6);
    const int wmax = Wp > Wq ? Wp : Wq;
    const long rowlen = (long)(wmax + 8) * 64;
    float *ring = alloc_zeroed(sizeof(float) * 3 * rowlen), *xrow = alloc_zeroed(sizeof(float) * (size_t)wmax * 64);
    float *t1 = alloc_zeroed(sizeof(float) * 6 * 64 * (size_t)j->c1), *acc = alloc_zeroed(sizeof(float) * 6 * 64);
    float *out = alloc_zeroed(sizeof(float) * (size_t)wmax * 64);
    float *v = alloc_zeroed(sizeof(float) * wino_scratch(64, 64)), *mt = alloc_zeroed(sizeof(float) * wino_scratch(64, 64));
    if (!ring || !xrow || !t1 || !acc || !out || !v || !mt) {
        free(ring); free(xrow); free(t1); free(acc); free(out); free(v); free(mt);
        return FAILED;
    }
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    for (int h = j->h0; h < j->h1; h++) {
        for (int r = h - 1; r <= h + 1; r++) {
            const int slot = slot_of(r);
            if (have[slot] == r) continue;
            have[slot] = r;
            if (r < 0 || r >= j->H) memset(ring + slot * rowlen, 0, sizeof(float) * rowlen);
            else body_rows(j, r, xrow, t1, acc, ring + slot * rowlen);
        }
        const float *rows[3] = {ring + slot_of(h - 1) * rowlen, ring + slot_of(h) * rowlen, ring + slot_of(h + 1) * rowlen};
        if (j->u3) {
            wino_row(rows, 64, 64, Wq / 4, j->u3, out, v, mt);
        } else {
            for (int x0 = 0; x0 < Wp; x0 += 6) conv3_d64(rows, j->w3, out, x0);
        }
        for (int w = 0; w < W; w++)
            for (int m = 0; m < 64; m += 16)
                v_storeu(j->y + ((long)h * W + w) * j->ys + m, v_add(v_load(out + (long)w * 64 + m), v_loadu(j->b3 + m)));
    }
    free(ring); free(xrow); free(t1); free(acc); free(out); free(v); free(mt);
    return NULL;
}

int srkit_wide_body(const float *x, long xs, float *y, long ys, int H, int W, int c1, const float *w1,
                    const float *b1, const float *w2, const float *b2, const float *w3, const float *u3,
                    const float *b3, int nthreads) {
    if (H < 1 || W < 1 || c1 < 1 || c1 > 64 || !x || !y || !w1 || !b1 || !w2 || !b2 || !w3 || !b3 || xs < 64 ||
        ys < 64)
        return -1;
    const int n = clamp_threads(nthreads, H);
    body_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (body_t){.x = x, .xs = xs, .y = y, .ys = ys, .H = H, .W = W, .c1 = c1, .w1 = w1, .b1 = b1,
                           .w2 = w2, .b2 = b2, .w3 = w3, .u3 = u3, .b3 = b3,
                           .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_body, jobs, sizeof(body_t), n);
}

/* ---- A grouped 3x3 conv, 64 channels in 4 groups of 16, each group to 16 m outputs (stride 1, zero padding 1),
   + bias, optional ReLU, by rows: a grouped upsampling conv (64 -> 576 at x3, 64 -> 256 at x4's first stage).
   Per group and row: chunks of 64 outputs, then one of 16, as direct 3x3 convs of 16-channel padded rows. ---- */
typedef struct {
    const float *x; long xs; int H, W, per;    /* per: outputs of a group, a multiple of 16 */
    const float *w, *b;                        /* [4 groups][chunks: [3][3][16][64] ..., then [3][3][16][16]], [64 per/16 * 4 / 4] */
    int relu; float *y; long ys;
    int h0, h1;
} gconv_t;

static void *run_gconv(void *arg) {
    gconv_t *j = (gconv_t *)arg;
    const int W = j->W, Wp64 = (W + 5) / 6 * 6, Wp16 = (W + 27) / 28 * 28, wmax = Wp64 > Wp16 ? Wp64 : Wp16;
    const long xlen = (long)(wmax + 2) * 16;
    float *xr = alloc_zeroed(sizeof(float) * 4 * 3 * xlen), *out = alloc_zeroed(sizeof(float) * (size_t)wmax * 64);
    if (!xr || !out) {
        free(xr); free(out);
        return FAILED;
    }
    int have[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
    const int full = j->per / 64, rest = (j->per % 64) / 16;
    const long gw = 9L * 16 * j->per;          /* one group's packed weights */
    const v16 zero = v_zero();
    for (int h = j->h0; h < j->h1; h++) {
        ensure_x_rows(j->x, j->xs, j->H, W, 4, h, xr, xlen, have);
        for (int g = 0; g < 4; g++) {
            const float *rows[3];
            for (int ky = 0; ky < 3; ky++) rows[ky] = xr + (g * 3 + slot_of(h + ky - 1)) * xlen;
            for (int c = 0; c < full + rest; c++) {
                const int wide = c < full, n = wide ? 64 : 16, o0 = g * j->per + (wide ? c * 64 : full * 64 + (c - full) * 16);
                const float *w = j->w + g * gw + (wide ? (long)c * 9 * 16 * 64 : (long)full * 9 * 16 * 64 + (long)(c - full) * 9 * 16 * 16);
                if (wide) for (int x0 = 0; x0 < Wp64; x0 += 6) conv3_g16m4(rows, w, out, x0);
                else for (int x0 = 0; x0 < Wp16; x0 += 28) conv3_g16(rows, w, out, x0);
                for (int m = 0; m < n; m += 16) {
                    const v16 b = v_loadu(j->b + o0 + m);
                    for (int x = 0; x < W; x++) {
                        v16 r = v_add(v_load(out + (long)x * n + m), b);
                        if (j->relu) r = v_max(r, zero);
                        v_storeu(j->y + ((long)h * W + x) * j->ys + o0 + m, r);
                    }
                }
            }
        }
    }
    free(xr); free(out);
    return NULL;
}

int srkit_gconv3x3(const float *x, long xs, int H, int W, int per, const float *w, const float *b, int relu,
                   float *y, long ys, int nthreads) {
    if (H < 1 || W < 1 || per < 16 || per % 16 || !x || !w || !b || !y || xs < 64 || ys < 4L * per) return -1;
    const int n = clamp_threads(nthreads, H);
    gconv_t jobs[MAXTHREADS];
    for (int t = 0; t < n; t++)
        jobs[t] = (gconv_t){.x = x, .xs = xs, .H = H, .W = W, .per = per, .w = w, .b = b, .relu = relu, .y = y,
                            .ys = ys, .h0 = (int)((long)H * t / n), .h1 = (int)((long)H * (t + 1) / n)};
    return parallel(run_gconv, jobs, sizeof(gconv_t), n);
}
#endif
