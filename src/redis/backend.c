/* redis/backend.c -- the Redis backend: a pending set per queue, a state hash
 * per task while it is started or waiting for a retry (status, attempts, the
 * last run's record), and a notification list per finished task.
 *
 * A final state (SUCCESS, FAILURE) is the notification list P:{q}:n:ID with
 * one element, the result record itself (it carries status and attempts);
 * the script that pushes it deletes the state hash.  It is written once:
 * store.lua and finish.lua refuse to overwrite it, so a duplicate execution
 * can never change a result a client has already read.  A waiter blocks on
 * BLMOVE n n (source = destination: the element stays, so every waiter wakes,
 * none can miss a notice written before it started to wait, and the waiter
 * gets the result without another round trip). */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

struct gtask__redis_backend {
  gtask__redis *r;
};

gtask__redis *gtask__redis_backend_pool(gtask__redis_backend *b) { return b->r; }

/* A status name; GTASK_EPROTO for anything else (the caller says whose). */
static int parse_status(const char *s, size_t len, gtask_status *out) {
  static const struct {
    const char *name;
    gtask_status st;
  } names[] = {{"PENDING", GTASK_PENDING}, {"STARTED", GTASK_STARTED}, {"RETRY", GTASK_RETRY},
               {"SUCCESS", GTASK_SUCCESS}, {"FAILURE", GTASK_FAILURE},
               {"CANCELLED", GTASK_CANCELLED}};
  for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
    if (strlen(names[k].name) == len && memcmp(names[k].name, s, len) == 0) {
      *out = names[k].st;
      return 0;
    }
  return GTASK_EPROTO;
}

static size_t msg_run_end(gtask_msg *const *msgs, size_t n, size_t i) {
  size_t j = i + 1;
  while (j < n && strcmp(msgs[j]->queue, msgs[i]->queue) == 0) j++;
  return j;
}

/* Adds the state keys of m to a: its hash t:ID and notify list n:ID, named
 * in kp[0] and kp[1]. */
static void add_state_keys(gtask__redis_backend *b, gtask__argv *a, char (*kp)[GTASK__KEY_MAX],
                           const gtask_msg *m) {
  gtask__argv_add(a, kp[0], gtask__redis_key(b->r, kp[0], GTASK__KEY_MAX, m->queue, "t", m->id));
  gtask__argv_add(a, kp[1], gtask__redis_key(b->r, kp[1], GTASK__KEY_MAX, m->queue, "n", m->id));
}

/* PENDING: one SADD per run of messages of one queue (backend on its own
 * server; colocated, push.lua does it in the script that queues them). */
