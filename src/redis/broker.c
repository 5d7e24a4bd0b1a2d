/* redis/broker.c -- the Redis broker: one stream per queue with the consumer
 * group "workers".
 *
 * XREADGROUP leases a batch and records each delivery in the group's pending
 * entries list (PEL) in the same command, so there is no window in which a
 * fetched task exists nowhere.  The PEL entry is the lease: its owner is the
 * consumer, its idle time is the time since the last heartbeat (extend.lua
 * resets it), and XAUTOCLAIM hands entries idle for longer than the lease to a
 * live worker (reclaim.lua, which also bumps the queue's fence).  The stream
 * entry id is the fencing token: finish.lua and extend.lua act only on entries
 * still owned by the caller (finish.lua may prove that by an unchanged fence
 * instead of a lease check), and a requeued task gets a new entry id, so a
 * worker that lost its lease can change nothing.
 * The dead set is a hash by task id; dead_requeue.lua moves an entry back to
 * the stream only if it still holds the body the caller read.
 * docs/PROTOCOL.md describes every key and script. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* A consumer's dedicated connection for blocking leases, so that interrupt()
 * can CLIENT UNBLOCK it by id.  One thread leases per consumer at a time.
 * An interrupt wakes the lease in progress, or else makes the next one return
 * at once; either way it is consumed by that one lease. */
typedef struct lease_conn {
  gtask__redis *node; /* the server (a cluster node's pool, or the one pool) */
  int hslot;          /* the hash slot of its queues on a cluster, else -1 */
  gtask__conn *c;     /* NULL while a lease uses it, or before the first */
  long long client_id;
  bool blocked;       /* a lease is (about to be) blocked on c */
} lease_conn;

/* In a cluster, a consumer whose queues live in several hash slots has one
 * lease connection per slot it leases from (per node and slot: one
 * XREADGROUP may name keys of one slot only -- CROSSSLOT even when two slots
 * share a node), and a lease blocks on all of them at once.  Queues that
 * share a slot (or a single server) share one connection. */
typedef struct consumer_conn {
  char *name;
  lease_conn *lc;
  size_t nlc;
  bool interrupted; /* set by interrupt(), consumed by one lease */
  gtask_msg **surplus; /* leased by a multi-queue read beyond max; next lease's */
  size_t nsurplus;
  size_t last_leased; /* how many messages the last lease returned */
  struct consumer_conn *next;
} consumer_conn;

typedef struct redis_broker {
  gtask__redis *r;
  gtask__limits *limits; /* rate and concurrency limits (limits.c) */
  pthread_mutex_t mu; /* guards consumers and marked; never held across hiredis calls */
  consumer_conn *consumers;
  /* The queues whose priority marker (P:{q}:prio) this broker has seen:
   * their leases read the level streams (lease.lua).  The marker is read at
   * the first lease of a queue, and then by paused(), which a worker calls
   * twice a second.  Both lists only grow. */
  char **marked;
  size_t nmarked;
  char **checked; /* the queues whose marker was read at least once */
  size_t nchecked;
} redis_broker;

/* Groups consecutive items with the same queue: returns the end of the run
 * starting at i. */
static size_t run_end(gtask_msg *const *msgs, size_t n, size_t i) {
  size_t j = i + 1;
  while (j < n && strcmp(msgs[j]->queue, msgs[i]->queue) == 0) j++;
  return j;
}

/* The same, of one queue and one priority level (one stream): the deliveries
 * that one finish.lua or extend.lua takes. */
static size_t level_run_end(gtask_msg *const *msgs, size_t n, size_t i) {
  size_t j = i + 1;
  while (j < n && msgs[j]->priority == msgs[i]->priority &&
         strcmp(msgs[j]->queue, msgs[i]->queue) == 0)
    j++;
  return j;
}

static size_t fin_run_end(const gtask_fin *f, size_t n, size_t i) {
  size_t j = i + 1;
  while (j < n && f[j].msg->priority == f[i].msg->priority &&
         strcmp(f[j].msg->queue, f[i].msg->queue) == 0)
    j++;
  return j;
}

/* The level a task message (JSON) carries in its "pr" field, 0 without:
 * where only the body is at hand (the dead and failed sets).  The bytes
 * "pr": cannot occur inside a JSON string (its quotes are escaped), so the
 * first match is the key. */
int gtask__redis_body_level(const char *body, size_t len) {
  const char *p = NULL;
  for (size_t k = 0; k + 5 < len && !p; k++)
    if (body[k] == '"' && memcmp(body + k, "\"pr\":", 5) == 0) p = body + k;
  if (!p) return 0;
  int level = p[5] - '0';
  bool alone = p + 6 == body + len || p[6] == ',' || p[6] == '}';
  return alone && level > 0 && level <= GTASK_PRIORITY_MAX ? level : 0;
}

/* A delivery's level, as the broker set it (anything else reads as 0). */
static int level_of(const gtask_msg *m) {
  return m->priority > 0 && m->priority <= GTASK_PRIORITY_MAX ? m->priority : 0;
}

/* ---------------------------------------------------------------- push */

/* After a push run failed with rc: true if it is to be sent again (a cluster,
 * GTASK_ECONN, time left), after a pause that doubles each time (20 ms to
 * 320 ms), with *c returned and the slot map marked stale. */
static bool push_again(redis_broker *b, gtask__conn **c, int rc, int64_t give_up, int64_t *pause) {
  if (!b->r->cluster || rc != GTASK_ECONN || gtask__mono_ms() + *pause > give_up) return false;
  gtask__redis_put(b->r, *c);
  *c = NULL;
  gtask__cluster_stale(b->r);
  struct timespec ts = {0, (long)*pause * 1000000L};
  nanosleep(&ts, NULL);
  if (*pause < 320) *pause *= 2;
  return true;
}

/* The stream of queue q's priority level (0: the queue's stream, as ever;
 * 1, 2: P:{q}:stream:1, :2 -- same hash tag, so one slot).  Its length. */
static size_t level_key(const redis_broker *b, char *buf, const char *q, int level) {
  static const char *const sfx[GTASK_PRIORITY_MAX + 1] = {NULL, "1", "2"};
  return gtask__redis_key(b->r, buf, GTASK__KEY_MAX, q, "stream", sfx[level]);
}

/* A send of a level above 0 refused by push.lua or claim.lua ({0, worker,
 * schema}): a live worker of the queue predates levels and would never read
 * them. */
int gtask__redis_levels_refused(const gtask__redis *r, const redisReply *rep, const char *q,
                                int level) {
  const char *who = rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING
                        ? rep->element[1]->str
                        : "?";
  const char *ver = rep->elements > 2 && rep->element[2]->type == REDIS_REPLY_STRING
                        ? rep->element[2]->str
                        : "?";
  gtask__set_error("queue %s: worker %s of key schema %s never reads priority levels: nothing "
                   "was sent (priority %d needs schema %d workers; docs/PROTOCOL.md)",
                   q, who, ver, level, GTASK__KEYS_VERSION);
  return GTASK_EVERSION;
}

static int rb_push(void *impl, gtask_msg *const *msgs, size_t n, void *state) {
  redis_broker *b = impl;
  for (size_t k = 0; k < n; k++)
    if (msgs[k]->priority < 0 || msgs[k]->priority > GTASK_PRIORITY_MAX) {
      gtask__set_error("redis broker: task %s: priority %d is not 0..%d", msgs[k]->id,
                       msgs[k]->priority, GTASK_PRIORITY_MAX);
      return GTASK_EINVAL;
    }
  gtask__redis *st = state ? gtask__redis_backend_pool(state) : NULL;
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  gtask__argv a;
  gtask__argv_init(&a);
  int64_t now = gtask__now_ms();
  /* On a cluster, a run its node could not take (GTASK_ECONN: refused,
   * CLUSTERDOWN, a node gone before the command was written) is sent again,
   * for up to the conf's timeout, while the map is read again: a failover
   * moves the slot to the replica.  GTASK_ECONN always means "not applied"
   * (a lost reply is GTASK_EINDOUBT, never retried: push.lua would queue the
   * ids twice). */
  int64_t give_up = gtask__mono_ms() + b->r->conf->timeout_ms;
  int64_t pause = 20;
  char keys[5][GTASK__KEY_MAX];
  for (size_t i = 0; i < n && rc == 0;) {
    size_t j = run_end(msgs, n, i);
    int level = msgs[i]->priority; /* a run is of one queue and one level */
    for (size_t k = i + 1; k < j; k++)
      if (msgs[k]->priority != level) j = k;
    gtask__argv_reset(&a);
    const char *q = msgs[i]->queue;
    if ((rc = gtask__redis_use(b->r, q, &c)) != 0) {
      if (push_again(b, &c, rc, give_up, &pause)) {
        rc = 0;
        continue;
      }
      break;
    }
    gtask__argv_add(&a, keys[0], level_key(b, keys[0], q, level));
    gtask__argv_add(&a, keys[1], gtask__redis_key(b->r, keys[1], GTASK__KEY_MAX, q, "sched", NULL));
    gtask__argv_add(&a, keys[2], gtask__redis_key(st ? st : b->r, keys[2], GTASK__KEY_MAX, q, "pending", NULL));
    if (level > 0) { /* the marker, and the workers that must all read levels */
      gtask__argv_add(&a, keys[3], gtask__redis_key(b->r, keys[3], GTASK__KEY_MAX, q, "prio", NULL));
      gtask__argv_add(&a, keys[4], gtask__redis_key(b->r, keys[4], GTASK__KEY_MAX, q, "workers", NULL));
    }
    gtask__argv_adds(&a, st ? "1" : "0");
    gtask__argv_addi(&a, now);
    /* A run of messages all due now (a bulk send) leaves out their due times:
     * one argument less per task for Redis to parse. */
    bool timed = false;
    for (size_t k = i; k < j && !timed; k++) timed = msgs[k]->due_ms != 0;
    gtask__argv_adds(&a, timed ? "3" : "2");
    for (size_t k = i; k < j; k++) {
      gtask__argv_adds(&a, msgs[k]->id);
      gtask__argv_add(&a, msgs[k]->body, msgs[k]->len);
      if (timed) gtask__argv_addi(&a, msgs[k]->due_ms);
    }
    redisReply *rep;
    rc = gtask__redis_eval(b->r, c, GTASK__LUA_PUSH, level > 0 ? 5 : 3, &a, &rep);
    if (rc == 0) {
      if (rep->type == REDIS_REPLY_ARRAY) rc = gtask__redis_levels_refused(b->r, rep, q, level);
      freeReplyObject(rep);
      if (rc) break;
    }
    if (rc && push_again(b, &c, rc, give_up, &pause)) {
      rc = 0;
      continue; /* the same run again */
    }
    i = j;
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* Colocated sends that must not duplicate: claimed and queued by claim.lua. */
static int rb_push_unique(void *impl, gtask_claim *cs, size_t n, void *state) {
  redis_broker *b = impl;
  if (!state) return GTASK_EINVAL;
  return gtask__redis_claim(b->r, gtask__redis_backend_pool(state), true, cs, n);
}

static int rb_cancel(void *impl, const char *queue, const char *id, const char *result, size_t len,
                     bool *running, void *state) {
  redis_broker *b = impl;
  if (!state) return GTASK_EINVAL;
  return gtask__redis_cancel(b->r, queue, id, result, len, running);
}

/* ---------------------------------------------------------------- lease */

static consumer_conn *find_consumer(redis_broker *b, const char *name, bool create) {
  for (consumer_conn *cc = b->consumers; cc; cc = cc->next)
    if (strcmp(cc->name, name) == 0) return cc;
  if (!create) return NULL;
  consumer_conn *cc = gtask__calloc(1, sizeof(*cc));
  if (!cc) return NULL;
  cc->name = gtask__strdup(name);
  if (!cc->name) {
    gtask__free(cc);
    return NULL;
  }
  cc->next = b->consumers;
  b->consumers = cc;
  return cc;
}

/* Creates the group on each of the streams keys[0..nk). */
static int create_groups(redis_broker *b, gtask__conn *c, char (*keys)[GTASK__KEY_MAX], size_t nk) {
  for (size_t i = 0; i < nk; i++) {
    const char *key = keys[i];
    redisReply *rep = gtask__redis_command(c, "XGROUP CREATE %s %s 0 MKSTREAM", key, GTASK__GROUP);
    if (!rep) {
      gtask__set_error("redis %s: %s", b->r->conf->describe, c->errstr);
      return GTASK_ECONN;
    }
    int rc = 0;
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0) {
      gtask__set_error("redis %s: XGROUP CREATE %s: %s", b->r->conf->describe, key, rep->str);
      rc = gtask__redis_reply_rc(rep->str);
    }
    freeReplyObject(rep);
    if (rc) return rc;
  }
  return 0;
}

/* Turns one stream entry [id, [field, value, ...]] into a message. */
static int entry_to_msg(const redisReply *e, const char *queue, gtask_msg **out) {
  *out = NULL;
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) {
    gtask__set_error("redis: a stream entry in queue %s is not [id, fields]", queue);
    return GTASK_EPROTO;
  }
  const redisReply *f = e->element[1];
  if (f->type != REDIS_REPLY_ARRAY) return 0; /* deleted entry: nothing to run */
  const redisReply *id = NULL, *body = NULL;
  for (size_t k = 0; k + 1 < f->elements; k += 2) {
    const redisReply *name = f->element[k], *val = f->element[k + 1];
    if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING) continue;
    if (name->len == 1 && name->str[0] == 'i') id = val;
    if (name->len == 1 && name->str[0] == 'm') body = val;
  }
  char idbuf[GTASK_ID_SIZE] = "";
  if (id && id->len < GTASK_ID_SIZE) memcpy(idbuf, id->str, id->len + 1);
  gtask_msg *m = gtask_msg_new(idbuf, queue, body ? body->str : "", body ? body->len : 0);
  if (!m) return GTASK_ENOMEM;
  m->lease = gtask__strndup(e->element[0]->str, e->element[0]->len);
  if (!m->lease) {
    gtask_msg_free(m);
    return GTASK_ENOMEM;
  }
  *out = m;
  return 0;
}

