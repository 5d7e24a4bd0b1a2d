/* memory/backend.c -- the in-process backend: task states and results in this
 * process's memory, for single-process use and for fast tests.
 *
 * It honours every contract of gtask_backend_ops (<gtask/extend.h>) the way the Redis
 * backend does (tests/integration/test_contract.c runs the same cases against
 * both): a hash table maps (queue, task id) -- results are kept per queue -- to
 * a record of status, attempts and the encoded result record.  As in the Redis
 * scripts, pending() creates a record only if there is none, started() and
 * store() create one if needed, and a final state (SUCCESS, FAILURE) is never
 * overwritten -- except by reset(), for a dead task requeued by hand.
 *
 * The memory broker is colocated with it (memory.h): it calls pending, store
 * and reset while holding its own mutex, which is taken before this one.
 *
 * One mutex guards the table; one condition variable (CLOCK_MONOTONIC) is
 * broadcast whenever a record becomes final, and wait() blocks on it.  No user
 * code is ever called under the mutex.  Calls allocate everything they need
 * before changing anything, so GTASK_ENOMEM leaves the table as it was.
 *
 * Unique keys (claim) are a list of (queue, key, holder, until): a key held
 * until its task is final is free once the holder's record is final, as
 * claim.lua reads the holder's keys.
 *
 * Expiry (as the Redis backend's expire time): a record lives for the
 * backend's record lifetime (gtask_backend_memory_set_expire_time, default
 * 24 h), counted from each write of it, on the monotonic clock.  An expired
 * record is as good as gone: each call reads the clock once when it takes
 * the mutex (be->now), and rec_find() unlinks and frees the expired records
 * of the chain it walks, so one call sees one consistent table.  rec_insert()
 * also sweeps two buckets, so that records nobody looks up again are freed
 * as new ones come.  Nothing holds a record pointer across a wait: wait()
 * looks its record up again each time it wakes.  A unique key held until its
 * task is final lapses with the holder's record, as on Redis. */
#include <gtask/extend.h>

#include "../util.h" /* the allocation seam, clocks, errors: no core types */
#include "memory.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct mem_record {
  struct mem_record *hnext; /* hash chain */
  uint64_t hash;
  char id[GTASK_ID_SIZE];
  gtask_status status;
  uint32_t attempts;
  char *result; /* owned encoded result record, NUL-terminated; NULL if none */
  char *progress; /* owned: the latest progress (issue 18) while not final; NULL if none */
  size_t rlen;
  int64_t expires_ms; /* mono ms when it expires: its last write plus the lifetime */
  char queue[]; /* NUL-terminated, allocated with the record */
} mem_record;

/* A unique key (claim) and the task holding it. */
typedef struct mem_lock {
  struct mem_lock *next;
  char holder[GTASK_ID_SIZE];
  int64_t until_ms; /* mono ms when it lapses; 0: while the holder is not final */
  char *queue;      /* owned */
  char *key;        /* owned */
} mem_lock;

typedef struct mem_backend {
  pthread_mutex_t mu; /* guards the table and the locks */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC; broadcast when a record becomes final */
  mem_record **buckets;
  size_t nbuckets, nrecords; /* nbuckets: a power of two */
  mem_lock *locks; /* unique keys: a list, searched in full (a lapsed one is
                      reused in place, so it holds at most the keys ever taken) */
  int64_t ttl_ms;  /* the record lifetime (expire time), ms */
  int64_t now;     /* mono ms, read by lock() for the call holding the mutex */
  size_t sweep;    /* the next bucket rec_insert() sweeps */
} mem_backend;

/* The default record lifetime: the Redis backend's default expire time. */
#define DEFAULT_TTL_MS (24 * 3600 * 1000LL)

/* Takes the mutex and reads the clock that judges expiry for this call. */
static void lock(mem_backend *be) {
  pthread_mutex_lock(&be->mu);
  be->now = gtask__mono_ms();
}

static bool is_final(gtask_status s) {
  return s == GTASK_SUCCESS || s == GTASK_FAILURE || s == GTASK_CANCELLED;
}

