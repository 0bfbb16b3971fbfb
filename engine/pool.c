/*
** engine/pool.c — persistent worker threads with a spin-then-sleep wait.
**
** A job is published by bumping `gen` (an atomic generation counter) after
** storing fn/arg; each worker runs its share and increments `done`.  The
** caller runs share 0 and spins until done == nth-1.  Workers that see no new
** generation for a while block on a condition variable, so an idle pool costs
** no CPU.
*/
#include "engine/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* pause-loop rounds before a worker sleeps / the caller starts yielding:
** long enough to bridge the gap between two kernels of one forward pass,
** short enough not to starve other processes on a busy machine */
#define SPIN_LIMIT 16384
#define WAIT_SPIN 4096

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
    atomic_uint gen;
    atomic_int done;
    atomic_int stop;
    atomic_int sleepers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct { EngPool *p; int ith; } Worker;

static Worker *workers_of(EngPool *p) { return (Worker *)(p->th + p->n); }

static void *worker_main(void *a)
{
    Worker *w = a;
    EngPool *p = w->p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (atomic_load(&p->stop))
                return NULL;
            if (++spins < SPIN_LIMIT) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
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
        w->ith = i;
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
    atomic_fetch_add(&p->gen, 1);
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

void eng_pool_run(EngPool *p, EngPoolFn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->done, 0);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with sleepers below */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < p->n - 1) {
        /* a worker may have been descheduled: stop burning the core after a while */
        if (++spins < WAIT_SPIN)
            cpu_relax();
        else
            sched_yield();
    }
}
