/* redis/limits.c -- rate and concurrency limits across all workers (issue 19).
 *
 * A limit belongs to a queue: on one task name in it, or on the whole queue.
 * Its keys carry the queue's hash tag, so each script touches one slot:
 *   P:{q}:limits     hash: "rate:<t>" -> "N PERIOD_MS", "conc:<t>" -> "K"
 *   P:{q}:rl:<t>     zset: a rate's admissions (member entry id, score time)
 *   P:{q}:cc:<t>     zset: concurrency slots (member entry id, score expiry)
 *   P:{q}:lw:<t>     list: tasks waiting for a slot (id .. message)
 * where <t> is "t:<task>" or "q".
 *
 * The worker side lives in the Redis broker, around its lease, finish and
 * heartbeat, so that the server never sees a task that may not run now:
 *  - housekeeping (rb_promote, every lease/3 per queue) re-reads the queue's
 *    limits into a cache, and sweeps expired slots (limit_slots.lua);
 *  - after a lease of a queue with limits, limit_admit.lua admits each task
 *    or moves it to wait: over a rate to the queue's schedule, due when the
 *    window has room (the ordinary promote brings it back; this broker also
 *    promotes at the earliest due it gave, and shortens its blocking read to
 *    wake then); without a free slot to the limit's waiting list, from which
 *    a released slot (limit_slots.lua release) or a sweep moves it back;
 *  - a finish releases the slots its deliveries held, a heartbeat extends
 *    them.  A worker killed holding slots stops heartbeating them: they
 *    expire after a lease time and the next sweep frees them.
 * A queue without limits costs one HGETALL per housekeeping round and
 * nothing per task: the cache says there is nothing to do.
 *
 * Thread safety: the cache and the holder table are guarded by mu, which is
 * never held across a Redis call. */
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rate window is the period plus a margin (a tenth, at most 250 ms, at
 * least 1 ms): the time from admission to the handler's start varies, and
 * must not put N + 1 starts into one period.  limit_admit.lua computes the
 * same. */
static int64_t window_of(int64_t period_ms) {
  int64_t m = period_ms / 10;
  if (m > 250) m = 250;
  if (m < 1) m = 1;
  return period_ms + m;
}

typedef struct limit_target {
  char field[GTASK__KEY_MAX]; /* "q" or "t:<task>" */
  int64_t rate, period_ms, conc; /* 0: none */
} limit_target;
int gtask__limits_parse(const redisReply *rep, const char *queue, limit_target **out, size_t *n);

typedef struct queue_limits {
  char *queue;
  limit_target *t;
  size_t nt;
  int64_t earliest_due; /* the earliest due this worker gave a deferred task (0: none) */
  struct queue_limits *next;
} queue_limits;

/* A delivery holding slots, to release at its finish. */
typedef struct holder {
  char *lease; /* entry id */
  char *queue;
  char fields[2][GTASK__KEY_MAX]; /* its targets with a concurrency ("" none) */
  int64_t conc[2];
  struct holder *next;
} holder;

struct gtask__limits {
  atomic_bool active;    /* some queue has limits: the hooks have work (read without mu) */
  atomic_size_t nholders; /* entries in holders (read without mu) */
  pthread_mutex_t mu;
  queue_limits *queues; /* queues whose limits were read (with or without any) */
  holder *holders;
  _Atomic int64_t lease_ms; /* slot lease: the worker's lease (heartbeats extend); set
                               by every reclaim, from whichever thread (read without mu) */
};

gtask__limits *gtask__limits_new(void) {
  gtask__limits *l = gtask__calloc(1, sizeof(*l));
  if (!l) return NULL;
  pthread_mutex_init(&l->mu, NULL);
  atomic_init(&l->lease_ms, 10000);
  return l;
}

static void queue_free(queue_limits *q) {
  gtask__free(q->queue);
  gtask__free(q->t);
  gtask__free(q);
}

