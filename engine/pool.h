/*
** engine/pool.h — a persistent pool of worker threads for the kernels.
**
** eng_pool_run(p, fn, arg) calls fn(arg, ith, nth) once for every ith in
** 0..nth-1 (nth = pool size), the calling thread doing ith 0, and returns
** when all have finished.  Workers spin briefly between jobs (a forward pass
** issues jobs back to back) and then sleep on a condition variable.
*/
#ifndef ENG_POOL_H
#define ENG_POOL_H

typedef void (*EngPoolFn)(void *arg, int ith, int nth);
typedef struct EngPool EngPool;

/* NULL when threads can't be created (n_threads < 1 is taken as 1). */
EngPool *eng_pool_new(int n_threads);
void eng_pool_free(EngPool *p);            /* accepts NULL; joins workers */
int eng_pool_size(const EngPool *p);
void eng_pool_run(EngPool *p, EngPoolFn fn, void *arg);

#endif