/* FNV-1a over queue, a NUL, id. */
static uint64_t key_hash(const char *queue, const char *id) {
  uint64_t h = 14695981039346656037u;
  for (const char *p = queue;; p++) {
    h = (h ^ (unsigned char)*p) * 1099511628211u;
    if (*p == '\0')
      break;
  }
  for (const char *p = id; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211u;
  return h;
}

static void rec_free(mem_record *r);

/* Unlinks and frees the expired records of bucket b's chain. */
static void bucket_sweep(mem_backend *be, size_t b) {
  for (mem_record **p = &be->buckets[b]; *p;) {
    mem_record *r = *p;
    if (r->expires_ms > be->now) {
      p = &r->hnext;
      continue;
    }
    *p = r->hnext;
    be->nrecords--;
    rec_free(r);
  }
}

/* The live record of (queue, id), or NULL; frees the expired ones of the
 * chain it walks (see "Expiry" above). */
static mem_record *rec_find(mem_backend *be, const char *queue, const char *id) {
  uint64_t h = key_hash(queue, id);
  size_t b = h & (be->nbuckets - 1);
  bucket_sweep(be, b);
  for (mem_record *r = be->buckets[b]; r; r = r->hnext)
    if (r->hash == h && strcmp(r->id, id) == 0 && strcmp(r->queue, queue) == 0)
      return r;
  return NULL;
}

/* A write of r: it lives for the lifetime from now. */
static void rec_touch(const mem_backend *be, mem_record *r) {
  r->expires_ms = be->now + be->ttl_ms;
}

/* A new record, not yet in the table.  NULL on out-of-memory. */
static mem_record *rec_new(const char *queue, const char *id) {
  size_t qlen = strlen(queue);
  mem_record *r = gtask__calloc(1, sizeof(*r) + qlen + 1);
  if (r == NULL)
    return NULL;
  memcpy(r->queue, queue, qlen + 1);
  size_t idlen = strnlen(id, GTASK_ID_SIZE - 1);
  memcpy(r->id, id, idlen);
  r->id[idlen] = '\0';
  r->hash = key_hash(r->queue, r->id);
  return r;
}

static void rec_free(mem_record *r) {
  if (r == NULL)
    return;
  gtask__free(r->result);
  gtask__free(r->progress);
  gtask__free(r);
}

/* Doubles the table when crowded.  Failure is harmless (longer chains), so
 * inserting never fails. */
static void table_grow(mem_backend *be) {
  if (be->nrecords < be->nbuckets * 2 || be->nbuckets > SIZE_MAX / 4 / sizeof(mem_record *))
    return;
  size_t nb = be->nbuckets * 2;
  mem_record **t = gtask__calloc(nb, sizeof(*t));
  if (t == NULL)
    return;
  for (size_t i = 0; i < be->nbuckets; i++) {
    for (mem_record *r = be->buckets[i], *next; r; r = next) {
      next = r->hnext;
      r->hnext = t[r->hash & (nb - 1)];
      t[r->hash & (nb - 1)] = r;
    }
  }
  gtask__free(be->buckets);
  be->buckets = t;
  be->nbuckets = nb;
}

static void rec_insert(mem_backend *be, mem_record *r) {
  for (int k = 0; k < 2; k++) /* an incremental sweep: two buckets per insert */
    bucket_sweep(be, be->sweep++ & (be->nbuckets - 1));
  rec_touch(be, r);
  size_t b = r->hash & (be->nbuckets - 1);
  r->hnext = be->buckets[b];
  be->buckets[b] = r;
  be->nrecords++;
  table_grow(be);
}

/* The record of (queue, id), taking *spare (a record allocated for it in
 * advance) into the table if there is none yet.  An unused spare is left for
 * the caller to free.  Never fails when *spare is non-NULL. */
static mem_record *rec_get(mem_backend *be, const char *queue, const char *id,
                           mem_record **spare) {
  mem_record *r = rec_find(be, queue, id);
  if (r == NULL && *spare != NULL) {
    r = *spare;
    *spare = NULL;
    rec_insert(be, r);
  }
  return r;
}

/* Allocates spares[i] for each message without a record.  Called under the
 * mutex; all or nothing. */
static int spares_new(mem_backend *be, gtask_msg *const *msgs, size_t n, mem_record **spares) {
  for (size_t i = 0; i < n; i++) {
    if (rec_find(be, msgs[i]->queue, msgs[i]->id) != NULL)
      continue;
    if ((spares[i] = rec_new(msgs[i]->queue, msgs[i]->id)) == NULL)
      return GTASK_ENOMEM;
  }
  return 0;
}

/* spares_new for the messages of claims. */
static int spares_new_claims(mem_backend *be, const gtask_claim *cs, size_t n,
                             mem_record **spares) {
  for (size_t i = 0; i < n; i++) {
    if (rec_find(be, cs[i].msg->queue, cs[i].msg->id) != NULL)
      continue;
    if ((spares[i] = rec_new(cs[i].msg->queue, cs[i].msg->id)) == NULL)
      return GTASK_ENOMEM;
  }
  return 0;
}

static void spares_free(mem_record **spares, size_t n) {
  for (size_t i = 0; i < n; i++)
    rec_free(spares[i]);
  gtask__free(spares);
}

static bool msgs_valid(gtask_msg *const *msgs, size_t n) {
  if (n > 0 && msgs == NULL)
    return false;
  for (size_t i = 0; i < n; i++)
    if (msgs[i] == NULL || msgs[i]->queue == NULL)
      return false;
  return true;
}

/* ---------------------------------------------------------------- operations */

static int mk_pending(void *impl, gtask_msg *const *msgs, size_t n) {
  mem_backend *be = impl;
  if (be == NULL || !msgs_valid(msgs, n))
    return GTASK_EINVAL;
  if (n == 0)
    return 0;
  mem_record **spares = gtask__calloc(n, sizeof(*spares));
  if (spares == NULL)
    return GTASK_ENOMEM;
  lock(be);
  int rc = spares_new(be, msgs, n, spares);
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (rec_find(be, msgs[i]->queue, msgs[i]->id) != NULL)
      continue; /* it has a state already (or is a duplicate in this batch) */
    mem_record *r = rec_get(be, msgs[i]->queue, msgs[i]->id, &spares[i]);
    r->status = GTASK_PENDING;
    r->attempts = 0;
  }
  pthread_mutex_unlock(&be->mu);
  spares_free(spares, n);
  return rc;
}