static void holder_free(holder *h) {
  gtask__free(h->lease);
  gtask__free(h->queue);
  gtask__free(h);
}

void gtask__limits_free(gtask__limits *l) {
  if (!l) return;
  for (queue_limits *q = l->queues, *n; q; q = n) n = q->next, queue_free(q);
  for (holder *h = l->holders, *n; h; h = n) n = h->next, holder_free(h);
  pthread_mutex_destroy(&l->mu);
  gtask__free(l);
}

void gtask__limits_set_lease(gtask__limits *l, int64_t lease_ms) {
  if (l && lease_ms > 0) atomic_store_explicit(&l->lease_ms, lease_ms, memory_order_relaxed);
}

/* The target of target field f ("q" or "t:<task>") in t[0..*n), added if new. */
static limit_target *target_of(limit_target *t, size_t *n, const char *f, size_t len) {
  for (size_t k = 0; k < *n; k++)
    if (strlen(t[k].field) == len && memcmp(t[k].field, f, len) == 0) return &t[k];
  limit_target *x = &t[(*n)++];
  memset(x, 0, sizeof(*x));
  memcpy(x->field, f, len);
  x->field[len] = '\0';
  return x;
}

/* Parses the pairs of HGETALL P:{q}:limits -- "rate:<target>" -> "N PERIOD_MS",
 * "conc:<target>" -> "K" -- into targets (a new array in *out).  A malformed
 * pair is skipped and logged: a limit set by hand wrongly must not stop the
 * queue. */
int gtask__limits_parse(const redisReply *rep, const char *queue, limit_target **out, size_t *n) {
  *out = NULL;
  *n = 0;
  size_t cnt = rep->elements / 2;
  limit_target *t = cnt ? gtask__calloc(cnt, sizeof(*t)) : NULL;
  if (cnt && !t) return GTASK_ENOMEM;
  for (size_t k = 0; k < cnt; k++) {
    const redisReply *f = rep->element[2 * k], *v = rep->element[2 * k + 1];
    long long a = 0, b = 0;
    char extra;
    bool ok = f->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
              f->len > 5 && f->len < GTASK__KEY_MAX - 64;
    if (ok && strncmp(f->str, "rate:", 5) == 0) {
      ok = sscanf(v->str, "%lld %lld %c", &a, &b, &extra) == 2 && a > 0 && b > 0;
      if (ok) {
        limit_target *x = target_of(t, n, f->str + 5, f->len - 5);
        x->rate = a;
        x->period_ms = b;
      }
    } else if (ok && strncmp(f->str, "conc:", 5) == 0) {
      ok = sscanf(v->str, "%lld %c", &a, &extra) == 1 && a > 0;
      if (ok) target_of(t, n, f->str + 5, f->len - 5)->conc = a;
    } else {
      ok = false;
    }
    if (!ok) gtask__log(GTASK_LOG_WARN, "limits of queue %s: ignoring a malformed entry", queue);
  }
  *out = t;
  return 0;
}

/* Reads P:{q}:limits into targets. */
static int read_limits(gtask__redis *r, gtask__conn *c, const char *queue, limit_target **out,
                       size_t *n) {
  *out = NULL;
  *n = 0;
  char key[GTASK__KEY_MAX];
  gtask__redis_key(r, key, sizeof(key), queue, "limits", NULL);
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, "HGETALL");
  gtask__argv_adds(&a, key);
  redisReply *rep;
  int rc = gtask__redis_cmd(r, c, &a, &rep);
  gtask__argv_free(&a);
  if (rc) return rc;
  if (rep->type != REDIS_REPLY_ARRAY) rc = gtask__redis_proto_error(r, "HGETALL limits", rep, "an array");
  else rc = gtask__limits_parse(rep, queue, out, n);
  freeReplyObject(rep);
  return rc;
}

static queue_limits *find_queue(gtask__limits *l, const char *queue) {
  for (queue_limits *q = l->queues; q; q = q->next)
    if (strcmp(q->queue, queue) == 0) return q;
  return NULL;
}

