/* test_scheduler.c -- periodic tasks end to end (issue 19): entries stored
 * with the client calls and the CLI, fired by `gtask scheduler` processes
 * (the real binary, GTASK_CLI_PATH) and by in-process schedulers, against a
 * private redis-server.
 *
 * The exactly-once check reads what a user would: the tasks in the queue.
 * Every tick of an "every second" entry from its first to its last must have
 * exactly one task in the stream, under the id derived from the entry and
 * the tick -- none missing, none twice -- while two or three schedulers run
 * at once, one of them killed with SIGKILL and started again.
 *
 * The CI form runs about 25 s; GTASK_TEST_CRON_SECONDS=N runs the
 * three-scheduler test for N seconds instead of 12 (by hand: minutes). */
#include "internal.h"
#include "redis_fixture.h"
#include "schedule.h"
#include "test.h"
#include "worker_fixture.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef GTASK_CLI_PATH
#error "GTASK_CLI_PATH must name the gtask binary (tests/CMakeLists.txt)"
#endif

/* ---------------------------------------------------------------- processes */

/* Starts `gtask ARGS` with stdout to /dev/null and stderr to err_path. */
static pid_t spawn_v(const char *const *args, const char *err_path) {
  const char *argv[32] = {GTASK_CLI_PATH};
  size_t n = 1;
  for (size_t k = 0; args[k]; k++) argv[n++] = args[k];
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fe = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int fo = open("/dev/null", O_RDWR);
    if (fe < 0 || fo < 0) _exit(126);
    dup2(fo, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    execv(GTASK_CLI_PATH, (char *const *)argv);
    _exit(127);
  }
  return pid;
}
#define SPAWN(err, ...) spawn_v((const char *const[]){__VA_ARGS__, NULL}, (err))

/* Waits for pid to exit (at most ms); its exit code, 128 + signal. */
static int reap(pid_t pid, int64_t ms) {
  int64_t deadline = test_now_ms() + test_timeout_ms(ms);
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    ASSERT_NE(r, -1);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (test_now_ms() > deadline) TEST_FAIL("process %d did not exit", (int)pid);
    test_sleep_ms(10);
  }
}

/* Runs `gtask ARGS` to completion; its exit code, its stdout in out. */
static int run_v(char *out, size_t size, const char *const *args) {
  const char *argv[32] = {GTASK_CLI_PATH};
  size_t n = 1;
  for (size_t k = 0; args[k]; k++) argv[n++] = args[k];
  argv[n] = NULL;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fo = open("cli.err", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(p[1], 1);
    dup2(fo, 2);
    close(p[0]);
    execv(GTASK_CLI_PATH, (char *const *)argv);
    _exit(127);
  }
  close(p[1]);
  size_t got = 0;
  for (ssize_t r; (r = read(p[0], out + got, size - 1 - got)) > 0;) got += (size_t)r;
  out[got] = '\0';
  close(p[0]);
  int code = reap(pid, 30000);
  TEST_LOG("gtask %s %s -> %d: %.300s", args[0], args[1] ? args[1] : "", code, out);
  return code;
}
#define RUN(out, ...) run_v((out), sizeof(out), (const char *const[]){__VA_ARGS__, NULL})

/* ---------------------------------------------------------------- Redis */

typedef struct env {
  gt_redis *redis;
  redisContext *rc;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_client *client;
} env;

static void env_start(env *e) {
  memset(e, 0, sizeof(*e));
  ASSERT_NOT_NULL(e->redis = gt_redis_start(NULL));
  ASSERT_EQ(setenv("GTASK_REDIS_URL", gt_redis_url(e->redis), 1), 0);
  ASSERT_NOT_NULL(e->rc = gt_redis_connect(e->redis));
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  ASSERT_NOT_NULL(e->client = gtask_client_new(e->broker, e->backend));
}

static void env_stop(env *e) {
  gtask_client_free(e->client);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  redisFree(e->rc);
  gt_redis_stop(e->redis);
}

static long long redis_int(env *e, const char *fmt, const char *arg) {
  redisReply *r = redisCommand(e->rc, fmt, arg);
  ASSERT_NOT_NULL(r);
  long long v = r->type == REDIS_REPLY_INTEGER ? r->integer
                : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                : -1;
  freeReplyObject(r);
  return v;
}

/* Runs a command (no arguments to interpolate) that must not fail. */
static void r_cmd(env *e, const char *cmd) {
  redisReply *r = redisCommand(e->rc, cmd);
  ASSERT_NOT_NULL(r);
  ASSERT_NE(r->type, REDIS_REPLY_ERROR);
  freeReplyObject(r);
}

