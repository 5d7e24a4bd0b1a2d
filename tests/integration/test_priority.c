/* test_priority.c -- priority levels on Redis (issue 18): a lease of a queue
 * with levels stays one round trip per batch, a worker finds the levels of a
 * queue within about a second of their first use, and a send with a level is
 * refused while a live worker of the queue predates levels (key schema < 5).
 * The behaviour every broker shares is in the contract suite
 * (tests/contract/contract.c, "priorities"). */
#include "internal.h"
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_client *client;
} env;

static void env_open(env *e) {
  memset(e, 0, sizeof(*e));
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  e->client = gtask_client_new(e->broker, e->backend);
  ASSERT_NOT_NULL(e->client);
  ASSERT_OK(gtask_client_set_queue(e->client, "q"));
}

static void env_close(env *e) {
  gtask_client_free(e->client);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
}

static redisReply *cmd(gt_redis *r, const char *fmt, ...) {
  redisContext *c = gt_redis_connect(r);
  ASSERT_NOT_NULL(c);
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(c, fmt, ap);
  va_end(ap);
  ASSERT_NOT_NULL(rep);
  redisFree(c);
  return rep;
}

static long long int_cmd(gt_redis *r, const char *fmt, const char *arg) {
  redisReply *rep = cmd(r, fmt, arg);
  ASSERT_EQ(rep->type, REDIS_REPLY_INTEGER);
  long long n = rep->integer;
  freeReplyObject(rep);
  return n;
}

/* The calls of command name so far, from INFO commandstats (commands run by
 * scripts included). */
static long long calls(gt_redis *r, const char *name) {
  redisReply *rep = cmd(r, "INFO commandstats");
  ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
  char key[64];
  snprintf(key, sizeof(key), "cmdstat_%s:calls=", name);
  const char *p = strstr(rep->str, key);
  long long n = p ? strtoll(p + strlen(key), NULL, 10) : 0;
  freeReplyObject(rep);
  return n;
}

static void send_n(env *e, int level, size_t n, int64_t arg) {
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  ASSERT_OK(gtask_send_conf_set_priority(sc, level));
  gtask_value *args = calloc(2 * n, sizeof(*args));
  char(*ids)[GTASK_ID_SIZE] = calloc(n, sizeof(*ids));
  ASSERT_NOT_NULL(args);
  ASSERT_NOT_NULL(ids);
  for (size_t k = 0; k < n; k++) {
    args[2 * k] = gtask_int64(arg);
    args[2 * k + 1] = gtask_int64((int64_t)k);
  }
  ASSERT_OK(gtask_client_send_batch(e->client, sc, n, args, 2, ids, NULL));
  free(args);
  free(ids);
  gtask_send_conf_free(sc);
}

/* 1,000 tasks over the three levels, drained in leases of 100: each lease
 * is one EVALSHA (lease.lua) with an exact count, highest level first, and
 * the XREADGROUPs inside it are at most one per level it reads. */
TEST(a_lease_over_levels_is_one_round_trip_per_batch) {
  env e;
  env_open(&e);
  send_n(&e, 0, 600, 0);
  send_n(&e, 1, 300, 1);
  send_n(&e, 2, 100, 2);
  void *impl = NULL;
  const gtask_broker_ops *ops = gtask_broker_ops_get(e.broker, &impl);
  const char *queues[] = {"q"};
  gtask_msg *out[100];
  long long eval0 = calls(e.redis, "evalsha"), xrg0 = calls(e.redis, "xreadgroup");
  size_t leases = 0, total = 0;
  int last_level = 2;
  for (;;) {
    size_t n = 0;
    ASSERT_OK(ops->lease(impl, "c1", queues, 1, 100, 0, out, &n));
    if (n == 0) break;
    leases++;
    ASSERT_EQ(n, total + 100 <= 1000 ? 100 : 1000 - total); /* exact count */
    for (size_t k = 0; k < n; k++) {
      ASSERT_LE(out[k]->priority, last_level); /* never a higher level after a lower */
      last_level = out[k]->priority;
      gtask_msg_free(out[k]);
    }
    total += n;
  }
  ASSERT_EQ(total, 1000);
  ASSERT_EQ(leases, 10);
  long long evals = calls(e.redis, "evalsha") - eval0, xrgs = calls(e.redis, "xreadgroup") - xrg0;
  TEST_LOG("10 leases: %lld EVALSHA, %lld XREADGROUP", evals, xrgs);
  ASSERT_EQ(evals, 11); /* one per lease, and the last, empty one */
  ASSERT_LE(xrgs, 3 * 11);
  env_close(&e);
}

