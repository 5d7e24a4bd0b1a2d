/* test_limits.c -- rate and concurrency limits across workers (issue 19),
 * against a private redis-server with worker processes (forked, each a
 * gtask server) whose handler records when it starts and ends, by pid, in a
 * file (one O_APPEND write per line).  What is checked is what a user would
 * check: the start times.
 *  - 200 tasks under 20/s across 3 workers finish in about 10 s, and no
 *    window of one second holds more than 20 starts; none is lost;
 *  - a concurrency limit holds across 3 workers (never more than K running);
 *  - a worker killed with SIGKILL while holding a slot: the slot comes back
 *    within the lease time and the waiting tasks run;
 *  - bad limits: a clear error, nothing stored.
 * About 20 s in CI. */
#include "internal.h"
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG_FILE "starts.log"

static int64_t now_ms(void) { return gtask__now_ms(); }

/* Appends "pid start end name\n" (end 0 for a start record). */
static void record(int64_t start, int64_t end, const char *name) {
  char line[128];
  int n = snprintf(line, sizeof(line), "%d %lld %lld %s\n", (int)getpid(), (long long)start,
                   (long long)end, name);
  int fd = open(LOG_FILE, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (fd >= 0) {
    ssize_t w = write(fd, line, (size_t)n);
    (void)w;
    close(fd);
  }
}

/* "tick": records its start.  "hold": records start and end, sleeping its
 * argument (ms) in between, waking when cancelled. */
static int tick(gtask_ctx *ctx, const gtask_value *args, size_t n, void *udata) {
  record(now_ms(), 0, "tick");
  return 0;
}
static int hold(gtask_ctx *ctx, const gtask_value *args, size_t n, void *udata) {
  int64_t t0 = now_ms();
  record(t0, 0, "hold");
  gtask_ctx_sleep(ctx, n ? args[0].v.i : 100);
  record(t0, now_ms(), "hold");
  return 0;
}

static gtask_server *volatile child_server;
static void on_term(int sig) {
  (void)sig;
  gtask_server_shutdown(child_server);
}

/* A worker process on url: concurrency conc, lease lease_ms.  SIGTERM shuts
 * it down cleanly (exit 0, everything freed: the sanitizer build checks for
 * leaks then). */
static pid_t worker_start(const char *url, int conc, int64_t lease_ms) {
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid) return pid;
  gtask_redis_conf *conf;
  gtask_broker *b;
  gtask_backend *k;
  if (gtask_redis_conf_new(&conf, url, NULL, -1) || gtask_broker_redis_new(&b, conf) ||
      gtask_backend_redis_new(&k, conf))
    _exit(3);
  gtask_server *s = gtask_server_new(b, k);
  gtask_server_set_lease(s, lease_ms);
  gtask_server_reg(s, "tick", tick, NULL);
  gtask_server_reg(s, "hold", hold, NULL);
  child_server = s;
  signal(SIGTERM, on_term);
  int rc = gtask_server_run(s, conc);
  gtask_server_free(s);
  gtask_broker_free(b);
  gtask_backend_free(k);
  gtask_redis_conf_free(conf);
  exit(rc == 0 ? 0 : 4);
}

typedef struct rec {
  int pid;
  int64_t start, end;
  char name[16];
} rec;

/* The records of the log: starts (end 0) or ends, of name. */
static size_t read_recs(rec *out, size_t max, const char *name, bool ends) {
  FILE *f = fopen(LOG_FILE, "r");
  if (!f) return 0;
  size_t n = 0;
  rec r;
  long long s, e;
  while (n < max && fscanf(f, "%d %lld %lld %15s", &r.pid, &s, &e, r.name) == 4) {
    r.start = s, r.end = e;
    if (strcmp(r.name, name) == 0 && (e != 0) == ends) out[n++] = r;
  }
  fclose(f);
  return n;
}

static size_t count_starts(const char *name) {
  rec r[64];
  return read_recs(r, 64, name, false);
}

static int cmp_start(const void *a, const void *b) {
  int64_t x = ((const rec *)a)->start, y = ((const rec *)b)->start;
  return x < y ? -1 : x > y;
}

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_client *client;
} env;

static void env_start(env *e) {
  memset(e, 0, sizeof(*e));
  ASSERT_NOT_NULL(e->redis = gt_redis_start(NULL));
}

/* The client is made after the workers are forked: no threads at fork. */
static void env_client(env *e) {
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  ASSERT_NOT_NULL(e->client = gtask_client_new(e->broker, e->backend));
}

/* Stops the workers cleanly (SIGTERM, exit 0). */
static void env_stop_workers(pid_t *w, size_t nw) {
  for (size_t k = 0; k < nw; k++) {
    if (w[k] <= 0) continue;
    ASSERT_EQ(kill(w[k], SIGTERM), 0);
    int st;
    ASSERT_EQ(waitpid(w[k], &st, 0), w[k]);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TEST_FAIL("worker %d: status %d", (int)w[k], st);
    w[k] = 0;
  }
}