/* The task ids in queue's stream, in order; *n of them (a new array). */
static char (*stream_ids(env *e, const char *queue, size_t *n))[GTASK_ID_SIZE] {
  redisReply *r = redisCommand(e->rc, "XRANGE gtask:{%s}:stream - +", queue);
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  char(*ids)[GTASK_ID_SIZE] = calloc(r->elements + 1, GTASK_ID_SIZE);
  for (size_t k = 0; k < r->elements; k++) {
    redisReply *fields = r->element[k]->element[1];
    ASSERT_STR_EQ(fields->element[0]->str, "i");
    ASSERT_EQ(fields->element[1]->len, GTASK_ID_SIZE - 1);
    memcpy(ids[k], fields->element[1]->str, GTASK_ID_SIZE);
  }
  *n = r->elements;
  freeReplyObject(r);
  return ids;
}

static bool has_id(char (*ids)[GTASK_ID_SIZE], size_t n, const char *id, size_t *count) {
  *count = 0;
  for (size_t k = 0; k < n; k++) *count += strcmp(ids[k], id) == 0;
  return *count > 0;
}

/* Every second from first_ms to the entry's last tick has exactly one task
 * in queue, and the queue holds nothing else.  Returns the number of ticks. */
static size_t check_every_tick(env *e, const char *queue, const char *name, int64_t first_ms) {
  char key[300];
  snprintf(key, sizeof(key), "gtask:{%s}:cron:%s", queue, name);
  int64_t last = redis_int(e, "HGET %s last", key);
  ASSERT_GE(last, first_ms);
  size_t n;
  char(*ids)[GTASK_ID_SIZE] = stream_ids(e, queue, &n);
  size_t ticks = 0;
  for (int64_t t = first_ms; t <= last; t += 1000, ticks++) {
    char id[GTASK_ID_SIZE];
    gtask__cron_task_id(name, t, id);
    size_t count;
    if (!has_id(ids, n, id, &count)) TEST_FAIL("tick %lld of %s was never queued", (long long)t, name);
    if (count != 1) TEST_FAIL("tick %lld of %s was queued %zu times", (long long)t, name, count);
  }
  if (n != ticks) TEST_FAIL("%zu tasks queued for %zu ticks", n, ticks);
  free(ids);
  return ticks;
}

/* The first whole second after the entry name was created (its first tick). */
static int64_t first_tick(env *e, const char *name) {
  redisReply *r = redisCommand(e->rc, "HGET gtask:cron %s", name);
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  json_t *j = json_loads(r->str, 0, NULL);
  ASSERT_NOT_NULL(j);
  int64_t c = json_integer_value(json_object_get(j, "c"));
  json_decref(j);
  freeReplyObject(r);
  return (c / 1000 + 1) * 1000;
}

static int64_t seconds_env(const char *name, int64_t dflt) {
  const char *v = getenv(name);
  long long n = v ? strtoll(v, NULL, 10) : 0;
  return n > 0 ? n : dflt;
}

/* ---------------------------------------------------------------- exactly once */

/* Two schedulers at once, a 6-field cron spec firing every second: every
 * tick once. */
TEST_TIMEOUT(sched_two_schedulers_every_tick_once, 120) {
  env e;
  env_start(&e);
  char out[4096];
  ASSERT_EQ(RUN(out, "cron", "add", "every-second", "* * * * * *", "add", "1", "2"), 0);
  ASSERT_STR_CONTAINS(out, "every-second: next tick ");
  int64_t first = first_tick(&e, "every-second");
  pid_t a = SPAWN("a.log", "scheduler"), b = SPAWN("b.log", "scheduler");
  int64_t secs = seconds_env("GTASK_TEST_CRON_SECONDS", 8);
  test_sleep_ms(secs * 1000);
  ASSERT_EQ(kill(a, SIGTERM), 0);
  ASSERT_EQ(kill(b, SIGTERM), 0);
  ASSERT_EQ(reap(a, 10000), 0);
  ASSERT_EQ(reap(b, 10000), 0);
  size_t ticks = check_every_tick(&e, "default", "every-second", first);
  TEST_LOG("%zu ticks, each queued once", ticks);
  ASSERT_GE(ticks, (size_t)secs - 2);
  env_stop(&e);
}

/* Three schedulers, one killed with SIGKILL mid-run and started again, then
 * another killed for good: no tick lost, none doubled. */
