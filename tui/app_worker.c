/*
** tui/app_worker.c — the queue between the engine thread and the UI.
**
** The producer (a run on its own thread) pushes copies of small events; the
** UI takes a batch between key presses (it polls with a timeout), so neither
** side waits on the other for more than a list splice.  Cancellation is a
** flag the producer checks between tokens.
*/
#include "tui/app.h"

#include <stdlib.h>
#include <string.h>

int tui_queue_init(TuiQueue *q)
{
    memset(q, 0, sizeof *q);
    return pthread_mutex_init(&q->mu, NULL) ? -1 : 0;
}

void tui_queue_done(TuiQueue *q)
{
    if (!q)
        return;
    TuiEv *e = q->head;
    while (e) {
        TuiEv *n = e->next;
        free(e);
        e = n;
    }
    pthread_mutex_destroy(&q->mu);
    memset(q, 0, sizeof *q);
}

int tui_queue_push(TuiQueue *q, const TuiEv *ev)
{
    TuiEv *e = malloc(sizeof *e);
    if (!e)
        return -1;
    *e = *ev;
    e->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
    pthread_mutex_unlock(&q->mu);
    return 0;
}

TuiEv *tui_queue_take(TuiQueue *q, int max, int *n)
{
    pthread_mutex_lock(&q->mu);
    TuiEv *head = q->head, *last = NULL, *e = head;
    int c = 0;
    while (e && c < max) {
        last = e;
        e = e->next;
        c++;
    }
    if (last) {
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        q->n -= c;
    }
    pthread_mutex_unlock(&q->mu);
    *n = c;
    return c ? head : NULL;
}

void tui_queue_cancel(TuiQueue *q)
{
    pthread_mutex_lock(&q->mu);
    q->cancel = 1;
    pthread_mutex_unlock(&q->mu);
}

int tui_queue_cancelled(TuiQueue *q)
{
    pthread_mutex_lock(&q->mu);
    int c = q->cancel;
    pthread_mutex_unlock(&q->mu);
    return c;
}
