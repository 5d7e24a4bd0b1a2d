/* test_inspect.c -- gtask_client_list, gtask_client_inspect and
 * gtask_client_workers (issue 20) against a real redis-server: each state's
 * list paged to the end with every task seen once, the scheduled list's due
 * times, the dead list of a hash small enough to come whole from one HSCAN,
 * a message that does not decode, finding a task in each place, bad
 * arguments, and a worker that dies (a forked process, SIGKILL) leaving the
 * list within its lease. */
#include "internal.h"

#include <gtask/extend.h>
#include "cluster_fixture.h"
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_client *client;
} env;

static void env_open(env *e) {
  memset(e, 0, sizeof(*e));
  gtask_set_log(NULL, NULL, GTASK_LOG_ERROR);
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  e->client = gtask_client_new(e->broker, e->backend);
  ASSERT_NOT_NULL(e->client);
}

static void env_close(env *e) {
  gtask_client_free(e->client);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
}

/* Pages through state with pages of limit; returns how many tasks were seen,
 * checking that each of ids[0..n) is seen exactly once. */
static size_t page_all(env *e, gtask_list_state state, size_t limit, char (*ids)[GTASK_ID_SIZE],
                       size_t n) {
  int seen[64] = {0};
  size_t total = 0, pages = 0;
  char *cursor = NULL;
  do {
    gtask_task_info *v = NULL;
    size_t nv = 0;
    char *next = NULL;
    ASSERT_OK(gtask_client_list(e->client, state, cursor, limit, &v, &nv, &next));
    ASSERT_LE(nv, limit);
    for (size_t k = 0; k < nv; k++) {
      ASSERT_EQ(v[k].state, state);
      for (size_t i = 0; i < n; i++)
        if (strcmp(v[k].id, ids[i]) == 0) seen[i]++;
    }
    total += nv;
    gtask_task_info_free(v, nv);
    free(cursor);
    cursor = next;
    ASSERT_LT(++pages, 100);
  } while (cursor);
  for (size_t i = 0; i < n; i++) ASSERT_EQ(seen[i], 1);
  return total;
}