TEST_TIMEOUT(sched_three_schedulers_kill9, 300) {
  env e;
  env_start(&e);
  char out[4096];
  ASSERT_EQ(RUN(out, "--queue", "q3", "cron", "add", "tick", "@every 1s", "echo", "x"), 0);
  int64_t first = first_tick(&e, "tick");
  int64_t total = seconds_env("GTASK_TEST_CRON_SECONDS", 12) * 1000;
  pid_t p[3];
  for (int k = 0; k < 3; k++) p[k] = SPAWN("s.log", "scheduler");
  int64_t t0 = test_now_ms();
  /* Kill one at a random moment within a tick, a few times. */
  while (test_now_ms() - t0 < total * 2 / 3) {
    test_sleep_ms(1500 + rand() % 1000);
    ASSERT_EQ(kill(p[0], SIGKILL), 0);
    ASSERT_EQ(reap(p[0], 10000), 128 + SIGKILL);
    test_sleep_ms(rand() % 1500);
    p[0] = SPAWN("s.log", "scheduler");
  }
  ASSERT_EQ(kill(p[1], SIGKILL), 0);
  ASSERT_EQ(reap(p[1], 10000), 128 + SIGKILL);
  test_sleep_ms(total - (test_now_ms() - t0) > 2000 ? total - (test_now_ms() - t0) : 2000);
  ASSERT_EQ(kill(p[0], SIGTERM), 0);
  ASSERT_EQ(kill(p[2], SIGTERM), 0);
  ASSERT_EQ(reap(p[0], 10000), 0);
  ASSERT_EQ(reap(p[2], 10000), 0);
  size_t ticks = check_every_tick(&e, "q3", "tick", first);
  TEST_LOG("%zu ticks, each queued once", ticks);
  ASSERT_GE(ticks, (size_t)(total / 1000) - 2);
  /* The last tick and its task are what `cron list` shows. */
  ASSERT_EQ(RUN(out, "--json", "cron", "list"), 0);
  json_t *j = json_loads(out, 0, NULL);
  ASSERT_NOT_NULL(j);
  char id[GTASK_ID_SIZE];
  gtask__cron_task_id("tick", first + (int64_t)(ticks - 1) * 1000, id);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "last_id")), id);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "queue")), "q3");
  ASSERT_GT(json_integer_value(json_object_get(j, "next_ms")), first + (int64_t)(ticks - 1) * 1000);
  json_decref(j);
  env_stop(&e);
}

static void *run_sched(void *arg) {
  ASSERT_OK(gtask_scheduler_run(arg));
  return NULL;
}

/* `gtask cron add --unique done` and `--delay` (the send options a tick
 * passes on), with a scheduler and no worker: the unique entry queues its
 * first tick and skips the next ones while that task waits (counted in
 * skipped); the delayed entry's ticks wait in the schedule, due an hour on. */
TEST_TIMEOUT(sched_cli_unique_and_delay, 60) {
  env e;
  env_start(&e);
  char out[4096];
  ASSERT_EQ(RUN(out, "--queue", "uq", "cron", "add", "once", "@every 1s", "echo", "hi", "--unique",
                "done"),
            0);
  ASSERT_EQ(RUN(out, "--queue", "dq", "cron", "add", "later", "@every 1s", "echo", "hi", "--delay",
                "1h"),
            0);
  redisReply *r = redisCommand(e.rc, "HGET gtask:cron once");
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  ASSERT_STR_CONTAINS(r->str, "\"u\":\"done\"");
  freeReplyObject(r);
  r = redisCommand(e.rc, "HGET gtask:cron later");
  ASSERT_NOT_NULL(r);
  ASSERT_STR_CONTAINS(r->str, "\"d\":3600000");
  freeReplyObject(r);
  gtask_scheduler *s = gtask_scheduler_new(e.broker, e.backend);
  ASSERT_NOT_NULL(s);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, run_sched, s), 0);
  WAIT_UNTIL(redis_int(&e, "HGET %s skipped", "gtask:{uq}:cron:once") >= 2 &&
                 redis_int(&e, "ZCARD %s", "gtask:{dq}:sched") >= 2,
             15000);
  gtask_scheduler_shutdown(s);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  gtask_scheduler_free(s);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{uq}:stream"), 1);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{dq}:stream"), 0);
  r = redisCommand(e.rc, "ZRANGE gtask:{dq}:sched 0 0 WITHSCORES");
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(r->elements, 2);
  ASSERT_GT(strtoll(r->element[1]->str, NULL, 10), gtask__now_ms() + 3500 * 1000);
  freeReplyObject(r);
  /* Once that task is final, the next tick is queued again. */
  size_t n;
  char(*ids)[GTASK_ID_SIZE] = stream_ids(&e, "uq", &n);
  ASSERT_EQ(n, 1);
  gtask_client *c = gtask_client_new(e.broker, e.backend);
  ASSERT_OK(gtask_client_set_queue(c, "uq"));
  ASSERT_OK(gtask_client_cancel(c, ids[0], NULL));
  gtask_client_free(c);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{uq}:stream"), 0);
  s = gtask_scheduler_new(e.broker, e.backend);
  ASSERT_NOT_NULL(s);
  ASSERT_EQ(pthread_create(&th, NULL, run_sched, s), 0);
  WAIT_UNTIL(redis_int(&e, "XLEN %s", "gtask:{uq}:stream") == 1, 15000);
  gtask_scheduler_shutdown(s);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  gtask_scheduler_free(s);
  char(*again)[GTASK_ID_SIZE] = stream_ids(&e, "uq", &n);
  ASSERT_EQ(n, 1);
  ASSERT_STR_NE(again[0], ids[0]);
  free(again);
  free(ids);
  env_stop(&e);
}

