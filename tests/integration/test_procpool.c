/* test_procpool.c -- the process executor mode against a real redis-server:
 * tasks that spin for ever, segfault, call exit(), allocate without bound or
 * flood stdout each fail (or succeed) with a clear report while the worker
 * keeps serving; deadlines are hard; children are recycled and reaped. */
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int spin(void) {
  for (volatile uint64_t k = 0;; k++) {
  }
  return 0;
}
GTASK_HANDLER(spin, (), ())

static int segv(void) {
  raise(SIGSEGV);
  return 0;
}
GTASK_HANDLER(segv, (), ())

static int quit(int32_t status) {
  exit(status);
}
GTASK_HANDLER(quit, (int32_t), ())

/* Allocates and touches memory until malloc fails (the child's RLIMIT_AS). */
static int hog(int64_t *mb) {
  *mb = 0;
  for (;;) {
    char *p = malloc(16 << 20);
    if (!p) return gtask_ctx_fail(gtask_ctx_current(), "out of memory after %lld MB", (long long)*mb);
    memset(p, 1, 16 << 20);
    *mb += 16;
  }
}
GTASK_HANDLER(hog, (), (int64_t))

static int chatty(int64_t mb, int64_t *out) {
  static char line[1024];
  memset(line, 'x', sizeof(line) - 1);
  line[sizeof(line) - 1] = '\n';
  for (int64_t k = 0; k < mb * 1024; k++) fwrite(line, 1, sizeof(line), stdout);
  fflush(stdout);
  *out = mb;
  return 0;
}
GTASK_HANDLER(chatty, (int64_t), (int64_t))

/* Reports progress in a tight loop, then takes its time. */
static int halfway(void) {
  gtask_ctx *ctx = gtask_ctx_current();
  for (int k = 0; k < 100000; k++) gtask_ctx_progress(ctx, 5, 10, "half way");
  usleep(300 * 1000); /* the last report of the loop may have been dropped (rate) */
  gtask_ctx_progress(ctx, 5, 10, "half way");
  gtask_ctx_sleep(ctx, 3000);
  return 0;
}
GTASK_HANDLER(halfway, (), ())

static int pid(int64_t *out) {
  *out = getpid();
  return 0;
}
GTASK_HANDLER(pid, (), (int64_t))

/* Ignores cancellation politely for a while, then returns: its late result is
 * discarded.  With a kill grace shorter than its sleep, it is SIGKILLed. */
static int stubborn(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  usleep(3 * 1000 * 1000);
  gtask_value v = gtask_bool(gtask_ctx_cancelled(ctx));
  return gtask_ctx_return(ctx, &v, 1);
}

/* Sanitizer runtimes take over exactly what three tests examine: they catch
 * SIGSEGV and exit with their own status, ASan's shadow memory cannot live
 * under RLIMIT_AS, and LeakSanitizer's exit-time scan in a forked child of a
 * threaded process can hang.  The plain build runs those tests. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif
#define SKIP_IF_SANITIZED() \
  do {                      \
    if (SANITIZED) SKIP("the sanitizer runtime handles crashes/exit/limits itself; covered by the plain build"); \
  } while (0)

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_server *server;
  gtask_client *client;
  gt_worker worker;
} env;

static void quiet(gtask_log_level level, const char *line, void *ud) {
  (void)level, (void)line, (void)ud;
}

static void env_open(env *e, void (*configure)(gtask_server *)) {
  memset(e, 0, sizeof(*e));
  gtask_set_log(quiet, NULL, GTASK_LOG_ERROR);
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  e->server = gtask_server_new(e->broker, e->backend);
  ASSERT_OK(gtask_server_set_pool(e->server, GTASK_POOL_PROCS));
  ASSERT_OK(GTASK_REG(e->server, add));
  ASSERT_OK(GTASK_REG(e->server, spin));
  ASSERT_OK(GTASK_REG(e->server, segv));
  ASSERT_OK(GTASK_REG(e->server, quit));
  ASSERT_OK(GTASK_REG(e->server, hog));
  ASSERT_OK(GTASK_REG(e->server, chatty));
  ASSERT_OK(GTASK_REG(e->server, pid));
  ASSERT_OK(GTASK_REG(e->server, halfway));
  ASSERT_OK(gtask_server_reg(e->server, "stubborn", stubborn, NULL));
  if (configure) configure(e->server);
  e->client = gtask_client_from_server(e->server);
  gt_worker_start(&e->worker, e->server, 2);
}

/* Children of this process other than redis-server. */
static int count_children(const gt_redis *r) {
  int n = 0;
  DIR *d = opendir("/proc");
  struct dirent *de;
  while ((de = readdir(d))) {
    char path[300], buf[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (fgets(buf, sizeof(buf), f)) {
      const char *close_paren = strrchr(buf, ')');
      int ppid = 0;
      char state;
      if (close_paren && sscanf(close_paren + 2, "%c %d", &state, &ppid) == 2 &&
          ppid == getpid() && strtol(de->d_name, NULL, 10) != gt_redis_pid(r))
        n++;
    }
    fclose(f);
  }
  closedir(d);
  return n;
}

/* Has process pid died (a zombie not yet reaped, or gone)? */
static bool process_dead(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f) return true;
  bool dead = true;
  if (fgets(buf, sizeof(buf), f)) {
    const char *close_paren = strrchr(buf, ')');
    dead = close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
  }
  fclose(f);
  return dead;
}

