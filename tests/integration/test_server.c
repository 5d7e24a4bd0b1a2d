/* test_server.c -- a worker server and a client against a real redis-server
 * (and the memory broker/backend): each row of g_task's feature table, the
 * timeout and retry paths with real timing, bad input, two workers sharing a
 * queue, and a worker killed in the middle of a task. */
#include "internal.h"
#include "worker.h"
#include "cluster_fixture.h"
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------- handlers */

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int divide(double a, double b, double *q) {
  if (b == 0) return gtask_ctx_fail(gtask_ctx_current(), "division by zero");
  *q = a / b;
  return 0;
}
GTASK_HANDLER(divide, (double, double), (double))

static int greet(const char *name, int8_t times, char **out) {
  size_t len = strlen(name), n = len * (size_t)times + 1;
  *out = malloc(n);
  for (int k = 0; k < times; k++) memcpy(*out + (size_t)k * len, name, len);
  (*out)[n - 1] = '\0';
  return 0;
}
GTASK_HANDLER(greet, (const char *, int8_t), (char *))

/* Returns its arguments unchanged. */
static int echo(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  return gtask_ctx_return(ctx, args, n);
}

/* sleep(ms): honours cancellation; returns ms. */
static int sleeper(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  if (n != 1) return gtask_ctx_fail(ctx, "sleep takes 1 argument");
  int64_t ms = args[0].v.i;
  if (!gtask_ctx_sleep(ctx, ms)) return gtask_ctx_fail(ctx, "cancelled");
  gtask_value v = gtask_int64(ms);
  return gtask_ctx_return(ctx, &v, 1);
}

/* Fails with a retry request on its first attempt, succeeds afterwards. */
static int flaky(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  if (gtask_ctx_attempt(ctx) < 2) return gtask_ctx_retry(ctx, "not yet (attempt %u)", gtask_ctx_attempt(ctx));
  gtask_value v = gtask_uint32(gtask_ctx_attempt(ctx));
  return gtask_ctx_return(ctx, &v, 1);
}

/* Fails (a plain error, not a retry request) until attempt n, then returns
 * its attempt. */
static int fails_until(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  if (n != 1) return gtask_ctx_fail(ctx, "fails_until takes 1 argument");
  if (gtask_ctx_attempt(ctx) < args[0].v.i) return gtask_ctx_fail(ctx, "broken (attempt %u)", gtask_ctx_attempt(ctx));
  gtask_value v = gtask_uint32(gtask_ctx_attempt(ctx));
  return gtask_ctx_return(ctx, &v, 1);
}

/* Fails while the gate is closed (a downstream service down), else returns
 * its attempt. */
static atomic_int gate_open;
static int gate_task(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  if (!atomic_load(&gate_open)) return gtask_ctx_fail(ctx, "downstream is down");
  gtask_value v = gtask_uint32(gtask_ctx_attempt(ctx));
  return gtask_ctx_return(ctx, &v, 1);
}

static int who(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n;
  gtask_ctx_sleep(ctx, 5);
  gtask_value v = gtask_str((const char *)ud);
  return gtask_ctx_return(ctx, &v, 1);
}

/* ---------------------------------------------------------------- fixture */

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_server *server;
  gtask_client *client;
  gt_worker worker;
  bool running;
} env;

static void quiet_log(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (level >= GTASK_LOG_WARN) fprintf(stderr, "[gtask] %s\n", line);
}

static gtask_server *new_server(gtask_broker *b, gtask_backend *k, const char *tag) {
  gtask_server *s = gtask_server_new(b, k);
  ASSERT_NOT_NULL(s);
  ASSERT_OK(GTASK_REG(s, add));
  ASSERT_OK(GTASK_REG(s, divide));
  ASSERT_OK(GTASK_REG(s, greet));
  ASSERT_OK(gtask_server_reg(s, "echo", echo, NULL));
  ASSERT_OK(gtask_server_reg(s, "sleep", sleeper, NULL));
  ASSERT_OK(gtask_server_reg(s, "flaky", flaky, NULL));
  ASSERT_OK(gtask_server_reg(s, "who", who, (void *)tag));
  ASSERT_OK(gtask_server_reg(s, "fails_until", fails_until, NULL));
  ASSERT_OK(gtask_server_reg(s, "gate_open", gate_task, NULL));
  return s;
}

/* The cluster_ tests (issue 17) run tests written for one server on a Redis
 * Cluster shared by the whole binary (TEST_SHARED), each under a key prefix
 * of its own: on_cluster, set by the cluster_ test, makes env_open use it. */
static gt_cluster *shared_cluster;
static bool on_cluster;

static const char *cluster_setup(void) {
  shared_cluster = gt_cluster_start(3, 1);
  return shared_cluster ? NULL : "cannot start a Redis Cluster (see the output above)";
}

static void cluster_teardown(void) { gt_cluster_stop(shared_cluster); }

TEST_SHARED(cluster, "cluster_", cluster_setup, cluster_teardown)

/* Runs the body of TEST(redis_<name>) on the shared cluster. */
#define ON_CLUSTER(name)                                                       \
  TEST(cluster_##name) {                                                       \
    on_cluster = true;                                                         \
    test_body_redis_##name();                                                  \
  }

/* broker_url/backend_url NULL: the fixture's server, db 0. */
static void env_open(env *e, bool memory, const char *backend_url) {
  memset(e, 0, sizeof(*e));
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  if (!memory && on_cluster) {
    ASSERT_NOT_NULL(shared_cluster);
    char prefix[32], id[GTASK_ID_SIZE];
    gtask__uuid(id);
    snprintf(prefix, sizeof(prefix), "t%.8s", id);
    gtask_redis_conf *conf;
    ASSERT_OK(gtask_redis_conf_new(&conf, gt_cluster_url(shared_cluster), NULL, -1));
    ASSERT_OK(gtask_redis_conf_set_prefix(conf, prefix));
    ASSERT_OK(gtask_broker_redis_new(&e->broker, conf));
    ASSERT_OK(gtask_backend_redis_new(&e->backend, conf));
    gtask_redis_conf_free(conf);
  } else if (memory) {
    e->broker = gtask_broker_memory_new();
    e->backend = gtask_backend_memory_new();
  } else {
    e->redis = gt_redis_start(NULL);
    ASSERT_NOT_NULL(e->redis);
    gtask_redis_conf *bc, *kc;
    ASSERT_OK(gtask_redis_conf_new(&bc, gt_redis_url(e->redis), NULL, -1));
    ASSERT_OK(gtask_redis_conf_new(&kc, backend_url ? backend_url : gt_redis_url(e->redis), NULL, -1));
    ASSERT_OK(gtask_broker_redis_new(&e->broker, bc));
    ASSERT_OK(gtask_backend_redis_new(&e->backend, kc));
    gtask_redis_conf_free(bc);
    gtask_redis_conf_free(kc);
  }
  ASSERT_NOT_NULL(e->broker);
  ASSERT_NOT_NULL(e->backend);
  e->server = new_server(e->broker, e->backend, "main");
  e->client = gtask_client_from_server(e->server);
  ASSERT_NOT_NULL(e->client);
}

static void env_start(env *e) {
  gt_worker_start(&e->worker, e->server, 4);
  e->running = true;
}

static void env_close(env *e) {
  if (e->running) ASSERT_OK(gt_worker_stop(&e->worker));
  gtask_client_free(e->client);
  gtask_server_free(e->server);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
}

/* The status of task id now. */
static gtask_status status_of(gtask_client *c, const char *id) {
  gtask_status st;
  ASSERT_OK(gtask_client_status(c, id, &st));
  return st;
}

/* How many of ids[0..n) have status st now. */
static int count_status(gtask_client *c, char (*ids)[GTASK_ID_SIZE], int n, gtask_status st) {
  int count = 0;
  for (int k = 0; k < n; k++) count += status_of(c, ids[k]) == st;
  return count;
}

static gtask_result *send_wait(env *e, gtask_send_conf *conf, const gtask_value *args, size_t n,
                               int64_t wait_ms) {
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e->client, conf, args, n, id));
  gtask_result *r = NULL;
  int rc = gtask_client_wait(e->client, id, test_timeout_ms(wait_ms), &r);
  if (rc) TEST_FAIL("wait %s: %s", id, gtask_client_errmsg(e->client));
  ASSERT_STR_EQ(r->id, id);
  return r;
}

/* ---------------------------------------------------------------- g_task rows */

static void check_add(bool memory) {
  env e;
  env_open(&e, memory, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(1), gtask_int64(2)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->nvalues, 1);
  ASSERT_EQ(r->values[0].type, GTASK_INT64);
  ASSERT_EQ(r->values[0].v.i, 3);
  ASSERT_EQ(r->attempts, 1);
  ASSERT_NULL(r->error);
  ASSERT_EQ(gtask_client_is_finish(e.client, r->id), 1);
  gtask_status st;
  ASSERT_OK(gtask_client_status(e.client, r->id, &st));
  ASSERT_EQ(st, GTASK_SUCCESS);
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_add_round_trip) { check_add(false); }
TEST(memory_add_round_trip) { check_add(true); }

