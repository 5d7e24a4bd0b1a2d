/* memory/broker.c -- the in-process broker: queues in this process's memory,
 * for single-process use and for fast tests.
 *
 * It honours every contract of gtask_broker_ops (<gtask/extend.h>) the way the Redis
 * broker does, and tests/integration/test_contract.c runs the same cases against
 * both.  Per queue it keeps:
 *   ready   per priority level, a FIFO of messages waiting to be leased;
 *           a lease takes from the highest level that has any;
 *   leased  the deliveries held by consumers, ordered by last renewal (oldest
 *           first), each also in a broker-wide table: lease token -> delivery;
 *   sched   a min-heap of messages waiting for their due time (unix ms);
 *   dead    the dead set (one entry per task id, as the Redis hash);
 *   kept    the failed set: messages of tasks that ended FAILURE, kept for a
 *           rerun until their due_ms (failed_list), in the order added.
 * A message is one node that moves between these; it is in exactly one of them.
 *
 * Lease tokens are "m-<n>", n counting every delivery the broker ever made, so
 * a token is never reused: once reclaim re-leases a delivery under a new token,
 * the old holder is fenced (extend reports it lost, finish marks it fenced).
 *
 * One mutex guards everything; one condition variable (CLOCK_MONOTONIC) wakes
 * blocked lease() calls when a queue gains ready messages or on interrupt().
 * No user code is ever called under the mutex.  Allocation failures return
 * GTASK_ENOMEM and lose no message: every call allocates what it needs before
 * it unlinks or links anything.
 *
 * Colocation (memory.h): with a memory backend, colocated() returns that
 * backend's impl, and push, finish and dead_requeue given it as state write
 * the backend's records through its table while holding this broker's mutex,
 * after everything that can fail on the broker's side is allocated and before
 * any queue changes: a backend failure leaves both as they were.
 *
 * Per queue it also counts the tasks finished (succeeded, failed) for stats.
 *
 * Seeing inside (issue 20): list() pages through one of those places in its
 * order (a scheduled page sorted by due time), the cursor being the pos of
 * the last node given (scheduled: "DUE:SEQ"); find() looks in each place;
 * worker_put() keeps a worker record on the consumer, worker_list() reads
 * those live now.
 *
 * Memory: consumer records (one per distinct consumer name) and queue records
 * (one per queue name ever pushed to) are kept until destroy.  Dead messages
 * are kept until dead_requeue or dead_purge moves or drops them. */
#include <gtask/extend.h>

#include "../util.h" /* the allocation seam, clocks, errors: no core types */
#include "memory.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A consumer name and its interrupt state. */
typedef struct mem_consumer {
  struct mem_consumer *next;
  char *name;            /* owned */
  unsigned waiting;      /* lease() calls of this consumer in progress */
  uint64_t wake_epoch;   /* bumped by interrupt() while waiting > 0: those return */
  bool interrupt_sticky; /* interrupt() came while no lease() was in progress:
                            the next lease() of this consumer returns at once */
  int64_t live_until;    /* announce(): a live worker until then (unix ms); 0 none */
  char *record;          /* worker_put(): its worker record (owned), or NULL */
  int64_t record_until;  /* worker_put(): the record is live until then (unix ms) */
} mem_consumer;

struct mem_queue;

/* One message.  Which fields matter depends on where it is (see the file
 * comment): token and holder are set exactly while it is leased. */
typedef struct mem_node {
  struct mem_node *prev, *next; /* links in ready, leased or dead */
  struct mem_node *hnext;       /* chain in the lease table (leased only) */
  struct mem_queue *q;          /* the queue it belongs to */
  char id[GTASK_ID_SIZE];
  char *body; /* owned, NUL-terminated for convenience; len bytes count */
  size_t len;
  int64_t due_ms;       /* sched: unix ms when due */
  uint64_t seq;         /* sched: tie-break, FIFO among equal due times */
  uint64_t pos;         /* ready, leased, dead, kept: its place in the list
                           (list_append), the cursor of list() */
  uint64_t token;       /* leased: delivery number (> 0); 0 otherwise */
  mem_consumer *holder; /* leased: who holds it */
  int prio;             /* its priority level: the ready list it goes back to */
  int64_t renewed_ms;   /* leased: mono ms of the lease or its last renewal */
} mem_node;

typedef struct mem_list {
  mem_node *head, *tail;
  size_t n;
  uint64_t last; /* the pos given to the last node appended: pos grows along
                    the list, so a page of list() resumes after a pos */
} mem_list;

typedef struct mem_queue {
  struct mem_queue *next;
  char *name; /* owned */
  mem_list ready[GTASK_PRIORITY_MAX + 1]; /* by level */
  /* Invariant: ordered by renewed_ms, oldest first.  Every lease, extend and
   * reclaim stamps the node with the monotonic clock (never decreasing) and
   * appends it at the tail, so reclaim can stop at the first live lease. */
  mem_list leased;
  mem_list dead;
  mem_list kept;    /* kept failed tasks (failed_list), oldest first: due_ms = until */
  mem_node **sched; /* binary min-heap by (due_ms, seq) */
  size_t nsched, capsched;
  int64_t succeeded, failed; /* tasks finished, counted by finish() */
  int64_t cancelled;         /* tasks cancelled, counted by cancel() */
  bool paused;               /* pause(): workers leave it out (paused()) */
} mem_queue;

typedef struct mem_broker {
  pthread_mutex_t mu; /* guards everything below */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC; broadcast on new ready messages, interrupt */
  mem_queue *queues;
  mem_consumer *consumers;
  mem_node **table; /* lease token -> leased node, chained, power-of-two buckets */
  size_t nbuckets, nleased;
  uint64_t last_token; /* the last delivery number handed out */
  uint64_t last_seq;
} mem_broker;

/* ---------------------------------------------------------------- lists */

static void list_append(mem_list *l, mem_node *x) {
  x->pos = ++l->last;
  x->next = NULL;
  x->prev = l->tail;
  if (l->tail)
    l->tail->next = x;
  else
    l->head = x;
  l->tail = x;
  l->n++;
}

static void list_remove(mem_list *l, mem_node *x) {
  if (x->prev)
    x->prev->next = x->next;
  else
    l->head = x->next;
  if (x->next)
    x->next->prev = x->prev;
  else
    l->tail = x->prev;
  x->prev = x->next = NULL;
  l->n--;
}

static void node_free(mem_node *x) {
  if (x == NULL)
    return;
  gtask__free(x->body);
  gtask__free(x);
}

static void list_free(mem_list *l) {
  for (mem_node *x = l->head, *next; x; x = next) {
    next = x->next;
    node_free(x);
  }
  l->head = l->tail = NULL;
  l->n = 0;
}

/* ---------------------------------------------------------------- scheduled heap */

static bool sched_before(const mem_node *a, const mem_node *b) {
  return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

/* Makes room for at least want entries.  The only step of a heap insertion that
 * can fail, so callers reserve before they unlink anything. */
static int sched_reserve(mem_queue *q, size_t want) {
  if (want <= q->capsched)
    return 0;
  size_t cap = q->capsched ? q->capsched : 16;
  while (cap < want) {
    if (cap > SIZE_MAX / 2 / sizeof(mem_node *))
      return GTASK_ENOMEM;
    cap *= 2;
  }
  mem_node **h = gtask__realloc(q->sched, cap * sizeof(*h));
  if (h == NULL)
    return GTASK_ENOMEM;
  q->sched = h;
  q->capsched = cap;
  return 0;
}

/* Capacity must have been reserved. */
static void sched_push(mem_queue *q, mem_node *x) {
  size_t i = q->nsched++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!sched_before(x, q->sched[parent]))
      break;
    q->sched[i] = q->sched[parent];
    i = parent;
  }
  q->sched[i] = x;
}

