/* test_cluster.c -- gtask on a Redis Cluster (issue 17), end to end: a worker
 * on queues spread over the masters, every script on the cluster, a slot
 * moved under load, and a master killed under load.
 *
 * The contract suite runs on a cluster too (test_contract.c, cluster_*); this
 * file has what needs a worker, or a cluster of its own to reshard or break.
 * Each test starts its own cluster (3 masters, 3 replicas: ~1-2 s). */
#include "test.h"

#include "cluster_fixture.h"
#include "proc.h"
#include "worker_fixture.h"
#include "tls_fixture.h"
#include "internal.h"
#include "redis/internal.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- a worker */

#define MAX_TASKS 4000

static atomic_int runs[MAX_TASKS]; /* how many times task i ran */

/* rec(i): counts a run of task i. */
static int rec(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  if (n != 1 || args[0].v.i < 0 || args[0].v.i >= MAX_TASKS) return gtask_ctx_fail(ctx, "bad index");
  atomic_fetch_add(&runs[args[0].v.i], 1);
  return gtask_ctx_return(ctx, args, n);
}

static void quiet_log(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (level >= GTASK_LOG_WARN) fprintf(stderr, "[gtask] %s\n", line);
}

typedef struct env {
  gt_cluster *cl;
  char q[3][32]; /* with queues NULL: three queues on three masters, served */
  gtask_redis_conf *conf;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_server *server;
  gtask_client *client;
  gt_worker worker;
} env;

static void queues_on_three_nodes(gt_cluster *cl, char q[3][32]);

static atomic_bool hold_released; /* hold() returns once this is set */

/* hold(i): counts a run of task i, then waits for hold_released. */
static int hold(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  if (n != 1 || args[0].v.i < 0 || args[0].v.i >= MAX_TASKS) return gtask_ctx_fail(ctx, "bad index");
  atomic_fetch_add(&runs[args[0].v.i], 1);
  for (int k = 0; k < 60000 && !atomic_load(&hold_released); k++) test_sleep_ms(1);
  return gtask_ctx_return(ctx, args, n);
}

static void env_open_lease(env *e, const char *queues, int wait_replicas, int64_t lease_ms);
static atomic_int succeeded_events, unrecorded_logs;
static void count_succeeded(const gtask_event *ev, void *ud);

/* A cluster, a worker on `queues` (comma-separated; NULL: e->q, three queues
 * whose slots are on three masters) and a client; leases of 3 s. */
static void env_open(env *e, const char *queues, int wait_replicas) {
  env_open_lease(e, queues, wait_replicas, 3000);
}

static void env_open_lease(env *e, const char *queues, int wait_replicas, int64_t lease_ms) {
  memset(e, 0, sizeof(*e));
  memset(runs, 0, sizeof(runs));
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  /* With wait-replicas, two replicas each: after a failover the new master
   * still has one to confirm writes. */
  e->cl = gt_cluster_start(3, wait_replicas ? 2 : 1);
  ASSERT_NOT_NULL(e->cl);
  char list[128];
  if (!queues) {
    queues_on_three_nodes(e->cl, e->q);
    snprintf(list, sizeof(list), "%s,%s,%s", e->q[0], e->q[1], e->q[2]);
    queues = list;
  }
  ASSERT_OK(gtask_redis_conf_new(&e->conf, gt_cluster_url(e->cl), NULL, -1));
  if (wait_replicas) ASSERT_OK(gtask_redis_conf_set_wait_replicas(e->conf, wait_replicas, 1000));
  ASSERT_OK(gtask_broker_redis_new(&e->broker, e->conf));
  ASSERT_OK(gtask_backend_redis_new(&e->backend, e->conf));
  e->server = gtask_server_new(e->broker, e->backend);
  ASSERT_NOT_NULL(e->server);
  ASSERT_OK(gtask_server_reg(e->server, "rec", rec, NULL));
  ASSERT_OK(gtask_server_reg(e->server, "hold", hold, NULL));
  ASSERT_OK(gtask_server_set_queues(e->server, queues));
  ASSERT_OK(gtask_server_set_lease(e->server, lease_ms));
  atomic_store(&succeeded_events, 0);
  atomic_store(&unrecorded_logs, 0);
  ASSERT_OK(gtask_server_on(e->server, GTASK_EV_SUCCEEDED, count_succeeded, NULL));
  e->client = gtask_client_from_server(e->server);
  ASSERT_NOT_NULL(e->client);
  gt_worker_start(&e->worker, e->server, 4);
}

static void env_close(env *e) {
  ASSERT_OK(gt_worker_stop(&e->worker));
  gtask_client_free(e->client);
  gtask_server_free(e->server);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gtask_redis_conf_free(e->conf);
  gt_cluster_stop(e->cl);
}

/* Sends task(i) to queue q: 0, or the error code (ECONN: not sent, so it is
 * sent again by the caller; EINDOUBT: maybe sent). */
static int send_task(env *e, const char *task, const char *q, int64_t i, char id[GTASK_ID_SIZE]) {
  gtask_send_conf *sc = gtask_send_conf_new(task);
  ASSERT_NOT_NULL(sc);
  ASSERT_OK(gtask_send_conf_set_queue(sc, q));
  gtask_value v = gtask_int64(i);
  int rc = gtask_client_send(e->client, sc, &v, 1, id);
  gtask_send_conf_free(sc);
  return rc;
}

/* Sends rec(i) to queue q (see send_task). */
static int send_rec(env *e, const char *q, int64_t i) {
  gtask_send_conf *sc = gtask_send_conf_new("rec");
  ASSERT_NOT_NULL(sc);
  ASSERT_OK(gtask_send_conf_set_queue(sc, q));
  gtask_value v = gtask_int64(i);
  char id[GTASK_ID_SIZE];
  int rc = gtask_client_send(e->client, sc, &v, 1, id);
  gtask_send_conf_free(sc);
  return rc;
}

/* The slot of queue q's keys, and the node that serves it. */
static int queue_slot(const char *q) {
  char key[200];
  snprintf(key, sizeof(key), "gtask:{%s}:stream", q);
  return (int)gtask__key_slot(key, strlen(key));
}

/* Three queue names whose slots are on three different masters now. */
static void queues_on_three_nodes(gt_cluster *cl, char q[3][32]) {
  gt_redis *seen[3] = {NULL, NULL, NULL};
  int found = 0;
  for (int k = 0; k < 1000 && found < 3; k++) {
    char name[32];
    snprintf(name, sizeof(name), "q%d", k);
    gt_redis *m = gt_cluster_master_of(cl, queue_slot(name));
    ASSERT_NOT_NULL(m);
    bool dup = false;
    for (int j = 0; j < found; j++) dup |= seen[j] == m;
    if (dup) continue;
    seen[found] = m;
    snprintf(q[found++], 32, "%s", name);
  }
  ASSERT_EQ(found, 3);
}

