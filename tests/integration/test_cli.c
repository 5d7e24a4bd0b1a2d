/* test_cli.c -- the `gtask` program (issue 4), driven as a user drives it: the
 * real binary (GTASK_CLI_PATH, set by tests/CMakeLists.txt) run as a child
 * process against a private redis-server, its stdout, stderr and exit code
 * checked.  Every row of the contract table, every exit code (0 ok, 1 FAILURE,
 * 2 usage, 3 wait timed out, 4 unknown id, 5 no redis), --json shapes (parsed
 * with jansson), the builtin tasks, --tasks FILE.so, the process pool, a
 * graceful shutdown on SIGTERM/SIGINT, and the dead set. */
#include "internal.h"
#include "cluster_fixture.h"
#include "http_client.h"
#include "redis_fixture.h"
#include "tls_fixture.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef GTASK_CLI_PATH
#error "GTASK_CLI_PATH must name the gtask binary (tests/CMakeLists.txt)"
#endif

/* ---------------------------------------------------------------- running the CLI */

typedef struct run_out {
  int code;       /* exit code; 128 + signal if killed */
  char out[65536];
  char err[16384];
  int64_t ms;     /* how long it took */
} run_out;

static void slurp(const char *path, char *buf, size_t size) {
  buf[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f) return;
  size_t n = fread(buf, 1, size - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* Starts the CLI with argv (NULL-terminated, without the program name),
 * stdout and stderr to the given files.  Returns its pid. */
static pid_t spawn(const char *const *args, const char *out_path, const char *err_path) {
  const char *argv[64];
  size_t n = 0;
  argv[n++] = GTASK_CLI_PATH;
  for (size_t k = 0; args[k]; k++) {
    ASSERT_LT(n, 63);
    argv[n++] = args[k];
  }
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fi = open("/dev/null", O_RDONLY);
    if (fo < 0 || fe < 0 || fi < 0) _exit(126);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    execv(GTASK_CLI_PATH, (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* Waits for pid up to ms; its exit code (128 + signal), or -1 on timeout. */
static int wait_exit(pid_t pid, int64_t ms) {
  int64_t deadline = test_now_ms() + ms;
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    ASSERT_NE(r, -1);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (test_now_ms() >= deadline) return -1;
    test_sleep_ms(10);
  }
}

/* Runs the CLI to completion (at most 30 s, scaled) into r.  Returns r->code. */
static int run_v(run_out *r, const char *const *args) {
  int64_t t0 = test_now_ms();
  pid_t pid = spawn(args, "cli.out", "cli.err");
  int code = wait_exit(pid, test_timeout_ms(30000));
  if (code < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    TEST_FAIL("gtask %s ... did not exit within 30 s", args[0] ? args[0] : "");
  }
  r->ms = test_now_ms() - t0;
  r->code = code;
  slurp("cli.out", r->out, sizeof(r->out));
  slurp("cli.err", r->err, sizeof(r->err));
  TEST_LOG("gtask %s%s%s ... -> %d; stdout: %.200s; stderr: %.300s", args[0] ? args[0] : "",
           args[0] && args[1] ? " " : "", args[0] && args[1] ? args[1] : "", code, r->out, r->err);
  return code;
}

#define RUN(r, ...) run_v((r), (const char *const[]){__VA_ARGS__, NULL})

/* A usage error: exit 2 and exactly one line on stderr, nothing on stdout. */
#define ASSERT_USAGE(r, ...)                                                   \
  do {                                                                         \
    ASSERT_EQ(RUN((r), __VA_ARGS__), 2);                                       \
    ASSERT_STR_EQ((r)->out, "");                                               \
    ASSERT_EQ(count_lines((r)->err), 1);                                       \
    ASSERT_STR_CONTAINS((r)->err, "gtask: ");                                  \
  } while (0)

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* The first line of s, without its newline, into buf. */
static const char *first_line(const char *s, char *buf, size_t size) {
  size_t n = strcspn(s, "\n");
  if (n >= size) n = size - 1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return buf;
}

/* ---------------------------------------------------------------- environment */

typedef struct env {
  gt_redis *redis;
  pid_t worker;
  char worker_log[64];
} env;

static void env_start(env *e) {
  memset(e, 0, sizeof(*e));
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  ASSERT_EQ(setenv("GTASK_REDIS_URL", gt_redis_url(e->redis), 1), 0);
}

/* Starts `gtask worker ARGS` in the background (stderr to worker.log). */
static void worker_start_v(env *e, const char *const *args) {
  const char *argv[32] = {"worker"};
  size_t n = 1;
  for (size_t k = 0; args[k]; k++) argv[n++] = args[k];
  argv[n] = NULL;
  snprintf(e->worker_log, sizeof(e->worker_log), "worker.log");
  e->worker = spawn(argv, "worker.out", e->worker_log);
}
#define WORKER_START(e, ...) worker_start_v((e), (const char *const[]){__VA_ARGS__, NULL})

/* Stops the worker with sig and checks that it exits 0 (a clean shutdown). */
static void worker_stop(env *e, int sig) {
  ASSERT_EQ(kill(e->worker, sig), 0);
  int code = wait_exit(e->worker, test_timeout_ms(15000));
  char log[16384];
  slurp(e->worker_log, log, sizeof(log));
  if (code != 0) TEST_LOG("worker log:\n%s", log);
  ASSERT_EQ(code, 0);
  ASSERT_STR_CONTAINS(log, "clean shutdown");
  e->worker = 0;
}

static void env_stop(env *e) {
  if (e->worker) worker_stop(e, SIGTERM);
  gt_redis_stop(e->redis);
}

/* A free loopback port with nothing listening (bound, then closed). */
static int closed_port(void) {
  gt_redis *r = gt_redis_start(NULL);
  ASSERT_NOT_NULL(r);
  int port = gt_redis_port(r);
  gt_redis_stop(r);
  return port;
}

/* Parses one JSON object line; the caller frees with json_decref. */
static json_t *json_line(const char *line) {
  json_error_t err;
  json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &err);
  if (!j) TEST_FAIL("not JSON: %s (%s)", line, err.text);
  ASSERT_TRUE(json_is_object(j));
  return j;
}

/* Checks the shape {"task_id","status","values","error","attempts"}. */
static json_t *json_result(const char *line, const char *status) {
  json_t *j = json_line(line);
  ASSERT_EQ(json_object_size(j), 5);
  ASSERT_TRUE(json_is_string(json_object_get(j, "task_id")));
  ASSERT_TRUE(gtask__id_valid(json_string_value(json_object_get(j, "task_id"))));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "status")), status);
  ASSERT_TRUE(json_is_array(json_object_get(j, "values")));
  json_t *err = json_object_get(j, "error");
  ASSERT_TRUE(json_is_null(err) || json_is_string(err));
  ASSERT_TRUE(json_is_integer(json_object_get(j, "attempts")));
  return j;
}

/* The id a plain `gtask send` printed. */
static void id_of(const run_out *r, char id[GTASK_ID_SIZE]) {
  ASSERT_EQ(strlen(r->out), GTASK_ID_SIZE); /* 36 characters and a newline */
  memcpy(id, r->out, GTASK_ID_SIZE - 1);
  id[GTASK_ID_SIZE - 1] = '\0';
  ASSERT_TRUE(gtask__id_valid(id));
}

/* ---------------------------------------------------------------- usage (exit 2) */

TEST(cli_help) {
  run_out *r = malloc(sizeof(*r));
  ASSERT_EQ(RUN(r, "--help"), 0);
  ASSERT_STR_CONTAINS(r->out, "usage: gtask");
  ASSERT_STR_CONTAINS(r->out, "exit codes");
  static const char *const cmds[] = {"worker", "send",      "status",  "result", "stats",
                                     "dead",   "scheduler", "version", "workers"};
  for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
    ASSERT_EQ(RUN(r, cmds[k], "--help"), 0);
    char want[64];
    snprintf(want, sizeof(want), "usage: gtask %s", cmds[k]);
    ASSERT_STR_CONTAINS(r->out, want);
    ASSERT_STR_EQ(r->err, "");
  }
  ASSERT_EQ(RUN(r, "-h"), 0);
  /* No command: the usage on stderr, exit 2. */
  ASSERT_EQ(run_v(r, (const char *const[]){NULL}), 2);
  ASSERT_STR_CONTAINS(r->err, "usage: gtask");
  free(r);
}

TEST(cli_usage_errors) {
  /* None of these needs (or reaches) Redis: usage errors come first. */
  ASSERT_EQ(setenv("GTASK_REDIS_URL", "redis://127.0.0.1:1/0", 1), 0);
  run_out *r = malloc(sizeof(*r));
  ASSERT_USAGE(r, "bogus");
  ASSERT_STR_CONTAINS(r->err, "unknown command \"bogus\"");
  ASSERT_USAGE(r, "--nope", "stats");
  ASSERT_USAGE(r, "stats", "--nope");
  ASSERT_USAGE(r, "--redis");
  /* send: missing name, bad ARGs, bad DURs, bad --retry */
  ASSERT_USAGE(r, "send");
  ASSERT_USAGE(r, "send", "add", "int8:300");
  ASSERT_STR_CONTAINS(r->err, "argument 1");
  ASSERT_USAGE(r, "send", "add", "1", "int64:abc");
  ASSERT_STR_CONTAINS(r->err, "argument 2");
  ASSERT_USAGE(r, "send", "add", "bool:maybe");
  ASSERT_USAGE(r, "send", "add", "uint8:-1");
  ASSERT_USAGE(r, "send", "add", "uint64:18446744073709551616");
  ASSERT_USAGE(r, "send", "add", "float32:1e40");
  ASSERT_USAGE(r, "send", "add", "float64:x");
  ASSERT_USAGE(r, "send", "add", "99999999999999999999");
  ASSERT_USAGE(r, "send", "add", "--timeout", "5");
  ASSERT_STR_CONTAINS(r->err, "bad duration \"5\"");
  ASSERT_USAGE(r, "send", "add", "--timeout", "1.5.s");
  ASSERT_USAGE(r, "send", "add", "--timeout", "-1s");
  ASSERT_USAGE(r, "send", "add", "--timeout", "2d");
  ASSERT_USAGE(r, "send", "add", "--timeout");
  ASSERT_USAGE(r, "send", "add", "--wait=5x");
  ASSERT_USAGE(r, "send", "add", "--retry", "-1");
  ASSERT_USAGE(r, "send", "add", "--retry", "x");
  ASSERT_USAGE(r, "send", "add", "--count", "0");
  ASSERT_USAGE(r, "send", "add", "1", "2", "--count", "2", "--wait");
  /* status, result */
  ASSERT_USAGE(r, "status");
  ASSERT_USAGE(r, "status", "a", "b");
  ASSERT_USAGE(r, "result");
  ASSERT_USAGE(r, "result", "2f1c0000-0000-4000-8000-000000000000", "--wait=soon");
  /* dead */
  ASSERT_USAGE(r, "dead");
  ASSERT_USAGE(r, "dead", "bogus");
  ASSERT_USAGE(r, "dead", "requeue");
  ASSERT_USAGE(r, "dead", "requeue", "2f1c0000-0000-4000-8000-000000000000", "--all");
  ASSERT_USAGE(r, "dead", "list", "extra");
  ASSERT_USAGE(r, "dead", "purge", "--all");
  /* worker */
  ASSERT_USAGE(r, "worker");
  ASSERT_STR_CONTAINS(r->err, "--builtin or --tasks");
  ASSERT_USAGE(r, "worker", "--builtin", "--pool", "fibers");
  ASSERT_USAGE(r, "worker", "--builtin", "--concurrency", "0");
  ASSERT_USAGE(r, "worker", "--builtin", "--concurrency", "many");
  ASSERT_USAGE(r, "worker", "--tasks", "no-such-file.so");
  ASSERT_STR_CONTAINS(r->err, "no-such-file.so");
  ASSERT_USAGE(r, "worker", "--builtin", "stray");
  /* the commands without options of their own (cli_scan_none) */
  static const char *const bare[] = {"scheduler", "version", "workers"};
  for (size_t k = 0; k < sizeof(bare) / sizeof(bare[0]); k++) {
    ASSERT_USAGE(r, bare[k], "extra");
    ASSERT_STR_CONTAINS(r->err, "unexpected argument \"extra\"");
    ASSERT_USAGE(r, bare[k], "--nope");
  }
  free(r);
}