static int rk_pending(void *impl, gtask_msg *const *msgs, size_t n) {
  gtask__redis_backend *b = impl;
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  gtask__argv a;
  gtask__argv_init(&a);
  char key[GTASK__KEY_MAX];
  for (size_t i = 0; i < n && rc == 0;) {
    size_t j = msg_run_end(msgs, n, i);
    if ((rc = gtask__redis_use(b->r, msgs[i]->queue, &c)) != 0) break;
    gtask__argv_reset(&a);
    gtask__argv_adds(&a, "SADD");
    gtask__argv_add(&a, key, gtask__redis_key(b->r, key, sizeof(key), msgs[i]->queue, "pending", NULL));
    for (size_t k = i; k < j; k++) gtask__argv_adds(&a, msgs[k]->id);
    redisReply *rep;
    rc = gtask__redis_cmd(b->r, c, &a, &rep);
    if (rc == 0) freeReplyObject(rep);
    i = j;
  }
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* Runs script (started.lua, progress.lua, reset.lua) once per run of
 * messages of one queue: KEYS each message's t:<id> and n:<id>, ARGV the
 * TTL, then per message its attempt number (attempts) or its value (values),
 * or nothing (both NULL). */
static int per_task_script(gtask__redis_backend *b, gtask__script script, gtask_msg *const *msgs,
                           size_t n, const uint32_t *attempts, const char *const *values) {
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  gtask__argv a;
  gtask__argv_init(&a);
  char(*keys)[GTASK__KEY_MAX] = gtask__calloc(2 * (n ? n : 1), sizeof(*keys));
  if (!keys) rc = GTASK_ENOMEM;
  for (size_t i = 0; i < n && rc == 0;) {
    size_t j = msg_run_end(msgs, n, i);
    if ((rc = gtask__redis_use(b->r, msgs[i]->queue, &c)) != 0) break;
    gtask__argv_reset(&a);
    for (size_t k = i; k < j; k++) add_state_keys(b, &a, &keys[2 * k], msgs[k]);
    gtask__argv_addi(&a, b->r->conf->expire_ms);
    for (size_t k = i; k < j; k++) {
      if (attempts)
        gtask__argv_addi(&a, attempts[k]);
      else if (values)
        gtask__argv_adds(&a, values[k]);
    }
    redisReply *rep;
    rc = gtask__redis_eval(b->r, c, script, 2 * (j - i), &a, &rep);
    if (rc == 0) freeReplyObject(rep);
    i = j;
  }
  gtask__free(keys);
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* STARTED: started.lua once per run of messages of one queue (so that the
 * keys of one call share a hash slot).  The pending set is left alone: the
 * state hash written here outranks it, and the finish takes the id out. */
static int rk_started(void *impl, gtask_msg *const *msgs, const uint32_t *attempts, size_t n) {
  return per_task_script(impl, GTASK__LUA_STARTED, msgs, n, attempts, NULL);
}

/* Progress (issue 18): progress.lua, as started. */
static int rk_progress(void *impl, gtask_msg *const *msgs, const char *const *values, size_t n) {
  return per_task_script(impl, GTASK__LUA_PROGRESS, msgs, n, NULL, values);
}

static int rk_progress_get(void *impl, const char *queue, const char *id, char **value) {
  gtask__redis_backend *b = impl;
  *value = NULL;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  char tkey[GTASK__KEY_MAX];
  size_t tlen = gtask__redis_key(b->r, tkey, sizeof(tkey), queue, "t", id);
  redisReply *rep = gtask__redis_command(c, "HGET %b p", tkey, tlen);
  if (!rep) {
    gtask__set_error("redis %s: HGET: %s", b->r->conf->describe, c->errstr);
    rc = GTASK_ECONN;
  } else if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: HGET: %s", b->r->conf->describe, rep->str);
    rc = gtask__redis_reply_rc(rep->str);
  } else if (rep->type != REDIS_REPLY_STRING) {
    gtask__set_error("no progress of task %s in queue %s", id, queue);
    rc = GTASK_ENOTFOUND;
  } else if (!(*value = gtask__strndup(rep->str, rep->len))) {
    rc = GTASK_ENOMEM;
  }
  if (rep) freeReplyObject(rep);
  gtask__redis_put(b->r, c);
  return rc;
}

static int rk_store(void *impl, gtask_fin *fins, size_t n) {
  gtask__redis_backend *b = impl;
  gtask__conn *c = NULL; /* the connection to the node of the run at hand */
  int rc = 0;
  gtask__argv a;
  gtask__argv_init(&a);
  char(*keys)[GTASK__KEY_MAX] = gtask__calloc(2 * n + 1, sizeof(*keys));
  if (!keys) rc = GTASK_ENOMEM;
  for (size_t i = 0; i < n && rc == 0;) {
    size_t j = i + 1;
    while (j < n && strcmp(fins[j].msg->queue, fins[i].msg->queue) == 0) j++;
    if ((rc = gtask__redis_use(b->r, fins[i].msg->queue, &c)) != 0) break;
    gtask__argv_reset(&a);
    gtask__argv_add(&a, keys[2 * n],
                    gtask__redis_key(b->r, keys[2 * n], GTASK__KEY_MAX, fins[i].msg->queue, "pending", NULL));
    for (size_t k = i; k < j; k++) add_state_keys(b, &a, &keys[2 * k], fins[k].msg);
    gtask__argv_addi(&a, b->r->conf->expire_ms);
    for (size_t k = i; k < j; k++) {
      gtask__argv_adds(&a, gtask_status_name(fins[k].status));
      gtask__argv_add(&a, fins[k].result ? fins[k].result : "", fins[k].result ? fins[k].result_len : 0);
      gtask__argv_adds(&a, fins[k].msg->id);
      gtask__argv_adds(&a, fins[k].fresh ? "1" : "0");
    }
    redisReply *rep;
    rc = gtask__redis_eval(b->r, c, GTASK__LUA_STORE, 1 + 2 * (j - i), &a, &rep);
    if (rc == 0) {
      rc = gtask__redis_int_array(b->r, "store.lua", rep, j - i);
      for (size_t k = i; k < j && rc == 0; k++) fins[k].fenced = rep->element[k - i]->integer != 1;
      freeReplyObject(rep);
    }
    i = j;
  }
  gtask__free(keys);
  gtask__argv_free(&a);
  gtask__redis_put(b->r, c);
  return rc;
}

/* The state of one task, read atomically in one round trip (MULTI: the
 * pending set, the state hash and the notify list).  The notify list wins
 * when it holds an element: that is the final result record, which carries
 * status and attempts.  Else the state hash (a running task has it and is
 * still in the set); else a member of the set is PENDING; else the id is
 * unknown (never sent, or its state expired). */
static int read_state(gtask__redis_backend *b, gtask__conn *c, const char *queue, const char *id,
                      gtask_status *status, uint32_t *attempts, char **result, size_t *len) {
  if (result) *result = NULL;
  if (len) *len = 0;
  int rc = 0;
  char pkey[GTASK__KEY_MAX], tkey[GTASK__KEY_MAX], nkey[GTASK__KEY_MAX];
  size_t plen = gtask__redis_key(b->r, pkey, sizeof(pkey), queue, "pending", NULL);
  size_t tlen = gtask__redis_key(b->r, tkey, sizeof(tkey), queue, "t", id);
  size_t nlen = gtask__redis_key(b->r, nkey, sizeof(nkey), queue, "n", id);
  enum { NCMD = 5 };
  redisReply *rep[NCMD] = {NULL};
  if (gtask__conn_appendf(c, "MULTI") != REDIS_OK ||
      gtask__conn_appendf(c, "SISMEMBER %b %s", pkey, plen, id) != REDIS_OK ||
      gtask__conn_appendf(c, "HMGET %b s a r", tkey, tlen) != REDIS_OK ||
      gtask__conn_appendf(c, "LINDEX %b 0", nkey, nlen) != REDIS_OK || gtask__conn_appendf(c, "EXEC") != REDIS_OK) {
    gtask__set_error("redis %s: reading a task's state: out of memory", b->r->conf->describe);
    rc = GTASK_ENOMEM;
  }
  for (int k = 0; k < NCMD && rc == 0; k++)
    if (gtask__conn_get_reply(c, &rep[k]) != REDIS_OK) {
      gtask__set_error("redis %s: reading a task's state: %s", b->r->conf->describe,
                       c->errstr[0] ? c->errstr : "no reply");
      rc = GTASK_ECONN;
    }
  if (rc && !c->err) c->err = REDIS_ERR_IO; /* a reply may be left unread: never lend it again */
  if (rc) goto out;
  const redisReply *ex = rep[NCMD - 1];
  for (int k = 0; k < NCMD && rc == 0; k++)
    if (rep[k]->type == REDIS_REPLY_ERROR) {
      gtask__set_error("redis %s: reading a task's state: %s", b->r->conf->describe, rep[k]->str);
      rc = gtask__redis_reply_rc(rep[k]->str);
    }
  if (rc) goto out;
  if (ex->type != REDIS_REPLY_ARRAY || ex->elements != 3 || ex->element[0]->type != REDIS_REPLY_INTEGER ||
      ex->element[1]->type != REDIS_REPLY_ARRAY || ex->element[1]->elements != 3) {
    gtask__set_error("redis %s: reading a task's state: unexpected reply", b->r->conf->describe);
    rc = GTASK_EPROTO;
    goto out;
  }
  const redisReply *member = ex->element[0], *h = ex->element[1], *fin = ex->element[2];
  const redisReply *rec = NULL; /* the result record, if any */
  if (fin->type == REDIS_REPLY_STRING) {
    gtask_result *r = NULL;
    char why[160];
    rc = gtask__result_decode(fin->str, fin->len, id, &r, why, sizeof(why));
    if (rc == GTASK_EPROTO) gtask__set_error("task %s: stored result: %s", id, why);
    if (rc) goto out;
    *status = r->status;
    if (attempts) *attempts = r->attempts;
    gtask_result_free(r);
    rec = fin;
  } else if (h->element[0]->type == REDIS_REPLY_STRING) {
    rc = parse_status(h->element[0]->str, h->element[0]->len, status);
    if (rc) {
      gtask__set_error("task %s: stored status %.*s is not one gtask knows", id, (int)h->element[0]->len,
                       h->element[0]->str);
      goto out;
    }
    if (attempts)
      *attempts = h->element[1]->type == REDIS_REPLY_STRING ? (uint32_t)strtoul(h->element[1]->str, NULL, 10) : 0;
    if (h->element[2]->type == REDIS_REPLY_STRING) rec = h->element[2];
  } else if (member->integer == 1) {
    *status = GTASK_PENDING;
    if (attempts) *attempts = 0;
  } else {
    gtask__set_error("no task %s in queue %s", id, queue);
    rc = GTASK_ENOTFOUND;
    goto out;
  }
  if (result && rec) {
    *result = gtask__strndup(rec->str, rec->len);
    if (!*result) rc = GTASK_ENOMEM;
    else if (len) *len = rec->len;
  }
out:
  for (int k = 0; k < NCMD; k++)
    if (rep[k]) freeReplyObject(rep[k]);
  return rc;
}

static int rk_get(void *impl, const char *queue, const char *id, gtask_status *status,
                  uint32_t *attempts, char **result, size_t *len) {
  gtask__redis_backend *b = impl;
  if (result) *result = NULL;
  if (len) *len = 0;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(b->r, queue, &c);
  if (rc) return rc;
  rc = read_state(b, c, queue, id, status, attempts, result, len);
  gtask__redis_put(b->r, c);
  return rc;
}

/* The final record of a task (LINDEX n 0) into *result, if asked for: 0 if
 * the task is final, GTASK_ENOTFOUND if it is not (or unknown). */
static int final_record(gtask__redis_backend *b, gtask__conn *c, const char *queue, const char *id,
                        char **result, size_t *len) {
  int rc = 0;
  char nkey[GTASK__KEY_MAX];
  size_t nlen = gtask__redis_key(b->r, nkey, sizeof(nkey), queue, "n", id);
  redisReply *rep = gtask__redis_command(c, "LINDEX %b 0", nkey, nlen);
  if (!rep) {
    gtask__set_error("redis %s: LINDEX: %s", b->r->conf->describe, c->errstr);
    return GTASK_ECONN;
  }
  if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: LINDEX: %s", b->r->conf->describe, rep->str);
    rc = gtask__redis_reply_rc(rep->str);
  } else if (rep->type != REDIS_REPLY_STRING) {
    rc = GTASK_ENOTFOUND;
  } else if (result) {
    *result = gtask__strndup(rep->str, rep->len);
    if (!*result) rc = GTASK_ENOMEM;
    else if (len) *len = rep->len;
  }
  freeReplyObject(rep);
  return rc;
}