static long long calls_of(gt_redis *redis, const char *cmd) {
  redisContext *rc = gt_redis_connect(redis);
  ASSERT_NOT_NULL(rc);
  redisReply *rep = redisCommand(rc, "INFO commandstats");
  ASSERT_NOT_NULL(rep);
  char key[64];
  snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
  const char *at = strstr(rep->str, key);
  long long n = at ? strtoll(at + strlen(key), NULL, 10) : 0;
  freeReplyObject(rep);
  redisFree(rc);
  return n;
}

/* Does the queue "default" hold key P:{default}:<kind>:<id> (kind "t": the
 * state hash, "n": the final record's list)? */
static bool task_key_exists(gt_redis *redis, const char *kind, const char *id) {
  redisContext *rc = gt_redis_connect(redis);
  ASSERT_NOT_NULL(rc);
  redisReply *rep = redisCommand(rc, "EXISTS gtask:{default}:%s:%s", kind, id);
  ASSERT_NOT_NULL(rep);
  bool yes = rep->integer == 1;
  freeReplyObject(rep);
  redisFree(rc);
  return yes;
}

/* Waiting on a task this client just sent is one command (the blocking
 * read): the task is known to exist, so its state is not read first.  Another
 * client's wait on it, once final, reads its record: one command too, and
 * the same result. */
TEST(redis_wait_on_a_task_just_sent_skips_the_state_read) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("add");
  long long sis = calls_of(e.redis, "sismember"), lix = calls_of(e.redis, "lindex"),
            blm = calls_of(e.redis, "blmove");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(20), gtask_int64(22)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 42);
  ASSERT_EQ(calls_of(e.redis, "sismember"), sis);
  ASSERT_EQ(calls_of(e.redis, "lindex"), lix);
  ASSERT_EQ(calls_of(e.redis, "blmove"), blm + 1);
  gtask_client *other = gtask_client_from_server(e.server);
  gtask_result *r2;
  ASSERT_OK(gtask_client_wait(other, r->id, test_timeout_ms(5000), &r2));
  ASSERT_EQ(r2->status, GTASK_SUCCESS);
  ASSERT_EQ(r2->values[0].v.i, 42);
  ASSERT_EQ(calls_of(e.redis, "lindex"), lix + 1);
  ASSERT_EQ(calls_of(e.redis, "sismember"), sis);
  ASSERT_EQ(calls_of(e.redis, "blmove"), blm + 1);
  gtask_result_free(r2);
  /* Sent to another queue: not known in this client's queue, so not found at
   * once rather than after the timeout. */
  gtask_send_conf *elsewhere = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_queue(elsewhere, "elsewhere"));
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e.client, elsewhere, id, gtask_int64(1), gtask_int64(2)));
  int64_t t0 = test_now_ms();
  ASSERT_ERR(gtask_client_wait(e.client, id, 3000, &r2), GTASK_ENOTFOUND);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(1000));
  ASSERT_NULL(r2);
  gtask_result_free(r);
  gtask_client_free(other);
  gtask_send_conf_free(elsewhere);
  gtask_send_conf_free(c);
  env_close(&e);
}