/* Bad input found by a fault probe (issue 14).  Redis is unreachable in these:
 * usage errors come before any connection. */

/* A DUR-shaped value after --wait that is negative or too large is a bad
 * duration, not a task argument (which made `--wait -1s` wait for ever) nor an
 * unexpected argument; the same for --timeout. */
TEST(cli_bad_durations) {
  ASSERT_EQ(setenv("GTASK_REDIS_URL", "redis://127.0.0.1:1/0", 1), 0);
  run_out *r = malloc(sizeof(*r));
  const char *id = "2f1c0000-0000-4000-8000-000000000000";
  static const char *const bad_durs[] = {"-1s", "-0.5m", "-1ms", "+1s", "9999999999999h",
                                         "99999999999999999999999999999999999999999999ms"};
  for (size_t k = 0; k < sizeof(bad_durs) / sizeof(bad_durs[0]); k++) {
    char want[128];
    snprintf(want, sizeof(want), "bad duration \"%s\"", bad_durs[k]);
    ASSERT_USAGE(r, "send", "add", "--wait", bad_durs[k]);
    ASSERT_STR_CONTAINS(r->err, want);
    ASSERT_USAGE(r, "send", "add", "1", "--wait", bad_durs[k], "2");
    ASSERT_STR_CONTAINS(r->err, want);
    ASSERT_USAGE(r, "result", id, "--wait", bad_durs[k]);
    ASSERT_STR_CONTAINS(r->err, want);
    ASSERT_USAGE(r, "send", "add", "--timeout", bad_durs[k]);
    ASSERT_STR_CONTAINS(r->err, want);
  }
  ASSERT_USAGE(r, "send", "add", "--wait=-1s");
  ASSERT_STR_CONTAINS(r->err, "bad duration");
  ASSERT_USAGE(r, "result", id, "--wait=9999999999999h");
  ASSERT_STR_CONTAINS(r->err, "bad duration");
  free(r);
}

/* Queue names are checked before connecting, by every command; `stats` with a
 * bad one printed its table header first. */
TEST(cli_bad_queue_names) {
  ASSERT_EQ(setenv("GTASK_REDIS_URL", "redis://127.0.0.1:1/0", 1), 0);
  run_out *r = malloc(sizeof(*r));
  const char *id = "2f1c0000-0000-4000-8000-000000000000";
  ASSERT_USAGE(r, "stats", "a{b}");
  ASSERT_STR_CONTAINS(r->err, "invalid queue name \"a{b}\"");
  ASSERT_USAGE(r, "--json", "stats", "default", "a{b}");
  ASSERT_USAGE(r, "--queue", "bad queue!", "stats");
  ASSERT_USAGE(r, "send", "add", "--queue", "a{b}");
  ASSERT_USAGE(r, "status", id, "--queue", "a{b}");
  ASSERT_USAGE(r, "result", id, "--queue", "");
  ASSERT_USAGE(r, "dead", "list", "--queue", "a b");
  ASSERT_USAGE(r, "worker", "--builtin", "--queue", "a{b}");
  ASSERT_USAGE(r, "worker", "--builtin", "--queues", "high,a{b}");
  ASSERT_STR_CONTAINS(r->err, "invalid queue name \"a{b}\"");
  ASSERT_USAGE(r, "worker", "--builtin", "--queues", "high,,low");
  /* Weighted queues (issue 18): a weight of 0 or past 1000, weights on some
   * queues only, a queue twice. */
  ASSERT_USAGE(r, "worker", "--builtin", "--queues", "high:6,low:0");
  ASSERT_STR_CONTAINS(r->err, "bad weight in --queues entry \"low:0\" (an integer from 1 to 1000)");
  ASSERT_USAGE(r, "worker", "--builtin", "--queues", "high:1001");
  ASSERT_USAGE(r, "worker", "--builtin", "--queues", "high:6,low");
  ASSERT_STR_CONTAINS(r->err, "give every queue a weight");
  ASSERT_USAGE(r, "worker", "--builtin", "--queues", "high:6,low:1,high:2");
  ASSERT_STR_CONTAINS(r->err, "queue \"high\" is listed twice");
  ASSERT_USAGE(r, "worker", "--builtin", "--queues", "high:6,:1");
  ASSERT_USAGE(r, "worker", "--builtin", "--strict=yes");
  free(r);
}

/* A task name with a control character is refused at send time; a message that
 * quotes the command line stays on one line (control characters escaped). */
TEST(cli_bad_task_names) {
  ASSERT_EQ(setenv("GTASK_REDIS_URL", "redis://127.0.0.1:1/0", 1), 0);
  run_out *r = malloc(sizeof(*r));
  static const char *const bad_names[] = {"a\nb", "a\tb", "\r", "del\x7f", "bell\a"};
  for (size_t k = 0; k < sizeof(bad_names) / sizeof(bad_names[0]); k++) {
    ASSERT_USAGE(r, "send", bad_names[k], "1");
    ASSERT_STR_CONTAINS(r->err, "bad task name");
    ASSERT_STR_CONTAINS(r->err, "control character");
  }
  ASSERT_USAGE(r, "send", "a\nb");
  ASSERT_STR_CONTAINS(r->err, "\"a\\nb\""); /* quoted as a\nb, on one line */
  ASSERT_USAGE(r, "bo\ngus");
  ASSERT_STR_CONTAINS(r->err, "unknown command \"bo\\ngus\"");
  ASSERT_USAGE(r, "stats", "--no\npe");
  ASSERT_USAGE(r, "status", "a", "b\nc");
  ASSERT_USAGE(r, "stats", "x\ny");
  free(r);
}

/* The library refuses task names with control characters (issue 14): on the
 * send side and when registering a handler. */
/* gtask cron next (issue 19): N lines of ISO 8601 with the zone's offset;
 * bad specs and zones are usage errors.  No Redis needed. */
TEST(cli_cron_next) {
  run_out r;
  ASSERT_EQ(RUN(&r, "cron", "next", "0 0 29 2 *"), 0);
  ASSERT_EQ(count_lines(r.out), 5);
  char line[64];
  ASSERT_STR_CONTAINS(first_line(r.out, line, sizeof(line)), "-02-29T00:00:00Z");
  ASSERT_EQ(strlen(line), strlen("2028-02-29T00:00:00Z"));
  ASSERT_EQ(RUN(&r, "cron", "next", "-n", "2", "30 2 * * *", "--tz", "Europe/Berlin"), 0);
  ASSERT_EQ(count_lines(r.out), 2);
  ASSERT_STR_CONTAINS(r.out, "T0"); /* 02:30 or, on the spring-forward day, 03:00 */
  ASSERT_TRUE(strstr(r.out, ":00+01:00\n") || strstr(r.out, ":00+02:00\n"));
  ASSERT_EQ(RUN(&r, "--json", "cron", "next", "@every 90s", "-n", "1"), 0);
  json_t *j = json_line(r.out);
  ASSERT_EQ(json_integer_value(json_object_get(j, "ms")) % 90000, 0);
  ASSERT_STR_CONTAINS(json_string_value(json_object_get(j, "time")), "Z");
  json_decref(j);
  ASSERT_USAGE(&r, "cron", "next", "61 * * * *");
  ASSERT_STR_CONTAINS(r.err, "minute field \"61\": 61 is out of range (0-59)");
  ASSERT_USAGE(&r, "cron", "next", "@daily", "--tz", "Mars/Base");
  ASSERT_STR_CONTAINS(r.err, "unknown time zone \"Mars/Base\"");
  ASSERT_USAGE(&r, "cron", "next", "@daily", "-n", "0");
  ASSERT_USAGE(&r, "cron", "next");
  ASSERT_USAGE(&r, "cron", "frobnicate");
}

static int noop_handler(gtask_ctx *ctx, const gtask_value *args, size_t nargs, void *udata) {
  (void)ctx;
  (void)args;
  (void)nargs;
  (void)udata;
  return 0;
}

TEST(cli_task_name_control_characters) {
  gtask_broker *b = gtask_broker_memory_new();
  gtask_backend *k = gtask_backend_memory_new();
  ASSERT_NOT_NULL(b);
  ASSERT_NOT_NULL(k);
  gtask_server *s = gtask_server_new(b, k);
  ASSERT_NOT_NULL(s);
  static const char *const bad[] = {"a\nb", "a\tb", "\x01", "x\x1f", "del\x7f", "\r\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ASSERT_NULL(gtask_send_conf_new(bad[i]));
    ASSERT_STR_CONTAINS(gtask_last_error(), "control character");
    ASSERT_ERR(gtask_server_reg(s, bad[i], noop_handler, NULL), GTASK_EINVAL);
    ASSERT_STR_CONTAINS(gtask_server_errmsg(s), "control character");
  }
  /* Printable names, UTF-8 included, are fine. */
  static const char *const good[] = {"add", "a b", "x~", "caf\xc3\xa9", "a{b}"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    gtask_send_conf *sc = gtask_send_conf_new(good[i]);
    ASSERT_NOT_NULL(sc);
    gtask_send_conf_free(sc);
    ASSERT_OK(gtask_server_reg(s, good[i], noop_handler, NULL));
  }
  gtask_server_free(s);
  gtask_backend_free(k);
  gtask_broker_free(b);
}

/* With Redis reachable, a malformed id is a usage error too, and a bad queue
 * name. */
TEST(cli_usage_errors_needing_redis) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  ASSERT_USAGE(r, "status", "not-a-uuid");
  ASSERT_USAGE(r, "--queue", "bad queue!", "stats");
  ASSERT_USAGE(r, "--redis", "redis://host:notaport/0", "stats");
  /* A bad queue among good ones: no table header, no object first (issue 14). */
  ASSERT_USAGE(r, "stats", "a{b}");
  ASSERT_USAGE(r, "stats", "default", "a{b}");
  ASSERT_USAGE(r, "--json", "stats", "default", "a{b}");
  free(r);
  env_stop(&e);
}

/* ---------------------------------------------------------------- no redis (exit 5) */

TEST(cli_unreachable_redis) {
  int port = closed_port();
  char url[64], want[128];
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
  snprintf(want, sizeof(want), "gtask: cannot reach redis at redis://127.0.0.1:%d/0: ", port);
  ASSERT_EQ(setenv("GTASK_REDIS_URL", url, 1), 0);
  run_out *r = malloc(sizeof(*r));
  const char *id = "2f1c0000-0000-4000-8000-000000000000";
  const char *const cmds[][6] = {
      {"send", "add", "1", "2", NULL},
      {"send", "add", "1", "2", "--wait", NULL},
      {"status", id, NULL},
      {"result", id, "--wait", NULL},
      {"stats", NULL},
      {"dead", "list", NULL},
      {"dead", "requeue", "--all", NULL},
      {"dead", "purge", NULL},
      {"worker", "--builtin", NULL},
      {"--json", "stats", NULL},
  };
  for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
    ASSERT_EQ(run_v(r, cmds[k]), 5);
    ASSERT_STR_CONTAINS(r->err, want);
    ASSERT_EQ(count_lines(r->err), 1);
    ASSERT_LT(r->ms, test_timeout_ms(5000)); /* never a hang */
  }
  /* --redis wins over the environment; --backend is checked too. */
  ASSERT_EQ(setenv("GTASK_REDIS_URL", "redis://127.0.0.1:1/0", 1), 0);
  ASSERT_EQ(RUN(r, "--redis", url, "stats"), 5);
  ASSERT_STR_CONTAINS(r->err, want);
  env e;
  env_start(&e);
  ASSERT_EQ(RUN(r, "stats", "--backend", url), 5);
  ASSERT_STR_CONTAINS(r->err, want);
  free(r);
  env_stop(&e);
}