/* Appends a GET of the fence of each of queues[0..nq) to c (sent with the
 * command that follows: see read_group). */
static int append_fence_reads(redis_broker *b, gtask__conn *c, const char *const *queues, size_t nq) {
  for (size_t i = 0; i < nq; i++) {
    char key[GTASK__KEY_MAX];
    gtask__redis_key(b->r, key, sizeof(key), queues[i], "fence", NULL);
    if (gtask__conn_appendf(c, "GET %s", key) != REDIS_OK) {
      gtask__set_error("redis %s: %s", b->r->conf->describe, c->errstr);
      if (!c->err) c->err = REDIS_ERR_IO; /* a part of the pipeline may be queued */
      return GTASK_ECONN;
    }
  }
  return 0;
}

/* A fence GET's reply: the value, 0 for none, -1 (unknown) for anything else. */
static int64_t fence_value(const redisReply *rep) {
  if (rep && rep->type == REDIS_REPLY_STRING) return strtoll(rep->str, NULL, 10);
  if (rep && rep->type == REDIS_REPLY_NIL) return 0;
  return -1;
}

static void take_streams(consumer_conn *cc, const redisReply *rep, const char *const *queues,
                         char (*keys)[GTASK__KEY_MAX], const int *levels, size_t nq,
                         const int64_t *fence, size_t max, gtask_msg **out, size_t *n);

/* One XREADGROUP on c: `count` per stream, blocking up to block_ms (0: do not
 * block, < 0: for ever).  Appends up to max - *n messages to out; what does not
 * fit (XREADGROUP's COUNT is per stream) goes to cc->surplus, returned first by
 * the next lease.  Entries are leased in the PEL by the time this returns. */
static int read_group(redis_broker *b, gtask__conn *c, consumer_conn *cc, const char *consumer,
                      const char *const *queues, char (*keys)[GTASK__KEY_MAX], const int *levels,
                      size_t nq, size_t count, int64_t block_ms, bool fences, size_t max,
                      gtask_msg **out, size_t *n) {
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, "XREADGROUP");
  gtask__argv_adds(&a, "GROUP");
  gtask__argv_adds(&a, GTASK__GROUP);
  gtask__argv_adds(&a, consumer);
  gtask__argv_adds(&a, "COUNT");
  gtask__argv_addi(&a, (int64_t)count);
  if (block_ms != 0) {
    gtask__argv_adds(&a, "BLOCK");
    gtask__argv_addi(&a, block_ms < 0 ? 0 : block_ms);
  }
  gtask__argv_adds(&a, "STREAMS");
  for (size_t i = 0; i < nq; i++) gtask__argv_adds(&a, keys[i]);
  for (size_t i = 0; i < nq; i++) gtask__argv_adds(&a, ">");

  /* With `fences`, each queue's fence, read just before the lease in the same
   * write (see reclaim.lua): a takeover after this read changes it, so a fence
   * still equal at finish proves none happened to the entries leased here.
   * Without, the messages' epoch is unknown (-1) and their finish checks. */
  int64_t *fence = gtask__calloc(nq, sizeof(*fence));
  redisReply **pre = gtask__calloc(nq, sizeof(*pre));
  /* The connection must outwait the block (0: blocks for ever). */
  if (block_ms != 0) gtask__conn_set_timeout(c, block_ms > 0 ? block_ms + b->r->conf->timeout_ms : 0);
  redisReply *rep = NULL;
  int rc = fence && pre ? 0 : GTASK_ENOMEM;
  for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
    size_t npre = fences ? nq : 0;
    rc = append_fence_reads(b, c, queues, npre);
    if (rc == 0) rc = gtask__redis_cmd_after(b->r, c, npre, pre, &a, &rep);
    for (size_t i = 0; i < nq; i++) {
      fence[i] = i < npre ? fence_value(pre[i]) : -1;
      if (pre[i]) freeReplyObject(pre[i]);
    }
    if (rc != GTASK_EREDIS || attempt > 0 || !strstr(gtask_last_error(), "NOGROUP")) break;
    rc = create_groups(b, c, keys, nq);
  }
  gtask__free(pre);
  if (block_ms != 0 && !c->err) gtask__conn_set_timeout(c, b->r->conf->timeout_ms);
  gtask__argv_free(&a);
  if (rc) {
    gtask__free(fence);
    return rc;
  }
  take_streams(cc, rep, queues, keys, levels, nq, fence, max, out, n);
  freeReplyObject(rep);
  gtask__free(fence);
  return 0;
}

/* Keeps m (leased) in out, or beyond max in cc->surplus. */
static void take_msg(consumer_conn *cc, gtask_msg *m, size_t max, gtask_msg **out, size_t *n) {
  if (*n < max) {
    out[(*n)++] = m;
    return;
  }
  gtask_msg **sp = gtask__realloc(cc->surplus, (cc->nsurplus + 1) * sizeof(*sp));
  if (!sp) {
    gtask_msg_free(m); /* still leased: reclaim brings it back */
    return;
  }
  cc->surplus = sp;
  cc->surplus[cc->nsurplus++] = m;
}

/* The non-blocking read of a queue with priority levels: lease.lua takes up
 * to max - *n entries, level 2 first, in one round trip, and reads the fence
 * before them (so the messages' epoch is known, as with read_group's
 * fences). */
static int read_levels(redis_broker *b, gtask__conn *c, consumer_conn *cc, const char *consumer,
                       const char *queue, size_t max, gtask_msg **out, size_t *n) {
  char keys[4][GTASK__KEY_MAX];
  gtask__argv a;
  gtask__argv_init(&a);
  for (int level = GTASK_PRIORITY_MAX; level >= 0; level--)
    gtask__argv_add(&a, keys[GTASK_PRIORITY_MAX - level],
                    level_key(b, keys[GTASK_PRIORITY_MAX - level], queue, level));
  gtask__argv_add(&a, keys[3], gtask__redis_key(b->r, keys[3], GTASK__KEY_MAX, queue, "fence", NULL));
  gtask__argv_adds(&a, GTASK__GROUP);
  gtask__argv_adds(&a, consumer);
  gtask__argv_addi(&a, (int64_t)(max - *n));
  redisReply *rep;
  int rc = gtask__redis_eval(b->r, c, GTASK__LUA_LEASE, 4, &a, &rep);
  gtask__argv_free(&a);
  if (rc) return rc;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->elements % 2 != 1) {
    rc = gtask__redis_proto_error(b->r, "lease.lua", rep, "[fence, level, entries, ...]");
    freeReplyObject(rep);
    return rc;
  }
  int64_t epoch = fence_value(rep->element[0]);
  for (size_t k = 1; k + 1 < rep->elements; k += 2) {
    const redisReply *lv = rep->element[k], *entries = rep->element[k + 1];
    if (lv->type != REDIS_REPLY_INTEGER || lv->integer < 0 || lv->integer > GTASK_PRIORITY_MAX ||
        entries->type != REDIS_REPLY_ARRAY)
      continue; /* (cannot happen) leased: reclaim brings them back */
    for (size_t e = 0; e < entries->elements; e++) {
      gtask_msg *m;
      if (entry_to_msg(entries->element[e], queue, &m) != 0 || !m) continue;
      m->epoch = epoch;
      m->priority = (int)lv->integer;
      take_msg(cc, m, max, out, n);
    }
  }
  freeReplyObject(rep);
  return 0;
}

static bool in_list(char *const *v, size_t n, const char *queue) {
  for (size_t k = 0; k < n; k++)
    if (strcmp(v[k], queue) == 0) return true;
  return false;
}

/* Adds a copy of queue to *v (under b->mu); out of memory: not added. */
static void list_add(char ***v, size_t *n, const char *queue) {
  char **w = gtask__realloc(*v, (*n + 1) * sizeof(*w));
  if (!w) return;
  *v = w;
  if ((w[*n] = gtask__strdup(queue)) != NULL) (*n)++;
}

/* Whether queue's priority marker has been seen (under b->mu). */
static bool marked_locked(const redis_broker *b, const char *queue) {
  return in_list(b->marked, b->nmarked, queue);
}

static bool is_marked(redis_broker *b, const char *queue) {
  pthread_mutex_lock(&b->mu);
  bool m = marked_locked(b, queue);
  pthread_mutex_unlock(&b->mu);
  return m;
}

/* Records what was read of queue's marker (out of memory: it is read again). */
static void remember(redis_broker *b, const char *queue, bool marked) {
  pthread_mutex_lock(&b->mu);
  if (!in_list(b->checked, b->nchecked, queue)) list_add(&b->checked, &b->nchecked, queue);
  if (marked && !marked_locked(b, queue)) list_add(&b->marked, &b->nmarked, queue);
  pthread_mutex_unlock(&b->mu);
}

/* Reads queue's marker (EXISTS), once per queue before its first lease. */
static void check_marker(redis_broker *b, const char *queue) {
  gtask__conn *c = NULL;
  if (gtask__redis_use(b->r, queue, &c) != 0) return; /* the lease reports it */
  char key[GTASK__KEY_MAX];
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, "EXISTS");
  gtask__argv_add(&a, key, gtask__redis_key(b->r, key, sizeof(key), queue, "prio", NULL));
  redisReply *rep;
  if (gtask__redis_cmd(b->r, c, &a, &rep) == 0) {
    if (rep->type == REDIS_REPLY_INTEGER) remember(b, queue, rep->integer == 1);
    freeReplyObject(rep);
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
}

/* The streams a blocking read names: per queue its level streams, highest
 * first, when it is marked, else its stream.  New arrays (free each). */
typedef struct streams {
  const char **queues;
  char (*keys)[GTASK__KEY_MAX];
  int *levels;
  gtask__redis **node;
  int *hs;
  size_t n;
} streams;

static void streams_free(streams *x) {
  gtask__free(x->queues);
  gtask__free(x->keys);
  gtask__free(x->levels);
  gtask__free(x->node);
  gtask__free(x->hs);
}

static int streams_of(redis_broker *b, const char *const *queues, char (*keys)[GTASK__KEY_MAX],
                      gtask__redis **node, const int *hs, const bool *marked, size_t nq,
                      streams *x) {
  size_t ne = 0;
  for (size_t i = 0; i < nq; i++) ne += marked[i] ? GTASK_PRIORITY_MAX + 1 : 1;
  x->queues = gtask__calloc(ne, sizeof(*x->queues));
  x->keys = gtask__calloc(ne, sizeof(*x->keys));
  x->levels = gtask__calloc(ne, sizeof(*x->levels));
  x->node = gtask__calloc(ne, sizeof(*x->node));
  x->hs = gtask__calloc(ne, sizeof(*x->hs));
  x->n = 0;
  if (!x->queues || !x->keys || !x->levels || !x->node || !x->hs) {
    streams_free(x);
    return GTASK_ENOMEM;
  }
  for (size_t i = 0; i < nq; i++)
    for (int level = marked[i] ? GTASK_PRIORITY_MAX : 0; level >= 0; level--) {
      size_t e = x->n++;
      x->queues[e] = queues[i];
      if (level)
        level_key(b, x->keys[e], queues[i], level);
      else
        memcpy(x->keys[e], keys[i], GTASK__KEY_MAX);
      x->levels[e] = level;
      x->node[e] = node[i];
      x->hs[e] = hs[i];
    }
  return 0;
}

