/*
** engine/pool.h — a persistent pool of worker threads for the kernels.
**
** eng_pool_run(p, fn, arg, n_chunks) calls fn(arg, chunk, n_chunks, tid)
** once for every chunk in 0..n_chunks-1 and returns when all have finished.
** Chunks are handed out dynamically: the calling thread and the workers
** take the next chunk from a shared counter until none is left, so a worker
** that the OS has descheduled (a busy machine) costs at most the chunk it
** holds, not its whole share.  tid (0 = the caller, < eng_pool_size) names
** the thread running the chunk, for per-thread scratch memory.  Workers spin
** briefly between jobs (a forward pass issues jobs back to back) and then
** sleep on a condition variable.
*/
#ifndef ENG_POOL_H
#define ENG_POOL_H

typedef void (*EngPoolFn)(void *arg, int chunk, int n_chunks, int tid);
typedef struct EngPool EngPool;

/* NULL when threads can't be created (n_threads < 1 is taken as 1). */
EngPool *eng_pool_new(int n_threads);
void eng_pool_free(EngPool *p);            /* accepts NULL; joins workers */
int eng_pool_size(const EngPool *p);
void eng_pool_run(EngPool *p, EngPoolFn fn, void *arg, int n_chunks);

#endif