/* How many times needle occurs in hay. */
static size_t count_str(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* A refused login names the address once (issue 14): "gtask: redis at ADDR:
 * ... (WRONGPASS ...)", not "... (redis ADDR: WRONGPASS ...)". */
TEST(cli_auth_error) {
  gt_redis *redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(redis);
  /* Set after the start: the fixture's readiness PING has no password. */
  redisContext *c = gt_redis_connect(redis);
  ASSERT_NOT_NULL(c);
  redisReply *rep = redisCommand(c, "CONFIG SET requirepass x");
  ASSERT_NOT_NULL(rep);
  ASSERT_EQ(rep->type, REDIS_REPLY_STATUS);
  freeReplyObject(rep);
  redisFree(c);
  int port = gt_redis_port(redis);
  char addr[64], wrong[128], none[128], right[128];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(wrong, sizeof(wrong), "redis://:wrongpass@127.0.0.1:%d/0", port);
  snprintf(none, sizeof(none), "redis://127.0.0.1:%d/0", port);
  snprintf(right, sizeof(right), "redis://:x@127.0.0.1:%d/0", port);
  run_out *r = malloc(sizeof(*r));
  static const char *const cmds[][3] = {{"stats", NULL}, {"dead", "list", NULL},
                                        {"worker", "--builtin", NULL}};
  for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
    const char *args[6] = {"--redis", wrong, cmds[k][0], cmds[k][1], NULL};
    ASSERT_EQ(run_v(r, args), 1);
    ASSERT_STR_EQ(r->out, "");
    ASSERT_EQ(count_lines(r->err), 1);
    ASSERT_STR_CONTAINS(r->err, "WRONGPASS");
    ASSERT_EQ(count_str(r->err, addr), 1);
    ASSERT_TRUE(strstr(r->err, "wrongpass") == NULL); /* never the password */
  }
  ASSERT_EQ(RUN(r, "--redis", none, "stats"), 1);
  ASSERT_EQ(count_lines(r->err), 1);
  ASSERT_STR_CONTAINS(r->err, "NOAUTH");
  ASSERT_EQ(count_str(r->err, addr), 1);
  /* The backend's address when the backend is the one refused. */
  ASSERT_EQ(RUN(r, "--redis", right, "--backend", wrong, "stats"), 1);
  ASSERT_EQ(count_lines(r->err), 1);
  ASSERT_EQ(count_str(r->err, addr), 1);
  ASSERT_EQ(RUN(r, "--redis", right, "stats"), 0);

  /* The password without argv: --password-file (its first line), else
   * $GTASK_REDIS_PASSWORD; a password in the URL wins over both. */
  char pwfile[512];
  snprintf(pwfile, sizeof(pwfile), "%s/pw", test_tmpdir());
  FILE *f = fopen(pwfile, "w");
  ASSERT_NOT_NULL(f);
  fputs("x\n", f);
  fclose(f);
  ASSERT_EQ(RUN(r, "--redis", none, "--password-file", pwfile, "stats"), 0);
  ASSERT_EQ(RUN(r, "--redis", none, "--password-file", "/nonexistent/pw", "stats"), 2);
  ASSERT_STR_CONTAINS(r->err, "--password-file /nonexistent/pw");
  setenv("GTASK_REDIS_PASSWORD", "x", 1);
  ASSERT_EQ(RUN(r, "--redis", none, "stats"), 0);
  ASSERT_EQ(RUN(r, "--redis", wrong, "stats"), 1); /* the URL's wins */
  setenv("GTASK_REDIS_PASSWORD", "nope", 1);
  ASSERT_EQ(RUN(r, "--redis", none, "stats"), 1);
  ASSERT_STR_CONTAINS(r->err, "WRONGPASS");
  ASSERT_TRUE(strstr(r->err, "nope") == NULL);
  unsetenv("GTASK_REDIS_PASSWORD");
  free(r);
  gt_redis_stop(redis);
}

/* Redis lost while a command runs: exit 5, one line that names the address
 * once, and the address that failed: the backend's here (issue 14: it read
 * "cannot reach redis at BROKER: wait: cannot reach redis (redis BACKEND:
 * Connection refused)"). */
/* TLS from the command line: --tls-ca/--tls-cert/--tls-key or the URL's
 * parameters; a certificate problem exits 5 at once with the reason. */
TEST(cli_tls) {
  const char *why = gt_certs_missing_tool();
  if (why) SKIP("%s", why);
  const gt_certs *certs = gt_certs_make();
  ASSERT_NOT_NULL(certs);
  gt_redis *redis = gt_redis_start_tls(certs, NULL, NULL, "yes", NULL);
  ASSERT_NOT_NULL(redis);
  const char *url = gt_redis_tls_url(redis);
  run_out *r = malloc(sizeof(*r));
  ASSERT_EQ(RUN(r, "--redis", url, "--tls-ca", certs->ca, "--tls-cert", certs->client_cert,
                "--tls-key", certs->client_key, "stats"),
            0);
  ASSERT_STR_CONTAINS(r->out, "default");
  char full[1024];
  snprintf(full, sizeof(full), "%s?cacert=%s&cert=%s&key=%s", url, certs->ca, certs->client_cert,
           certs->client_key);
  ASSERT_EQ(RUN(r, "--redis", full, "stats"), 0);
  int64_t t0 = test_now_ms();
  ASSERT_EQ(RUN(r, "--redis", url, "--tls-ca", certs->other_ca, "--tls-cert", certs->client_cert,
                "--tls-key", certs->client_key, "stats"),
            5);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(3000));
  ASSERT_EQ(count_lines(r->err), 1);
  ASSERT_STR_CONTAINS(r->err, "server certificate rejected");
  ASSERT_EQ(RUN(r, "--redis", url, "--tls-ca", certs->ca, "stats"), 5); /* no client certificate */
  ASSERT_STR_CONTAINS(r->err, "client certificate");
  ASSERT_EQ(RUN(r, "--redis", url, "--tls-insecure", "--tls-cert", certs->client_cert, "--tls-key",
                certs->client_key, "stats"),
            0);
  ASSERT_STR_CONTAINS(r->err, "warning");
  ASSERT_STR_CONTAINS(r->err, "without certificate checks");
  ASSERT_EQ(RUN(r, "--redis", url, "--tls-cert", certs->client_cert, "stats"), 2);
  ASSERT_STR_CONTAINS(r->err, "go together");
  free(r);
  gt_redis_stop(redis);
}

TEST_TIMEOUT(cli_redis_lost_while_waiting, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], addr[64], backend[128];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", gt_redis_port(e.redis));
  snprintf(backend, sizeof(backend), "redis://%s/1", addr);
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--backend", backend), 0); /* no worker: PENDING */
  id_of(r, id);
  /* A wait outlives a Redis restart: it retries until its DUR is up. */
  pid_t pid = spawn((const char *const[]){"result", id, "--wait", "2s", "--backend", backend, NULL},
                    "wait.out", "wait.err");
  /* Until the command blocks in Redis, so that the loss is seen mid-command. */
  redisContext *c = gt_redis_connect(e.redis);
  ASSERT_NOT_NULL(c);
  for (int64_t end = test_now_ms() + test_timeout_ms(20000);; test_sleep_ms(20)) {
    redisReply *rep = redisCommand(c, "INFO clients");
    ASSERT_NOT_NULL(rep);
    bool blocked = rep->str && strstr(rep->str, "blocked_clients:1") != NULL;
    freeReplyObject(rep);
    if (blocked) break;
    ASSERT_LT(test_now_ms(), end);
  }
  redisFree(c);
  ASSERT_EQ(gt_redis_kill9(e.redis), 0);
  ASSERT_EQ(wait_exit(pid, test_timeout_ms(20000)), 5);
  char err[4096];
  slurp("wait.err", err, sizeof(err));
  TEST_LOG("stderr: %s", err);
  ASSERT_EQ(count_lines(err), 1);
  char want[256];
  snprintf(want, sizeof(want), "gtask: cannot reach redis at %s: ", backend);
  ASSERT_STR_CONTAINS(err, want);
  ASSERT_EQ(count_str(err, addr), 1);
  ASSERT_EQ(count_str(err, "cannot reach redis"), 1);
  free(r);
  env_stop(&e);
}

/* ---------------------------------------------------------------- send, status, result */

TEST_TIMEOUT(cli_send_wait_builtin, 120) {
  env e;
  env_start(&e);
  WORKER_START(&e, "--builtin", "--concurrency", "4");
  run_out *r = malloc(sizeof(*r));
  char line[4096];

  /* add(1, 2) -> 3 */
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--wait"), 0);
  ASSERT_STR_EQ(r->out, "3\n");
  ASSERT_EQ(RUN(r, "send", "add", "int32:-5", "int64:9223372036854775807", "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "9223372036854775802\n");

  /* echo: every type and the text forms of the contract. */
  ASSERT_EQ(RUN(r, "send", "echo", "0.1", "int8:-128", "uint64:18446744073709551615", "true",
                "bool:false", "float32:0.1", "float64:1e300", "-2.5", "42", "string:42", "hello",
                "string:", "http://x:1", "--wait", "10s"),
            0);
  ASSERT_STR_EQ(r->out, "0.1\n-128\n18446744073709551615\ntrue\nfalse\n0.1\n1e+300\n-2.5\n42\n42\n"
                        "hello\n\nhttp://x:1\n");

  /* --json send --wait prints the result object; values keep their JSON types. */
  ASSERT_EQ(RUN(r, "--json", "send", "echo", "1", "0.5", "bool:true", "a \"quoted\"\tstring",
                "--wait"),
            0);
  ASSERT_EQ(count_lines(r->out), 1);
  json_t *j = json_result(first_line(r->out, line, sizeof(line)), "SUCCESS");
  json_t *v = json_object_get(j, "values");
  ASSERT_EQ(json_array_size(v), 4);
  ASSERT_EQ(json_integer_value(json_array_get(v, 0)), 1);
  ASSERT_DBL_EQ(json_real_value(json_array_get(v, 1)), 0.5);
  ASSERT_TRUE(json_is_true(json_array_get(v, 2)));
  ASSERT_STR_EQ(json_string_value(json_array_get(v, 3)), "a \"quoted\"\tstring");
  ASSERT_TRUE(json_is_null(json_object_get(j, "error")));
  ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
  json_decref(j);

  /* fail -> exit 1 with the message. */
  ASSERT_EQ(RUN(r, "send", "fail", "it broke", "--wait"), 1);
  ASSERT_STR_EQ(r->out, "");
  ASSERT_STR_CONTAINS(r->err, "it broke");
  ASSERT_EQ(RUN(r, "--json", "send", "fail", "it broke", "--wait", "10s"), 1);
  j = json_result(first_line(r->out, line, sizeof(line)), "FAILURE");
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "error")), "it broke");
  ASSERT_EQ(json_array_size(json_object_get(j, "values")), 0);
  json_decref(j);

  /* A wait that runs out: exit 3, quickly. */
  ASSERT_EQ(RUN(r, "send", "sleep", "3000", "--wait", "300ms"), 3);
  ASSERT_LT(r->ms, test_timeout_ms(3000));
  ASSERT_STR_CONTAINS(r->err, "did not finish within 300ms");
  ASSERT_EQ(RUN(r, "--json", "send", "sleep", "3000", "--wait", "0.2s"), 3);
  j = json_line(first_line(r->out, line, sizeof(line)));
  const char *st = json_string_value(json_object_get(j, "status"));
  ASSERT_TRUE(strcmp(st, "PENDING") == 0 || strcmp(st, "STARTED") == 0);
  json_decref(j);

  /* Plain send: the id; then status, result, result --wait. */
  char id[GTASK_ID_SIZE];
  ASSERT_EQ(RUN(r, "send", "sleep", "400"), 0);
  id_of(r, id);
  ASSERT_EQ(RUN(r, "--json", "send", "add", "2", "2"), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_object_size(j), 1);
  ASSERT_TRUE(gtask__id_valid(json_string_value(json_object_get(j, "task_id"))));
  json_decref(j);
  ASSERT_EQ(RUN(r, "result", id, "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "400\n");
  ASSERT_EQ(RUN(r, "status", id), 0);
  ASSERT_STR_EQ(r->out, "SUCCESS\n");
  ASSERT_EQ(RUN(r, "--json", "status", id), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "status")), "SUCCESS");
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "task_id")), id);
  json_decref(j);
  ASSERT_EQ(RUN(r, "result", id), 0);
  ASSERT_STR_EQ(r->out, "400\n");
  /* --count: N ids, one per line, all run. */
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--count", "3"), 0);
  ASSERT_EQ(count_lines(r->out), 3);
  char ids3[3][GTASK_ID_SIZE];
  for (int k = 0; k < 3; k++) {
    memcpy(ids3[k], r->out + k * GTASK_ID_SIZE, GTASK_ID_SIZE - 1);
    ids3[k][GTASK_ID_SIZE - 1] = '\0';
    ASSERT_TRUE(gtask__id_valid(ids3[k]));
  }
  for (int k = 0; k < 3; k++) {
    ASSERT_EQ(RUN(r, "result", ids3[k], "--wait", "10s"), 0);
    ASSERT_STR_EQ(r->out, "3\n");
  }
  ASSERT_EQ(RUN(r, "result", "--json", id), 0); /* global options after the command too */
  j = json_result(first_line(r->out, line, sizeof(line)), "SUCCESS");
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "task_id")), id);
  json_decref(j);
  free(r);
  env_stop(&e);
}