static int count_runs(int n, int want) {
  int c = 0;
  for (int i = 0; i < n; i++) c += atomic_load(&runs[i]) == want;
  return c;
}

/* ---------------------------------------------------------------- tests */

/* A worker on three queues whose slots are on three masters leases from each
 * (one connection per node) and runs everything, in any order of arrival. */
TEST_TIMEOUT(worker_on_queues_of_three_nodes_runs_them_all, 120) {
  env e;
  env_open(&e, NULL, 0);
  char(*q)[32] = e.q;
  /* Idle first, so that the worker is blocked on all three nodes. */
  test_sleep_ms(300);
  const int n = 300;
  for (int i = 0; i < n; i++) ASSERT_OK(send_rec(&e, q[i % 3], i));
  WAIT_UNTIL_MSG(count_runs(n, 1) == n, 20000, "%d of %d ran once", count_runs(n, 1), n);
  /* One at a time, each on a node the worker waits on with the others. */
  int64_t t0 = test_now_ms();
  for (int i = n; i < n + 30; i++) {
    ASSERT_OK(send_rec(&e, q[(i * 7) % 3], i));
    while (atomic_load(&runs[i]) != 1) {
      ASSERT_LT(test_now_ms() - t0, test_timeout_ms(30000));
      test_sleep_ms(1);
    }
  }
  TEST_LOG("30 tasks one at a time over three nodes: %.1f ms each",
           (double)(test_now_ms() - t0) / 30);
  ASSERT_EQ(count_runs(n + 30, 1), n + 30);
  env_close(&e);
}

/* The broker on a cluster, the backend on a server of its own: not
 * colocated, so every finish is the two-step one (finish.lua on the queue's
 * shard, store.lua on the backend's server).  Results come back. */