/* ---------------------------------------------------------------- in code, missed ticks */

/* Entries declared in code, as after 30 s of downtime (their last tick set
 * back): "skip" records the missed ticks as done without queueing them,
 * "latest" queues the latest missed one once; both then queue the ticks less
 * than GTASK__CRON_GRACE_MS late, and keep going.  Two in-process schedulers
 * declare the same entries. */
TEST_TIMEOUT(sched_code_entries_missed_ticks, 120) {
  env e;
  env_start(&e);
  int64_t now = gtask__now_ms();
  int64_t last = (now / 1000 - 30) * 1000;
  for (int k = 0; k < 2; k++) {
    redisReply *r = redisCommand(e.rc, "HSET gtask:{missed}:cron:%s last %lld",
                                 k ? "latest" : "skip", (long long)last);
    ASSERT_NOT_NULL(r);
    freeReplyObject(r);
  }
  gtask_send_conf *sc = gtask_send_conf_new("echo");
  ASSERT_OK(gtask_send_conf_set_queue(sc, "missed"));
  gtask_scheduler *s[2];
  pthread_t th[2];
  for (int k = 0; k < 2; k++) {
    ASSERT_NOT_NULL(s[k] = gtask_scheduler_new(e.broker, e.backend));
    ASSERT_OK(gtask_scheduler_set_registry(s[k], false));
    gtask_value v = gtask_str("hello");
    ASSERT_OK(gtask_scheduler_add(s[k], "skip", "@every 1s", NULL, GTASK_MISSED_SKIP, sc, &v, 1));
    ASSERT_OK(gtask_scheduler_add(s[k], "latest", "* * * * * *", "Europe/Berlin",
                                  GTASK_MISSED_LATEST, sc, &v, 1));
    ASSERT_ERR(gtask_scheduler_add(s[k], "skip", "@daily", NULL, 0, sc, NULL, 0), GTASK_EEXIST);
    ASSERT_EQ(pthread_create(&th[k], NULL, run_sched, s[k]), 0);
  }
  test_sleep_ms(2500);
  for (int k = 0; k < 2; k++) gtask_scheduler_shutdown(s[k]);
  for (int k = 0; k < 2; k++) {
    ASSERT_EQ(pthread_join(th[k], NULL), 0);
    ASSERT_OK(gtask_scheduler_add(s[k], "x", "@daily", NULL, 0, sc, NULL, 0)); /* stopped */
    gtask_scheduler_free(s[k]);
  }
  gtask_send_conf_free(sc);
  size_t n;
  char(*ids)[GTASK_ID_SIZE] = stream_ids(&e, "missed", &n);
  int64_t first[2];
  size_t count[2];
  for (int k = 0; k < 2; k++) {
    const char *name = k ? "latest" : "skip";
    char key[64];
    snprintf(key, sizeof(key), "gtask:{missed}:cron:%s", name);
    int64_t end = redis_int(&e, "HGET %s last", key);
    first[k] = 0;
    count[k] = 0;
    /* The ticks queued are one run without a gap, up to the last one. */
    for (int64_t t = last + 1000; t <= end; t += 1000) {
      char id[GTASK_ID_SIZE];
      size_t c;
      gtask__cron_task_id(name, t, id);
      has_id(ids, n, id, &c);
      ASSERT_LE(c, 1);
      if (c && !first[k]) first[k] = t;
      if (first[k] && !c) TEST_FAIL("%s: tick %lld missing", name, (long long)t);
      count[k] += c;
    }
    ASSERT_NE(first[k], 0);
    TEST_LOG("%s: first tick queued %lld ms before the start, %zu ticks", name,
             (long long)(now - first[k]), count[k]);
  }
  ASSERT_EQ(n, count[0] + count[1]);
  /* skip: the first tick queued was on time (at most 10 s late when the
   * schedulers started); latest: one missed tick before that, queued once. */
  ASSERT_LE(now - first[0], GTASK__CRON_GRACE_MS);
  ASSERT_GT(now - first[0], GTASK__CRON_GRACE_MS - 3000);
  ASSERT_GE(now - first[1], GTASK__CRON_GRACE_MS - 1000);
  ASSERT_LE(now - first[1], GTASK__CRON_GRACE_MS + 1000);
  /* (Each entry took its own "now": a second boundary between them moves
   * one by a second.) */
  ASSERT_GE(first[0] - first[1], 0);
  ASSERT_LE(first[0] - first[1], 2000);
  ASSERT_EQ(redis_int(&e, "HGET %s skipped", "gtask:{missed}:cron:skip"), 1);
  ASSERT_EQ(redis_int(&e, "HEXISTS %s skipped", "gtask:{missed}:cron:latest"), 0);
  free(ids);
  env_stop(&e);
}