static bool is_final(gtask_status s) {
  return s == GTASK_SUCCESS || s == GTASK_FAILURE || s == GTASK_CANCELLED;
}

/* A wait blocks for as long as its timeout: it runs on a connection of its
 * own (gtask__redis_get_own), never on a pooled one, so that waits can never
 * hold the connections a worker sharing this backend needs to write the
 * results they wait for. */
static int wait_on(gtask__redis_backend *b, gtask__conn *c, const char *queue, const char *id,
                   int64_t timeout_ms, bool known, char **result, size_t *len);

static int rk_wait(void *impl, const char *queue, const char *id, int64_t timeout_ms, bool known,
                   char **result, size_t *len) {
  gtask__redis_backend *b = impl;
  if (result) *result = NULL;
  if (len) *len = 0;
  /* On a cluster, a wait whose node turned the slot away (MOVED after a
   * resharding or a failover) or went away is asked again where the slot is
   * now, a few times: it only reads. */
  int rc;
  for (int attempt = 0;; attempt++) {
    gtask__conn *c;
    rc = gtask__redis_get_own(gtask__redis_for_queue(b->r, queue), &c);
    if (rc == 0) {
      rc = wait_on(b, c, queue, id, timeout_ms, known, result, len);
      gtask__redis_put_own(b->r, c);
    }
    if (rc != GTASK_ECONN || !b->r->cluster || attempt == 3) break;
    gtask__cluster_stale(b->r);
    struct timespec ts = {0, 100 * 1000 * 1000L};
    nanosleep(&ts, NULL);
  }
  return rc;
}

