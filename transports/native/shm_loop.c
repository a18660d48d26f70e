/* collscale's compiled loop for the shm transport: its steps, interpreted in C.
 *
 * A bound shm call is a short program of steps over shared memory: post my
 * epoch counter, wait for a peer's, arrive (post, then wait for all), copy,
 * reduce.  transports/shm/compiled.py writes the same steps the Python body
 * runs (transports/shm/transport.py), with epochs relative to the call's
 * first one, and this loop runs them `iters` times without returning to
 * Python.  The flags' layout and wake-up protocol are transports/shm/sync.py's,
 * so Python and C calls interleave on the same counters.
 *
 * Memory ordering (C11 atomics through GCC's __atomic builtins): a counter is
 * published with a store that releases every byte written before it, and read
 * with a load that acquires them, so a peer that sees "step k done" also sees
 * the data of step k, on any architecture.  The "wake me" word and the
 * barrier generation form a Dekker pattern (store mine, then load theirs), so
 * those stores and loads are sequentially consistent.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLOT_WORDS 8 /* one 64-byte line per rank: [0] counter, [1] "wake me" */

enum { C_BASE, C_P, C_ME, C_OVERSUB, C_POLICY, C_SPIN_NS, C_YIELDS, C_TIMEOUT_NS, C_NCFG };
enum { P_FUTEX = 0, P_YIELD = 1, P_SPIN = 2 };
enum { S_EPOCH, S_CALLS, S_ERR_PEER, S_ERR_WHAT, S_NSTATE };
enum { OP_POST = 1, OP_WAIT, OP_ARRIVE, OP_COPY, OP_REDUCE };
enum { T_I8 = 1, T_U8, T_I32, T_U32, T_I64, T_U64, T_F16, T_BF16, T_F32, T_F64 };
enum { R_SUM = 1, R_PROD, R_MIN, R_MAX, R_AVG };
#define STEP 8 /* int64 words per step */

typedef struct {
    int64_t *w;
    int p, me, oversub, policy;
    int64_t spin_ns, yields, timeout_ns;
} ctx_t;

