/* test_lua_faults.c -- the Redis scripts against keys they cannot use (issue 14).
 *
 * Redis does not roll back a Lua script that fails half-way: the writes made
 * before the failing command stay.  So a script that meets a key of the wrong
 * type (a string where the stream should be) or a value it cannot use (a
 * counter that is not a number) must fail before its first write.  Each test
 * here builds a queue with tasks in every state, corrupts one key a script
 * touches (each key in turn, and in more than one way), calls the operation
 * through the broker or backend ops table (internal.h), and checks that it
 * failed with GTASK_EREDIS, that the error names the key, and that no key of
 * the queue changed: a dump of every key (type, contents, TTL present or not;
 * for the stream also its entries, last id, consumer groups and every lease
 * with its owner and delivery count) is the same before and after.  Then the
 * key is put back as it was and the same call must succeed.
 *
 * extend.lua, promote.lua and dead_purge.lua changed nothing before the fix
 * either (each reads the key it fails on before it writes), but their errors
 * did not say which key; their cases guard that order.  Every test here fails
 * without the fix. */
#include "internal.h"
#include "redis_fixture.h"
#include "test.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",1],[\"int64\",2]],\"c\":1764000000000}"
#define REC_OK "{\"v\":1,\"s\":\"SUCCESS\",\"vals\":[[\"int64\",3]],\"at\":1}"
#define REC_FAIL "{\"v\":1,\"s\":\"FAILURE\",\"err\":\"no\",\"at\":1}"
#define REC_RETRY "{\"v\":1,\"s\":\"RETRY\",\"err\":\"again\",\"at\":1}"
#define FENCE "3" /* the fence the tests' queues start with */
#define KEY_MAX 256 /* gtask:{queue}:n:<id> fits */

/* ---------------------------------------------------------------- environment */

typedef struct env {
  gt_redis *redis;
  gtask_redis_conf *conf;
  gtask_broker *b;
  gtask_backend *be;    /* db 0: colocated with b */
  gtask_backend *split; /* db 1: a backend on its own (store.lua, reset.lua) */
  void *state;          /* b->ops->colocated(be) */
  redisContext *c[2];   /* db 0 and db 1, for reading and corrupting keys */
  char q[64];
} env;

static redisReply *cmd(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  if (!r) TEST_FAIL("redis: %s", c->errstr);
  return r;
}

static void cmd_ok(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  if (!r) TEST_FAIL("redis: %s", c->errstr);
  if (r->type == REDIS_REPLY_ERROR) TEST_FAIL("redis: %s: %s", fmt, r->str);
  freeReplyObject(r);
}

static void env_start(env *e) {
  memset(e, 0, sizeof(*e));
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  ASSERT_OK(gtask_redis_conf_new(&e->conf, gt_redis_url(e->redis), NULL, -1));
  ASSERT_OK(gtask_broker_redis_new(&e->b, e->conf));
  ASSERT_OK(gtask_backend_redis_new(&e->be, e->conf));
  e->state = e->b->ops->colocated(e->b->impl, e->be);
  ASSERT_NOT_NULL(e->state);
  gtask_redis_conf *c1;
  char url1[64]; /* the server's db 1 (a db argument may not contradict the URL's /0) */
  snprintf(url1, sizeof(url1), "redis://127.0.0.1:%d/1", gt_redis_port(e->redis));
  ASSERT_OK(gtask_redis_conf_new(&c1, url1, NULL, -1));
  ASSERT_OK(gtask_backend_redis_new(&e->split, c1));
  gtask_redis_conf_free(c1);
  for (int d = 0; d < 2; d++) {
    e->c[d] = gt_redis_connect(e->redis);
    ASSERT_NOT_NULL(e->c[d]);
    cmd_ok(e->c[d], "SELECT %d", d);
  }
  char id[GTASK_ID_SIZE];
  gtask__uuid(id);
  snprintf(e->q, sizeof(e->q), "q-%.8s", id);
}

static void env_stop(env *e) {
  for (int d = 0; d < 2; d++) redisFree(e->c[d]);
  gtask_broker_free(e->b);
  gtask_backend_free(e->be);
  gtask_backend_free(e->split);
  gtask_redis_conf_free(e->conf);
  gt_redis_stop(e->redis);
}

/* "gtask:{q}:suffix" or "gtask:{q}:suffix:id", in a static buffer of 4 that
 * rotate (so that a call can name two keys). */
static const char *key(const env *e, const char *suffix, const char *id) {
  static char buf[4][KEY_MAX];
  static int next;
  char *k = buf[next++ % 4];
  if (id)
    snprintf(k, KEY_MAX, "gtask:{%s}:%s:%s", e->q, suffix, id);
  else
    snprintf(k, KEY_MAX, "gtask:{%s}:%s", e->q, suffix);
  return k;
}

/* ---------------------------------------------------------------- a dump of a queue */

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t len) {
  if (b->n + len + 1 > b->cap) {
    b->cap = (b->n + len + 1) * 2;
    b->p = realloc(b->p, b->cap);
    ASSERT_NOT_NULL(b->p);
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = '\0';
}

static void sb_fmt(sbuf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  ASSERT_TRUE(n >= 0 && (size_t)n < sizeof(tmp));
  sb_add(b, tmp, (size_t)n);
}

/* A reply as text: strings quoted, arrays in brackets (nested). */
static void sb_reply(sbuf *b, const redisReply *r) {
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    sb_add(b, "\"", 1);
    sb_add(b, r->str, r->len);
    sb_add(b, "\"", 1);
    break;
  case REDIS_REPLY_INTEGER:
    sb_fmt(b, "%lld", r->integer);
    break;
  case REDIS_REPLY_NIL:
    sb_add(b, "nil", 3);
    break;
  case REDIS_REPLY_ARRAY:
    sb_add(b, "[", 1);
    for (size_t k = 0; k < r->elements; k++) {
      if (k) sb_add(b, " ", 1);
      sb_reply(b, r->element[k]);
    }
    sb_add(b, "]", 1);
    break;
  default:
    TEST_FAIL("unexpected reply type %d", r->type);
  }
}

