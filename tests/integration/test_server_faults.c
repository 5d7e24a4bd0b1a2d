/* test_server_faults.c -- the defects an independent fault probe found, each
 * reproduced against a real redis-server: result waits that starved a shared
 * connection pool (up to a deadlock), a finisher stuck behind one permanently
 * failing write, sends whose reply was lost reported as not sent, and a worker
 * without an ACL permission that idled for ever. */
#include "internal.h"
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

/* ---------------------------------------------------------------- handlers */

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int sleeper(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  if (n != 1) return gtask_ctx_fail(ctx, "sleep takes 1 argument");
  if (!gtask_ctx_sleep(ctx, args[0].v.i)) return gtask_ctx_fail(ctx, "cancelled");
  return gtask_ctx_return(ctx, args, 1);
}

/* A result of args[0] bytes: a slow write, which widens the window between a
 * heartbeat's snapshot and its reply. */
static int big(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud, (void)n;
  size_t len = (size_t)args[0].v.i;
  char *s = malloc(len + 1);
  memset(s, 'x', len);
  s[len] = '\0';
  gtask_value v = gtask_str(s);
  int rc = gtask_ctx_return(ctx, &v, 1);
  free(s);
  return rc;
}

/* ---------------------------------------------------------------- logs */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[1 << 16];

static void capture_log(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (level < GTASK_LOG_WARN) return;
  fprintf(stderr, "[gtask] %s\n", line);
  pthread_mutex_lock(&log_mu);
  size_t used = strlen(log_text);
  snprintf(log_text + used, sizeof(log_text) - used, "%s\n", line);
  pthread_mutex_unlock(&log_mu);
}

static bool log_has(const char *needle) {
  pthread_mutex_lock(&log_mu);
  bool yes = strstr(log_text, needle) != NULL;
  pthread_mutex_unlock(&log_mu);
  return yes;
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
  int nexec;
} env;

/* A server on a fresh redis-server whose broker and backend pools hold
 * pool_size connections (url NULL: the fixture's; else that URL, password pw). */
static void env_open_url(env *e, gt_redis *redis, const char *url, const char *pw, int pool_size,
                         int64_t timeout_ms) {
  memset(e, 0, sizeof(*e));
  log_text[0] = '\0';
  gtask_set_log(capture_log, NULL, GTASK_LOG_WARN);
  e->redis = redis;
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, url ? url : gt_redis_url(redis), pw, -1));
  ASSERT_OK(gtask_redis_conf_set_pool_size(conf, pool_size));
  if (timeout_ms) ASSERT_OK(gtask_redis_conf_set_timeout(conf, timeout_ms));
  ASSERT_OK(gtask_broker_redis_new(&e->broker, conf));
  ASSERT_OK(gtask_backend_redis_new(&e->backend, conf));
  gtask_redis_conf_free(conf);
  e->server = gtask_server_new(e->broker, e->backend);
  ASSERT_NOT_NULL(e->server);
  ASSERT_OK(GTASK_REG(e->server, add));
  ASSERT_OK(gtask_server_reg(e->server, "sleep", sleeper, NULL));
  ASSERT_OK(gtask_server_reg(e->server, "big", big, NULL));
  e->client = gtask_client_from_server(e->server);
  ASSERT_NOT_NULL(e->client);
  e->nexec = 4;
}

static void env_open(env *e, int pool_size) {
  gt_redis *redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(redis);
  env_open_url(e, redis, NULL, NULL, pool_size, 0);
}

static void env_start(env *e) {
  gt_worker_start(&e->worker, e->server, e->nexec);
  e->running = true;
}

static int env_stop(env *e) {
  if (!e->running) return 0;
  e->running = false;
  return gt_worker_stop(&e->worker);
}

static void env_close(env *e) {
  ASSERT_OK(env_stop(e));
  gtask_client_free(e->client);
  gtask_server_free(e->server);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
}

static void send_task(gtask_client *c, const char *name, const gtask_value *args, size_t n,
                      char id[GTASK_ID_SIZE]) {
  gtask_send_conf *sc = gtask_send_conf_new(name);
  ASSERT_NOT_NULL(sc);
  int rc = gtask_client_send(c, sc, args, n, id);
  if (rc) TEST_FAIL("send %s: %s", name, gtask_client_errmsg(c));
  gtask_send_conf_free(sc);
}

static void redis_cmd(gt_redis *r, const char *cmd) {
  redisContext *c = gt_redis_connect(r);
  ASSERT_NOT_NULL(c);
  redisReply *rep = redisCommand(c, cmd);
  ASSERT_NOT_NULL(rep);
  if (rep->type == REDIS_REPLY_ERROR) TEST_FAIL("%s: %s", cmd, rep->str);
  freeReplyObject(rep);
  redisFree(c);
}