static void check_all_types(bool memory) {
  env e;
  env_open(&e, memory, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("echo");
  static const char nul[] = "a\0b";
  gtask_value args[] = {
      gtask_bool(true),         gtask_int(INT64_MIN),      gtask_int8(-128),
      gtask_int16(32767),       gtask_int32(INT32_MIN),    gtask_int64(INT64_MAX),
      gtask_uint(UINT64_MAX),   gtask_uint8(255),          gtask_uint16(65535),
      gtask_uint32(UINT32_MAX), gtask_uint64(UINT64_MAX - 1), gtask_float32(0.1f),
      gtask_float64(0.1),       gtask_float64(-1e308),     gtask_float64(5e-324),
      gtask_str("héllo"),       gtask_strn(nul, 3),        gtask_float64(NAN),
  };
  size_t n = sizeof(args) / sizeof(args[0]);
  gtask_result *r = send_wait(&e, c, args, n, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->nvalues, n);
  for (size_t k = 0; k < n; k++) ASSERT_EQ(r->values[k].type, args[k].type);
  ASSERT_TRUE(r->values[0].v.b);
  ASSERT_EQ(r->values[1].v.i, INT64_MIN);
  ASSERT_EQ(r->values[2].v.i, -128);
  ASSERT_EQ(r->values[4].v.i, INT32_MIN);
  ASSERT_EQ(r->values[5].v.i, INT64_MAX);
  ASSERT_EQ(r->values[6].v.u, UINT64_MAX);
  ASSERT_EQ(r->values[9].v.u, UINT32_MAX);
  ASSERT_EQ(r->values[10].v.u, UINT64_MAX - 1);
  ASSERT_DBL_EQ(r->values[11].v.f, (double)0.1f);
  ASSERT_DBL_EQ(r->values[12].v.f, 0.1);
  ASSERT_DBL_EQ(r->values[13].v.f, -1e308);
  ASSERT_DBL_EQ(r->values[14].v.f, 5e-324);
  ASSERT_STR_EQ(r->values[15].v.s.ptr, "héllo");
  ASSERT_EQ(r->values[16].v.s.len, 3);
  ASSERT_MEM_EQ(r->values[16].v.s.ptr, nul, 3);
  ASSERT_TRUE(isnan(r->values[17].v.f));
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_every_type_round_trips_exactly) { check_all_types(false); }
TEST(memory_every_type_round_trips_exactly) { check_all_types(true); }

TEST(redis_typed_handlers_convert_and_free_outputs) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  gtask_send_conf *g = gtask_send_conf_new("greet");
  /* An int64 argument fits the int8 parameter: converted. */
  gtask_result *r = send_wait(&e, g, (gtask_value[]){gtask_str("ab"), gtask_int64(3)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_STR_EQ(r->values[0].v.s.ptr, "ababab");
  gtask_result_free(r);
  gtask_send_conf_free(g);

  gtask_send_conf *d = gtask_send_conf_new("divide");
  r = send_wait(&e, d, (gtask_value[]){gtask_float64(1), gtask_float32(4)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_DBL_EQ(r->values[0].v.f, 0.25);
  gtask_result_free(r);
  r = send_wait(&e, d, (gtask_value[]){gtask_float64(1), gtask_float64(0)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_EQ(r->error, "division by zero");
  ASSERT_EQ(r->error_code, GTASK_EHANDLER);
  gtask_result_free(r);
  gtask_send_conf_free(d);
  env_close(&e);
}

TEST(redis_wrong_arguments_fail_with_a_message) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(1)}, 1, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_CONTAINS(r->error, "expected 2 arguments, got 1");
  ASSERT_EQ(r->error_code, GTASK_ETYPE);
  gtask_result_free(r);
  r = send_wait(&e, c, (gtask_value[]){gtask_int64(1), gtask_str("x")}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_CONTAINS(r->error, "argument 2");
  ASSERT_STR_CONTAINS(r->error, "int64");
  ASSERT_STR_CONTAINS(r->error, "string");
  gtask_result_free(r);
  /* The worker is still serving. */
  r = send_wait(&e, c, (gtask_value[]){gtask_int64(20), gtask_int64(22)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 42);
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_unknown_task_name_fails) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("no_such_task");
  gtask_result *r = send_wait(&e, c, NULL, 0, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ENOHANDLER);
  ASSERT_STR_CONTAINS(r->error, "no_such_task");
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_malformed_message_goes_to_dead_set_and_worker_keeps_serving) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  redisContext *rc = gt_redis_connect(e.redis);
  ASSERT_NOT_NULL(rc);
  redisReply *rep = redisCommand(rc, "XADD gtask:{default}:stream * i %s m %s",
                                 "00000000-0000-4000-8000-000000000001", "{not json");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(2), gtask_int64(2)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
  /* The broken message was read before the good one (FIFO): it is dead now. */
  rep = redisCommand(rc, "HGET gtask:{default}:dead 00000000-0000-4000-8000-000000000001");
  ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
  ASSERT_STR_EQ(rep->str, "{not json");
  freeReplyObject(rep);
  /* Final: its record is the notify list's one element, and no state hash. */
  rep = redisCommand(rc, "LRANGE gtask:{default}:n:00000000-0000-4000-8000-000000000001 0 -1");
  ASSERT_EQ(rep->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(rep->elements, 1);
  ASSERT_STR_CONTAINS(rep->element[0]->str, "malformed message");
  ASSERT_STR_CONTAINS(rep->element[0]->str, "\"s\":\"FAILURE\"");
  freeReplyObject(rep);
  rep = redisCommand(rc, "EXISTS gtask:{default}:t:00000000-0000-4000-8000-000000000001");
  ASSERT_EQ(rep->integer, 0);
  freeReplyObject(rep);
  rep = redisCommand(rc, "XLEN gtask:{default}:stream");
  ASSERT_EQ(rep->integer, 0);
  freeReplyObject(rep);
  redisFree(rc);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_oversize_payload_is_refused_at_send) {
  env e;
  env_open(&e, false, NULL);
  ASSERT_OK(gtask_client_set_max_payload(e.client, 1024));
  gtask_send_conf *c = gtask_send_conf_new("echo");
  char big[2048];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  char id[GTASK_ID_SIZE];
  ASSERT_ERR(GTASK_SEND(e.client, c, id, gtask_str(big)), GTASK_ETOOBIG);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "exceeds");
  /* Invalid values never leave the client either. */
  gtask_value bad = {.type = GTASK_INT8, .v.i = 300};
  ASSERT_ERR(gtask_client_send(e.client, c, &bad, 1, id), GTASK_ERANGE);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_status_of_unknown_and_invalid_ids) {
  env e;
  env_open(&e, false, NULL);
  gtask_status st;
  ASSERT_ERR(gtask_client_status(e.client, "00000000-0000-4000-8000-00000000abcd", &st), GTASK_ENOTFOUND);
  ASSERT_ERR(gtask_client_status(e.client, "not-an-id", &st), GTASK_EINVAL);
  gtask_result *r;
  ASSERT_ERR(gtask_client_wait(e.client, "00000000-0000-4000-8000-00000000abcd", 100, &r), GTASK_ENOTFOUND);
  env_close(&e);
}

/* An integer reply of cmd on db of the test's redis-server (protocol checks). */
static long long redis_int(gt_redis *redis, int db, const char *cmd) {
  redisContext *rc = gt_redis_connect(redis);
  ASSERT_NOT_NULL(rc);
  redisReply *rep = redisCommand(rc, "SELECT %d", db);
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  rep = redisCommand(rc, cmd);
  ASSERT_NOT_NULL(rep);
  ASSERT_EQ(rep->type, REDIS_REPLY_INTEGER);
  long long v = rep->integer;
  freeReplyObject(rep);
  redisFree(rc);
  return v;
}

TEST(redis_pending_until_a_worker_runs_it_and_wait_times_out) {
  env e;
  env_open(&e, false, NULL);
  gtask_send_conf *c = gtask_send_conf_new("add");
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e.client, c, id, gtask_int64(1), gtask_int64(1)));
  gtask_status st;
  ASSERT_OK(gtask_client_status(e.client, id, &st));
  ASSERT_EQ(st, GTASK_PENDING);
  ASSERT_EQ(gtask_client_is_finish(e.client, id), 0);
  /* PENDING is membership of the queue's pending set, not a key per task. */
  ASSERT_EQ(redis_int(e.redis, 0, "SCARD gtask:{default}:pending"), 1);
  ASSERT_EQ(redis_int(e.redis, 0, "DBSIZE"), 2); /* the stream and the pending set */
  gtask_result *r = NULL;
  int64_t t0 = test_now_ms();
  ASSERT_ERR(gtask_client_wait(e.client, id, 300, &r), GTASK_ETIMEDOUT);
  int64_t took = test_now_ms() - t0;
  ASSERT_GE(took, 290);
  ASSERT_LT(took, test_timeout_ms(2000));
  ASSERT_NULL(r);
  /* A worker started later picks it up; the waiter wakes without polling. */
  env_start(&e);
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(10000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 2);
  ASSERT_EQ(redis_int(e.redis, 0, "EXISTS gtask:{default}:pending"), 0);
  ASSERT_OK(gtask_client_status(e.client, id, &st));
  ASSERT_EQ(st, GTASK_SUCCESS);
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

/* ---------------------------------------------------------------- timeouts, retries */

static void check_timeout_fails_at_deadline(bool memory) {
  env e;
  env_open(&e, memory, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("sleep");
  ASSERT_OK(gtask_send_conf_set_timeout(c, 300));
  int64_t t0 = test_now_ms();
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(5000)}, 1, 10000);
  int64_t took = test_now_ms() - t0;
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ETASKTIMEOUT);
  ASSERT_STR_CONTAINS(r->error, "timeout");
  ASSERT_GE(took, 290);
  ASSERT_LT(took, test_timeout_ms(2500)); /* at the deadline, not when the 5 s sleep ends */
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_timeout_fails_the_task_at_its_deadline) { check_timeout_fails_at_deadline(false); }
TEST(memory_timeout_fails_the_task_at_its_deadline) { check_timeout_fails_at_deadline(true); }

TEST(redis_timeout_retries_with_backoff_then_fails) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("sleep");
  ASSERT_OK(gtask_send_conf_set_timeout(c, 200));
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 2));
  ASSERT_OK(gtask_send_conf_set_backoff(c, 200, 400));
  char id[GTASK_ID_SIZE];
  int64_t t0 = test_now_ms();
  ASSERT_OK(GTASK_SEND(e.client, c, id, gtask_int64(10000)));
  /* Watch the state pass through RETRY (for the ~200 ms of the first backoff,
   * then the ~400 ms of the second). */
  WAIT_UNTIL(status_of(e.client, id) == GTASK_RETRY, 3000);
  gtask_result *r;
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(15000), &r));
  int64_t took = test_now_ms() - t0;
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->attempts, 3);
  ASSERT_EQ(r->error_code, GTASK_ETASKTIMEOUT);
  /* 3 runs of 200 ms + backoffs of ~200 and ~400 ms (+-25%): about 1.05..1.3 s. */
  ASSERT_GE(took, 900);
  ASSERT_LT(took, test_timeout_ms(4000));
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_handler_requested_retry_then_success) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("flaky");
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 3));
  ASSERT_OK(gtask_send_conf_set_backoff(c, 50, 100));
  gtask_result *r = send_wait(&e, c, NULL, 0, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.u, 2);
  ASSERT_EQ(r->attempts, 2);
  /* The RETRY state hash went with the final state. */
  ASSERT_TRUE(task_key_exists(e.redis, "n", r->id));
  ASSERT_FALSE(task_key_exists(e.redis, "t", r->id));
  gtask_result_free(r);
  /* Without retries the same request is a FAILURE with the handler's message. */
  gtask_send_conf *c0 = gtask_send_conf_new("flaky");
  r = send_wait(&e, c0, NULL, 0, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_CONTAINS(r->error, "not yet");
  gtask_result_free(r);
  gtask_send_conf_free(c0);
  gtask_send_conf_free(c);
  env_close(&e);
}

/* Retry policy (issue 18): a handler error is retried only when the send
 * asked for it; an error no new run can fix (wrong argument types, no
 * handler) never is; a timeout is not when the policy leaves it out. */
static void check_retry_on(bool memory) {
  env e;
  env_open(&e, memory, NULL);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("fails_until");
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 3));
  ASSERT_OK(gtask_send_conf_set_backoff(c, 20, 40));
  /* Default (timeouts only): the error ends it at once. */
  gtask_value three = gtask_int64(3);
  gtask_result *r = send_wait(&e, c, &three, 1, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_EHANDLER);
  ASSERT_EQ(r->attempts, 1);
  gtask_result_free(r);
  ASSERT_ERR(gtask_send_conf_set_retry_on(c, 0), GTASK_EINVAL);
  ASSERT_ERR(gtask_send_conf_set_retry_on(c, 8), GTASK_EINVAL);
  ASSERT_OK(gtask_send_conf_set_retry_on(c, GTASK_RETRY_ON_ERROR | GTASK_RETRY_ON_CRASH));
  r = send_wait(&e, c, &three, 1, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.u, 3);
  ASSERT_EQ(r->attempts, 3);
  gtask_result_free(r);
  /* Retries used up: FAILURE with the last error, after 1 + 3 runs. */
  gtask_value nine = gtask_int64(9);
  r = send_wait(&e, c, &nine, 1, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->attempts, 4);
  ASSERT_STR_CONTAINS(r->error, "attempt 4");
  gtask_result_free(r);
  /* Never retried: wrong argument types, no handler. */
  gtask_send_conf *ca = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_retry_num(ca, 3));
  ASSERT_OK(gtask_send_conf_set_retry_on(ca, GTASK_RETRY_ON_ERROR));
  gtask_value bad = gtask_str("x");
  r = send_wait(&e, ca, &bad, 1, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ETYPE);
  ASSERT_EQ(r->attempts, 1);
  gtask_result_free(r);
  gtask_send_conf *cn = gtask_send_conf_new("no_such_task");
  ASSERT_OK(gtask_send_conf_set_retry_num(cn, 3));
  ASSERT_OK(gtask_send_conf_set_retry_on(cn, GTASK_RETRY_ON_ERROR));
  r = send_wait(&e, cn, NULL, 0, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ENOHANDLER);
  gtask_result_free(r);
  /* A policy without timeouts: a timeout ends it. */
  gtask_send_conf *cs = gtask_send_conf_new("sleep");
  ASSERT_OK(gtask_send_conf_set_retry_num(cs, 3));
  ASSERT_OK(gtask_send_conf_set_timeout(cs, 50));
  ASSERT_OK(gtask_send_conf_set_backoff(cs, 20, 40));
  ASSERT_OK(gtask_send_conf_set_retry_on(cs, GTASK_RETRY_ON_ERROR));
  gtask_value ms = gtask_int64(5000);
  r = send_wait(&e, cs, &ms, 1, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ETASKTIMEOUT);
  ASSERT_EQ(r->attempts, 1);
  gtask_result_free(r);
  gtask_send_conf_free(cs);
  gtask_send_conf_free(cn);
  gtask_send_conf_free(ca);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_retry_on_error_and_never_on_bad_input) { check_retry_on(false); }

