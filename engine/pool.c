/*
** engine/pool.c — persistent worker threads, chunks handed out dynamically.
**
** A job is (fn, arg, n_chunks).  The state word `ticket` holds the job's
** generation in its high 32 bits and the next chunk to hand out in its low
** 32 bits; a thread takes a chunk with a compare-and-swap that also checks
** the generation, so a worker waking late can never take a chunk of a later
** job with an earlier job's function.  fn/arg are written before the
** generation is published and cannot change while any chunk of the job is
** unfinished, because the caller starts the next job only after `done`
** reaches n_chunks.
**
** Idle workers spin on the generation for a while (kernels of one forward
** pass follow each other within microseconds) and then sleep on a condition
** variable, so an idle pool costs no CPU.
*/
#include "engine/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* pause-loop rounds before a worker sleeps / the caller starts yielding */
#define SPIN_LIMIT 16384
#define WAIT_SPIN 2048

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

struct EngPool {
    int n;
    pthread_t *th;
    EngPoolFn fn;
    void *arg;
    int n_chunks;
    _Atomic uint64_t ticket;     /* gen << 32 | next chunk */
    atomic_int done;             /* chunks finished in this job */
    atomic_int stop;
    atomic_int sleepers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct { EngPool *p; int tid; } Worker;

static Worker *workers_of(EngPool *p) { return (Worker *)(p->th + p->n); }

/* Run chunks of generation gen until none is left. */
static void drain(EngPool *p, uint32_t gen, int tid)
{
    for (;;) {
        uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        if ((uint32_t)(t >> 32) != gen)
            return;
        uint32_t next = (uint32_t)t;
        if ((int)next >= p->n_chunks)
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        p->fn(p->arg, (int)next, p->n_chunks, tid);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *worker_main(void *a)
{
    Worker *w = a;
    EngPool *p = w->p;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = (uint32_t)(atomic_load_explicit(&p->ticket, memory_order_acquire) >> 32)) == seen) {
            if (atomic_load(&p->stop))
                return NULL;
            if (++spins < SPIN_LIMIT) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((uint32_t)(atomic_load(&p->ticket) >> 32) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        drain(p, g, w->tid);
    }
}

EngPool *eng_pool_new(int n)
{
    if (n < 1)
        n = 1;
    EngPool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n;
    /* thread handles followed by the worker records */
    p->th = calloc((size_t)n, sizeof(pthread_t) + sizeof(Worker));
    if (!p->th) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 1; i < n; i++) {
        Worker *w = &workers_of(p)[i];
        w->p = p;
        w->tid = i;
        if (pthread_create(&p->th[i], NULL, worker_main, w) != 0) {
            p->n = i;  /* join only those started */
            eng_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void eng_pool_free(EngPool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->ticket, (uint64_t)1 << 32);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p);
}

int eng_pool_size(const EngPool *p) { return p->n; }

void eng_pool_run(EngPool *p, EngPoolFn fn, void *arg, int n_chunks)
{
    if (n_chunks < 1)
        return;
    if (p->n == 1 || n_chunks == 1) {
        for (int i = 0; i < n_chunks; i++)
            fn(arg, i, n_chunks, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_chunks = n_chunks;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint64_t t = atomic_load(&p->ticket);
    uint32_t gen = (uint32_t)(t >> 32) + 1;
    /* seq_cst: publishes fn/arg/n_chunks and pairs with `sleepers` below */
    atomic_store(&p->ticket, (uint64_t)gen << 32);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    drain(p, gen, 0);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_chunks) {
        /* a worker holds a chunk; if the OS took its core, let it run */
        if (++spins < WAIT_SPIN)
            cpu_relax();
        else
            sched_yield();
    }
}