TEST(list_each_state_paged) {
  env e;
  env_open(&e);
  gtask_send_conf *now = gtask_send_conf_new("add");
  gtask_send_conf *later = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_delay(later, 3600 * 1000));
  char pend[5][GTASK_ID_SIZE], sched[7][GTASK_ID_SIZE];
  for (int i = 0; i < 5; i++) ASSERT_OK(GTASK_SEND(e.client, now, pend[i], gtask_int64(i), gtask_str("<b>")));
  for (int i = 0; i < 7; i++) ASSERT_OK(GTASK_SEND(e.client, later, sched[i], gtask_int64(i)));
  int64_t t0 = gtask__now_ms();

  ASSERT_EQ(page_all(&e, GTASK_LIST_PENDING, 2, pend, 5), 5);
  ASSERT_EQ(page_all(&e, GTASK_LIST_PENDING, 1000, pend, 5), 5);
  ASSERT_EQ(page_all(&e, GTASK_LIST_SCHEDULED, 3, sched, 7), 7);
  ASSERT_EQ(page_all(&e, GTASK_LIST_ACTIVE, 10, NULL, 0), 0);
  ASSERT_EQ(page_all(&e, GTASK_LIST_DEAD, 10, NULL, 0), 0);

  /* What an entry says. */
  gtask_task_info *v = NULL;
  size_t nv = 0;
  char *next = NULL;
  ASSERT_OK(gtask_client_list(e.client, GTASK_LIST_SCHEDULED, NULL, 1, &v, &nv, &next));
  ASSERT_EQ(nv, 1);
  ASSERT_NOT_NULL(next);
  ASSERT_STR_EQ(v[0].name, "add");
  ASSERT_EQ(v[0].nargs, 1);
  ASSERT_GT(v[0].due_ms, t0 + 3500 * 1000);
  ASSERT_NULL(v[0].worker);
  gtask_task_info_free(v, nv);
  free(next);
  ASSERT_OK(gtask_client_list(e.client, GTASK_LIST_PENDING, NULL, 1, &v, &nv, &next));
  ASSERT_STR_EQ(v[0].id, pend[0]);
  ASSERT_EQ(v[0].args[1].type, GTASK_STRING);
  ASSERT_STR_EQ(v[0].args[1].v.s.ptr, "<b>");
  ASSERT_LE(v[0].created_ms, t0);
  ASSERT_EQ(v[0].due_ms, 0);
  gtask_task_info_free(v, nv);
  free(next);

  /* Found where it waits. */
  gtask_result *r = NULL;
  gtask_task_info *t = NULL;
  ASSERT_OK(gtask_client_inspect(e.client, sched[3], &r, &t));
  ASSERT_EQ(t->state, GTASK_LIST_SCHEDULED);
  ASSERT_EQ(r->status, GTASK_PENDING);
  gtask_result_free(r);
  gtask_task_info_free(t, 1);
  ASSERT_OK(gtask_client_inspect(e.client, pend[4], NULL, &t));
  ASSERT_EQ(t->state, GTASK_LIST_PENDING);
  ASSERT_EQ(t->args[0].v.i, 4);
  gtask_task_info_free(t, 1);
  ASSERT_EQ(gtask_client_inspect(e.client, "00000000-0000-4000-8000-000000000000", &r, &t),
            GTASK_ENOTFOUND);
  ASSERT_NULL(r);
  ASSERT_NULL(t);

  /* Bad arguments change nothing and say why. */
  ASSERT_EQ(gtask_client_list(e.client, GTASK_LIST_PENDING, NULL, 0, &v, &nv, &next), GTASK_EINVAL);
  ASSERT_EQ(gtask_client_list(e.client, GTASK_LIST_PENDING, NULL, 1001, &v, &nv, &next), GTASK_EINVAL);
  ASSERT_EQ(gtask_client_list(e.client, (gtask_list_state)9, NULL, 1, &v, &nv, &next), GTASK_EINVAL);
  ASSERT_EQ(gtask_client_list(e.client, GTASK_LIST_PENDING, "zz", 1, &v, &nv, &next), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "cursor");
  ASSERT_EQ(gtask_client_list(e.client, GTASK_LIST_SCHEDULED, "-1", 1, &v, &nv, &next), GTASK_EINVAL);
  ASSERT_EQ(gtask_client_list(e.client, GTASK_LIST_DEAD, "12", 1, &v, &nv, &next), GTASK_EINVAL);
  ASSERT_EQ(gtask_client_inspect(e.client, "nope", &r, &t), GTASK_EINVAL);
  gtask_list_state st;
  ASSERT_OK(gtask_list_state_parse("scheduled", &st));
  ASSERT_EQ(st, GTASK_LIST_SCHEDULED);
  ASSERT_OK(gtask_list_state_parse("failed", &st));
  ASSERT_EQ(st, GTASK_LIST_FAILED);
  ASSERT_EQ(gtask_list_state_parse("bogus", &st), GTASK_EINVAL);
  ASSERT_STR_EQ(gtask_list_state_name(GTASK_LIST_DEAD), "dead");
  ASSERT_STR_EQ(gtask_list_state_name((gtask_list_state)0), "?");
  gtask_send_conf_free(now);
  gtask_send_conf_free(later);
  env_close(&e);
}

TEST(dead_list_small_hash_and_malformed) {
  env e;
  env_open(&e);
  /* Five dead messages (one HSCAN returns a small hash whole), one of which
   * does not decode. */
  redisContext *c = gt_redis_connect(e.redis);
  ASSERT_NOT_NULL(c);
  char ids[5][GTASK_ID_SIZE];
  for (int i = 0; i < 5; i++) {
    gtask__uuid(ids[i]);
    const char *body = i == 2 ? "{not json" : "{\"v\":2,\"n\":\"add\",\"a\":[],\"c\":1,\"e\":\"lost <x>\"}";
    redisReply *rep = redisCommand(c, "HSET gtask:{default}:dead %s %s", ids[i], body);
    ASSERT_NOT_NULL(rep);
    freeReplyObject(rep);
  }
  redisFree(c);
  ASSERT_EQ(page_all(&e, GTASK_LIST_DEAD, 2, ids, 5), 5);
  ASSERT_EQ(page_all(&e, GTASK_LIST_DEAD, 1, ids, 5), 5);
  gtask_result *r = NULL;
  gtask_task_info *t = NULL;
  ASSERT_OK(gtask_client_inspect(e.client, ids[2], &r, &t));
  ASSERT_NULL(r); /* no state record: only the dead message */
  ASSERT_EQ(t->state, GTASK_LIST_DEAD);
  ASSERT_NULL(t->name);
  ASSERT_STR_CONTAINS(t->last_error, "malformed message");
  gtask_task_info_free(t, 1);
  ASSERT_OK(gtask_client_inspect(e.client, ids[0], NULL, &t));
  ASSERT_STR_EQ(t->name, "add");
  ASSERT_STR_EQ(t->last_error, "lost <x>");
  gtask_task_info_free(t, 1);
  env_close(&e);
}