static int wait_on(gtask__redis_backend *b, gtask__conn *c, const char *queue, const char *id,
                   int64_t timeout_ms, bool known, char **result, size_t *len) {
  gtask_status st;
  int rc = 0;
  /* Round trip 1: does the task exist, and is it final already?  (Then its
   * record comes with the answer.)  Skipped for a task the caller sent: the
   * notification list answers a final one as fast, and an id unknown after
   * all is found out below, at the timeout. */
  if (!known || timeout_ms == 0) {
    /* A task waited on after the fact is usually final: its record alone
     * answers (one command); else the full state read. */
    rc = final_record(b, c, queue, id, result, len);
    if (rc != GTASK_ENOTFOUND) return rc;
    rc = read_state(b, c, queue, id, &st, NULL, result, len);
    if (rc) return rc;
    if (is_final(st)) return 0;
    if (result) {
      gtask__free(*result);
      *result = NULL;
      if (len) *len = 0;
    }
    if (timeout_ms == 0) return GTASK_ETIMEDOUT;
  }

  /* Round trip 2: block on the notification list, whose one element is the
   * final result record. */
  char key[GTASK__KEY_MAX], secs[32];
  gtask__redis_key(b->r, key, sizeof(key), queue, "n", id);
  /* BLMOVE takes seconds as a decimal; 0 blocks for ever. */
  snprintf(secs, sizeof(secs), "%.3f", timeout_ms < 0 ? 0.0 : (double)timeout_ms / 1000.0);
  /* The connection must outwait the block (0: BLMOVE blocks for ever). */
  gtask__conn_set_timeout(c, timeout_ms >= 0 ? timeout_ms + b->r->conf->timeout_ms : 0);
  redisReply *rep = gtask__conn_command(c, "BLMOVE %s %s RIGHT LEFT %s", key, key, secs);
  if (!rep) {
    gtask__set_error("redis %s: BLMOVE: %s", b->r->conf->describe, c->errstr);
    return GTASK_ECONN;
  }
  gtask__conn_set_timeout(c, b->r->conf->timeout_ms);
  bool woke = rep->type == REDIS_REPLY_STRING;
  if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: BLMOVE: %s", b->r->conf->describe, rep->str);
    rc = gtask__redis_reply_rc(rep->str);
  } else if (woke && result && rep->len > 0) {
    *result = gtask__strndup(rep->str, rep->len); /* NULL on OOM: caller reads with get */
    if (*result && len) *len = rep->len;
  }
  freeReplyObject(rep);
  if (rc) return rc;
  if (woke) return 0;
  /* Timed out: the state may still have become final if its notice expired. */
  rc = read_state(b, c, queue, id, &st, NULL, NULL, NULL);
  if (rc) return rc;
  return is_final(st) ? 0 : GTASK_ETIMEDOUT;
}

