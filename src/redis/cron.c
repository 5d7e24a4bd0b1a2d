/* redis/cron.c -- where periodic tasks live in Redis (issue 19).
 *
 *   P:cron          hash: entry name -> definition (JSON, schedule.c writes
 *                   and reads it).  It is the one gtask key outside every
 *                   queue's hash slot: one key, so each command on it is a
 *                   single-slot command on Redis Cluster too.
 *   P:{q}:cron:NAME hash: the entry's fire state -- last (the last tick
 *                   done, unix ms), id (the task id of the last tick queued),
 *                   at (when it was queued), skipped (ticks skipped as missed).
 *                   In the slot of the queue q the entry sends to, so that
 *                   cron_fire.lua checks and advances it and queues the task
 *                   in one single-slot script.
 *
 * These calls need a Redis broker (gtask_broker_redis_new): the in-memory
 * broker has no cross-process schedulers to coordinate.  Each borrows one
 * pooled connection per call. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static int need_redis(const gtask_broker *b, gtask__redis **r) {
  *r = gtask__redis_broker_pool(b);
  if (*r) return 0;
  gtask__set_error("periodic tasks need a Redis broker (gtask_broker_redis_new)");
  return GTASK_EINVAL;
}

bool gtask__cron_supported(const gtask_broker *b) { return gtask__redis_broker_pool(b) != NULL; }

static size_t registry_key(const gtask__redis *r, char *buf, size_t size) {
  int n = snprintf(buf, size, "%s:cron", r->conf->prefix);
  return n < 0 ? 0 : (size_t)n;
}

/* Runs `verb P:cron [name [value]]` (HSET, HDEL, HGET, HGETALL); *reply to
 * free, or a code. */
static int registry_cmd(gtask__redis *r, const char *verb, const char *name, const char *val,
                        size_t len, redisReply **reply) {
  char key[GTASK__KEY_MAX];
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, verb);
  gtask__argv_add(&a, key, registry_key(r, key, sizeof(key)));
  if (name) gtask__argv_adds(&a, name);
  if (val) gtask__argv_add(&a, val, len);
  gtask__conn *c = NULL;
  /* On a cluster, the master of the key's own slot. */
  int rc = gtask__redis_get(gtask__redis_route(r, key, strlen(key)), &c);
  if (rc == 0) {
    rc = a.oom ? GTASK_ENOMEM : gtask__redis_cmd(r, c, &a, reply);
    gtask__redis_put(r, c);
  }
  gtask__argv_free(&a);
  return rc;
}

int gtask__cron_put(gtask_broker *b, const char *name, const char *def, size_t len) {
  gtask__redis *r;
  redisReply *rep;
  int rc = need_redis(b, &r);
  if (rc == 0) rc = registry_cmd(r, "HSET", name, def, len, &rep);
  if (rc == 0) freeReplyObject(rep);
  return rc;
}

int gtask__cron_del(gtask_broker *b, const char *name) {
  gtask__redis *r;
  redisReply *rep;
  int rc = need_redis(b, &r);
  if (rc == 0) rc = registry_cmd(r, "HDEL", name, NULL, 0, &rep);
  if (rc) return rc;
  bool removed = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
  freeReplyObject(rep);
  if (removed) return 0;
  gtask__set_error("no periodic task \"%s\"", name);
  return GTASK_ENOTFOUND;
}

void gtask__cron_defs_free(gtask__cron_raw *v, size_t n) {
  for (size_t k = 0; v && k < n; k++) {
    gtask__free(v[k].name);
    gtask__free(v[k].def);
  }
  gtask__free(v);
}