static int nap(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  gtask_ctx_sleep(ctx, 60000);
  return 0;
}

/* The child: a worker with a 1 s lease, until killed. */
static void child_worker(const char *url) {
  gtask_redis_conf *conf;
  gtask_broker *b;
  gtask_backend *k;
  if (gtask_redis_conf_new(&conf, url, NULL, -1) || gtask_broker_redis_new(&b, conf) ||
      gtask_backend_redis_new(&k, conf))
    _exit(3);
  gtask_server *s = gtask_server_new(b, k);
  gtask_server_set_lease(s, 1000);
  gtask_server_set_queues(s, "default,low");
  gtask_server_set_name(s, "child-worker");
  gtask_server_reg(s, "nap", nap, NULL);
  gtask_server_run(s, 2);
  _exit(0);
}

TEST_TIMEOUT(workers_listed_until_they_die, 60) {
  env e;
  env_open(&e);
  gtask_worker_info *w = NULL;
  size_t n = 9;
  ASSERT_OK(gtask_client_workers(e.client, &w, &n));
  ASSERT_EQ(n, 0);
  ASSERT_NULL(w);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) child_worker(gt_redis_url(e.redis));
  gtask_send_conf *conf = gtask_send_conf_new("nap");
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, conf, NULL, 0, id));
  gtask_send_conf_free(conf);
  /* Listed, and (from a heartbeat on) with the task it runs. */
  WAIT_UNTIL((gtask_workers_free(w, n), w = NULL, n = 0,
              gtask_client_workers(e.client, &w, &n) == 0 && n == 1 && w[0].nbusy == 1),
             10000);
  ASSERT_STR_EQ(w[0].name, "child-worker");
  ASSERT_EQ(w[0].pid, pid);
  ASSERT_EQ(w[0].nqueues, 2);
  ASSERT_STR_EQ(w[0].queues[1], "low");
  ASSERT_EQ(w[0].concurrency, 2);
  ASSERT_STR_EQ(w[0].pool, "threads");
  ASSERT_STR_EQ(w[0].version, gtask_version());
  ASSERT_EQ(w[0].lease_ms, 1000);
  ASSERT_STR_EQ(w[0].busy[0].id, id);
  ASSERT_STR_EQ(w[0].busy[0].name, "nap");
  ASSERT_LE(w[0].started_ms, w[0].busy[0].since_ms);
  ASSERT_LE(w[0].busy[0].since_ms, gtask__now_ms());
  gtask_workers_free(w, n);
  /* Active, held by it. */
  gtask_task_info *t = NULL;
  ASSERT_OK(gtask_client_inspect(e.client, id, NULL, &t));
  ASSERT_EQ(t->state, GTASK_LIST_ACTIVE);
  ASSERT_STR_EQ(t->worker, "child-worker");
  gtask_task_info_free(t, 1);
  /* Killed: gone within a lease time (1 s) and a little. */
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(waitpid(pid, NULL, 0), pid);
  int64_t killed = test_now_ms();
  w = NULL;
  n = 0;
  WAIT_UNTIL((gtask_workers_free(w, n), w = NULL, n = 0,
              gtask_client_workers(e.client, &w, &n) == 0 && n == 0),
             5000);
  ASSERT_LT(test_now_ms() - killed, test_timeout_ms(2500));
  env_close(&e);
}

static int boom(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  return gtask_ctx_fail(ctx, "boom <%d>", 1);
}

typedef struct run_arg {
  gtask_server *s;
  int rc;
} run_arg;

static void *run_main(void *arg) {
  run_arg *a = arg;
  a->rc = gtask_server_run(a->s, 2);
  return NULL;
}

static void no_destroy(void *impl) { (void)impl; }

/* A broker table older than abi 4 (or one without the operations) cannot
 * list: the calls say so, naming the broker. */