TEST(cli_unknown_id) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE];
  gtask__uuid(id);
  ASSERT_EQ(RUN(r, "status", id), 4);
  ASSERT_STR_CONTAINS(r->err, id);
  ASSERT_EQ(count_lines(r->err), 1);
  ASSERT_EQ(RUN(r, "result", id), 4);
  ASSERT_EQ(RUN(r, "result", id, "--wait", "5s"), 4);
  ASSERT_LT(r->ms, test_timeout_ms(3000));
  ASSERT_EQ(RUN(r, "--json", "result", id, "--wait"), 4);
  ASSERT_STR_EQ(r->out, "");
  free(r);
  env_stop(&e);
}

/* Without a worker: PENDING, result not finished (3), then a worker runs it. */
TEST(cli_result_before_and_after) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], line[1024];
  ASSERT_EQ(RUN(r, "send", "add", "20", "22"), 0);
  id_of(r, id);
  ASSERT_EQ(RUN(r, "status", id), 0);
  ASSERT_STR_EQ(r->out, "PENDING\n");
  ASSERT_EQ(RUN(r, "result", id), 3);
  ASSERT_STR_CONTAINS(r->err, "PENDING");
  ASSERT_EQ(RUN(r, "--json", "result", id), 3);
  json_decref(json_result(first_line(r->out, line, sizeof(line)), "PENDING"));
  ASSERT_EQ(RUN(r, "result", id, "--wait", "300ms"), 3);
  ASSERT_GE(r->ms, 290);
  WORKER_START(&e, "--builtin");
  ASSERT_EQ(RUN(r, "result", id, "--wait"), 0);
  ASSERT_STR_EQ(r->out, "42\n");
  free(r);
  env_stop(&e);
}

/* send --id, --unique, --delay (issue 18): exit 7 and the existing id for a
 * duplicate; bad values are usage errors that send nothing. */
TEST_TIMEOUT(cli_send_id_unique_delay, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], line[1024];
  gtask__uuid(id);
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--id", id), 0);
  ASSERT_STR_EQ(first_line(r->out, line, sizeof(line)), id);
  ASSERT_EQ(RUN(r, "send", "add", "5", "5", "--id", id), 7);
  ASSERT_STR_EQ(first_line(r->out, line, sizeof(line)), id);
  ASSERT_STR_CONTAINS(r->err, "already exists");
  ASSERT_EQ(count_lines(r->err), 1);
  ASSERT_EQ(RUN(r, "--json", "send", "add", "--id", id), 7);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "task_id")), id);
  ASSERT_TRUE(json_is_true(json_object_get(j, "duplicate")));
  json_decref(j);
  ASSERT_USAGE(r, "send", "add", "--id", "not-a-uuid");
  ASSERT_USAGE(r, "send", "add", "--id", "0F8FAD5B-D9CB-469F-A165-70867728950E");
  ASSERT_USAGE(r, "send", "add", "--id", id, "--count", "2");
  ASSERT_USAGE(r, "send", "add", "--unique", "-1s");
  ASSERT_USAGE(r, "send", "add", "--unique", "0s");
  ASSERT_USAGE(r, "send", "add", "--unique", "sometimes");
  ASSERT_USAGE(r, "send", "add", "--delay", "-1s");

  /* --unique DUR: one of three identical sends is queued; --count reports the
   * duplicates by the id of the task they duplicate. */
  char first[GTASK_ID_SIZE];
  ASSERT_EQ(RUN(r, "send", "echo", "x", "--unique", "1h"), 0);
  id_of(r, first);
  ASSERT_EQ(RUN(r, "send", "echo", "x", "--unique", "1h"), 7);
  ASSERT_STR_EQ(first_line(r->out, line, sizeof(line)), first);
  ASSERT_EQ(RUN(r, "send", "echo", "x", "--unique", "1h", "--count", "3"), 7);
  ASSERT_EQ(count_lines(r->out), 3);
  ASSERT_EQ(count_str(r->out, first), 3);
  ASSERT_STR_CONTAINS(r->err, "3 of 3 tasks were duplicates");
  ASSERT_EQ(RUN(r, "send", "echo", "y", "--unique", "1h"), 0);

  /* --unique done: free again once the task has finished. */
  char held[GTASK_ID_SIZE];
  ASSERT_EQ(RUN(r, "send", "add", "7", "8", "--unique", "done", "--delay", "300ms"), 0);
  id_of(r, held);
  ASSERT_EQ(RUN(r, "status", held), 0);
  ASSERT_STR_EQ(r->out, "PENDING\n");
  ASSERT_EQ(RUN(r, "send", "add", "7", "8", "--unique", "done"), 7);
  ASSERT_EQ(RUN(r, "--json", "stats"), 0);
  ASSERT_STR_CONTAINS(r->out, "\"scheduled\":1");
  WORKER_START(&e, "--builtin");
  ASSERT_EQ(RUN(r, "result", held, "--wait", "20s"), 0);
  ASSERT_STR_EQ(r->out, "15\n");
  ASSERT_EQ(RUN(r, "send", "add", "7", "8", "--unique", "done", "--wait", "20s"), 0);
  ASSERT_STR_EQ(r->out, "15\n");
  worker_stop(&e, SIGTERM);
  free(r);
  env_stop(&e);
}

/* --retry-on (issue 18): a failing handler is retried when asked. */
TEST_TIMEOUT(cli_retry_on, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  ASSERT_USAGE(r, "send", "fail", "x", "--retry-on", "sometimes");
  ASSERT_USAGE(r, "send", "fail", "x", "--retry-on", "error,error");
  ASSERT_USAGE(r, "send", "fail", "x", "--retry-on", "");
  ASSERT_USAGE(r, "send", "fail", "x", "--retry-on", "timeout,");
  WORKER_START(&e, "--builtin");
  char line[1024];
  ASSERT_EQ(RUN(r, "--json", "send", "fail", "boom", "--retry", "2", "--wait", "20s"), 1);
  json_t *j = json_result(first_line(r->out, line, sizeof(line)), "FAILURE");
  ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
  json_decref(j);
  ASSERT_EQ(RUN(r, "--json", "send", "fail", "boom", "--retry", "2", "--retry-on",
                "timeout,error", "--wait", "20s"), 1);
  j = json_result(first_line(r->out, line, sizeof(line)), "FAILURE");
  ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 3);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "error")), "boom");
  json_decref(j);
  worker_stop(&e, SIGTERM);
  free(r);
  env_stop(&e);
}

/* The pending count of queue "default", from `gtask --json stats`. */
static json_int_t pending_default(run_out *r) {
  char line[1024];
  ASSERT_EQ(RUN(r, "--json", "stats", "default"), 0);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  json_int_t n = json_integer_value(json_object_get(j, "pending"));
  json_decref(j);
  return n;
}

/* --priority N (issue 18): 0, 1 or 2; anything else is a usage error that
 * queues nothing.  `gtask inspect queue` lists the urgent task first and
 * says its level; a worker runs it first. */
TEST_TIMEOUT(cli_send_priority, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  static const char *const bad[] = {"3", "x", "-1", "", "1.5", "2x"};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    ASSERT_USAGE(r, "send", "add", "1", "2", "--priority", bad[k]);
    ASSERT_STR_CONTAINS(r->err, "--priority");
  }
  ASSERT_EQ(pending_default(r), 0);
  char plain[GTASK_ID_SIZE], urgent[GTASK_ID_SIZE], line[1024];
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--priority", "0"), 0);
  id_of(r, plain);
  ASSERT_EQ(RUN(r, "send", "add", "3", "4", "--priority", "2"), 0);
  id_of(r, urgent);
  ASSERT_EQ(pending_default(r), 2);
  ASSERT_EQ(RUN(r, "inspect", "queue", "default"), 0);
  ASSERT_EQ(count_lines(r->out), 2);
  first_line(r->out, line, sizeof(line));
  ASSERT_EQ(strncmp(line, urgent, GTASK_ID_SIZE - 1), 0); /* highest level first */
  ASSERT_STR_CONTAINS(line, "\tpriority 2");
  ASSERT_NULL(strstr(strchr(r->out, '\n') + 1, "priority")); /* level 0: the line as before */
  ASSERT_EQ(RUN(r, "--json", "inspect", "queue", "default"), 0);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_integer_value(json_object_get(j, "priority")), 2);
  json_decref(j);
  ASSERT_EQ(RUN(r, "inspect", "task", urgent), 0);
  ASSERT_STR_CONTAINS(r->out, "priority\t2\n");
  /* Pages of one: the urgent task, then (its cursor names level 2) the plain
   * one, then nothing. */
  ASSERT_EQ(RUN(r, "inspect", "queue", "default", "--limit", "1"), 0);
  ASSERT_EQ(strncmp(r->out, urgent, GTASK_ID_SIZE - 1), 0);
  const char *next = strstr(r->out, "next\t");
  ASSERT_NOT_NULL(next);
  char cursor[80];
  first_line(next + 5, cursor, sizeof(cursor));
  ASSERT_EQ(strncmp(cursor, "2:", 2), 0);
  ASSERT_EQ(RUN(r, "inspect", "queue", "default", "--limit", "1", "--after", cursor), 0);
  ASSERT_EQ(strncmp(r->out, plain, GTASK_ID_SIZE - 1), 0);
  next = strstr(r->out, "next\t");
  ASSERT_NOT_NULL(next);
  first_line(next + 5, cursor, sizeof(cursor));
  ASSERT_EQ(RUN(r, "inspect", "queue", "default", "--limit", "1", "--after", cursor), 0);
  ASSERT_STR_EQ(r->out, "");
  ASSERT_USAGE(r, "inspect", "queue", "default", "--after", "3:1-0");
  ASSERT_USAGE(r, "inspect", "queue", "default", "--after", "2:x");
  WORKER_START(&e, "--builtin", "--concurrency", "1");
  ASSERT_EQ(RUN(r, "result", plain, "--wait", "20s"), 0);
  ASSERT_EQ(RUN(r, "--json", "result", urgent), 0);
  ASSERT_STR_CONTAINS(r->out, "SUCCESS");
  ASSERT_EQ(RUN(r, "send", "--help"), 0);
  ASSERT_STR_CONTAINS(r->out, "--priority N");
  worker_stop(&e, SIGTERM);
  free(r);
  env_stop(&e);
}

