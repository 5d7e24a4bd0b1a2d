/* redis/inspect.c -- the Redis broker's read-mostly operations for seeing
 * inside (issue 20): worker records (worker_put, worker_list), a queue's
 * tasks page by page (list) and one task found by id (find).  The ops table
 * in broker.c points here.
 *
 * Keys (docs/PROTOCOL.md section 2):
 *   P:workers        zset: worker name -> until when it is live (unix ms)
 *   P:worker:NAME    string: the worker's JSON record (worker_record.c),
 *                    expiring at that time
 * Neither carries a queue's hash tag: a worker serves several queues, and
 * each key is written by single-key commands, each sent to the node of its
 * own slot (use_key), so Redis Cluster is fine.  The two writes of a
 * heartbeat are not atomic, and need not be: a reader skips a name whose
 * record is missing, and a record outlives its zset entry by at most the
 * same time.  A queue's keys go to its node (gtask__redis_use).
 *
 * Nothing here changes a task: every command is a read, except the worker
 * keys. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int conn_fail(gtask__redis *r, gtask__conn *c, const char *what) {
  gtask__set_error("redis %s: %s: %s", r->conf->describe, what, c->errstr);
  return GTASK_ECONN;
}

static int reply_fail(gtask__redis *r, const redisReply *rep, const char *what) {
  if (rep && rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: %s: %s", r->conf->describe, what, rep->str);
    return gtask__redis_reply_rc(rep->str);
  }
  gtask__set_error("redis %s: %s: unexpected reply", r->conf->describe, what);
  return GTASK_EPROTO;
}

/* Reads n pipelined replies into reps[0..n) (all NULL on a failure). */
static int replies(gtask__redis *r, gtask__conn *c, redisReply **reps, size_t n, const char *what) {
  for (size_t k = 0; k < n; k++) {
    if (gtask__conn_get_reply(c, &reps[k]) != REDIS_OK) {
      for (size_t j = 0; j < k; j++) freeReplyObject(reps[j]), reps[j] = NULL;
      return conn_fail(r, c, what);
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- workers */

/* Makes *c a connection to the node of key (r itself for one server): keeps
 * *c if it is one already, else returns it and borrows one. */
static int use_key(gtask__redis *r, const char *key, gtask__conn **c) {
  gtask__redis *n = gtask__redis_route(r, key, strlen(key));
  if (*c && (*c)->owner == n) return 0;
  if (*c) gtask__redis_put(r, *c);
  *c = NULL;
  return gtask__redis_get(n, c);
}

/* A command on c whose reply only needs to be no error. */
static int simple(gtask__redis *r, gtask__conn *c, redisReply *rep, const char *what) {
  if (!rep) return conn_fail(r, c, what);
  int rc = rep->type == REDIS_REPLY_ERROR ? reply_fail(r, rep, what) : 0;
  freeReplyObject(rep);
  return rc;
}

int gtask__redis_worker_put(gtask__redis *r, const char *consumer, const char *record, size_t len,
                            int64_t until_ms) {
  char zkey[GTASK__KEY_MAX], rkey[GTASK__KEY_MAX + 160];
  gtask__fmt(zkey, sizeof(zkey), "%s:workers", r->conf->prefix);
  gtask__fmt(rkey, sizeof(rkey), "%s:worker:%s", r->conf->prefix, consumer);
  int64_t now = gtask__now_ms();
  gtask__conn *c = NULL;
  int rc = use_key(r, rkey, &c);
  if (rc == 0)
    rc = until_ms
             ? simple(r, c,
                      gtask__redis_command(c, "SET %s %b PX %lld", rkey, record, len,
                                           (long long)(until_ms - now > 1 ? until_ms - now : 1)),
                      "SET")
             : simple(r, c, gtask__redis_command(c, "DEL %s", rkey), "DEL");
  if (rc == 0) rc = use_key(r, zkey, &c);
  if (rc == 0 && until_ms) {
    gtask__conn_appendf(c, "ZADD %s %lld %s", zkey, (long long)until_ms, consumer);
    gtask__conn_appendf(c, "ZREMRANGEBYSCORE %s -inf (%lld", zkey, (long long)now);
    redisReply *reps[2] = {0};
    rc = replies(r, c, reps, 2, "worker record");
    for (size_t k = 0; rc == 0 && k < 2; k++)
      if (reps[k]->type == REDIS_REPLY_ERROR) rc = reply_fail(r, reps[k], "worker record");
    for (size_t k = 0; k < 2; k++)
      if (reps[k]) freeReplyObject(reps[k]);
  } else if (rc == 0) {
    rc = simple(r, c, gtask__redis_command(c, "ZREM %s %s", zkey, consumer), "ZREM");
  }
  gtask__redis_put(r, c);
  return rc;
}

int gtask__redis_worker_list(gtask__redis *r, char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  char zkey[GTASK__KEY_MAX];
  gtask__fmt(zkey, sizeof(zkey), "%s:workers", r->conf->prefix);
  gtask__conn *c = NULL;
  int rc = use_key(r, zkey, &c);
  if (rc) return rc;
  redisReply *names = gtask__redis_command(c, "ZRANGEBYSCORE %s (%lld +inf", zkey,
                                           (long long)gtask__now_ms());
  if (!names) rc = conn_fail(r, c, "ZRANGEBYSCORE");
  else if (names->type != REDIS_REPLY_ARRAY) rc = reply_fail(r, names, "ZRANGEBYSCORE");
  size_t nn = rc == 0 ? names->elements : 0;
  char **v = nn ? calloc(nn, sizeof(*v)) : NULL;
  size_t nv = 0;
  if (nn && !v) rc = GTASK_ENOMEM;
  /* One GET each, on the node of each record (a handful of workers). */
  for (size_t k = 0; k < nn && rc == 0; k++) {
    char rkey[GTASK__KEY_MAX + 160];
    gtask__fmt(rkey, sizeof(rkey), "%s:worker:%s", r->conf->prefix, names->element[k]->str);
    if ((rc = use_key(r, rkey, &c)) != 0) break;
    redisReply *rep = gtask__redis_command(c, "GET %s", rkey);
    if (!rep) {
      rc = conn_fail(r, c, "GET");
      break;
    }
    if (rep->type == REDIS_REPLY_STRING) {
      if (!(v[nv] = malloc(rep->len + 1))) rc = GTASK_ENOMEM;
      else memcpy(v[nv], rep->str, rep->len), v[nv++][rep->len] = '\0';
    }
    freeReplyObject(rep);
  }
  if (names) freeReplyObject(names);
  gtask__redis_put(r, c);
  if (rc) {
    for (size_t k = 0; k < nv; k++) free(v[k]);
    free(v);
    return rc;
  }
  if (!nv) free(v), v = NULL;
  *out = v;
  *n = nv;
  return 0;
}

/* ---------------------------------------------------------------- listing */

/* A growing array of messages. */
typedef struct msgs {
  gtask_msg **v;
  size_t n, cap;
} msgs;

static int msgs_add(msgs *m, const char *id, size_t idlen, const char *queue, const char *body,
                    size_t len, gtask_msg **added) {
  if (m->n == m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 16;
    gtask_msg **v = realloc(m->v, cap * sizeof(*v));
    if (!v) return GTASK_ENOMEM;
    m->v = v;
    m->cap = cap;
  }
  char idbuf[GTASK_ID_SIZE] = "";
  if (idlen < GTASK_ID_SIZE) memcpy(idbuf, id, idlen), idbuf[idlen] = '\0';
  gtask_msg *g = gtask_msg_new(idbuf, queue, body, len);
  if (!g) return GTASK_ENOMEM;
  g->priority = gtask__redis_body_level(g->body, g->len);
  m->v[m->n++] = g;
  if (added) *added = g;
  return 0;
}

static void msgs_free(msgs *m) {
  for (size_t k = 0; k < m->n; k++) gtask_msg_free(m->v[k]);
  free(m->v);
  memset(m, 0, sizeof(*m));
}

/* A stream entry id "MS-SEQ", as a cursor. */
static bool stream_id_valid(const char *s) {
  size_t k = 0, digits = 0;
  for (; s[k] >= '0' && s[k] <= '9'; k++) digits++;
  if (!digits || s[k] != '-') return false;
  size_t d2 = 0;
  for (k++; s[k] >= '0' && s[k] <= '9'; k++) d2++;
  return d2 && !s[k] && k < 42;
}

/* The id and message of a stream entry [eid, [f1, v1, ...]] ("i" and "m"). */
static int entry_add(msgs *m, const redisReply *e, const char *queue, gtask_msg **added) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
    return 0;
  const redisReply *f = e->element[1], *id = NULL, *body = NULL;
  for (size_t k = 0; k + 1 < f->elements; k += 2) {
    if (f->element[k]->type != REDIS_REPLY_STRING) continue;
    if (strcmp(f->element[k]->str, "i") == 0) id = f->element[k + 1];
    if (strcmp(f->element[k]->str, "m") == 0) body = f->element[k + 1];
  }
  if (!body || body->type != REDIS_REPLY_STRING) return 0;
  const char *ids = id && id->type == REDIS_REPLY_STRING ? id->str : "";
  size_t idl = id && id->type == REDIS_REPLY_STRING ? id->len : 0;
  return msgs_add(m, ids, idl, queue, body->str, body->len, added);
}

/* PENDING: stream entries that are not leased.  XRANGE after the cursor,
 * then XPENDING over the same id span to drop the leased ones. */
static int list_pending_in(gtask__redis *r, gtask__conn *c, const char *ks, const char *queue,
                           const char *cursor, size_t limit, msgs *m, char **next) {
  char start[64];
  gtask__fmt(start, sizeof(start), cursor ? "(%s" : "-", cursor);
  redisReply *rng = gtask__redis_command(c, "XRANGE %s %s + COUNT %lld", ks, start,
                                         (long long)limit);
  if (!rng) return conn_fail(r, c, "XRANGE");
  int rc = 0;
  if (rng->type != REDIS_REPLY_ARRAY) {
    rc = reply_fail(r, rng, "XRANGE");
    freeReplyObject(rng);
    return rc;
  }
  redisReply *pel = NULL;
  if (rng->elements) {
    const char *first = rng->element[0]->element[0]->str;
    const char *last = rng->element[rng->elements - 1]->element[0]->str;
    pel = gtask__redis_command(c, "XPENDING %s %s %s %s %lld", ks, GTASK__GROUP, first, last,
                               (long long)limit);
    if (!pel) rc = conn_fail(r, c, "XPENDING");
    else if (pel->type != REDIS_REPLY_ARRAY && pel->type != REDIS_REPLY_NIL)
      rc = reply_fail(r, pel, "XPENDING"); /* NOGROUP: nothing leased yet */
    if (pel && pel->type == REDIS_REPLY_ERROR && strstr(pel->str, "NOGROUP")) rc = 0;
  }
  for (size_t k = 0; rc == 0 && k < rng->elements; k++) {
    const redisReply *e = rng->element[k];
    bool leased = false;
    for (size_t j = 0; pel && pel->type == REDIS_REPLY_ARRAY && j < pel->elements && !leased; j++)
      leased = strcmp(pel->element[j]->element[0]->str, e->element[0]->str) == 0;
    if (!leased) rc = entry_add(m, e, queue, NULL);
  }
  if (rc == 0 && rng->elements == limit &&
      !(*next = gtask__strdup(rng->element[rng->elements - 1]->element[0]->str)))
    rc = GTASK_ENOMEM;
  if (pel) freeReplyObject(pel);
  freeReplyObject(rng);
  return rc;
}

/* ACTIVE: the group's pending entries list, then each entry's message. */
static int list_active_in(gtask__redis *r, gtask__conn *c, const char *ks, const char *queue,
                          const char *cursor, size_t limit, msgs *m, char **next) {
  char start[64];
  gtask__fmt(start, sizeof(start), cursor ? "(%s" : "-", cursor);
  redisReply *pel = gtask__redis_command(c, "XPENDING %s %s %s + %lld", ks, GTASK__GROUP, start,
                                         (long long)limit);
  if (!pel) return conn_fail(r, c, "XPENDING");
  int rc = 0;
  if (pel->type == REDIS_REPLY_ERROR && strstr(pel->str, "NOGROUP")) {
    freeReplyObject(pel);
    return 0;
  }
  if (pel->type != REDIS_REPLY_ARRAY) {
    rc = reply_fail(r, pel, "XPENDING");
    freeReplyObject(pel);
    return rc;
  }
  for (size_t k = 0; k < pel->elements; k++)
    gtask__conn_appendf(c, "XRANGE %s %s %s", ks, pel->element[k]->element[0]->str,
                        pel->element[k]->element[0]->str);
  for (size_t k = 0; k < pel->elements; k++) {
    redisReply *rep = NULL;
    if (gtask__conn_get_reply(c, &rep) != REDIS_OK) {
      rc = conn_fail(r, c, "XRANGE");
      break;
    }
    gtask_msg *added = NULL;
    if (rc == 0 && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1)
      rc = entry_add(m, rep->element[0], queue, &added);
    if (added) {
      const redisReply *owner = pel->element[k]->element[1];
      if (gtask_msg_set_lease(added, owner->type == REDIS_REPLY_STRING ? owner->str : "") != 0)
        rc = GTASK_ENOMEM;
    }
    freeReplyObject(rep);
  }
  if (rc == 0 && pel->elements == limit &&
      !(*next = gtask__strdup(pel->element[pel->elements - 1]->element[0]->str)))
    rc = GTASK_ENOMEM;
  freeReplyObject(pel);
  return rc;
}

typedef int (*list_in_fn)(gtask__redis *r, gtask__conn *c, const char *ks, const char *queue,
                          const char *cursor, size_t limit, msgs *m, char **next);

/* PENDING and ACTIVE over the queue's priority levels, highest first (the
 * order of a lease): a level's page is followed by the next level's.  The
 * cursor is an entry id of the level-0 stream, as ever, or "L:<entry id>"
 * in the stream of level L > 0. */
static int list_levels(gtask__redis *r, gtask__conn *c, const char *queue, const char *cursor,
                       size_t limit, msgs *m, char **next, list_in_fn fn) {
  int level = GTASK_PRIORITY_MAX;
  if (cursor && (cursor[0] == '1' || cursor[0] == '2') && cursor[1] == ':') {
    level = cursor[0] - '0';
    cursor += 2;
  } else if (cursor) {
    level = 0;
  }
  static const char *const sfx[] = {NULL, "1", "2"};
  for (int rc = 0; level >= 0; level--, cursor = NULL) {
    char ks[GTASK__KEY_MAX], *nx = NULL;
    gtask__redis_key(r, ks, sizeof(ks), queue, "stream", sfx[level]);
    size_t before = m->n;
    if ((rc = fn(r, c, ks, queue, cursor, limit - before, m, &nx)) != 0) return rc;
    if (nx) { /* a full page */
      if (level == 0) {
        *next = nx;
        return 0;
      }
      size_t len = strlen(nx) + 3;
      *next = malloc(len);
      if (*next) snprintf(*next, len, "%d:%s", level, nx);
      free(nx);
      return *next ? 0 : GTASK_ENOMEM;
    }
    if (m->n >= limit) return 0;
  }
  return 0;
}

static int list_pending(gtask__redis *r, gtask__conn *c, const char *queue, const char *cursor,
                        size_t limit, msgs *m, char **next) {
  return list_levels(r, c, queue, cursor, limit, m, next, list_pending_in);
}

static int list_active(gtask__redis *r, gtask__conn *c, const char *queue, const char *cursor,
                       size_t limit, msgs *m, char **next) {
  return list_levels(r, c, queue, cursor, limit, m, next, list_active_in);
}

/* SCHEDULED and FAILED: the sched or failed zset (score: due or kept-until
 * time; member: id + message) by rank; the cursor is the rank to start at. */
static int list_zset(gtask__redis *r, gtask__conn *c, const char *queue, const char *suffix,
                     const char *cursor, size_t limit, msgs *m, char **next) {
  long long from = 0;
  if (cursor) {
    char *end;
    from = strtoll(cursor, &end, 10);
    if (*end || from < 0) {
      gtask__set_error("bad cursor \"%s\" for the %s list", cursor,
                       strcmp(suffix, "sched") == 0 ? "scheduled" : suffix);
      return GTASK_EINVAL;
    }
  }
  char kz[GTASK__KEY_MAX];
  gtask__redis_key(r, kz, sizeof(kz), queue, suffix, NULL);
  redisReply *rep = gtask__redis_command(c, "ZRANGE %s %lld %lld WITHSCORES", kz, from,
                                         from + (long long)limit - 1);
  if (!rep) return conn_fail(r, c, "ZRANGE");
  int rc = rep->type == REDIS_REPLY_ARRAY ? 0 : reply_fail(r, rep, "ZRANGE");
  for (size_t k = 0; rc == 0 && k + 1 < rep->elements; k += 2) {
    const redisReply *mem = rep->element[k], *score = rep->element[k + 1];
    if (mem->type != REDIS_REPLY_STRING || mem->len < GTASK_ID_SIZE - 1) continue;
    gtask_msg *added = NULL;
    rc = msgs_add(m, mem->str, GTASK_ID_SIZE - 1, queue, mem->str + GTASK_ID_SIZE - 1,
                  mem->len - (GTASK_ID_SIZE - 1), &added);
    if (added && score->type == REDIS_REPLY_STRING) added->due_ms = strtoll(score->str, NULL, 10);
  }
  if (rc == 0 && rep->elements == 2 * limit) {
    char buf[32];
    gtask__fmt(buf, sizeof(buf), "%lld", from + (long long)limit);
    if (!(*next = gtask__strdup(buf))) rc = GTASK_ENOMEM;
  }
  freeReplyObject(rep);
  return rc;
}

/* DEAD: HSCAN.  One HSCAN call may return more than limit entries (a small
 * hash comes whole), so the cursor is "SCAN:SKIP": the HSCAN cursor of the
 * batch and how many of its entries earlier pages took. */
static int list_dead(gtask__redis *r, gtask__conn *c, const char *queue, const char *cursor,
                     size_t limit, msgs *m, char **next) {
  unsigned long long scan = 0, skip = 0;
  if (cursor) {
    char *end;
    scan = strtoull(cursor, &end, 10);
    if (*end != ':' || !end[1] || (skip = strtoull(end + 1, &end, 10), *end)) {
      gtask__set_error("bad cursor \"%s\" for the dead list", cursor);
      return GTASK_EINVAL;
    }
  }
  char kd[GTASK__KEY_MAX];
  gtask__redis_key(r, kd, sizeof(kd), queue, "dead", NULL);
  redisReply *rep = gtask__redis_command(c, "HSCAN %s %llu COUNT %lld", kd, scan, (long long)limit);
  if (!rep) return conn_fail(r, c, "HSCAN");
  int rc = 0;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
      rep->element[1]->type != REDIS_REPLY_ARRAY) {
    rc = reply_fail(r, rep, "HSCAN");
    freeReplyObject(rep);
    return rc;
  }
  const redisReply *kv = rep->element[1];
  size_t entries = kv->elements / 2, k = skip;
  for (; rc == 0 && k < entries && m->n < limit; k++)
    rc = msgs_add(m, kv->element[2 * k]->str, kv->element[2 * k]->len, queue,
                  kv->element[2 * k + 1]->str, kv->element[2 * k + 1]->len, NULL);
  char buf[64] = "";
  if (k < entries)
    gtask__fmt(buf, sizeof(buf), "%llu:%zu", scan, k);
  else if (strcmp(rep->element[0]->str, "0") != 0)
    gtask__fmt(buf, sizeof(buf), "%s:0", rep->element[0]->str);
  if (rc == 0 && buf[0] && !(*next = gtask__strdup(buf))) rc = GTASK_ENOMEM;
  freeReplyObject(rep);
  return rc;
}

int gtask__redis_list(gtask__redis *r, const char *queue, int state, const char *cursor,
                      size_t limit, gtask_msg ***out, size_t *n, char **next) {
  *out = NULL;
  *n = 0;
  *next = NULL;
  if (cursor && !cursor[0]) cursor = NULL;
  /* A stream entry id, or "L:" and one for a priority level L (list_levels). */
  const char *eid = cursor && (cursor[0] == '1' || cursor[0] == '2') && cursor[1] == ':'
                        ? cursor + 2
                        : cursor;
  if ((state == GTASK_LIST_PENDING || state == GTASK_LIST_ACTIVE) && cursor &&
      !stream_id_valid(eid)) {
    gtask__set_error("bad cursor \"%s\" for the %s list", cursor,
                     gtask_list_state_name((gtask_list_state)state));
    return GTASK_EINVAL;
  }
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(r, queue, &c);
  if (rc) return rc;
  msgs m = {0};
  switch (state) {
  case GTASK_LIST_PENDING: rc = list_pending(r, c, queue, cursor, limit, &m, next); break;
  case GTASK_LIST_ACTIVE: rc = list_active(r, c, queue, cursor, limit, &m, next); break;
  case GTASK_LIST_SCHEDULED: rc = list_zset(r, c, queue, "sched", cursor, limit, &m, next); break;
  case GTASK_LIST_FAILED: rc = list_zset(r, c, queue, "failed", cursor, limit, &m, next); break;
  case GTASK_LIST_DEAD: rc = list_dead(r, c, queue, cursor, limit, &m, next); break;
  default: gtask__set_error("no such state %d", state); rc = GTASK_EINVAL;
  }
  gtask__redis_put(r, c);
  if (rc) {
    msgs_free(&m);
    free(*next);
    *next = NULL;
    return rc;
  }
  *out = m.v;
  *n = m.n;
  return 0;
}

/* ---------------------------------------------------------------- find */

/* Scans the stream for the entry whose "i" is id, 1000 entries a command. */
static int find_in_stream(gtask__redis *r, gtask__conn *c, const char *ks, const char *queue,
                          const char *id, msgs *m) {
  char start[64] = "-";
  for (;;) {
    redisReply *rng = gtask__redis_command(c, "XRANGE %s %s + COUNT 1000", ks, start);
    if (!rng) return conn_fail(r, c, "XRANGE");
    if (rng->type != REDIS_REPLY_ARRAY) {
      int rc = reply_fail(r, rng, "XRANGE");
      freeReplyObject(rng);
      return rc;
    }
    for (size_t k = 0; k < rng->elements; k++) {
      msgs one = {0};
      int rc = entry_add(&one, rng->element[k], queue, NULL);
      if (rc == 0 && one.n == 1 && strcmp(one.v[0]->id, id) == 0) {
        /* The entry id tells whether it is leased (below). */
        rc = gtask_msg_set_lease(one.v[0], rng->element[k]->element[0]->str);
        m->v = one.v;
        m->n = m->cap = 1;
        freeReplyObject(rng);
        return rc;
      }
      msgs_free(&one);
      if (rc) {
        freeReplyObject(rng);
        return rc;
      }
    }
    bool more = rng->elements == 1000;
    if (more) gtask__fmt(start, sizeof(start), "(%s", rng->element[999]->element[0]->str);
    freeReplyObject(rng);
    if (!more) return 0;
  }
}

int gtask__redis_find(gtask__redis *r, const char *queue, const char *id, int *state,
                      gtask_msg **out) {
  *out = NULL;
  *state = 0;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(r, queue, &c);
  if (rc) return rc;
  char kd[GTASK__KEY_MAX], kp[GTASK__KEY_MAX];
  gtask__redis_key(r, kd, sizeof(kd), queue, "dead", NULL);
  gtask__redis_key(r, kp, sizeof(kp), queue, "pending", NULL);
  gtask__conn_appendf(c, "HGET %s %s", kd, id);
  gtask__conn_appendf(c, "SISMEMBER %s %s", kp, id);
  redisReply *reps[2] = {0};
  rc = replies(r, c, reps, 2, "find");
  msgs m = {0};
  bool queued = false;
  if (rc == 0) {
    if (reps[0]->type == REDIS_REPLY_STRING) {
      rc = msgs_add(&m, id, strlen(id), queue, reps[0]->str, reps[0]->len, NULL);
      *state = GTASK_LIST_DEAD;
    } else if (reps[0]->type == REDIS_REPLY_ERROR) {
      rc = reply_fail(r, reps[0], "HGET");
    }
    queued = reps[1]->type == REDIS_REPLY_INTEGER && reps[1]->integer == 1;
  }
  for (int k = 0; k < 2; k++)
    if (reps[k]) freeReplyObject(reps[k]);
  /* Scheduled or failed: its zset member starts with the id (ZSCAN MATCH;
   * a UUID has no glob characters). */
  static const struct {
    const char *suffix;
    int state;
  } zsets[] = {{"sched", GTASK_LIST_SCHEDULED}, {"failed", GTASK_LIST_FAILED}};
  for (size_t z = 0; z < 2 && rc == 0 && !*state; z++) {
    char kz[GTASK__KEY_MAX];
    gtask__redis_key(r, kz, sizeof(kz), queue, zsets[z].suffix, NULL);
    for (char cur[32] = "0"; rc == 0 && !*state;) {
      redisReply *rep = gtask__redis_command(c, "ZSCAN %s %s MATCH %s* COUNT 1000", kz, cur, id);
      if (!rep) {
        rc = conn_fail(r, c, "ZSCAN");
        break;
      }
      if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        rc = reply_fail(r, rep, "ZSCAN");
        freeReplyObject(rep);
        break;
      }
      const redisReply *kv = rep->element[1];
      if (kv->elements >= 2 && kv->element[0]->len >= GTASK_ID_SIZE - 1) {
        const redisReply *mem = kv->element[0];
        gtask_msg *added = NULL;
        rc = msgs_add(&m, id, strlen(id), queue, mem->str + GTASK_ID_SIZE - 1,
                      mem->len - (GTASK_ID_SIZE - 1), &added);
        if (added) added->due_ms = strtoll(kv->element[1]->str, NULL, 10);
        *state = zsets[z].state;
      }
      gtask__fmt(cur, sizeof(cur), "%s", rep->element[0]->str);
      freeReplyObject(rep);
      if (strcmp(cur, "0") == 0) break;
    }
  }
  /* In the stream: only a task in the pending set can be there. */
  /* (Each priority level's stream, highest first.) */
  static const char *const sfx[] = {"2", "1", NULL};
  char ks[GTASK__KEY_MAX];
  for (int l = 0; l < 3 && rc == 0 && !*state && queued && m.n == 0; l++) {
    gtask__redis_key(r, ks, sizeof(ks), queue, "stream", sfx[l]);
    rc = find_in_stream(r, c, ks, queue, id, &m);
  }
  if (rc == 0 && !*state && queued) {
    if (rc == 0 && m.n == 1) {
      const char *eid = m.v[0]->lease;
      redisReply *pel = gtask__redis_command(c, "XPENDING %s %s %s %s 1", ks, GTASK__GROUP, eid,
                                             eid);
      if (!pel) {
        rc = conn_fail(r, c, "XPENDING");
      } else {
        bool leased = pel->type == REDIS_REPLY_ARRAY && pel->elements == 1;
        *state = leased ? GTASK_LIST_ACTIVE : GTASK_LIST_PENDING;
        rc = gtask_msg_set_lease(m.v[0], leased ? pel->element[0]->element[1]->str : NULL);
        freeReplyObject(pel);
      }
    }
  }
  gtask__redis_put(r, c);
  if (rc == 0 && m.n == 0) {
    gtask__set_error("queue %s holds no message of task %s", queue, id);
    rc = GTASK_ENOTFOUND;
  }
  if (rc) {
    msgs_free(&m);
    *state = 0;
    return rc;
  }
  *out = m.v[0];
  free(m.v);
  return 0;
}