TEST(old_broker_says_unsupported) {
  gtask_broker *keep = gtask_broker_memory_new();
  gtask_backend *k = gtask_backend_memory_new();
  void *impl;
  static gtask_broker_ops v3;
  v3 = *gtask_broker_ops_get(keep, &impl);
  v3.abi = 3; /* list etc. stay set: the handle must not look past an abi-3 table */
  v3.destroy = no_destroy;
  gtask_broker *b = NULL;
  ASSERT_OK(gtask_broker_new(&b, &v3, impl));
  gtask_client *c = gtask_client_new(b, k);
  gtask_worker_info *w;
  size_t n;
  ASSERT_EQ(gtask_client_workers(c, &w, &n), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(c), "memory");
  gtask_task_info *v;
  char *next;
  ASSERT_EQ(gtask_client_list(c, GTASK_LIST_PENDING, NULL, 1, &v, &n, &next), GTASK_EINVAL);
  ASSERT_EQ(gtask_client_inspect(c, "00000000-0000-4000-8000-000000000000", NULL, &v),
            GTASK_EINVAL);
  gtask_client_free(c);
  gtask_broker_free(b);
  gtask_broker_free(keep);
  gtask_backend_free(k);
}

/* The memory pair (one process): a running worker is listed with the task
 * it runs, which inspect finds active, held by it; a queued one pending. */
TEST_TIMEOUT(memory_pair_workers_and_inspect, 30) {
  gtask_set_log(NULL, NULL, GTASK_LOG_ERROR);
  gtask_broker *b = gtask_broker_memory_new();
  gtask_backend *k = gtask_backend_memory_new();
  gtask_client *c = gtask_client_new(b, k);
  gtask_server *s = gtask_server_new(b, k);
  gtask_server_set_name(s, "mem-worker");
  ASSERT_OK(gtask_server_reg(s, "nap", nap, NULL));
  gtask_send_conf *conf = gtask_send_conf_new("nap");
  char id[GTASK_ID_SIZE], queued[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(c, conf, NULL, 0, id));
  run_arg a = {.s = s};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, run_main, &a), 0);
  gtask_worker_info *w = NULL;
  size_t n = 0;
  WAIT_UNTIL((gtask_workers_free(w, n), w = NULL, n = 0,
              gtask_client_workers(c, &w, &n) == 0 && n == 1 && w[0].nbusy == 1),
             10000);
  ASSERT_STR_EQ(w[0].name, "mem-worker");
  ASSERT_EQ(w[0].pid, getpid());
  ASSERT_STR_EQ(w[0].busy[0].id, id);
  gtask_workers_free(w, n);
  gtask_task_info *info = NULL;
  ASSERT_OK(gtask_client_inspect(c, id, NULL, &info));
  ASSERT_EQ(info->state, GTASK_LIST_ACTIVE);
  ASSERT_STR_EQ(info->worker, "mem-worker");
  ASSERT_STR_EQ(info->name, "nap");
  gtask_task_info_free(info, 1);
  /* A delayed task waits, listed and found scheduled. */
  ASSERT_OK(gtask_send_conf_set_delay(conf, 3600 * 1000));
  ASSERT_OK(gtask_client_send(c, conf, NULL, 0, queued));
  gtask_task_info *v = NULL;
  char *next = NULL;
  ASSERT_OK(gtask_client_list(c, GTASK_LIST_SCHEDULED, NULL, 10, &v, &n, &next));
  ASSERT_EQ(n, 1);
  ASSERT_STR_EQ(v[0].id, queued);
  ASSERT_GT(v[0].due_ms, gtask__now_ms() + 3500 * 1000);
  ASSERT_NULL(next);
  gtask_task_info_free(v, n);
  ASSERT_OK(gtask_client_inspect(c, queued, NULL, &info));
  ASSERT_EQ(info->state, GTASK_LIST_SCHEDULED);
  gtask_task_info_free(info, 1);
  gtask_send_conf_free(conf);
  bool running = false;
  ASSERT_OK(gtask_client_cancel(c, id, &running)); /* nap returns; shutdown waits for it */
  ASSERT_TRUE(running);
  gtask_server_shutdown(s);
  pthread_join(t, NULL);
  ASSERT_OK(a.rc);
  gtask_server_free(s);
  /* Gone from the list once its server stopped. */
  ASSERT_OK(gtask_client_workers(c, &w, &n));
  ASSERT_EQ(n, 0);
  gtask_client_free(c);
  gtask_broker_free(b);
  gtask_backend_free(k);
}

/* Tasks that ended FAILURE are listed from the failed set (issue 18), with
 * until when they are kept, and found there. */