int gtask__cron_all(gtask_broker *b, const char *name, gtask__cron_raw **out, size_t *n) {
  *out = NULL;
  *n = 0;
  gtask__redis *r;
  redisReply *rep;
  int rc = need_redis(b, &r);
  if (rc == 0) rc = registry_cmd(r, name ? "HGET" : "HGETALL", name, NULL, 0, &rep);
  if (rc) return rc;
  if (name && rep->type == REDIS_REPLY_NIL) {
    freeReplyObject(rep);
    gtask__set_error("no periodic task \"%s\"", name);
    return GTASK_ENOTFOUND;
  }
  /* One entry: the value alone; all: name, value pairs. */
  size_t count = name ? 1 : rep->type == REDIS_REPLY_ARRAY ? rep->elements / 2 : 0;
  bool shape = name ? rep->type == REDIS_REPLY_STRING
                    : rep->type == REDIS_REPLY_ARRAY && rep->elements % 2 == 0;
  for (size_t k = 0; shape && !name && k < rep->elements; k++)
    shape = rep->element[k]->type == REDIS_REPLY_STRING;
  if (!shape) {
    rc = gtask__redis_proto_error(r, name ? "HGET" : "HGETALL", rep, "strings");
    freeReplyObject(rep);
    return rc;
  }
  gtask__cron_raw *v = count ? gtask__calloc(count, sizeof(*v)) : NULL;
  if (count && !v) rc = GTASK_ENOMEM;
  for (size_t k = 0; k < count && rc == 0; k++) {
    const redisReply *nm = name ? NULL : rep->element[2 * k];
    const redisReply *df = name ? rep : rep->element[2 * k + 1];
    v[k].name = nm ? gtask__strndup(nm->str, nm->len) : gtask__strdup(name);
    v[k].def = gtask__strndup(df->str, df->len);
    v[k].len = df->len;
    if (!v[k].name || !v[k].def) rc = GTASK_ENOMEM;
  }
  freeReplyObject(rep);
  if (rc) {
    gtask__cron_defs_free(v, count);
    return rc;
  }
  *out = v;
  *n = count;
  return 0;
}

/* "123" -> 123; anything else 0. */
static int64_t str_int(const redisReply *e) {
  if (!e || e->type != REDIS_REPLY_STRING) return 0;
  char buf[32];
  gtask__fmt(buf, sizeof(buf), "%.*s", (int)e->len, e->str);
  return strtoll(buf, NULL, 10);
}

int gtask__cron_state(gtask_broker *b, const char *queue, const char *name, gtask__cron_fired *st) {
  memset(st, 0, sizeof(*st));
  gtask__redis *r;
  int rc = need_redis(b, &r);
  if (rc) return rc;
  char key[GTASK__KEY_MAX];
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, "HMGET");
  gtask__argv_add(&a, key, gtask__redis_key(r, key, sizeof(key), queue, "cron", name));
  gtask__argv_adds(&a, "last");
  gtask__argv_adds(&a, "id");
  gtask__argv_adds(&a, "at");
  gtask__argv_adds(&a, "skipped");
  redisReply *rep;
  gtask__conn *c = NULL;
  rc = gtask__redis_use(r, queue, &c);
  if (rc == 0) {
    rc = a.oom ? GTASK_ENOMEM : gtask__redis_cmd(r, c, &a, &rep);
    gtask__redis_put(r, c);
  }
  gtask__argv_free(&a);
  if (rc) return rc;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4) {
    rc = gtask__redis_proto_error(r, "HMGET", rep, "an array of 4");
    freeReplyObject(rep);
    return rc;
  }
  st->known = rep->element[0]->type == REDIS_REPLY_STRING;
  st->last_ms = str_int(rep->element[0]);
  const redisReply *id = rep->element[1];
  if (id->type == REDIS_REPLY_STRING && id->len == GTASK_ID_SIZE - 1)
    memcpy(st->id, id->str, GTASK_ID_SIZE);
  st->at_ms = str_int(rep->element[2]);
  st->skipped = str_int(rep->element[3]);
  freeReplyObject(rep);
  return 0;
}

/* The holder of the unique key ukey (GET), into holder ("" if free). */
static int unique_holder(gtask__redis *r, gtask__conn *c, const char *ukey,
                         char holder[GTASK_ID_SIZE]) {
  holder[0] = '\0';
  redisReply *rep = gtask__conn_command(c, "GET %s", ukey);
  if (!rep) {
    gtask__set_error("redis %s: GET %s: %s", r->conf->describe, ukey, c->errstr);
    return GTASK_ECONN;
  }
  int rc = 0;
  if (rep->type == REDIS_REPLY_STRING && rep->len == GTASK_ID_SIZE - 1)
    memcpy(holder, rep->str, GTASK_ID_SIZE);
  else if (rep->type != REDIS_REPLY_NIL)
    rc = gtask__redis_proto_error(r, "GET", rep, "a task id");
  freeReplyObject(rep);
  return rc;
}