/* Takes the entry at index i out of the heap. */
static void sched_remove_at(mem_queue *q, size_t i) {
  mem_node *last = q->sched[--q->nsched];
  if (i == q->nsched)
    return;
  size_t n = q->nsched;
  while (i > 0 && sched_before(last, q->sched[(i - 1) / 2])) { /* up */
    q->sched[i] = q->sched[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  for (;;) { /* down */
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && sched_before(q->sched[c + 1], q->sched[c]))
      c++;
    if (!sched_before(q->sched[c], last))
      break;
    q->sched[i] = q->sched[c];
    i = c;
  }
  q->sched[i] = last;
}

static mem_node *sched_pop(mem_queue *q) {
  mem_node *top = q->sched[0];
  sched_remove_at(q, 0);
  return top;
}

/* ---------------------------------------------------------------- lease table */

static size_t bucket_of(const mem_broker *br, uint64_t token) {
  return (size_t)(token & (uint64_t)(br->nbuckets - 1));
}

/* Doubles the table when it gets crowded.  Failure is harmless: the chains just
 * get longer, so inserting never fails. */
static void table_grow(mem_broker *br) {
  if (br->nleased < br->nbuckets * 2 || br->nbuckets > SIZE_MAX / 4 / sizeof(mem_node *))
    return;
  size_t nb = br->nbuckets * 2;
  mem_node **t = gtask__calloc(nb, sizeof(*t));
  if (t == NULL)
    return;
  for (size_t i = 0; i < br->nbuckets; i++) {
    for (mem_node *x = br->table[i], *next; x; x = next) {
      next = x->hnext;
      size_t b = (size_t)(x->token & (uint64_t)(nb - 1));
      x->hnext = t[b];
      t[b] = x;
    }
  }
  gtask__free(br->table);
  br->table = t;
  br->nbuckets = nb;
}

static void table_insert(mem_broker *br, mem_node *x) {
  size_t b = bucket_of(br, x->token);
  x->hnext = br->table[b];
  br->table[b] = x;
  br->nleased++;
  table_grow(br);
}

static void table_remove(mem_broker *br, mem_node *x) {
  for (mem_node **p = &br->table[bucket_of(br, x->token)]; *p; p = &(*p)->hnext) {
    if (*p == x) {
      *p = x->hnext;
      x->hnext = NULL;
      br->nleased--;
      return;
    }
  }
}

/* Parses "m-<n>" strictly (no sign, no spaces, no leading zeros); 0 if it is
 * not one of our tokens. */
static uint64_t token_parse(const char *s) {
  if (s == NULL || s[0] != 'm' || s[1] != '-' || s[2] < '1' || s[2] > '9')
    return 0;
  uint64_t v = 0;
  for (const char *p = s + 2; *p; p++) {
    if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
      return 0;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  return v;
}

/* The delivery that msg names, if consumer c still holds it; else NULL. */
static mem_node *held(mem_broker *br, const mem_consumer *c, const gtask_msg *msg) {
  if (c == NULL || msg == NULL)
    return NULL;
  uint64_t token = token_parse(msg->lease);
  if (token == 0)
    return NULL;
  for (mem_node *x = br->table[bucket_of(br, token)]; x; x = x->hnext) {
    if (x->token == token)
      return x->holder == c && strcmp(x->id, msg->id) == 0 ? x : NULL;
  }
  return NULL;
}

/* ---------------------------------------------------------------- queues, consumers */

static mem_queue *queue_find(mem_broker *br, const char *name) {
  for (mem_queue *q = br->queues; q; q = q->next)
    if (strcmp(q->name, name) == 0)
      return q;
  return NULL;
}

/* Finds or creates; NULL on out-of-memory.  Linear: a process has few queues. */
static mem_queue *queue_get(mem_broker *br, const char *name) {
  mem_queue *q = queue_find(br, name);
  if (q)
    return q;
  q = gtask__calloc(1, sizeof(*q));
  if (q == NULL)
    return NULL;
  if ((q->name = gtask__strdup(name)) == NULL) {
    gtask__free(q);
    return NULL;
  }
  q->next = br->queues;
  br->queues = q;
  return q;
}

static mem_consumer *consumer_find(mem_broker *br, const char *name) {
  for (mem_consumer *c = br->consumers; c; c = c->next)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

/* Finds or creates; NULL on out-of-memory.  Linear: one consumer per server. */
static mem_consumer *consumer_get(mem_broker *br, const char *name) {
  mem_consumer *c = consumer_find(br, name);
  if (c)
    return c;
  c = gtask__calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  if ((c->name = gtask__strdup(name)) == NULL) {
    gtask__free(c);
    return NULL;
  }
  c->next = br->consumers;
  br->consumers = c;
  return c;
}

/* ---------------------------------------------------------------- deliveries */

/* A copy of x for the caller, leased under the next token.  The token is spent
 * even if the copy fails; tokens only need to be unique, not dense. */
static gtask_msg *delivery_new(mem_broker *br, const mem_node *x, uint64_t *token) {
  gtask_msg *m = gtask_msg_new(x->id, x->q->name, x->body, x->len);
  if (m == NULL)
    return NULL;
  m->priority = x->prio;
  char buf[32];
  *token = ++br->last_token;
  gtask__fmt(buf, sizeof(buf), "m-%" PRIu64, *token);
  if ((m->lease = gtask__strdup(buf)) == NULL) {
    gtask_msg_free(m);
    return NULL;
  }
  return m;
}

/* Moves x (already unlinked from its list) into q->leased under token, held by
 * c and stamped now. */
static void lease_to(mem_broker *br, mem_node *x, uint64_t token, mem_consumer *c) {
  x->token = token;
  x->holder = c;
  x->renewed_ms = gtask__mono_ms();
  list_append(&x->q->leased, x);
  table_insert(br, x);
}

/* Ends x's lease and unlinks it from q->leased. */
static void unlease(mem_broker *br, mem_node *x) {
  table_remove(br, x);
  list_remove(&x->q->leased, x);
  x->token = 0;
  x->holder = NULL;
}

/* Adds x to the dead set, replacing an older dead message of the same task (the
 * Redis dead set is a hash by task id). */
static void dead_add(mem_queue *q, mem_node *x) {
  for (mem_node *d = q->dead.head; d; d = d->next) {
    if (strcmp(d->id, x->id) == 0) {
      list_remove(&q->dead, d);
      node_free(d);
      break;
    }
  }
  list_append(&q->dead, x);
}

/* Replaces x's body with *body (taking it) if *body is non-NULL. */
static void body_swap(mem_node *x, char **body, size_t len) {
  if (*body == NULL)
    return;
  gtask__free(x->body);
  x->body = *body;
  x->len = len;
  *body = NULL;
}

/* A copy of len bytes of s, NUL-terminated.  NULL on out-of-memory. */
static char *bytes_dup(const char *s, size_t len) {
  if (len == SIZE_MAX)
    return NULL;
  char *p = gtask__malloc(len + 1);
  if (p == NULL)
    return NULL;
  if (len > 0)
    memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

/* Absolute CLOCK_MONOTONIC time ms from now. */
static struct timespec deadline_after(int64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

/* ---------------------------------------------------------------- operations */

/* push() and push_unique(): with claims cs (parallel to msgs), the backend
 * claims them (state required) and only the claimed ones are queued. */
static int push(mem_broker *br, gtask_msg *const *msgs, size_t n, void *state, gtask_claim *cs) {
  if (br == NULL || (n > 0 && msgs == NULL))
    return GTASK_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (msgs[i] == NULL || msgs[i]->queue == NULL || (msgs[i]->body == NULL && msgs[i]->len > 0) ||
        msgs[i]->priority < 0 || msgs[i]->priority > GTASK_PRIORITY_MAX)
      return GTASK_EINVAL;
  if (n == 0)
    return 0;

  /* All or nothing: build every node (and queue, and heap slot) first. */
  mem_node **nodes = gtask__calloc(n, sizeof(*nodes));
  if (nodes == NULL)
    return GTASK_ENOMEM;
  int64_t now = gtask__now_ms();
  int rc = 0;
  pthread_mutex_lock(&br->mu);
  size_t nlater = 0;
  for (size_t i = 0; i < n; i++)
    if (msgs[i]->due_ms > now)
      nlater++;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const gtask_msg *m = msgs[i];
    mem_queue *q = queue_get(br, m->queue); /* an empty queue left behind is harmless */
    mem_node *x = q ? gtask__calloc(1, sizeof(*x)) : NULL;
    if (x == NULL || (x->body = bytes_dup(m->body, m->len)) == NULL) {
      gtask__free(x);
      rc = GTASK_ENOMEM;
      break;
    }
    nodes[i] = x;
    x->q = q;
    memcpy(x->id, m->id, sizeof(x->id));
    x->id[GTASK_ID_SIZE - 1] = '\0';
    x->len = m->len;
    x->prio = m->priority;
    if (m->due_ms > now)
      rc = sched_reserve(q, q->nsched + nlater);
  }
  if (rc == 0 && cs != NULL) /* colocated: claimed in the same step */
    rc = gtask__memory_backend_ops.claim(state, cs, n);
  else if (rc == 0 && state != NULL) /* colocated: PENDING in the same step */
    rc = gtask__memory_backend_ops.pending(state, msgs, n);
  bool woke = false;
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      mem_node *x = nodes[i];
      if (cs != NULL && cs[i].duplicate) {
        node_free(x);
      } else if (msgs[i]->due_ms > now) {
        x->due_ms = msgs[i]->due_ms;
        x->seq = ++br->last_seq;
        sched_push(x->q, x);
      } else {
        list_append(&x->q->ready[x->prio], x);
        woke = true;
      }
    }
  } else {
    for (size_t i = 0; i < n; i++)
      node_free(nodes[i]);
  }
  if (woke)
    pthread_cond_broadcast(&br->cv);
  pthread_mutex_unlock(&br->mu);
  gtask__free(nodes);
  return rc;
}

static int mb_push(void *impl, gtask_msg *const *msgs, size_t n, void *state) {
  return push(impl, msgs, n, state, NULL);
}

static int mb_push_unique(void *impl, gtask_claim *cs, size_t n, void *state) {
  if (state == NULL || (n > 0 && cs == NULL))
    return GTASK_EINVAL;
  if (n == 0)
    return 0;
  gtask_msg **msgs = gtask__calloc(n, sizeof(*msgs));
  if (msgs == NULL)
    return GTASK_ENOMEM;
  for (size_t i = 0; i < n; i++)
    msgs[i] = cs[i].msg;
  int rc = push(impl, msgs, n, state, cs);
  gtask__free(msgs);
  return rc;
}

/* Takes up to max - *n ready messages from queues, in order (each queue's
 * levels highest first), leasing them to c.
 * On out-of-memory it keeps what it took (all safely leased and returned) and
 * reports GTASK_ENOMEM only if it took nothing. */
static int take(mem_broker *br, mem_consumer *c, const char *const *queues, size_t nq,
                size_t max, gtask_msg **out, size_t *n) {
  for (size_t i = 0; i < nq && *n < max; i++) {
    mem_queue *q = queue_find(br, queues[i]);
    for (int level = GTASK_PRIORITY_MAX; q && level >= 0 && *n < max; level--) {
      mem_list *ready = &q->ready[level];
      while (ready->head && *n < max) {
        mem_node *x = ready->head;
        uint64_t token;
        gtask_msg *m = delivery_new(br, x, &token);
        if (m == NULL)
          return *n > 0 ? 0 : GTASK_ENOMEM;
        list_remove(ready, x);
        lease_to(br, x, token, c);
        out[(*n)++] = m;
      }
    }
  }
  return 0;
}

/* Interrupts: interrupt() bumps wake_epoch when lease() calls of the consumer
 * are in progress (they all return), or else sets interrupt_sticky, which the
 * next lease() of that consumer consumes by returning at once.  Both happen
 * under the mutex, and a lease() holds it from its start until it blocks, so an
 * interrupt() that arrives just before a lease() blocks is never lost.  The cost
 * is that an interrupt() with no lease() in progress also cuts the next one
 * short (0, *n == 0) -- harmless for the server, which interrupts only to stop
 * and then stops leasing.  The Redis broker's interrupt behaves the same. */
static int mb_lease(void *impl, const char *consumer, const char *const *queues, size_t nq,
                    size_t max, int64_t wait_ms, gtask_msg **out, size_t *n) {
  mem_broker *br = impl;
  if (n != NULL)
    *n = 0;
  if (br == NULL || consumer == NULL || queues == NULL || nq == 0 || max == 0 || out == NULL ||
      n == NULL)
    return GTASK_EINVAL;
  for (size_t i = 0; i < nq; i++)
    if (queues[i] == NULL)
      return GTASK_EINVAL;

  struct timespec deadline = {0, 0};
  if (wait_ms > 0)
    deadline = deadline_after(wait_ms);
  pthread_mutex_lock(&br->mu);
  mem_consumer *c = consumer_get(br, consumer);
  if (c == NULL) {
    pthread_mutex_unlock(&br->mu);
    return GTASK_ENOMEM;
  }
  uint64_t epoch = c->wake_epoch;
  c->waiting++;
  int rc = 0;
  for (;;) {
    if (c->interrupt_sticky) {
      c->interrupt_sticky = false;
      break;
    }
    if (c->wake_epoch != epoch)
      break;
    rc = take(br, c, queues, nq, max, out, n);
    if (rc != 0 || *n > 0 || wait_ms == 0)
      break;
    int w = wait_ms < 0 ? pthread_cond_wait(&br->cv, &br->mu)
                        : pthread_cond_timedwait(&br->cv, &br->mu, &deadline);
    if (w == ETIMEDOUT)
      wait_ms = 0; /* one last look, then return */
  }
  c->waiting--;
  pthread_mutex_unlock(&br->mu);
  return rc;
}

static int mb_interrupt(void *impl, const char *consumer) {
  mem_broker *br = impl;
  if (br == NULL || consumer == NULL)
    return GTASK_EINVAL;
  pthread_mutex_lock(&br->mu);
  mem_consumer *c = consumer_get(br, consumer);
  if (c == NULL) {
    pthread_mutex_unlock(&br->mu);
    return GTASK_ENOMEM;
  }
  if (c->waiting > 0)
    c->wake_epoch++;
  else
    c->interrupt_sticky = true;
  pthread_cond_broadcast(&br->cv);
  pthread_mutex_unlock(&br->mu);
  return 0;
}

static int mb_extend(void *impl, const char *consumer, gtask_msg *const *msgs, size_t n,
                     bool *lost) {
  mem_broker *br = impl;
  if (br == NULL || consumer == NULL || (n > 0 && (msgs == NULL || lost == NULL)))
    return GTASK_EINVAL;
  pthread_mutex_lock(&br->mu);
  mem_consumer *c = consumer_find(br, consumer);
  int64_t now = gtask__mono_ms();
  for (size_t i = 0; i < n; i++) {
    mem_node *x = held(br, c, msgs[i]);
    lost[i] = x == NULL;
    if (x) {
      /* Renewal keeps q->leased ordered: stamp now, move to the tail. */
      list_remove(&x->q->leased, x);
      x->renewed_ms = now;
      list_append(&x->q->leased, x);
    }
  }
  pthread_mutex_unlock(&br->mu);
  return 0;
}

/* A done FAILURE fin whose message is kept in the failed set until
 * next_due_ms (<gtask/extend.h>, failed_list). */
static bool fin_keeps_failed(const gtask_fin *f) {
  return f->kind == GTASK_FIN_DONE && f->status == GTASK_FAILURE && f->next != NULL &&
         f->next_due_ms > 0;
}

/* The failed set keeps at most this many tasks per queue (as the Redis
 * broker's finish.lua), dropping the oldest. */
#define FAILED_MAX 10000

/* Drops the failed entries of q past their time, oldest first (the list is in
 * the order they were added; an entry kept for a shorter time behind a
 * longer one waits for it, and is hidden by failed_list meanwhile). */
static void failed_trim(mem_queue *q, int64_t now) {
  while (q->kept.head && (q->kept.head->due_ms < now || q->kept.n > FAILED_MAX)) {
    mem_node *d = q->kept.head;
    list_remove(&q->kept, d);
    node_free(d);
  }
}

static void failed_add(mem_queue *q, mem_node *x) {
  list_append(&q->kept, x);
  failed_trim(q, gtask__now_ms());
}

static int mb_finish(void *impl, const char *consumer, gtask_fin *fins, size_t n, void *state) {
  mem_broker *br = impl;
  if (br == NULL || consumer == NULL || (n > 0 && fins == NULL))
    return GTASK_EINVAL;
  size_t nretry = 0;
  for (size_t i = 0; i < n; i++) {
    if (fins[i].msg == NULL || fins[i].kind < GTASK_FIN_DONE || fins[i].kind > GTASK_FIN_DEAD ||
        (fins[i].next == NULL && fins[i].next_len > 0))
      return GTASK_EINVAL;
    if (fins[i].kind == GTASK_FIN_RETRY)
      nretry++;
  }
  if (n == 0)
    return 0;

  /* Phase 1 allocates every new body and heap slot; phase 2 cannot fail, so a
   * batch is applied whole or not at all. */
  char **bodies = gtask__calloc(n, sizeof(*bodies));
  /* Colocated: the fins whose lease is held, copied for the backend's store,
   * and where each came from. */
  gtask_fin *held_fins = state ? gtask__calloc(n, sizeof(*held_fins)) : NULL;
  size_t *held_at = state ? gtask__calloc(n, sizeof(*held_at)) : NULL;
  int rc = bodies == NULL || (state && (held_fins == NULL || held_at == NULL)) ? GTASK_ENOMEM : 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if ((fins[i].kind != GTASK_FIN_DONE || fin_keeps_failed(&fins[i])) && fins[i].next != NULL &&
        (bodies[i] = bytes_dup(fins[i].next, fins[i].next_len)) == NULL)
      rc = GTASK_ENOMEM;
  }
  pthread_mutex_lock(&br->mu);
  mem_consumer *c = consumer_find(br, consumer);
  for (size_t i = 0; i < n && rc == 0; i++) {
    mem_node *x = fins[i].kind == GTASK_FIN_RETRY ? held(br, c, fins[i].msg) : NULL;
    if (x)
      rc = sched_reserve(x->q, x->q->nsched + nretry);
  }
  /* Colocated: store the held fins' states now, all or nothing; a task
   * already final comes back fenced, and then only its lease is released. */
  bool stored = false; /* colocated and stored: a held fin now fenced was final */
  if (rc == 0 && state != NULL) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      if (held(br, c, fins[i].msg) != NULL) {
        held_fins[k] = fins[i];
        held_fins[k].fenced = false;
        held_at[k++] = i;
      }
    }
    rc = gtask__memory_backend_ops.store(state, held_fins, k);
    for (size_t j = 0; j < k && rc == 0; j++)
      fins[held_at[j]].fenced = held_fins[j].fenced;
    stored = rc == 0;
  }
  bool woke = false;
  for (size_t i = 0; i < n && rc == 0; i++) {
    gtask_fin *f = &fins[i];
    mem_node *x = held(br, c, f->msg);
    if (x != NULL && stored && f->fenced) {
      unlease(br, x); /* already final: release the lease, record nothing */
      node_free(x);
      continue;
    }
    f->fenced = x == NULL;
    if (x == NULL)
      continue;
    mem_queue *q = x->q;
    unlease(br, x);
    body_swap(x, &bodies[i], f->next_len);
    if ((f->kind == GTASK_FIN_DONE || f->kind == GTASK_FIN_DEAD) && f->status == GTASK_SUCCESS)
      q->succeeded++;
    if ((f->kind == GTASK_FIN_DONE || f->kind == GTASK_FIN_DEAD) && f->status == GTASK_FAILURE)
      q->failed++;
    switch (f->kind) {
    case GTASK_FIN_DONE:
      if (fin_keeps_failed(f)) {
        x->due_ms = f->next_due_ms;
        failed_add(q, x);
      } else {
        node_free(x);
      }
      break;
    case GTASK_FIN_RETRY:
      /* Scheduled even if already due, as in Redis: promote() moves it. */
      x->due_ms = f->next_due_ms;
      x->seq = ++br->last_seq;
      sched_push(q, x);
      break;
    case GTASK_FIN_REQUEUE:
      list_append(&q->ready[x->prio], x);
      woke = true;
      break;
    case GTASK_FIN_DEAD:
      dead_add(q, x);
      break;
    }
  }
  if (woke)
    pthread_cond_broadcast(&br->cv);
  pthread_mutex_unlock(&br->mu);
  for (size_t i = 0; bodies != NULL && i < n; i++)
    gtask__free(bodies[i]); /* those not used: fenced fins, or all after ENOMEM */
  gtask__free(bodies);
  gtask__free(held_fins);
  gtask__free(held_at);
  return rc;
}