TEST_TIMEOUT(failed_list_and_find, 60) {
  env e;
  env_open(&e);
  gtask_server *s = gtask_server_new(e.broker, e.backend);
  ASSERT_OK(gtask_server_reg(s, "boom", boom, NULL));
  run_arg a = {.s = s};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, run_main, &a), 0);
  gtask_send_conf *conf = gtask_send_conf_new("boom");
  char ids[3][GTASK_ID_SIZE];
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(gtask_client_send(e.client, conf, NULL, 0, ids[i]));
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(e.client, ids[i], test_timeout_ms(10000), &r));
    ASSERT_EQ(r->status, GTASK_FAILURE);
    gtask_result_free(r);
  }
  gtask_send_conf_free(conf);
  ASSERT_EQ(page_all(&e, GTASK_LIST_FAILED, 2, ids, 3), 3);
  gtask_task_info *info = NULL;
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_inspect(e.client, ids[1], &r, &info));
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_EQ(r->error, "boom <1>");
  ASSERT_EQ(info->state, GTASK_LIST_FAILED);
  ASSERT_STR_EQ(info->name, "boom");
  ASSERT_GT(info->due_ms, gtask__now_ms()); /* kept until then */
  gtask_result_free(r);
  gtask_task_info_free(info, 1);
  gtask_server_shutdown(s);
  pthread_join(t, NULL);
  ASSERT_OK(a.rc);
  gtask_server_free(s);
  env_close(&e);
}

/* On a Redis Cluster (issue 17): the worker record's keys go to their own
 * slots' masters, each queue's lists to its own; a worker on queues of
 * several masters is listed, and each queue's tasks are listed and found. */
TEST_TIMEOUT(on_a_cluster, 90) {
  gtask_set_log(NULL, NULL, GTASK_LOG_ERROR);
  gt_cluster *cl = gt_cluster_start(3, 0);
  ASSERT_NOT_NULL(cl);
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, gt_cluster_url(cl), NULL, -1));
  gtask_broker *b;
  gtask_backend *k;
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  ASSERT_OK(gtask_backend_redis_new(&k, conf));
  gtask_redis_conf_free(conf);
  gtask_server *s = gtask_server_new(b, k);
  ASSERT_OK(gtask_server_set_queues(s, "alpha,beta,gamma,delta"));
  ASSERT_OK(gtask_server_set_name(s, "cluster-worker"));
  ASSERT_OK(gtask_server_reg(s, "boom", boom, NULL));
  run_arg a = {.s = s};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, run_main, &a), 0);
  gtask_client *c = gtask_client_new(b, k);
  gtask_worker_info *w = NULL;
  size_t n = 0;
  WAIT_UNTIL((gtask_workers_free(w, n), w = NULL, n = 0,
              gtask_client_workers(c, &w, &n) == 0 && n == 1),
             10000);
  ASSERT_STR_EQ(w[0].name, "cluster-worker");
  ASSERT_EQ(w[0].nqueues, 4);
  gtask_workers_free(w, n);
  /* A delayed task in each queue: listed as scheduled and found there. */
  static const char *const qs[] = {"alpha", "beta", "gamma", "delta"};
  for (int q = 0; q < 4; q++) {
    gtask_send_conf *sc = gtask_send_conf_new("boom");
    ASSERT_OK(gtask_send_conf_set_queue(sc, qs[q]));
    ASSERT_OK(gtask_send_conf_set_delay(sc, 3600 * 1000));
    char id[GTASK_ID_SIZE];
    ASSERT_OK(gtask_client_send(c, sc, NULL, 0, id));
    gtask_send_conf_free(sc);
    ASSERT_OK(gtask_client_set_queue(c, qs[q]));
    gtask_task_info *v = NULL;
    char *next = NULL;
    ASSERT_OK(gtask_client_list(c, GTASK_LIST_SCHEDULED, NULL, 10, &v, &n, &next));
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(v[0].id, id);
    gtask_task_info_free(v, n);
    ASSERT_NULL(next);
    gtask_task_info *info = NULL;
    ASSERT_OK(gtask_client_inspect(c, id, NULL, &info));
    ASSERT_EQ(info->state, GTASK_LIST_SCHEDULED);
    gtask_task_info_free(info, 1);
  }
  gtask_server_shutdown(s);
  pthread_join(t, NULL);
  ASSERT_OK(a.rc);
  /* Stopped cleanly: gone at once. */
  ASSERT_OK(gtask_client_workers(c, &w, &n));
  ASSERT_EQ(n, 0);
  gtask_client_free(c);
  gtask_server_free(s);
  gtask_broker_free(b);
  gtask_backend_free(k);
  gt_cluster_stop(cl);
}