static int mk_started(void *impl, gtask_msg *const *msgs, const uint32_t *attempts, size_t n) {
  mem_backend *be = impl;
  if (be == NULL || !msgs_valid(msgs, n) || (n > 0 && attempts == NULL))
    return GTASK_EINVAL;
  if (n == 0)
    return 0;
  mem_record **spares = gtask__calloc(n, sizeof(*spares));
  if (spares == NULL)
    return GTASK_ENOMEM;
  lock(be);
  int rc = spares_new(be, msgs, n, spares);
  for (size_t i = 0; i < n && rc == 0; i++) {
    mem_record *r = rec_get(be, msgs[i]->queue, msgs[i]->id, &spares[i]);
    if (!is_final(r->status)) {
      r->status = GTASK_STARTED;
      r->attempts = attempts[i];
      rec_touch(be, r);
    }
  }
  pthread_mutex_unlock(&be->mu);
  spares_free(spares, n);
  return rc;
}

static int mk_store(void *impl, gtask_fin *fins, size_t n) {
  mem_backend *be = impl;
  if (be == NULL || (n > 0 && fins == NULL))
    return GTASK_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (fins[i].msg == NULL || fins[i].msg->queue == NULL)
      return GTASK_EINVAL;
  if (n == 0)
    return 0;
  mem_record **spares = gtask__calloc(n, sizeof(*spares));
  char **results = gtask__calloc(n, sizeof(*results));
  int rc = spares == NULL || results == NULL ? GTASK_ENOMEM : 0;
  /* As the Redis script: an empty result means "none" (keep the old one). */
  for (size_t i = 0; i < n && rc == 0; i++) {
    const gtask_fin *f = &fins[i];
    if (f->result != NULL && f->result_len > 0) {
      if (f->result_len == SIZE_MAX || (results[i] = gtask__malloc(f->result_len + 1)) == NULL) {
        rc = GTASK_ENOMEM;
        break;
      }
      memcpy(results[i], f->result, f->result_len);
      results[i][f->result_len] = '\0';
    }
  }
  lock(be);
  if (rc == 0) {
    for (size_t i = 0; i < n && rc == 0; i++) {
      const gtask_msg *m = fins[i].msg;
      if (rec_find(be, m->queue, m->id) == NULL && (spares[i] = rec_new(m->queue, m->id)) == NULL)
        rc = GTASK_ENOMEM;
    }
  }
  bool woke = false;
  for (size_t i = 0; i < n && rc == 0; i++) {
    gtask_fin *f = &fins[i];
    mem_record *r = rec_get(be, f->msg->queue, f->msg->id, &spares[i]);
    f->fenced = is_final(r->status);
    if (f->fenced)
      continue;
    r->status = f->status;
    rec_touch(be, r);
    if (results[i] != NULL) {
      gtask__free(r->result);
      r->result = results[i];
      r->rlen = f->result_len;
      results[i] = NULL;
    }
    if (is_final(r->status))
      woke = true;
  }
  if (woke)
    pthread_cond_broadcast(&be->cv);
  pthread_mutex_unlock(&be->mu);
  if (results != NULL)
    for (size_t i = 0; i < n; i++)
      gtask__free(results[i]);
  gtask__free(results);
  if (spares != NULL)
    spares_free(spares, n);
  return rc;
}