static int mb_reclaim(void *impl, const char *consumer, const char *queue, int64_t lease_ms,
                      size_t max, gtask_msg **out, size_t *n) {
  mem_broker *br = impl;
  if (n != NULL)
    *n = 0;
  if (br == NULL || consumer == NULL || queue == NULL || out == NULL || n == NULL)
    return GTASK_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&br->mu);
  mem_queue *q = queue_find(br, queue);
  mem_consumer *c = NULL;
  if (q != NULL && q->leased.n > 0 && max > 0 && (c = consumer_get(br, consumer)) == NULL)
    rc = GTASK_ENOMEM;
  if (c != NULL) {
    int64_t now = gtask__mono_ms();
    /* Oldest first (see the invariant on mem_queue.leased); each taken node
     * goes to the tail, so scan no more than the nodes present at the start. */
    size_t scan = q->leased.n;
    for (mem_node *x = q->leased.head, *next; x && scan > 0 && *n < max; x = next, scan--) {
      next = x->next;
      if (now - x->renewed_ms < lease_ms)
        break;
      uint64_t token;
      gtask_msg *m = delivery_new(br, x, &token);
      if (m == NULL) {
        rc = *n > 0 ? 0 : GTASK_ENOMEM;
        break;
      }
      unlease(br, x); /* the old token dies here: its holder is fenced */
      lease_to(br, x, token, c);
      out[(*n)++] = m;
    }
  }
  pthread_mutex_unlock(&br->mu);
  return rc;
}