/* The fields named in want[] of a flat [name, value, ...] reply. */
static void sb_fields(sbuf *b, const redisReply *r, const char *const *want) {
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  for (size_t k = 0; k + 1 < r->elements; k += 2)
    for (const char *const *w = want; *w; w++)
      if (r->element[k]->type == REDIS_REPLY_STRING && strcmp(r->element[k]->str, *w) == 0) {
        sb_fmt(b, " %s=", *w);
        sb_reply(b, r->element[k + 1]);
      }
}

static int str_cmp(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The members of a reply (an array of strings), sorted, as text. */
static void sb_sorted(sbuf *b, const redisReply *r, size_t stride) {
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  size_t n = r->elements / stride;
  char **v = calloc(n ? n : 1, sizeof(*v));
  for (size_t k = 0; k < n; k++) {
    sbuf one = {0};
    for (size_t j = 0; j < stride; j++) {
      sb_add(&one, " ", 1);
      sb_reply(&one, r->element[k * stride + j]);
    }
    v[k] = one.p;
  }
  qsort(v, n, sizeof(*v), str_cmp);
  for (size_t k = 0; k < n; k++) {
    sb_add(b, v[k], strlen(v[k]));
    free(v[k]);
  }
  free(v);
}

/* Every key of the queue in c's database, with its type, whether it has a
 * TTL, and its contents; a stream with its metadata, groups, consumers and
 * leases (owner and delivery count, not idle times).  Free with free(). */
static char *dump_db(const env *e, redisContext *c) {
  sbuf b = {0};
  sb_add(&b, "", 0);
  char pattern[KEY_MAX];
  snprintf(pattern, sizeof(pattern), "gtask:{%s}:*", e->q);
  redisReply *keys = cmd(c, "KEYS %s", pattern);
  ASSERT_EQ(keys->type, REDIS_REPLY_ARRAY);
  char **names = calloc(keys->elements ? keys->elements : 1, sizeof(*names));
  for (size_t k = 0; k < keys->elements; k++) names[k] = keys->element[k]->str;
  qsort(names, keys->elements, sizeof(*names), str_cmp);
  for (size_t k = 0; k < keys->elements; k++) {
    const char *kn = names[k];
    redisReply *t = cmd(c, "TYPE %s", kn), *ttl = cmd(c, "PTTL %s", kn);
    sb_fmt(&b, "%s %s%s:", kn, t->str, ttl->integer > 0 ? " (ttl)" : "");
    redisReply *r;
    if (strcmp(t->str, "string") == 0) {
      r = cmd(c, "GET %s", kn);
      sb_add(&b, " ", 1);
      sb_reply(&b, r);
    } else if (strcmp(t->str, "hash") == 0) {
      sb_sorted(&b, r = cmd(c, "HGETALL %s", kn), 2);
    } else if (strcmp(t->str, "set") == 0) {
      sb_sorted(&b, r = cmd(c, "SMEMBERS %s", kn), 1);
    } else if (strcmp(t->str, "zset") == 0) {
      r = cmd(c, "ZRANGE %s 0 -1 WITHSCORES", kn);
      sb_add(&b, " ", 1);
      sb_reply(&b, r);
    } else if (strcmp(t->str, "list") == 0) {
      r = cmd(c, "LRANGE %s 0 -1", kn);
      sb_add(&b, " ", 1);
      sb_reply(&b, r);
    } else {
      ASSERT_STR_EQ(t->str, "stream");
      r = cmd(c, "XRANGE %s - +", kn);
      sb_add(&b, " entries ", 9);
      sb_reply(&b, r);
      redisReply *info = cmd(c, "XINFO STREAM %s", kn);
      static const char *const sf[] = {"length", "last-generated-id", "max-deleted-entry-id",
                                       "entries-added", NULL};
      sb_fields(&b, info, sf);
      freeReplyObject(info);
      redisReply *groups = cmd(c, "XINFO GROUPS %s", kn);
      for (size_t g = 0; g < groups->elements; g++) {
        static const char *const gf[] = {"name", "pending", "last-delivered-id", "entries-read",
                                         NULL};
        sb_add(&b, " group", 6);
        sb_fields(&b, groups->element[g], gf);
      }
      freeReplyObject(groups);
      redisReply *cons = cmd(c, "XINFO CONSUMERS %s workers", kn);
      if (cons->type == REDIS_REPLY_ARRAY)
        for (size_t k2 = 0; k2 < cons->elements; k2++) {
          static const char *const cf[] = {"name", "pending", NULL};
          sb_add(&b, " consumer", 9);
          sb_fields(&b, cons->element[k2], cf);
        }
      freeReplyObject(cons);
      redisReply *pel = cmd(c, "XPENDING %s workers - + 100000", kn);
      if (pel->type == REDIS_REPLY_ARRAY)
        for (size_t k2 = 0; k2 < pel->elements; k2++) {
          const redisReply *p = pel->element[k2];
          sb_fmt(&b, " lease %s %s %lld", p->element[0]->str, p->element[1]->str,
                 p->element[3]->integer);
        }
      freeReplyObject(pel);
    }
    sb_add(&b, "\n", 1);
    freeReplyObject(r);
    freeReplyObject(t);
    freeReplyObject(ttl);
  }
  free(names);
  freeReplyObject(keys);
  return b.p;
}

/* Both databases. */
static char *dump(const env *e) {
  char *d0 = dump_db(e, e->c[0]), *d1 = dump_db(e, e->c[1]);
  sbuf b = {0};
  sb_fmt(&b, "db0:\n");
  sb_add(&b, d0, strlen(d0));
  sb_fmt(&b, "db1:\n");
  sb_add(&b, d1, strlen(d1));
  free(d0);
  free(d1);
  return b.p;
}

/* ---------------------------------------------------------------- corrupting a key */

typedef enum bad {
  BAD_STRING, /* SET key "corrupt" */
  BAD_HASH,   /* a hash (a list where a hash belongs) */
  BAD_VALUE   /* for a string or hash: the value given (field, value) */
} bad;

/* A key as it was before corrupt(), to put back with repair(). */
typedef struct saved {
  redisContext *c;
  char key[KEY_MAX];
  char *dump; /* DUMP of the key, NULL if it did not exist */
  size_t len;
  long long pttl;
} saved;

/* Replaces key in db (0 or 1): with a string, with a hash (a list if want is
 * "hash"), or, for BAD_VALUE, sets field (NULL: the string itself) to value. */
static saved corrupt(env *e, int db, const char *k, const char *want, bad how, const char *field,
                     const char *value) {
  saved s = {.c = e->c[db]};
  snprintf(s.key, sizeof(s.key), "%s", k);
  redisReply *r = cmd(s.c, "DUMP %s", k);
  if (r->type == REDIS_REPLY_STRING) {
    s.dump = malloc(r->len);
    memcpy(s.dump, r->str, r->len);
    s.len = r->len;
  }
  freeReplyObject(r);
  r = cmd(s.c, "PTTL %s", k);
  s.pttl = r->integer > 0 ? r->integer : 0;
  freeReplyObject(r);
  if (how == BAD_VALUE) {
    if (field)
      cmd_ok(s.c, "HSET %s %s %s", k, field, value);
    else
      cmd_ok(s.c, "SET %s %s", k, value);
    return s;
  }
  cmd_ok(s.c, "DEL %s", k);
  if (how == BAD_STRING)
    cmd_ok(s.c, "SET %s corrupt", k);
  else if (strcmp(want, "hash") == 0)
    cmd_ok(s.c, "RPUSH %s corrupt", k);
  else
    cmd_ok(s.c, "HSET %s corrupt 1", k);
  return s;
}

static void repair(saved *s) {
  cmd_ok(s->c, "DEL %s", s->key);
  if (s->dump) cmd_ok(s->c, "RESTORE %s %lld %b", s->key, s->pttl, s->dump, s->len);
  free(s->dump);
  s->dump = NULL;
}

/* An operation under test: 0 or a GTASK_E* code. */
typedef int (*op_fn)(env *e, void *arg);

/* Runs op with key `k` (expected to be a `want`) corrupted in db `db` in the
 * way given: it must fail with GTASK_EREDIS, name the key, and change nothing.
 * The key is repaired afterwards. */
static void refused(env *e, const char *what, op_fn op, void *arg, int db, const char *k,
                    const char *want, bad how, const char *field, const char *value) {
  static const char *const hows[] = {"a string", "another type", "a bad value"};
  TEST_LOG("%s, with %s as %s%s%s", what, k, hows[how], value ? " " : "", value ? value : "");
  saved s = corrupt(e, db, k, want, how, field, value);
  char *before = dump(e);
  gtask__set_error("%s", "");
  int rc = op(e, arg);
  if (rc != GTASK_EREDIS)
    TEST_FAIL("%s with %s as %s: got %d %s (%s), want GTASK_EREDIS", what, k, hows[how], rc,
              rc ? gtask_err_name(rc) : "OK", gtask_last_error());
  ASSERT_STR_CONTAINS(gtask_last_error(), k);
  char *after = dump(e);
  ASSERT_STR_EQ(after, before);
  free(before);
  free(after);
  repair(&s);
}

/* The same for a wrong type, both ways (a string, another type). */
static void refused_types(env *e, const char *what, op_fn op, void *arg, int db, const char *k,
                          const char *want) {
  refused(e, what, op, arg, db, k, want, BAD_STRING, NULL, NULL);
  refused(e, what, op, arg, db, k, want, BAD_HASH, NULL, NULL);
}

/* ---------------------------------------------------------------- building a queue */

static gtask_msg *new_msg(env *e, int64_t due_ms) {
  char id[GTASK_ID_SIZE];
  gtask__uuid(id);
  gtask_msg *m = gtask_msg_new(id, e->q, BODY, strlen(BODY));
  ASSERT_NOT_NULL(m);
  m->due_ms = due_ms;
  return m;
}

static void free_msgs(gtask_msg **m, size_t n) {
  for (size_t k = 0; k < n; k++) gtask_msg_free(m[k]);
}

/* Pushes n new messages due now (with state) and leases them to consumer. */
static void push_and_lease(env *e, const char *consumer, gtask_msg **out, size_t n) {
  gtask_msg *p[16];
  ASSERT_LE(n, 16);
  for (size_t k = 0; k < n; k++) p[k] = new_msg(e, 0);
  ASSERT_OK(e->b->ops->push(e->b->impl, p, n, e->state));
  size_t got = 0;
  const char *queues[] = {e->q};
  ASSERT_OK(e->b->ops->lease(e->b->impl, consumer, queues, 1, n, 0, out, &got));
  ASSERT_EQ(got, n);
  for (size_t k = 0; k < n; k++) ASSERT_STR_EQ(out[k]->id, p[k]->id);
  free_msgs(p, n);
}

static gtask_fin fin(gtask_msg *m, gtask_fin_kind kind, gtask_status status, const char *result,
                     bool fresh) {
  return (gtask_fin){.msg = m, .kind = kind, .status = status, .result = result,
                     .result_len = result ? strlen(result) : 0, .fresh = fresh,
                     .next = kind == GTASK_FIN_DONE ? NULL : BODY,
                     .next_len = kind == GTASK_FIN_DONE ? 0 : strlen(BODY),
                     .next_due_ms = kind == GTASK_FIN_RETRY ? gtask__now_ms() + 3600000 : 0};
}

static void finish_ok(env *e, const char *consumer, gtask_fin *f, size_t n) {
  ASSERT_OK(e->b->ops->finish(e->b->impl, consumer, f, n, e->state));
  for (size_t k = 0; k < n; k++) ASSERT_FALSE(f[k].fenced);
}

/* A queue with something in every key: tasks queued and undelivered, leased
 * (one with a STARTED mark), scheduled, finished (SUCCESS and FAILURE, with
 * their counters), one in the dead set, and the fence at FENCE.  The tasks a
 * test adds then sit among these. */
static void populate(env *e) {
  gtask_msg *m[3];
  push_and_lease(e, "bg", m, 3);
  gtask_fin f[2] = {fin(m[0], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true),
                    fin(m[1], GTASK_FIN_DEAD, GTASK_FAILURE, REC_FAIL, true)};
  finish_ok(e, "bg", f, 2);
  uint32_t one = 1;
  ASSERT_OK(e->be->ops->started(e->be->impl, &m[2], &one, 1));
  free_msgs(m, 3);
  gtask_msg *later = new_msg(e, gtask__now_ms() + 3600000);
  ASSERT_OK(e->b->ops->push(e->b->impl, &later, 1, e->state));
  gtask_msg_free(later);
  cmd_ok(e->c[0], "SET %s " FENCE, key(e, "fence", NULL));
}

/* Two undelivered messages behind the leased ones. */
static void push_tail(env *e) {
  gtask_msg *p[2] = {new_msg(e, 0), new_msg(e, 0)};
  ASSERT_OK(e->b->ops->push(e->b->impl, p, 2, e->state));
  free_msgs(p, 2);
}

/* ---------------------------------------------------------------- push.lua */

typedef struct push_arg {
  gtask_msg **m;
  size_t n;
  bool state;
} push_arg;

static int op_push(env *e, void *arg) {
  push_arg *p = arg;
  return e->b->ops->push(e->b->impl, p->m, p->n, p->state ? e->state : NULL);
}

/* Batches that write the stream and the schedule in either order, and a bulk
 * send (every message due now), with state and without. */
TEST(push_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  push_tail(&e);
  int64_t later = gtask__now_ms() + 3600000;
  gtask_msg *now1 = new_msg(&e, 0), *now2 = new_msg(&e, 0), *sch = new_msg(&e, later);
  gtask_msg *sched_first[2] = {sch, now1}, *stream_first[2] = {now1, sch}, *bulk[2] = {now1, now2};
  push_arg a[] = {{sched_first, 2, true}, {stream_first, 2, true}, {bulk, 2, true},
                  {sched_first, 2, false}, {stream_first, 2, false}};
  for (size_t k = 0; k < 5; k++) {
    char what[64];
    snprintf(what, sizeof(what), "push batch %zu", k);
    refused_types(&e, what, op_push, &a[k], 0, key(&e, "stream", NULL), "stream");
    if (k != 2) refused_types(&e, what, op_push, &a[k], 0, key(&e, "sched", NULL), "zset");
    if (a[k].state) refused_types(&e, what, op_push, &a[k], 0, key(&e, "pending", NULL), "set");
  }

  /* The case of issue 14, through the client: `gtask send` failed, but its
   * task had been queued and ran. */
  gtask_client *cli = gtask_client_new(e.b, e.be);
  ASSERT_NOT_NULL(cli);
  ASSERT_OK(gtask_client_set_queue(cli, e.q));
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  saved s = corrupt(&e, 0, key(&e, "pending", NULL), "set", BAD_STRING, NULL, NULL);
  char *before = dump(&e);
  char id[GTASK_ID_SIZE];
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EREDIS);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), key(&e, "pending", NULL));
  char *after = dump(&e);
  ASSERT_STR_EQ(after, before);
  free(before);
  free(after);
  repair(&s);
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  gtask_send_conf_free(sc);
  gtask_client_free(cli);

  /* Repaired, each batch goes through. */
  ASSERT_OK(op_push(&e, &a[0]));
  ASSERT_OK(e.b->ops->push(e.b->impl, &now2, 1, e.state));
  gtask_msg *m[2] = {now1, now2};
  free_msgs(m, 2);
  gtask_msg_free(sch);
  env_stop(&e);
}