/* Builds the KEYS of a target: rl, cc, lw (or cc, lw) into a. */
static void add_target_keys(gtask__redis *r, gtask__argv *a, char (*buf)[GTASK__KEY_MAX],
                            const char *queue, const char *field, bool with_rl) {
  if (with_rl) gtask__argv_add(a, buf[0], gtask__redis_key(r, buf[0], GTASK__KEY_MAX, queue, "rl", field));
  gtask__argv_add(a, buf[1], gtask__redis_key(r, buf[1], GTASK__KEY_MAX, queue, "cc", field));
  gtask__argv_add(a, buf[2], gtask__redis_key(r, buf[2], GTASK__KEY_MAX, queue, "lw", field));
}

/* limit_slots.lua for the given targets; op release/extend (with holder) or sweep. */
static int slots_call(gtask__redis *r, gtask__conn *c, const char *op, const char *queue,
                      const char (*fields)[GTASK__KEY_MAX], const int64_t *conc, size_t nt,
                      const char *holder_id, int64_t lease_ms) {
  if (nt == 0) return 0;
  char (*keys)[GTASK__KEY_MAX] = gtask__calloc(3 * nt + 3, GTASK__KEY_MAX);
  if (!keys) return GTASK_ENOMEM;
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_add(&a, keys[0], gtask__redis_key(r, keys[0], GTASK__KEY_MAX, queue, "stream", NULL));
  for (size_t k = 0; k < nt; k++) add_target_keys(r, &a, keys + 1 + 3 * k, queue, fields[k], false);
  /* The level streams, where a waiting task of a level goes back to. */
  char *k1 = keys[3 * nt + 1], *k2 = keys[3 * nt + 2];
  gtask__argv_add(&a, k1, gtask__redis_key(r, k1, GTASK__KEY_MAX, queue, "stream", "1"));
  gtask__argv_add(&a, k2, gtask__redis_key(r, k2, GTASK__KEY_MAX, queue, "stream", "2"));
  gtask__argv_adds(&a, op);
  gtask__argv_addi(&a, gtask__now_ms());
  gtask__argv_addi(&a, lease_ms);
  for (size_t k = 0; k < nt; k++) {
    gtask__argv_addi(&a, conc[k]);
    if (holder_id) gtask__argv_adds(&a, holder_id);
  }
  redisReply *rep = NULL;
  int rc = a.oom ? GTASK_ENOMEM : gtask__redis_eval(r, c, GTASK__LUA_LIMIT_SLOTS, 3 + 2 * nt, &a, &rep);
  if (rep) freeReplyObject(rep);
  gtask__argv_free(&a);
  gtask__free(keys);
  return rc;
}

int gtask__limits_housekeep(gtask__limits *l, gtask__redis *r, const char *queue) {
  if (!l) return 0;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(r, queue, &c);
  if (rc) return rc;
  limit_target *t;
  size_t nt;
  rc = read_limits(r, c, queue, &t, &nt);
  if (rc == 0) {
    /* Sweep the concurrency limits: expired slots, waiting tasks. */
    char (*fields)[GTASK__KEY_MAX] = nt ? gtask__calloc(nt, GTASK__KEY_MAX) : NULL;
    int64_t *conc = nt ? gtask__calloc(nt, sizeof(int64_t)) : NULL;
    size_t nc = 0;
    if (nt && (!fields || !conc)) rc = GTASK_ENOMEM;
    for (size_t k = 0; k < nt && rc == 0; k++)
      if (t[k].conc > 0) {
        memcpy(fields[nc], t[k].field, GTASK__KEY_MAX);
        conc[nc++] = t[k].conc;
      }
    if (rc == 0) rc = slots_call(r, c, "sweep", queue, (const char (*)[GTASK__KEY_MAX])fields, conc, nc, NULL,
                                        atomic_load_explicit(&l->lease_ms, memory_order_relaxed));
    gtask__free(fields);
    gtask__free(conc);
  }
  gtask__redis_put(r, c);
  if (rc) {
    gtask__free(t);
    return rc;
  }
  pthread_mutex_lock(&l->mu);
  queue_limits *q = find_queue(l, queue);
  if (!q && (q = gtask__calloc(1, sizeof(*q))) != NULL) {
    if ((q->queue = gtask__strdup(queue)) == NULL) {
      gtask__free(q);
      q = NULL;
    } else {
      q->next = l->queues;
      l->queues = q;
    }
  }
  if (q) {
    gtask__free(q->t);
    q->t = t;
    q->nt = nt;
    t = NULL;
  }
  bool active = false;
  for (queue_limits *x = l->queues; x; x = x->next) active |= x->nt > 0;
  atomic_store(&l->active, active);
  pthread_mutex_unlock(&l->mu);
  gtask__free(t);
  return q ? 0 : GTASK_ENOMEM;
}