/* A task that used up its retries is listed with its error and can be run
 * again on purpose (issue 18): same id, fresh attempts. */
static void check_failed_then_rerun(bool memory) {
  env e;
  env_open(&e, memory, NULL);
  ASSERT_ERR(gtask_server_set_failed_retention(e.server, -1), GTASK_EINVAL);
  env_start(&e);
  atomic_store(&gate_open, 0);
  gtask_send_conf *c = gtask_send_conf_new("gate_open");
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 1));
  ASSERT_OK(gtask_send_conf_set_retry_on(c, GTASK_RETRY_ON_ERROR));
  ASSERT_OK(gtask_send_conf_set_backoff(c, 20, 40));
  gtask_result *r = send_wait(&e, c, NULL, 0, 10000);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->attempts, 2);
  char id[GTASK_ID_SIZE];
  memcpy(id, r->id, sizeof(id));
  gtask_result_free(r);
  gtask_dead_entry *d = NULL;
  size_t nd = 0;
  ASSERT_OK(gtask_client_failed_list(e.client, &d, &nd));
  ASSERT_EQ(nd, 1);
  ASSERT_STR_EQ(d[0].id, id);
  ASSERT_STR_EQ(d[0].name, "gate_open");
  ASSERT_STR_EQ(d[0].error, "downstream is down");
  gtask_dead_list_free(d, nd);

  atomic_store(&gate_open, 1);
  ASSERT_OK(gtask_client_rerun(e.client, id));
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(10000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.u, 1); /* its first run again */
  ASSERT_EQ(r->attempts, 1);
  gtask_result_free(r);
  ASSERT_OK(gtask_client_failed_list(e.client, &d, &nd));
  ASSERT_EQ(nd, 0);
  ASSERT_ERR(gtask_client_rerun(e.client, id), GTASK_ESTATE);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_failed_task_is_listed_and_rerun) { check_failed_then_rerun(false); }

/* Pause and resume (issue 18): a paused queue's tasks wait (sends still
 * queue), a task already running finishes, and a resume runs them at once. */
static void check_pause(bool memory) {
  env e;
  env_open(&e, memory, NULL);
  env_start(&e);
  gtask_send_conf *slow = gtask_send_conf_new("sleep");
  char running[GTASK_ID_SIZE], held[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e.client, slow, running, gtask_int64(600)));
  WAIT_UNTIL(status_of(e.client, running) == GTASK_STARTED, 5000);
  ASSERT_OK(gtask_client_queue_pause(e.client, NULL));
  /* The pause reaches the worker within a second (a clock to wait out). */
  test_sleep_ms(1000);
  gtask_send_conf *c = gtask_send_conf_new("add");
  ASSERT_OK(GTASK_SEND(e.client, c, held, gtask_int64(1), gtask_int64(2)));
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(e.client, running, test_timeout_ms(5000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS); /* ran on, to the end */
  gtask_result_free(r);
  ASSERT_ERR(gtask_client_wait(e.client, held, 700, &r), GTASK_ETIMEDOUT);
  ASSERT_EQ(status_of(e.client, held), GTASK_PENDING);
  gtask_queue_stats qs;
  ASSERT_OK(gtask_client_stats(e.client, NULL, &qs));
  ASSERT_EQ(qs.pending, 1);
  int64_t t0 = test_now_ms();
  ASSERT_OK(gtask_client_queue_resume(e.client, NULL));
  ASSERT_OK(gtask_client_wait(e.client, held, test_timeout_ms(5000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(1500));
  gtask_result_free(r);
  gtask_send_conf_free(c);
  gtask_send_conf_free(slow);
  env_close(&e);
}

TEST(redis_pause_holds_new_tasks_and_resume_runs_them) { check_pause(false); }
TEST(memory_pause_holds_new_tasks_and_resume_runs_them) { check_pause(true); }
TEST(memory_failed_task_is_listed_and_rerun) { check_failed_then_rerun(true); }
TEST(memory_retry_on_error_and_never_on_bad_input) { check_retry_on(true); }

/* ---------------------------------------------------------------- scale-out */

TEST(redis_send_many_in_one_call) {
  env e;
  env_open(&e, false, NULL);
  env_start(&e);
  enum { N = 2000 };
  gtask_value *args = malloc(sizeof(gtask_value) * 2 * N);
  char(*ids)[GTASK_ID_SIZE] = malloc(sizeof(*ids) * N);
  for (int k = 0; k < N; k++) {
    args[2 * k] = gtask_int64(k);
    args[2 * k + 1] = gtask_int64(1000000);
  }
  gtask_send_conf *c = gtask_send_conf_new("add");
  ASSERT_OK(gtask_client_send_many(e.client, c, N, args, 2, ids));
  for (int k = 0; k < N; k++) {
    gtask_result *r;
    ASSERT_OK(gtask_client_wait(e.client, ids[k], test_timeout_ms(20000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->values[0].v.i, k + 1000000);
    gtask_result_free(r);
  }
  /* Nothing of the queued tasks is left but their results. */
  ASSERT_EQ(redis_int(e.redis, 0, "EXISTS gtask:{default}:pending"), 0);
  ASSERT_EQ(redis_int(e.redis, 0, "XLEN gtask:{default}:stream"), 0);
  free(args);
  free(ids);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_two_workers_share_a_queue) {
  env e;
  env_open(&e, false, NULL);
  gtask_server *second = new_server(e.broker, e.backend, "second");
  gtask_server *first = e.server;
  gtask_server_free(first);
  e.server = new_server(e.broker, e.backend, "first");
  env_start(&e);
  gt_worker second_worker;
  gt_worker_start(&second_worker, second, 4);
  gtask_send_conf *c = gtask_send_conf_new("who");
  int counts[2] = {0, 0};
  enum { N = 200 };
  char ids[N][GTASK_ID_SIZE];
  for (int k = 0; k < N; k++) ASSERT_OK(gtask_client_send(e.client, c, NULL, 0, ids[k]));
  for (int k = 0; k < N; k++) {
    gtask_result *r;
    ASSERT_OK(gtask_client_wait(e.client, ids[k], test_timeout_ms(20000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    counts[strcmp(r->values[0].v.s.ptr, "first") == 0 ? 0 : 1]++;
    gtask_result_free(r);
  }
  TEST_LOG("first ran %d, second ran %d", counts[0], counts[1]);
  ASSERT_EQ(counts[0] + counts[1], N);
  ASSERT_GT(counts[0], 0);
  ASSERT_GT(counts[1], 0);
  ASSERT_OK(gt_worker_stop(&second_worker));
  gtask_server_free(second);
  gtask_send_conf_free(c);
  env_close(&e);
}

/* A worker process is killed with SIGKILL while it runs a task; after its lease
 * expires, another worker runs the task to completion. */
TEST(redis_worker_killed_mid_task_is_recovered) {
  env e;
  env_open(&e, false, NULL);
  gtask_send_conf *c = gtask_send_conf_new("sleep");
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e.client, c, id, gtask_int64(800)));

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    /* A separate worker process with its own connections. */
    gtask_redis_conf *conf;
    gtask_redis_conf_new(&conf, gt_redis_url(e.redis), NULL, -1);
    gtask_broker *b;
    gtask_backend *k;
    if (gtask_broker_redis_new(&b, conf) || gtask_backend_redis_new(&k, conf)) _exit(3);
    gtask_server *s = new_server(b, k, "victim");
    gtask_server_set_lease(s, 600);
    gtask_server_run(s, 2);
    _exit(0);
  }
  /* Wait until the child has started the task, then kill it. */
  WAIT_UNTIL(status_of(e.client, id) == GTASK_STARTED, 5000);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);

  /* The survivor has a short lease too, so that it reclaims quickly. */
  ASSERT_OK(gtask_server_set_lease(e.server, 600));
  env_start(&e);
  gtask_result *r;
  int64_t t0 = test_now_ms();
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(15000), &r));
  TEST_LOG("recovered and finished %lld ms after the kill", (long long)(test_now_ms() - t0));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 800);
  ASSERT_EQ(r->attempts, 1); /* a lost worker does not use up a retry */
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

/* A poison task kills every worker that runs it.  Each death is a lost
 * delivery; after max_deliveries the task goes to the dead set as FAILURE
 * instead of killing workers for ever. */
static int suicide(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ctx, (void)args, (void)n, (void)ud;
  kill(getpid(), SIGKILL);
  return 0;
}

static pid_t spawn_worker(const char *url, const char *queue, int64_t lease_ms, int max_deliveries) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  gtask_redis_conf *conf;
  gtask_redis_conf_new(&conf, url, NULL, -1);
  gtask_broker *b;
  gtask_backend *k;
  if (gtask_broker_redis_new(&b, conf) || gtask_backend_redis_new(&k, conf)) _exit(3);
  gtask_server *s = gtask_server_new(b, k);
  gtask_server_reg(s, "suicide", suicide, NULL);
  gtask_server_set_queues(s, queue);
  gtask_server_set_lease(s, lease_ms);
  gtask_server_set_max_deliveries(s, max_deliveries);
  gtask_server_run(s, 1);
  _exit(0);
}