/* A batch of fins whose levels interleave (tasks of three levels ending in
 * turn) is finished in one finish.lua per level, not one per change of
 * level; extend likewise. */
TEST(finishing_interleaved_levels_is_one_call_per_level) {
  env e;
  env_open(&e);
  for (int level = 0; level <= 2; level++) send_n(&e, level, 10, level);
  void *impl = NULL;
  const gtask_broker_ops *ops = gtask_broker_ops_get(e.broker, &impl);
  const char *queues[] = {"q"};
  gtask_msg *out[30];
  size_t n = 0;
  ASSERT_OK(ops->lease(impl, "c1", queues, 1, 30, 0, out, &n));
  ASSERT_EQ(n, 30);
  gtask_msg *mixed[30];
  for (size_t k = 0; k < 10; k++) /* 2, 1, 0, 2, 1, 0, ... */
    for (size_t l = 0; l < 3; l++) mixed[3 * k + l] = out[10 * l + k];
  bool lost[30];
  long long eval0 = calls(e.redis, "evalsha");
  ASSERT_OK(ops->extend(impl, "c1", mixed, 30, lost));
  for (size_t k = 0; k < 30; k++) ASSERT_FALSE(lost[k]);
  ASSERT_EQ(calls(e.redis, "evalsha") - eval0, 3);
  gtask_fin fins[30];
  memset(fins, 0, sizeof(fins));
  for (size_t k = 0; k < 30; k++) {
    fins[k].msg = mixed[k];
    fins[k].kind = GTASK_FIN_DONE;
    fins[k].status = GTASK_SUCCESS;
    fins[k].fenced = true;
  }
  eval0 = calls(e.redis, "evalsha");
  ASSERT_OK(ops->finish(impl, "c1", fins, 30, NULL));
  ASSERT_EQ(calls(e.redis, "evalsha") - eval0, 3);
  for (size_t k = 0; k < 30; k++) ASSERT_FALSE(fins[k].fenced);
  for (int level = 0; level <= 2; level++) {
    char key[64];
    snprintf(key, sizeof(key), level ? "gtask:{q}:stream:%d" : "gtask:{q}:stream", level);
    ASSERT_EQ(int_cmd(e.redis, "XLEN %s", key), 0); /* each acked and deleted in its stream */
  }
  for (size_t k = 0; k < 30; k++) gtask_msg_free(out[k]);
  env_close(&e);
}

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

/* A worker that started on a queue without levels reads the level streams
 * within about a second of the first send with a level (its pause check,
 * twice a second, reads the marker); until then the task waits, never lost. */