static int mk_get(void *impl, const char *queue, const char *id, gtask_status *status,
                  uint32_t *attempts, char **result, size_t *len) {
  mem_backend *be = impl;
  if (result != NULL)
    *result = NULL;
  if (len != NULL)
    *len = 0;
  if (be == NULL || queue == NULL || id == NULL)
    return GTASK_EINVAL;
  int rc = 0;
  lock(be);
  const mem_record *r = rec_find(be, queue, id);
  if (r == NULL) {
    rc = GTASK_ENOTFOUND;
  } else {
    if (result != NULL && r->result != NULL) {
      if ((*result = gtask__malloc(r->rlen + 1)) == NULL) {
        rc = GTASK_ENOMEM;
      } else {
        memcpy(*result, r->result, r->rlen + 1);
        if (len != NULL)
          *len = r->rlen;
      }
    }
    if (rc == 0 && status != NULL)
      *status = r->status;
    if (rc == 0 && attempts != NULL)
      *attempts = r->attempts;
  }
  pthread_mutex_unlock(&be->mu);
  if (rc == GTASK_ENOTFOUND)
    gtask__set_error("no task %s in queue %s", id, queue);
  return rc;
}

static int mk_wait(void *impl, const char *queue, const char *id, int64_t timeout_ms,
                   bool known, char **result, size_t *len) {
  (void)known; /* the check costs nothing here */
  mem_backend *be = impl;
  if (result) *result = NULL;
  if (len) *len = 0;
  if (be == NULL || queue == NULL || id == NULL)
    return GTASK_EINVAL;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  if (timeout_ms > 0) {
    deadline.tv_sec += (time_t)(timeout_ms / 1000);
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
  }
  int rc = 0;
  lock(be);
  /* No record pointer is kept across a wait (expiry may free it): the record
   * is looked up again on each wake.  Gone meanwhile: expired, as unknown. */
  const mem_record *r;
  for (;;) {
    if ((r = rec_find(be, queue, id)) == NULL) {
      rc = GTASK_ENOTFOUND;
      break;
    }
    if (is_final(r->status))
      break;
    if (timeout_ms == 0) {
      rc = GTASK_ETIMEDOUT;
      break;
    }
    int w = timeout_ms < 0 ? pthread_cond_wait(&be->cv, &be->mu)
                           : pthread_cond_timedwait(&be->cv, &be->mu, &deadline);
    be->now = gtask__mono_ms();
    if (w == ETIMEDOUT)
      timeout_ms = 0; /* one last look at the state, then give up */
  }
  if (rc == 0 && result && r->result) {
    *result = gtask__strndup(r->result, r->rlen); /* NULL on OOM: caller reads with get */
    if (*result && len) *len = r->rlen;
  }
  pthread_mutex_unlock(&be->mu);
  if (rc == GTASK_ENOTFOUND)
    gtask__set_error("no task %s in queue %s", id, queue);
  return rc;
}

static int mk_reset(void *impl, gtask_msg *const *msgs, size_t n) {
  mem_backend *be = impl;
  if (be == NULL || !msgs_valid(msgs, n))
    return GTASK_EINVAL;
  if (n == 0)
    return 0;
  mem_record **spares = gtask__calloc(n, sizeof(*spares));
  if (spares == NULL)
    return GTASK_ENOMEM;
  lock(be);
  int rc = spares_new(be, msgs, n, spares);
  for (size_t i = 0; i < n && rc == 0; i++) {
    /* A waiter blocked on this record keeps waiting: it is not final now. */
    mem_record *r = rec_get(be, msgs[i]->queue, msgs[i]->id, &spares[i]);
    r->status = GTASK_PENDING;
    gtask__free(r->result);
    r->result = NULL;
    r->rlen = 0;
    rec_touch(be, r);
  }
  pthread_mutex_unlock(&be->mu);
  spares_free(spares, n);
  return rc;
}