/* ---------------------------------------------------------------- claim.lua */

typedef struct claim_arg {
  gtask_claim *c;
  size_t n;
  bool queue; /* push_unique (colocated) rather than the split backend's claim */
} claim_arg;

static int op_claim(env *e, void *arg) {
  claim_arg *a = arg;
  if (a->queue) return e->b->ops->push_unique(e->b->impl, a->c, a->n, e->state);
  return e->split->ops->claim(e->split->impl, a->c, a->n);
}

/* A batch of a message due now, one due later and one with a unique key
 * (issue 18): every key claim.lua writes, each corrupted in turn. */
TEST(claim_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  push_tail(&e);
  static const char digest[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  gtask_msg *now1 = new_msg(&e, 0), *sch = new_msg(&e, gtask__now_ms() + 3600000),
            *uniq = new_msg(&e, 0);
  gtask_claim cs[3] = {{.msg = now1}, {.msg = sch}, {.msg = uniq, .unique_key = digest}};
  claim_arg a[] = {{cs, 3, true}, {cs, 3, false}};
  for (size_t k = 0; k < 2; k++) {
    char what[64];
    snprintf(what, sizeof(what), "%s", k == 0 ? "push_unique" : "claim");
    int db = a[k].queue ? 0 : 1;
    if (a[k].queue) {
      refused_types(&e, what, op_claim, &a[k], 0, key(&e, "stream", NULL), "stream");
      refused_types(&e, what, op_claim, &a[k], 0, key(&e, "sched", NULL), "zset");
    }
    refused_types(&e, what, op_claim, &a[k], db, key(&e, "pending", NULL), "set");
    refused(&e, what, op_claim, &a[k], db, key(&e, "u", digest), "string", BAD_HASH, NULL, NULL);
  }
  /* Repaired, the batch goes through, and again it is three duplicates. */
  ASSERT_OK(op_claim(&e, &a[0]));
  for (size_t k = 0; k < 3; k++) ASSERT_FALSE(cs[k].duplicate);
  ASSERT_OK(op_claim(&e, &a[0]));
  for (size_t k = 0; k < 3; k++) {
    ASSERT_TRUE(cs[k].duplicate);
    ASSERT_STR_EQ(cs[k].existing, cs[k].msg->id);
  }
  gtask_msg *m[3] = {now1, sch, uniq};
  free_msgs(m, 3);
  env_stop(&e);
}

/* ---------------------------------------------------------------- finish.lua */

typedef struct finish_arg {
  gtask_fin *f;
  size_t n;
  bool state;
} finish_arg;

static int op_finish(env *e, void *arg) {
  finish_arg *a = arg;
  return e->b->ops->finish(e->b->impl, "c1", a->f, a->n, a->state ? e->state : NULL);
}

/* A batch of short fins (fresh SUCCESS), checked and trusted; a batch of
 * general fins of every kind; a finish without state; and bad counters. */
TEST(finish_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  gtask_msg *m[9];
  push_and_lease(&e, "c1", m, 9);
  push_tail(&e);
  uint32_t one = 1;
  ASSERT_OK(e.be->ops->started(e.be->impl, &m[4], &one, 1)); /* t:<m4> exists */

  gtask_fin s[2] = {fin(m[0], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true),
                    fin(m[1], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true)};
  finish_arg short_fins = {s, 2, true};
  gtask_fin g[5] = {
      fin(m[2], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true),
      fin(m[3], GTASK_FIN_DONE, GTASK_FAILURE, REC_FAIL, true),
      fin(m[4], GTASK_FIN_RETRY, GTASK_RETRY, REC_RETRY, false),
      fin(m[5], GTASK_FIN_DEAD, GTASK_FAILURE, REC_FAIL, true),
      fin(m[6], GTASK_FIN_REQUEUE, GTASK_PENDING, NULL, false),
  };
  /* The FAILURE keeps its message in the failed set (issue 18). */
  g[1].next = BODY, g[1].next_len = strlen(BODY), g[1].next_due_ms = gtask__now_ms() + 3600000;
  finish_arg general = {g, 5, true};
  gtask_fin w[2] = {fin(m[7], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true),
                    fin(m[8], GTASK_FIN_DONE, GTASK_FAILURE, REC_FAIL, true)};
  w[1].next = BODY, w[1].next_len = strlen(BODY), w[1].next_due_ms = gtask__now_ms() + 3600000;
  finish_arg without_state = {w, 2, false};

  char stats[KEY_MAX];
  snprintf(stats, sizeof(stats), "%s", key(&e, "stats", NULL));
  for (int trusted = 0; trusted < 2; trusted++) {
    const char *what = trusted ? "finish, short fins, trusted" : "finish, short fins";
    m[0]->epoch = m[1]->epoch = trusted ? 3 : -1; /* FENCE */
    refused_types(&e, what, op_finish, &short_fins, 0, key(&e, "stream", NULL), "stream");
    refused_types(&e, what, op_finish, &short_fins, 0, key(&e, "pending", NULL), "set");
    refused_types(&e, what, op_finish, &short_fins, 0, stats, "hash");
    refused(&e, what, op_finish, &short_fins, 0, stats, "hash", BAD_VALUE, "succeeded", "many");
    refused(&e, what, op_finish, &short_fins, 0, stats, "hash", BAD_VALUE, "succeeded",
            "9223372036854775807"); /* HINCRBY would overflow */
    for (int k = 0; k < 2; k++)
      refused_types(&e, what, op_finish, &short_fins, 0, key(&e, "n", m[k]->id), "list");
    if (trusted) /* (read only to trust a batch; a string that is no number: below) */
      refused(&e, what, op_finish, &short_fins, 0, key(&e, "fence", NULL), "string", BAD_HASH,
              NULL, NULL);
  }
  const char *what = "finish, general fins";
  refused_types(&e, what, op_finish, &general, 0, key(&e, "stream", NULL), "stream");
  refused_types(&e, what, op_finish, &general, 0, key(&e, "sched", NULL), "zset");
  refused_types(&e, what, op_finish, &general, 0, key(&e, "dead", NULL), "hash");
  refused_types(&e, what, op_finish, &general, 0, key(&e, "failed", NULL), "zset");
  refused_types(&e, what, op_finish, &general, 0, key(&e, "pending", NULL), "set");
  refused_types(&e, what, op_finish, &general, 0, stats, "hash");
  refused(&e, what, op_finish, &general, 0, stats, "hash", BAD_VALUE, "failed", "-");
  refused(&e, what, op_finish, &general, 0, stats, "hash", BAD_VALUE, "succeeded", "1.5");
  for (int k = 2; k < 7; k++) {
    if (k != 4 && k != 6) refused_types(&e, what, op_finish, &general, 0, key(&e, "n", m[k]->id), "list");
    if (k == 4 || k == 6) refused_types(&e, what, op_finish, &general, 0, key(&e, "t", m[k]->id), "hash");
  }
  what = "finish without state";
  refused_types(&e, what, op_finish, &without_state, 0, key(&e, "stream", NULL), "stream");
  refused_types(&e, what, op_finish, &without_state, 0, key(&e, "failed", NULL), "zset");
  refused_types(&e, what, op_finish, &without_state, 0, stats, "hash");
  refused(&e, what, op_finish, &without_state, 0, stats, "hash", BAD_VALUE, "failed", "x");

  /* A fence that is not a number is no error: the batch is not trusted, and
   * its leases are checked. */
  cmd_ok(e.c[0], "SET %s garbage", key(&e, "fence", NULL));
  m[0]->epoch = m[1]->epoch = 3;
  finish_ok(&e, "c1", s, 2);
  cmd_ok(e.c[0], "SET %s " FENCE, key(&e, "fence", NULL));
  finish_ok(&e, "c1", g, 5);
  ASSERT_OK(op_finish(&e, &without_state));
  ASSERT_FALSE(w[0].fenced);
  ASSERT_FALSE(w[1].fenced);
  redisReply *r = cmd(e.c[0], "HMGET %s succeeded failed", stats);
  ASSERT_STR_EQ(r->element[0]->str, "5"); /* populate's 1, s 2, g 1, w 1 */
  ASSERT_STR_EQ(r->element[1]->str, "4"); /* populate's 1, g 2, w 1 */
  freeReplyObject(r);
  r = cmd(e.c[0], "ZCARD %s", key(&e, "failed", NULL)); /* g[1] and w[1] kept */
  ASSERT_EQ(r->integer, 2);
  freeReplyObject(r);
  free_msgs(m, 9);
  env_stop(&e);
}

/* ---------------------------------------------------------------- failed_requeue.lua */

static int op_failed_requeue(env *e, void *arg) {
  gtask_revive *rv = arg;
  return e->b->ops->failed_requeue(e->b->impl, rv, 1, e->state);
}

/* A rerun (issue 18) with every key it reads or writes corrupted in turn. */
TEST(failed_requeue_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  gtask_msg *m[1];
  push_and_lease(&e, "c1", m, 1);
  gtask_fin f = fin(m[0], GTASK_FIN_DONE, GTASK_FAILURE, REC_FAIL, true);
  f.next = BODY, f.next_len = strlen(BODY), f.next_due_ms = gtask__now_ms() + 3600000;
  finish_ok(&e, "c1", &f, 1);
  gtask_msg **kept = NULL;
  size_t nk = 0;
  ASSERT_OK(e.b->ops->failed_list(e.b->impl, e.q, m[0]->id, &kept, &nk));
  ASSERT_EQ(nk, 1);
  gtask_revive rv = {.msg = kept[0], .next = BODY, .next_len = strlen(BODY)};
  const char *what = "failed_requeue";
  refused_types(&e, what, op_failed_requeue, &rv, 0, key(&e, "stream", NULL), "stream");
  refused_types(&e, what, op_failed_requeue, &rv, 0, key(&e, "failed", NULL), "zset");
  refused_types(&e, what, op_failed_requeue, &rv, 0, key(&e, "n", m[0]->id), "list");
  refused_types(&e, what, op_failed_requeue, &rv, 0, key(&e, "t", m[0]->id), "hash");
  ASSERT_OK(op_failed_requeue(&e, &rv));
  ASSERT_TRUE(rv.moved);
  ASSERT_OK(op_failed_requeue(&e, &rv)); /* gone: a second rerun moves nothing */
  ASSERT_FALSE(rv.moved);
  gtask_msg_free(kept[0]);
  free(kept);
  free_msgs(m, 1);
  env_stop(&e);
}

/* A trusted batch (no lease check) of 8 or more trims the stream up to the
 * oldest lease left (XPENDING's summary), which needs the consumer group.
 * With the stream deleted by hand the batch is still recorded, once, and
 * nothing is left half-done (it failed after writing the results). */
TEST(finish_trusted_batch_after_the_stream_was_deleted) {
  env e;
  env_start(&e);
  populate(&e);
  gtask_msg *m[8];
  push_and_lease(&e, "c1", m, 8);
  gtask_fin f[8];
  for (int k = 0; k < 8; k++) {
    m[k]->epoch = 3; /* FENCE */
    f[k] = fin(m[k], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true);
  }
  cmd_ok(e.c[0], "DEL %s", key(&e, "stream", NULL));
  finish_ok(&e, "c1", f, 8);
  redisReply *r = cmd(e.c[0], "HGET %s succeeded", key(&e, "stats", NULL));
  ASSERT_STR_EQ(r->str, "9");
  freeReplyObject(r);
  for (int k = 0; k < 8; k++) {
    r = cmd(e.c[0], "SISMEMBER %s %s", key(&e, "pending", NULL), m[k]->id);
    ASSERT_EQ(r->integer, 0);
    freeReplyObject(r);
    r = cmd(e.c[0], "LRANGE %s 0 -1", key(&e, "n", m[k]->id));
    ASSERT_EQ(r->elements, 1);
    ASSERT_STR_EQ(r->element[0]->str, REC_OK);
    freeReplyObject(r);
  }
  free_msgs(m, 8);
  env_stop(&e);
}

/* Field k of an HMGET of counters: a decimal integer. */
static long long counter(const redisReply *r, size_t k) {
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(r->element[k]->type, REDIS_REPLY_STRING);
  char *end;
  errno = 0;
  long long v = strtoll(r->element[k]->str, &end, 10);
  ASSERT_EQ(errno, 0);
  ASSERT_EQ(*end, '\0');
  return v;
}

/* A finish sent again after its reply was lost (GTASK_EINDOUBT) finds its own
 * earlier run's work: each final fin whose task's record is the one it
 * carries is reported applied (not fenced: the worker counts it and fires
 * its hooks), and nothing changes or counts twice -- general fins (the lease
 * check finds the entries acked) and short ones (a trusted batch finds them
 * final).  A fin whose task another holder ended, with another record,
 * stays fenced. */
TEST(finish_run_again_after_a_lost_reply_recognises_its_own_work) {
  env e;
  env_start(&e);
  populate(&e);
  redisReply *r0 = cmd(e.c[0], "HMGET %s succeeded failed", key(&e, "stats", NULL));
  long long succeeded0 = counter(r0, 0), failed0 = counter(r0, 1);
  freeReplyObject(r0);
  gtask_msg *m[5];
  push_and_lease(&e, "c1", m, 5);
  gtask_fin f[5];
  for (int round = 0; round < 2; round++) {
    f[0] = fin(m[0], GTASK_FIN_DONE, GTASK_FAILURE, REC_FAIL, false); /* general */
    f[1] = fin(m[1], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, false);   /* general */
    f[2] = fin(m[2], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true);    /* short */
    f[3] = fin(m[3], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true);    /* short */
    finish_ok(&e, "c1", f, 4);
    char *before = round == 1 ? dump(&e) : NULL;
    /* The short fins alone, trusted (their leases began under the fence). */
    gtask_fin t[2] = {fin(m[2], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true),
                      fin(m[3], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, true)};
    m[2]->epoch = m[3]->epoch = 3; /* FENCE */
    finish_ok(&e, "c1", t, 2);
    m[2]->epoch = m[3]->epoch = 0;
    if (before) {
      char *after = dump(&e);
      ASSERT_STR_EQ(after, before);
      free(after);
      free(before);
    }
  }
  redisReply *r = cmd(e.c[0], "HMGET %s succeeded failed", key(&e, "stats", NULL));
  /* These three and one, once each, over populate()'s. */
  ASSERT_EQ(counter(r, 0) - succeeded0, 3);
  ASSERT_EQ(counter(r, 1) - failed0, 1);
  freeReplyObject(r);
  /* Ended by someone else (another record): fenced, as before. */
  cmd_ok(e.c[0], "RPUSH %s %s", key(&e, "n", m[4]->id), REC_FAIL);
  cmd_ok(e.c[0], "XACK %s workers %s", key(&e, "stream", NULL), m[4]->lease);
  f[4] = fin(m[4], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, false);
  ASSERT_OK(e.b->ops->finish(e.b->impl, "c1", &f[4], 1, e.state));
  ASSERT_TRUE(f[4].fenced);
  free_msgs(m, 5);
  env_stop(&e);
}

/* ---------------------------------------------------------------- started.lua, store.lua, reset.lua */

typedef struct msgs_arg {
  gtask_msg **m;
  size_t n;
} msgs_arg;

static int op_started(env *e, void *arg) {
  msgs_arg *a = arg;
  uint32_t att[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  return e->be->ops->started(e->be->impl, a->m, att, a->n);
}

TEST(started_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  gtask_msg *m[3];
  push_and_lease(&e, "c1", m, 3);
  msgs_arg a = {m, 3};
  for (int k = 0; k < 3; k++)
    refused_types(&e, "started", op_started, &a, 0, key(&e, "t", m[k]->id), "hash");
  ASSERT_OK(op_started(&e, &a));
  free_msgs(m, 3);
  env_stop(&e);
}

typedef struct store_arg {
  gtask_fin *f;
  size_t n;
} store_arg;

static int op_store(env *e, void *arg) {
  store_arg *a = arg;
  return e->split->ops->store(e->split->impl, a->f, a->n);
}

/* The backend on its own server (db 1 here): a final state, a RETRY and a
 * hand-back (state hashes), another final state. */
TEST(store_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  gtask_msg *m[4] = {new_msg(&e, 0), new_msg(&e, 0), new_msg(&e, 0), new_msg(&e, 0)};
  ASSERT_OK(e.split->ops->pending(e.split->impl, m, 4));
  uint32_t one = 1;
  ASSERT_OK(e.split->ops->started(e.split->impl, &m[0], &one, 1));
  gtask_fin f[4] = {fin(m[0], GTASK_FIN_DONE, GTASK_SUCCESS, REC_OK, false),
                    fin(m[1], GTASK_FIN_RETRY, GTASK_RETRY, REC_RETRY, false),
                    fin(m[2], GTASK_FIN_REQUEUE, GTASK_PENDING, NULL, false),
                    fin(m[3], GTASK_FIN_DONE, GTASK_FAILURE, REC_FAIL, true)};
  store_arg a = {f, 4};
  refused_types(&e, "store", op_store, &a, 1, key(&e, "pending", NULL), "set");
  for (int k = 0; k < 4; k++) {
    if (k == 0 || k == 3) refused_types(&e, "store", op_store, &a, 1, key(&e, "n", m[k]->id), "list");
    if (k == 1 || k == 2) refused_types(&e, "store", op_store, &a, 1, key(&e, "t", m[k]->id), "hash");
  }
  ASSERT_OK(op_store(&e, &a));
  for (int k = 0; k < 4; k++) ASSERT_FALSE(f[k].fenced);
  free_msgs(m, 4);
  env_stop(&e);
}

static int op_reset(env *e, void *arg) {
  msgs_arg *a = arg;
  return e->split->ops->reset(e->split->impl, a->m, a->n);
}

TEST(reset_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  gtask_msg *m[3] = {new_msg(&e, 0), new_msg(&e, 0), new_msg(&e, 0)};
  ASSERT_OK(e.split->ops->pending(e.split->impl, m, 3));
  gtask_fin f[2] = {fin(m[0], GTASK_FIN_DONE, GTASK_FAILURE, REC_FAIL, true),
                    fin(m[1], GTASK_FIN_RETRY, GTASK_RETRY, REC_RETRY, false)};
  ASSERT_OK(e.split->ops->store(e.split->impl, f, 2));
  msgs_arg a = {m, 3};
  for (int k = 0; k < 3; k++) {
    refused_types(&e, "reset", op_reset, &a, 1, key(&e, "t", m[k]->id), "hash");
    refused_types(&e, "reset", op_reset, &a, 1, key(&e, "n", m[k]->id), "list");
  }
  ASSERT_OK(op_reset(&e, &a));
  free_msgs(m, 3);
  env_stop(&e);
}

/* ---------------------------------------------------------------- dead set */

typedef struct revive_arg {
  gtask_revive *rs;
  size_t n;
  bool state;
} revive_arg;

static int op_dead_requeue(env *e, void *arg) {
  revive_arg *a = arg;
  return e->b->ops->dead_requeue(e->b->impl, a->rs, a->n, a->state ? e->state : NULL);
}

TEST(dead_requeue_refuses_keys_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e); /* one task in the dead set */
  gtask_msg *m[2];
  push_and_lease(&e, "c1", m, 2);
  gtask_fin f[2] = {fin(m[0], GTASK_FIN_DEAD, GTASK_FAILURE, REC_FAIL, true),
                    fin(m[1], GTASK_FIN_DEAD, GTASK_FAILURE, REC_FAIL, true)};
  finish_ok(&e, "c1", f, 2);
  free_msgs(m, 2);
  gtask_msg **dead = NULL;
  size_t n = 0;
  ASSERT_OK(e.b->ops->dead_list(e.b->impl, e.q, NULL, &dead, &n));
  ASSERT_EQ(n, 3);
  gtask_revive rs[3];
  for (size_t k = 0; k < n; k++)
    rs[k] = (gtask_revive){.msg = dead[k], .next = BODY, .next_len = strlen(BODY)};
  revive_arg with = {rs, n, true}, without = {rs, n, false};
  for (size_t k = 0; k < n; k++) {
    refused_types(&e, "dead requeue", op_dead_requeue, &with, 0, key(&e, "t", dead[k]->id), "hash");
    refused_types(&e, "dead requeue", op_dead_requeue, &with, 0, key(&e, "n", dead[k]->id), "list");
  }
  for (int st = 0; st < 2; st++) {
    revive_arg *a = st ? &with : &without;
    refused_types(&e, "dead requeue", op_dead_requeue, a, 0, key(&e, "stream", NULL), "stream");
    refused_types(&e, "dead requeue", op_dead_requeue, a, 0, key(&e, "dead", NULL), "hash");
  }
  ASSERT_OK(op_dead_requeue(&e, &with));
  for (size_t k = 0; k < n; k++) ASSERT_TRUE(rs[k].moved);
  free_msgs(dead, n);
  gtask__free(dead);
  env_stop(&e);
}

/* ---------------------------------------------------------------- reclaim.lua */

/* arg: the lease in ms (int64_t *). */
static int op_reclaim(env *e, void *arg) {
  gtask_msg *out[8];
  size_t n = 0;
  int rc = e->b->ops->reclaim(e->b->impl, "c2", e->q, *(int64_t *)arg, 8, out, &n);
  free_msgs(out, n);
  return rc;
}

/* The fence must be a count of reclaims: reclaim.lua increments it in the
 * same call that takes leases over, and a takeover without the increment
 * would let the old holder's trusted fins through.  A fence that is not a
 * number made reclaim.lua return a nil in its reply, which cut the reply
 * short: the broker then failed with GTASK_EPROTO and no message. */
TEST(reclaim_refuses_a_fence_it_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  char fence[KEY_MAX];
  snprintf(fence, sizeof(fence), "%s", key(&e, "fence", NULL));
  int64_t long_lease = 600000, lease = 200;
  refused(&e, "reclaim, nothing to take over", op_reclaim, &long_lease, 0, fence, "string",
          BAD_VALUE, NULL, "garbage");
  gtask_msg *m[2];
  push_and_lease(&e, "c1", m, 2);
  test_sleep_ms(300); /* c1's leases and populate's expire (200 ms) */
  static const char *const values[] = {"garbage", "-1", "01", "1.0", "9223372036854775807"};
  for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++)
    refused(&e, "reclaim", op_reclaim, &lease, 0, fence, "string", BAD_VALUE, NULL, values[k]);
  refused(&e, "reclaim", op_reclaim, &lease, 0, fence, "string", BAD_HASH, NULL, NULL);
  refused_types(&e, "reclaim", op_reclaim, &lease, 0, key(&e, "stream", NULL), "stream");
  ASSERT_OK(op_reclaim(&e, &lease));
  redisReply *r = cmd(e.c[0], "GET %s", fence);
  ASSERT_STR_EQ(r->str, "4");
  freeReplyObject(r);
  free_msgs(m, 2);
  env_stop(&e);
}