TEST(a_running_worker_finds_the_levels_of_a_queue) {
  env e;
  env_open(&e);
  gtask_server *s = gtask_server_new(e.broker, e.backend);
  ASSERT_NOT_NULL(s);
  ASSERT_OK(gtask_server_set_queues(s, "q"));
  ASSERT_OK(GTASK_REG(s, add));
  gt_worker w;
  gt_worker_start(&w, s, 1);
  send_n(&e, 0, 1, 1);
  WAIT_UNTIL(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:pending") == 0, 10000);
  ASSERT_EQ(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:prio"), 0); /* no level yet */
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_URGENT));
  char id[GTASK_ID_SIZE];
  int64_t t0 = gtask__mono_ms();
  ASSERT_OK(GTASK_SEND(e.client, sc, id, gtask_int64(2), gtask_int64(3)));
  ASSERT_EQ(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:prio"), 1);
  ASSERT_EQ(int_cmd(e.redis, "XLEN %s", "gtask:{q}:stream:2"), 1);
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(5000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
  TEST_LOG("the urgent task ran %lld ms after its send", (long long)(gtask__mono_ms() - t0));
  ASSERT_LE(gtask__mono_ms() - t0, test_timeout_ms(1500));
  (void)gt_worker_stop(&w);
  gtask_server_free(s);
  gtask_send_conf_free(sc);
  env_close(&e);
}

/* As a worker of key schema `schema` writes itself (register.lua), live for
 * ms more (negative: expired). */
static void fake_worker(gt_redis *r, int schema, int64_t ms) {
  char val[64];
  snprintf(val, sizeof(val), "%d %lld", schema, (long long)(gtask__now_ms() + ms));
  redisReply *rep = cmd(r, "HSET gtask:{q}:workers old-worker %s", val);
  ASSERT_EQ(rep->type, REDIS_REPLY_INTEGER);
  freeReplyObject(rep);
}

/* A schema-4 worker never reads the level streams: while one is live on
 * the queue, a send with a level (plain or claimed with an id) fails
 * clearly and writes nothing; a plain send still works; once that worker's
 * entry has expired, levels work. */
TEST(a_send_with_a_level_is_refused_while_a_schema_4_worker_lives) {
  env e;
  env_open(&e);
  fake_worker(e.redis, 4, 60000);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_HIGH));
  char id[GTASK_ID_SIZE];
  ASSERT_ERR(GTASK_SEND(e.client, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EVERSION);
  const char *msg = gtask_client_errmsg(e.client);
  ASSERT_STR_CONTAINS(msg, "worker old-worker of key schema 4 never reads priority levels");
  ASSERT_STR_CONTAINS(msg, "nothing was sent");
  ASSERT_OK(gtask_send_conf_set_id(sc, "0f8fad5b-d9cb-469f-a165-70867728950e"));
  ASSERT_ERR(GTASK_SEND(e.client, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EVERSION);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "key schema 4");
  ASSERT_EQ(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:prio"), 0);
  ASSERT_EQ(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:stream:1"), 0);
  ASSERT_EQ(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:pending"), 0);
  ASSERT_EQ(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:t:0f8fad5b-d9cb-469f-a165-70867728950e"), 0);
  gtask_status st;
  ASSERT_ERR(gtask_client_status(e.client, "0f8fad5b-d9cb-469f-a165-70867728950e", &st),
             GTASK_ENOTFOUND);
  /* A plain send is not versioned. */
  gtask_send_conf *plain = gtask_send_conf_new("add");
  ASSERT_OK(GTASK_SEND(e.client, plain, id, gtask_int64(1), gtask_int64(2)));
  ASSERT_EQ(int_cmd(e.redis, "XLEN %s", "gtask:{q}:stream"), 1);
  /* The old worker died (its entry expired): levels work. */
  fake_worker(e.redis, 4, -1000);
  ASSERT_OK(GTASK_SEND(e.client, sc, id, gtask_int64(1), gtask_int64(2)));
  ASSERT_EQ(int_cmd(e.redis, "XLEN %s", "gtask:{q}:stream:1"), 1);
  ASSERT_EQ(int_cmd(e.redis, "EXISTS %s", "gtask:{q}:prio"), 1);
  gtask_send_conf_free(plain);
  gtask_send_conf_free(sc);
  env_close(&e);
}

/* Periodic tasks run at level 0: an entry whose send conf sets a level is
 * refused, and nothing is registered. */
TEST(a_periodic_task_with_a_level_is_refused) {
  env e;
  env_open(&e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_HIGH));
  gtask_value v[2] = {gtask_int64(1), gtask_int64(2)};
  ASSERT_ERR(gtask_client_cron_add(e.client, "tick", "@every 1s", NULL, GTASK_MISSED_SKIP, sc, v, 2),
             GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "periodic tasks run at level 0");
  gtask_cron_entry *ce = NULL;
  size_t n = 99;
  ASSERT_OK(gtask_client_cron_list(e.client, NULL, &ce, &n));
  ASSERT_EQ(n, 0);
  gtask_cron_list_free(ce, n);
  gtask_send_conf_free(sc);
  env_close(&e);
}
