/* dist_tcp.c - a torchrun-style launch: RANK, WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT, and a TCP star around rank 0.
 *
 * Rank 0 listens on MASTER_PORT; every other rank connects (retrying while
 * rank 0 starts, up to KDC_DIST_TIMEOUT seconds, default 120) and sends its
 * rank. Collectives go through rank 0: it receives every rank's buffer in rank
 * order, reduces ((b0 + b1) + b2) + ... and sends the result back, so every
 * rank gets the same bits, and a job's sums do not depend on who arrived
 * first. This is the bootstrap and the CPU transport of a launch without MPI;
 * it is not meant to scale past a few ranks (NCCL carries a GPU job's
 * gradients, dist_tcp only its ncclUniqueId and small control values).
 *
 * A rank that dies closes its socket: rank 0's next receive fails, rank 0
 * exits, and the other ranks' sockets close in turn. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/dist/dist_internal.h"

typedef struct tcp_star {
    int *fd;   /* rank 0: one socket per rank (fd[0] unused); others: fd[0] to rank 0 */
    void *tmp; /* rank 0's receive buffer */
    size_t tmp_bytes;
} tcp_star;

static kdc_status send_all(int fd, const void *buf, size_t n, kdc_error *err)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return kdc_fail(err, KDC_EIO, "a rank of the job is gone (send: %s)",
                            k < 0 ? strerror(errno) : "closed");
        p += k;
        n -= (size_t)k;
    }
    return KDC_OK;
}

static kdc_status recv_all(int fd, void *buf, size_t n, kdc_error *err)
{
    char *p = buf;
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return kdc_fail(err, KDC_EIO, "a rank of the job is gone (receive: %s)",
                            k < 0 ? strerror(errno) : "closed");
        p += k;
        n -= (size_t)k;
    }
    return KDC_OK;
}

static void combine(void *acc, const void *in, size_t n, kdc_dist_type t, kdc_dist_op op)
{
    for (size_t i = 0; i < n; i++) {
        if (t == KDC_DIST_F32) {
            float *a = (float *)acc + i, b = ((const float *)in)[i];
            *a = op == KDC_DIST_OP_SUM ? *a + b : (b > *a ? b : *a);
        } else if (t == KDC_DIST_F64) {
            double *a = (double *)acc + i, b = ((const double *)in)[i];
            *a = op == KDC_DIST_OP_SUM ? *a + b : (b > *a ? b : *a);
        } else {
            int64_t *a = (int64_t *)acc + i, b = ((const int64_t *)in)[i];
            *a = op == KDC_DIST_OP_SUM ? *a + b : (b > *a ? b : *a);
        }
    }
}

static kdc_status tcp_allreduce(kdc_dist *d, void *buf, size_t n, kdc_dist_type t, kdc_dist_op op,
                                kdc_error *err)
{
    tcp_star *s = d->impl;
    size_t bytes = n * (t == KDC_DIST_F32 ? 4 : 8);
    kdc_status st;
    if (d->rank != 0) {
        if ((st = send_all(s->fd[0], buf, bytes, err)))
            return st;
        return recv_all(s->fd[0], buf, bytes, err);
    }
    if (s->tmp_bytes < bytes) {
        void *p = realloc(s->tmp, bytes);
        if (!p)
            return kdc_fail(err, KDC_ENOMEM, "out of memory");
        s->tmp = p;
        s->tmp_bytes = bytes;
    }
    for (int r = 1; r < d->size; r++) {
        if ((st = recv_all(s->fd[r], s->tmp, bytes, err)))
            return st;
        combine(buf, s->tmp, n, t, op);
    }
    for (int r = 1; r < d->size; r++)
        if ((st = send_all(s->fd[r], buf, bytes, err)))
            return st;
    return KDC_OK;
}

static kdc_status tcp_bcast(kdc_dist *d, void *buf, size_t bytes, int root, kdc_error *err)
{
    tcp_star *s = d->impl;
    kdc_status st;
    if (d->rank != 0) {
        if (d->rank == root)
            return send_all(s->fd[0], buf, bytes, err);
        return recv_all(s->fd[0], buf, bytes, err);
    }
    if (root != 0 && (st = recv_all(s->fd[root], buf, bytes, err)))
        return st;
    for (int r = 1; r < d->size; r++)
        if (r != root && (st = send_all(s->fd[r], buf, bytes, err)))
            return st;
    return KDC_OK;
}

static kdc_status tcp_barrier(kdc_dist *d, kdc_error *err)
{
    int64_t one = 1;
    return tcp_allreduce(d, &one, 1, KDC_DIST_I64, KDC_DIST_OP_SUM, err);
}