static void env_close(env *e) {
  ASSERT_OK(gt_worker_stop(&e->worker));
  ASSERT_EQ(count_children(e->redis), 0); /* every child reaped */
  gtask_client_free(e->client);
  gtask_server_free(e->server);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
}

static gtask_result *run_task(env *e, const char *name, int64_t timeout_ms, int retries,
                              const gtask_value *args, size_t n) {
  gtask_send_conf *c = gtask_send_conf_new(name);
  if (timeout_ms) ASSERT_OK(gtask_send_conf_set_timeout(c, timeout_ms));
  if (retries) {
    ASSERT_OK(gtask_send_conf_set_retry_num(c, retries));
    ASSERT_OK(gtask_send_conf_set_backoff(c, 50, 100));
  }
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e->client, c, args, n, id));
  gtask_result *r = NULL;
  int rc = gtask_client_wait(e->client, id, test_timeout_ms(20000), &r);
  if (rc) TEST_FAIL("%s: %s", name, gtask_client_errmsg(e->client));
  gtask_send_conf_free(c);
  return r;
}

static void expect_add_works(env *e) {
  gtask_result *r = run_task(e, "add", 0, 0, (gtask_value[]){gtask_int64(2), gtask_int64(3)}, 2);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 5);
  gtask_result_free(r);
}

TEST(procs_round_trip_and_typed_errors) {
  env e;
  env_open(&e, NULL);
  expect_add_works(&e);
  gtask_result *r = run_task(&e, "add", 0, 0, (gtask_value[]){gtask_str("x"), gtask_int64(3)}, 2);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ETYPE);
  ASSERT_STR_CONTAINS(r->error, "argument 1: expected int64, got string");
  gtask_result_free(r);
  env_close(&e);
}

TEST(procs_spinning_task_is_killed_at_its_deadline) {
  env e;
  env_open(&e, NULL);
  int64_t t0 = test_now_ms();
  gtask_result *r = run_task(&e, "spin", 300, 0, NULL, 0);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(3000));
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ETASKTIMEOUT);
  ASSERT_STR_CONTAINS(r->error, "timeout");
  gtask_result_free(r);
  /* Twice more, with retries: each run is killed, then FAILURE after 3 runs. */
  r = run_task(&e, "spin", 200, 2, NULL, 0);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->attempts, 3);
  gtask_result_free(r);
  /* Both executors are free again: two spinners at once would block them. */
  expect_add_works(&e);
  expect_add_works(&e);
  env_close(&e);
}

TEST(procs_segfault_fails_the_task_and_names_the_signal) {
  SKIP_IF_SANITIZED();
  env e;
  env_open(&e, NULL);
  gtask_result *r = run_task(&e, "segv", 0, 3, NULL, 0);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ECRASH);
  ASSERT_STR_CONTAINS(r->error, "SIGSEGV");
  ASSERT_EQ(r->attempts, 1); /* a crash is not retried by default */
  gtask_result_free(r);
  /* Unless the send asks (issue 18): 1 + 2 runs, each crashing its child. */
  gtask_send_conf *c = gtask_send_conf_new("segv");
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 2));
  ASSERT_OK(gtask_send_conf_set_backoff(c, 20, 40));
  ASSERT_OK(gtask_send_conf_set_retry_on(c, GTASK_RETRY_ON_CRASH));
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, c, NULL, 0, id));
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(20000), &r));
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ECRASH);
  ASSERT_EQ(r->attempts, 3);
  gtask_result_free(r);
  gtask_send_conf_free(c);
  expect_add_works(&e);
  env_close(&e);
}

TEST(procs_exit_in_a_task_fails_it_with_the_status) {
  SKIP_IF_SANITIZED();
  env e;
  env_open(&e, NULL);
  gtask_result *r = run_task(&e, "quit", 0, 0, (gtask_value[]){gtask_int32(7)}, 1);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ECRASH);
  ASSERT_STR_CONTAINS(r->error, "exit status 7");
  gtask_result_free(r);
  r = run_task(&e, "quit", 0, 0, (gtask_value[]){gtask_int32(0)}, 1);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_CONTAINS(r->error, "exit status 0");
  gtask_result_free(r);
  expect_add_works(&e);
  env_close(&e);
}

static void limit_memory(gtask_server *s) { ASSERT_OK(gtask_server_set_child_memory_limit(s, 256)); }