TEST_TIMEOUT(broker_on_a_cluster_backend_on_one_server, 120) {
  memset(runs, 0, sizeof(runs));
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  gt_cluster *cl = gt_cluster_start(3, 0);
  ASSERT_NOT_NULL(cl);
  gt_redis *one = gt_redis_start(NULL);
  ASSERT_NOT_NULL(one);
  gtask_redis_conf *bc, *kc;
  ASSERT_OK(gtask_redis_conf_new(&bc, gt_cluster_url(cl), NULL, -1));
  ASSERT_OK(gtask_redis_conf_new(&kc, gt_redis_url(one), NULL, -1));
  env e;
  memset(&e, 0, sizeof(e));
  ASSERT_OK(gtask_broker_redis_new(&e.broker, bc));
  ASSERT_OK(gtask_backend_redis_new(&e.backend, kc));
  e.server = gtask_server_new(e.broker, e.backend);
  ASSERT_NOT_NULL(e.server);
  ASSERT_OK(gtask_server_reg(e.server, "rec", rec, NULL));
  ASSERT_OK(gtask_server_set_queues(e.server, "split"));
  e.client = gtask_client_from_server(e.server);
  ASSERT_OK(gtask_client_set_queue(e.client, "split"));
  gt_worker_start(&e.worker, e.server, 4);
  char ids[20][GTASK_ID_SIZE];
  gtask_send_conf *sc = gtask_send_conf_new("rec");
  for (int i = 0; i < 20; i++) {
    gtask_value v = gtask_int64(i);
    ASSERT_OK(gtask_client_send(e.client, sc, &v, 1, ids[i]));
  }
  gtask_send_conf_free(sc);
  for (int i = 0; i < 20; i++) {
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(e.client, ids[i], test_timeout_ms(10000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->values[0].v.i, i);
    gtask_result_free(r);
  }
  /* The results are on the backend's server, not on the cluster. */
  redisContext *rc = gt_redis_connect(one);
  ASSERT_NOT_NULL(rc);
  redisReply *rep = redisCommand(rc, "EXISTS gtask:{split}:n:%s", ids[0]);
  ASSERT_NOT_NULL(rep);
  ASSERT_EQ(rep->integer, 1);
  freeReplyObject(rep);
  redisFree(rc);
  ASSERT_OK(gt_worker_stop(&e.worker));
  gtask_client_free(e.client);
  gtask_server_free(e.server);
  gtask_broker_free(e.broker);
  gtask_backend_free(e.backend);
  gtask_redis_conf_free(bc);
  gtask_redis_conf_free(kc);
  gt_redis_stop(one);
  gt_cluster_stop(cl);
}

/* rediss-cluster://: a cluster that speaks mutual TLS only (tls-cluster,
 * tls-replication).  The slot map names each node's TLS port; a worker on
 * queues of three masters leases over TLS from each. */
TEST_TIMEOUT(tls_cluster_round_trip, 120) {
  const char *why = gt_certs_missing_tool();
  if (why) SKIP("%s", why);
  const gt_certs *certs = gt_certs_make();
  ASSERT_NOT_NULL(certs);
  memset(runs, 0, sizeof(runs));
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  env e;
  memset(&e, 0, sizeof(e));
  e.cl = gt_cluster_start_tls(3, 0, certs);
  ASSERT_NOT_NULL(e.cl);
  ASSERT_STR_CONTAINS(gt_cluster_url(e.cl), "rediss-cluster://");
  queues_on_three_nodes(e.cl, e.q);
  char list[128];
  snprintf(list, sizeof(list), "%s,%s,%s", e.q[0], e.q[1], e.q[2]);
  ASSERT_OK(gtask_redis_conf_new(&e.conf, gt_cluster_url(e.cl), NULL, -1));
  ASSERT_OK(gtask_broker_redis_new(&e.broker, e.conf));
  ASSERT_OK(gtask_backend_redis_new(&e.backend, e.conf));
  e.server = gtask_server_new(e.broker, e.backend);
  ASSERT_NOT_NULL(e.server);
  ASSERT_OK(gtask_server_reg(e.server, "rec", rec, NULL));
  ASSERT_OK(gtask_server_set_queues(e.server, list));
  e.client = gtask_client_from_server(e.server);
  gt_worker_start(&e.worker, e.server, 4);
  for (int i = 0; i < 60; i++) ASSERT_OK(send_rec(&e, e.q[i % 3], i));
  WAIT_UNTIL_MSG(count_runs(60, 1) == 60, 20000, "%d of 60 ran", count_runs(60, 1));
  char **names = NULL;
  size_t n = 0;
  ASSERT_OK(gtask_client_queues(e.client, &names, &n));
  ASSERT_EQ(n, 3);
  gtask_queues_free(names, n);
  env_close(&e);
}

/* Two queues in two hash slots of one master: one XREADGROUP may not name
 * both (Redis answers CROSSSLOT even when the slots share a node), so an
 * idle worker blocks on a lease connection per slot, and a task sent to
 * either runs at once, with no error on the way. */
static atomic_int crossslot_logs;
static void count_crossslot(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (strstr(line, "CROSSSLOT")) atomic_fetch_add(&crossslot_logs, 1);
  if (level >= GTASK_LOG_WARN) fprintf(stderr, "[gtask] %s\n", line);
}

TEST_TIMEOUT(queues_in_two_slots_of_one_node_are_both_served, 60) {
  /* A fresh cluster of 3 masters has slots 0-5460 on its first: two queues
   * whose slots differ and both fall there. */
  char a[32] = "", b[32] = "";
  for (int k = 0; k < 1000 && !b[0]; k++) {
    char q[32];
    snprintf(q, sizeof(q), "two-slots-%d", k);
    int s = queue_slot(q);
    if (s > 5460) continue;
    if (!a[0])
      memcpy(a, q, sizeof(q));
    else if (s != queue_slot(a))
      memcpy(b, q, sizeof(q));
  }
  ASSERT_TRUE(b[0] != '\0');
  char list[80];
  snprintf(list, sizeof(list), "%s,%s", a, b);
  env e;
  env_open(&e, list, 0);
  ASSERT_PTR_EQ(gt_cluster_master_of(e.cl, queue_slot(a)), gt_cluster_master_of(e.cl, queue_slot(b)));
  atomic_store(&crossslot_logs, 0);
  gtask_set_log(count_crossslot, NULL, GTASK_LOG_WARN);
  for (int i = 0; i < 20; i++) {
    test_sleep_ms(50); /* idle between tasks: the worker blocks on both */
    ASSERT_OK(send_rec(&e, i % 2 ? b : a, i));
    WAIT_UNTIL(atomic_load(&runs[i]) == 1, 5000);
  }
  ASSERT_EQ(atomic_load(&crossslot_logs), 0);
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  env_close(&e);
}

/* Every Lua script runs on the cluster (each one's keys in one slot, or the
 * cluster would refuse it with CROSSSLOT, and the library before sending):
 * a worker's round trips, a retry, the dead set, stats and announcements
 * between them use every script. */
TEST_TIMEOUT(every_script_runs_on_the_cluster, 120) {
  unsigned long before[GTASK__LUA_COUNT];
  for (int s = 0; s < GTASK__LUA_COUNT; s++) before[s] = atomic_load(&gtask__eval_count[s]);
  env e;
  env_open(&e, "scripts", 0);
  for (int i = 0; i < 20; i++) ASSERT_OK(send_rec(&e, "scripts", i));
  ASSERT_OK(send_rec(&e, "scripts", -1)); /* fails: bad index */
  WAIT_UNTIL(count_runs(20, 1) == 20, 20000);
  /* A task due later (sched, promote), a dead entry requeued and purged. */
  gtask_send_conf *sc = gtask_send_conf_new("rec");
  ASSERT_OK(gtask_send_conf_set_queue(sc, "scripts"));
  ASSERT_OK(gtask_send_conf_set_delay(sc, 200));
  gtask_value v = gtask_int64(20);
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, sc, &v, 1, id));
  gtask_send_conf_free(sc);
  WAIT_UNTIL(atomic_load(&runs[20]) == 1, 10000);
  /* claim.lua: a unique send, and its duplicate refused. */
  sc = gtask_send_conf_new("rec");
  ASSERT_OK(gtask_send_conf_set_queue(sc, "scripts"));
  ASSERT_OK(gtask_send_conf_set_unique(sc, 60000));
  v = gtask_int64(21);
  ASSERT_OK(gtask_client_send(e.client, sc, &v, 1, id));
  char dup[GTASK_ID_SIZE];
  ASSERT_ERR(gtask_client_send(e.client, sc, &v, 1, dup), GTASK_EEXIST);
  ASSERT_STR_EQ(dup, id);
  gtask_send_conf_free(sc);
  WAIT_UNTIL(atomic_load(&runs[21]) == 1, 10000);
  /* failed_requeue.lua: the task that failed (bad index) run again. */
  ASSERT_OK(gtask_client_set_queue(e.client, "scripts"));
  gtask_dead_entry *failed = NULL;
  size_t nf = 0;
  for (int k = 0; k < 200 && nf == 0; k++) {
    ASSERT_OK(gtask_client_failed_list(e.client, &failed, &nf));
    if (nf == 0) test_sleep_ms(50);
  }
  ASSERT_EQ(nf, 1);
  ASSERT_OK(gtask_client_rerun(e.client, failed[0].id));
  gtask_dead_list_free(failed, nf);
  /* cancel.lua: a delayed task cancelled (issue 18). */
  gtask_send_conf *cc = gtask_send_conf_new("never_run");
  ASSERT_NOT_NULL(cc);
  ASSERT_OK(gtask_send_conf_set_delay(cc, 60000));
  char cid[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, cc, NULL, 0, cid));
  bool held = true;
  ASSERT_OK(gtask_client_cancel(e.client, cid, &held));
  ASSERT_FALSE(held);
  gtask_status cst = 0;
  ASSERT_OK(gtask_client_status(e.client, cid, &cst));
  ASSERT_EQ(cst, GTASK_CANCELLED);
  gtask_send_conf_free(cc);
  /* progress.lua: a late report of that task, dropped (it is final). */
  gtask_msg *pm = gtask_msg_new(cid, "scripts", "", 0);
  ASSERT_NOT_NULL(pm);
  const char *pv[] = {"1 2 late"};
  ASSERT_OK(e.backend->ops->progress(e.backend->impl, &pm, pv, 1));
  gtask_msg_free(pm);
  gtask_progress gp;
  ASSERT_ERR(gtask_client_progress(e.client, cid, &gp), GTASK_ENOTFOUND);
  /* The dead set: a malformed message goes there (pushed raw). */
  gtask_msg *m = gtask_msg_new("00000000-0000-4000-8000-000000000001", "scripts", "not json", 8);
  ASSERT_NOT_NULL(m);
  ASSERT_OK(e.broker->ops->push(e.broker->impl, &m, 1, NULL));
  gtask_msg_free(m);
  gtask_msg **dead = NULL;
  size_t nd = 0;
  for (int k = 0; k < 200 && nd == 0; k++) {
    ASSERT_OK(e.broker->ops->dead_list(e.broker->impl, "scripts", NULL, &dead, &nd));
    if (nd == 0) test_sleep_ms(50);
  }
  ASSERT_GT(nd, 0);
  gtask_revive rv = {.msg = dead[0], .next = dead[0]->body, .next_len = dead[0]->len};
  ASSERT_OK(e.broker->ops->dead_requeue(e.broker->impl, &rv, 1, NULL));
  for (size_t k = 0; k < nd; k++) gtask_msg_free(dead[k]);
  gtask__free(dead);
  size_t removed = 0;
  ASSERT_OK(e.broker->ops->dead_purge(e.broker->impl, "scripts", &removed));
  /* A lease taken and left to expire: reclaim, extend. */
  gtask_msg *out[1];
  size_t got = 0;
  ASSERT_OK(send_rec(&e, "other", 1));
  ASSERT_OK(e.broker->ops->lease(e.broker->impl, "test-consumer", (const char *[]){"other"}, 1, 1, 1000, out, &got));
  ASSERT_EQ(got, 1);
  bool lost = false;
  ASSERT_OK(e.broker->ops->extend(e.broker->impl, "test-consumer", out, 1, &lost));
  ASSERT_FALSE(lost);
  test_sleep_ms(150);
  size_t nr = 0;
  gtask_msg *rec_out[4];
  ASSERT_OK(e.broker->ops->reclaim(e.broker->impl, "test-consumer-2", "other", 100, 4, rec_out, &nr));
  ASSERT_EQ(nr, 1);
  gtask_msg_free(rec_out[0]);
  ASSERT_OK(e.backend->ops->reset(e.backend->impl, out, 1));
  uint32_t attempt = 1;
  ASSERT_OK(e.backend->ops->started(e.backend->impl, out, &attempt, 1));
  /* store.lua: the backend's own finish (a backend apart from the broker). */
  gtask_fin f = {.msg = out[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                 .result = "{\"v\":1,\"s\":\"SUCCESS\",\"at\":1}", .result_len = 28};
  ASSERT_OK(e.backend->ops->store(e.backend->impl, &f, 1));
  gtask_msg_free(out[0]);
  /* Periodic tasks (issue 19): the registry (P:cron, its own slot), a tick's
   * cron_fire.lua in its queue's slot, and the list reading both. */
  sc = gtask_send_conf_new("rec");
  v = gtask_int64(22);
  ASSERT_OK(gtask_send_conf_set_queue(sc, "crontick"));
  ASSERT_OK(gtask_client_cron_add(e.client, "cluster-tick", "@every 1s", NULL, GTASK_MISSED_SKIP,
                                  sc, &v, 1));
  gtask_send_conf_free(sc);
  int64_t last = 0;
  gtask__cron_task tick = {.id = "00000000-0000-5000-8000-000000000001", .body = "{}", .len = 2};
  ASSERT_EQ(gtask__cron_fire(e.broker, false, "crontick", "cluster-tick", 1000, &tick, &last), 1);
  gtask_cron_entry *ce = NULL;
  size_t nce = 0;
  ASSERT_OK(gtask_client_cron_list(e.client, NULL, &ce, &nce));
  ASSERT_EQ(nce, 1);
  ASSERT_EQ(ce[0].last_ms, 1000);
  gtask_cron_list_free(ce, nce);
  /* Limits: read and swept at housekeeping (limit_slots.lua), a lease of two
   * with one slot (limit_admit.lua: one admitted, one waits), removed
   * (limit_remove.lua: the waiting one queued again). */
  ASSERT_OK(gtask_client_limit_concurrency(e.client, "limited", NULL, 1));
  int64_t due = 0;
  ASSERT_OK(e.broker->ops->promote(e.broker->impl, "limited", 10, &due));
  ASSERT_OK(send_rec(&e, "limited", 1));
  ASSERT_OK(send_rec(&e, "limited", 2));
  gtask_msg *lim[2];
  size_t nlim = 0;
  ASSERT_OK(e.broker->ops->lease(e.broker->impl, "test-consumer", (const char *[]){"limited"}, 1,
                                 2, 1000, lim, &nlim));
  ASSERT_EQ(nlim, 1);
  gtask_msg_free(lim[0]);
  ASSERT_OK(gtask_client_limit_remove(e.client, "limited", NULL));
  /* Priorities: a send with a level marks its queue (push.lua), whose lease
   * is then one lease.lua in the queue's slot. */
  sc = gtask_send_conf_new("rec");
  v = gtask_int64(23);
  ASSERT_OK(gtask_send_conf_set_queue(sc, "leveled"));
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_URGENT));
  char lid[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, sc, &v, 1, lid));
  gtask_send_conf_free(sc);
  gtask_msg *lv[1];
  size_t nlv = 0;
  ASSERT_OK(e.broker->ops->lease(e.broker->impl, "test-consumer", (const char *[]){"leveled"}, 1,
                                 1, 1000, lv, &nlv));
  ASSERT_EQ(nlv, 1);
  ASSERT_STR_EQ(lv[0]->id, lid);
  ASSERT_EQ(lv[0]->priority, 2);
  gtask_msg_free(lv[0]);
  env_close(&e);
  for (int s = 0; s < GTASK__LUA_COUNT; s++)
    if (atomic_load(&gtask__eval_count[s]) == before[s])
      TEST_FAIL("%s never ran on the cluster", gtask__lua_name[s]);
}