static void tcp_finish(kdc_dist *d)
{
    tcp_star *s = d->impl;
    if (!s)
        return;
    int nfd = d->rank == 0 ? d->size : 1;
    for (int r = 0; r < nfd; r++)
        if (s->fd[r] >= 0)
            close(s->fd[r]);
    free(s->fd);
    free(s->tmp);
    free(s);
    d->impl = NULL;
}

static void tcp_abort(kdc_dist *d, int code)
{
    tcp_finish(d); /* the others' next collective fails on the closed sockets */
    _exit(code ? code : 1);
}

static const kdc_dist_ops tcp_ops = {tcp_allreduce, tcp_bcast, tcp_barrier, tcp_abort, tcp_finish};

static kdc_status env_int(const char *name, int lo, int hi, int *out, kdc_error *err)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return kdc_fail(err, KDC_EINVAL, "torchrun-style launch: %s is not set", name);
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi)
        return kdc_fail(err, KDC_EINVAL, "%s=%s: expected a whole number in [%d, %d]", name, v, lo,
                        hi);
    *out = (int)x;
    return KDC_OK;
}

static void no_delay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static kdc_status listen_and_accept(kdc_dist *d, tcp_star *s, const char *port, kdc_error *err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(NULL, port, &hints, &ai);
    if (rc)
        return kdc_fail(err, KDC_EIO, "MASTER_PORT=%s: %s", port, gai_strerror(rc));
    int lfd = -1;
    for (struct addrinfo *p = ai; p && lfd < 0; p = p->ai_next) {
        lfd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (lfd < 0)
            continue;
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lfd, p->ai_addr, p->ai_addrlen) || listen(lfd, d->size)) {
            close(lfd);
            lfd = -1;
        }
    }
    freeaddrinfo(ai);
    if (lfd < 0)
        return kdc_fail(err, KDC_EIO, "rank 0 cannot listen on MASTER_PORT=%s: %s", port,
                        strerror(errno));
    for (int k = 1; k < d->size; k++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0 && errno == EINTR) {
            k--;
            continue;
        }
        int32_t r = -1;
        if (fd < 0 || recv_all(fd, &r, sizeof r, err) || r < 1 || r >= d->size || s->fd[r] >= 0) {
            if (fd >= 0)
                close(fd);
            close(lfd);
            return kdc_fail(err, KDC_EIO, "rank 0: a peer on MASTER_PORT=%s sent rank %d of %d",
                            port, (int)r, d->size);
        }
        no_delay(fd);
        s->fd[r] = fd;
    }
    close(lfd);
    return KDC_OK;
}

static kdc_status connect_to_root(kdc_dist *d, tcp_star *s, const char *host, const char *port,
                                  kdc_error *err)
{
    int timeout = 120;
    const char *tv = getenv("KDC_DIST_TIMEOUT");
    if (tv && atoi(tv) > 0)
        timeout = atoi(tv);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    time_t t0 = time(NULL);
    for (;;) {
        struct addrinfo *ai = NULL;
        int rc = getaddrinfo(host, port, &hints, &ai);
        if (rc)
            return kdc_fail(err, KDC_EIO, "MASTER_ADDR=%s MASTER_PORT=%s: %s", host, port,
                            gai_strerror(rc));
        int fd = -1;
        for (struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
            fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
            if (fd >= 0 && connect(fd, p->ai_addr, p->ai_addrlen)) {
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(ai);
        if (fd >= 0) {
            no_delay(fd);
            s->fd[0] = fd;
            int32_t r = d->rank;
            return send_all(fd, &r, sizeof r, err);
        }
        if (time(NULL) - t0 > timeout)
            return kdc_fail(err, KDC_EIO,
                            "rank %d: no rank 0 at MASTER_ADDR=%s MASTER_PORT=%s after %d s",
                            d->rank, host, port, timeout);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

kdc_status kdc_dist_tcp_open(kdc_dist *d, kdc_error *err)
{
    kdc_status st;
    if ((st = env_int("WORLD_SIZE", 1, 65536, &d->size, err)) ||
        (st = env_int("RANK", 0, d->size - 1, &d->rank, err)))
        return st;
    if (d->size == 1)
        return KDC_OK;
    const char *host = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
    if (!host || !*host)
        host = "127.0.0.1";
    if (!port || !*port)
        return kdc_fail(err, KDC_EINVAL, "torchrun-style launch: MASTER_PORT is not set");
    tcp_star *s = calloc(1, sizeof *s);
    if (!s || !(s->fd = malloc((size_t)d->size * sizeof *s->fd))) {
        free(s);
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }
    for (int r = 0; r < d->size; r++)
        s->fd[r] = -1;
    d->impl = s;
    st = d->rank == 0 ? listen_and_accept(d, s, port, err) : connect_to_root(d, s, host, port, err);
    if (st) {
        tcp_finish(d);
        return st;
    }
    d->ops = &tcp_ops;
    return KDC_OK;
}