/* Turns an XREADGROUP reply into messages: [[key, [[id, [f, v, ...]], ...]],
 * ...], or nil on timeout / CLIENT UNBLOCK.  Up to max - *n into out, the
 * rest into cc->surplus; fence[i] (or -1 if fence is NULL) is the epoch of
 * queues[i]'s messages. */
static void take_streams(consumer_conn *cc, const redisReply *rep, const char *const *queues,
                         char (*keys)[GTASK__KEY_MAX], const int *levels, size_t nq,
                         const int64_t *fence, size_t max, gtask_msg **out, size_t *n) {
  if (rep->type == REDIS_REPLY_ARRAY) {
    for (size_t s = 0; s < rep->elements; s++) {
      const redisReply *sr = rep->element[s];
      if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2) continue;
      const char *queue = NULL;
      int64_t epoch = -1;
      int level = 0;
      for (size_t i = 0; i < nq; i++)
        if (sr->element[0]->type == REDIS_REPLY_STRING && strcmp(sr->element[0]->str, keys[i]) == 0)
          queue = queues[i], epoch = fence ? fence[i] : -1, level = levels ? levels[i] : 0;
      const redisReply *entries = sr->element[1];
      if (!queue || entries->type != REDIS_REPLY_ARRAY) continue;
      for (size_t e = 0; e < entries->elements; e++) {
        gtask_msg *m;
        /* On ENOMEM (or a malformed entry) the entry stays in the PEL and comes
         * back through reclaim when its lease expires: nothing is lost. */
        if (entry_to_msg(entries->element[e], queue, &m) != 0 || !m) continue;
        m->epoch = epoch;
        m->priority = level;
        take_msg(cc, m, max, out, n);
      }
    }
  }
}

static int lease(redis_broker *b, const char *consumer, const char *const *queues, size_t nq,
                 size_t max, int64_t wait_ms, gtask_msg **out, size_t *n);

/* The id of the lease connection c (CLIENT ID), by which interrupt() unblocks
 * it (CLIENT UNBLOCK).  Both are checked here, when a consumer's connection is
 * opened: a user without them (ACL) could lease, but a shutdown or a retry's
 * wake-up would wait out each blocked lease.  GTASK_ENOPERM names what to
 * grant. */
static int consumer_id(redis_broker *b, gtask__conn *c, long long *id) {
  static const char *const cmds[2] = {"CLIENT ID", "CLIENT UNBLOCK 0"};
  for (int k = 0; k < 2; k++) {
    redisReply *rep = gtask__conn_command(c, cmds[k]);
    if (!rep) {
      gtask__set_error("redis %s: %s: %s", b->r->conf->describe, cmds[k], c->errstr);
      return GTASK_ECONN;
    }
    int rc = 0;
    if (rep->type == REDIS_REPLY_ERROR) {
      rc = gtask__redis_reply_rc(rep->str);
      if (rc == GTASK_ENOPERM)
        gtask__set_error("redis %s: %s: %s (a worker needs +client|id and +client|unblock: "
                         "see the minimal ACL in the README)",
                         b->r->conf->describe, cmds[k], rep->str);
      else
        gtask__set_error("redis %s: %s: %s", b->r->conf->describe, cmds[k], rep->str);
    } else if (rep->type != REDIS_REPLY_INTEGER) {
      gtask__set_error("redis %s: %s: unexpected reply", b->r->conf->describe, cmds[k]);
      rc = GTASK_EPROTO;
    } else if (k == 0) {
      *id = rep->integer;
    }
    freeReplyObject(rep);
    if (rc) return rc;
  }
  return 0;
}

/* The dedicated connection is used outside borrow/return: SIGPIPE is guarded
 * for the whole call instead. */
static int rb_lease(void *impl, const char *consumer, const char *const *queues, size_t nq,
                    size_t max, int64_t wait_ms, gtask_msg **out, size_t *n) {
  gtask__sigpipe_enter();
  int rc = lease(impl, consumer, queues, nq, max, wait_ms, out, n);
  for (int k = 0;
       rc == GTASK_ECONN && *n == 0 && gtask__redis_lease_moved(((redis_broker *)impl)->r, k); k++)
    rc = lease(impl, consumer, queues, nq, max, wait_ms, out, n); /* on the slot's new node */
  gtask__sigpipe_leave(true);
  return rc;
}

/* The index in cc->lc of the lease connection to node, added if new (under
 * b->mu).  -1 if out of memory. */
static int lease_slot(consumer_conn *cc, gtask__redis *node, int hslot) {
  for (size_t k = 0; k < cc->nlc; k++)
    if (cc->lc[k].node == node && cc->lc[k].hslot == hslot) return (int)k;
  lease_conn *v = gtask__realloc(cc->lc, (cc->nlc + 1) * sizeof(*v));
  if (!v) return -1;
  cc->lc = v;
  memset(&v[cc->nlc], 0, sizeof(*v));
  v[cc->nlc].node = node;
  v[cc->nlc].hslot = hslot;
  return (int)cc->nlc++;
}

/* Takes the lease connection to node out of cc (opening one if there is none
 * or it broke) into *c, with its slot *k.  Called without b->mu. */
static int lease_take(redis_broker *b, consumer_conn *cc, gtask__redis *node, int hslot, int *k,
                      gtask__conn **c) {
  pthread_mutex_lock(&b->mu);
  *k = lease_slot(cc, node, hslot);
  *c = NULL;
  if (*k >= 0) {
    *c = cc->lc[*k].c;
    cc->lc[*k].c = NULL; /* ours while we use it */
  }
  pthread_mutex_unlock(&b->mu);
  if (*k < 0) return GTASK_ENOMEM;
  if (*c && ((*c)->err || (*c)->gen != gtask__redis_gen(node))) { /* broken, or to a demoted master */
    gtask__conn_free(*c);
    *c = NULL;
  }
  if (*c) return 0;
  /* A dedicated connection, outside the pool (it blocks for long); it now
   * belongs to the consumer (the borrow's SIGPIPE guard is balanced here;
   * rb_lease has its own). */
  int rc = gtask__redis_get_own(node, c);
  if (rc) return rc;
  gtask__sigpipe_leave(true);
  long long id = 0;
  rc = consumer_id(b, *c, &id);
  if (rc) {
    gtask__conn_free(*c);
    *c = NULL;
    return rc;
  }
  pthread_mutex_lock(&b->mu);
  cc->lc[*k].client_id = id;
  pthread_mutex_unlock(&b->mu);
  return 0;
}

/* Gives c back to slot k of cc (a broken one is closed). */
static void lease_give(redis_broker *b, consumer_conn *cc, int k, gtask__conn *c) {
  if (c && c->err) {
    gtask__conn_free(c);
    c = NULL;
  }
  pthread_mutex_lock(&b->mu);
  cc->lc[k].c = c;
  cc->lc[k].blocked = false;
  pthread_mutex_unlock(&b->mu);
}

static int lease_nodes(redis_broker *b, consumer_conn *cc, const char *consumer,
                       const char *const *queues, char (*keys)[GTASK__KEY_MAX],
                       gtask__redis **node, const int *hs, const bool *marked, size_t nq,
                       size_t max, int64_t wait_ms, gtask_msg **out, size_t *n);

static int lease(redis_broker *b, const char *consumer, const char *const *queues, size_t nq,
                 size_t max, int64_t wait_ms, gtask_msg **out, size_t *n) {
  *n = 0;
  if (nq == 0 || max == 0) return GTASK_EINVAL;

  pthread_mutex_lock(&b->mu);
  consumer_conn *cc = find_consumer(b, consumer, true);
  if (!cc) {
    pthread_mutex_unlock(&b->mu);
    return GTASK_ENOMEM;
  }
  if (cc->nsurplus) { /* leased by an earlier multi-queue read */
    size_t k = cc->nsurplus < max ? cc->nsurplus : max;
    memcpy(out, cc->surplus, k * sizeof(*out));
    memmove(cc->surplus, cc->surplus + k, (cc->nsurplus - k) * sizeof(*out));
    cc->nsurplus -= k;
    *n = k;
    pthread_mutex_unlock(&b->mu);
    return 0;
  }
  if (cc->interrupted) { /* an interrupt since the last lease: consume it */
    cc->interrupted = false;
    pthread_mutex_unlock(&b->mu);
    return 0;
  }
  /* The fence read costs an idle worker a wake-up on the path from send to
   * result (its reply comes before the blocked lease's); it pays off for
   * batches, where finish.lua then skips its lease check.  So it is read
   * after a lease of several messages only. */
  bool fences = cc->last_leased > 1;
  pthread_mutex_unlock(&b->mu);

  char(*keys)[GTASK__KEY_MAX] = gtask__calloc(nq, sizeof(*keys));
  gtask__redis **node = gtask__calloc(nq, sizeof(*node));
  int *hs = gtask__calloc(nq, sizeof(*hs));
  bool *marked = gtask__calloc(nq, sizeof(*marked));
  int rc = keys && node && hs && marked ? 0 : GTASK_ENOMEM;
  bool one_group = true, any_marked = false;
  for (size_t i = 0; i < nq && rc == 0; i++) {
    pthread_mutex_lock(&b->mu);
    bool checked = in_list(b->checked, b->nchecked, queues[i]);
    pthread_mutex_unlock(&b->mu);
    if (!checked) check_marker(b, queues[i]);
    pthread_mutex_lock(&b->mu);
    any_marked |= marked[i] = marked_locked(b, queues[i]);
    pthread_mutex_unlock(&b->mu);
  }
  for (size_t i = 0; i < nq && rc == 0; i++) {
    size_t len = gtask__redis_key(b->r, keys[i], GTASK__KEY_MAX, queues[i], "stream", NULL);
    node[i] = gtask__redis_route(b->r, keys[i], len);
    hs[i] = b->r->cluster ? (int)gtask__key_slot(keys[i], len) : -1;
    one_group &= node[i] == node[0] && hs[i] == hs[0];
  }
  if (rc == 0 && !one_group) {
    /* A cluster whose slots put these queues in several hash slots. */
    rc = lease_nodes(b, cc, consumer, queues, keys, node, hs, marked, nq, max, wait_ms, out, n);
    goto done;
  }
  int k = -1;
  gtask__conn *c = NULL;
  if (rc == 0) rc = lease_take(b, cc, node[0], hs[0], &k, &c);
  if (rc) goto done;

  if (nq > 1 || any_marked) {
    /* Queues in the order given are priorities: take from the first that has
     * work, without blocking, so that no read takes more than max; a queue
     * with levels in one lease.lua, its levels highest first. */
    for (size_t i = 0; i < nq && *n < max && rc == 0; i++)
      rc = marked[i] ? read_levels(b, c, cc, consumer, queues[i], max, out, n)
                     : read_group(b, c, cc, consumer, queues + i, keys + i, NULL, 1, max - *n, 0,
                                  fences, max, out, n);
    if (rc || *n || wait_ms == 0) goto give;
  }

  pthread_mutex_lock(&b->mu);
  bool interrupted = cc->interrupted;
  cc->lc[k].blocked = !interrupted;
  pthread_mutex_unlock(&b->mu);
  if (interrupted) goto give;
  /* All empty: block on every queue at once (on every level of one with
   * levels: a blocked client is served from the stream that gets an entry);
   * with several, one entry each. */
  if (any_marked) {
    streams x;
    rc = streams_of(b, queues, keys, node, hs, marked, nq, &x);
    if (rc == 0) {
      rc = read_group(b, c, cc, consumer, x.queues, x.keys, x.levels, x.n, nq > 1 ? 1 : max,
                      wait_ms, false, max, out, n);
      streams_free(&x);
    }
  } else {
    rc = read_group(b, c, cc, consumer, queues, keys, NULL, nq, nq > 1 ? 1 : max, wait_ms, fences,
                    max, out, n);
  }
give:
  lease_give(b, cc, k, c);
done:
  gtask__free(keys);
  gtask__free(node);
  gtask__free(hs);
  gtask__free(marked);
  /* Messages leased before a later read failed are leased in Redis: they are
   * returned (the caller would drop them with the error, and they would wait
   * for reclaim); the broken connection is reopened by the next lease. */
  if (rc && *n) rc = 0;
  pthread_mutex_lock(&b->mu);
  cc->last_leased = *n;
  cc->interrupted = false; /* this lease has returned: the interrupt is served */
  pthread_mutex_unlock(&b->mu);
  return rc;
}