/* Resharding under load: while tasks flow on three queues, the slot of one
 * moves to another master key by key (SETSLOT IMPORTING/MIGRATING, MIGRATE,
 * then SETSLOT NODE), so that for a while its keys are split between the two
 * nodes (TRYAGAIN, ASK).  Every task runs exactly once. */
TEST_TIMEOUT(reshard_a_busy_queue_loses_nothing_and_runs_nothing_twice, 180) {
  env e;
  env_open(&e, NULL, 0);
  char(*q)[32] = e.q;
  int slot = queue_slot(q[0]);
  gt_redis *from = gt_cluster_master_of(e.cl, slot), *to = gt_cluster_master_of(e.cl, queue_slot(q[1]));
  ASSERT_NOT_NULL(from);
  ASSERT_NOT_NULL(to);
  /* Sends from a thread while the slot moves. */
  const int n = 1200;
  int i = 0;
  for (; i < 300; i++) ASSERT_OK(send_rec(&e, q[i % 3], i));
  unsigned long f0[4];
  for (int k = 0; k < 4; k++) f0[k] = atomic_load(&gtask__cluster_followed[k]);
  pid_t pid = fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) { /* the mover: its own process, so the sends below overlap it */
    int rc = gt_cluster_move_slot(e.cl, slot, to, 1, 40);
    _exit(rc == 0 ? 0 : 1);
  }
  int unsent = 0;
  for (; i < n; i++) {
    int rc = send_rec(&e, q[i % 3], i);
    for (int k = 0; rc == GTASK_ECONN && k < 100; k++) { /* not sent: again */
      unsent++;
      test_sleep_ms(20);
      rc = send_rec(&e, q[i % 3], i);
    }
    if (rc) TEST_FAIL("send %d: %s", i, gtask_client_errmsg(e.client));
    if (i % 50 == 0) test_sleep_ms(5);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ASSERT_PTR_EQ(gt_cluster_master_of(e.cl, slot), to);
  WAIT_UNTIL_MSG(count_runs(n, 1) + count_runs(n, 2) == n, 30000, "%d of %d ran",
                 n - count_runs(n, 0), n);
  test_sleep_ms(500);
  ASSERT_EQ(count_runs(n, 1), n); /* none twice */
  unsigned long f[4];
  for (int k = 0; k < 4; k++) f[k] = atomic_load(&gtask__cluster_followed[k]) - f0[k];
  TEST_LOG("resharded slot %d under load: %d tasks, none lost, none twice (%d unsent retried); "
           "followed %lu MOVED, %lu ASK, %lu TRYAGAIN",
           slot, n, unsent, f[0], f[1], f[2]);
  ASSERT_GT(f[0] + f[1] + f[2], 0); /* the clients did meet the move */
  /* The worker follows: a task on the moved queue runs promptly. */
  ASSERT_OK(send_rec(&e, q[0], n));
  WAIT_UNTIL(atomic_load(&runs[n]) == 1, 5000);
  env_close(&e);
}