static int mb_promote(void *impl, const char *queue, size_t max, int64_t *next_due_ms) {
  mem_broker *br = impl;
  if (next_due_ms != NULL)
    *next_due_ms = 0;
  if (br == NULL || queue == NULL || next_due_ms == NULL)
    return GTASK_EINVAL;
  int64_t now = gtask__now_ms();
  pthread_mutex_lock(&br->mu);
  mem_queue *q = queue_find(br, queue);
  if (q) {
    size_t moved = 0;
    while (moved < max && q->nsched > 0 && q->sched[0]->due_ms <= now) {
      mem_node *x = sched_pop(q);
      list_append(&q->ready[x->prio], x);
      moved++;
    }
    if (moved > 0)
      pthread_cond_broadcast(&br->cv);
    if (q->nsched > 0)
      *next_due_ms = q->sched[0]->due_ms;
  }
  pthread_mutex_unlock(&br->mu);
  return 0;
}

static int mb_stats(void *impl, const char *queue, gtask_queue_stats *out) {
  mem_broker *br = impl;
  if (br == NULL || queue == NULL || out == NULL)
    return GTASK_EINVAL;
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&br->mu);
  const mem_queue *q = queue_find(br, queue);
  if (q) {
    for (int level = 0; level <= GTASK_PRIORITY_MAX; level++)
      out->pending += (int64_t)q->ready[level].n;
    out->active = (int64_t)q->leased.n;
    out->scheduled = (int64_t)q->nsched;
    out->dead = (int64_t)q->dead.n;
    out->succeeded = q->succeeded;
    out->failed = q->failed;
    out->cancelled = q->cancelled;
  }
  pthread_mutex_unlock(&br->mu);
  return 0;
}