static int rk_reset(void *impl, gtask_msg *const *msgs, size_t n) {
  return per_task_script(impl, GTASK__LUA_RESET, msgs, n, NULL, NULL);
}

/* Claims only: the broker queues the claimed ones afterwards. */
static int rk_claim(void *impl, gtask_claim *cs, size_t n) {
  gtask__redis_backend *b = impl;
  return gtask__redis_claim(b->r, b->r, false, cs, n);
}

static int rk_finals(void *impl, gtask_msg *const *msgs, size_t n, bool *out) {
  gtask__redis_backend *b = impl;
  return gtask__redis_finals(b->r, msgs, n, out);
}

static void rk_destroy(void *impl) {
  gtask__redis_backend *b = impl;
  gtask__redis_free(b->r);
  gtask__free(b);
}

const gtask_backend_ops gtask__redis_backend_ops = {
    .abi = GTASK_EXTEND_ABI,
    .name = "redis",
    .pending = rk_pending,
    .started = rk_started,
    .store = rk_store,
    .get = rk_get,
    .wait = rk_wait,
    .reset = rk_reset,
    .destroy = rk_destroy,
    .claim = rk_claim,
    .finals = rk_finals,
    .progress = rk_progress,
    .progress_get = rk_progress_get,
};

GTASK_EXTERN int gtask_backend_redis_new(gtask_backend **out, const gtask_redis_conf *conf) {
  if (!out || !conf) {
    gtask__set_error("gtask_backend_redis_new: NULL argument");
    return GTASK_EINVAL;
  }
  *out = NULL;
  gtask__redis_backend *b = gtask__calloc(1, sizeof(*b));
  if (!b) return GTASK_ENOMEM;
  int rc = gtask__redis_new(conf, &b->r);
  if (rc) {
    gtask__free(b);
    return rc;
  }
  gtask_backend *h = gtask__backend_new(&gtask__redis_backend_ops, b);
  if (!h) return GTASK_ENOMEM;
  *out = h;
  return 0;
}