/* Has worker *pid ended (then reaped: *pid becomes 0, and *deaths counts a
 * SIGKILL), or has task id failed?  *st: the task's status. */
static bool worker_ended_or_task_failed(gtask_client *c, const char *id, pid_t *pid, int *deaths,
                                        gtask_status *st) {
  *st = status_of(c, id);
  int status;
  if (waitpid(*pid, &status, WNOHANG) == *pid) {
    *deaths += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    *pid = 0;
    return true;
  }
  return *st == GTASK_FAILURE;
}

TEST(redis_poison_task_goes_to_dead_set) {
  env e;
  env_open(&e, false, NULL);
  ASSERT_OK(gtask_client_set_queue(e.client, "poison"));
  gtask_send_conf *c = gtask_send_conf_new("suicide");
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 5)); /* losses must not use these up */
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e.client, c, id, gtask_int64(1)));
  /* Workers one after another: each reclaims the dead one's lease (300 ms),
   * requeues it, runs it and dies; the third finds it lost twice: dead. */
  gtask_status st = GTASK_PENDING;
  int deaths = 0;
  for (int w = 0; w < 6 && st != GTASK_FAILURE; w++) {
    pid_t pid = spawn_worker(gt_redis_url(e.redis), "poison", 300, 2);
    ASSERT_GT(pid, 0);
    WAIT_UNTIL_MSG(worker_ended_or_task_failed(e.client, id, &pid, &deaths, &st), 6000,
                   "worker %d neither died of the poison task nor failed it", w + 1);
    if (pid) { /* the one that failed it */
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
    }
  }
  ASSERT_EQ(deaths, 2);
  gtask_result *r;
  ASSERT_OK(gtask_client_result(e.client, id, &r));
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ELOST);
  ASSERT_STR_CONTAINS(r->error, "dead set");
  gtask_result_free(r);
  gtask_queue_stats qs;
  ASSERT_OK(e.broker->ops->stats(e.broker->impl, "poison", &qs));
  ASSERT_EQ(qs.dead, 1);
  ASSERT_EQ(qs.pending, 0);
  ASSERT_EQ(qs.active, 0);
  gtask_send_conf_free(c);
  env_close(&e);
}

/* ---------------------------------------------------------------- configuration */

TEST(redis_backend_on_another_db_uses_the_two_step_finish) {
  gt_redis *r0 = gt_redis_start(NULL);
  ASSERT_NOT_NULL(r0);
  char url[256];
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", gt_redis_port(r0));
  gt_redis_stop(r0);
  /* env_open starts its own server; point the backend at db 3 of it. */
  env e;
  memset(&e, 0, sizeof(e));
  e.redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e.redis);
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", gt_redis_port(e.redis));
  gtask_redis_conf *bc, *kc;
  ASSERT_OK(gtask_redis_conf_new(&bc, gt_redis_url(e.redis), NULL, -1));
  ASSERT_OK(gtask_redis_conf_new(&kc, url, NULL, -1));
  ASSERT_OK(gtask_broker_redis_new(&e.broker, bc));
  ASSERT_OK(gtask_backend_redis_new(&e.backend, kc));
  gtask_redis_conf_free(bc);
  gtask_redis_conf_free(kc);
  ASSERT_NULL(e.broker->ops->colocated(e.broker->impl, e.backend));
  e.server = new_server(e.broker, e.backend, "main");
  e.client = gtask_client_new(e.broker, e.backend);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(40), gtask_int64(2)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 42);
  /* The result lives in db 3, the queue in db 0. */
  redisContext *rc = gt_redis_connect(e.redis);
  redisReply *rep = redisCommand(rc, "SELECT 3");
  freeReplyObject(rep);
  rep = redisCommand(rc, "LINDEX gtask:{default}:n:%s 0", r->id);
  ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
  ASSERT_STR_CONTAINS(rep->str, "\"s\":\"SUCCESS\"");
  freeReplyObject(rep);
  redisFree(rc);
  /* The PENDING record went to db 3 too, and is gone now that it is done. */
  ASSERT_EQ(redis_int(e.redis, 3, "EXISTS gtask:{default}:pending"), 0);
  ASSERT_EQ(redis_int(e.redis, 0, "EXISTS gtask:{default}:pending"), 0);
  gtask_result_free(r);
  /* A task seen running has a state hash (STARTED) until it is final. */
  gtask_send_conf *sc = gtask_send_conf_new("sleep");
  char id[GTASK_ID_SIZE], cmd[128];
  ASSERT_OK(GTASK_SEND(e.client, sc, id, gtask_int64(1000))); /* long enough to look */
  WAIT_UNTIL(status_of(e.client, id) == GTASK_STARTED, 5000);
  snprintf(cmd, sizeof(cmd), "EXISTS gtask:{default}:t:%s", id);
  ASSERT_EQ(redis_int(e.redis, 3, cmd), 1);
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(10000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(redis_int(e.redis, 3, cmd), 0);
  gtask_result_free(r);
  gtask_send_conf_free(sc);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_unix_socket_url) {
  gt_redis *redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(redis);
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, gt_redis_unix_url(redis), NULL, -1));
  gtask_broker *b;
  gtask_backend *k;
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  ASSERT_OK(gtask_backend_redis_new(&k, conf));
  gtask_redis_conf_free(conf);
  env e;
  memset(&e, 0, sizeof(e));
  e.redis = redis;
  e.broker = b;
  e.backend = k;
  e.server = new_server(b, k, "main");
  e.client = gtask_client_from_server(e.server);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(1), gtask_int64(2)}, 2, 10000);
  ASSERT_EQ(r->values[0].v.i, 3);
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_unreachable_is_a_clear_error) {
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, "127.0.0.1:1", NULL, -1));
  gtask_broker *b = NULL;
  ASSERT_ERR(gtask_broker_redis_new(&b, conf), GTASK_ECONN);
  ASSERT_NULL(b);
  ASSERT_STR_CONTAINS(gtask_last_error(), "127.0.0.1:1");
  gtask_redis_conf_free(conf);
}

/* ---------------------------------------------------------------- shutdown */

static int count_started_or_succeeded(gtask_client *c, char (*ids)[GTASK_ID_SIZE], int n) {
  return count_status(c, ids, n, GTASK_STARTED) + count_status(c, ids, n, GTASK_SUCCESS);
}