/* The end of a call that returns messages v[0..k): on success hands them to
 * the caller (*out NULL when none), on failure frees them; returns rc. */
static int msgs_hand_over(int rc, gtask_msg **v, size_t k, gtask_msg ***out, size_t *n) {
  if (rc != 0 || k == 0) {
    for (size_t i = 0; i < k; i++)
      gtask_msg_free(v[i]);
    gtask__free(v);
    v = NULL;
    k = 0;
  }
  if (rc == 0) {
    *out = v;
    *n = k;
  }
  return rc;
}

/* dead_list and failed_list: the dead set, or the failed entries not past
 * their time (due_ms set to it). */
static int list_of(mem_broker *br, bool failed, const char *queue, const char *id,
                   gtask_msg ***out, size_t *n) {
  if (out != NULL)
    *out = NULL;
  if (n != NULL)
    *n = 0;
  if (br == NULL || queue == NULL || out == NULL || n == NULL)
    return GTASK_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&br->mu);
  const mem_queue *q = queue_find(br, queue);
  const mem_list *l = q ? (failed ? &q->kept : &q->dead) : NULL;
  size_t count = l ? l->n : 0; /* at most; exactly when id is NULL */
  gtask_msg **v = count ? gtask__calloc(count, sizeof(*v)) : NULL;
  if (count > 0 && v == NULL)
    rc = GTASK_ENOMEM;
  size_t k = 0;
  int64_t now = gtask__now_ms();
  for (const mem_node *x = count ? l->head : NULL; x && rc == 0; x = x->next) {
    if ((id != NULL && strcmp(x->id, id) != 0) || (failed && x->due_ms < now))
      continue;
    if ((v[k] = gtask_msg_new(x->id, q->name, x->body, x->len)) == NULL) {
      rc = GTASK_ENOMEM;
    } else {
      if (failed)
        v[k]->due_ms = x->due_ms;
      v[k]->priority = x->prio;
      k++;
    }
  }
  pthread_mutex_unlock(&br->mu);
  return msgs_hand_over(rc, v, k, out, n);
}

static int mb_dead_list(void *impl, const char *queue, const char *id, gtask_msg ***out,
                        size_t *n) {
  return list_of(impl, false, queue, id, out, n);
}

static int mb_failed_list(void *impl, const char *queue, const char *id, gtask_msg ***out,
                          size_t *n) {
  return list_of(impl, true, queue, id, out, n);
}

/* The dead (or failed) entry of m's task if it still holds exactly m's body
 * (the compare-and-swap of dead_requeue, as the Redis script); else NULL. */
static mem_node *entry_match(mem_broker *br, bool failed, const gtask_msg *m) {
  mem_queue *q = queue_find(br, m->queue);
  mem_node *x = q ? (failed ? q->kept.head : q->dead.head) : NULL;
  while (x && strcmp(x->id, m->id) != 0)
    x = x->next;
  if (x == NULL || x->len != m->len || (m->len > 0 && memcmp(x->body, m->body, m->len) != 0))
    return NULL;
  return x;
}

/* dead_requeue and failed_requeue. */
static int requeue_from(mem_broker *br, bool failed, gtask_revive *rs, size_t n, void *state) {
  if (br == NULL || (n > 0 && rs == NULL))
    return GTASK_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (rs[i].msg == NULL || rs[i].msg->queue == NULL || (rs[i].next == NULL && rs[i].next_len > 0))
      return GTASK_EINVAL;
    rs[i].moved = false;
  }
  if (n == 0)
    return 0;
  /* Allocate first, then move: a batch is applied whole or not at all. */
  char **bodies = gtask__calloc(n, sizeof(*bodies));
  if (bodies == NULL)
    return GTASK_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if ((bodies[i] = bytes_dup(rs[i].next ? rs[i].next : "", rs[i].next_len)) == NULL) {
      for (size_t k = 0; k < i; k++)
        gtask__free(bodies[k]);
      gtask__free(bodies);
      return GTASK_ENOMEM;
    }
  }
  /* Colocated: the messages to reset, found under the mutex. */
  gtask_msg **resets = state ? gtask__calloc(n, sizeof(*resets)) : NULL;
  if (state != NULL && resets == NULL) {
    for (size_t i = 0; i < n; i++)
      gtask__free(bodies[i]);
    gtask__free(bodies);
    return GTASK_ENOMEM;
  }
  int rc = 0;
  bool woke = false;
  pthread_mutex_lock(&br->mu);
  if (state != NULL) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (entry_match(br, failed, rs[i].msg) != NULL)
        resets[k++] = (gtask_msg *)rs[i].msg; /* reset() reads only queue and id */
    rc = gtask__memory_backend_ops.reset(state, resets, k);
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    mem_node *x = entry_match(br, failed, rs[i].msg);
    if (x == NULL)
      continue;
    mem_queue *q = x->q;
    list_remove(failed ? &q->kept : &q->dead, x);
    x->due_ms = 0;
    body_swap(x, &bodies[i], rs[i].next_len);
    list_append(&q->ready[x->prio], x);
    rs[i].moved = true;
    woke = true;
  }
  if (woke)
    pthread_cond_broadcast(&br->cv);
  pthread_mutex_unlock(&br->mu);
  for (size_t i = 0; i < n; i++)
    gtask__free(bodies[i]);
  gtask__free(bodies);
  gtask__free(resets);
  return rc;
}