/* A finish retried while its slot is split keeps its lease.  A task runs while
 * its queue's slot is in migration with the stream (and the fence) moved and
 * the other keys not: every finish.lua of the queue meets TRYAGAIN (pool.c
 * retries it for ~4 s, the finisher then again with backoff) for as long as
 * the split lasts.  Meanwhile the worker keeps the lease: extend.lua names the
 * stream only, which the migration redirects (ASK) but never refuses.  Another
 * worker's reclaim (here the test's own, "thief") must find nothing to take,
 * or it would run the task a second time (one CI run of the reshard test
 * above: the finisher, heartbeating in turn with those retries, let a 2 s
 * lease expire).  Once the move ends, the result is written, once. */
TEST_TIMEOUT(a_finish_retried_through_a_split_slot_keeps_its_lease, 120) {
  const int64_t lease = 1500;
  env e;
  env_open_lease(&e, "split", 0, lease);
  int slot = queue_slot("split");
  gt_redis *src = gt_cluster_master_of(e.cl, slot), *dst = NULL;
  for (int i = 0; i < gt_cluster_size(e.cl) && !dst; i++)
    if (gt_cluster_node(e.cl, i) != src) dst = gt_cluster_node(e.cl, i);
  ASSERT_NOT_NULL(src);
  ASSERT_NOT_NULL(dst);
  /* A task done first: the queue's keys exist (stats, ...), as on a busy queue. */
  ASSERT_OK(send_rec(&e, "split", 0));
  WAIT_UNTIL(atomic_load(&runs[0]) == 1, 10000);
  /* The fence, so that a reclaim's two keys (stream, fence) move together. */
  redisContext *rc = gt_redis_connect(src);
  ASSERT_NOT_NULL(rc);
  redisReply *rep = redisCommand(rc, "SET gtask:{split}:fence 0 NX");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(rc);
  atomic_store(&hold_released, false);
  char id[GTASK_ID_SIZE];
  ASSERT_OK(send_task(&e, "hold", "split", 1, id));
  WAIT_UNTIL(atomic_load(&runs[1]) == 1, 10000);
  const char *moved[] = {"gtask:{split}:stream", "gtask:{split}:fence"};
  ASSERT_OK(gt_cluster_migrate_keys(e.cl, slot, dst, moved, 2));
  unsigned long tries = atomic_load(&gtask__cluster_followed[2]);
  atomic_store(&hold_released, true); /* its finish now meets TRYAGAIN */
  /* Held split for longer than the executor's own try (~4 s) and the
   * start of the finisher's, in which the lease used to expire (the thief
   * took the task 1.6 to 5 s in). */
  const int64_t split_ms = 6500;
  int64_t until = test_now_ms() + split_ms;
  int polls = 0, stolen = 0;
  while (test_now_ms() < until) {
    gtask_msg *out[4];
    size_t got = 0;
    ASSERT_OK(e.broker->ops->reclaim(e.broker->impl, "thief", "split", lease, 4, out, &got));
    for (size_t k = 0; k < got; k++) gtask_msg_free(out[k]);
    stolen += (int)got;
    polls++;
    if (stolen) break;
    test_sleep_ms(100);
  }
  unsigned long met = atomic_load(&gtask__cluster_followed[2]) - tries;
  TEST_LOG("slot split for %lld ms: %lu TRYAGAIN met; the thief's %d reclaims took %d",
           (long long)split_ms, met, polls, stolen);
  ASSERT_GT(met, 0);    /* the finish was retried */
  ASSERT_EQ(stolen, 0); /* and its lease kept meanwhile */
  ASSERT_OK(gt_cluster_migrate_slot(e.cl, slot, dst, 100, 0, true));
  ASSERT_OK(gtask_client_set_queue(e.client, "split"));
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(20000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
  ASSERT_EQ(atomic_load(&runs[1]), 1);
  env_close(&e);
}

/* SUCCEEDED hooks (env_open_lease), "outcome not recorded" warnings, and
 * failed writes of results. */
static atomic_int succeeded_events, unrecorded_logs, write_failed_logs;
static atomic_int migration_infos, periodic_warnings; /* (see count_unrecorded) */

static void count_succeeded(const gtask_event *ev, void *ud) {
  (void)ev, (void)ud;
  atomic_fetch_add(&succeeded_events, 1);
}

static void count_unrecorded(gtask_log_level level, const char *line, void *ud) {
  if (level < GTASK_LOG_WARN && !strstr(line, "in migration")) return;
  if (strstr(line, "outcome not recorded")) atomic_fetch_add(&unrecorded_logs, 1);
  /* A periodic call's TRYAGAIN: one info line per call and queue. */
  if (strstr(line, "in migration")) atomic_fetch_add(&migration_infos, 1);
  if (level >= GTASK_LOG_WARN && (strstr(line, "on queue split") || strstr(line, "STARTED")))
    atomic_fetch_add(&periodic_warnings, 1);
  /* The executor's inline write, or the finisher's first batch, failed. */
  if (strstr(line, "the finisher retries") || strstr(line, "writing results: "))
    atomic_fetch_add(&write_failed_logs, 1);
  quiet_log(level, line, ud);
}

/* One queue's trouble does not hold back another's results.  A worker serves
 * "split" (its slot held split: every finish.lua of it meets TRYAGAIN) and
 * "fine".  The results of "fine" are stored while "split" still cannot be
 * written (before: the broker stopped at the failing run and the finisher
 * retried the whole batch, so they waited for the move to end, and the runs
 * written before the failing one were then found "already final": not
 * counted, logged "outcome not recorded").  Every success counts once. */
TEST_TIMEOUT(a_split_queue_does_not_hold_back_another_queues_results, 120) {
  const int nfine = 20;
  env e;
  env_open_lease(&e, "split,fine", 0, 3000);
  gtask_set_log(count_unrecorded, NULL, GTASK_LOG_INFO);
  int slot = queue_slot("split");
  gt_redis *src = gt_cluster_master_of(e.cl, slot), *dst = NULL;
  for (int i = 0; i < gt_cluster_size(e.cl) && !dst; i++)
    if (gt_cluster_node(e.cl, i) != src) dst = gt_cluster_node(e.cl, i);
  ASSERT_NOT_NULL(dst);
  ASSERT_OK(send_rec(&e, "split", 0));
  WAIT_UNTIL(atomic_load(&runs[0]) == 1, 10000);
  redisContext *rc = gt_redis_connect(src);
  ASSERT_NOT_NULL(rc);
  redisReply *rep = redisCommand(rc, "SET gtask:{split}:fence 0 NX");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(rc);
  atomic_store(&hold_released, false);
  char id[GTASK_ID_SIZE];
  ASSERT_OK(send_task(&e, "hold", "split", 1, id));
  WAIT_UNTIL(atomic_load(&runs[1]) == 1, 10000);
  const char *moved[] = {"gtask:{split}:stream", "gtask:{split}:fence"};
  ASSERT_OK(gt_cluster_migrate_keys(e.cl, slot, dst, moved, 2));
  atomic_store(&hold_released, true); /* its finish now meets TRYAGAIN */
  /* Its first write tries for ~4 s (the executor's, or the finisher's),
   * then the finisher retries it in its batches: the "fine" results below
   * share them. */
  WAIT_UNTIL(atomic_load(&write_failed_logs) >= 1, 20000);
  int64_t t0 = test_now_ms();
  char ids[20][GTASK_ID_SIZE];
  for (int i = 0; i < nfine; i++) {
    ASSERT_OK(send_task(&e, "rec", "fine", 100 + i, ids[i]));
    test_sleep_ms(10); /* one by one, in several batches */
  }
  ASSERT_OK(gtask_client_set_queue(e.client, "fine"));
  /* Before, they waited for the move to end (done below); now each batch
   * writes them first, and a batch takes at most the failing run's ~4 s. */
  for (int i = 0; i < nfine; i++) {
    gtask_result *r = NULL;
    int64_t left = t0 + test_timeout_ms(7000) - test_now_ms();
    ASSERT_OK(gtask_client_wait(e.client, ids[i], left > 1 ? left : 1, &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    gtask_result_free(r);
  }
  int64_t fine_ms = test_now_ms() - t0;
  /* Still split: the hold's result is not written yet. */
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_set_queue(e.client, "split"));
  int wrc = gtask_client_wait(e.client, id, 1, &r);
  gtask_result_free(r);
  r = NULL;
  TEST_LOG("\"fine\" stored its %d results in %lld ms while \"split\" was split (hold %s)",
           nfine, (long long)fine_ms, wrc == 0 ? "written" : "unwritten");
  ASSERT_NE(wrc, 0);
  ASSERT_OK(gt_cluster_migrate_slot(e.cl, slot, dst, 100, 0, true));
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(20000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
  /* Counted once each (the first rec, the hold, the fine ones), none lost. */
  WAIT_UNTIL(atomic_load(&succeeded_events) == nfine + 2, 10000);
  test_sleep_ms(200);
  ASSERT_EQ(atomic_load(&succeeded_events), nfine + 2);
  ASSERT_EQ(atomic_load(&unrecorded_logs), 0);
  for (int i = 0; i < nfine; i++) ASSERT_EQ(atomic_load(&runs[100 + i]), 1);
  /* The promotes (and reclaims) of "split" met TRYAGAIN every lease/3 for
   * the whole split: noted once each, no warning. */
  TEST_LOG("periodic calls in migration: %d info lines, %d warnings",
           atomic_load(&migration_infos), atomic_load(&periodic_warnings));
  ASSERT_GE(atomic_load(&migration_infos), 1);
  ASSERT_LE(atomic_load(&migration_infos), 3);
  ASSERT_EQ(atomic_load(&periodic_warnings), 0);
  env_close(&e);
}

/* ASK: a slot whose keys have all moved to the importing node while the
 * slot is still the old master's.  The library follows the ASK (ASKING, then
 * the command on the importing node): a dead-set read, a push (a script:
 * TRYAGAIN there until its keys are all together, again with ASKING) and a
 * lease all work, and everything is where it should be once the move ends. */
TEST_TIMEOUT(ask_during_a_migration_is_followed, 120) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  gt_cluster *cl = gt_cluster_start(3, 0);
  ASSERT_NOT_NULL(cl);
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, gt_cluster_url(cl), NULL, -1));
  gtask_broker *b;
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  int slot = queue_slot("askq");
  gt_redis *src = gt_cluster_master_of(cl, slot), *dst = NULL;
  for (int i = 0; i < gt_cluster_size(cl) && !dst; i++)
    if (gt_cluster_node(cl, i) != src) dst = gt_cluster_node(cl, i);
  /* A queued task, a scheduled one and a dead entry: every key of the queue exists. */
  gtask_msg *m[2];
  m[0] = gtask_msg_new("00000000-0000-4000-8000-00000000000a", "askq", "{\"x\":1}", 7);
  m[1] = gtask_msg_new("00000000-0000-4000-8000-00000000000b", "askq", "{\"x\":2}", 7);
  m[1]->due_ms = gtask__now_ms() + 600000;
  ASSERT_OK(b->ops->push(b->impl, m, 2, NULL));
  gtask_msg_free(m[0]);
  gtask_msg_free(m[1]);
  redisContext *rc = gt_redis_connect(src);
  redisReply *rep = redisCommand(rc, "HSET gtask:{askq}:dead 00000000-0000-4000-8000-00000000000c body");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(rc);
  unsigned long asks = atomic_load(&gtask__cluster_followed[1]);
  ASSERT_OK(gt_cluster_migrate_slot(cl, slot, dst, 100, 0, false));
  /* Single key: the source has it no more, answers ASK. */
  gtask_msg **dead = NULL;
  size_t nd = 0;
  ASSERT_OK(b->ops->dead_list(b->impl, "askq", "00000000-0000-4000-8000-00000000000c", &dead, &nd));
  ASSERT_EQ(nd, 1);
  ASSERT_STR_EQ(dead[0]->body, "body");
  gtask_msg_free(dead[0]);
  gtask__free(dead);
  ASSERT_GT(atomic_load(&gtask__cluster_followed[1]), asks);
  /* A script: ASK, then TRYAGAIN on the importing node (with ASKING: the
   * pending set it names exists nowhere yet), retried with backoff until the
   * move ends half a second later (another process ends it). */
  unsigned long tries = atomic_load(&gtask__cluster_followed[2]);
  pid_t pid = fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    gt_sleep_ms(500);
    _exit(gt_cluster_migrate_slot(cl, slot, dst, 100, 0, true) == 0 ? 0 : 1);
  }
  gtask_msg *m2 = gtask_msg_new("00000000-0000-4000-8000-00000000000d", "askq", "{\"x\":3}", 7);
  int prc = b->ops->push(b->impl, &m2, 1, NULL);
  if (prc) TEST_FAIL("push: %s", gtask_last_error());
  gtask_msg_free(m2);
  int wst;
  ASSERT_EQ(waitpid(pid, &wst, 0), pid);
  ASSERT_TRUE(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
  ASSERT_GT(atomic_load(&gtask__cluster_followed[2]), tries);
  ASSERT_PTR_EQ(gt_cluster_master_of(cl, slot), dst);
  /* The map still names src (ASK and TRYAGAIN do not change it): a plain
   * command (HSCAN of the dead set) follows the MOVED, as scripts do. */
  unsigned long moved = atomic_load(&gtask__cluster_followed[0]);
  ASSERT_OK(b->ops->dead_list(b->impl, "askq", NULL, &dead, &nd));
  ASSERT_EQ(nd, 1);
  gtask_msg_free(dead[0]);
  gtask__free(dead);
  ASSERT_GT(atomic_load(&gtask__cluster_followed[0]), moved);
  gtask_queue_stats st;
  ASSERT_OK(b->ops->stats(b->impl, "askq", &st)); /* at dst: the MOVED corrected the slot */
  ASSERT_EQ(st.pending, 2);
  ASSERT_EQ(st.scheduled, 1);
  ASSERT_EQ(st.dead, 1);
  gtask_broker_free(b);
  gtask_redis_conf_free(conf);
  gt_cluster_stop(cl);
}

