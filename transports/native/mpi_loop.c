/* collscale's compiled timed loop over an MPI library's own collectives.
 *
 * Built on first use with the mpicc of the MPI that mpi4py loaded (see
 * transports/native/mpi.py) and called through ctypes, which releases the
 * GIL: the iterations run here without returning to Python, while the
 * watchdog thread reads the per-iteration stamps (CLOCK_MONOTONIC, the clock
 * of Python's perf_counter on Linux) to see progress.
 *
 * Handles arrive as the addresses of mpi4py's handle storage
 * (MPI._addressof), so nothing here depends on how the library represents
 * them; cs_mpi_check verifies that this object talks to the same, initialised
 * library as mpi4py before anything is timed.
 */
#include <mpi.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

enum {
    K_ALLREDUCE = 1, K_BCAST, K_REDUCE, K_ALLGATHER, K_REDUCE_SCATTER, K_ALLTOALL,
    K_SENDRECV, K_SENDRECV_REPLACE, K_PING, K_PONG, K_BARRIER
};

/* Element types of the local division that builds avg from MPI_SUM. */
enum { D_NONE = 0, D_I8, D_U8, D_I32, D_U32, D_I64, D_U64, D_F16, D_BF16, D_F32, D_F64 };

/* The argument block, one int64 each (ctypes passes a numpy array). */
enum {
    A_KIND, A_SEND, A_RECV, A_COUNT, A_ROOT, A_DEST, A_SOURCE,
    A_DIV_TYPE, A_DIV_ADDR, A_DIV_COUNT, A_DIV_BY, A_NARGS
};

static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Floor division, as numpy's floor_divide, in 64 bits. */
static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

#define DIV_INT(T) { T *x = (T *)addr; for (int64_t i = 0; i < n; i++) x[i] = (T)floor_div((int64_t)x[i], by); } break
#define DIV_UINT(T) { T *x = (T *)addr; for (int64_t i = 0; i < n; i++) x[i] = (T)((uint64_t)x[i] / (uint64_t)by); } break
#define DIV_FLT(T) { T *x = (T *)addr; for (int64_t i = 0; i < n; i++) x[i] = (T)((double)x[i] / (double)by); } break

/* avg = MPI_SUM, then this, as transports.base.local_divide does in Python. */
static int divide(int64_t type, void *addr, int64_t n, int64_t by)
{
    switch (type) {
    case D_NONE: return 0;
    case D_I8: DIV_INT(int8_t);
    case D_U8: DIV_UINT(uint8_t);
    case D_I32: DIV_INT(int32_t);
    case D_U32: DIV_UINT(uint32_t);
    case D_I64: DIV_INT(int64_t);
    case D_U64: DIV_UINT(uint64_t);
#ifdef __FLT16_MAX__
    case D_F16: DIV_FLT(_Float16);
#endif
    case D_F32: DIV_FLT(float);
    case D_F64: DIV_FLT(double);
    default: return -1;
    }
    return 0;
}

int cs_mpi_can_divide(int64_t type)
{
#ifdef __FLT16_MAX__
    return type != D_BF16;
#else
    return type != D_BF16 && type != D_F16;
#endif
}

/* OSU's latency test: rank 0 sends then receives, its peer the reverse (tag 1). */
static inline int ping(void *send, void *recv, int count, MPI_Datatype dt, int peer, MPI_Comm comm)
{
    int rc = MPI_Send(send, count, dt, peer, 1, comm);
    return rc != MPI_SUCCESS ? rc : MPI_Recv(recv, count, dt, peer, 1, comm, MPI_STATUS_IGNORE);
}

static inline int pong(void *send, void *recv, int count, MPI_Datatype dt, int peer, MPI_Comm comm)
{
    int rc = MPI_Recv(recv, count, dt, peer, 1, comm, MPI_STATUS_IGNORE);
    return rc != MPI_SUCCESS ? rc : MPI_Send(send, count, dt, peer, 1, comm);
}

/* One macro per collective keeps the switch out of the loop: each loop is a
 * bare call, a possible division and a clock read, like a C benchmark's. */