static int mb_dead_requeue(void *impl, gtask_revive *rs, size_t n, void *state) {
  return requeue_from(impl, false, rs, n, state);
}

static int mb_failed_requeue(void *impl, gtask_revive *rs, size_t n, void *state) {
  return requeue_from(impl, true, rs, n, state);
}

static int mb_dead_purge(void *impl, const char *queue, size_t *removed) {
  mem_broker *br = impl;
  if (removed != NULL)
    *removed = 0;
  if (br == NULL || queue == NULL || removed == NULL)
    return GTASK_EINVAL;
  pthread_mutex_lock(&br->mu);
  mem_queue *q = queue_find(br, queue);
  if (q) {
    *removed = q->dead.n;
    list_free(&q->dead);
  }
  pthread_mutex_unlock(&br->mu);
  return 0;
}

/* Cancel (issue 18): the final record through the backend's store() (which
 * refuses a final task: then nothing changes), then the message out of the
 * ready list or the heap; a leased one stays with its holder, whose finish
 * finds the task final. */
static int mb_cancel(void *impl, const char *queue, const char *id, const char *result,
                     size_t len, bool *running, void *state) {
  mem_broker *br = impl;
  *running = false;
  if (br == NULL || state == NULL || queue == NULL || id == NULL)
    return GTASK_EINVAL;
  gtask_msg *tmp = gtask_msg_new(id, queue, NULL, 0);
  if (tmp == NULL)
    return GTASK_ENOMEM;
  pthread_mutex_lock(&br->mu);
  /* The queue is made first (the one step that can fail here), so that the
   * cancel is counted with the record it writes. */
  mem_queue *q = queue_get(br, queue);
  gtask_status st;
  int rc = q ? gtask__memory_backend_ops.get(state, queue, id, &st, NULL, NULL, NULL)
             : GTASK_ENOMEM;
  gtask_fin f = {.msg = tmp, .kind = GTASK_FIN_DONE, .status = GTASK_CANCELLED,
                 .result = result, .result_len = len};
  if (rc == 0)
    rc = gtask__memory_backend_ops.store(state, &f, 1);
  if (rc == 0 && f.fenced) {
    gtask__set_error("task %s is final already", id);
    rc = GTASK_ESTATE;
  }
  if (rc == 0) {
    q->cancelled++;
    bool found = false;
    for (int level = 0; level <= GTASK_PRIORITY_MAX && !found; level++)
      for (mem_node *x = q->ready[level].head; x != NULL; x = x->next)
        if (strcmp(x->id, id) == 0) {
          list_remove(&q->ready[level], x);
          node_free(x);
          found = true;
          break;
        }
    for (size_t i = 0; i < q->nsched && !found; i++)
      if (strcmp(q->sched[i]->id, id) == 0) {
        mem_node *x = q->sched[i];
        sched_remove_at(q, i);
        node_free(x);
        found = true;
      }
    for (mem_node *x = q->leased.head; x != NULL && !found; x = x->next)
      if (strcmp(x->id, id) == 0)
        *running = found = true;
  }
  pthread_mutex_unlock(&br->mu);
  gtask_msg_free(tmp);
  return rc;
}

static int mb_pause(void *impl, const char *queue, bool paused) {
  mem_broker *br = impl;
  if (br == NULL || queue == NULL)
    return GTASK_EINVAL;
  pthread_mutex_lock(&br->mu);
  mem_queue *q = queue_get(br, queue);
  if (q)
    q->paused = paused;
  pthread_mutex_unlock(&br->mu);
  return q ? 0 : GTASK_ENOMEM;
}

static int mb_paused(void *impl, const char *const *queues, size_t nq, bool *out) {
  mem_broker *br = impl;
  if (br == NULL || (nq > 0 && (queues == NULL || out == NULL)))
    return GTASK_EINVAL;
  pthread_mutex_lock(&br->mu);
  for (size_t k = 0; k < nq; k++) {
    const mem_queue *q = queue_find(br, queues[k]);
    out[k] = q != NULL && q->paused;
  }
  pthread_mutex_unlock(&br->mu);
  return 0;
}

/* One process has one protocol version: nothing to refuse, only to record. */
static int mb_announce(void *impl, const char *consumer, const char *const *queues, size_t nq,
                       int64_t until_ms) {
  mem_broker *br = impl;
  (void)queues, (void)nq;
  pthread_mutex_lock(&br->mu);
  mem_consumer *c = consumer_get(br, consumer);
  if (c) c->live_until = until_ms;
  pthread_mutex_unlock(&br->mu);
  return c ? 0 : GTASK_ENOMEM;
}

/* Colocated with a memory backend (see memory.h); never with another kind. */
static void *mb_colocated(void *impl, const gtask_backend *backend) {
  (void)impl;
  return gtask_backend_impl(backend, &gtask__memory_backend_ops);
}

/* Called when the last handle reference goes: no call can be in progress. */
static void mb_destroy(void *impl) {
  mem_broker *br = impl;
  if (br == NULL)
    return;
  for (mem_queue *q = br->queues, *next; q; q = next) {
    next = q->next;
    for (int level = 0; level <= GTASK_PRIORITY_MAX; level++)
      list_free(&q->ready[level]);
    list_free(&q->leased);
    list_free(&q->dead);
    list_free(&q->kept);
    for (size_t i = 0; i < q->nsched; i++)
      node_free(q->sched[i]);
    gtask__free(q->sched);
    gtask__free(q->name);
    gtask__free(q);
  }
  for (mem_consumer *c = br->consumers, *next; c; c = next) {
    next = c->next;
    gtask__free(c->record);
    gtask__free(c->name);
    gtask__free(c);
  }
  gtask__free(br->table);
  pthread_cond_destroy(&br->cv);
  pthread_mutex_destroy(&br->mu);
  gtask__free(br);
}

