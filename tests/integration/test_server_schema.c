/* test_server_schema.c -- workers record themselves per queue with their key
 * schema version (register.lua), and a worker refuses to join a queue that a
 * live worker of another version serves; clients are not affected. */
#include "internal.h"
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <stdatomic.h>
#include <stdio.h>

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_server *server;
  gt_worker worker;
} env;

static void quiet_log(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (level >= GTASK_LOG_WARN) fprintf(stderr, "[gtask] %s\n", line);
}

static void env_open(env *e, const char *queues) {
  memset(e, 0, sizeof(*e));
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  e->server = gtask_server_new(e->broker, e->backend);
  ASSERT_NOT_NULL(e->server);
  ASSERT_OK(gtask_server_set_name(e->server, "new-worker"));
  ASSERT_OK(gtask_server_set_queues(e->server, queues));
  ASSERT_OK(GTASK_REG(e->server, add));
}

static void env_close(env *e) {
  gtask_server_free(e->server);
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

static long long hlen(gt_redis *r, const char *key) {
  redisReply *rep = cmd(r, "HLEN %s", key);
  long long n = rep->integer;
  freeReplyObject(rep);
  return n;
}

/* An entry as a worker of key schema `schema` would write it, live for ms
 * more (negative: expired). */
static void old_worker(gt_redis *r, const char *queue, const char *name, int schema, int64_t ms) {
  char val[64];
  snprintf(val, sizeof(val), "%d %lld", schema, (long long)(gtask__now_ms() + ms));
  redisReply *rep = cmd(r, "HSET gtask:{%s}:workers %s %s", queue, name, val);
  ASSERT_EQ(rep->type, REDIS_REPLY_INTEGER);
  freeReplyObject(rep);
}

TEST(a_worker_refuses_a_queue_served_by_a_live_worker_of_another_key_schema) {
  env e;
  env_open(&e, "a,b");
  old_worker(e.redis, "b", "old-worker", 3, 60000);
  int rc = gtask_server_run(e.server, 2);
  ASSERT_ERR(rc, GTASK_EVERSION);
  const char *msg = gtask_server_errmsg(e.server);
  ASSERT_STR_CONTAINS(msg, "queue b is served by worker old-worker");
  ASSERT_STR_CONTAINS(msg, "key schema 3");
  ASSERT_STR_CONTAINS(msg, "must not share a queue");
  /* It left no trace: not on queue a (recorded before b refused), and the old
   * worker's entry is untouched. */
  ASSERT_EQ(hlen(e.redis, "gtask:{a}:workers"), 0);
  ASSERT_EQ(hlen(e.redis, "gtask:{b}:workers"), 1);
  /* A client keeps working on that queue: sends are not versioned. */
  gtask_client *cli = gtask_client_new(e.broker, e.backend);
  ASSERT_OK(gtask_client_set_queue(cli, "b"));
  char id[GTASK_ID_SIZE];
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  gtask_status st;
  ASSERT_OK(gtask_client_status(cli, id, &st));
  ASSERT_EQ(st, GTASK_PENDING);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
  env_close(&e);
}

/* A worker of another version that died without removing itself does not
 * block the queue after its time; its entry is dropped.  A worker of the same
 * version is welcome.  A worker's own entry lives while it runs and is gone
 * when it stops. */
TEST(a_worker_joins_past_expired_entries_and_same_version_workers) {
  env e;
  env_open(&e, "default");
  old_worker(e.redis, "default", "dead-old-worker", 3, -1000);
  old_worker(e.redis, "default", "peer", 5, 60000);
  gt_worker_start(&e.worker, e.server, 2);
  gtask_client *cli = gtask_client_new(e.broker, e.backend);
  gtask_result *r = NULL;
  char id[GTASK_ID_SIZE];
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(40), gtask_int64(2)));
  ASSERT_OK(gtask_client_wait(cli, id, test_timeout_ms(5000), &r));
  ASSERT_EQ(r->values[0].v.i, 42);
  gtask_result_free(r);
  redisReply *rep = cmd(e.redis, "HGET gtask:{default}:workers new-worker");
  ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
  ASSERT_EQ(strncmp(rep->str, "5 ", 2), 0);
  freeReplyObject(rep);
  rep = cmd(e.redis, "HEXISTS gtask:{default}:workers dead-old-worker");
  ASSERT_EQ(rep->integer, 0);
  freeReplyObject(rep);
  ASSERT_OK(gt_worker_stop(&e.worker));
  rep = cmd(e.redis, "HKEYS gtask:{default}:workers");
  ASSERT_EQ(rep->elements, 1); /* the peer only */
  ASSERT_STR_EQ(rep->element[0]->str, "peer");
  freeReplyObject(rep);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
  env_close(&e);
}

/* An old worker that starts serving while this one runs (the hash gains its
 * live entry) stops this one at its next heartbeat, with the reason. */
TEST(a_running_worker_stops_when_a_worker_of_another_version_appears) {
  env e;
  env_open(&e, "default");
  ASSERT_OK(gtask_server_set_lease(e.server, 600)); /* heartbeat every 200 ms */
  gt_worker_start(&e.worker, e.server, 2);
  test_sleep_ms(100);
  old_worker(e.redis, "default", "old-worker", 6, 60000);
  int64_t until = test_now_ms() + test_timeout_ms(3000);
  while (!atomic_load(&e.worker.stopped) && test_now_ms() < until) test_sleep_ms(20);
  if (!atomic_load(&e.worker.stopped))
    TEST_FAIL("still running 3 s after a schema-6 worker joined");
  ASSERT_ERR(gt_worker_join(&e.worker), GTASK_EVERSION);
  ASSERT_STR_CONTAINS(gtask_server_errmsg(e.server), "key schema 6");
  env_close(&e);
}