/* ---------------------------------------------------------------- 1. waits and the pool */

typedef struct waiter {
  env *e;
  const char *id;
  int64_t timeout_ms;
  int rc;
  gtask_status status;
  int64_t took_ms;
  atomic_bool done;
} waiter;

static void *wait_thread(void *arg) {
  waiter *w = arg;
  gtask_client *c = gtask_client_from_server(w->e->server); /* one per thread */
  gtask_result *r = NULL;
  int64_t t0 = test_now_ms();
  w->rc = gtask_client_wait(c, w->id, w->timeout_ms, &r);
  w->took_ms = test_now_ms() - t0;
  if (r) w->status = r->status;
  gtask_result_free(r);
  gtask_client_free(c);
  atomic_store(&w->done, true);
  return NULL;
}

/* Is every waiter of w[0..n) done? */
static bool all_done(waiter *w, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (!atomic_load(&w[k].done)) return false;
  return true;
}

/* The probe's deadlock: a server and its clients share one pool; as many
 * waits without timeout as the pool has connections, on a task of that
 * server, must not keep the server from writing the result they wait for. */
TEST(waits_without_timeout_never_starve_the_server_sharing_their_pool) {
  env e;
  env_open(&e, 2);
  env_start(&e);
  char id[GTASK_ID_SIZE];
  send_task(e.client, "sleep", (gtask_value[]){gtask_int64(1000)}, 1, id);
  waiter w[4];
  pthread_t t[4];
  for (int k = 0; k < 4; k++) {
    w[k] = (waiter){.e = &e, .id = id, .timeout_ms = -1};
    ASSERT_EQ(pthread_create(&t[k], NULL, wait_thread, &w[k]), 0);
  }
  WAIT_UNTIL_MSG(all_done(w, 4), 10000,
                 "waits on a 1 s task still blocked: the server cannot write its result");
  for (int k = 0; k < 4; k++) {
    pthread_join(t[k], NULL);
    ASSERT_OK(w[k].rc);
    ASSERT_EQ(w[k].status, GTASK_SUCCESS);
  }
  env_close(&e);
}

/* More waits than connections: each returns at its own timeout, not after
 * queueing for a connection behind the others. */
TEST(each_wait_returns_at_its_timeout_when_waits_outnumber_connections) {
  env e;
  env_open(&e, 2);
  env_start(&e);
  char id[GTASK_ID_SIZE];
  send_task(e.client, "sleep", (gtask_value[]){gtask_int64(4000)}, 1, id);
  enum { N = 8 };
  waiter w[N];
  pthread_t t[N];
  for (int k = 0; k < N; k++) {
    w[k] = (waiter){.e = &e, .id = id, .timeout_ms = 1500};
    ASSERT_EQ(pthread_create(&t[k], NULL, wait_thread, &w[k]), 0);
  }
  /* Meanwhile the server keeps serving: an unrelated task finishes at once. */
  char id2[GTASK_ID_SIZE];
  send_task(e.client, "add", (gtask_value[]){gtask_int64(2), gtask_int64(3)}, 2, id2);
  gtask_result *r = NULL;
  int64_t t0 = test_now_ms();
  ASSERT_OK(gtask_client_wait(e.client, id2, test_timeout_ms(5000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 5);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(1000));
  gtask_result_free(r);
  for (int k = 0; k < N; k++) {
    pthread_join(t[k], NULL);
    ASSERT_ERR(w[k].rc, GTASK_ETIMEDOUT);
    ASSERT_GE(w[k].took_ms, 1500);
    ASSERT_LT(w[k].took_ms, 1500 + test_timeout_ms(800));
  }
  env_close(&e); /* shutdown lets the 4 s task finish */
}

/* ---------------------------------------------------------------- 2. permanent write errors */

/* How many tasks the client's queue has in its dead set. */
static size_t dead_count(gtask_client *c) {
  gtask_dead_entry *dead = NULL;
  size_t n = 0;
  ASSERT_OK(gtask_client_dead_list(c, &dead, &n));
  gtask_dead_list_free(dead, n);
  return n;
}

/* The probe's stuck finisher: one task's notify key overwritten with a string
 * makes its result write fail with WRONGTYPE for ever.  That task goes to the
 * dead set with the error; every other result is still written. */
TEST(a_permanently_failing_result_write_is_dead_lettered_and_the_rest_flow) {
  env e;
  env_open(&e, 4);
  env_start(&e);
  char id[GTASK_ID_SIZE];
  send_task(e.client, "sleep", (gtask_value[]){gtask_int64(500)}, 1, id);
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "SET gtask:{default}:n:%s x", id);
  redis_cmd(e.redis, cmd);
  /* The sleep task ends and its write fails. */
  WAIT_UNTIL_MSG(log_has("its outcome cannot be written"), 5000,
                 "the failing write of the sleep task's result was never given up");
  for (int k = 0; k < 5; k++) {
    char id2[GTASK_ID_SIZE];
    send_task(e.client, "add", (gtask_value[]){gtask_int64(k), gtask_int64(1)}, 2, id2);
    gtask_result *r = NULL;
    int rc = gtask_client_wait(e.client, id2, test_timeout_ms(3000), &r);
    if (rc) TEST_FAIL("add %d: %s (results stuck behind the failing write)", k, gtask_client_errmsg(e.client));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->values[0].v.i, k + 1);
    gtask_result_free(r);
  }
  WAIT_UNTIL(dead_count(e.client) > 0, 5000);
  gtask_dead_entry *dead = NULL;
  size_t n = 0;
  ASSERT_OK(gtask_client_dead_list(e.client, &dead, &n));
  ASSERT_EQ(n, 1);
  ASSERT_STR_EQ(dead[0].id, id);
  ASSERT_STR_EQ(dead[0].name, "sleep");
  ASSERT_STR_CONTAINS(dead[0].error, "could not be written");
  ASSERT_STR_CONTAINS(dead[0].error, "WRONGTYPE");
  gtask_dead_list_free(dead, n);
  gtask_queue_stats st;
  ASSERT_OK(gtask_client_stats(e.client, NULL, &st));
  ASSERT_EQ(st.active, 0);
  ASSERT_EQ(st.dead, 1);
  ASSERT_EQ(st.succeeded, 5);
  ASSERT_TRUE(log_has("moving it to the dead set"));
  env_close(&e);
}