static int name_cmp(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

static int mb_queues(void *impl, char ***names, size_t *n) {
  mem_broker *br = impl;
  *names = NULL;
  *n = 0;
  pthread_mutex_lock(&br->mu);
  size_t count = 0;
  for (const mem_queue *q = br->queues; q; q = q->next) count++;
  char **v = count ? malloc(count * sizeof(*v)) : NULL;
  size_t k = 0;
  for (const mem_queue *q = br->queues; v && q; q = q->next) {
    if ((v[k] = strdup(q->name)) == NULL) break;
    k++;
  }
  pthread_mutex_unlock(&br->mu);
  if (count && k < count) {
    for (size_t j = 0; j < k; j++) free(v[j]);
    free(v);
    return GTASK_ENOMEM;
  }
  if (count > 1) qsort(v, count, sizeof(*v), name_cmp);
  *names = v;
  *n = count;
  return 0;
}

/* ---------------------------------------------------------------- seeing inside (issue 20) */

static int mb_worker_put(void *impl, const char *consumer, const char *record, size_t len,
                         int64_t until_ms) {
  mem_broker *br = impl;
  if (br == NULL || consumer == NULL || (until_ms != 0 && record == NULL))
    return GTASK_EINVAL;
  char *copy = until_ms != 0 ? bytes_dup(record, len) : NULL;
  if (until_ms != 0 && copy == NULL)
    return GTASK_ENOMEM;
  pthread_mutex_lock(&br->mu);
  mem_consumer *c = consumer_get(br, consumer);
  if (c != NULL) {
    gtask__free(c->record);
    c->record = copy; /* NULL (removed) when until_ms is 0 */
    c->record_until = until_ms;
    copy = NULL;
  }
  pthread_mutex_unlock(&br->mu);
  gtask__free(copy);
  return c != NULL ? 0 : GTASK_ENOMEM;
}

static int mb_worker_list(void *impl, char ***out, size_t *n) {
  mem_broker *br = impl;
  if (out != NULL)
    *out = NULL;
  if (n != NULL)
    *n = 0;
  if (br == NULL || out == NULL || n == NULL)
    return GTASK_EINVAL;
  int64_t now = gtask__now_ms();
  int rc = 0;
  pthread_mutex_lock(&br->mu);
  size_t count = 0;
  for (const mem_consumer *c = br->consumers; c; c = c->next)
    if (c->record != NULL && c->record_until > now)
      count++;
  char **v = count ? gtask__calloc(count, sizeof(*v)) : NULL;
  size_t k = 0;
  if (count > 0 && v == NULL)
    rc = GTASK_ENOMEM;
  for (const mem_consumer *c = br->consumers; c && rc == 0; c = c->next) {
    if (c->record == NULL || c->record_until <= now)
      continue;
    if ((v[k] = gtask__strdup(c->record)) == NULL)
      rc = GTASK_ENOMEM;
    else
      k++;
  }
  pthread_mutex_unlock(&br->mu);
  if (rc != 0) {
    for (size_t j = 0; j < k; j++)
      gtask__free(v[j]);
    gtask__free(v);
    return rc;
  }
  *out = v;
  *n = k;
  return 0;
}

/* Parses a decimal uint64 that is all of s[0..len) (no sign, no spaces);
 * false if it is not one. */
static bool u64_parse(const char *s, size_t len, uint64_t *v) {
  *v = 0;
  if (len == 0 || len > 20)
    return false;
  for (size_t k = 0; k < len; k++) {
    if (s[k] < '0' || s[k] > '9' || *v > (UINT64_MAX - 9) / 10)
      return false;
    *v = *v * 10 + (uint64_t)(s[k] - '0');
  }
  return true;
}

/* A list() cursor: the pos of the last node given; for the scheduled list
 * "DUE:SEQ", for the pending list "LEVEL:POS" of the last node given (the
 * pending list runs through the levels, highest first, as on Redis). */
typedef struct mem_cursor {
  uint64_t pos, seq, level;
  int64_t due_ms;
} mem_cursor;

static int cursor_parse(int state, const char *s, mem_cursor *cur) {
  memset(cur, 0, sizeof(*cur));
  if (s == NULL)
    return 0;
  bool ok;
  if (state == GTASK_LIST_SCHEDULED || state == GTASK_LIST_PENDING) {
    const char *colon = strchr(s, ':');
    uint64_t first = 0, second = 0;
    ok = colon != NULL && u64_parse(s, (size_t)(colon - s), &first) && first <= INT64_MAX &&
         u64_parse(colon + 1, strlen(colon + 1), &second);
    if (state == GTASK_LIST_PENDING) {
      ok = ok && first <= GTASK_PRIORITY_MAX;
      cur->level = first;
      cur->pos = second;
    } else {
      cur->due_ms = (int64_t)first;
      cur->seq = second;
    }
  } else {
    ok = u64_parse(s, strlen(s), &cur->pos);
  }
  if (!ok) {
    gtask__set_error("bad cursor \"%s\" for the %s list", s,
                     gtask_list_state_name((gtask_list_state)state));
    return GTASK_EINVAL;
  }
  return 0;
}

/* A copy of x as list() and find() give it: due_ms for a scheduled or kept
 * node, lease the holder's name for a leased one.  NULL on out-of-memory. */
static gtask_msg *node_copy(const mem_node *x, int state) {
  gtask_msg *m = gtask_msg_new(x->id, x->q->name, x->body, x->len);
  if (m == NULL)
    return NULL;
  m->priority = x->prio;
  if (state == GTASK_LIST_SCHEDULED || state == GTASK_LIST_FAILED)
    m->due_ms = x->due_ms;
  if (state == GTASK_LIST_ACTIVE && gtask_msg_set_lease(m, x->holder->name) != 0) {
    gtask_msg_free(m);
    return NULL;
  }
  return m;
}

static int sched_cmp(const void *a, const void *b) {
  const mem_node *x = *(mem_node *const *)a, *y = *(mem_node *const *)b;
  return sched_before(x, y) ? -1 : sched_before(y, x) ? 1 : 0;
}

/* The nodes of the scheduled list after cur, in due order: a new array of
 * *n pointers (NULL when none), or GTASK_ENOMEM.  Under the mutex. */
static int sched_after(const mem_queue *q, const mem_cursor *cur, mem_node ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (q->nsched == 0)
    return 0;
  mem_node **v = gtask__calloc(q->nsched, sizeof(*v));
  if (v == NULL)
    return GTASK_ENOMEM;
  mem_node mark = {.due_ms = cur->due_ms, .seq = cur->seq};
  size_t k = 0;
  for (size_t i = 0; i < q->nsched; i++)
    if (cur->due_ms == 0 && cur->seq == 0 ? true : sched_before(&mark, q->sched[i]))
      v[k++] = q->sched[i];
  qsort(v, k, sizeof(*v), sched_cmp);
  *out = v;
  *n = k;
  return 0;
}

/* The nodes of the pending list after cur: each level's ready list, the
 * highest level first, in order.  As sched_after. */
static int pending_after(const mem_queue *q, const mem_cursor *cur, bool from_start,
                         mem_node ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  size_t total = 0;
  for (int level = 0; level <= GTASK_PRIORITY_MAX; level++)
    total += q->ready[level].n;
  if (total == 0)
    return 0;
  mem_node **v = gtask__calloc(total, sizeof(*v));
  if (v == NULL)
    return GTASK_ENOMEM;
  size_t k = 0;
  for (int level = GTASK_PRIORITY_MAX; level >= 0; level--) {
    if (!from_start && (uint64_t)level > cur->level)
      continue;
    for (mem_node *x = q->ready[level].head; x; x = x->next)
      if (from_start || (uint64_t)level < cur->level || x->pos > cur->pos)
        v[k++] = x;
  }
  *out = v;
  *n = k;
  return 0;
}

/* The list that holds state's nodes in q; NULL for the scheduled heap and
 * the pending levels. */
static const mem_list *state_list(const mem_queue *q, int state) {
  switch (state) {
  case GTASK_LIST_ACTIVE: return &q->leased;
  case GTASK_LIST_DEAD: return &q->dead;
  case GTASK_LIST_FAILED: return &q->kept;
  default: return NULL;
  }
}

static int mb_list(void *impl, const char *queue, int state, const char *cursor, size_t limit,
                   gtask_msg ***out, size_t *n, char **next) {
  mem_broker *br = impl;
  if (out != NULL)
    *out = NULL;
  if (n != NULL)
    *n = 0;
  if (next != NULL)
    *next = NULL;
  if (br == NULL || queue == NULL || out == NULL || n == NULL || next == NULL || limit == 0)
    return GTASK_EINVAL;
  if (state < GTASK_LIST_PENDING || state > GTASK_LIST_FAILED) {
    gtask__set_error("no such state %d", state);
    return GTASK_EINVAL;
  }
  if (cursor != NULL && cursor[0] == '\0')
    cursor = NULL;
  mem_cursor cur;
  int rc = cursor_parse(state, cursor, &cur);
  if (rc != 0)
    return rc;
  int64_t now = gtask__now_ms();
  gtask_msg **v = NULL;
  size_t k = 0;
  bool more = false;
  char buf[48] = "";
  pthread_mutex_lock(&br->mu);
  const mem_queue *q = queue_find(br, queue);
  mem_node **sched = NULL; /* scheduled or pending: the nodes after cur, in order */
  size_t nsched = 0;
  if (q != NULL && state == GTASK_LIST_SCHEDULED)
    rc = sched_after(q, &cur, &sched, &nsched);
  else if (q != NULL && state == GTASK_LIST_PENDING)
    rc = pending_after(q, &cur, cursor == NULL, &sched, &nsched);
  const mem_list *l = q != NULL ? state_list(q, state) : NULL;
  size_t most = l != NULL ? l->n : nsched;
  if (rc == 0 && most > 0 && (v = gtask__calloc(most < limit ? most : limit, sizeof(*v))) == NULL)
    rc = GTASK_ENOMEM;
  const mem_node *x = l != NULL ? l->head : NULL;
  for (size_t i = 0; rc == 0 && most > 0; i++) {
    if (l != NULL) {
      if (i > 0)
        x = x->next;
    } else {
      x = i < nsched ? sched[i] : NULL;
    }
    if (x == NULL)
      break;
    if ((l != NULL && x->pos <= cur.pos) || (state == GTASK_LIST_FAILED && x->due_ms < now))
      continue; /* before the cursor; or a failed entry past its time (failed_list) */
    if (k == limit) {
      more = true;
      break;
    }
    if ((v[k] = node_copy(x, state)) == NULL) {
      rc = GTASK_ENOMEM;
      break;
    }
    k++;
    if (l != NULL)
      gtask__fmt(buf, sizeof(buf), "%" PRIu64, x->pos);
    else if (state == GTASK_LIST_PENDING)
      gtask__fmt(buf, sizeof(buf), "%d:%" PRIu64, x->prio, x->pos);
    else
      gtask__fmt(buf, sizeof(buf), "%" PRId64 ":%" PRIu64, x->due_ms, x->seq);
  }
  pthread_mutex_unlock(&br->mu);
  gtask__free(sched);
  if (rc == 0 && more && (*next = gtask__strdup(buf)) == NULL)
    rc = GTASK_ENOMEM;
  return msgs_hand_over(rc, v, k, out, n);
}

/* The node of task id in l, or NULL. */
static const mem_node *list_find(const mem_list *l, const char *id) {
  for (const mem_node *x = l->head; x; x = x->next)
    if (strcmp(x->id, id) == 0)
      return x;
  return NULL;
}

static int mb_find(void *impl, const char *queue, const char *id, int *state, gtask_msg **out) {
  mem_broker *br = impl;
  if (state != NULL)
    *state = 0;
  if (out != NULL)
    *out = NULL;
  if (br == NULL || queue == NULL || id == NULL || state == NULL || out == NULL)
    return GTASK_EINVAL;
  int64_t now = gtask__now_ms();
  int rc = 0;
  pthread_mutex_lock(&br->mu);
  const mem_queue *q = queue_find(br, queue);
  const mem_node *x = NULL;
  int where = 0;
  /* A node is in one place at a time; the dead set first, as on Redis. */
  static const int places[] = {GTASK_LIST_DEAD, GTASK_LIST_SCHEDULED, GTASK_LIST_FAILED,
                               GTASK_LIST_PENDING, GTASK_LIST_ACTIVE};
  for (size_t p = 0; q != NULL && x == NULL && p < sizeof(places) / sizeof(places[0]); p++) {
    where = places[p];
    if (where == GTASK_LIST_SCHEDULED) {
      for (size_t i = 0; i < q->nsched && x == NULL; i++)
        if (strcmp(q->sched[i]->id, id) == 0)
          x = q->sched[i];
    } else if (where == GTASK_LIST_PENDING) {
      for (int level = GTASK_PRIORITY_MAX; level >= 0 && x == NULL; level--)
        x = list_find(&q->ready[level], id);
    } else {
      x = list_find(state_list(q, where), id);
      if (x != NULL && where == GTASK_LIST_FAILED && x->due_ms < now)
        x = NULL; /* past its time: failed_list no longer shows it */
    }
  }
  if (x != NULL && (*out = node_copy(x, where)) == NULL)
    rc = GTASK_ENOMEM;
  pthread_mutex_unlock(&br->mu);
  if (rc != 0)
    return rc;
  if (x == NULL) {
    gtask__set_error("queue %s holds no message of task %s", queue, id);
    return GTASK_ENOTFOUND;
  }
  *state = where;
  return 0;
}

static const gtask_broker_ops memory_broker_ops = {
    .abi = GTASK_EXTEND_ABI,
    .name = "memory",
    .push = mb_push,
    .push_unique = mb_push_unique,
    .failed_list = mb_failed_list,
    .failed_requeue = mb_failed_requeue,
    .pause = mb_pause,
    .paused = mb_paused,
    .cancel = mb_cancel,
    .lease = mb_lease,
    .interrupt = mb_interrupt,
    .extend = mb_extend,
    .finish = mb_finish,
    .reclaim = mb_reclaim,
    .promote = mb_promote,
    .stats = mb_stats,
    .dead_list = mb_dead_list,
    .dead_requeue = mb_dead_requeue,
    .dead_purge = mb_dead_purge,
    .announce = mb_announce,
    .colocated = mb_colocated,
    .destroy = mb_destroy,
    .queues = mb_queues,
    .worker_put = mb_worker_put,
    .worker_list = mb_worker_list,
    .list = mb_list,
    .find = mb_find,
};

GTASK_EXTERN gtask_broker *gtask_broker_memory_new(void) {
  mem_broker *br = gtask__calloc(1, sizeof(*br));
  if (br == NULL)
    return NULL;
  br->nbuckets = 64;
  if ((br->table = gtask__calloc(br->nbuckets, sizeof(*br->table))) == NULL) {
    gtask__free(br);
    return NULL;
  }
  pthread_condattr_t ca;
  bool ok = pthread_condattr_init(&ca) == 0;
  if (ok) {
    ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
         pthread_cond_init(&br->cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
  }
  if (!ok) {
    gtask__free(br->table);
    gtask__free(br);
    return NULL;
  }
  if (pthread_mutex_init(&br->mu, NULL) != 0) {
    pthread_cond_destroy(&br->cv);
    gtask__free(br->table);
    gtask__free(br);
    return NULL;
  }
  gtask_broker *b; /* messages live until leased and finished: no msg_ttl */
  if (gtask_broker_new(&b, &memory_broker_ops, br) != 0) {
    mb_destroy(br);
    return NULL;
  }
  return b;
}