/* gtask failed list, gtask rerun ID, worker --failed-retention (issue 18). */
TEST_TIMEOUT(cli_failed_and_rerun, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], ok[GTASK_ID_SIZE], line[1024];
  ASSERT_USAGE(r, "failed");
  ASSERT_USAGE(r, "failed", "purge");
  ASSERT_USAGE(r, "rerun");
  ASSERT_USAGE(r, "worker", "--builtin", "--failed-retention", "forever");
  ASSERT_EQ(RUN(r, "rerun", "not-a-task-id"), 2);
  WORKER_START(&e, "--builtin");
  ASSERT_EQ(RUN(r, "send", "fail", "bad\nthing"), 0);
  id_of(r, id);
  ASSERT_EQ(RUN(r, "result", id, "--wait", "20s"), 1);
  ASSERT_EQ(RUN(r, "failed", "list"), 0);
  char want[256];
  snprintf(want, sizeof(want), "%s\tfail\tbad\\nthing\n", id);
  ASSERT_STR_EQ(r->out, want);
  ASSERT_EQ(RUN(r, "--json", "failed", "list"), 0);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "task_id")), id);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "error")), "bad\nthing");
  json_decref(j);
  ASSERT_EQ(RUN(r, "dead", "list"), 0);
  ASSERT_STR_EQ(r->out, "");

  ASSERT_EQ(RUN(r, "rerun", id), 0);
  ASSERT_STR_EQ(first_line(r->out, line, sizeof(line)), id);
  ASSERT_EQ(RUN(r, "--json", "result", id, "--wait", "20s"), 1);
  j = json_result(first_line(r->out, line, sizeof(line)), "FAILURE");
  ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1); /* fresh attempts */
  json_decref(j);
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--wait", "20s"), 0);
  ASSERT_EQ(RUN(r, "send", "add", "1", "2"), 0);
  id_of(r, ok);
  ASSERT_EQ(RUN(r, "result", ok, "--wait", "20s"), 0);
  ASSERT_EQ(RUN(r, "rerun", ok), 1);
  ASSERT_STR_CONTAINS(r->err, "SUCCESS");
  char unknown[GTASK_ID_SIZE];
  gtask__uuid(unknown);
  ASSERT_EQ(RUN(r, "rerun", unknown), 4);

  /* A worker that keeps no failed task. */
  worker_stop(&e, SIGTERM);
  WORKER_START(&e, "--builtin", "--failed-retention", "0s");
  ASSERT_EQ(RUN(r, "send", "fail", "x", "--wait", "20s"), 1);
  ASSERT_EQ(RUN(r, "failed", "list"), 0);
  ASSERT_EQ(count_lines(r->out), 1); /* the first one, run again, only */
  worker_stop(&e, SIGTERM);
  free(r);
  env_stop(&e);
}

/* gtask cancel ID (issue 18): a queued task removed, a running one told to
 * stop; CANCELLED in status and result; exit codes. */
TEST_TIMEOUT(cli_cancel, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], line[1024], want[256];
  ASSERT_USAGE(r, "cancel");
  ASSERT_EQ(RUN(r, "cancel", "not-a-task-id"), 2);
  ASSERT_STR_CONTAINS(r->err, "not a task id");
  char unknown[GTASK_ID_SIZE];
  gtask__uuid(unknown);
  ASSERT_EQ(RUN(r, "cancel", unknown), 4);

  /* Queued (no worker yet): removed. */
  ASSERT_EQ(RUN(r, "send", "add", "1", "2"), 0);
  id_of(r, id);
  ASSERT_EQ(RUN(r, "cancel", id), 0);
  snprintf(want, sizeof(want), "%s cancelled\n", id);
  ASSERT_STR_EQ(r->out, want);
  ASSERT_EQ(RUN(r, "status", id), 0);
  ASSERT_STR_EQ(r->out, "CANCELLED\n");
  ASSERT_EQ(RUN(r, "--json", "status", id), 0);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "status")), "CANCELLED");
  json_decref(j);
  ASSERT_EQ(RUN(r, "result", id), 1);
  ASSERT_STR_CONTAINS(r->err, "cancelled");
  ASSERT_EQ(RUN(r, "cancel", id), 1); /* final already */
  ASSERT_STR_CONTAINS(r->err, "CANCELLED");
  /* Counted: the last column of gtask stats (and "cancelled" with --json). */
  ASSERT_EQ(RUN(r, "stats"), 0);
  ASSERT_STR_CONTAINS(r->out, "default");
  ASSERT_STR_CONTAINS(r->out, " paused  cancelled\n");
  ASSERT_STR_CONTAINS(r->out, "     no          1\n");

  /* Running: told to stop; the worker runs on. */
  WORKER_START(&e, "--builtin");
  ASSERT_EQ(RUN(r, "send", "sleep", "30000"), 0);
  id_of(r, id);
  WAIT_UNTIL(RUN(r, "status", id) == 0 && strcmp(r->out, "STARTED\n") == 0, 10000);
  ASSERT_EQ(RUN(r, "--json", "cancel", id), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "task_id")), id);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "status")), "CANCELLED");
  ASSERT_TRUE(json_is_true(json_object_get(j, "running")));
  json_decref(j);
  ASSERT_EQ(RUN(r, "--json", "result", id, "--wait", "5s"), 1);
  j = json_result(first_line(r->out, line, sizeof(line)), "CANCELLED");
  json_decref(j);
  /* The worker is free again at once (the sleep saw the cancel). */
  ASSERT_EQ(RUN(r, "send", "add", "2", "3", "--wait", "3s"), 0);
  ASSERT_STR_EQ(r->out, "5\n");
  ASSERT_EQ(RUN(r, "cancel", id), 1);
  ASSERT_EQ(RUN(r, "--json", "stats"), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_integer_value(json_object_get(j, "cancelled")), 2);
  ASSERT_EQ(json_integer_value(json_object_get(j, "failed")), 0);
  json_decref(j);
  worker_stop(&e, SIGTERM);
  free(r);
  env_stop(&e);
}

/* Runs the CLI with stdout and stderr on a pseudo-terminal (at most 30 s,
 * scaled); what it wrote, into out.  Returns its exit code. */
static int run_pty(char *out, size_t size, const char *const *args) {
  const char *argv[64];
  size_t n = 0;
  argv[n++] = GTASK_CLI_PATH;
  for (size_t k = 0; args[k]; k++) argv[n++] = args[k];
  argv[n] = NULL;
  fflush(NULL);
  int master = -1;
  pid_t pid = forkpty(&master, NULL, NULL, NULL);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execv(GTASK_CLI_PATH, (char *const *)argv);
    _exit(127);
  }
  size_t len = 0;
  int64_t deadline = test_now_ms() + test_timeout_ms(30000);
  for (;;) {
    struct pollfd p = {.fd = master, .events = POLLIN};
    if (poll(&p, 1, 100) > 0) {
      ssize_t r = read(master, out + len, size - 1 - len);
      if (r <= 0) break; /* EIO: the child closed the terminal */
      len += (size_t)r;
    }
    if (test_now_ms() > deadline) {
      kill(pid, SIGKILL);
      break;
    }
  }
  out[len] = '\0';
  close(master);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Progress (issue 18): `gtask status` shows it, `gtask result --wait` draws
 * a bar on a terminal and plain lines on stderr otherwise. */
TEST_TIMEOUT(cli_progress, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], line[1024];
  WORKER_START(&e, "--builtin");
  /* Not a terminal: lines on stderr, the result alone on stdout. */
  ASSERT_EQ(RUN(r, "send", "sleep", "4000"), 0);
  id_of(r, id);
  WAIT_UNTIL(RUN(r, "status", id) == 0 && strstr(r->out, "progress ") != NULL, 10000);
  ASSERT_TRUE(strncmp(r->out, "STARTED\nprogress ", 17) == 0);
  ASSERT_STR_CONTAINS(r->out, "/4000 (");
  ASSERT_STR_CONTAINS(r->out, "%) sleeping\n");
  ASSERT_EQ(RUN(r, "--json", "status", id), 0);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_integer_value(json_object_get(j, "progress_total")), 4000);
  ASSERT_TRUE(json_integer_value(json_object_get(j, "progress_done")) > 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "progress_message")), "sleeping");
  json_decref(j);
  ASSERT_EQ(RUN(r, "result", id, "--wait", "20s"), 0);
  ASSERT_STR_EQ(r->out, "4000\n");
  ASSERT_STR_CONTAINS(r->err, "gtask: progress ");
  ASSERT_STR_CONTAINS(r->err, "/4000 (");
  ASSERT_EQ(RUN(r, "status", id), 0);
  ASSERT_STR_EQ(r->out, "SUCCESS\n"); /* a final state drops the progress */

  /* A terminal: one line redrawn (\r), then the result in its place. */
  char *tty = malloc(65536);
  ASSERT_EQ(run_pty(tty, 65536, (const char *const[]){"send", "sleep", "3000", "--wait", "20s", NULL}), 0);
  ASSERT_STR_CONTAINS(tty, "\r[");
  ASSERT_STR_CONTAINS(tty, "#");
  ASSERT_STR_CONTAINS(tty, "/3000 (");
  ASSERT_STR_CONTAINS(tty, "sleeping");
  ASSERT_STR_CONTAINS(tty, "\r\033[K3000");
  ASSERT_NULL(strstr(tty, "gtask: progress")); /* no plain lines */
  free(tty);
  worker_stop(&e, SIGTERM);
  free(r);
  env_stop(&e);
}

/* The paused column of `gtask stats`'s first queue line: its 8th field (a
 * column after it, cancelled, came later: scripts read it by position). */
static const char *stats_paused_column(const char *out) {
  static char field[16];
  const char *line = strchr(out, '\n');
  field[0] = '\0';
  if (line && sscanf(line + 1, "%*s %*s %*s %*s %*s %*s %*s %15s", field) != 1) field[0] = '\0';
  return field;
}

/* gtask queue pause|resume NAME (issue 18), seen by `gtask stats`. */
TEST_TIMEOUT(cli_queue_pause_resume, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], line[1024];
  ASSERT_USAGE(r, "queue");
  ASSERT_USAGE(r, "queue", "pause");
  ASSERT_USAGE(r, "queue", "stop", "default");
  ASSERT_USAGE(r, "queue", "pause", "bad name");
  ASSERT_USAGE(r, "queue", "pause", "a", "b");
  WORKER_START(&e, "--builtin");
  ASSERT_EQ(RUN(r, "queue", "pause", "default"), 0);
  ASSERT_STR_EQ(r->out, "paused default\n");
  ASSERT_EQ(RUN(r, "stats"), 0);
  ASSERT_STR_CONTAINS(r->out, "paused");
  ASSERT_STR_EQ(stats_paused_column(r->out), "yes");
  ASSERT_EQ(RUN(r, "--json", "stats"), 0);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_TRUE(json_is_true(json_object_get(j, "paused")));
  json_decref(j);
  test_sleep_ms(1000); /* the worker sees the pause within a second */
  ASSERT_EQ(RUN(r, "send", "add", "2", "3"), 0); /* sends still queue */
  id_of(r, id);
  ASSERT_EQ(RUN(r, "result", id, "--wait", "700ms"), 3);
  ASSERT_EQ(RUN(r, "status", id), 0);
  ASSERT_STR_EQ(r->out, "PENDING\n");
  ASSERT_EQ(RUN(r, "--json", "queue", "resume", "default"), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_TRUE(json_is_false(json_object_get(j, "paused")));
  json_decref(j);
  ASSERT_EQ(RUN(r, "result", id, "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "5\n");
  ASSERT_EQ(RUN(r, "stats"), 0);
  ASSERT_STR_EQ(stats_paused_column(r->out), "no");
  worker_stop(&e, SIGTERM);
  free(r);
  env_stop(&e);
}

/* A task that times out is retried, then fails: statuses and attempts. */
TEST_TIMEOUT(cli_timeout_retry, 120) {
  env e;
  env_start(&e);
  WORKER_START(&e, "--builtin");
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], line[1024];
  ASSERT_EQ(RUN(r, "send", "sleep", "5000", "--timeout", "300ms", "--retry", "1"), 0);
  id_of(r, id);
  /* It is seen in RETRY between its two runs (backoff about 1 s). */
  bool saw_retry = false;
  for (int64_t end = test_now_ms() + test_timeout_ms(10000); test_now_ms() < end && !saw_retry;) {
    ASSERT_EQ(RUN(r, "status", id), 0);
    saw_retry = strcmp(r->out, "RETRY\n") == 0;
    if (strcmp(r->out, "FAILURE\n") == 0) break;
    test_sleep_ms(50);
  }
  ASSERT_TRUE(saw_retry);
  ASSERT_EQ(RUN(r, "--json", "result", id, "--wait", "20s"), 1);
  json_t *j = json_result(first_line(r->out, line, sizeof(line)), "FAILURE");
  ASSERT_STR_CONTAINS(json_string_value(json_object_get(j, "error")), "timeout");
  ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 2);
  json_decref(j);
  free(r);
  env_stop(&e);
}