int64_t gtask__limits_before_lease(gtask__limits *l, gtask__redis *r, const char *const *queues,
                                   size_t nq, int64_t wait_ms) {
  if (!l || !atomic_load(&l->active)) return wait_ms;
  int64_t now = gtask__now_ms();
  for (size_t i = 0; i < nq; i++) {
    pthread_mutex_lock(&l->mu);
    queue_limits *q = find_queue(l, queues[i]);
    int64_t due = q && q->nt ? q->earliest_due : 0;
    pthread_mutex_unlock(&l->mu);
    if (!due) continue;
    if (due <= now) {
      /* Bring the deferred tasks that are due back (promote.lua). */
      gtask__conn *c = NULL;
      if (gtask__redis_use(r, queues[i], &c) != 0) continue;
      char ks[GTASK__KEY_MAX], kz[GTASK__KEY_MAX], kp[GTASK__KEY_MAX], k1[GTASK__KEY_MAX],
          k2[GTASK__KEY_MAX];
      gtask__argv a;
      gtask__argv_init(&a);
      gtask__argv_add(&a, ks, gtask__redis_key(r, ks, sizeof(ks), queues[i], "stream", NULL));
      gtask__argv_add(&a, kz, gtask__redis_key(r, kz, sizeof(kz), queues[i], "sched", NULL));
      gtask__argv_add(&a, kp, gtask__redis_key(r, kp, sizeof(kp), queues[i], "prio", NULL));
      gtask__argv_add(&a, k1, gtask__redis_key(r, k1, sizeof(k1), queues[i], "stream", "1"));
      gtask__argv_add(&a, k2, gtask__redis_key(r, k2, sizeof(k2), queues[i], "stream", "2"));
      gtask__argv_addi(&a, now);
      gtask__argv_addi(&a, 1000);
      redisReply *rep;
      int64_t next = 0;
      if (gtask__redis_eval(r, c, GTASK__LUA_PROMOTE, 5, &a, &rep) == 0) {
        if (gtask__redis_int_array(r, "promote.lua", rep, 2) == 0) next = rep->element[1]->integer;
        freeReplyObject(rep);
      }
      gtask__argv_free(&a);
      gtask__redis_put(r, c);
      pthread_mutex_lock(&l->mu);
      if ((q = find_queue(l, queues[i])) != NULL) q->earliest_due = next;
      pthread_mutex_unlock(&l->mu);
      due = next;
      if (!due) continue;
    }
    int64_t left = due - now;
    if (left < 1) left = 1;
    if (wait_ms < 0 || left < wait_ms) wait_ms = left;
  }
  return wait_ms;
}

/* The task name of a message (its "n") into *name (NULL for a message that
 * does not decode: the worker fails it unrun); GTASK_ENOMEM. */
static int task_name_of(const gtask_msg *m, char **name) {
  gtask_task *t;
  char why[64];
  *name = NULL;
  int rc = gtask__task_decode_in(m->body, m->len, m->id, m->queue, &t, why, sizeof(why));
  if (rc) return rc == GTASK_ENOMEM ? rc : 0;
  *name = gtask__strdup(t->name);
  gtask__task_free(t);
  return *name ? 0 : GTASK_ENOMEM;
}