static void env_stop(env *e, pid_t *w, size_t nw) {
  env_stop_workers(w, nw);
  gtask_client_free(e->client);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
}

/* Sends n tasks of name (with one int64 argument arg if >= 0). */
static char (*send_n(env *e, const char *name, size_t n, int64_t arg))[GTASK_ID_SIZE] {
  gtask_send_conf *sc = gtask_send_conf_new(name);
  char(*ids)[GTASK_ID_SIZE] = calloc(n, GTASK_ID_SIZE);
  gtask_value *args = calloc(n, sizeof(*args));
  for (size_t k = 0; k < n; k++) args[k] = gtask_int64(arg);
  ASSERT_OK(gtask_client_send_many(e->client, sc, n, args, arg >= 0 ? 1 : 0, ids));
  free(args);
  gtask_send_conf_free(sc);
  return ids;
}

static void wait_all(env *e, char (*ids)[GTASK_ID_SIZE], size_t n, int64_t ms) {
  for (size_t k = 0; k < n; k++) {
    gtask_result *r;
    int rc = gtask_client_wait(e->client, ids[k], test_timeout_ms(ms), &r);
    if (rc) TEST_FAIL("task %zu of %zu: %s (%s)", k + 1, n, gtask_err_name(rc),
                      gtask_client_errmsg(e->client));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    gtask_result_free(r);
  }
}

/* Tasks waiting for a slot of the first limit of the client's queue. */
static int64_t waiting(env *e) {
  gtask_limit *lv;
  size_t nl;
  ASSERT_OK(gtask_client_limit_list(e->client, NULL, &lv, &nl));
  int64_t w = nl ? lv[0].waiting : -1;
  gtask_limit_list_free(lv, nl);
  return w;
}

/* ---------------------------------------------------------------- rate */

TEST_TIMEOUT(limit_rate_200_at_20_per_second, 180) {
  env e;
  env_start(&e);
  pid_t w[3];
  for (int k = 0; k < 3; k++) w[k] = worker_start(gt_redis_url(e.redis), 8, 3000);
  env_client(&e);
  ASSERT_OK(gtask_client_limit_rate(e.client, NULL, "tick", 20, 1000));
  /* Workers read limits at housekeeping: wait until one has (a limited task
   * then leaves a trace in the admissions zset). */
  test_sleep_ms(1200);
  char(*ids)[GTASK_ID_SIZE] = send_n(&e, "tick", 200, -1);
  wait_all(&e, ids, 200, 60000);
  free(ids);
  rec *r = calloc(400, sizeof(*r));
  size_t n = read_recs(r, 400, "tick", false);
  ASSERT_EQ(n, 200); /* each ran once: none lost, none twice */
  qsort(r, n, sizeof(*r), cmp_start);
  /* No window of one second holds more than 20 starts. */
  size_t worst = 0;
  for (size_t i = 0, j = 0; i < n; i++) {
    while (j < n && r[j].start < r[i].start + 1000) j++;
    if (j - i > worst) worst = j - i;
  }
  int64_t span = r[n - 1].start - r[0].start;
  int pids[3] = {0, 0, 0};
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < 3; k++)
      if (r[i].pid == w[k]) pids[k]++;
  TEST_LOG("200 starts over %lld ms, at most %zu in a second; per worker %d %d %d",
           (long long)span, worst, pids[0], pids[1], pids[2]);
  ASSERT_LE(worst, 20);
  /* 200 at 20/s: the last starts 9.x s after the first (10 windows, the
   * first full at once); a little more for the margin and the scheduling. */
  ASSERT_GE(span, 9000);
  ASSERT_LT(span, test_timeout_ms(13000));
  ASSERT_GT(pids[0] + pids[1] + pids[2], 0);
  /* It shows. */
  gtask_limit *lv;
  size_t nl;
  ASSERT_OK(gtask_client_limit_list(e.client, NULL, &lv, &nl));
  ASSERT_EQ(nl, 1);
  ASSERT_STR_EQ(lv[0].task, "tick");
  ASSERT_EQ(lv[0].rate, 20);
  ASSERT_EQ(lv[0].period_ms, 1000);
  ASSERT_EQ(lv[0].concurrency, 0);
  gtask_limit_list_free(lv, nl);
  free(r);
  env_stop(&e, w, 3);
}

/* ---------------------------------------------------------------- concurrency */

/* At most K running at once across three workers, from the recorded start
 * and end times; every task runs. */