static mem_lock *lock_find(const mem_backend *be, const char *queue, const char *key) {
  for (mem_lock *l = be->locks; l; l = l->next)
    if (strcmp(l->key, key) == 0 && strcmp(l->queue, queue) == 0)
      return l;
  return NULL;
}

/* Whether l still holds its key. */
static bool lock_held(mem_backend *be, const mem_lock *l, int64_t now) {
  if (l->until_ms != 0)
    return now < l->until_ms;
  const mem_record *r = rec_find(be, l->queue, l->holder);
  return r != NULL && !is_final(r->status);
}

static void lock_free(mem_lock *l) {
  if (l == NULL)
    return;
  gtask__free(l->queue);
  gtask__free(l->key);
  gtask__free(l);
}

static mem_lock *lock_new(const char *queue, const char *key) {
  mem_lock *l = gtask__calloc(1, sizeof(*l));
  if (l == NULL || (l->queue = gtask__strdup(queue)) == NULL ||
      (l->key = gtask__strdup(key)) == NULL) {
    lock_free(l);
    return NULL;
  }
  return l;
}

/* Claims in order (a later claim sees the keys earlier ones took).  Records
 * and locks are allocated first, so GTASK_ENOMEM changes nothing. */
static int mk_claim(void *impl, gtask_claim *cs, size_t n) {
  mem_backend *be = impl;
  if (be == NULL || (n > 0 && cs == NULL))
    return GTASK_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (cs[i].msg == NULL || cs[i].msg->queue == NULL || cs[i].unique_ttl_ms < 0)
      return GTASK_EINVAL;
  if (n == 0)
    return 0;
  mem_record **spares = gtask__calloc(n, sizeof(*spares));
  mem_lock **lspares = gtask__calloc(n, sizeof(*lspares));
  int rc = spares == NULL || lspares == NULL ? GTASK_ENOMEM : 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (cs[i].unique_key != NULL &&
        (lspares[i] = lock_new(cs[i].msg->queue, cs[i].unique_key)) == NULL)
      rc = GTASK_ENOMEM;
  }
  if (rc == 0) {
    lock(be);
    rc = spares_new_claims(be, cs, n, spares);
    int64_t now = gtask__mono_ms();
    for (size_t i = 0; i < n && rc == 0; i++) {
      gtask_claim *c = &cs[i];
      const gtask_msg *m = c->msg;
      c->duplicate = false;
      c->existing[0] = '\0';
      mem_lock *l = c->unique_key ? lock_find(be, m->queue, c->unique_key) : NULL;
      const char *dup = NULL;
      if (rec_find(be, m->queue, m->id) != NULL)
        dup = m->id;
      else if (l != NULL && lock_held(be, l, now))
        dup = l->holder;
      if (dup != NULL) {
        c->duplicate = true;
        memcpy(c->existing, dup, GTASK_ID_SIZE);
        continue;
      }
      mem_record *r = rec_get(be, m->queue, m->id, &spares[i]);
      r->status = GTASK_PENDING;
      r->attempts = 0;
      if (c->unique_key == NULL)
        continue;
      if (l == NULL) {
        l = lspares[i];
        lspares[i] = NULL;
        l->next = be->locks;
        be->locks = l;
      }
      memcpy(l->holder, m->id, GTASK_ID_SIZE);
      l->holder[GTASK_ID_SIZE - 1] = '\0';
      l->until_ms = c->unique_ttl_ms > 0 ? now + c->unique_ttl_ms : 0;
    }
    pthread_mutex_unlock(&be->mu);
  }
  for (size_t i = 0; lspares != NULL && i < n; i++)
    lock_free(lspares[i]);
  gtask__free(lspares);
  if (spares != NULL)
    spares_free(spares, n);
  return rc;
}

/* Called when the last handle reference goes: no call (no waiter) can be in
 * progress. */
static int mk_finals(void *impl, gtask_msg *const *msgs, size_t n, bool *out) {
  mem_backend *be = impl;
  if (be == NULL || (n > 0 && (msgs == NULL || out == NULL)))
    return GTASK_EINVAL;
  lock(be);
  for (size_t i = 0; i < n; i++) {
    const mem_record *r = rec_find(be, msgs[i]->queue, msgs[i]->id);
    out[i] = r != NULL && is_final(r->status);
  }
  pthread_mutex_unlock(&be->mu);
  return 0;
}