/* Admits the run msgs[i..j) of one queue; sets keep[k] for the admitted. */
static int admit_queue(gtask__limits *l, gtask__redis *r, gtask_msg **msgs, size_t i, size_t j,
                       bool *keep) {
  const char *queue = msgs[i]->queue;
  pthread_mutex_lock(&l->mu);
  queue_limits *q = find_queue(l, queue);
  size_t nt = q ? q->nt : 0;
  limit_target *t = nt ? gtask__calloc(nt, sizeof(*t)) : NULL;
  if (t) memcpy(t, q->t, nt * sizeof(*t));
  int64_t lease_ms = atomic_load_explicit(&l->lease_ms, memory_order_relaxed);
  pthread_mutex_unlock(&l->mu);
  if (nt == 0) {
    for (size_t k = i; k < j; k++) keep[k] = true;
    return 0;
  }
  if (!t) return GTASK_ENOMEM;
  int qt = 0; /* 1-based index of the whole-queue target */
  bool any_task = false;
  for (size_t k = 0; k < nt; k++) {
    if (strcmp(t[k].field, "q") == 0) qt = (int)k + 1;
    else any_task = true;
  }
  /* Which target each message falls under: the queue's, its task's. */
  int *ta = gtask__calloc(j - i, sizeof(int));
  int rc = ta ? 0 : GTASK_ENOMEM;
  for (size_t k = i; k < j && rc == 0 && any_task; k++) {
    char *name;
    rc = task_name_of(msgs[k], &name);
    for (size_t x = 0; name && x < nt; x++)
      if (strncmp(t[x].field, "t:", 2) == 0 && strcmp(t[x].field + 2, name) == 0) ta[k - i] = (int)x + 1;
    gtask__free(name);
  }
  bool limited = false;
  for (size_t k = i; k < j; k++) {
    keep[k] = rc == 0 && ta[k - i] == 0 && qt == 0; /* out of memory: none (reclaim) */
    limited |= !keep[k];
  }
  if (rc || !limited) {
    gtask__free(ta);
    gtask__free(t);
    return rc;
  }
  char (*keys)[GTASK__KEY_MAX] = gtask__calloc(3 + 3 * nt, GTASK__KEY_MAX);
  gtask__conn *c = NULL;
  rc = keys ? gtask__redis_use(r, queue, &c) : GTASK_ENOMEM;
  gtask__argv a;
  gtask__argv_init(&a);
  redisReply *rep = NULL;
  if (rc == 0) {
    int64_t now = gtask__now_ms();
    static const char *const level[] = {NULL, "1", "2"};
    int lv = msgs[i]->priority > 0 && msgs[i]->priority <= GTASK_PRIORITY_MAX ? msgs[i]->priority : 0;
    gtask__argv_add(&a, keys[0], gtask__redis_key(r, keys[0], GTASK__KEY_MAX, queue, "stream", level[lv]));
    gtask__argv_add(&a, keys[1], gtask__redis_key(r, keys[1], GTASK__KEY_MAX, queue, "sched", NULL));
    gtask__argv_add(&a, keys[2], gtask__redis_key(r, keys[2], GTASK__KEY_MAX, queue, "limits", NULL));
    for (size_t k = 0; k < nt; k++) add_target_keys(r, &a, keys + 3 + 3 * k, queue, t[k].field, true);
    gtask__argv_addi(&a, now);
    gtask__argv_adds(&a, GTASK__GROUP);
    gtask__argv_addi(&a, lease_ms);
    gtask__argv_addi(&a, (int64_t)nt);
    for (size_t k = 0; k < nt; k++) gtask__argv_adds(&a, t[k].field);
    for (size_t k = i; k < j; k++) {
      if (keep[k]) continue;
      gtask__argv_adds(&a, msgs[k]->lease ? msgs[k]->lease : "0-0");
      gtask__argv_adds(&a, msgs[k]->id);
      gtask__argv_addi(&a, ta[k - i]);
      gtask__argv_addi(&a, qt);
      gtask__argv_add(&a, msgs[k]->body, msgs[k]->len);
    }
    rc = a.oom ? GTASK_ENOMEM : gtask__redis_eval(r, c, GTASK__LUA_LIMIT_ADMIT, 3 + 3 * nt, &a, &rep);
    gtask__redis_put(r, c);
  }
  gtask__argv_free(&a);
  size_t nlim = 0;
  for (size_t k = i; k < j; k++) nlim += !keep[k];
  if (rc == 0 && (rep->type != REDIS_REPLY_ARRAY || rep->elements != nlim + 1))
    rc = gtask__redis_proto_error(r, "limit_admit.lua", rep, "an array of a code per task and a due");
  if (rc == 0) {
    size_t x = 0;
    for (size_t k = i; k < j && rc == 0; k++) {
      if (keep[k]) continue;
      long long code = rep->element[x++]->integer;
      if (code != 1) continue; /* waits: it left the stream and our leases */
      keep[k] = true;
      /* Held slots: remember them, to release at the finish. */
      int tg[2] = {ta[k - i], qt};
      holder *h = NULL;
      for (int y = 0; y < 2; y++) {
        if (!tg[y] || t[tg[y] - 1].conc == 0) continue;
        if (!h && (h = gtask__calloc(1, sizeof(*h))) != NULL) {
          h->lease = gtask__strdup(msgs[k]->lease ? msgs[k]->lease : "0-0");
          h->queue = gtask__strdup(queue);
        }
        if (!h) break;
        memcpy(h->fields[y], t[tg[y] - 1].field, GTASK__KEY_MAX);
        h->conc[y] = t[tg[y] - 1].conc;
      }
      if (h && (!h->lease || !h->queue)) {
        holder_free(h); /* the slot then expires after a lease time */
        h = NULL;
      }
      if (h) {
        pthread_mutex_lock(&l->mu);
        h->next = l->holders;
        l->holders = h;
        atomic_fetch_add(&l->nholders, 1);
        pthread_mutex_unlock(&l->mu);
      }
    }
    int64_t due = rep->element[nlim]->integer;
    if (due) {
      pthread_mutex_lock(&l->mu);
      if ((q = find_queue(l, queue)) != NULL && (!q->earliest_due || due < q->earliest_due))
        q->earliest_due = due;
      pthread_mutex_unlock(&l->mu);
    }
  }
  if (rep) freeReplyObject(rep);
  gtask__free(keys);
  gtask__free(ta);
  gtask__free(t);
  return rc;
}