#define TIMED(CALL)                                                            \
    for (int64_t i = 1; i <= iters; i++) {                                     \
        rc = (CALL);                                                           \
        if (rc != MPI_SUCCESS) return rc;                                      \
        if (div_type != D_NONE) divide(div_type, div_addr, div_count, div_by); \
        stamps[i] = now();                                                     \
    }                                                                          \
    break

int cs_mpi_loop(const int64_t *a, const MPI_Comm *commp, const MPI_Datatype *dtp, const MPI_Op *opp,
                int64_t iters, double *stamps)
{
    MPI_Comm comm = *commp;
    MPI_Datatype dt = dtp ? *dtp : MPI_DATATYPE_NULL;
    MPI_Op op = opp ? *opp : MPI_OP_NULL;
    void *send = a[A_SEND] ? (void *)(intptr_t)a[A_SEND] : MPI_IN_PLACE;
    void *recv = (void *)(intptr_t)a[A_RECV];
    int count = (int)a[A_COUNT], root = (int)a[A_ROOT];
    int dest = (int)a[A_DEST], source = (int)a[A_SOURCE];
    int64_t div_type = a[A_DIV_TYPE], div_count = a[A_DIV_COUNT], div_by = a[A_DIV_BY];
    void *div_addr = (void *)(intptr_t)a[A_DIV_ADDR];
    int rc = MPI_SUCCESS;
    if (div_type != D_NONE && !cs_mpi_can_divide(div_type)) return -1;
    stamps[0] = now();
    switch (a[A_KIND]) {
    case K_ALLREDUCE: TIMED(MPI_Allreduce(send, recv, count, dt, op, comm));
    case K_BCAST: TIMED(MPI_Bcast(recv, count, dt, root, comm));
    case K_REDUCE: TIMED(MPI_Reduce(send, recv, count, dt, op, root, comm));
    case K_ALLGATHER: TIMED(MPI_Allgather(send, count, dt, recv, count, dt, comm));
    case K_REDUCE_SCATTER: TIMED(MPI_Reduce_scatter_block(send, recv, count, dt, op, comm));
    case K_ALLTOALL: TIMED(MPI_Alltoall(send, count, dt, recv, count, dt, comm));
    case K_SENDRECV:
        TIMED(MPI_Sendrecv(send, count, dt, dest, 0, recv, count, dt, source, 0, comm, MPI_STATUS_IGNORE));
    case K_SENDRECV_REPLACE:
        TIMED(MPI_Sendrecv_replace(recv, count, dt, dest, 0, source, 0, comm, MPI_STATUS_IGNORE));
    case K_PING: TIMED(ping(send, recv, count, dt, dest, comm));
    case K_PONG: TIMED(pong(send, recv, count, dt, dest, comm));
    case K_BARRIER: TIMED(MPI_Barrier(comm));
    default: return -2;
    }
    return MPI_SUCCESS;
}

/* The handle sizes this object was compiled with, then (only when they match
 * mpi4py's and MPI is initialised in *this* library) the communicator's size
 * and this rank: proof that this object and mpi4py share one library. */
int cs_mpi_check(const MPI_Comm *commp, int64_t comm_size, int64_t type_size, int64_t *out)
{
    int flag = 0, finalized = 0, n = -1, r = -1;
    out[0] = (int64_t)sizeof(MPI_Comm);
    out[1] = (int64_t)sizeof(MPI_Datatype);
    out[2] = out[3] = out[4] = -1;
    if (out[0] != comm_size || out[1] != type_size) return 1;
    MPI_Initialized(&flag);
    MPI_Finalized(&finalized);
    out[2] = flag && !finalized;
    if (!out[2]) return 2;
    MPI_Comm_size(*commp, &n);
    MPI_Comm_rank(*commp, &r);
    out[3] = n;
    out[4] = r;
    return 0;
}

int cs_mpi_library(char *buf, int64_t len)
{
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    MPI_Get_library_version(text, &n);
    if (len <= 0) return n;
    if (n >= len) n = (int)len - 1;
    memcpy(buf, text, (size_t)n);
    buf[n] = 0;
    return n;
}