/* Failover under load: kill -9 the master of a busy queue; its replica takes
 * over after the node timeout.  The worker and the client carry on.  With
 * wait-replicas 1 (and two replicas per master), a send that returned 0 was on
 * a replica: none is lost. */
static void failover_under_load(int wait_replicas) {
  env e;
  env_open(&e, "busy", wait_replicas);
  int slot = queue_slot("busy");
  gt_redis *master = gt_cluster_master_of(e.cl, slot);
  ASSERT_NOT_NULL(master);
  const int n = 400;
  bool sent[400] = {false};
  int in_doubt = 0, unsent = 0;
  int64_t killed_at = 0;
  for (int i = 0; i < n; i++) {
    if (i == 100) {
      ASSERT_OK(gt_redis_kill9(master));
      killed_at = test_now_ms();
    }
    int rc = send_rec(&e, "busy", i);
    int64_t until = test_now_ms() + test_timeout_ms(20000);
    while (rc == GTASK_ECONN && test_now_ms() < until) { /* not sent: again */
      test_sleep_ms(50);
      rc = send_rec(&e, "busy", i);
    }
    if (rc == GTASK_EINDOUBT) in_doubt++;
    else if (rc) unsent++;
    sent[i] = rc == 0;
  }
  int64_t resumed_ms = test_now_ms() - killed_at;
  ASSERT_OK(gt_cluster_wait_ok(e.cl, 20000));
  int nsent = 0;
  for (int i = 0; i < n; i++) nsent += sent[i];
  /* Wait for what survives to run (leases taken before the kill expire: 3 s). */
  int64_t deadline = test_now_ms() + test_timeout_ms(20000), changed = test_now_ms();
  int lost = n + 1;
  for (;;) {
    int now_lost = 0;
    for (int i = 0; i < n; i++) now_lost += sent[i] && atomic_load(&runs[i]) == 0;
    if (now_lost != lost) changed = test_now_ms();
    lost = now_lost;
    /* Done when all ran, or nothing changed for two leases (a task the
     * failover lost never comes). */
    if (lost == 0 || test_now_ms() > deadline || test_now_ms() - changed > test_timeout_ms(6000))
      break;
    test_sleep_ms(100);
  }
  int twice = 0;
  for (int i = 0; i < n; i++) twice += atomic_load(&runs[i]) > 1;
  TEST_LOG("failover (wait-replicas %d): %d sent, %d in doubt, %d unsent; %d lost, %d ran twice; "
           "sends resumed %lld ms after the kill",
           wait_replicas, nsent, in_doubt, unsent, lost, twice, (long long)resumed_ms);
  printf("# failover wait-replicas=%d: sent %d, in doubt %d, lost %d, twice %d, resumed after %lld ms\n",
         wait_replicas, nsent, in_doubt, lost, twice, (long long)resumed_ms);
  ASSERT_EQ(unsent, 0);
  if (wait_replicas > 0) ASSERT_EQ(lost, 0);
  ASSERT_GE(nsent, n - 10); /* the client carried on */
  /* And the worker: a new task runs promptly. */
  memset(sent, 0, sizeof(sent));
  atomic_store(&runs[0], 0);
  ASSERT_OK(send_rec(&e, "busy", 0));
  WAIT_UNTIL(atomic_load(&runs[0]) >= 1, 10000);
  env_close(&e);
}