/* A tick's task runs: a worker with an embedded scheduler. */
TEST_TIMEOUT(sched_worker_scheduler_runs_tasks, 120) {
  env e;
  env_start(&e);
  char out[8192];
  ASSERT_EQ(RUN(out, "cron", "add", "adder", "@every 1s", "add", "20", "22", "--timeout", "5s",
                "--retry", "1", "--retry-on", "timeout,error", "--missed", "latest", "--tz",
                "Australia/Sydney"),
            0);
  pid_t w = SPAWN("w.log", "worker", "--builtin", "--scheduler", "--concurrency", "2");
  char id[GTASK_ID_SIZE] = "";
  int64_t deadline = test_now_ms() + test_timeout_ms(20000);
  while (!id[0] && test_now_ms() < deadline) {
    test_sleep_ms(200);
    ASSERT_EQ(RUN(out, "cron", "list"), 0);
    char *tab = strrchr(out, '\t');
    if (tab && strlen(tab + 1) >= GTASK_ID_SIZE - 1 && tab[1] != '-')
      memcpy(id, tab + 1, GTASK_ID_SIZE - 1);
  }
  ASSERT_NE(id[0], '\0');
  ASSERT_STR_CONTAINS(out, "adder\t@every 1s\tAustralia/Sydney\tdefault\tadd\tlatest\t");
  /* cron next ENTRY: the stored entry's ticks, in its zone. */
  ASSERT_EQ(RUN(out, "cron", "next", "adder", "-n", "2"), 0);
  ASSERT_TRUE(strstr(out, "+10:00\n") || strstr(out, "+11:00\n"));
  ASSERT_EQ(RUN(out, "cron", "next", "nosuch"), 4);
  ASSERT_EQ(RUN(out, "result", id, "--wait", "10s"), 0);
  ASSERT_STR_EQ(out, "42\n");
  ASSERT_EQ(kill(w, SIGTERM), 0);
  ASSERT_EQ(reap(w, 15000), 0);
  /* Removed: no scheduler fires it any more; removing twice is exit 4. */
  ASSERT_EQ(RUN(out, "cron", "remove", "adder"), 0);
  ASSERT_STR_EQ(out, "removed adder\n");
  ASSERT_EQ(RUN(out, "cron", "remove", "adder"), 4);
  ASSERT_EQ(RUN(out, "cron", "list"), 0);
  ASSERT_STR_EQ(out, "");
  env_stop(&e);
}

/* ---------------------------------------------------------------- bad input */

/* A bad name, spec, zone, policy or argument: a clear error and nothing
 * stored, from the library and from the CLI (exit 2). */