/* ---------------------------------------------------------------- worker */

TEST_TIMEOUT(cli_worker_graceful_shutdown, 120) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE];
  static const int sigs[] = {SIGTERM, SIGINT};
  for (size_t k = 0; k < 2; k++) {
    WORKER_START(&e, "--builtin", "--concurrency", "2");
    ASSERT_EQ(RUN(r, "send", "sleep", "800"), 0);
    id_of(r, id);
    for (int64_t end = test_now_ms() + test_timeout_ms(10000);; test_sleep_ms(20)) {
      ASSERT_EQ(RUN(r, "status", id), 0);
      if (strcmp(r->out, "STARTED\n") == 0) break;
      ASSERT_LT(test_now_ms(), end);
    }
    worker_stop(&e, sigs[k]); /* exit 0 ... */
    ASSERT_EQ(RUN(r, "result", id), 0); /* ... after the running task finished */
    ASSERT_STR_EQ(r->out, "800\n");
  }
  free(r);
  env_stop(&e);
}

TEST_TIMEOUT(cli_worker_tasks_so, 60) {
#ifndef GTASK_EXAMPLE_TASKS_PATH
  SKIP("examples are not built (GTASK_EXAMPLES=OFF)");
#else
  env e;
  env_start(&e);
  WORKER_START(&e, "--tasks", GTASK_EXAMPLE_TASKS_PATH, "--builtin");
  run_out *r = malloc(sizeof(*r));
  ASSERT_EQ(RUN(r, "send", "mul", "6", "7", "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "42\n");
  ASSERT_EQ(RUN(r, "send", "concat", "foo", "bar", "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "foobar\n");
  ASSERT_EQ(RUN(r, "send", "concat", "foo", "1", "--wait", "10s"), 1);
  ASSERT_STR_CONTAINS(r->err, "not a string");
  ASSERT_EQ(RUN(r, "send", "add", "1", "1", "--wait", "10s"), 0); /* with --builtin */
  ASSERT_STR_EQ(r->out, "2\n");
  free(r);
  env_stop(&e);
#endif
}

/* A shared object without the registration function is refused. */
TEST(cli_worker_tasks_without_register) {
  run_out *r = malloc(sizeof(*r));
  char lib[256];
  /* The CLI's own directory has libgtask.so: a shared object, but no tasks. */
  snprintf(lib, sizeof(lib), "%s", GTASK_CLI_PATH);
  char *slash = strrchr(lib, '/');
  ASSERT_NOT_NULL(slash);
  snprintf(slash + 1, sizeof(lib) - (size_t)(slash + 1 - lib), "libgtask.so");
  ASSERT_USAGE(r, "worker", "--tasks", lib);
  ASSERT_STR_CONTAINS(r->err, "gtask_tasks_register");
  free(r);
}

TEST_TIMEOUT(cli_procs_pool_crash, 120) {
  env e;
  env_start(&e);
  WORKER_START(&e, "--builtin", "--pool", "procs", "--concurrency", "2");
  run_out *r = malloc(sizeof(*r));
  ASSERT_EQ(RUN(r, "send", "crash", "--wait", "20s"), 1);
  ASSERT_STR_CONTAINS(r->err, "SIGSEGV");
  /* The worker keeps going. */
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--wait", "20s"), 0);
  ASSERT_STR_EQ(r->out, "3\n");
  ASSERT_EQ(waitpid(e.worker, NULL, WNOHANG), 0);
  free(r);
  env_stop(&e);
}

/* --queue and --queues, --backend on another database. */
TEST_TIMEOUT(cli_queues_and_backend, 60) {
  env e;
  env_start(&e);
  char backend[128];
  snprintf(backend, sizeof(backend), "%.*s1", (int)strlen(gt_redis_url(e.redis)) - 1,
           gt_redis_url(e.redis)); /* ".../0" -> ".../1" */
  WORKER_START(&e, "--builtin", "--queues", "high,low", "--backend", backend);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE];
  ASSERT_EQ(RUN(r, "--queue", "low", "--backend", backend, "send", "add", "1", "1", "--wait",
                "10s"),
            0);
  ASSERT_STR_EQ(r->out, "2\n");
  ASSERT_EQ(RUN(r, "send", "add", "2", "2", "--queue", "high", "--backend", backend), 0);
  id_of(r, id);
  ASSERT_EQ(RUN(r, "result", id, "--queue", "high", "--backend", backend, "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "4\n");
  /* Results are per queue and live in the backend. */
  ASSERT_EQ(RUN(r, "status", id, "--backend", backend), 4);
  ASSERT_EQ(RUN(r, "status", id, "--queue", "high"), 4);
  ASSERT_EQ(RUN(r, "status", id, "--queue", "high", "--backend", backend), 0);
  free(r);
  env_stop(&e);
}

/* --queues with weights, and --strict (issue 18): the worker serves every
 * queue of the list under its bare name.  (The order of the leases is tested
 * by the contract cases weighted_queue_*.) */
TEST_TIMEOUT(cli_weighted_queues, 60) {
  env e;
  env_start(&e);
  WORKER_START(&e, "--builtin", "--queues", "critical:6,default:3,low:1", "--strict");
  run_out *r = malloc(sizeof(*r));
  const char *const queues[3] = {"critical", "default", "low"};
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(RUN(r, "--queue", queues[i], "send", "add", "1", "2", "--wait", "10s"), 0);
    ASSERT_STR_EQ(r->out, "3\n");
  }
  free(r);
  env_stop(&e);
}

/* ---------------------------------------------------------------- stats */

/* gtask limit (issue 19): set, listed, shown in stats, removed; bad limits
 * are usage errors that store nothing. */
TEST_TIMEOUT(cli_limit_commands, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  ASSERT_EQ(RUN(r, "limit", "rate", "add", "20/s"), 0);
  ASSERT_EQ(RUN(r, "limit", "concurrency", "add", "3"), 0);
  ASSERT_EQ(RUN(r, "--queue", "emails", "limit", "rate", "100/m"), 0);
  ASSERT_EQ(RUN(r, "limit", "rate", "send_sms", "5/500ms"), 0);
  ASSERT_EQ(RUN(r, "limit", "list"), 0);
  ASSERT_STR_CONTAINS(r->out, "default\tadd\t20/1s\t3\t0\t0\t0\n");
  ASSERT_STR_CONTAINS(r->out, "default\tsend_sms\t5/500ms\t-\t0\t0\t0\n");
  ASSERT_EQ(RUN(r, "limit", "list", "emails"), 0);
  ASSERT_STR_EQ(r->out, "emails\t*\t100/60s\t-\t0\t0\t0\n");
  ASSERT_EQ(RUN(r, "stats"), 0);
  ASSERT_STR_CONTAINS(r->out, "  limit task add: rate 20/1s (0 in window), concurrency 3 (0 running, 0 waiting)");
  const char *const bad[][4] = {{"rate", "add", "0/s", NULL},    {"rate", "add", "-5/s", NULL},
                                {"rate", "add", "5/x", NULL},    {"rate", "add", "5", NULL},
                                {"rate", "add", "5/0ms", NULL},  {"concurrency", "add", "0", NULL},
                                {"concurrency", "add", "x", NULL}, {"concurrency", "a\tb", "2", NULL}};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
    ASSERT_USAGE(r, "limit", bad[k][0], bad[k][1], bad[k][2]);
  ASSERT_EQ(RUN(r, "limit", "list"), 0);
  ASSERT_EQ(count_lines(r->out), 2); /* unchanged */
  ASSERT_STR_CONTAINS(r->out, "20/1s\t3\t");
  ASSERT_EQ(RUN(r, "limit", "remove", "add"), 0);
  ASSERT_EQ(RUN(r, "limit", "remove", "add"), 4);
  ASSERT_EQ(RUN(r, "--queue", "emails", "limit", "remove"), 0);
  ASSERT_EQ(RUN(r, "limit", "list", "emails"), 0);
  ASSERT_STR_EQ(r->out, "");
  free(r);
  env_stop(&e);
}

TEST_TIMEOUT(cli_stats, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char line[1024];
  for (int i = 0; i < 3; i++) ASSERT_EQ(RUN(r, "send", "add", "1", "2"), 0);
  ASSERT_EQ(RUN(r, "stats"), 0);
  ASSERT_EQ(count_lines(r->out), 2);
  ASSERT_STR_CONTAINS(r->out, "pending");
  ASSERT_STR_CONTAINS(r->out, "succeeded");
  ASSERT_EQ(RUN(r, "--json", "stats", "default", "other"), 0);
  ASSERT_EQ(count_lines(r->out), 2);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_object_size(j), 9);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "queue")), "default");
  ASSERT_TRUE(json_is_false(json_object_get(j, "paused")));
  ASSERT_EQ(json_integer_value(json_object_get(j, "pending")), 3);
  static const char *const zero[] = {"active", "scheduled", "dead", "succeeded", "failed",
                                     "cancelled"};
  for (size_t k = 0; k < 6; k++) ASSERT_EQ(json_integer_value(json_object_get(j, zero[k])), 0);
  json_decref(j);
  j = json_line(strchr(r->out, '\n') + 1);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "queue")), "other");
  ASSERT_EQ(json_integer_value(json_object_get(j, "pending")), 0);
  json_decref(j);

  WORKER_START(&e, "--builtin");
  ASSERT_EQ(RUN(r, "send", "fail", "no", "--wait", "10s"), 1);
  ASSERT_EQ(RUN(r, "send", "sleep", "60000", "--timeout", "30s"), 0);
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--wait", "10s"), 0); /* FIFO: the 3 are done */
  for (int64_t end = test_now_ms() + test_timeout_ms(10000);; test_sleep_ms(20)) {
    ASSERT_EQ(RUN(r, "--json", "stats"), 0);
    j = json_line(first_line(r->out, line, sizeof(line)));
    bool done = json_integer_value(json_object_get(j, "active")) == 1 &&
                json_integer_value(json_object_get(j, "succeeded")) == 4;
    if (done) {
      ASSERT_EQ(json_integer_value(json_object_get(j, "pending")), 0);
      ASSERT_EQ(json_integer_value(json_object_get(j, "failed")), 1);
      json_decref(j);
      break;
    }
    json_decref(j);
    ASSERT_LT(test_now_ms(), end);
  }
  free(r);
  /* The sleeping task would hold the shutdown for 60 s: a second signal ends
   * the worker at once (exit 130); its lease is then simply abandoned. */
  ASSERT_EQ(kill(e.worker, SIGTERM), 0);
  /* Standard signals do not queue: the second must come after the first was
   * handled, which the worker's log says. */
  {
    char log[8192] = "";
    WAIT_UNTIL_MSG((slurp(e.worker_log, log, sizeof(log)), strstr(log, "shutting down") != NULL),
                   10000, "the worker did not log its shutdown after SIGTERM");
  }
  ASSERT_EQ(kill(e.worker, SIGTERM), 0);
  ASSERT_EQ(wait_exit(e.worker, test_timeout_ms(10000)), 130);
  e.worker = 0;
  env_stop(&e);
}