/* ---------------------------------------------------------------- 3. lost replies */

/* A send whose command reached Redis but whose reply never came (Redis
 * stalled past the timeout) is EINDOUBT, not ECONN, and keeps its id: the
 * task is queued once Redis resumes, and a caller that checks the id before
 * sending again creates no duplicate. */
TEST(a_send_whose_reply_is_lost_is_in_doubt_and_keeps_its_id) {
  gt_redis *redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(redis);
  env e;
  env_open_url(&e, redis, NULL, NULL, 2, 300);
  pid_t pid = gt_redis_pid(redis);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  enum { N = 700 }; /* two chunks of a send_many: 512 and 188 */
  gtask_value args[2 * N];
  for (int k = 0; k < N; k++) args[2 * k] = gtask_int64(k), args[2 * k + 1] = gtask_int64(1);
  char(*ids)[GTASK_ID_SIZE] = calloc(N, GTASK_ID_SIZE);
  char one[GTASK_ID_SIZE] = "x";

  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  int rc1 = gtask_client_send(e.client, sc, args, 2, one);
  int rcn = gtask_client_send_many(e.client, sc, N, args, 2, ids);
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  ASSERT_ERR(rc1, GTASK_EINDOUBT);
  ASSERT_STR_CONTAINS(gtask_strerror(rc1), "outcome unknown");
  ASSERT_EQ(strlen(one), GTASK_ID_SIZE - 1);
  ASSERT_ERR(rcn, GTASK_EINDOUBT);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "may or may not be queued");
  for (int k = 0; k < 512; k++) ASSERT_EQ(strlen(ids[k]), GTASK_ID_SIZE - 1);
  for (int k = 512; k < N; k++) ASSERT_STR_EQ(ids[k], ""); /* never sent */

  /* Redis runs what it had received once it resumes (each connection in its
   * turn): the ids say so. */
  gtask_status st;
  const char *check[3] = {one, ids[0], ids[511]};
  for (int k = 0; k < 3; k++) {
    WAIT_UNTIL(gtask_client_status(e.client, check[k], &st) == 0, 5000);
    ASSERT_EQ(st, GTASK_PENDING);
  }
  gtask_queue_stats qs;
  ASSERT_OK(gtask_client_stats(e.client, NULL, &qs));
  ASSERT_EQ(qs.pending, 1 + 512);

  /* Redis down: nothing was sent, so no id is given. */
  ASSERT_EQ(gt_redis_kill9(redis), 0);
  char gone[GTASK_ID_SIZE] = "x";
  ASSERT_ERR(gtask_client_send(e.client, sc, args, 2, gone), GTASK_ECONN);
  ASSERT_STR_EQ(gone, "");
  ASSERT_EQ(gt_redis_start_again(redis), 0);
  free(ids);
  gtask_send_conf_free(sc);
  env_close(&e);
}