TEST(sched_bad_input_stores_nothing) {
  env e;
  env_start(&e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  gtask_value bad_arg = gtask_int8(0);
  bad_arg.v.i = 300;
  struct {
    const char *name, *spec, *zone;
    int missed;
    const gtask_value *arg;
    const char *why;
  } bad[] = {
      {"x", "61 * * * *", NULL, 0, NULL, "minute field \"61\": 61 is out of range (0-59)"},
      {"x", "@every 0s", NULL, 0, NULL, "@every needs a duration"},
      {"x", "@daily", "Mars/Base", 0, NULL, "unknown time zone \"Mars/Base\""},
      {"x", "0 0 30 2 *", NULL, 0, NULL, "never fires"},
      {"bad name", "@daily", NULL, 0, NULL, "invalid periodic task name \"bad name\""},
      {"", "@daily", NULL, 0, NULL, "invalid periodic task name"},
      {"x", "@daily", NULL, 7, NULL, "missed policy 7"},
      {"x", "@daily", NULL, 0, &bad_arg, "argument 1"},
  };
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    int rc = gtask_client_cron_add(e.client, bad[k].name, bad[k].spec, bad[k].zone,
                                   (gtask_missed)bad[k].missed, sc, bad[k].arg, bad[k].arg ? 1 : 0);
    ASSERT_ERR(rc, bad[k].arg ? GTASK_ERANGE : GTASK_EINVAL);
    ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), bad[k].why);
  }
  ASSERT_ERR(gtask_client_cron_remove(e.client, "nope"), GTASK_ENOTFOUND);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(e.client), "no periodic task \"nope\"");
  char out[4096];
  ASSERT_EQ(RUN(out, "cron", "add", "x", "* * * *", "add"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "--tz", "Nowhere/Land"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "--missed", "sometimes"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "--retry-on", "sometimes"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "int8:300"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x y", "@daily", "add"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "--delay", "soon"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "--delay", "-1s"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "--unique", "0"), 2);
  ASSERT_EQ(RUN(out, "cron", "add", "x", "@daily", "add", "--unique", "sometimes"), 2);
  ASSERT_EQ(RUN(out, "cron", "next", "@daily", "--delay", "1s"), 2);
  ASSERT_EQ(redis_int(&e, "EXISTS %s", "gtask:cron"), 0);
  /* The in-memory broker keeps no schedules. */
  gtask_broker *mb = gtask_broker_memory_new();
  gtask_backend *mk = gtask_backend_memory_new();
  gtask_client *mc = gtask_client_new(mb, mk);
  ASSERT_ERR(gtask_client_cron_add(mc, "x", "@daily", NULL, 0, sc, NULL, 0), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(mc), "need a Redis broker");
  gtask_scheduler *s = gtask_scheduler_new(mb, mk);
  ASSERT_ERR(gtask_scheduler_run(s), GTASK_EINVAL);
  gtask_scheduler_free(s);
  gtask_client_free(mc);
  gtask_broker_free(mb);
  gtask_backend_free(mk);
  gtask_send_conf_free(sc);
  env_stop(&e);
}

/* A tick's task carries every run option of the entry's send conf (the
 * template is the message a send would queue): timeout, retries, the retry
 * policy, backoff; and a fresh creation time and expiry per tick. */
TEST(sched_tick_message_keeps_send_options) {
  gtask_send_conf *sc = gtask_send_conf_new("echo");
  ASSERT_OK(gtask_send_conf_set_timeout(sc, 1500));
  ASSERT_OK(gtask_send_conf_set_retry_num(sc, 4));
  ASSERT_OK(gtask_send_conf_set_retry_on(sc, GTASK_RETRY_ON_TIMEOUT | GTASK_RETRY_ON_ERROR));
  ASSERT_OK(gtask_send_conf_set_backoff(sc, 300, 9000));
  gtask_value v = gtask_str("x");
  gtask__sched_def d;
  ASSERT_OK(gtask__sched_def_make(&d, "opts", "@hourly", NULL, GTASK_MISSED_SKIP, sc, "default",
                                  &v, 1, 1000));
  char *json = NULL, *body = NULL;
  size_t len = 0, blen = 0;
  ASSERT_OK(gtask__sched_def_encode(&d, &json, &len));
  gtask__sched_def back;
  ASSERT_OK(gtask__sched_def_decode("opts", json, len, &back));
  char id[GTASK_ID_SIZE];
  gtask__cron_task_id("opts", 3600000, id);
  char ukey[65] = "x";
  ASSERT_OK(gtask__sched_body(&back, id, 5000, 60000, &body, &blen, ukey));
  ASSERT_STR_EQ(ukey, ""); /* no unique option */
  ASSERT_STR_CONTAINS(json, "\"v\":1"); /* no delay or unique: version 1 */
  gtask_task *t;
  char why[128];
  ASSERT_OK(gtask__task_decode_in(body, blen, id, "default", &t, why, sizeof(why)));
  ASSERT_STR_EQ(t->name, "echo");
  ASSERT_EQ(t->nargs, 1);
  ASSERT_STR_EQ(t->args[0].v.s.ptr, "x");
  ASSERT_EQ(t->timeout_ms, 1500);
  ASSERT_EQ(t->retry_max, 4);
  ASSERT_EQ(t->retry_on, GTASK_RETRY_ON_TIMEOUT | GTASK_RETRY_ON_ERROR);
  ASSERT_EQ(t->backoff_first_ms, 300);
  ASSERT_EQ(t->backoff_max_ms, 9000);
  ASSERT_EQ(t->created_ms, 5000);
  ASSERT_EQ(t->expires_ms, 65000);
  gtask__task_free(t);
  gtask__free(body);
  gtask__free(json);
  gtask__sched_def_clear(&back);
  gtask__sched_def_clear(&d);

  /* cron add --delay 90s --unique done: version 2, d and u; the expiry
   * counts from the due time, and the key is the content digest a unique
   * send of the same task computes. */
  ASSERT_OK(gtask_send_conf_set_delay(sc, 90000));
  ASSERT_OK(gtask_send_conf_set_unique(sc, GTASK_UNIQUE_UNTIL_DONE));
  ASSERT_OK(gtask__sched_def_make(&d, "opts", "@hourly", NULL, GTASK_MISSED_SKIP, sc, "default",
                                  &v, 1, 1000));
  ASSERT_OK(gtask__sched_def_encode(&d, &json, &len));
  ASSERT_STR_CONTAINS(json, "\"v\":2");
  ASSERT_STR_CONTAINS(json, "\"d\":90000");
  ASSERT_STR_CONTAINS(json, "\"u\":\"done\"");
  ASSERT_OK(gtask__sched_def_decode("opts", json, len, &back));
  ASSERT_EQ(back.delay_ms, 90000);
  ASSERT_EQ(back.unique_ms, GTASK_UNIQUE_UNTIL_DONE);
  ASSERT_OK(gtask__sched_body(&back, id, 5000, 60000, &body, &blen, ukey));
  char want[65];
  ASSERT_OK(gtask__unique_digest("echo", &v, 1, want));
  ASSERT_STR_EQ(ukey, want);
  ASSERT_OK(gtask__task_decode_in(body, blen, id, "default", &t, why, sizeof(why)));
  ASSERT_EQ(t->expires_ms, 5000 + 90000 + 60000);
  gtask__task_free(t);
  gtask__free(body);
  gtask__free(json);
  gtask__sched_def_clear(&back);
  gtask__sched_def_clear(&d);
  ASSERT_OK(gtask_send_conf_set_unique(sc, 30000));
  ASSERT_OK(gtask__sched_def_make(&d, "opts", "@hourly", NULL, GTASK_MISSED_SKIP, sc, "default",
                                  &v, 1, 1000));
  ASSERT_OK(gtask__sched_def_encode(&d, &json, &len));
  ASSERT_STR_CONTAINS(json, "\"u\":30000");
  gtask__free(json);
  gtask__sched_def_clear(&d);
  /* Stored definitions with bad options are refused, not fired without them. */
  static const char *const bad[] = {
      "{\"v\":2,\"spec\":\"@hourly\",\"tz\":\"UTC\",\"q\":\"default\",\"n\":\"echo\","
      "\"missed\":\"skip\",\"c\":1,\"m\":\"{}\",\"u\":\"sometimes\"}",
      "{\"v\":2,\"spec\":\"@hourly\",\"tz\":\"UTC\",\"q\":\"default\",\"n\":\"echo\","
      "\"missed\":\"skip\",\"c\":1,\"m\":\"{}\",\"d\":-5}",
      "{\"v\":3,\"spec\":\"@hourly\",\"tz\":\"UTC\",\"q\":\"default\",\"n\":\"echo\","
      "\"missed\":\"skip\",\"c\":1,\"m\":\"{}\"}"};
  for (size_t k = 0; k < 3; k++)
    ASSERT_ERR(gtask__sched_def_decode("opts", bad[k], strlen(bad[k]), &back), GTASK_EPROTO);
  /* Each tick has its own id: a conf with an id is refused. */
  ASSERT_OK(gtask_send_conf_set_id(sc, "0f8fad5b-d9cb-469f-a165-70867728950e"));
  ASSERT_ERR(gtask__sched_def_make(&d, "opts", "@hourly", NULL, GTASK_MISSED_SKIP, sc, "default",
                                   &v, 1, 1000),
             GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "id");
  gtask_send_conf_free(sc);
}

/* A task for gtask__cron_fire: id and body, due now, no unique key. */
#define CRON_TASK(i, m) (&(gtask__cron_task){.id = (i), .body = (m), .len = strlen(m)})

/* The script itself, at the wire level: a tick is done once; an older tick
 * after a newer one changes nothing; a skip marks without queueing; a state
 * key of the wrong type fails the call without queueing anything. */
TEST(sched_fire_script) {
  env e;
  env_start(&e);
  int64_t last;
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "n", 5000, CRON_TASK("id-5", "m5"), &last), 1);
  ASSERT_EQ(last, 5000);
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "n", 5000, CRON_TASK("id-5", "m5"), &last), 0);
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "n", 4000, CRON_TASK("id-4", "m4"), &last), 0);
  ASSERT_EQ(last, 5000);
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "n", 9000, NULL, &last), 1);
  ASSERT_EQ(last, 9000);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{w}:stream"), 1);
  ASSERT_EQ(redis_int(&e, "SISMEMBER gtask:{w}:pending %s", "id-5"), 1);
  ASSERT_EQ(redis_int(&e, "HGET %s skipped", "gtask:{w}:cron:n"), 1);
  ASSERT_EQ(redis_int(&e, "HGET %s at", "gtask:{w}:cron:n") > 0, 1);
  redisReply *r = redisCommand(e.rc, "SET gtask:{w}:cron:bad x");
  freeReplyObject(r);
  ASSERT_ERR(gtask__cron_fire(e.broker, true, "w", "bad", 1000, CRON_TASK("id-1", "m"), &last),
             GTASK_EREDIS);
  r = redisCommand(e.rc, "SET gtask:{v}:stream x");
  freeReplyObject(r);
  ASSERT_ERR(gtask__cron_fire(e.broker, true, "v", "n", 1000, CRON_TASK("id-1", "m"), &last),
             GTASK_EREDIS);
  ASSERT_EQ(redis_int(&e, "EXISTS %s", "gtask:{v}:cron:n"), 0);
  ASSERT_EQ(redis_int(&e, "EXISTS %s", "gtask:{v}:pending"), 0);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{w}:stream"), 1);
  env_stop(&e);
}