static int mk_progress(void *impl, gtask_msg *const *msgs, const char *const *values, size_t n) {
  mem_backend *be = impl;
  if (be == NULL || (n > 0 && (msgs == NULL || values == NULL)))
    return GTASK_EINVAL;
  char **copies = gtask__calloc(n ? n : 1, sizeof(*copies));
  if (copies == NULL)
    return GTASK_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++)
    if ((copies[i] = gtask__strdup(values[i])) == NULL)
      rc = GTASK_ENOMEM;
  lock(be);
  for (size_t i = 0; i < n && rc == 0; i++) {
    mem_record *r = rec_find(be, msgs[i]->queue, msgs[i]->id);
    if (r == NULL || is_final(r->status))
      continue; /* as progress.lua: a final state drops it */
    gtask__free(r->progress);
    rec_touch(be, r);
    r->progress = copies[i];
    copies[i] = NULL;
  }
  pthread_mutex_unlock(&be->mu);
  for (size_t i = 0; i < n; i++)
    gtask__free(copies[i]);
  gtask__free(copies);
  return rc;
}

static int mk_progress_get(void *impl, const char *queue, const char *id, char **value) {
  mem_backend *be = impl;
  *value = NULL;
  int rc = 0;
  lock(be);
  const mem_record *r = rec_find(be, queue, id);
  if (r == NULL || r->progress == NULL || is_final(r->status))
    rc = GTASK_ENOTFOUND;
  else if ((*value = gtask__strdup(r->progress)) == NULL)
    rc = GTASK_ENOMEM;
  pthread_mutex_unlock(&be->mu);
  if (rc == GTASK_ENOTFOUND)
    gtask__set_error("no progress of task %s in queue %s", id, queue);
  return rc;
}

static void mk_destroy(void *impl) {
  mem_backend *be = impl;
  if (be == NULL)
    return;
  for (size_t i = 0; i < be->nbuckets; i++) {
    for (mem_record *r = be->buckets[i], *next; r; r = next) {
      next = r->hnext;
      rec_free(r);
    }
  }
  gtask__free(be->buckets);
  for (mem_lock *l = be->locks, *next; l; l = next) {
    next = l->next;
    lock_free(l);
  }
  pthread_cond_destroy(&be->cv);
  pthread_mutex_destroy(&be->mu);
  gtask__free(be);
}

const gtask_backend_ops gtask__memory_backend_ops = {
    .abi = GTASK_EXTEND_ABI,
    .name = "memory",
    .pending = mk_pending,
    .started = mk_started,
    .store = mk_store,
    .get = mk_get,
    .wait = mk_wait,
    .reset = mk_reset,
    .destroy = mk_destroy,
    .claim = mk_claim,
    .finals = mk_finals,
    .progress = mk_progress,
    .progress_get = mk_progress_get,
};

GTASK_EXTERN gtask_backend *gtask_backend_memory_new(void) {
  mem_backend *be = gtask__calloc(1, sizeof(*be));
  if (be == NULL)
    return NULL;
  be->nbuckets = 64;
  be->ttl_ms = DEFAULT_TTL_MS;
  if ((be->buckets = gtask__calloc(be->nbuckets, sizeof(*be->buckets))) == NULL) {
    gtask__free(be);
    return NULL;
  }
  pthread_condattr_t ca;
  bool ok = pthread_condattr_init(&ca) == 0;
  if (ok) {
    ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
         pthread_cond_init(&be->cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
  }
  if (!ok) {
    gtask__free(be->buckets);
    gtask__free(be);
    return NULL;
  }
  if (pthread_mutex_init(&be->mu, NULL) != 0) {
    pthread_cond_destroy(&be->cv);
    gtask__free(be->buckets);
    gtask__free(be);
    return NULL;
  }
  gtask_backend *h;
  if (gtask_backend_new(&h, &gtask__memory_backend_ops, be) != 0) {
    mk_destroy(be);
    return NULL;
  }
  return h;
}

GTASK_EXTERN int gtask_backend_memory_set_expire_time(gtask_backend *backend, int64_t ms) {
  mem_backend *be = gtask_backend_impl(backend, &gtask__memory_backend_ops);
  if (be == NULL) {
    gtask__set_error("set_expire_time: not a memory backend");
    return GTASK_EINVAL;
  }
  if (ms < 1000) {
    gtask__set_error("set_expire_time: %lld ms is below the minimum of 1000", (long long)ms);
    return GTASK_EINVAL;
  }
  pthread_mutex_lock(&be->mu);
  be->ttl_ms = ms;
  pthread_mutex_unlock(&be->mu);
  return 0;
}