int gtask__limits_admit(gtask__limits *l, gtask__redis *r, gtask_msg **msgs, size_t *n) {
  if (!l || !atomic_load(&l->active) || *n == 0) return 0;
  bool *keep = gtask__calloc(*n, sizeof(bool));
  if (!keep) return GTASK_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < *n;) {
    size_t j = i + 1; /* a run of one queue and level: limit_admit.lua acks in one stream */
    while (j < *n && msgs[j]->priority == msgs[i]->priority &&
           strcmp(msgs[j]->queue, msgs[i]->queue) == 0)
      j++;
    int qrc = admit_queue(l, r, msgs, i, j, keep);
    if (qrc && !rc) rc = qrc;
    i = j;
  }
  /* A message not admitted (it waits, or the admission failed) leaves the
   * batch; one whose admission failed stays leased and comes back through
   * reclaim: a limit is never bypassed. */
  size_t m = 0;
  for (size_t k = 0; k < *n; k++) {
    if (keep[k]) msgs[m++] = msgs[k];
    else gtask_msg_free(msgs[k]);
  }
  *n = m;
  gtask__free(keep);
  return rc;
}

/* Takes the holder of lease out of the table (NULL if none). */
static holder *take_holder(gtask__limits *l, const char *lease, bool remove) {
  pthread_mutex_lock(&l->mu);
  holder *found = NULL;
  for (holder **p = &l->holders; *p; p = &(*p)->next) {
    if (strcmp((*p)->lease, lease) != 0) continue;
    found = *p;
    if (remove) {
      *p = found->next;
      atomic_fetch_sub(&l->nholders, 1);
    }
    break;
  }
  pthread_mutex_unlock(&l->mu);
  return found;
}