/* The send options a tick passes on (cron add --delay, --unique), at the
 * wire level: a delayed tick goes to the schedule; a unique key held (for
 * its TTL, or until its task is final) marks the tick done unqueued, counted
 * as skipped; a unique key of the wrong type changes nothing. */
TEST(sched_fire_script_delay_and_unique) {
  env e;
  env_start(&e);
  int64_t last, later = gtask__now_ms() + 60000;
  gtask__cron_task t = {.id = "id-a", .body = "ma", .len = 2, .due_ms = later};
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "d", 1000, &t, &last), 1);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{w}:stream"), 0);
  ASSERT_EQ(redis_int(&e, "ZSCORE gtask:{w}:sched %s", "id-ama"), later);
  ASSERT_EQ(redis_int(&e, "SISMEMBER gtask:{w}:pending %s", "id-a"), 1);

  /* A TTL key: held for its TTL, whatever the task's state. */
  gtask__cron_task u = {.id = "id-b", .body = "mb", .len = 2, .ukey = "k1", .unique_ms = 60000};
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "u", 1000, &u, &last), 1);
  ASSERT_EQ(redis_int(&e, "PTTL %s", "gtask:{w}:u:k1") > 50000, 1);
  u.id = "id-c";
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "u", 2000, &u, &last), 2);
  ASSERT_EQ(last, 2000); /* done, not queued */
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{w}:stream"), 1);
  ASSERT_EQ(redis_int(&e, "HGET %s skipped", "gtask:{w}:cron:u"), 1);
  ASSERT_EQ(redis_int(&e, "SISMEMBER gtask:{w}:pending %s", "id-c"), 0);

  /* Until done: held while the holder is pending or started, free once its
   * final state exists (the holder is read as a task id: UUIDs here). */
  gtask__cron_task d = {.id = "00000000-0000-4000-8000-00000000000d", .body = "md", .len = 2, .ukey = "k2",
                        .unique_ms = GTASK_UNIQUE_UNTIL_DONE};
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "x", 1000, &d, &last), 1);
  d.id = "00000000-0000-4000-8000-00000000000e";
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "x", 2000, &d, &last), 2);
  r_cmd(&e, "SREM gtask:{w}:pending 00000000-0000-4000-8000-00000000000d");
  r_cmd(&e, "HSET gtask:{w}:t:00000000-0000-4000-8000-00000000000d s STARTED");
  d.id = "00000000-0000-4000-8000-00000000000f";
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "x", 3000, &d, &last), 2);
  r_cmd(&e, "RPUSH gtask:{w}:n:00000000-0000-4000-8000-00000000000d done");
  d.id = "00000000-0000-4000-8000-000000000010";
  ASSERT_EQ(gtask__cron_fire(e.broker, true, "w", "x", 4000, &d, &last), 1);
  ASSERT_EQ(redis_int(&e, "SISMEMBER gtask:{w}:pending %s", "00000000-0000-4000-8000-000000000010"), 1);
  ASSERT_EQ(redis_int(&e, "HGET %s skipped", "gtask:{w}:cron:x"), 2);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{w}:stream"), 3);

  /* A unique key of the wrong type: an error, nothing changed. */
  r_cmd(&e, "HSET gtask:{w}:u:k3 a b");
  gtask__cron_task bad = {.id = "id-h", .body = "mh", .len = 2, .ukey = "k3", .unique_ms = 5000};
  ASSERT_ERR(gtask__cron_fire(e.broker, true, "w", "y", 1000, &bad, &last), GTASK_EREDIS);
  ASSERT_EQ(redis_int(&e, "EXISTS %s", "gtask:{w}:cron:y"), 0);
  ASSERT_EQ(redis_int(&e, "XLEN %s", "gtask:{w}:stream"), 3);
  ASSERT_EQ(redis_int(&e, "SISMEMBER gtask:{w}:pending %s", "id-h"), 0);
  env_stop(&e);
}