TEST_TIMEOUT(failover_kill9_busy_master_carries_on, 180) { failover_under_load(0); }
TEST_TIMEOUT(failover_kill9_with_wait_replicas_loses_nothing, 180) { failover_under_load(1); }

/* ---------------------------------------------------------------- an idle map */

/* A replica of the master that serves slot, or NULL (ROLE on each node). */
static gt_redis *replica_of(gt_cluster *cl, gt_redis *master) {
  for (int i = 0; i < gt_cluster_size(cl); i++) {
    redisContext *rc = gt_cluster_connect(cl, i);
    ASSERT_NOT_NULL(rc);
    redisReply *rep = redisCommand(rc, "ROLE");
    bool match = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 3 &&
                 strcmp(rep->element[0]->str, "slave") == 0 &&
                 rep->element[2]->type == REDIS_REPLY_INTEGER &&
                 rep->element[2]->integer == gt_redis_port(master);
    if (rep) freeReplyObject(rep);
    redisFree(rc);
    if (match) return gt_cluster_node(cl, i);
  }
  return NULL;
}

/* The length of queue q's stream as the connection's node has it. */
static long long replica_xlen(redisContext *rc, const char *q) {
  redisReply *rep = redisCommand(rc, "XLEN gtask:{%s}:stream", q);
  long long n = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
  if (rep) freeReplyObject(rep);
  return n;
}