/* Release (remove) or extend the slots of the deliveries in msgs. */
static void slots_of(gtask__limits *l, gtask__redis *r, gtask_msg *const *msgs, size_t n,
                     bool release) {
  if (!l || atomic_load(&l->nholders) == 0) return;
  for (size_t k = 0; k < n; k++) {
    if (!msgs[k] || !msgs[k]->lease) continue;
    pthread_mutex_lock(&l->mu);
    holder *h = NULL;
    for (holder *x = l->holders; x; x = x->next)
      if (strcmp(x->lease, msgs[k]->lease) == 0) h = x;
    char fields[2][GTASK__KEY_MAX];
    int64_t conc[2];
    char queue[GTASK__KEY_MAX];
    size_t nt = 0;
    if (h) {
      for (int y = 0; y < 2; y++)
        if (h->fields[y][0]) {
          memcpy(fields[nt], h->fields[y], GTASK__KEY_MAX);
          conc[nt++] = h->conc[y];
        }
      gtask__fmt(queue, sizeof(queue), "%s", h->queue);
    }
    pthread_mutex_unlock(&l->mu);
    if (!h) continue;
    gtask__conn *c = NULL;
    if (gtask__redis_use(r, queue, &c) != 0) continue; /* the slot expires after a lease time */
    int rc = slots_call(r, c, release ? "release" : "extend", queue,
                        (const char (*)[GTASK__KEY_MAX])fields, conc, nt, msgs[k]->lease,
                        atomic_load_explicit(&l->lease_ms, memory_order_relaxed));
    gtask__redis_put(r, c);
    if (rc) gtask__log(GTASK_LOG_WARN, "limits: %s a slot: %s", release ? "releasing" : "extending",
                       gtask_last_error());
    if (release) holder_free(take_holder(l, msgs[k]->lease, true));
  }
}

void gtask__limits_release(gtask__limits *l, gtask__redis *r, gtask_msg *const *msgs, size_t n) {
  slots_of(l, r, msgs, n, true);
}

void gtask__limits_extend(gtask__limits *l, gtask__redis *r, gtask_msg *const *msgs, size_t n) {
  slots_of(l, r, msgs, n, false);
}

/* ---------------------------------------------------------------- the client's side */

int gtask__limit_set(gtask_broker *broker, const char *queue, const char *field, const char *value) {
  gtask__redis *r = gtask__redis_broker_pool(broker);
  if (!r) {
    gtask__set_error("limits need a Redis broker (gtask_broker_redis_new)");
    return GTASK_EINVAL;
  }
  char keys[7][GTASK__KEY_MAX]; /* the argv points into them */
  gtask__argv a;
  gtask__argv_init(&a);
  if (value) {
    gtask__argv_adds(&a, "HSET");
    gtask__argv_add(&a, keys[0], gtask__redis_key(r, keys[0], GTASK__KEY_MAX, queue, "limits", NULL));
    gtask__argv_adds(&a, field);
    gtask__argv_adds(&a, value);
  } else {
    /* field is the target: both of its limits go, and the tasks waiting
     * under them go back to the queue (limit_remove.lua). */
    gtask__argv_add(&a, keys[0], gtask__redis_key(r, keys[0], GTASK__KEY_MAX, queue, "limits", NULL));
    gtask__argv_add(&a, keys[1], gtask__redis_key(r, keys[1], GTASK__KEY_MAX, queue, "stream", NULL));
    add_target_keys(r, &a, keys + 2, queue, field, true);
    gtask__argv_add(&a, keys[5], gtask__redis_key(r, keys[5], GTASK__KEY_MAX, queue, "stream", "1"));
    gtask__argv_add(&a, keys[6], gtask__redis_key(r, keys[6], GTASK__KEY_MAX, queue, "stream", "2"));
    gtask__argv_adds(&a, field);
  }
  gtask__conn *c = NULL;
  redisReply *rep = NULL;
  int rc = gtask__redis_use(r, queue, &c);
  if (rc == 0) {
    if (a.oom) rc = GTASK_ENOMEM;
    else if (value) rc = gtask__redis_cmd(r, c, &a, &rep);
    else rc = gtask__redis_eval(r, c, GTASK__LUA_LIMIT_REMOVE, 7, &a, &rep);
    gtask__redis_put(r, c);
  }
  gtask__argv_free(&a);
  if (rc) return rc;
  bool none = !value && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
  freeReplyObject(rep);
  if (!none) return 0;
  gtask__set_error("no limit on %s in queue %s", field, queue);
  return GTASK_ENOTFOUND;
}