TEST(redis_graceful_shutdown_finishes_running_and_hands_back_unstarted) {
  env e;
  env_open(&e, false, NULL);
  gtask_server_free(e.server);
  e.server = new_server(e.broker, e.backend, "main");
  gtask_client_free(e.client);
  e.client = gtask_client_from_server(e.server);
  ASSERT_OK(gtask_server_set_prefetch(e.server, 8));
  gtask_send_conf *c = gtask_send_conf_new("sleep");
  enum { N = 8 };
  char ids[N][GTASK_ID_SIZE];
  for (int k = 0; k < N; k++) ASSERT_OK(GTASK_SEND(e.client, c, ids[k], gtask_int64(400)));
  env_start(&e); /* 4 executors: 4 run, 4 wait in the prefetch buffer */
  /* Shut down once four have started (one that has finished since counts:
   * another started in its place). */
  WAIT_UNTIL(count_started_or_succeeded(e.client, ids, N) >= 4, 5000);
  int64_t t0 = test_now_ms();
  ASSERT_OK(gt_worker_stop(&e.worker));
  e.running = false;
  int64_t took = test_now_ms() - t0;
  ASSERT_LT(took, test_timeout_ms(3000));
  int success = 0, pending = 0;
  for (int k = 0; k < N; k++) {
    gtask_status st;
    ASSERT_OK(gtask_client_status(e.client, ids[k], &st));
    success += st == GTASK_SUCCESS;
    pending += st == GTASK_PENDING;
  }
  TEST_LOG("after shutdown: %d succeeded, %d handed back", success, pending);
  ASSERT_EQ(success + pending, N);
  ASSERT_GE(success, 4);
  /* A task handed back before it ever ran has no state of its own: it is
   * still in the pending set, and nothing would be left to clean up. */
  for (int k = 0; k < N; k++) {
    gtask_status st;
    ASSERT_OK(gtask_client_status(e.client, ids[k], &st));
    if (st == GTASK_PENDING) ASSERT_FALSE(task_key_exists(e.redis, "t", ids[k]));
  }
  /* Handed-back tasks run on the next start. */
  env_start(&e);
  for (int k = 0; k < N; k++) {
    gtask_result *r;
    ASSERT_OK(gtask_client_wait(e.client, ids[k], test_timeout_ms(10000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    gtask_result_free(r);
    ASSERT_FALSE(task_key_exists(e.redis, "t", ids[k])); /* STARTED went with it */
  }
  gtask_send_conf_free(c);
  env_close(&e);
}

/* An idle worker writes a task's outcome on the thread that ran it (one thread
 * wake-up less between send and result); when that write fails, the job goes
 * to the finisher, which retries it, and nothing is lost or run twice.  The
 * broker here is the Redis broker with a finish() that records its calling
 * thread and fails the first call made from an executor. */
static __thread bool on_executor; /* set by the handler below */
static const gtask_broker_ops *inner_broker_ops;
static atomic_int finishes_on_executor, finishes_elsewhere;
static atomic_bool failed_on_executor;

static int mark_executor(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  on_executor = true;
  gtask_ctx_sleep(ctx, 20);
  return gtask_ctx_return(ctx, args, n);
}

static int failing_finish(void *impl, const char *consumer, gtask_fin *fins, size_t n, void *state) {
  atomic_fetch_add(on_executor ? &finishes_on_executor : &finishes_elsewhere, 1);
  bool no = false;
  if (on_executor && atomic_compare_exchange_strong(&failed_on_executor, &no, true)) {
    gtask__set_error("injected: connection reset");
    return GTASK_ECONN;
  }
  return inner_broker_ops->finish(impl, consumer, fins, n, state);
}

static void no_destroy(void *impl) { (void)impl; }

/* Swaps the env's broker for the Redis broker with finish and/or lease
 * replaced (NULL keeps the real one, also in inner_broker_ops), and remakes
 * the server and client on it.  Returns the real broker: free it after
 * env_close. */
static gtask_broker *env_wrap_broker(env *e, __typeof__(inner_broker_ops->finish) finish,
                                     __typeof__(inner_broker_ops->lease) lease) {
  static gtask_broker_ops ops;
  inner_broker_ops = e->broker->ops;
  ops = *e->broker->ops;
  if (finish) ops.finish = finish;
  if (lease) ops.lease = lease;
  ops.destroy = no_destroy; /* the real handle destroys the implementation */
  gtask_broker *real = e->broker;
  e->broker = gtask__broker_new(&ops, real->impl);
  ASSERT_NOT_NULL(e->broker);
  gtask_client_free(e->client);
  gtask_server_free(e->server);
  e->server = new_server(e->broker, e->backend, "main");
  e->client = gtask_client_from_server(e->server);
  return real;
}

TEST(redis_idle_worker_writes_outcomes_on_the_executor_and_the_finisher_retries_a_failed_write) {
  env e;
  env_open(&e, false, NULL);
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR); /* the injected failure warns */
  gtask_broker *real = env_wrap_broker(&e, failing_finish, NULL);
  ASSERT_OK(gtask_server_reg(e.server, "mark", mark_executor, NULL));
  env_start(&e);

  gtask_send_conf *c = gtask_send_conf_new("mark");
  enum { N = 5 };
  for (int k = 0; k < N; k++) { /* one at a time: the worker is idle between them */
    gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(k)}, 1, 10000);
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->values[0].v.i, k);
    ASSERT_EQ(r->attempts, 1);
    gtask_result_free(r);
  }
  TEST_LOG("finish calls: %d on executors, %d on the finisher", atomic_load(&finishes_on_executor),
           atomic_load(&finishes_elsewhere));
  ASSERT_TRUE(atomic_load(&failed_on_executor));
  /* The failed write and at least one more (the finisher, awake for a timer
   * at that moment, may take a job now and then). */
  ASSERT_GE(atomic_load(&finishes_on_executor), 2);
  ASSERT_GE(atomic_load(&finishes_elsewhere), 1); /* the retry of the failed write */
  gtask_queue_stats st;
  ASSERT_OK(gtask_client_stats(e.client, NULL, &st));
  ASSERT_EQ(st.succeeded, N); /* each counted once */
  gtask_send_conf_free(c);
  env_close(&e);
  gtask_broker_free(real);
}

/* A task that reaches an idle worker runs on the thread that leased it: no
 * thread wake-up stands between lease and handler.  That thread gives the fetch
 * role to an idle one first, so a long task run this way does not stop the
 * worker from leasing, and no more tasks than the concurrency run at once.  The
 * broker here records which thread made the last lease that brought tasks. */
static _Thread_local char thread_tag; /* its address names the thread */
static _Atomic(uintptr_t) last_lessee;
static atomic_int leasing;      /* lease calls under way */
static atomic_int tasks_leased; /* tasks they brought */
static atomic_int gates_running, gates_running_max;
static atomic_bool gates_open, gate_ran_on_lessee;

static int recording_lease(void *impl, const char *consumer, const char *const *queues, size_t nq,
                           size_t max, int64_t block_ms, gtask_msg **out, size_t *n) {
  atomic_fetch_add(&leasing, 1);
  int rc = inner_broker_ops->lease(impl, consumer, queues, nq, max, block_ms, out, n);
  if (rc == 0 && *n) atomic_store(&last_lessee, (uintptr_t)&thread_tag);
  if (rc == 0) atomic_fetch_add(&tasks_leased, (int)*n);
  atomic_fetch_sub(&leasing, 1);
  return rc;
}

/* Is the worker of nexec executors idle: one pool thread in a lease, the
 * nexec others asleep, nothing queued or running?  (Its private state, read
 * under its mutex: worker.h.  The lease is looked at first: gtask_server_run
 * sets these fields without the mutex before it starts its threads, so they
 * may be read only once one of those threads has been seen.) */
static bool worker_idle(gtask_server *s, size_t nexec) {
  if (atomic_load(&leasing) != 1) return false;
  pthread_mutex_lock(&s->mu);
  bool idle = s->nidle_exec == nexec && s->nready == 0 && s->nrunning == 0;
  pthread_mutex_unlock(&s->mu);
  return idle && atomic_load(&leasing) == 1;
}

/* gate(k): runs until the test opens the gates. */
static int gate(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  if (args[0].v.i == 0) atomic_store(&gate_ran_on_lessee, atomic_load(&last_lessee) == (uintptr_t)&thread_tag);
  int now = atomic_fetch_add(&gates_running, 1) + 1;
  for (int max = atomic_load(&gates_running_max); now > max;)
    if (atomic_compare_exchange_weak(&gates_running_max, &max, now)) break;
  while (!atomic_load(&gates_open)) gtask_ctx_sleep(ctx, 5);
  atomic_fetch_sub(&gates_running, 1);
  return gtask_ctx_return(ctx, args, n);
}