/* ---------------------------------------------------------------- extend, promote, dead purge */

typedef struct extend_arg {
  gtask_msg **m;
  size_t n;
} extend_arg;

static int op_extend(env *e, void *arg) {
  extend_arg *a = arg;
  bool lost[8];
  return e->b->ops->extend(e->b->impl, "c1", a->m, a->n, lost);
}

static int op_promote(env *e, void *arg) {
  int64_t next = 0;
  (void)arg;
  return e->b->ops->promote(e->b->impl, e->q, 10, &next);
}

static int op_dead_purge(env *e, void *arg) {
  size_t removed = 0;
  (void)arg;
  return e->b->ops->dead_purge(e->b->impl, e->q, &removed);
}

/* These read the key they fail on before they write: the order to keep. */
TEST(extend_promote_and_purge_refuse_keys_they_cannot_use) {
  env e;
  env_start(&e);
  populate(&e);
  gtask_msg *m[2];
  push_and_lease(&e, "c1", m, 2);
  extend_arg a = {m, 2};
  refused_types(&e, "extend", op_extend, &a, 0, key(&e, "stream", NULL), "stream");
  ASSERT_OK(op_extend(&e, &a));
  gtask_msg *due = new_msg(&e, gtask__now_ms() + 50);
  ASSERT_OK(e.b->ops->push(e.b->impl, &due, 1, e.state));
  gtask_msg_free(due);
  test_sleep_ms(100);
  refused_types(&e, "promote", op_promote, NULL, 0, key(&e, "stream", NULL), "stream");
  refused_types(&e, "promote", op_promote, NULL, 0, key(&e, "sched", NULL), "zset");
  ASSERT_OK(op_promote(&e, NULL));
  refused_types(&e, "dead purge", op_dead_purge, NULL, 0, key(&e, "dead", NULL), "hash");
  ASSERT_OK(op_dead_purge(&e, NULL));
  free_msgs(m, 2);
  env_stop(&e);
}