/* ---------------------------------------------------------------- dead set */

static void hset_dead(env *e, const char *id, const char *body) {
  redisContext *c = gt_redis_connect(e->redis);
  ASSERT_NOT_NULL(c);
  redisReply *rep = redisCommand(c, "HSET gtask:{default}:dead %s %s", id, body);
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(c);
}

static long long dead_count(env *e) {
  redisContext *c = gt_redis_connect(e->redis);
  ASSERT_NOT_NULL(c);
  redisReply *rep = redisCommand(c, "HLEN gtask:{default}:dead");
  ASSERT_NOT_NULL(rep);
  long long n = rep->integer;
  freeReplyObject(rep);
  redisFree(c);
  return n;
}

static void wait_dead(env *e, long long n) {
  for (int64_t end = test_now_ms() + test_timeout_ms(10000); dead_count(e) != n; test_sleep_ms(20))
    ASSERT_LT(test_now_ms(), end);
}

TEST_TIMEOUT(cli_dead_set, 120) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char line[4096];

  ASSERT_EQ(RUN(r, "dead", "list"), 0);
  ASSERT_STR_EQ(r->out, "");

  /* A malformed message in the stream: the worker buries it in the dead set. */
  char junk_id[GTASK_ID_SIZE];
  gtask__uuid(junk_id);
  redisContext *c = gt_redis_connect(e.redis);
  ASSERT_NOT_NULL(c);
  redisReply *rep = redisCommand(c, "XADD gtask:{default}:stream * i %s m junk", junk_id);
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(c);

  /* A well-formed task that was lost 5 times: in the dead set, FAILURE. */
  char lost_id[GTASK_ID_SIZE];
  gtask__uuid(lost_id);
  gtask_value args[2] = {gtask_int64(40), gtask_int64(2)};
  gtask_task t = {.name = (char *)"add", .queue = (char *)"default", .args = args, .nargs = 2,
                  .lost = 5, .backoff_first_ms = 1000, .backoff_max_ms = 60000,
                  .created_ms = gtask__now_ms()};
  memcpy(t.id, lost_id, GTASK_ID_SIZE);
  char *body = NULL;
  size_t len = 0;
  ASSERT_OK(gtask__task_encode(&t, &body, &len));
  hset_dead(&e, lost_id, body);
  gtask__free(body);
  c = gt_redis_connect(e.redis);
  rep = redisCommand(c, "RPUSH gtask:{default}:n:%s %s", lost_id,
                     "{\"v\":1,\"s\":\"FAILURE\",\"err\":\"lost: delivered 5 times\",\"ec\":-18,\"at\":0}");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(c);

  WORKER_START(&e, "--builtin");
  wait_dead(&e, 2);

  /* list: both, with their errors (text: tab-separated; --json: objects). */
  ASSERT_EQ(RUN(r, "dead", "list"), 0);
  ASSERT_EQ(count_lines(r->out), 2);
  char want[256];
  snprintf(want, sizeof(want), "%s\t-\tmalformed message", junk_id);
  ASSERT_STR_CONTAINS(r->out, want);
  snprintf(want, sizeof(want), "%s\tadd\tlost: delivered 5 times\n", lost_id);
  ASSERT_STR_CONTAINS(r->out, want);
  ASSERT_EQ(RUN(r, "--json", "dead", "list"), 0);
  ASSERT_EQ(count_lines(r->out), 2);
  for (const char *p = r->out; *p; p = strchr(p, '\n') + 1) {
    json_t *j = json_line(first_line(p, line, sizeof(line)));
    ASSERT_EQ(json_object_size(j), 3);
    const char *id = json_string_value(json_object_get(j, "task_id"));
    ASSERT_NOT_NULL(id);
    if (strcmp(id, lost_id) == 0) {
      ASSERT_STR_EQ(json_string_value(json_object_get(j, "name")), "add");
    } else {
      ASSERT_STR_EQ(id, junk_id);
      ASSERT_TRUE(json_is_null(json_object_get(j, "name")));
      ASSERT_STR_CONTAINS(json_string_value(json_object_get(j, "error")), "malformed");
    }
    json_decref(j);
  }
  ASSERT_EQ(RUN(r, "--json", "stats"), 0);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_integer_value(json_object_get(j, "dead")), 2);
  json_decref(j);

  /* requeue ID: the lost task runs again and its new result sticks. */
  ASSERT_EQ(RUN(r, "status", lost_id), 0);
  ASSERT_STR_EQ(r->out, "FAILURE\n");
  ASSERT_EQ(RUN(r, "dead", "requeue", lost_id), 0);
  ASSERT_STR_EQ(r->out, "requeued 1\n");
  ASSERT_EQ(RUN(r, "result", lost_id, "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "42\n");
  ASSERT_EQ(RUN(r, "dead", "requeue", lost_id), 4); /* no longer dead */
  ASSERT_STR_CONTAINS(r->err, lost_id);

  /* requeue --all: the junk stays in the dead set.  It used to go back, the
   * worker buried it again and counted it failed again, each time (issue
   * 14).  Requeued by its id, it is an error that says why. */
  ASSERT_EQ(RUN(r, "--json", "stats"), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  json_int_t failed = json_integer_value(json_object_get(j, "failed"));
  json_decref(j);
  ASSERT_EQ(failed, 1);
  ASSERT_EQ(RUN(r, "--json", "dead", "requeue", "--all"), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_integer_value(json_object_get(j, "requeued")), 0);
  json_decref(j);
  ASSERT_EQ(RUN(r, "dead", "requeue", junk_id), 1);
  ASSERT_STR_CONTAINS(r->err, junk_id);
  ASSERT_STR_CONTAINS(r->err, "does not decode");
  test_sleep_ms(300); /* (time for a worker to bury it again, if it had gone back) */
  ASSERT_EQ(dead_count(&e), 1);
  ASSERT_EQ(RUN(r, "--json", "stats"), 0);
  j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_EQ(json_integer_value(json_object_get(j, "failed")), failed);
  json_decref(j);

  /* purge */
  ASSERT_EQ(RUN(r, "dead", "purge"), 0);
  ASSERT_STR_EQ(r->out, "purged 1\n");
  ASSERT_EQ(RUN(r, "--json", "dead", "purge"), 0);
  ASSERT_STR_EQ(r->out, "{\"purged\":0}\n");
  ASSERT_EQ(RUN(r, "dead", "list"), 0);
  ASSERT_STR_EQ(r->out, "");
  ASSERT_EQ(RUN(r, "dead", "requeue", "--all"), 0);
  ASSERT_STR_EQ(r->out, "requeued 0\n");
  free(r);
  env_stop(&e);
}

/* One dead entry is one line of `dead list`, whatever its name and error hold
 * (issue 14): control characters, tabs (the column separator) and
 * backslashes are escaped as \n, \t, \\, \xNN.  --json keeps them as they are. */
TEST(cli_dead_list_escapes) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE], line[4096];
  gtask__uuid(id);
  /* Sent by an older client, or another producer: the name is not checked. */
  static const char name[] = "a\nb\tc\\d\x7f\x01";
  gtask_task t = {.name = (char *)name, .queue = (char *)"default", .lost = 5,
                  .backoff_first_ms = 1000, .backoff_max_ms = 60000,
                  .created_ms = gtask__now_ms()};
  memcpy(t.id, id, GTASK_ID_SIZE);
  char *body = NULL;
  size_t len = 0;
  ASSERT_OK(gtask__task_encode(&t, &body, &len));
  hset_dead(&e, id, body);
  gtask__free(body);
  redisContext *c = gt_redis_connect(e.redis);
  ASSERT_NOT_NULL(c);
  redisReply *rep = redisCommand(c, "RPUSH gtask:{default}:n:%s %s", id,
                                 "{\"v\":1,\"s\":\"FAILURE\",\"err\":\"line 1\\nline 2\\r\\ttab\","
                                 "\"ec\":-18,\"at\":0}");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(c);

  ASSERT_EQ(RUN(r, "dead", "list"), 0);
  ASSERT_EQ(count_lines(r->out), 1);
  char want[512];
  snprintf(want, sizeof(want), "%s\ta\\nb\\tc\\\\d\\x7f\\x01\tline 1\\nline 2\\r\\ttab\n", id);
  ASSERT_STR_EQ(r->out, want);
  ASSERT_EQ(RUN(r, "--json", "dead", "list"), 0);
  ASSERT_EQ(count_lines(r->out), 1);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "name")), name);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "error")), "line 1\nline 2\r\ttab");
  json_decref(j);
  free(r);
  env_stop(&e);
}

/* A --timeout below a millisecond is the shortest timeout, not none (it used
 * to round to 0, which means no timeout). */
TEST_TIMEOUT(cli_sub_millisecond_timeout, 60) {
  env e;
  env_start(&e);
  WORKER_START(&e, "--builtin");
  run_out *r = malloc(sizeof(*r));
  ASSERT_EQ(RUN(r, "send", "sleep", "3000", "--timeout", "0.1ms", "--wait", "20s"), 1);
  ASSERT_STR_CONTAINS(r->err, "timeout");
  free(r);
  env_stop(&e);
}

/* ---------------------------------------------------------------- Redis Cluster */

/* The CLI against a Redis Cluster (issue 17): a worker on queues spread over
 * the masters, sends and results, status, stats --all listing every queue
 * across the nodes, the dead set. */
TEST_TIMEOUT(cli_on_a_cluster, 120) {
  env e;
  memset(&e, 0, sizeof(e));
  gt_cluster *cl = gt_cluster_start(3, 0);
  ASSERT_NOT_NULL(cl);
  ASSERT_EQ(setenv("GTASK_REDIS_URL", gt_cluster_url(cl), 1), 0);
  static const char *const qs[] = {"alpha", "beta", "gamma", "delta"};
  int nodes = 0;
  gt_redis *seen[4] = {NULL};
  for (int k = 0; k < 4; k++) {
    char key[64];
    snprintf(key, sizeof(key), "gtask:{%s}:stream", qs[k]);
    gt_redis *m = gt_cluster_master_of(cl, gt_cluster_keyslot(cl, key));
    ASSERT_NOT_NULL(m);
    bool dup = false;
    for (int j = 0; j < nodes; j++) dup |= seen[j] == m;
    if (!dup) seen[nodes++] = m;
  }
  ASSERT_GE(nodes, 2); /* the queues live on more than one master */
  WORKER_START(&e, "--builtin", "--queues", "alpha,beta,gamma,delta");
  run_out *r = malloc(sizeof(*r));
  char id[GTASK_ID_SIZE];
  for (int k = 0; k < 4; k++) {
    ASSERT_EQ(RUN(r, "--queue", qs[k], "send", "add", "1", "1", "--wait", "10s"), 0);
    ASSERT_STR_EQ(r->out, "2\n");
  }
  ASSERT_EQ(RUN(r, "--queue", "gamma", "send", "add", "2", "3"), 0);
  id_of(r, id);
  ASSERT_EQ(RUN(r, "--queue", "gamma", "result", id, "--wait", "10s"), 0);
  ASSERT_STR_EQ(r->out, "5\n");
  ASSERT_EQ(RUN(r, "--queue", "gamma", "status", id), 0);
  ASSERT_STR_CONTAINS(r->out, "SUCCESS");
  /* Every queue, from every master, sorted. */
  ASSERT_EQ(RUN(r, "stats", "--all"), 0);
  ASSERT_EQ(count_lines(r->out), 5);
  const char *a = strstr(r->out, "\nalpha "), *b = strstr(r->out, "\nbeta "),
             *d = strstr(r->out, "\ndelta "), *g = strstr(r->out, "\ngamma ");
  ASSERT_TRUE(a && b && d && g && a < b && b < d && d < g);
  ASSERT_EQ(RUN(r, "stats", "--all", "alpha"), 2);
  ASSERT_EQ(RUN(r, "--queue", "beta", "dead", "list"), 0);
  ASSERT_STR_EQ(r->out, "");
  ASSERT_EQ(RUN(r, "--queue", "beta", "dead", "purge"), 0);
  free(r);
  worker_stop(&e, SIGTERM);
  gt_cluster_stop(cl);
}