/* ---------------------------------------------------------------- 4. ACL users */

static const char minimal_acl[] = "~gtask:* -@all +@read +@write +@scripting +@connection "
                                  "+@transaction +@blocking +client|id +client|unblock";

static gt_redis *start_with_user(const char *rules) {
  char conf[1200];
  snprintf(conf, sizeof(conf), "user worker on >s3cret %s\n", rules);
  gt_redis *r = gt_redis_start(conf);
  ASSERT_NOT_NULL(r);
  return r;
}

static const char *user_url(gt_redis *r) {
  static char url[128];
  snprintf(url, sizeof(url), "redis://worker:s3cret@127.0.0.1:%d/0", gt_redis_port(r));
  return url;
}

/* The minimal ACL of the README is enough for a worker and a client, and
 * shutdown does not wait out a blocked lease (CLIENT UNBLOCK works). */
TEST(the_minimal_acl_runs_a_worker_and_a_client) {
  gt_redis *redis = start_with_user(minimal_acl);
  env e;
  env_open_url(&e, redis, user_url(redis), NULL, 4, 0);
  env_start(&e);
  char id[GTASK_ID_SIZE];
  send_task(e.client, "add", (gtask_value[]){gtask_int64(40), gtask_int64(2)}, 2, id);
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(5000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 42);
  gtask_result_free(r);
  gtask_queue_stats qs;
  ASSERT_OK(gtask_client_stats(e.client, NULL, &qs));
  ASSERT_EQ(qs.succeeded, 1);
  /* The fetcher blocks in its lease (for up to a third of the 10 s lease), so
   * a shutdown that does not interrupt it takes seconds. */
  WAIT_UNTIL(gt_redis_blocked_clients(redis) > 0, 5000);
  int64_t t0 = test_now_ms();
  ASSERT_OK(env_stop(&e));
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(1000));
  env_close(&e);
}

/* A worker whose user lacks a permission it needs stops with ENOPERM naming
 * the command and what to grant, instead of idling for ever. */
static void check_missing_permission(const char *removed, const char *named) {
  char rules[1024];
  snprintf(rules, sizeof(rules), "%s %s", minimal_acl, removed);
  gt_redis *redis = start_with_user(rules);
  env e;
  env_open_url(&e, redis, user_url(redis), NULL, 4, 0);
  env_start(&e);
  WAIT_UNTIL_MSG(atomic_load(&e.worker.stopped), 5000, "the worker lacking %s is still running",
                 named);
  e.running = false;
  ASSERT_ERR(gt_worker_join(&e.worker), GTASK_ENOPERM);
  ASSERT_STR_CONTAINS(gtask_server_errmsg(e.server), named);
  ASSERT_STR_CONTAINS(gtask_server_errmsg(e.server), "NOPERM");
  ASSERT_TRUE(log_has("cannot run"));
  env_close(&e);
}

TEST(a_worker_without_client_id_stops_with_enoperm) { check_missing_permission("-client|id", "CLIENT ID"); }

TEST(a_worker_without_client_unblock_stops_with_enoperm) {
  check_missing_permission("-client|unblock", "CLIENT UNBLOCK");
}

TEST(a_worker_without_scripting_stops_with_enoperm) { check_missing_permission("-evalsha", "evalsha"); }

/* ---------------------------------------------------------------- 5. smaller ones */

/* A job whose outcome an executor writes while a heartbeat is in flight is no
 * takeover: with one worker, no "taken over" warning may appear. */
TEST(a_single_worker_never_reports_its_own_finished_tasks_as_taken_over) {
  env e;
  env_open(&e, 4);
  ASSERT_OK(gtask_server_set_lease(e.server, 300)); /* a heartbeat every 100 ms */
  env_start(&e);
  gtask_send_conf *sc = gtask_send_conf_new("big");
  int64_t until = test_now_ms() + 4000;
  int runs = 0;
  while (test_now_ms() < until) {
    char id[GTASK_ID_SIZE];
    ASSERT_OK(gtask_client_send(e.client, sc, (gtask_value[]){gtask_int64(4 << 20)}, 1, id));
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(10000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    gtask_result_free(r);
    runs++;
  }
  TEST_LOG("%d tasks with 4 MB results", runs);
  ASSERT_FALSE(log_has("taken over"));
  gtask_send_conf_free(sc);
  env_close(&e);
}