int gtask__cron_fire(gtask_broker *b, bool with_state, const char *queue, const char *name,
                     int64_t tick_ms, const gtask__cron_task *task, int64_t *last_ms) {
  gtask__redis *r;
  int rc = need_redis(b, &r);
  if (rc) return rc;
  gtask__conn *c = NULL;
  rc = gtask__redis_use(r, queue, &c);
  if (rc) return rc;
  char keys[7][GTASK__KEY_MAX];
  size_t kl[7];
  kl[0] = gtask__redis_key(r, keys[0], GTASK__KEY_MAX, queue, "cron", name);
  kl[1] = gtask__redis_key(r, keys[1], GTASK__KEY_MAX, queue, "stream", NULL);
  kl[2] = gtask__redis_key(r, keys[2], GTASK__KEY_MAX, queue, "pending", NULL);
  kl[3] = gtask__redis_key(r, keys[3], GTASK__KEY_MAX, queue, "sched", NULL);
  bool unique = task && task->ukey;
  if (unique) kl[4] = gtask__redis_key(r, keys[4], GTASK__KEY_MAX, queue, "u", task->ukey);
  gtask__argv a;
  gtask__argv_init(&a);
  redisReply *rep = NULL;
  /* An until-done key: its holder's state keys are named in KEYS, so the
   * holder is read first, and the script answers -1 if it changed since
   * (then read again: a few rounds, as claim.c). */
  for (int round = 0; rc == 0; round++) {
    char holder[GTASK_ID_SIZE] = "";
    int nkeys = unique ? 5 : 4;
    if (unique && task->unique_ms == GTASK_UNIQUE_UNTIL_DONE) {
      rc = unique_holder(r, c, keys[4], holder);
      if (rc) break;
      if (holder[0]) {
        kl[5] = gtask__redis_key(r, keys[5], GTASK__KEY_MAX, queue, "t", holder);
        kl[6] = gtask__redis_key(r, keys[6], GTASK__KEY_MAX, queue, "n", holder);
        nkeys = 7;
      }
    }
    gtask__argv_reset(&a);
    for (int k = 0; k < nkeys; k++) gtask__argv_add(&a, keys[k], kl[k]);
    gtask__argv_addi(&a, tick_ms);
    gtask__argv_adds(&a, task ? "1" : "0");
    gtask__argv_adds(&a, with_state ? "1" : "0");
    gtask__argv_addi(&a, gtask__now_ms());
    gtask__argv_adds(&a, task ? task->id : "");
    gtask__argv_add(&a, task ? task->body : "", task ? task->len : 0);
    gtask__argv_addi(&a, task ? task->due_ms : 0);
    if (unique) gtask__argv_addi(&a, task->unique_ms);
    else gtask__argv_adds(&a, "");
    gtask__argv_adds(&a, holder);
    gtask__argv_addi(&a, r->conf->expire_ms);
    rc = a.oom ? GTASK_ENOMEM : gtask__redis_eval(r, c, GTASK__LUA_CRON_FIRE, nkeys, &a, &rep);
    if (rc) break;
    rc = gtask__redis_int_array(r, "cron_fire.lua", rep, 2);
    if (rc == 0 && rep->element[0]->integer == -1) {
      freeReplyObject(rep);
      rep = NULL;
      if (round + 1 < 5) continue;
      gtask__set_error("periodic task %s: the holder of its unique key keeps changing", name);
      rc = GTASK_ESTATE;
    }
    break;
  }
  gtask__argv_free(&a);
  gtask__redis_put(r, c);
  if (rc) {
    if (rep) freeReplyObject(rep);
    return rc;
  }
  *last_ms = rep->element[1]->integer;
  long long v = rep->element[0]->integer;
  rc = v == 1 ? 1 : v == 2 ? 2 : 0;
  freeReplyObject(rep);
  return rc;
}