/* Issue 17's follow-up: the slot map is read again once it is older than its
 * max age, so a client idle through a failover sends its next command
 * straight to the new master (no MOVED), and the pool of the node that left
 * the map is freed.  The client knows one seed (node 0), so the other masters
 * are nodes it learned from the map. */
TEST_TIMEOUT(an_idle_client_follows_a_failover_and_frees_the_old_master, 60) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_WARN);
  gt_cluster *cl = gt_cluster_start(3, 1);
  ASSERT_NOT_NULL(cl);
  int64_t max_age = atomic_load(&gtask__cluster_max_age_ms);
  atomic_store(&gtask__cluster_max_age_ms, 300);
  char url[128], q[32] = "";
  snprintf(url, sizeof(url), "redis-cluster://127.0.0.1:%d", gt_redis_port(gt_cluster_node(cl, 0)));
  gt_redis *master = NULL;
  for (int k = 0; k < 1000 && !q[0]; k++) { /* a queue on another master than the seed */
    char name[32];
    snprintf(name, sizeof(name), "idle%d", k);
    gt_redis *m = gt_cluster_master_of(cl, queue_slot(name));
    if (m && m != gt_cluster_node(cl, 0)) snprintf(q, sizeof(q), "%s", name), master = m;
  }
  ASSERT_NOT_NULL(master);
  gt_redis *replica = replica_of(cl, master);
  ASSERT_NOT_NULL(replica);
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, url, NULL, -1));
  gtask_broker *b;
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  gtask_msg *m = gtask_msg_new("00000000-0000-4000-8000-000000000001", q, "{}", 2);
  ASSERT_OK(b->ops->push(b->impl, &m, 1, NULL));
  gtask_msg_free(m);

  /* The failover, while the client is idle (TAKEOVER: at once, no vote;
   * once the replica has the task). */
  redisContext *rc = gt_redis_connect(replica);
  redisReply *rep = redisCommand(rc, "READONLY");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  WAIT_UNTIL(replica_xlen(rc, q) == 1, 5000);
  rep = redisCommand(rc, "CLUSTER FAILOVER TAKEOVER");
  ASSERT_NOT_NULL(rep);
  ASSERT_EQ(rep->type, REDIS_REPLY_STATUS);
  freeReplyObject(rep);
  redisFree(rc);
  WAIT_UNTIL(gt_cluster_master_of(cl, queue_slot(q)) == replica, 10000);
  ASSERT_OK(gt_cluster_wait_ok(cl, 10000));
  test_sleep_ms(400); /* idle past the max age */

  unsigned long moved = atomic_load(&gtask__cluster_followed[0]);
  unsigned long freed = atomic_load(&gtask__cluster_nodes_freed);
  m = gtask_msg_new("00000000-0000-4000-8000-000000000002", q, "{}", 2);
  ASSERT_OK(b->ops->push(b->impl, &m, 1, NULL));
  gtask_msg_free(m);
  ASSERT_EQ(atomic_load(&gtask__cluster_followed[0]), moved); /* straight to the new master */
  gtask_queue_stats st;
  ASSERT_OK(b->ops->stats(b->impl, q, &st));
  ASSERT_EQ(st.pending, 2);
  /* The old master is a replica now: out of the map, its pool freed once it
   * has been out for a max age (a later call reads the map again). */
  WAIT_UNTIL(b->ops->stats(b->impl, q, &st) == 0 &&
                 atomic_load(&gtask__cluster_nodes_freed) > freed,
             5000);
  ASSERT_EQ(atomic_load(&gtask__cluster_followed[0]), moved);
  gtask_broker_free(b);
  gtask_redis_conf_free(conf);
  atomic_store(&gtask__cluster_max_age_ms, max_age);
  gt_cluster_stop(cl);
}

/* A worker idle on a queue whose slot moves: its blocked XREADGROUP ends with
 * "UNBLOCKED the stream key no longer exists" when the stream migrates.  The
 * lease reads the map again and blocks on the new master at once, without the
 * worker's pause after a failed fetch: the next task sent runs promptly. */
TEST_TIMEOUT(an_idle_worker_follows_its_migrated_queue_at_once, 60) {
  env e;
  env_open(&e, "mig", 0);
  ASSERT_OK(send_rec(&e, "mig", 0));
  WAIT_UNTIL(atomic_load(&runs[0]) == 1, 10000);
  int slot = queue_slot("mig");
  gt_redis *src = gt_cluster_master_of(e.cl, slot), *dst = NULL;
  for (int i = 0; i < 3 && !dst; i++)
    if (gt_cluster_node(e.cl, i) != src) dst = gt_cluster_node(e.cl, i);
  WAIT_UNTIL(gt_redis_blocked_clients(src) >= 1, 5000); /* the worker blocks on src */
  unsigned long moves = atomic_load(&gtask__cluster_lease_moves);
  ASSERT_OK(gt_cluster_move_slot(e.cl, slot, dst, 100, 0));
  int64_t t0 = test_now_ms();
  ASSERT_OK(send_rec(&e, "mig", 1));
  WAIT_UNTIL(atomic_load(&runs[1]) == 1, 10000);
  int64_t delay = test_now_ms() - t0;
  TEST_LOG("a task sent just after its queue's slot moved ran after %lld ms", (long long)delay);
  printf("# idle worker, slot moved: the next task ran after %lld ms\n", (long long)delay);
  ASSERT_GT(atomic_load(&gtask__cluster_lease_moves), moves); /* leased again at once */
  WAIT_UNTIL(gt_redis_blocked_clients(dst) >= 1, 5000);       /* and blocks there now */
  env_close(&e);
}