static inline int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline double now_s(void) { return 1e-9 * (double)now_ns(); }

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline long futex(int64_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    /* Shared (not private) futexes: the word lives in memory mapped by several processes.
     * The 32-bit futex word is the counter's low half (little-endian), as in sync.py. */
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

static inline int64_t acquire(int64_t *x) { return __atomic_load_n(x, __ATOMIC_ACQUIRE); }

/* Set my counter (releasing what I wrote before) and wake a sleeper who asked. */
static void post(const ctx_t *c, int64_t value)
{
    int64_t *mine = c->w + c->me * SLOT_WORDS;
    __atomic_store_n(mine, value, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(mine + 1, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(mine + 1, 0, __ATOMIC_RELAXED);
        futex(mine, FUTEX_WAKE, INT_MAX, NULL);
    }
}

/* Spin for spin_ns, then yield, then (futex policy) sleep with a 2 ms limit;
 * 0 when the peer's counter reached `value`, -1 after the timeout. */
static int wait_for(const ctx_t *c, int peer, int64_t value)
{
    int64_t *ctr = c->w + peer * SLOT_WORDS;
    if (acquire(ctr) >= value) return 0;
    if (c->spin_ns > 0) {
        int64_t t0 = now_ns();
        for (unsigned k = 1;; k++) {
            relax();
            if (acquire(ctr) >= value) return 0;
            if ((k & 63) == 0 && now_ns() - t0 > c->spin_ns) break;
        }
    }
    const struct timespec limit = {0, 2000000};
    int64_t deadline = c->timeout_ns > 0 ? now_ns() + c->timeout_ns : INT64_MAX;
    for (int64_t yields = 0; acquire(ctr) < value; yields++) {
        if (c->policy == P_FUTEX && yields >= c->yields) {
            __atomic_store_n(ctr + 1, 1, __ATOMIC_SEQ_CST); /* ask the peer to wake me */
            int64_t seen = __atomic_load_n(ctr, __ATOMIC_SEQ_CST);
            if (seen >= value) break;
            futex(ctr, FUTEX_WAIT, (uint32_t)seen, &limit);
        } else if (c->policy == P_YIELD && yields >= 2000) {
            const struct timespec nap = {0, 200000};
            nanosleep(&nap, NULL);
        } else {
            sched_yield();
        }
        if ((yields & 15) == 15 && now_ns() > deadline) {
            if (acquire(ctr) >= value) break;
            return -1;
        }
    }
    return 0;
}

static int wait_all(const ctx_t *c, int64_t value)
{
    for (int peer = 0; peer < c->p; peer++)
        if (acquire(c->w + peer * SLOT_WORDS) < value && wait_for(c, peer, value)) return peer;
    return -1;
}

/* post(value) then wait for all: sync.py's Flags.arrive, including its
 * oversubscribed form (one shared generation word, one wake-up per rank). */
static int arrive(const ctx_t *c, int64_t value)
{
    if (!c->oversub || c->policy != P_FUTEX) {
        post(c, value);
        return wait_all(c, value);
    }
    int64_t *w = c->w, *gen = w + c->p * SLOT_WORDS;
    __atomic_store_n(w + c->me * SLOT_WORDS, value, __ATOMIC_SEQ_CST);
    const struct timespec limit = {0, 2000000};
    int64_t yields = 0, start = -1;
    int fenced = 0, peer = 0;
    for (;;) {
        int64_t g = __atomic_load_n(gen, __ATOMIC_SEQ_CST);
        if (g >= value) return -1;
        for (peer = 0; peer < c->p; peer++)
            if (__atomic_load_n(w + peer * SLOT_WORDS, __ATOMIC_SEQ_CST) < value) break;
        if (peer == c->p) { /* everybody is here: say so, wake the sleepers */
            __atomic_store_n(gen, value, __ATOMIC_SEQ_CST);
            futex(gen, FUTEX_WAKE, INT_MAX, NULL);
            return -1;
        }
        if (yields < c->yields) {
            sched_yield();
            yields++;
            continue;
        }
        if (!fenced) { /* about to sleep: look once more after a full fence */
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            fenced = 1;
            continue;
        }
        futex(gen, FUTEX_WAIT, (uint32_t)g, &limit);
        if (start < 0) start = now_ns();
        else if (c->timeout_ns > 0 && now_ns() - start > c->timeout_ns) return peer;
    }
}

/* ---- reductions: out = s0 op s1 op ... in source order, numpy's semantics ---- */

static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

#define MIN_(a, b) (((a) <= (b) || (a) != (a)) ? (a) : (b)) /* NaN propagates, as np.minimum */
#define MAX_(a, b) (((a) >= (b) || (a) != (a)) ? (a) : (b))

/* One function per element type: out = s0 op s1, then out = out op s_k, a
 * pass per source (loops the compiler vectorises; out may alias s0 in place).
 * Integers wrap, as numpy's: add and multiply in the unsigned type.  Floats
 * round to T after every operation (_Float16 too, as numpy's half
 * arithmetic).  avg = the sum, then a division: floats in double, rounded
 * once (numpy's divide by a float64 scalar); integers floor-divided in 64
 * bits (kernels._divide). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
/* One build for any x86-64: the loader picks the widest vector unit this CPU has (ifunc). */
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#define KERNEL(NAME, T, ADD, MUL, DIV)                                                          \
    CLONES static void NAME(T *o, void *const *src, int ns, int64_t n, int op, int64_t nranks)  \
    {                                                                                           \
        const T *a = (const T *)src[0];                                                         \
        if (ns == 1 && o != a) memmove(o, a, (size_t)n * sizeof(T));                            \
        for (int k = 1; k < ns; k++) {                                                          \
            const T *x = k == 1 ? a : o, *b = (const T *)src[k];                                \
            switch (op) {                                                                       \
            case R_PROD: for (int64_t i = 0; i < n; i++) o[i] = MUL(x[i], b[i]); break;         \
            case R_MIN: for (int64_t i = 0; i < n; i++) o[i] = MIN_(x[i], b[i]); break;         \
            case R_MAX: for (int64_t i = 0; i < n; i++) o[i] = MAX_(x[i], b[i]); break;         \
            default: for (int64_t i = 0; i < n; i++) o[i] = ADD(x[i], b[i]);                    \
            }                                                                                   \
        }                                                                                       \
        if (op == R_AVG)                                                                        \
            for (int64_t i = 0; i < n; i++) o[i] = DIV(o[i]);                                   \
    }

#define ADD_U8(x, y) (uint8_t)((uint8_t)(x) + (uint8_t)(y))
#define MUL_U8(x, y) (uint8_t)((unsigned)(x) * (unsigned)(y))
#define ADD_I8(x, y) (int8_t)((uint8_t)(x) + (uint8_t)(y))
#define MUL_I8(x, y) (int8_t)((unsigned)(uint8_t)(x) * (unsigned)(uint8_t)(y))
#define ADD_U32(x, y) (uint32_t)((uint32_t)(x) + (uint32_t)(y))
#define MUL_U32(x, y) (uint32_t)((uint32_t)(x) * (uint32_t)(y))
#define ADD_I32(x, y) (int32_t)((uint32_t)(x) + (uint32_t)(y))
#define MUL_I32(x, y) (int32_t)((uint32_t)(x) * (uint32_t)(y))
#define ADD_U64(x, y) (uint64_t)((uint64_t)(x) + (uint64_t)(y))
#define MUL_U64(x, y) (uint64_t)((uint64_t)(x) * (uint64_t)(y))
#define ADD_I64(x, y) (int64_t)((uint64_t)(x) + (uint64_t)(y))
#define MUL_I64(x, y) (int64_t)((uint64_t)(x) * (uint64_t)(y))
#define FADD(x, y) ((x) + (y))
#define FMUL(x, y) ((x) * (y))
#define SDIV(x) floor_div((int64_t)(x), nranks)
#define UDIV(x) ((uint64_t)(x) / (uint64_t)nranks)
#define FDIV(x) ((double)(x) / (double)nranks)

KERNEL(red_i8, int8_t, ADD_I8, MUL_I8, SDIV)
KERNEL(red_u8, uint8_t, ADD_U8, MUL_U8, UDIV)
KERNEL(red_i32, int32_t, ADD_I32, MUL_I32, SDIV)
KERNEL(red_u32, uint32_t, ADD_U32, MUL_U32, UDIV)
KERNEL(red_i64, int64_t, ADD_I64, MUL_I64, SDIV)
KERNEL(red_u64, uint64_t, ADD_U64, MUL_U64, UDIV)
KERNEL(red_f32, float, FADD, FMUL, FDIV)
KERNEL(red_f64, double, FADD, FMUL, FDIV)
#ifdef __FLT16_MAX__
#define HADD(x, y) ((_Float16)((float)(x) + (float)(y)))
#define HMUL(x, y) ((_Float16)((float)(x) * (float)(y)))
KERNEL(red_f16, _Float16, HADD, HMUL, FDIV)
#endif

static inline float bf16_to_float(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t float_to_bf16(float f) /* round to nearest even, as kernels._plan_bf16 */
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits += 0x7FFF + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

/* bfloat16: widened to float32 per chunk, reduced in float32, rounded once (kernels._plan_bf16). */
static void red_bf16(uint16_t *o, void *const *src, int ns, int64_t n, int op, int64_t nranks)
{
    float acc[256];
    for (int64_t start = 0; start < n; start += 256) {
        int64_t m = n - start < 256 ? n - start : 256;
        const uint16_t *a = (const uint16_t *)src[0] + start;
        for (int64_t i = 0; i < m; i++) acc[i] = bf16_to_float(a[i]);
        for (int k = 1; k < ns; k++) {
            const uint16_t *b = (const uint16_t *)src[k] + start;
            for (int64_t i = 0; i < m; i++) {
                float x = bf16_to_float(b[i]);
                acc[i] = op == R_PROD ? acc[i] * x : op == R_MIN ? MIN_(acc[i], x)
                       : op == R_MAX ? MAX_(acc[i], x) : acc[i] + x;
            }
        }
        for (int64_t i = 0; i < m; i++)
            o[start + i] = float_to_bf16(op == R_AVG ? acc[i] / (float)nranks : acc[i]);
    }
}

static int reduce_chunk(void *out, void *const *src, int ns, int64_t n, int type, int op, int64_t nranks);

/* In chunks of 32 KiB, so the running result stays in L1 while the inputs stream through
 * (kernels.py's reason for its chunks, one cache level down). */
static int reduce(void *out, void *const *src, int ns, int64_t n, int type, int op, int64_t nranks)
{
    static const int size[] = {0, 1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
    if (type < T_I8 || type > T_F64) return -1;
    int64_t item = size[type], step = 32768 / item;
    if (ns <= 2 || n <= step) return reduce_chunk(out, src, ns, n, type, op, nranks);
    void *part[ns];
    for (int64_t start = 0; start < n; start += step) {
        for (int k = 0; k < ns; k++) part[k] = (char *)src[k] + start * item;
        reduce_chunk((char *)out + start * item, part, ns, n - start < step ? n - start : step, type, op, nranks);
    }
    return 0;
}

static int reduce_chunk(void *out, void *const *src, int ns, int64_t n, int type, int op, int64_t nranks)
{
    switch (type) {
    case T_I8: red_i8(out, src, ns, n, op, nranks); return 0;
    case T_U8: red_u8(out, src, ns, n, op, nranks); return 0;
    case T_I32: red_i32(out, src, ns, n, op, nranks); return 0;
    case T_U32: red_u32(out, src, ns, n, op, nranks); return 0;
    case T_I64: red_i64(out, src, ns, n, op, nranks); return 0;
    case T_U64: red_u64(out, src, ns, n, op, nranks); return 0;
#ifdef __FLT16_MAX__
    case T_F16: red_f16(out, src, ns, n, op, nranks); return 0;
#endif
    case T_BF16: red_bf16(out, src, ns, n, op, nranks); return 0;
    case T_F32: red_f32(out, src, ns, n, op, nranks); return 0;
    case T_F64: red_f64(out, src, ns, n, op, nranks); return 0;
    default: return -1;
    }
}

/* Whether this build reduces `type` (float16 needs the compiler's _Float16). */
int cs_shm_reduces(int64_t type)
{
#ifdef __FLT16_MAX__
    return type >= T_I8 && type <= T_F64;
#else
    return type >= T_I8 && type <= T_F64 && type != T_F16;
#endif
}

/* Run `iters` calls of a program: `nvariants` (1, or 2 alternating by call
 * parity, for the eager allreduce's double-buffered slots) of `nsteps` steps
 * each, `span` epochs per call.  stamps[0] before, stamps[i] after call i.
 * Returns 0, or 1 on a timeout with state[S_ERR_PEER] and state[S_ERR_WHAT]. */
int cs_shm_run(const int64_t *cfg, const int64_t *prog, int64_t nsteps, int64_t nvariants, int64_t span,
               int64_t *state, int64_t iters, double *stamps)
{
    ctx_t c = {(int64_t *)(intptr_t)cfg[C_BASE], (int)cfg[C_P], (int)cfg[C_ME], (int)cfg[C_OVERSUB],
               (int)cfg[C_POLICY], cfg[C_SPIN_NS], cfg[C_YIELDS], cfg[C_TIMEOUT_NS]};
    int64_t e = state[S_EPOCH], calls = state[S_CALLS];
    stamps[0] = now_s();
    for (int64_t it = 1; it <= iters; it++) {
        const int64_t *s = prog + (nvariants > 1 ? (calls & 1) : 0) * nsteps * STEP;
        for (int64_t k = 0; k < nsteps; k++, s += STEP) {
            int peer = -1;
            switch (s[0]) {
            case OP_POST: post(&c, e + s[1]); break;
            case OP_WAIT: if (wait_for(&c, (int)s[1], e + s[2])) peer = (int)s[1]; break;
            case OP_ARRIVE: peer = arrive(&c, e + s[1]); break;
            case OP_COPY: memcpy((void *)(intptr_t)s[1], (const void *)(intptr_t)s[2], (size_t)s[3]); break;
            case OP_REDUCE:
                reduce((void *)(intptr_t)s[1], (void *const *)(intptr_t)s[2], (int)s[3], s[4], (int)s[5],
                       (int)s[6], s[7]);
                break;
            }
            if (peer >= 0) {
                state[S_EPOCH] = e + span; /* the call is abandoned; the job ends */
                state[S_ERR_PEER] = peer;
                state[S_ERR_WHAT] = (s[0] == OP_WAIT) ? s[3] : s[2];
                return 1;
            }
        }
        e += span;
        if (nvariants > 1) calls++;
        state[S_EPOCH] = e;
        state[S_CALLS] = calls;
        stamps[it] = now_s();
    }
    return 0;
}