/* ---------------------------------------------------------------- workers, inspect (issue 20) */

TEST_TIMEOUT(cli_workers_and_inspect, 120) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  char line[4096];
  /* No worker: nothing listed. */
  ASSERT_EQ(RUN(r, "workers"), 0);
  ASSERT_STR_EQ(r->out, "");
  /* Three tasks wait; pages of two. */
  char ids[3][GTASK_ID_SIZE];
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(RUN(r, "send", "echo", "<script>alert(1)</script>", "a\tb"), 0);
    id_of(r, ids[i]);
  }
  ASSERT_EQ(RUN(r, "inspect", "queue", "default", "--limit", "2"), 0);
  ASSERT_EQ(count_lines(r->out), 3);
  ASSERT_STR_CONTAINS(first_line(r->out, line, sizeof(line)), ids[0]);
  ASSERT_STR_CONTAINS(line, "\techo\t<script>alert(1)</script> a\\tb\t0\t");
  const char *next = strstr(r->out, "next\t");
  ASSERT_NOT_NULL(next);
  char cursor[80];
  first_line(next + 5, cursor, sizeof(cursor));
  ASSERT_EQ(RUN(r, "--json", "inspect", "queue", "default", "--limit", "2", "--after", cursor), 0);
  ASSERT_EQ(count_lines(r->out), 2);
  json_t *j = json_line(first_line(r->out, line, sizeof(line)));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "task_id")), ids[2]);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "state")), "pending");
  ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(j, "args"), 0)),
                "<script>alert(1)</script>");
  json_decref(j);
  j = json_line(strchr(r->out, '\n') + 1);
  ASSERT_TRUE(json_is_null(json_object_get(j, "next")));
  json_decref(j);
  ASSERT_EQ(RUN(r, "--json", "inspect", "task", ids[1]), 0);
  j = json_line(r->out);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "status")), "PENDING");
  ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "message"), "state")), "pending");
  json_decref(j);

  /* A worker: listed with its pid; the tasks run; inspect task shows the result. */
  WORKER_START(&e, "--builtin", "--concurrency", "3", "--queues", "default,other");
  char pid[32];
  snprintf(pid, sizeof(pid), "\t%d\t", (int)e.worker);
  WAIT_UNTIL((RUN(r, "workers"), strstr(r->out, pid) != NULL), 10000);
  ASSERT_EQ(count_lines(r->out), 1);
  ASSERT_STR_CONTAINS(r->out, "\tdefault,other\t3\tthreads\t");
  ASSERT_EQ(RUN(r, "send", "echo", "x", "--wait", "10s"), 0);
  ASSERT_EQ(RUN(r, "inspect", "task", ids[0]), 0);
  ASSERT_STR_CONTAINS(r->out, "status\tSUCCESS\n");
  ASSERT_STR_CONTAINS(r->out, "value\t<script>alert(1)</script>\n");
  /* A running task shows in the worker's record (after a heartbeat) and in
   * the active list. */
  ASSERT_EQ(RUN(r, "send", "sleep", "60000", "--timeout", "30s"), 0);
  char sid[GTASK_ID_SIZE];
  id_of(r, sid);
  WAIT_UNTIL((RUN(r, "--json", "workers"), strstr(r->out, sid) != NULL), 15000);
  j = json_line(r->out);
  ASSERT_EQ(json_integer_value(json_object_get(j, "pid")), e.worker);
  ASSERT_EQ(json_integer_value(json_object_get(j, "concurrency")), 3);
  json_t *busy = json_array_get(json_object_get(j, "busy"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(busy, "name")), "sleep");
  ASSERT_GT(json_integer_value(json_object_get(j, "succeeded")), 3);
  json_decref(j);
  ASSERT_EQ(RUN(r, "inspect", "queue", "default", "--state", "active"), 0);
  ASSERT_STR_CONTAINS(r->out, sid);
  ASSERT_EQ(RUN(r, "inspect", "task", sid), 0);
  ASSERT_STR_CONTAINS(r->out, "where\tactive\n");

  /* Usage errors. */
  ASSERT_USAGE(r, "inspect");
  ASSERT_USAGE(r, "inspect", "queue");
  ASSERT_USAGE(r, "inspect", "queue", "default", "--state", "bogus");
  ASSERT_USAGE(r, "inspect", "queue", "default", "--limit", "0");
  ASSERT_USAGE(r, "inspect", "queue", "bad queue");
  ASSERT_USAGE(r, "inspect", "queue", "default", "--after", "nope");
  ASSERT_USAGE(r, "inspect", "task", "not-an-id");
  ASSERT_USAGE(r, "inspect", "what");
  ASSERT_USAGE(r, "workers", "extra");
  ASSERT_EQ(RUN(r, "inspect", "task", "00000000-0000-4000-8000-000000000000"), 4);

  /* Killed: gone from the list within a lease time (10 s). */
  ASSERT_EQ(kill(e.worker, SIGKILL), 0);
  ASSERT_EQ(wait_exit(e.worker, test_timeout_ms(10000)), 128 + SIGKILL);
  e.worker = 0;
  WAIT_UNTIL((RUN(r, "workers"), r->out[0] == '\0'), 15000);
  free(r);
  env_stop(&e);
}

TEST_TIMEOUT(cli_worker_metrics, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  ASSERT_USAGE(r, "worker", "--builtin", "--metrics", "nonsense");
  int port = gt_free_port();
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  WORKER_START(&e, "--builtin", "--metrics", addr);
  ASSERT_EQ(RUN(r, "send", "add", "1", "2", "--wait", "10s"), 0);
  static char body[1 << 16];
  WAIT_UNTIL(gt_http(port, "GET", "/metrics", NULL, body, sizeof(body)) == 200 &&
                 strstr(body, "gtask_tasks_succeeded_total{queue=\"default\",task=\"add\"} 1\n"),
             10000);
  ASSERT_STR_CONTAINS(body, "gtask_executors 10\n");
  free(r);
  env_stop(&e);
}

TEST_TIMEOUT(cli_dashboard_token_and_csrf, 60) {
  env e;
  env_start(&e);
  run_out *r = malloc(sizeof(*r));
  ASSERT_USAGE(r, "dashboard", "--listen", "nowhere");
  ASSERT_USAGE(r, "dashboard", "--listen", "127.0.0.1:99999");
  ASSERT_USAGE(r, "dashboard", "--token", "has space");
  ASSERT_USAGE(r, "dashboard", "--queues", "bad queue");
  int port = gt_free_port();
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  pid_t pid = spawn((const char *const[]){"dashboard", "--listen", listen, "--token", "s3cret", NULL},
                    "dash.out", "dash.err");
  static char body[1 << 16];
  WAIT_UNTIL(gt_http(port, "GET", "/api/session", NULL, body, sizeof(body)) == 401, 10000);
  ASSERT_STR_CONTAINS(body, "token");
  ASSERT_EQ(gt_http(port, "GET", "/", NULL, body, sizeof(body)), 401);
  ASSERT_EQ(gt_http(port, "GET", "/api/session?token=wrong", NULL, body, sizeof(body)), 401);
  ASSERT_EQ(gt_http(port, "GET", "/api/session?token=s3cret", NULL, body, sizeof(body)), 200);
  ASSERT_EQ(gt_http(port, "GET", "/api/workers", "Cookie: gtask_token=s3cret\r\n", body, sizeof(body)), 200);
  ASSERT_EQ(gt_http(port, "GET", "/api/session", "Authorization: Bearer s3cret\r\n", body, sizeof(body)), 200);
  json_t *j = json_line(body);
  char csrf[64];
  snprintf(csrf, sizeof(csrf), "%s", json_string_value(json_object_get(j, "csrf")));
  json_decref(j);
  ASSERT_EQ(strlen(csrf), 32);
  /* Actions: POST only, with the CSRF header. */
  char hdr[200];
  ASSERT_EQ(gt_http(port, "POST", "/api/dead/purge?queue=default", "Authorization: Bearer s3cret\r\n", body,
                    sizeof(body)), 403);
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer s3cret\r\nX-CSRF-Token: %s\r\n", csrf);
  ASSERT_EQ(gt_http(port, "POST", "/api/dead/purge?queue=default", hdr, body, sizeof(body)), 200);
  ASSERT_STR_CONTAINS(body, "\"purged\":0");
  ASSERT_EQ(gt_http(port, "GET", "/api/dead/purge?queue=default", hdr, body, sizeof(body)), 404);
  ASSERT_EQ(gt_http(port, "POST", "/api/dead/requeue?queue=default&id=00000000-0000-4000-8000-000000000000",
                    hdr, body, sizeof(body)), 404);
  ASSERT_EQ(gt_http(port, "GET", "/api/queue?name=bad%20q", hdr, body, sizeof(body)), 400);
  ASSERT_EQ(gt_http(port, "GET", "/api/queue?name=default&state=nope", hdr, body, sizeof(body)), 400);
  ASSERT_EQ(gt_http(port, "GET", "/api/task?queue=default&id=nope", hdr, body, sizeof(body)), 400);
  /* Cancel (issue 18): a pending task (no worker serves default here). */
  ASSERT_EQ(RUN(r, "send", "echo", "x"), 0);
  char id[GTASK_ID_SIZE], url[200];
  id_of(r, id);
  snprintf(url, sizeof(url), "/api/cancel?queue=default&id=%s", id);
  ASSERT_EQ(gt_http(port, "POST", url, "Authorization: Bearer s3cret\r\n", body, sizeof(body)), 403);
  ASSERT_EQ(RUN(r, "status", id), 0);
  ASSERT_STR_EQ(r->out, "PENDING\n");
  ASSERT_EQ(gt_http(port, "POST", "/api/cancel?queue=default", hdr, body, sizeof(body)), 400);
  ASSERT_STR_CONTAINS(body, "missing task id");
  ASSERT_EQ(gt_http(port, "POST", "/api/cancel?queue=default&id=nope", hdr, body, sizeof(body)), 400);
  ASSERT_STR_CONTAINS(body, "not a task id");
  ASSERT_EQ(gt_http(port, "POST", "/api/cancel?queue=bad%20q&id=nope", hdr, body, sizeof(body)), 400);
  ASSERT_EQ(gt_http(port, "POST", "/api/cancel?queue=default&id=00000000-0000-4000-8000-000000000000", hdr,
                    body, sizeof(body)), 404);
  ASSERT_EQ(gt_http(port, "GET", url, hdr, body, sizeof(body)), 404);
  ASSERT_EQ(gt_http(port, "POST", url, hdr, body, sizeof(body)), 200);
  ASSERT_STR_CONTAINS(body, "\"status\":\"CANCELLED\"");
  ASSERT_STR_CONTAINS(body, "\"running\":false");
  ASSERT_EQ(RUN(r, "status", id), 0);
  ASSERT_STR_EQ(r->out, "CANCELLED\n");
  ASSERT_EQ(gt_http(port, "POST", url, hdr, body, sizeof(body)), 409);
  ASSERT_STR_CONTAINS(body, "finished already (CANCELLED)");
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(wait_exit(pid, test_timeout_ms(10000)), 0);
  free(r);
  env_stop(&e);
}