int gtask__limit_list(gtask_broker *broker, const char *queue, gtask_limit **out, size_t *n) {
  *out = NULL;
  *n = 0;
  gtask__redis *r = gtask__redis_broker_pool(broker);
  if (!r) {
    gtask__set_error("limits need a Redis broker (gtask_broker_redis_new)");
    return GTASK_EINVAL;
  }
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(r, queue, &c);
  if (rc) return rc;
  limit_target *t = NULL;
  size_t nt = 0;
  rc = read_limits(r, c, queue, &t, &nt);
  gtask_limit *v = nt ? gtask__calloc(nt, sizeof(*v)) : NULL;
  if (rc == 0 && nt && !v) rc = GTASK_ENOMEM;
  int64_t now = gtask__now_ms();
  for (size_t k = 0; k < nt && rc == 0; k++) {
    char krl[GTASK__KEY_MAX], kcc[GTASK__KEY_MAX], klw[GTASK__KEY_MAX];
    gtask__redis_key(r, krl, sizeof(krl), queue, "rl", t[k].field);
    gtask__redis_key(r, kcc, sizeof(kcc), queue, "cc", t[k].field);
    gtask__redis_key(r, klw, sizeof(klw), queue, "lw", t[k].field);
    gtask__conn_appendf(c, "ZCOUNT %s %lld +inf", krl,
                        (long long)(now - (t[k].rate ? window_of(t[k].period_ms) : 0)));
    gtask__conn_appendf(c, "ZCOUNT %s %lld +inf", kcc, (long long)now);
    gtask__conn_appendf(c, "LLEN %s", klw);
    int64_t got[3] = {0, 0, 0};
    for (int y = 0; y < 3; y++) {
      redisReply *p = NULL;
      if (gtask__conn_get_reply(c, &p) != REDIS_OK) {
        gtask__set_error("redis %s: %s", r->conf->describe, c->errstr);
        rc = GTASK_ECONN;
        break;
      }
      if (p->type == REDIS_REPLY_INTEGER) got[y] = p->integer;
      freeReplyObject(p);
    }
    gtask_limit *l = &v[k];
    l->queue = gtask__strdup(queue);
    l->task = strcmp(t[k].field, "q") == 0 ? NULL : gtask__strdup(t[k].field + 2);
    if (!l->queue || (strcmp(t[k].field, "q") != 0 && !l->task)) rc = rc ? rc : GTASK_ENOMEM;
    l->rate = t[k].rate;
    l->period_ms = t[k].period_ms;
    l->concurrency = t[k].conc;
    l->in_window = t[k].rate ? got[0] : 0;
    l->running = got[1];
    l->waiting = got[2];
  }
  gtask__redis_put(r, c);
  gtask__free(t);
  if (rc) {
    gtask_limit_list_free(v, nt);
    return rc;
  }
  *out = v;
  *n = nt;
  return 0;
}