TEST(redis_idle_worker_runs_a_task_on_the_thread_that_leased_it_and_keeps_leasing) {
  env e;
  env_open(&e, false, NULL);
  gtask_broker *real = env_wrap_broker(&e, NULL, recording_lease);
  ASSERT_OK(gtask_server_reg(e.server, "gate", gate, NULL));
  env_start(&e); /* 4 executors */
  WAIT_UNTIL(worker_idle(e.server, 4), 5000); /* the fetcher blocks, the others sleep */

  gtask_send_conf *g = gtask_send_conf_new("gate");
  enum { N = 9 };
  char ids[N][GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e.client, g, ids[0], gtask_int64(0)));
  WAIT_UNTIL(atomic_load(&gates_running) > 0, 5000);
  ASSERT_EQ(atomic_load(&gates_running), 1);
  ASSERT_TRUE(atomic_load(&gate_ran_on_lessee));

  /* The gate runs on: another task is leased and run meanwhile. */
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(2), gtask_int64(3)}, 2, 5000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 5);
  gtask_result_free(r);
  ASSERT_EQ(atomic_load(&gates_running), 1);

  /* More gates than executors, one at a time, each to a fetcher that may keep
   * it (each is leased before the next is sent: gate 0, the add, then gates
   * 1..k): four run, the rest wait. */
  for (int k = 1; k < N; k++) {
    ASSERT_OK(GTASK_SEND(e.client, g, ids[k], gtask_int64(k)));
    WAIT_UNTIL(atomic_load(&tasks_leased) >= k + 2, 5000);
    if (k < 4) WAIT_UNTIL(atomic_load(&gates_running) == k + 1, 5000);
  }
  /* The worker holds all nine.  Nothing to wait for here: this sleep gives a
   * fifth gate the time to start, which it must not do. */
  test_sleep_ms(200);
  ASSERT_EQ(atomic_load(&gates_running), 4);
  ASSERT_EQ(atomic_load(&gates_running_max), 4);

  atomic_store(&gates_open, true);
  for (int k = 0; k < N; k++) {
    ASSERT_OK(gtask_client_wait(e.client, ids[k], test_timeout_ms(10000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->values[0].v.i, k);
    gtask_result_free(r);
  }
  ASSERT_EQ(atomic_load(&gates_running_max), 4);
  gtask_send_conf_free(g);
  gtask_send_conf_free(c);
  env_close(&e);
  gtask_broker_free(real);
}

/* prefetch bounds what one worker holds (running or waiting for an executor):
 * the rest of the queue stays leasable by other workers.  Of the tasks held,
 * only those running read STARTED. */
TEST(redis_prefetch_bounds_the_tasks_a_worker_leases_and_only_running_ones_read_started) {
  env e;
  env_open(&e, false, NULL);
  ASSERT_OK(gtask_server_set_prefetch(e.server, 6));
  gtask_send_conf *c = gtask_send_conf_new("sleep");
  enum { N = 20 };
  char ids[N][GTASK_ID_SIZE];
  /* Tasks long enough for the counts below to be read before any ends. */
  int64_t run_ms = test_timeout_ms(1000);
  for (int k = 0; k < N; k++) ASSERT_OK(GTASK_SEND(e.client, c, ids[k], gtask_int64(run_ms)));
  env_start(&e); /* 4 executors: 4 run, 2 wait */
  /* Four run, so the worker has leased (STARTED is written 10 ms after a
   * start); until one ends, it has no room to lease more. */
  WAIT_UNTIL(count_status(e.client, ids, N, GTASK_STARTED) >= 4, 5000);
  gtask_queue_stats st;
  ASSERT_OK(gtask_client_stats(e.client, NULL, &st));
  ASSERT_EQ(st.active, 6);
  ASSERT_EQ(st.pending, N - 6);
  /* STARTED means running: the two leased tasks waiting for an executor
   * still read PENDING. */
  int started = 0, pending = 0;
  for (int k = 0; k < N; k++) {
    gtask_status s;
    ASSERT_OK(gtask_client_status(e.client, ids[k], &s));
    started += s == GTASK_STARTED;
    pending += s == GTASK_PENDING;
  }
  ASSERT_EQ(started, 4);
  ASSERT_EQ(pending, N - 4);
  gtask_send_conf_free(c);
  env_close(&e);
}

/* The default prefetch rises while tasks are short, within its floor (8 x
 * concurrency, at least 64) and gtask_server_set_prefetch's limit. */
TEST(prefetch_default_adapts_to_the_run_time_of_tasks) {
  ASSERT_EQ(gtask__prefetch_adapt(128, 16, 0), 128);             /* nothing measured yet */
  ASSERT_EQ(gtask__prefetch_adapt(128, 16, 2000), 1000);         /* 2 us tasks: the limit */
  ASSERT_EQ(gtask__prefetch_adapt(64, 4, 200000), 200);          /* 0.2 ms: 10 ms of work each */
  ASSERT_EQ(gtask__prefetch_adapt(128, 16, 1000000000LL), 128);  /* 1 s tasks: the floor */
}

/* What that buys: a worker of short tasks leases them in batches far larger
 * than its floor, so it drains a queue in fewer round trips. */
TEST(redis_default_prefetch_leases_short_tasks_in_large_batches) {
  env e;
  env_open(&e, false, NULL); /* 4 executors: floor 64 */
  gtask_send_conf *c = gtask_send_conf_new("add");
  enum { N = 2000 };
  char(*ids)[GTASK_ID_SIZE] = malloc(sizeof(*ids) * N);
  ASSERT_NOT_NULL(ids);
  for (int k = 0; k < N; k++) ASSERT_OK(GTASK_SEND(e.client, c, ids[k], gtask_int64(k), gtask_int64(1)));
  long long before = calls_of(e.redis, "xreadgroup");
  env_start(&e);
  for (int k = 0; k < N; k++) {
    gtask_result *r;
    ASSERT_OK(gtask_client_wait(e.client, ids[k], test_timeout_ms(20000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    gtask_result_free(r);
  }
  /* At most 64 per lease would take at least 32 leases. */
  long long leases = calls_of(e.redis, "xreadgroup") - before;
  ASSERT_LT(leases, 20);
  free(ids);
  gtask_send_conf_free(c);
  env_close(&e);
}

static gtask_server *signal_target;
static void on_sigusr1(int sig) {
  (void)sig;
  gtask_server_shutdown(signal_target); /* async-signal-safe by contract */
}

TEST(redis_shutdown_from_a_signal_handler) {
  env e;
  env_open(&e, false, NULL);
  signal_target = e.server;
  struct sigaction act;
  memset(&act, 0, sizeof(act));
  act.sa_handler = on_sigusr1;
  ASSERT_EQ(sigaction(SIGUSR1, &act, NULL), 0);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(1), gtask_int64(1)}, 2, 10000);
  gtask_result_free(r);
  int64_t t0 = test_now_ms();
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  ASSERT_OK(gt_worker_join(&e.worker));
  e.running = false;
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(3000));
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(redis_redis_restart_with_persistence_loses_nothing) {
  env e;
  memset(&e, 0, sizeof(e));
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR);
  e.redis = gt_redis_start("appendonly yes\nappendfsync always\n");
  ASSERT_NOT_NULL(e.redis);
  gt_redis_pair(gt_redis_url(e.redis), &e.broker, &e.backend);
  e.server = new_server(e.broker, e.backend, "main");
  e.client = gtask_client_from_server(e.server);
  gtask_send_conf *c = gtask_send_conf_new("add");
  enum { N = 300 };
  char ids[N][GTASK_ID_SIZE];
  for (int k = 0; k < N / 2; k++) ASSERT_OK(GTASK_SEND(e.client, c, ids[k], gtask_int64(k), gtask_int64(1)));
  env_start(&e);
  ASSERT_OK(gt_redis_kill9(e.redis));
  test_sleep_ms(300); /* an outage the worker lives through: nothing to wait for */
  ASSERT_OK(gt_redis_start_again(e.redis));
  /* No retrying by hand: stale pooled connections are detected at checkout,
   * and waits ride out the outage within their timeout. */
  for (int k = N / 2; k < N; k++) ASSERT_OK(GTASK_SEND(e.client, c, ids[k], gtask_int64(k), gtask_int64(1)));
  for (int k = 0; k < N; k++) {
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(e.client, ids[k], test_timeout_ms(30000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->values[0].v.i, k + 1);
    gtask_result_free(r);
  }
  gtask_send_conf_free(c);
  env_close(&e);
}

/* CLIENT KILL of every connection, repeatedly, while tasks run: workers and
 * clients reconnect with backoff and every task finishes exactly once. */
TEST(redis_client_kill_storm_loses_nothing) {
  env e;
  env_open(&e, false, NULL);
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR);
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("sleep");
  enum { N = 400 };
  char ids[N][GTASK_ID_SIZE];
  redisContext *killer = gt_redis_connect(e.redis);
  ASSERT_NOT_NULL(killer);
  int kills = 0;
  for (int k = 0; k < N; k++) {
    ASSERT_OK(GTASK_SEND(e.client, c, ids[k], gtask_int64(2)));
    if (k % 50 == 25) {
      redisReply *rep = redisCommand(killer, "CLIENT KILL TYPE normal SKIPME yes");
      ASSERT_NOT_NULL(rep);
      kills += (int)rep->integer;
      freeReplyObject(rep);
    }
  }
  for (int k = 0; k < N; k++) {
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(e.client, ids[k], test_timeout_ms(30000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->values[0].v.i, 2);
    ASSERT_EQ(r->attempts, 1);
    gtask_result_free(r);
  }
  TEST_LOG("%d connections killed along the way", kills);
  ASSERT_GT(kills, 0);
  redisFree(killer);
  gtask_send_conf_free(c);
  env_close(&e);
}

/* ---------------------------------------------------------------- redis conf rows */

/* g_task SetExpireTime: the backend's records live as long as configured. */
TEST(redis_expire_time_applies_to_results) {
  env e;
  memset(&e, 0, sizeof(e));
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  e.redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e.redis);
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, gt_redis_url(e.redis), NULL, -1));
  ASSERT_ERR(gtask_redis_conf_set_expire_time(conf, 10), GTASK_EINVAL);
  ASSERT_OK(gtask_redis_conf_set_expire_time(conf, 5000));
  ASSERT_OK(gtask_broker_redis_new(&e.broker, conf));
  ASSERT_OK(gtask_backend_redis_new(&e.backend, conf));
  gtask_redis_conf_free(conf);
  e.server = new_server(e.broker, e.backend, "main");
  e.client = gtask_client_from_server(e.server);
  env_start(&e);
  /* A running task's state hash (STARTED) expires... */
  gtask_send_conf *c = gtask_send_conf_new("sleep");
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e.client, c, id, gtask_int64(1000))); /* long enough to look */
  WAIT_UNTIL(status_of(e.client, id) == GTASK_STARTED, 5000);
  redisContext *rc = gt_redis_connect(e.redis);
  redisReply *rep = redisCommand(rc, "PTTL gtask:{default}:t:%s", id);
  ASSERT_GT(rep->integer, 0);
  ASSERT_LE(rep->integer, 5000);
  freeReplyObject(rep);
  /* ... and so does a final one's record; the hash is gone with the final state. */
  gtask_result *r;
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(10000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  rep = redisCommand(rc, "PTTL gtask:{default}:n:%s", id);
  ASSERT_GT(rep->integer, 0);
  ASSERT_LE(rep->integer, 5000);
  freeReplyObject(rep);
  rep = redisCommand(rc, "EXISTS gtask:{default}:t:%s", id);
  ASSERT_EQ(rep->integer, 0);
  freeReplyObject(rep);
  redisFree(rc);
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}