TEST(procs_unbounded_allocation_hits_the_child_limit) {
  SKIP_IF_SANITIZED();
  env e;
  env_open(&e, limit_memory);
  gtask_result *r = run_task(&e, "hog", 20000, 0, NULL, 0);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_CONTAINS(r->error, "out of memory");
  gtask_result_free(r);
  expect_add_works(&e);
  env_close(&e);
}

TEST(procs_megabytes_on_stdout_do_not_hurt) {
  env e;
  env_open(&e, NULL);
  gtask_result *r = run_task(&e, "chatty", 0, 0, (gtask_value[]){gtask_int64(8)}, 1);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 8);
  gtask_result_free(r);
  expect_add_works(&e);
  env_close(&e);
}

static void short_grace(gtask_server *s) { ASSERT_OK(gtask_server_set_kill_grace(s, 200)); }

TEST(procs_soft_signal_then_sigkill_after_grace) {
  env e;
  env_open(&e, short_grace);
  int64_t t0 = test_now_ms();
  gtask_result *r = run_task(&e, "stubborn", 300, 0, NULL, 0);
  int64_t took = test_now_ms() - t0;
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_EQ(r->error_code, GTASK_ETASKTIMEOUT);
  ASSERT_LT(took, test_timeout_ms(2500)); /* not the 3 s the task wanted */
  gtask_result_free(r);
  expect_add_works(&e);
  env_close(&e);
}

/* A cancelled task (issue 18) whose child ignores the soft stop (spin) is
 * SIGKILLed after the kill grace: its executor is free again, the task stays
 * CANCELLED. */
TEST(procs_cancelled_task_is_killed_after_grace) {
  env e;
  env_open(&e, short_grace);
  gtask_send_conf *c = gtask_send_conf_new("spin");
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, c, NULL, 0, id));
  gtask_send_conf_free(c);
  gtask_status st = 0;
  WAIT_UNTIL(gtask_client_status(e.client, id, &st) == 0 && st == GTASK_STARTED, 10000);
  bool running = false;
  int64_t t0 = test_now_ms();
  ASSERT_OK(gtask_client_cancel(e.client, id, &running));
  ASSERT_TRUE(running);
  /* Its lease is released once the child is gone: nothing active. */
  gtask_queue_stats qs;
  WAIT_UNTIL(gtask_client_stats(e.client, NULL, &qs) == 0 && qs.active == 0, 5000);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(3000));
  ASSERT_OK(gtask_client_status(e.client, id, &st));
  ASSERT_EQ(st, GTASK_CANCELLED);
  expect_add_works(&e);
  expect_add_works(&e);
  env_close(&e);
}

/* Progress from a child (issue 18): sent over its reply pipe, written by the
 * supervisor, read by a client; the result after it is not disturbed. */
TEST(procs_progress_from_a_child) {
  env e;
  env_open(&e, NULL);
  gtask_send_conf *c = gtask_send_conf_new("halfway");
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, c, NULL, 0, id));
  gtask_send_conf_free(c);
  gtask_progress p;
  WAIT_UNTIL(gtask_client_progress(e.client, id, &p) == 0 && p.done == 5, 10000);
  ASSERT_EQ(p.total, 10);
  ASSERT_STR_EQ(p.message, "half way");
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(e.client, id, test_timeout_ms(20000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
  expect_add_works(&e);
  env_close(&e);
}

static void recycle_every_3(gtask_server *s) { ASSERT_OK(gtask_server_set_child_recycle(s, 3, 0)); }

TEST(procs_children_are_recycled_after_k_tasks) {
  env e;
  env_open(&e, recycle_every_3);
  /* Each task reports the pid of the child that ran it; with 2 executors and a
   * recycle every 3 tasks, 12 tasks need at least 4 distinct children. */
  int64_t pids[12];
  int distinct = 0;
  for (int k = 0; k < 12; k++) {
    gtask_result *r = run_task(&e, "pid", 0, 0, NULL, 0);
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    pids[k] = r->values[0].v.i;
    ASSERT_NE(pids[k], getpid());
    bool seen = false;
    for (int j = 0; j < k; j++) seen |= pids[j] == pids[k];
    distinct += !seen;
    gtask_result_free(r);
  }
  TEST_LOG("%d distinct child pids over 12 tasks", distinct);
  ASSERT_GE(distinct, 4);
  env_close(&e);
}

/* A child killed while idle (OOM killer, an operator) must not take the worker
 * down with SIGPIPE when the next task is handed to it, nor fail that task. */
TEST(procs_child_killed_while_idle_is_replaced_transparently) {
  env e;
  env_open(&e, NULL);
  gtask_result *r = run_task(&e, "pid", 0, 0, NULL, 0);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  pid_t child = (pid_t)r->values[0].v.i;
  gtask_result_free(r);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  WAIT_UNTIL(process_dead(child), 5000); /* else the next task could still reach it alive */
  /* Both executors' children: whichever gets the next tasks, all succeed. */
  for (int k = 0; k < 6; k++) expect_add_works(&e);
  env_close(&e);
}