TEST_TIMEOUT(limit_concurrency_across_workers, 120) {
  env e;
  env_start(&e);
  pid_t w[3];
  for (int k = 0; k < 3; k++) w[k] = worker_start(gt_redis_url(e.redis), 4, 3000);
  env_client(&e);
  ASSERT_OK(gtask_client_limit_concurrency(e.client, NULL, "hold", 3));
  test_sleep_ms(1200);
  char(*ids)[GTASK_ID_SIZE] = send_n(&e, "hold", 24, 150);
  wait_all(&e, ids, 24, 60000);
  free(ids);
  rec r[64];
  size_t n = read_recs(r, 64, "hold", true);
  ASSERT_EQ(n, 24);
  int most = 0;
  for (size_t i = 0; i < n; i++) {
    int at = 0; /* running at r[i].start */
    for (size_t j = 0; j < n; j++) at += r[j].start <= r[i].start && r[i].start < r[j].end;
    if (at > most) most = at;
  }
  TEST_LOG("at most %d running at once", most);
  ASSERT_LE(most, 3);
  ASSERT_GE(most, 2); /* the limit, not one worker, bounds it */
  env_stop(&e, w, 3);
}

/* A worker killed with SIGKILL while holding the only slot: the slot comes
 * back within the lease time (plus a housekeeping round of another worker),
 * and the tasks waiting for it run. */
TEST_TIMEOUT(limit_concurrency_slot_of_killed_worker, 120) {
  env e;
  env_start(&e);
  const int64_t lease = 1500;
  pid_t w[2] = {worker_start(gt_redis_url(e.redis), 2, lease), 0};
  env_client(&e);
  ASSERT_OK(gtask_client_limit_concurrency(e.client, NULL, "hold", 1));
  test_sleep_ms(1000);
  char(*first)[GTASK_ID_SIZE] = send_n(&e, "hold", 1, 4000);
  WAIT_UNTIL(count_starts("hold") == 1, 10000);
  char(*more)[GTASK_ID_SIZE] = send_n(&e, "hold", 2, 50);
  /* They wait: the slot is held. */
  test_sleep_ms(500);
  gtask_limit *lv;
  size_t nl;
  ASSERT_OK(gtask_client_limit_list(e.client, NULL, &lv, &nl));
  ASSERT_EQ(lv[0].running, 1);
  ASSERT_EQ(lv[0].waiting, 2);
  gtask_limit_list_free(lv, nl);
  int64_t killed = now_ms();
  ASSERT_EQ(kill(w[0], SIGKILL), 0);
  waitpid(w[0], NULL, 0);
  w[0] = 0;
  w[1] = worker_start(gt_redis_url(e.redis), 2, lease);
  /* The first, reclaimed, runs again (it takes the slot back first: it is
   * queued again before the sweep wakes a waiting task), then the two
   * waiting tasks. */
  wait_all(&e, first, 1, 30000);
  wait_all(&e, more, 2, 30000);
  rec r[16];
  size_t n = read_recs(r, 16, "hold", false);
  qsort(r, n, sizeof(*r), cmp_start);
  ASSERT_GE(n, 2);
  int64_t back = r[1].start - killed; /* the first start after the kill */
  TEST_LOG("a task started %lld ms after the kill (lease %lld ms)", (long long)back, (long long)lease);
  ASSERT_LE(back, lease + lease / 3 + test_timeout_ms(1500));
  free(first);
  free(more);
  env_stop(&e, w, 2);
}

/* ---------------------------------------------------------------- bad input */

TEST(limit_bad_input_stores_nothing) {
  env e;
  env_start(&e);
  env_client(&e);
  ASSERT_ERR(gtask_client_limit_rate(e.client, NULL, "t", 0, 1000), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "bad rate 0 per 1000 ms");
  ASSERT_ERR(gtask_client_limit_rate(e.client, NULL, "t", -5, 1000), GTASK_EINVAL);
  ASSERT_ERR(gtask_client_limit_rate(e.client, NULL, "t", 5, 0), GTASK_EINVAL);
  ASSERT_ERR(gtask_client_limit_concurrency(e.client, NULL, "t", 0), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "bad concurrency 0");
  ASSERT_ERR(gtask_client_limit_concurrency(e.client, "bad queue", "t", 1), GTASK_EINVAL);
  ASSERT_ERR(gtask_client_limit_concurrency(e.client, NULL, "a\nb", 1), GTASK_EINVAL);
  ASSERT_ERR(gtask_client_limit_remove(e.client, NULL, "t"), GTASK_ENOTFOUND);
  redisContext *rc = gt_redis_connect(e.redis);
  redisReply *r = redisCommand(rc, "KEYS *limit*");
  ASSERT_EQ(r->elements, 0);
  freeReplyObject(r);
  /* Set, listed, removed. */
  ASSERT_OK(gtask_client_limit_rate(e.client, "q1", NULL, 100, 60000));
  ASSERT_OK(gtask_client_limit_concurrency(e.client, "q1", NULL, 4));
  gtask_limit *lv;
  size_t nl;
  ASSERT_OK(gtask_client_limit_list(e.client, "q1", &lv, &nl));
  ASSERT_EQ(nl, 1);
  ASSERT_NULL(lv[0].task);
  ASSERT_EQ(lv[0].rate, 100);
  ASSERT_EQ(lv[0].period_ms, 60000);
  ASSERT_EQ(lv[0].concurrency, 4);
  gtask_limit_list_free(lv, nl);
  ASSERT_OK(gtask_client_limit_remove(e.client, "q1", NULL));
  r = redisCommand(rc, "KEYS *limit*");
  ASSERT_EQ(r->elements, 0);
  freeReplyObject(r);
  redisFree(rc);
  env_stop(&e, NULL, 0);
}