/* A lease over queues on several cluster nodes (node[i] is queues[i]'s):
 * first a read without blocking of each queue in priority order, each on its
 * node's lease connection; if all are empty, one blocking XREADGROUP per node
 * over that node's queues, sent to all nodes at once.  The first to answer
 * ends the wait: the others are woken (CLIENT UNBLOCK) and their replies read
 * too -- anything they leased is kept (beyond max, in the surplus), so no
 * entry is left leased to no one.  No fences are read (finish.lua then checks
 * each lease). */
static int lease_nodes(redis_broker *b, consumer_conn *cc, const char *consumer,
                       const char *const *queues, char (*keys)[GTASK__KEY_MAX],
                       gtask__redis **node, const int *hs, const bool *marked, size_t nq,
                       size_t max, int64_t wait_ms, gtask_msg **out, size_t *n) {
  enum { MAXG = 64 };
  gtask__redis *gnode[MAXG];
  int ghs[MAXG];  /* the group's hash slot (-1 on one server) */
  int slot[MAXG]; /* the group's lease connection: an index into cc->lc */
  gtask__conn *gc[MAXG];
  bool sent[MAXG];
  size_t ng = 0;
  int rc = 0;
  streams x = {0}; /* the streams of the blocking reads */
  for (size_t i = 0; i < nq; i++) {
    size_t g = 0;
    while (g < ng && (gnode[g] != node[i] || ghs[g] != hs[i])) g++;
    if (g == ng && ng < MAXG) {
      gnode[ng] = node[i];
      ghs[ng] = hs[i];
      gc[ng] = NULL;
      sent[ng] = false;
      slot[ng++] = -1;
    }
  }
  for (size_t g = 0; g < ng && rc == 0; g++) rc = lease_take(b, cc, gnode[g], ghs[g], &slot[g], &gc[g]);
  /* A queue whose read fails (its slot in migration: ASK, TRYAGAIN; its
   * node down) does not keep the others from being read: the first failure
   * is returned only if no queue gave anything, and then without blocking
   * (the worker backs off and leases again). */
  bool failed_group[MAXG] = {false};
  int failed = 0;
  for (size_t i = 0; i < nq && *n < max && rc == 0; i++) {
    size_t g = 0;
    while (g < ng && (gnode[g] != node[i] || ghs[g] != hs[i])) g++;
    if (g == ng || failed_group[g]) continue;
    int r = marked[i] ? read_levels(b, gc[g], cc, consumer, queues[i], max, out, n)
                      : read_group(b, gc[g], cc, consumer, queues + i, keys + i, NULL, 1, max - *n,
                                   0, false, max, out, n);
    if (r && !failed) failed = r;
    if (r) failed_group[g] = true;
  }
  if (rc == 0 && *n == 0) rc = failed;
  if (rc || *n || wait_ms == 0) goto give;
  /* The blocking reads name every level stream of a queue with levels (all
   * in the queue's slot): from here on, one entry per stream. */
  rc = streams_of(b, queues, keys, node, hs, marked, nq, &x);
  if (rc) goto give;
  queues = x.queues;
  keys = x.keys;
  node = x.node;
  hs = x.hs;
  nq = x.n;

  pthread_mutex_lock(&b->mu);
  bool interrupted = cc->interrupted;
  for (size_t g = 0; g < ng; g++) cc->lc[slot[g]].blocked = !interrupted;
  pthread_mutex_unlock(&b->mu);
  if (interrupted) goto give;
  int64_t timeout = b->r->conf->timeout_ms;
  for (size_t g = 0; g < ng && rc == 0; g++) {
    gtask__argv a;
    gtask__argv_init(&a);
    gtask__argv_adds(&a, "XREADGROUP");
    gtask__argv_adds(&a, "GROUP");
    gtask__argv_adds(&a, GTASK__GROUP);
    gtask__argv_adds(&a, consumer);
    gtask__argv_adds(&a, "COUNT");
    gtask__argv_adds(&a, "1");
    gtask__argv_adds(&a, "BLOCK");
    gtask__argv_addi(&a, wait_ms < 0 ? 0 : wait_ms);
    gtask__argv_adds(&a, "STREAMS");
    for (size_t i = 0; i < nq; i++)
      if (node[i] == gnode[g] && hs[i] == ghs[g]) gtask__argv_adds(&a, keys[i]);
    for (size_t i = 0; i < nq; i++)
      if (node[i] == gnode[g] && hs[i] == ghs[g]) gtask__argv_adds(&a, ">");
    gtask__conn_set_timeout(gc[g], wait_ms > 0 ? wait_ms + timeout : 0);
    rc = gtask__redis_send(gnode[g], gc[g], &a);
    sent[g] = rc == 0;
    gtask__argv_free(&a);
  }
  /* The first reply, then wake the others and read theirs. */
  int first = -1;
  if (rc == 0) {
    first = gtask__conn_wait_any(gc, ng, wait_ms < 0 ? -1 : wait_ms + timeout);
    if (first < 0) {
      gtask__set_error("redis %s: a blocked lease outlived its time", b->r->conf->describe);
      rc = GTASK_ECONN;
    }
  }
  for (size_t g = 0; g < ng; g++) {
    if (!sent[g]) continue;
    if ((int)g != first && !gc[g]->err) {
      gtask__conn *u;
      if (gtask__redis_get(gnode[g], &u) == 0) {
        pthread_mutex_lock(&b->mu);
        long long id = cc->lc[slot[g]].client_id;
        pthread_mutex_unlock(&b->mu);
        /* The XREADGROUP may not be blocked yet (UNBLOCK answers 0): again,
         * until it is woken or its reply is there. */
        for (int t = 0; t < 200; t++) {
          redisReply *ur = gtask__conn_command(u, "CLIENT UNBLOCK %lld", id);
          bool woken = !ur || ur->type != REDIS_REPLY_INTEGER || ur->integer == 1;
          if (ur) freeReplyObject(ur);
          if (woken || gtask__conn_wait_any(&gc[g], 1, 5) == 0) break;
        }
        gtask__redis_put(gnode[g], u);
      }
    }
    redisReply *rep;
    int r2 = gtask__redis_recv(gnode[g], gc[g], "XREADGROUP", &rep);
    const char **gq = gtask__calloc(nq, sizeof(*gq));
    char(*gk)[GTASK__KEY_MAX] = gtask__calloc(nq, sizeof(*gk));
    int *gl = gtask__calloc(nq, sizeof(*gl));
    size_t m = 0;
    for (size_t i = 0; gq && gk && gl && i < nq; i++)
      if (node[i] == gnode[g] && hs[i] == ghs[g]) {
        gq[m] = queues[i];
        gl[m] = x.levels[i];
        memcpy(gk[m++], keys[i], GTASK__KEY_MAX);
      }
    if (r2 == 0) {
      /* Without memory for the names, the entries stay leased: reclaim
       * brings them back when the lease expires. */
      if (gq && gk && gl) take_streams(cc, rep, gq, gk, gl, m, NULL, max, out, n);
      freeReplyObject(rep);
    } else if (r2 == GTASK_EREDIS && strstr(gtask_last_error(), "NOGROUP")) {
      if (gk) create_groups(b, gc[g], gk, m); /* the next lease finds them */
    } else if (r2 && rc == 0) {
      rc = r2;
    }
    gtask__free(gq);
    gtask__free(gk);
    gtask__free(gl);
    if (!gc[g]->err) gtask__conn_set_timeout(gc[g], timeout);
  }
give:
  for (size_t g = 0; g < ng; g++)
    if (slot[g] >= 0) lease_give(b, cc, slot[g], gc[g]);
  streams_free(&x);
  return rc;
}