static int count_clients(gt_redis *redis) {
  redisContext *rc = gt_redis_connect(redis);
  redisReply *rep = redisCommand(rc, "CLIENT LIST");
  int n = 0;
  for (const char *p = rep->str; (p = strchr(p, '\n')); p++) n++;
  freeReplyObject(rep);
  redisFree(rc);
  return n - 1; /* not this connection */
}

typedef struct sender_arg {
  gtask_broker *b;
  gtask_backend *k;
  int ok;
} sender_arg;

static void *sender(void *arg) {
  sender_arg *a = arg;
  gtask_client *cli = gtask_client_new(a->b, a->k);
  gtask_send_conf *c = gtask_send_conf_new("nobody_runs_this");
  for (int k = 0; k < 200; k++) {
    char id[GTASK_ID_SIZE];
    a->ok += GTASK_SEND(cli, c, id, gtask_int64(k)) == 0;
  }
  gtask_send_conf_free(c);
  gtask_client_free(cli);
  return NULL;
}

/* g_task SetPoolSize: eight threads sending at once share at most pool_size
 * connections. */
TEST(redis_pool_size_caps_connections) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  gt_redis *redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(redis);
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, gt_redis_url(redis), NULL, -1));
  ASSERT_ERR(gtask_redis_conf_set_pool_size(conf, 0), GTASK_EINVAL);
  ASSERT_OK(gtask_redis_conf_set_pool_size(conf, 2));
  gtask_broker *b;
  gtask_backend *k;
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  ASSERT_OK(gtask_backend_redis_new(&k, conf));
  gtask_redis_conf_free(conf);
  pthread_t th[8];
  sender_arg args[8];
  for (int t = 0; t < 8; t++) {
    args[t] = (sender_arg){.b = b, .k = k};
    ASSERT_EQ(pthread_create(&th[t], NULL, sender, &args[t]), 0);
  }
  for (int t = 0; t < 8; t++) {
    pthread_join(th[t], NULL);
    ASSERT_EQ(args[t].ok, 200);
  }
  /* Broker pool (2) + backend pool (2) at most. */
  int clients = count_clients(redis);
  TEST_LOG("%d connections open after 8 threads x 200 sends", clients);
  ASSERT_GE(clients, 1);
  ASSERT_LE(clients, 4);
  gtask_broker_free(b);
  gtask_backend_free(k);
  ASSERT_EQ(count_clients(redis), 0); /* freeing closes them */
  gt_redis_stop(redis);
}

TEST(redis_password_from_argument_and_url) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR);
  gt_redis *redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(redis);
  redisContext *rc = gt_redis_connect(redis);
  redisReply *rep = redisCommand(rc, "CONFIG SET requirepass s3cret");
  ASSERT_EQ(rep->type, REDIS_REPLY_STATUS);
  freeReplyObject(rep);
  redisFree(rc);
  char url[200];
  snprintf(url, sizeof(url), "127.0.0.1:%d", gt_redis_port(redis));
  gtask_redis_conf *conf;
  gtask_broker *b = NULL;
  ASSERT_OK(gtask_redis_conf_new(&conf, url, NULL, -1));
  ASSERT_ERR(gtask_broker_redis_new(&b, conf), GTASK_EREDIS); /* NOAUTH */
  ASSERT_STR_CONTAINS(gtask_last_error(), "127.0.0.1");
  gtask_redis_conf_free(conf);
  ASSERT_OK(gtask_redis_conf_new(&conf, url, "s3cret", 2));
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  gtask_broker_free(b);
  gtask_redis_conf_free(conf);
  snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/1", gt_redis_port(redis));
  ASSERT_OK(gtask_redis_conf_new(&conf, url, NULL, -1));
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  ASSERT_STR_EQ(strstr(gtask_redis_conf_describe(conf), "s3cret"), NULL);
  gtask_broker_free(b);
  gtask_redis_conf_free(conf);
  gt_redis_stop(redis);
}

/* ---------------------------------------------------------------- on a Redis Cluster */

/* The tests above that need nothing of a single server, on the shared cluster. */
ON_CLUSTER(add_round_trip)
ON_CLUSTER(every_type_round_trips_exactly)
ON_CLUSTER(typed_handlers_convert_and_free_outputs)
ON_CLUSTER(wrong_arguments_fail_with_a_message)
ON_CLUSTER(unknown_task_name_fails)
ON_CLUSTER(oversize_payload_is_refused_at_send)
ON_CLUSTER(timeout_fails_the_task_at_its_deadline)
ON_CLUSTER(timeout_retries_with_backoff_then_fails)
ON_CLUSTER(two_workers_share_a_queue)
ON_CLUSTER(shutdown_from_a_signal_handler)

/* The job controls (issue 18) on the shared cluster: the failed set, pause. */
TEST(cluster_retry_on_error_and_never_on_bad_input) {
  on_cluster = true;
  check_retry_on(false);
}
TEST(cluster_failed_task_is_listed_and_rerun) {
  on_cluster = true;
  check_failed_then_rerun(false);
}
TEST(cluster_pause_holds_new_tasks_and_resume_runs_them) {
  on_cluster = true;
  check_pause(false);
}

/* ---------------------------------------------------------------- weighted queues (issue 18) */

/* A bad queue list is refused with a message, and the one set before stays:
 * the worker still serves it. */
TEST(memory_bad_queue_weights_change_nothing) {
  env e;
  env_open(&e, true, NULL);
  ASSERT_OK(gtask_server_set_queues(e.server, "default:2,other:1"));
  static const struct {
    const char *list, *says;
  } bad[] = {{"default:0", "bad weight in \"default:0\""},
             {"default:1001", "an integer from 1 to 1000"},
             {"default:6,low", "give every queue a weight"},
             {"default:6,low:1,default:2", "queue \"default\" is listed twice"},
             {"default,,low", "invalid queue name \"\""},
             {"default:6,:1", "invalid queue name \"\""}};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    ASSERT_EQ(gtask_server_set_queues(e.server, bad[k].list), GTASK_EINVAL);
    ASSERT_STR_CONTAINS(gtask_server_errmsg(e.server), bad[k].says);
  }
  /* A name ending in :DIGITS, with its weight. */
  ASSERT_OK(gtask_server_set_queues(e.server, "jobs:2:1,default:1"));
  ASSERT_OK(gtask_server_set_queues(e.server, "other:1,default:3"));
  ASSERT_OK(gtask_server_set_strict(e.server, true));
  env_start(&e);
  gtask_send_conf *c = gtask_send_conf_new("add");
  gtask_result *r = send_wait(&e, c, (gtask_value[]){gtask_int64(1), gtask_int64(2)}, 2, 10000);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(gtask_server_set_strict(e.server, false), GTASK_ESTATE);
  gtask_result_free(r);
  gtask_send_conf_free(c);
  env_close(&e);
}