/* Removing a limit loses no task waiting under it: the waiting tasks go back
 * to the queue at once (and run without waiting for the slot). */
TEST_TIMEOUT(limit_remove_frees_waiting_tasks, 120) {
  env e;
  env_start(&e);
  pid_t w[1] = {worker_start(gt_redis_url(e.redis), 4, 3000)};
  env_client(&e);
  ASSERT_OK(gtask_client_limit_concurrency(e.client, NULL, "hold", 1));
  test_sleep_ms(1200);
  char(*first)[GTASK_ID_SIZE] = send_n(&e, "hold", 1, 3000);
  WAIT_UNTIL(count_starts("hold") == 1, 10000);
  char(*more)[GTASK_ID_SIZE] = send_n(&e, "hold", 3, 10);
  WAIT_UNTIL(waiting(&e) == 3, 10000);
  int64_t removed = now_ms();
  ASSERT_OK(gtask_client_limit_remove(e.client, NULL, "hold"));
  wait_all(&e, more, 3, 10000);
  /* They ran while the first still held what used to be the only slot. */
  rec r[16];
  size_t n = read_recs(r, 16, "hold", true);
  for (size_t k = 0; k < n; k++)
    if (r[k].end - r[k].start < 1000) ASSERT_LT(r[k].end, removed + 2500);
  wait_all(&e, first, 1, 10000);
  free(first);
  free(more);
  env_stop(&e, w, 1);
}

/* Priorities (issue 18): tasks of level 2 parked for a concurrency slot keep
 * their level: woken by a released slot or by the limit's removal (no worker
 * running), they go back to the queue's level-2 stream, not its level-0 one,
 * and then run. */
TEST_TIMEOUT(limit_waiting_tasks_keep_their_priority, 120) {
  env e;
  env_start(&e);
  pid_t w[1] = {worker_start(gt_redis_url(e.redis), 4, 3000)};
  env_client(&e);
  ASSERT_OK(gtask_client_limit_concurrency(e.client, NULL, "hold", 1));
  test_sleep_ms(1200);
  char(*first)[GTASK_ID_SIZE] = send_n(&e, "hold", 1, 1500);
  WAIT_UNTIL(count_starts("hold") == 1, 10000);
  gtask_send_conf *sc = gtask_send_conf_new("hold");
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_URGENT));
  char urgent[2][GTASK_ID_SIZE];
  for (int k = 0; k < 2; k++) ASSERT_OK(GTASK_SEND(e.client, sc, urgent[k], gtask_int64(10)));
  gtask_send_conf_free(sc);
  WAIT_UNTIL(waiting(&e) == 2, 10000);
  /* The first one finishes and its slot's release wakes one of the two
   * (limit_slots.lua), into the level-2 stream; no worker reads it now. */
  env_stop_workers(w, 1);
  ASSERT_EQ(waiting(&e), 1);
  redisContext *c = gt_redis_connect(e.redis);
  ASSERT_NOT_NULL(c);
  redisReply *rep = redisCommand(c, "XLEN gtask:{default}:stream:2");
  ASSERT_EQ(rep->integer, 1);
  freeReplyObject(rep);
  /* Removing the limit moves the other one back (limit_remove.lua). */
  ASSERT_OK(gtask_client_limit_remove(e.client, NULL, "hold"));
  rep = redisCommand(c, "XLEN gtask:{default}:stream:2");
  ASSERT_EQ(rep->integer, 2);
  freeReplyObject(rep);
  rep = redisCommand(c, "XLEN gtask:{default}:stream");
  ASSERT_EQ(rep->integer, 0);
  freeReplyObject(rep);
  redisFree(c);
  gtask_client_free(e.client);
  gtask_broker_free(e.broker);
  gtask_backend_free(e.backend);
  e.client = NULL, e.broker = NULL, e.backend = NULL;
  w[0] = worker_start(gt_redis_url(e.redis), 4, 3000);
  env_client(&e);
  wait_all(&e, first, 1, 10000);
  wait_all(&e, urgent, 2, 10000);
  free(first);
  env_stop(&e, w, 1);
}