static int rb_interrupt(void *impl, const char *consumer) {
  redis_broker *b = impl;
  pthread_mutex_lock(&b->mu);
  consumer_conn *cc = find_consumer(b, consumer, true);
  if (!cc) {
    pthread_mutex_unlock(&b->mu);
    return GTASK_ENOMEM;
  }
  cc->interrupted = true;
  pthread_mutex_unlock(&b->mu);
  /* The lease may have sent XREADGROUP but Redis may not have blocked it yet
   * (CLIENT UNBLOCK then answers 0): try again until it is no longer blocked.
   * On several cluster nodes, waking one ends the lease. */
  for (int attempt = 0; attempt < 200; attempt++) {
    bool any = false;
    for (size_t k = 0;; k++) {
      pthread_mutex_lock(&b->mu);
      bool more = k < cc->nlc, blocked = more && cc->lc[k].blocked;
      long long id = more ? cc->lc[k].client_id : 0;
      gtask__redis *node = more ? cc->lc[k].node : NULL;
      pthread_mutex_unlock(&b->mu);
      if (!more) break;
      if (!blocked) continue;
      any = true;
      gtask__conn *c;
      int rc = gtask__redis_get(node, &c);
      if (rc) return rc;
      redisReply *rep = gtask__conn_command(c, "CLIENT UNBLOCK %lld TIMEOUT", id);
      long long unblocked = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
      if (rep && rep->type == REDIS_REPLY_ERROR) {
        /* Not a race to retry: the lease stays blocked until its own timeout. */
        gtask__set_error("redis %s: CLIENT UNBLOCK: %s", node->conf->describe, rep->str);
        rc = gtask__redis_reply_rc(rep->str);
        freeReplyObject(rep);
        gtask__redis_put(node, c);
        return rc;
      }
      if (!rep) {
        gtask__set_error("redis %s: CLIENT UNBLOCK: %s", node->conf->describe, c->errstr);
        gtask__redis_put(node, c);
        return GTASK_ECONN;
      }
      freeReplyObject(rep);
      gtask__redis_put(node, c);
      if (unblocked) return 0;
    }
    if (!any) return 0;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* ---------------------------------------------------------------- extend, finish */

/* Deliveries of several levels (tasks of a queue with levels finishing in
 * turn) would make one script call per change of queue or level: perm[0..n)
 * (out) is the order in which extend and finish take them instead, grouped
 * by queue and level, stably.  False, perm untouched, when all have the
 * level of the first (always on a queue without levels: a pass over the
 * levels, no allocation), or out of memory (correct, only more calls). */
static bool level_order(gtask_msg *const *msgs, size_t n, size_t **perm) {
  bool mixed = false;
  for (size_t k = 1; k < n && !mixed; k++) mixed = msgs[k]->priority != msgs[0]->priority;
  if (!mixed) return false;
  size_t *p = gtask__malloc(n * sizeof(*p));
  bool *taken = gtask__calloc(n, sizeof(*taken));
  if (!p || !taken) {
    gtask__free(p);
    gtask__free(taken);
    return false;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (taken[i]) continue;
    for (size_t j = i; j < n; j++)
      if (!taken[j] && msgs[j]->priority == msgs[i]->priority &&
          strcmp(msgs[j]->queue, msgs[i]->queue) == 0) {
        taken[j] = true;
        p[m++] = j;
      }
  }
  gtask__free(taken);
  *perm = p;
  return true;
}

static int extend_runs(redis_broker *b, const char *consumer, gtask_msg *const *msgs, size_t n,
                       bool *lost);

/* Every run of one queue is extended, even after another failed (its node
 * down, or failing over): a node that cannot be reached must not cost the
 * leases held on the others.  The first error is returned; the entries of a
 * run that failed are not lost (lost[] false). */
static int rb_extend(void *impl, const char *consumer, gtask_msg *const *msgs, size_t n,
                     bool *lost) {
  redis_broker *b = impl;
  size_t *perm = NULL;
  if (!level_order(msgs, n, &perm)) return extend_runs(b, consumer, msgs, n, lost);
  gtask_msg **v = gtask__malloc(n * sizeof(*v));
  bool *l = gtask__malloc(n * sizeof(*l));
  int rc = v && l ? 0 : GTASK_ENOMEM;
  if (rc) memset(lost, 0, n * sizeof(*lost));
  if (rc == 0) {
    for (size_t k = 0; k < n; k++) v[k] = msgs[perm[k]];
    rc = extend_runs(b, consumer, v, n, l);
    for (size_t k = 0; k < n; k++) lost[perm[k]] = l[k]; /* (set even on an error) */
  }
  gtask__free(v);
  gtask__free(l);
  gtask__free(perm);
  return rc;
}

static int extend_runs(redis_broker *b, const char *consumer, gtask_msg *const *msgs, size_t n,
                       bool *lost) {
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  char why[512] = ""; /* the first error's detail */
  gtask__argv a;
  gtask__argv_init(&a);
  for (size_t i = 0; i < n;) {
    size_t j = level_run_end(msgs, n, i);
    for (size_t k = i; k < j; k++) lost[k] = false;
    int rr = gtask__redis_use(b->r, msgs[i]->queue, &c);
    if (rr == 0) {
      char key[GTASK__KEY_MAX];
      gtask__argv_reset(&a);
      gtask__argv_add(&a, key, level_key(b, key, msgs[i]->queue, level_of(msgs[i])));
      gtask__argv_adds(&a, GTASK__GROUP);
      gtask__argv_adds(&a, consumer);
      for (size_t k = i; k < j; k++) gtask__argv_adds(&a, msgs[k]->lease ? msgs[k]->lease : "0-0");
      redisReply *rep;
      rr = gtask__redis_eval(b->r, c, GTASK__LUA_EXTEND, 1, &a, &rep);
      if (rr == 0) {
        rr = gtask__redis_int_array(b->r, "extend.lua", rep, j - i);
        for (size_t k = i; k < j && rr == 0; k++) lost[k] = rep->element[k - i]->integer != 1;
        freeReplyObject(rep);
      }
    }
    if (rr) {
      if (rc == 0) {
        rc = rr;
        gtask__fmt(why, sizeof(why), "%s", gtask_last_error());
      }
      gtask__redis_put(b->r, c); /* a fresh connection for the next run */
      c = NULL;
    }
    i = j;
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  if (rc) gtask__set_error("%s", why);
  return rc;
}

/* Stream entry ids "ms-seq" in order (a malformed one sorts as 0-0). */
static void entry_id_parse(const char *eid, uint64_t v[2]) {
  char *end;
  v[0] = strtoull(eid, &end, 10);
  v[1] = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

static bool entry_id_less(const uint64_t a[2], const uint64_t b[2]) {
  return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1]);
}

/* A fin finish.lua takes in its short form: a fresh done fin with status
 * SUCCESS and its result recorded (three arguments and one key, not eight and
 * two: Redis parses and converts every one of them). */
static bool fin_short(const gtask_fin *f, bool with_state) {
  return with_state && f->kind == GTASK_FIN_DONE && f->status == GTASK_SUCCESS && f->fresh &&
         f->result;
}

/* A done FAILURE fin whose message is to be kept in the failed set (until
 * next_due_ms). */
static bool fin_keeps_failed(const gtask_fin *f) {
  return f->kind == GTASK_FIN_DONE && f->status == GTASK_FAILURE && f->next && f->next_due_ms > 0;
}

static int finish_runs(redis_broker *b, const char *consumer, gtask_fin *fins, size_t n,
                       void *state);

/* Of two errors of one call's parts, the one to report: a permanent one (the
 * caller must isolate its fins) over a transient one (it retries them). */
static int worse_rc(int rc, int r) {
  if (rc == 0 || (gtask__rc_transient(rc) && !gtask__rc_transient(r))) return r;
  return rc;
}

/* In runs of one queue and level (level_order), the fins' fenced and settled
 * copied back. */
static int rb_finish(void *impl, const char *consumer, gtask_fin *fins, size_t n, void *state) {
  redis_broker *b = impl;
  bool mixed = false;
  for (size_t k = 1; k < n && !mixed; k++) mixed = fins[k].msg->priority != fins[0].msg->priority;
  if (!mixed) return finish_runs(b, consumer, fins, n, state);
  gtask_msg **msgs = gtask__malloc(n * sizeof(*msgs));
  size_t *perm = NULL;
  for (size_t k = 0; msgs && k < n; k++) msgs[k] = fins[k].msg;
  bool sorted = msgs && level_order(msgs, n, &perm);
  gtask__free(msgs);
  gtask_fin *v = sorted ? gtask__malloc(n * sizeof(*v)) : NULL;
  if (!v) {
    gtask__free(perm);
    return finish_runs(b, consumer, fins, n, state);
  }
  for (size_t k = 0; k < n; k++) v[k] = fins[perm[k]];
  int rc = finish_runs(b, consumer, v, n, state);
  for (size_t k = 0; k < n; k++) {
    fins[perm[k]].fenced = v[k].fenced;
    fins[perm[k]].settled = v[k].settled;
  }
  gtask__free(v);
  gtask__free(perm);
  return rc;
}

/* One finish.lua per run.  A run that fails (its node down, its slot in
 * migration: TRYAGAIN) does not stop the others: each run that succeeds marks
 * its fins settled, and the error returned is a permanent one if any run met
 * one (the caller then isolates the fins), else the first. */
static int finish_runs(redis_broker *b, const char *consumer, gtask_fin *fins, size_t n,
                       void *state) {
  gtask__redis *st = state ? gtask__redis_backend_pool(state) : NULL;
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  gtask__argv a;
  gtask__argv_init(&a);
  char(*keys)[GTASK__KEY_MAX] = NULL;
  /* A run's fins in the order finish.lua takes them: general ones first, then
   * short ones (keys, arguments and the reply all follow it). */
  gtask_fin **ord = gtask__malloc((n ? n : 1) * sizeof(*ord));
  if (!ord) rc = GTASK_ENOMEM;
  for (size_t i = 0; i < n && ord;) {
    size_t j = fin_run_end(fins, n, i), m = j - i, ng = 0, ns = 0;
    for (size_t k = i; k < j; k++) ng += !fin_short(&fins[k], st);
    for (size_t k = i; k < j; k++) {
      if (fin_short(&fins[k], st))
        ord[ng + ns++] = &fins[k];
      else
        ord[k - i - ns] = &fins[k];
    }
    size_t nk = 6 + (st ? 2 * ng + ns : 0);
    bool keep = false; /* a fin keeps a failed task: name the failed set too */
    for (size_t k = i; k < j && !keep; k++) keep = fin_keeps_failed(&fins[k]);
    char(*k2)[GTASK__KEY_MAX] = gtask__realloc(keys, (nk + 1) * sizeof(*keys));
    if (!k2) {
      rc = GTASK_ENOMEM;
      break;
    }
    keys = k2;
    const char *q = fins[i].msg->queue;
    int r = gtask__redis_use(b->r, q, &c);
    if (r) {
      rc = worse_rc(rc, r);
      i = j;
      continue;
    }
    gtask__argv_reset(&a);
    gtask__argv_add(&a, keys[0], level_key(b, keys[0], q, level_of(fins[i].msg)));
    gtask__argv_add(&a, keys[1], gtask__redis_key(b->r, keys[1], GTASK__KEY_MAX, q, "sched", NULL));
    gtask__argv_add(&a, keys[2], gtask__redis_key(b->r, keys[2], GTASK__KEY_MAX, q, "dead", NULL));
    gtask__argv_add(&a, keys[3], gtask__redis_key(b->r, keys[3], GTASK__KEY_MAX, q, "stats", NULL));
    gtask__argv_add(&a, keys[4], gtask__redis_key(st ? st : b->r, keys[4], GTASK__KEY_MAX, q, "pending", NULL));
    gtask__argv_add(&a, keys[5], gtask__redis_key(b->r, keys[5], GTASK__KEY_MAX, q, "fence", NULL));
    if (st) {
      char(*kp)[GTASK__KEY_MAX] = keys + 6;
      for (size_t e = 0; e < m; e++) {
        const char *id = ord[e]->msg->id;
        if (e < ng) {
          gtask__argv_add(&a, *kp, gtask__redis_key(st, *kp, GTASK__KEY_MAX, q, "t", id));
          kp++;
        }
        gtask__argv_add(&a, *kp, gtask__redis_key(st, *kp, GTASK__KEY_MAX, q, "n", id));
        kp++;
      }
    }
    if (keep) {
      gtask__argv_add(&a, keys[nk], gtask__redis_key(b->r, keys[nk], GTASK__KEY_MAX, q, "failed", NULL));
      nk++;
    }
    gtask__argv_adds(&a, GTASK__GROUP);
    gtask__argv_adds(&a, consumer);
    gtask__argv_adds(&a, st ? "1" : "0");
    gtask__argv_addi(&a, st ? st->conf->expire_ms : 0);
    /* The batch's id range, for the script's one lease check over it. */
    const char *lo = NULL, *hi = NULL;
    uint64_t vlo[2] = {0, 0}, vhi[2] = {0, 0};
    for (size_t k = i; k < j; k++) {
      const char *eid = fins[k].msg->lease ? fins[k].msg->lease : "0-0";
      uint64_t v[2];
      entry_id_parse(eid, v);
      if (!lo || entry_id_less(v, vlo)) lo = eid, vlo[0] = v[0], vlo[1] = v[1];
      if (!hi || entry_id_less(vhi, v)) hi = eid, vhi[0] = v[0], vhi[1] = v[1];
    }
    gtask__argv_adds(&a, lo);
    gtask__argv_adds(&a, hi);
    gtask__argv_addi(&a, (int64_t)ng);
    /* The fence all the batch's leases began under, if it is one (finish.lua
     * may then skip its lease check). */
    int64_t epoch = fins[i].msg->epoch;
    for (size_t k = i + 1; k < j && epoch >= 0; k++)
      if (fins[k].msg->epoch != epoch) epoch = -1;
    if (epoch >= 0)
      gtask__argv_addi(&a, epoch);
    else
      gtask__argv_adds(&a, "");
    for (size_t e = 0; e < m; e++) {
      const gtask_fin *f = ord[e];
      gtask__argv_adds(&a, f->msg->lease ? f->msg->lease : "0-0");
      if (e >= ng) {
        gtask__argv_adds(&a, f->msg->id);
        gtask__argv_add(&a, f->result, f->result_len);
        continue;
      }
      gtask__argv_addi(&a, f->kind);
      gtask__argv_adds(&a, gtask_status_name(f->status));
      gtask__argv_add(&a, f->result ? f->result : "", f->result ? f->result_len : 0);
      if (f->next)
        gtask__argv_add(&a, f->next, f->next_len);
      else if (f->kind == GTASK_FIN_DONE)
        gtask__argv_add(&a, "", 0); /* nothing is queued again: spare the bytes */
      else
        gtask__argv_add(&a, f->msg->body, f->msg->len);
      gtask__argv_addi(&a, f->next_due_ms);
      gtask__argv_adds(&a, f->msg->id);
      gtask__argv_adds(&a, f->fresh ? "1" : "0");
    }
    if (keep) gtask__argv_addi(&a, gtask__now_ms()); /* for the failed set's trim */
    redisReply *rep;
    r = gtask__redis_eval(b->r, c, GTASK__LUA_FINISH, nk, &a, &rep);
    if (r == 0) {
      r = gtask__redis_int_array(b->r, "finish.lua", rep, m);
      for (size_t e = 0; e < m && r == 0; e++) {
        /* 3: this fin's own earlier run, whose reply was lost, applied it. */
        ord[e]->fenced = rep->element[e]->integer != 1 && rep->element[e]->integer != 3;
        ord[e]->settled = true;
      }
      freeReplyObject(rep);
    }
    if (r) rc = worse_rc(rc, r);
    i = j;
  }
  gtask__free(ord);
  gtask__free(keys);
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* ---------------------------------------------------------------- recovery */

/* reclaim.lua on the stream of one level of queue, adding to out[*n..max). */
static int reclaim_level(redis_broker *b, const char *consumer, const char *queue, int level,
                         int64_t lease_ms, size_t max, gtask_msg **out, size_t *n) {
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char keys[2][GTASK__KEY_MAX], cursor[64] = "0-0";
  gtask__argv a;
  gtask__argv_init(&a);
  /* XAUTOCLAIM examines a bounded slice of the PEL per call: follow the cursor
   * a few times so that live leases at the front do not hide expired ones. */
  for (int round = 0; round < 16 && *n < max && rc == 0; round++) {
    gtask__argv_reset(&a);
    gtask__argv_add(&a, keys[0], level_key(b, keys[0], queue, level));
    gtask__argv_add(&a, keys[1], gtask__redis_key(b->r, keys[1], GTASK__KEY_MAX, queue, "fence", NULL));
    gtask__argv_adds(&a, GTASK__GROUP);
    gtask__argv_adds(&a, consumer);
    gtask__argv_addi(&a, lease_ms);
    gtask__argv_adds(&a, cursor);
    gtask__argv_addi(&a, (int64_t)(max - *n));
    redisReply *rep;
    rc = gtask__redis_eval(b->r, c, GTASK__LUA_RECLAIM, 2, &a, &rep);
    if (rc == GTASK_EREDIS && strstr(gtask_last_error(), "NOGROUP")) {
      rc = 0; /* no group yet: nothing was ever leased */
      break;
    }
    if (rc) break;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY ||
        rep->element[2]->type != REDIS_REPLY_INTEGER) {
      rc = gtask__redis_proto_error(b->r, "reclaim.lua", rep,
                                    "[cursor, entries, fence] (a string, an array, an integer)");
      freeReplyObject(rep);
      break;
    }
    gtask__fmt(cursor, sizeof(cursor), "%s", rep->element[0]->str);
    const redisReply *entries = rep->element[1];
    for (size_t e = 0; e < entries->elements && *n < max; e++) {
      gtask_msg *m;
      int r2 = entry_to_msg(entries->element[e], queue, &m);
      if (r2 == GTASK_ENOMEM) {
        rc = r2;
        break;
      }
      if (!m) continue;
      m->epoch = rep->element[2]->integer; /* the fence this takeover set */
      m->priority = level;
      out[(*n)++] = m;
    }
    freeReplyObject(rep);
    if (strcmp(cursor, "0-0") == 0) break;
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* A queue with priority levels: each level's stream, highest first (a
 * reclaim per level: reclaims are periodic, not on a task's path). */
static int rb_reclaim(void *impl, const char *consumer, const char *queue, int64_t lease_ms,
                      size_t max, gtask_msg **out, size_t *n) {
  redis_broker *b = impl;
  *n = 0;
  int rc = 0;
  for (int level = is_marked(b, queue) ? GTASK_PRIORITY_MAX : 0; level >= 0 && rc == 0 && *n < max;
       level--)
    rc = reclaim_level(b, consumer, queue, level, lease_ms, max, out, n);
  return rc;
}

static int rb_promote(void *impl, const char *queue, size_t max, int64_t *next_due_ms) {
  redis_broker *b = impl;
  *next_due_ms = 0;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char ks[GTASK__KEY_MAX], kz[GTASK__KEY_MAX], kp[GTASK__KEY_MAX], k1[GTASK__KEY_MAX],
      k2[GTASK__KEY_MAX];
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_add(&a, ks, gtask__redis_key(b->r, ks, sizeof(ks), queue, "stream", NULL));
  gtask__argv_add(&a, kz, gtask__redis_key(b->r, kz, sizeof(kz), queue, "sched", NULL));
  gtask__argv_add(&a, kp, gtask__redis_key(b->r, kp, sizeof(kp), queue, "prio", NULL));
  gtask__argv_add(&a, k1, level_key(b, k1, queue, 1));
  gtask__argv_add(&a, k2, level_key(b, k2, queue, 2));
  gtask__argv_addi(&a, gtask__now_ms());
  gtask__argv_addi(&a, (int64_t)max);
  redisReply *rep;
  rc = gtask__redis_eval(b->r, c, GTASK__LUA_PROMOTE, 5, &a, &rep);
  if (rc == 0) {
    rc = gtask__redis_int_array(b->r, "promote.lua", rep, 2);
    if (rc == 0) *next_due_ms = rep->element[1]->integer;
    freeReplyObject(rep);
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* ---------------------------------------------------------------- stats, plumbing */

static int64_t int_reply(const redisReply *rep) {
  return rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
}

/* An integer field of an HMGET reply (nil or not a number: 0). */
static int64_t field_int(const redisReply *rep, size_t k) {
  if (!rep || rep->type != REDIS_REPLY_ARRAY || k >= rep->elements ||
      rep->element[k]->type != REDIS_REPLY_STRING)
    return 0;
  return strtoll(rep->element[k]->str, NULL, 10);
}

/* A reply by which a cluster node turns a command away (it ran nothing). */
static bool cluster_refusal(const redisReply *p) {
  return p && p->type == REDIS_REPLY_ERROR &&
         (strncmp(p->str, "MOVED ", 6) == 0 || strncmp(p->str, "ASK ", 4) == 0 ||
          strncmp(p->str, "TRYAGAIN", 8) == 0 || strncmp(p->str, "CLUSTERDOWN", 11) == 0);
}

static int stats_once(redis_broker *b, const char *queue, gtask_queue_stats *out);

/* The counts, read in one pipeline.  On a cluster, a pipeline the node
 * turned away (a slot that moved: the pipeline is not redirected, see
 * pool.c) is read again where the slot is now, a few times. */
static int rb_stats(void *impl, const char *queue, gtask_queue_stats *out) {
  redis_broker *b = impl;
  int rc;
  for (int attempt = 0;; attempt++) {
    rc = stats_once(b, queue, out);
    if (rc != GTASK_ECONN || !b->r->cluster || attempt == 4) break;
    gtask__cluster_stale(b->r);
    struct timespec ts = {0, (long)(20 << attempt) * 1000000L};
    nanosleep(&ts, NULL);
  }
  return rc;
}

static int stats_once(redis_broker *b, const char *queue, gtask_queue_stats *out) {
  memset(out, 0, sizeof(*out));
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char ks[GTASK__KEY_MAX], kz[GTASK__KEY_MAX], kd[GTASK__KEY_MAX], kc[GTASK__KEY_MAX];
  gtask__redis_key(b->r, ks, sizeof(ks), queue, "stream", NULL);
  gtask__redis_key(b->r, kz, sizeof(kz), queue, "sched", NULL);
  gtask__redis_key(b->r, kd, sizeof(kd), queue, "dead", NULL);
  gtask__redis_key(b->r, kc, sizeof(kc), queue, "stats", NULL);
  gtask__conn_appendf(c, "XLEN %s", ks);
  gtask__conn_appendf(c, "XPENDING %s %s", ks, GTASK__GROUP);
  gtask__conn_appendf(c, "ZCARD %s", kz);
  gtask__conn_appendf(c, "HLEN %s", kd);
  gtask__conn_appendf(c, "HMGET %s succeeded failed cancelled", kc);
  /* The level streams (priorities): pending and active count all levels. */
  for (int level = 1; level <= GTASK_PRIORITY_MAX; level++) {
    char kl[GTASK__KEY_MAX];
    level_key(b, kl, queue, level);
    gtask__conn_appendf(c, "XLEN %s", kl);
    gtask__conn_appendf(c, "XPENDING %s %s", kl, GTASK__GROUP);
  }
  enum { NREP = 5 + 2 * GTASK_PRIORITY_MAX };
  redisReply *r[NREP] = {0};
  for (int k = 0; k < NREP; k++) {
    redisReply *p = NULL;
    if (gtask__conn_get_reply(c, &p) != REDIS_OK) {
      gtask__set_error("redis %s: %s", b->r->conf->describe, c->errstr);
      rc = GTASK_ECONN;
      break;
    }
    r[k] = p;
    if (cluster_refusal(p) && rc == 0) {
      gtask__set_error("redis %s: stats of %s: %s", b->r->conf->describe, queue, p->str);
      rc = GTASK_ECONN; /* the other replies are read still: the connection stays usable */
    }
  }
  if (rc == 0) {
    for (int level = 0; level <= GTASK_PRIORITY_MAX; level++) {
      const redisReply *xl = r[level ? 3 + 2 * level : 0], *xp = r[level ? 4 + 2 * level : 1];
      int64_t len = int_reply(xl), active = 0;
      if (xp && xp->type == REDIS_REPLY_ARRAY && xp->elements >= 1)
        active = int_reply(xp->element[0]);
      out->active += active;
      out->pending += len - active < 0 ? 0 : len - active;
    }
    out->scheduled = int_reply(r[2]);
    out->dead = int_reply(r[3]);
    out->succeeded = field_int(r[4], 0);
    out->failed = field_int(r[4], 1);
    out->cancelled = field_int(r[4], 2);
  }
  for (int k = 0; k < NREP; k++)
    if (r[k]) freeReplyObject(r[k]);
  gtask__redis_put(b->r, c);
  return rc;
}

/* ---------------------------------------------------------------- pause */

/* The queue's `paused` key: "1" while paused, absent otherwise. */
static int rb_pause(void *impl, const char *queue, bool paused) {
  redis_broker *b = impl;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char key[GTASK__KEY_MAX];
  gtask__redis_key(b->r, key, sizeof(key), queue, "paused", NULL);
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, paused ? "SET" : "DEL");
  gtask__argv_adds(&a, key);
  if (paused) gtask__argv_adds(&a, "1");
  redisReply *rep;
  rc = gtask__redis_cmd(b->r, c, &a, &rep);
  if (rc == 0) freeReplyObject(rep);
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* One EXISTS per queue, pipelined per node: the queues' keys may live in
 * different Cluster slots, so not one multi-key command; on one server (or
 * when they share a node) it is one round trip.  With it, for a queue whose
 * priority marker is not known yet, an EXISTS of the marker: a worker calls
 * this before its first lease and twice a second, so it reads the level
 * streams of a queue within 500 ms of the first send with a level (until
 * then such a task waits in its level stream). */
static int rb_paused(void *impl, const char *const *queues, size_t nq, bool *out) {
  redis_broker *b = impl;
  gtask__conn *c = NULL;
  int rc = 0;
  char key[GTASK__KEY_MAX];
  for (size_t i = 0; i < nq && rc == 0;) {
    if ((rc = gtask__redis_use(b->r, queues[i], &c)) != 0) break;
    size_t j = i;
    bool ask[64]; /* the marker of queues[i + k] is asked for */
    for (; j < nq && j - i < 64 && gtask__redis_for_queue(b->r, queues[j]) == c->owner; j++) {
      gtask__redis_key(b->r, key, sizeof(key), queues[j], "paused", NULL);
      gtask__conn_appendf(c, "EXISTS %s", key);
      if ((ask[j - i] = !is_marked(b, queues[j]))) { /* (a marker stays) */
        gtask__redis_key(b->r, key, sizeof(key), queues[j], "prio", NULL);
        gtask__conn_appendf(c, "EXISTS %s", key);
      }
    }
    for (size_t k = i; k < j; k++) {
      for (int r = 0; r < (ask[k - i] ? 2 : 1); r++) {
        redisReply *p = NULL;
        if (gtask__conn_get_reply(c, &p) != REDIS_OK) {
          gtask__set_error("redis %s: %s", b->r->conf->describe, c->errstr);
          rc = GTASK_ECONN;
          break;
        }
        if (p->type == REDIS_REPLY_ERROR && rc == 0) {
          gtask__set_error("redis %s: EXISTS: %s", b->r->conf->describe, p->str);
          rc = gtask__redis_reply_rc(p->str);
        }
        bool yes = p->type == REDIS_REPLY_INTEGER && p->integer == 1;
        if (r == 0)
          out[k] = yes;
        else if (p->type == REDIS_REPLY_INTEGER)
          remember(b, queues[k], yes);
        freeReplyObject(p);
      }
      if (rc == GTASK_ECONN) break;
    }
    i = j;
  }
  if (c) gtask__redis_put(b->r, c);
  return rc;
}

/* ---------------------------------------------------------------- dead set */

static void free_msg_array(gtask_msg **v, size_t n) {
  for (size_t k = 0; k < n; k++) gtask_msg_free(v[k]);
  gtask__free(v);
}

static int msg_id_cmp(const void *x, const void *y) {
  const gtask_msg *const *a = x, *const *b = y;
  return strcmp((*a)->id, (*b)->id);
}

/* Appends m to the array *v (*nv used of *cap), growing it; the array takes
 * m.  GTASK_ENOMEM if m is NULL (making it failed) or the array cannot grow
 * (then m is freed). */
static int msg_array_add(gtask_msg ***v, size_t *nv, size_t *cap, gtask_msg *m) {
  if (!m) return GTASK_ENOMEM;
  if (*nv == *cap) {
    size_t nc = *cap ? 2 * *cap : 64;
    gtask_msg **v2 = gtask__realloc(*v, nc * sizeof(*v2));
    if (!v2) {
      gtask_msg_free(m);
      return GTASK_ENOMEM;
    }
    *v = v2;
    *cap = nc;
  }
  (*v)[(*nv)++] = m;
  return 0;
}

/* Checks rep, the reply to one `verb` (HSCAN, ZSCAN) of key: the next cursor
 * (copied into cursor) and an array of entries, rep->element[1].  Otherwise
 * sets the error, frees rep and returns the error code. */
static int scan_page(redis_broker *b, gtask__conn *c, const char *verb, const char *key,
                     redisReply *rep, char *cursor, size_t cursor_size) {
  if (!rep) {
    gtask__set_error("redis %s: %s: %s", b->r->conf->describe, verb, c->errstr);
    return GTASK_ECONN;
  }
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
      rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY) {
    gtask__set_error("redis %s: %s %s: %s", b->r->conf->describe, verb, key,
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    int rc = rep->type == REDIS_REPLY_ERROR ? gtask__redis_reply_rc(rep->str) : GTASK_EPROTO;
    freeReplyObject(rep);
    return rc;
  }
  gtask__fmt(cursor, cursor_size, "%s", rep->element[0]->str);
  return 0;
}

/* Sorts the nv entries of v by id and keeps one of each entry a SCAN
 * returned twice (the set was resized in between): one of each id in the dead
 * set (its fields are ids), one of each id and body in the failed set (its
 * members are id and body: body_too).  Hands them to *out and *n, NULL and 0
 * if there are none. */
static void msg_array_sort_unique(gtask_msg **v, size_t nv, bool body_too, gtask_msg ***out,
                                  size_t *n) {
  if (nv > 1) qsort(v, nv, sizeof(*v), msg_id_cmp);
  size_t keep = 0;
  for (size_t k = 0; k < nv; k++) {
    const gtask_msg *prev = keep > 0 ? v[keep - 1] : NULL;
    if (prev && strcmp(prev->id, v[k]->id) == 0 &&
        (!body_too || (prev->len == v[k]->len && memcmp(prev->body, v[k]->body, v[k]->len) == 0))) {
      gtask_msg_free(v[k]);
      continue;
    }
    v[keep++] = v[k];
  }
  if (keep == 0) {
    gtask__free(v);
    v = NULL;
  }
  *out = v;
  *n = keep;
}

/* The dead-set entry of one id: HGET. */
static int dead_get(redis_broker *b, const char *queue, const char *id, gtask_msg ***out,
                    size_t *n) {
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char key[GTASK__KEY_MAX];
  gtask__redis_key(b->r, key, sizeof(key), queue, "dead", NULL);
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, "HGET");
  gtask__argv_adds(&a, key);
  gtask__argv_adds(&a, id);
  redisReply *rep;
  rc = gtask__redis_cmd(b->r, c, &a, &rep);
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  if (rc) return rc;
  if (rep->type == REDIS_REPLY_STRING && strlen(id) < GTASK_ID_SIZE) {
    gtask_msg **v = gtask__malloc(sizeof(*v));
    gtask_msg *m = v ? gtask_msg_new(id, queue, rep->str, rep->len) : NULL;
    if (!m) {
      gtask__free(v);
      rc = GTASK_ENOMEM;
    } else {
      m->priority = gtask__redis_body_level(m->body, m->len);
      v[0] = m;
      *out = v;
      *n = 1;
    }
  }
  freeReplyObject(rep);
  return rc;
}

static int rb_dead_list(void *impl, const char *queue, const char *id, gtask_msg ***out,
                        size_t *n) {
  redis_broker *b = impl;
  *out = NULL;
  *n = 0;
  if (id) return dead_get(b, queue, id, out, n);
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char key[GTASK__KEY_MAX], cursor[32] = "0";
  gtask__redis_key(b->r, key, sizeof(key), queue, "dead", NULL);
  gtask_msg **v = NULL;
  size_t nv = 0, cap = 0;
  /* HSCAN, not HGETALL: a large dead set does not block the server. */
  do {
    redisReply *rep = gtask__redis_command(c, "HSCAN %s %s COUNT 500", key, cursor);
    if ((rc = scan_page(b, c, "HSCAN", key, rep, cursor, sizeof(cursor))) != 0) break;
    const redisReply *kv = rep->element[1];
    for (size_t k = 0; k + 1 < kv->elements && rc == 0; k += 2) {
      const redisReply *field = kv->element[k], *body = kv->element[k + 1];
      if (field->type != REDIS_REPLY_STRING || body->type != REDIS_REPLY_STRING) continue;
      char idbuf[GTASK_ID_SIZE] = "";
      if (field->len < GTASK_ID_SIZE) memcpy(idbuf, field->str, field->len + 1);
      gtask_msg *m = gtask_msg_new(idbuf, queue, body->str, body->len);
      if (m) m->priority = gtask__redis_body_level(body->str, body->len);
      rc = msg_array_add(&v, &nv, &cap, m);
    }
    freeReplyObject(rep);
  } while (rc == 0 && strcmp(cursor, "0") != 0);
  gtask__redis_put(b->r, c);
  if (rc) {
    free_msg_array(v, nv);
    return rc;
  }
  msg_array_sort_unique(v, nv, false, out, n);
  return 0;
}

/* Groups consecutive revives with the same queue: the end of the run at i. */
static size_t revive_run_end(const gtask_revive *rs, size_t n, size_t i) {
  size_t j = i + 1;
  while (j < n && strcmp(rs[j].msg->queue, rs[i].msg->queue) == 0) j++;
  return j;
}

/* dead_requeue.lua or failed_requeue.lua (the same KEYS and ARGV), from the
 * queue's key `from` ("dead", "failed"). */
static int requeue_from(redis_broker *b, gtask_revive *rs, size_t n, void *state, const char *from,
                        gtask__script script, const char *script_name) {
  gtask__redis *st = state ? gtask__redis_backend_pool(state) : NULL;
  for (size_t k = 0; k < n; k++) rs[k].moved = false;
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  gtask__argv a;
  gtask__argv_init(&a);
  char(*keys)[GTASK__KEY_MAX] = NULL;
  for (size_t i = 0; i < n && rc == 0;) {
    size_t j = revive_run_end(rs, n, i);
    /* A run of one level too: its messages go back to their level's stream
     * (the level the message to queue carries). */
    int level = gtask__redis_body_level(rs[i].next, rs[i].next_len);
    for (size_t k = i + 1; k < j; k++)
      if (gtask__redis_body_level(rs[k].next, rs[k].next_len) != level) j = k;
    size_t nk = 2 + (st ? 2 * (j - i) : 0);
    char(*k2)[GTASK__KEY_MAX] = gtask__realloc(keys, nk * sizeof(*keys));
    if (!k2) {
      rc = GTASK_ENOMEM;
      break;
    }
    keys = k2;
    const char *q = rs[i].msg->queue;
    if ((rc = gtask__redis_use(b->r, q, &c)) != 0) break;
    gtask__argv_reset(&a);
    gtask__argv_add(&a, keys[0], level_key(b, keys[0], q, level));
    gtask__argv_add(&a, keys[1], gtask__redis_key(b->r, keys[1], GTASK__KEY_MAX, q, from, NULL));
    if (st) {
      for (size_t k = i; k < j; k++) {
        char *tk = keys[2 + 2 * (k - i)], *nk2 = keys[3 + 2 * (k - i)];
        gtask__argv_add(&a, tk, gtask__redis_key(st, tk, GTASK__KEY_MAX, q, "t", rs[k].msg->id));
        gtask__argv_add(&a, nk2, gtask__redis_key(st, nk2, GTASK__KEY_MAX, q, "n", rs[k].msg->id));
      }
    }
    gtask__argv_adds(&a, st ? "1" : "0");
    gtask__argv_addi(&a, st ? st->conf->expire_ms : 0);
    for (size_t k = i; k < j; k++) {
      gtask__argv_adds(&a, rs[k].msg->id);
      gtask__argv_add(&a, rs[k].msg->body, rs[k].msg->len);
      gtask__argv_add(&a, rs[k].next, rs[k].next_len);
    }
    redisReply *rep;
    rc = gtask__redis_eval(b->r, c, script, nk, &a, &rep);
    if (rc == 0) {
      rc = gtask__redis_int_array(b->r, script_name, rep, j - i);
      for (size_t k = i; k < j && rc == 0; k++) rs[k].moved = rep->element[k - i]->integer == 1;
      freeReplyObject(rep);
    }
    i = j;
  }
  gtask__free(keys);
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

static int rb_dead_requeue(void *impl, gtask_revive *rs, size_t n, void *state) {
  return requeue_from(impl, rs, n, state, "dead", GTASK__LUA_DEAD_REQUEUE, "dead_requeue.lua");
}

static int rb_failed_requeue(void *impl, gtask_revive *rs, size_t n, void *state) {
  return requeue_from(impl, rs, n, state, "failed", GTASK__LUA_FAILED_REQUEUE,
                      "failed_requeue.lua");
}

/* The failed set: ZSCAN (MATCH "<id>*" for one id), members not yet past
 * their time, each once (a ZSCAN may return a member twice), sorted by id. */
static int rb_failed_list(void *impl, const char *queue, const char *id, gtask_msg ***out,
                          size_t *n) {
  redis_broker *b = impl;
  *out = NULL;
  *n = 0;
  if (id && !gtask__id_valid(id)) return 0; /* no member can start with it */
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char key[GTASK__KEY_MAX], cursor[32] = "0", match[GTASK_ID_SIZE + 1];
  gtask__redis_key(b->r, key, sizeof(key), queue, "failed", NULL);
  gtask__fmt(match, sizeof(match), "%s*", id ? id : "");
  int64_t now = gtask__now_ms();
  gtask_msg **v = NULL;
  size_t nv = 0, cap = 0;
  do {
    redisReply *rep = gtask__redis_command(c, "ZSCAN %s %s MATCH %s COUNT 500", key, cursor, match);
    if ((rc = scan_page(b, c, "ZSCAN", key, rep, cursor, sizeof(cursor))) != 0) break;
    const redisReply *kv = rep->element[1];
    for (size_t k = 0; k + 1 < kv->elements && rc == 0; k += 2) {
      const redisReply *mem = kv->element[k], *score = kv->element[k + 1];
      if (mem->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING ||
          mem->len < GTASK_ID_SIZE - 1 || strtoll(score->str, NULL, 10) < now)
        continue;
      char idbuf[GTASK_ID_SIZE];
      memcpy(idbuf, mem->str, GTASK_ID_SIZE - 1);
      idbuf[GTASK_ID_SIZE - 1] = '\0';
      gtask_msg *m = gtask_msg_new(idbuf, queue, mem->str + GTASK_ID_SIZE - 1,
                                   mem->len - (GTASK_ID_SIZE - 1));
      if (m) {
        m->due_ms = strtoll(score->str, NULL, 10);
        m->priority = gtask__redis_body_level(m->body, m->len);
      }
      rc = msg_array_add(&v, &nv, &cap, m);
    }
    freeReplyObject(rep);
  } while (rc == 0 && strcmp(cursor, "0") != 0);
  gtask__redis_put(b->r, c);
  if (rc) {
    free_msg_array(v, nv);
    return rc;
  }
  msg_array_sort_unique(v, nv, true, out, n);
  return 0;
}

static int rb_dead_purge(void *impl, const char *queue, size_t *removed) {
  redis_broker *b = impl;
  *removed = 0;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char key[GTASK__KEY_MAX];
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_add(&a, key, gtask__redis_key(b->r, key, sizeof(key), queue, "dead", NULL));
  redisReply *rep;
  rc = gtask__redis_eval(b->r, c, GTASK__LUA_DEAD_PURGE, 1, &a, &rep);
  if (rc == 0) {
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer > 0) *removed = (size_t)rep->integer;
    freeReplyObject(rep);
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* ---------------------------------------------------------------- workers */

/* register.lua per queue.  A refusal after earlier queues were recorded
 * removes those again, so that a refused worker leaves no trace. */
static int rb_announce(void *impl, const char *consumer, const char *const *queues, size_t nq,
                       int64_t until_ms) {
  redis_broker *b = impl;
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  gtask__argv a;
  gtask__argv_init(&a);
  int64_t now = gtask__now_ms();
  size_t done = 0;
  for (; done < nq && rc == 0; done++) {
    if ((rc = gtask__redis_use(b->r, queues[done], &c)) != 0) break;
    char key[GTASK__KEY_MAX];
    gtask__argv_reset(&a);
    gtask__argv_add(&a, key, gtask__redis_key(b->r, key, sizeof(key), queues[done], "workers", NULL));
    gtask__argv_adds(&a, consumer);
    gtask__argv_addi(&a, GTASK__KEYS_VERSION);
    gtask__argv_addi(&a, now);
    gtask__argv_addi(&a, until_ms);
    redisReply *rep;
    rc = gtask__redis_eval(b->r, c, GTASK__LUA_REGISTER, 1, &a, &rep);
    if (rc) break;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
      gtask__set_error("redis %s: register.lua: unexpected reply", b->r->conf->describe);
      rc = GTASK_EPROTO;
    } else if (rep->element[0]->integer == 0) {
      const char *who = rep->elements > 1 && rep->element[1]->str ? rep->element[1]->str : "?";
      const char *ver = rep->elements > 2 && rep->element[2]->str ? rep->element[2]->str : "?";
      gtask__set_error("queue %s is served by worker %s, which uses key schema %s; this "
                       "worker uses %d, and the two must not share a queue (docs/PROTOCOL.md, "
                       "\"Key schema versions\"): stop one kind first",
                       queues[done], who, ver, GTASK__KEYS_VERSION);
      rc = GTASK_EVERSION;
    }
    freeReplyObject(rep);
  }
  if (rc && until_ms != 0) {
    char why[512];
    gtask__fmt(why, sizeof(why), "%s", gtask_last_error());
    for (size_t q = 0; q < done; q++) {
      if (gtask__redis_use(b->r, queues[q], &c) != 0 || c->err) break;
      char key[GTASK__KEY_MAX];
      gtask__argv_reset(&a);
      gtask__argv_add(&a, key, gtask__redis_key(b->r, key, sizeof(key), queues[q], "workers", NULL));
      gtask__argv_adds(&a, consumer);
      gtask__argv_addi(&a, GTASK__KEYS_VERSION);
      gtask__argv_addi(&a, now);
      gtask__argv_addi(&a, 0);
      redisReply *rep;
      if (gtask__redis_eval(b->r, c, GTASK__LUA_REGISTER, 1, &a, &rep) == 0) freeReplyObject(rep);
    }
    gtask__set_error("%s", why);
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

static int name_cmp(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

/* SCAN of every master for "P:{*}:*": the tag of each key, each once.  A
 * pass over the whole keyspace (every task's t: and n: keys too), in
 * batches, so that Redis is never blocked for long. */
static int rb_queues(void *impl, char ***names, size_t *n) {
  redis_broker *b = impl;
  *names = NULL;
  *n = 0;
  gtask__redis *m[1024];
  size_t nm = gtask__redis_masters(b->r, m, 1024);
  char match[GTASK__KEY_MAX];
  gtask__fmt(match, sizeof(match), "%s:{*}:*", b->r->conf->prefix);
  size_t plen = strlen(b->r->conf->prefix) + 2; /* "P:{" */
  char **v = NULL;
  size_t nv = 0, cap = 0;
  int rc = 0;
  for (size_t k = 0; k < nm && rc == 0; k++) {
    gtask__conn *c;
    if ((rc = gtask__redis_get(m[k], &c)) != 0) break;
    char cursor[32] = "0";
    do {
      redisReply *rep = gtask__conn_command(c, "SCAN %s MATCH %s COUNT 1000", cursor, match);
      if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
          rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY) {
        gtask__set_error("redis %s: SCAN: %s", m[k]->conf->describe,
                         !rep ? c->errstr : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        rc = !rep ? GTASK_ECONN : rep->type == REDIS_REPLY_ERROR ? gtask__redis_reply_rc(rep->str) : GTASK_EPROTO;
        if (rep) freeReplyObject(rep);
        break;
      }
      gtask__fmt(cursor, sizeof(cursor), "%s", rep->element[0]->str);
      const redisReply *keys = rep->element[1];
      for (size_t e = 0; e < keys->elements && rc == 0; e++) {
        const redisReply *key = keys->element[e];
        if (key->type != REDIS_REPLY_STRING || key->len <= plen) continue;
        const char *tag = key->str + plen, *close = memchr(tag, '}', key->len - plen);
        if (!close || close == tag) continue;
        size_t tl = (size_t)(close - tag);
        if (nv > 0 && strlen(v[nv - 1]) == tl && memcmp(v[nv - 1], tag, tl) == 0) continue; /* common: runs */
        if (nv == cap) {
          size_t nc = cap ? 2 * cap : 64;
          char **v2 = realloc(v, nc * sizeof(*v2));
          if (!v2) {
            rc = GTASK_ENOMEM;
            break;
          }
          v = v2;
          cap = nc;
        }
        if ((v[nv] = malloc(tl + 1)) == NULL) {
          rc = GTASK_ENOMEM;
          break;
        }
        memcpy(v[nv], tag, tl);
        v[nv++][tl] = '\0';
      }
      freeReplyObject(rep);
    } while (rc == 0 && strcmp(cursor, "0") != 0);
    gtask__redis_put(m[k], c);
  }
  if (rc) {
    for (size_t k = 0; k < nv; k++) free(v[k]);
    free(v);
    return rc;
  }
  if (nv > 1) qsort(v, nv, sizeof(*v), name_cmp);
  size_t keep = 0;
  for (size_t k = 0; k < nv; k++) {
    if (keep > 0 && strcmp(v[keep - 1], v[k]) == 0) {
      free(v[k]);
      continue;
    }
    v[keep++] = v[k];
  }
  if (keep == 0) {
    free(v);
    v = NULL;
  }
  *names = v;
  *n = keep;
  return 0;
}

static int rb_worker_put(void *impl, const char *consumer, const char *record, size_t len,
                         int64_t until_ms) {
  return gtask__redis_worker_put(((redis_broker *)impl)->r, consumer, record, len, until_ms);
}

static int rb_worker_list(void *impl, char ***out, size_t *n) {
  return gtask__redis_worker_list(((redis_broker *)impl)->r, out, n);
}

static int rb_list(void *impl, const char *queue, int state, const char *cursor, size_t limit,
                   gtask_msg ***out, size_t *n, char **next) {
  return gtask__redis_list(((redis_broker *)impl)->r, queue, state, cursor, limit, out, n, next);
}

static int rb_find(void *impl, const char *queue, const char *id, int *state, gtask_msg **out) {
  return gtask__redis_find(((redis_broker *)impl)->r, queue, id, state, out);
}

static void *rb_colocated(void *impl, const gtask_backend *backend) {
  redis_broker *b = impl;
  if (!backend || backend->ops != &gtask__redis_backend_ops) return NULL;
  gtask__redis *other = gtask__redis_backend_pool(backend->impl);
  if (!gtask__redis_conf_same_db(b->r->conf, other->conf)) return NULL;
  if (strcmp(b->r->conf->prefix, other->conf->prefix) != 0) return NULL;
  return backend->impl;
}

static void rb_destroy(void *impl) {
  redis_broker *b = impl;
  for (consumer_conn *cc = b->consumers, *next; cc; cc = next) {
    next = cc->next;
    for (size_t k = 0; k < cc->nlc; k++) gtask__conn_free(cc->lc[k].c);
    gtask__free(cc->lc);
    /* Surplus messages are leased in Redis: dropping our copies only delays
     * them until reclaim. */
    for (size_t k = 0; k < cc->nsurplus; k++) gtask_msg_free(cc->surplus[k]);
    gtask__free(cc->surplus);
    gtask__free(cc->name);
    gtask__free(cc);
  }
  for (size_t k = 0; k < b->nmarked; k++) gtask__free(b->marked[k]);
  gtask__free(b->marked);
  for (size_t k = 0; k < b->nchecked; k++) gtask__free(b->checked[k]);
  gtask__free(b->checked);
  pthread_mutex_destroy(&b->mu);
  gtask__limits_free(b->limits);
  gtask__redis_free(b->r);
  gtask__free(b);
}

/* ---------------------------------------------------------------- limits
 *
 * The operations with the limits' hooks around them (limits.c): a queue
 * without limits passes through at the cost of an atomic load. */

static int rb_lease_limited(void *impl, const char *consumer, const char *const *queues,
                            size_t nq, size_t max, int64_t wait_ms, gtask_msg **out, size_t *n) {
  redis_broker *b = impl;
  wait_ms = gtask__limits_before_lease(b->limits, b->r, queues, nq, wait_ms);
  int rc = rb_lease(impl, consumer, queues, nq, max, wait_ms, out, n);
  if (rc == 0 && *n) {
    int arc = gtask__limits_admit(b->limits, b->r, out, n);
    if (arc) gtask__log(GTASK_LOG_WARN, "limits: admitting leased tasks: %s (%s); they come back "
                        "when their lease expires", gtask_strerror(arc), gtask_last_error());
  }
  return rc;
}

static int rb_finish_limited(void *impl, const char *consumer, gtask_fin *fins, size_t n,
                             void *state) {
  redis_broker *b = impl;
  int rc = rb_finish(impl, consumer, fins, n, state);
  for (size_t k = 0; k < n; k++)
    if (rc == 0 || fins[k].settled) gtask__limits_release(b->limits, b->r, &fins[k].msg, 1);
  return rc;
}

static int rb_extend_limited(void *impl, const char *consumer, gtask_msg *const *msgs, size_t n,
                             bool *lost) {
  redis_broker *b = impl;
  int rc = rb_extend(impl, consumer, msgs, n, lost);
  if (rc == 0) gtask__limits_extend(b->limits, b->r, msgs, n);
  return rc;
}

static int rb_reclaim_limited(void *impl, const char *consumer, const char *queue,
                              int64_t lease_ms, size_t max, gtask_msg **out, size_t *n) {
  redis_broker *b = impl;
  gtask__limits_set_lease(b->limits, lease_ms);
  return rb_reclaim(impl, consumer, queue, lease_ms, max, out, n);
}

static int rb_promote_limited(void *impl, const char *queue, size_t max, int64_t *next_due_ms) {
  redis_broker *b = impl;
  int rc = gtask__limits_housekeep(b->limits, b->r, queue);
  if (rc) gtask__log(GTASK_LOG_WARN, "limits of queue %s: %s (%s)", queue, gtask_strerror(rc),
                     gtask_last_error());
  return rb_promote(impl, queue, max, next_due_ms);
}

static int64_t rb_msg_ttl_ms(void *impl) {
  redis_broker *b = impl;
  return b->r->conf->expire_ms;
}

static const gtask_broker_ops redis_broker_ops = {
    .abi = GTASK_EXTEND_ABI,
    .name = "redis",
    .push = rb_push,
    .push_unique = rb_push_unique,
    .cancel = rb_cancel,
    .failed_list = rb_failed_list,
    .failed_requeue = rb_failed_requeue,
    .pause = rb_pause,
    .paused = rb_paused,
    .lease = rb_lease_limited,
    .interrupt = rb_interrupt,
    .extend = rb_extend_limited,
    .finish = rb_finish_limited,
    .reclaim = rb_reclaim_limited,
    .promote = rb_promote_limited,
    .stats = rb_stats,
    .dead_list = rb_dead_list,
    .dead_requeue = rb_dead_requeue,
    .dead_purge = rb_dead_purge,
    .announce = rb_announce,
    .colocated = rb_colocated,
    .destroy = rb_destroy,
    .msg_ttl_ms = rb_msg_ttl_ms,
    .queues = rb_queues,
    .worker_put = rb_worker_put,
    .worker_list = rb_worker_list,
    .list = rb_list,
    .find = rb_find,
};

GTASK_EXTERN int gtask_broker_redis_new(gtask_broker **out, const gtask_redis_conf *conf) {
  if (!out || !conf) {
    gtask__set_error("gtask_broker_redis_new: NULL argument");
    return GTASK_EINVAL;
  }
  *out = NULL;
  redis_broker *b = gtask__calloc(1, sizeof(*b));
  if (!b) return GTASK_ENOMEM;
  int rc = gtask__redis_new(conf, &b->r);
  if (rc) {
    gtask__free(b);
    return rc;
  }
  if (!(b->limits = gtask__limits_new())) {
    gtask__redis_free(b->r);
    gtask__free(b);
    return GTASK_ENOMEM;
  }
  pthread_mutex_init(&b->mu, NULL);
  gtask_broker *h = gtask__broker_new(&redis_broker_ops, b);
  if (!h) return GTASK_ENOMEM;
  *out = h;
  return 0;
}

gtask__redis *gtask__redis_broker_pool(const gtask_broker *b) {
  return b && b->ops == &redis_broker_ops ? ((redis_broker *)b->impl)->r : NULL;
}
