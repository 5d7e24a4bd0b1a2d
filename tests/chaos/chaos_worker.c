/* chaos_worker.c -- the worker process of the chaos test (tests/chaos/chaos.h).
 *
 * A plain gtask worker: it serves one queue with three handlers and runs until
 * SIGTERM or SIGINT (a graceful gtask_server_shutdown), so that the driver can
 * kill -9 it at any moment and start another.  Every handler returns
 * (int64 sum, uint64 token): the sum of its first two arguments and a random
 * token that identifies this one execution.  Just before returning, a handler
 * appends "<task id> <token> <attempt> <pid>\n" to <logdir>/exec-<pid>.log; the
 * driver uses these lines to check that the final result of a task came from a
 * real, completed execution of that very task, and to count re-executions.
 *
 *   add(a, b)              returns at once
 *   slowadd(a, b, ms)      sleeps ms first (waking if cancelled), so that kills
 *                          land in the middle of tasks
 *   flakyadd(a, b, mode)   first attempt: mode 0 sleeps past the task's timeout
 *                          (timeout, retried), mode 1 asks for a retry
 *                          (gtask_ctx_retry); later attempts return at once
 *
 * Usage: chaos_worker --url URL --queue Q --logdir DIR [--concurrency N]
 *                     [--lease MS] [--prefetch N] [--procs] [--name NAME]
 *                     [--ignore-sigpipe]
 *   --procs  runs handlers in the process pool (GTASK_POOL_PROCS): one forked
 *            child per executor, which the driver also kills.
 *   --ignore-sigpipe  sets SIGPIPE to SIG_IGN first, as many daemons do.  Off by
 *            default: the test checks that the library does not need it (a
 *            pool worker used to die of SIGPIPE when it wrote a task to a child
 *            that had been killed while idle).
 * Exit status: 0 after a clean shutdown, 1 if the worker could not start
 * (Redis unreachable for 60 s, bad options), 2 if gtask_server_run failed.
 * Library log lines at WARN and above go to stderr, prefixed with the pid.
 */
#define _GNU_SOURCE
#include <gtask/gtask.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char *logdir = ".";
static gtask_server *server;

/* ---------------------------------------------------------------- executions */

static uint64_t new_token(void) {
  uint64_t t = 0;
  while (getrandom(&t, sizeof(t), 0) != (ssize_t)sizeof(t)) {
    if (errno != EINTR) { /* cannot happen on Linux >= 3.17; keep going anyway */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      t = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
      break;
    }
  }
  return t ? t : 1;
}

/* Appends one execution line.  open/write/close each time: no state survives
 * a fork into a pool child, and an O_APPEND write of one short line is not
 * interleaved with another process's. */
static void record_execution(gtask_ctx *ctx, uint64_t token) {
  char path[4096], line[160];
  snprintf(path, sizeof(path), "%s/exec-%ld.log", logdir, (long)getpid());
  int n = snprintf(line, sizeof(line), "%s %llu %u %ld\n", gtask_ctx_task_id(ctx),
                   (unsigned long long)token, gtask_ctx_attempt(ctx), (long)getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, line, (size_t)n);
  (void)w; /* a missing line shows up as a finding in the driver */
  close(fd);
}

static int finish(gtask_ctx *ctx, int64_t sum) {
  uint64_t token = new_token();
  record_execution(ctx, token);
  gtask_value out[2] = {gtask_int64(sum), gtask_uint64(token)};
  return gtask_ctx_return(ctx, out, 2);
}

static int want_ints(gtask_ctx *ctx, const gtask_value *args, size_t n, size_t want) {
  if (n != want) return gtask_ctx_fail(ctx, "expected %zu arguments, got %zu", want, n);
  for (size_t k = 0; k < n; k++)
    if (args[k].type != GTASK_INT64)
      return gtask_ctx_fail(ctx, "argument %zu: expected int64", k + 1);
  return 0;
}

/* ---------------------------------------------------------------- handlers */

static int add(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  int rc = want_ints(ctx, args, n, 2);
  if (rc) return rc;
  return finish(ctx, args[0].v.i + args[1].v.i);
}

static int slowadd(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  int rc = want_ints(ctx, args, n, 3);
  if (rc) return rc;
  if (!gtask_ctx_sleep(ctx, args[2].v.i)) return gtask_ctx_fail(ctx, "cancelled");
  return finish(ctx, args[0].v.i + args[1].v.i);
}

static int flakyadd(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  int rc = want_ints(ctx, args, n, 3);
  if (rc) return rc;
  if (gtask_ctx_attempt(ctx) == 1) {
    if (args[2].v.i == 1) return gtask_ctx_retry(ctx, "flaky: first attempt asks for a retry");
    /* Sleep well past the timeout the driver set; the deadline cancels it. */
    int64_t deadline = gtask_ctx_deadline_ms(ctx);
    if (deadline == 0) return gtask_ctx_fail(ctx, "flakyadd mode 0 needs a timeout");
    gtask_ctx_sleep(ctx, 10 * 1000);
    return gtask_ctx_fail(ctx, "flaky: the first attempt overslept");
  }
  return finish(ctx, args[0].v.i + args[1].v.i);
}

/* ---------------------------------------------------------------- main */

static void on_signal(int sig) {
  (void)sig;
  if (server) gtask_server_shutdown(server); /* async-signal-safe */
}

static void log_line(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  fprintf(stderr, "[chaos_worker %ld] %s: %s\n", (long)getpid(),
          level >= GTASK_LOG_ERROR ? "ERROR" : level >= GTASK_LOG_WARN ? "WARN" : "INFO", line);
}

static void usage(void) {
  fprintf(stderr, "usage: chaos_worker --url URL --queue Q --logdir DIR [--concurrency N]\n"
                  "                    [--lease MS] [--prefetch N] [--procs] [--name NAME]\n"
                  "                    [--ignore-sigpipe]\n");
  exit(1);
}

static long num_arg(const char *s) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v <= 0) usage();
  return v;
}

int main(int argc, char **argv) {
  const char *url = NULL, *queue = "chaos", *name = NULL;
  long concurrency = 4, lease = 1000, prefetch = 16;
  bool procs = false;
  for (int k = 1; k < argc; k++) {
    const char *a = argv[k];
    bool has = k + 1 < argc;
    if (!strcmp(a, "--url") && has) url = argv[++k];
    else if (!strcmp(a, "--queue") && has) queue = argv[++k];
    else if (!strcmp(a, "--logdir") && has) logdir = argv[++k];
    else if (!strcmp(a, "--name") && has) name = argv[++k];
    else if (!strcmp(a, "--concurrency") && has) concurrency = num_arg(argv[++k]);
    else if (!strcmp(a, "--lease") && has) lease = num_arg(argv[++k]);
    else if (!strcmp(a, "--prefetch") && has) prefetch = num_arg(argv[++k]);
    else if (!strcmp(a, "--procs")) procs = true;
    else if (!strcmp(a, "--ignore-sigpipe")) signal(SIGPIPE, SIG_IGN);
    else usage();
  }
  if (!url) usage();
  setvbuf(stderr, NULL, _IOLBF, 0);
  gtask_set_log(log_line, NULL, GTASK_LOG_WARN);

  gtask_redis_conf *conf;
  if (gtask_redis_conf_new(&conf, url, NULL, -1) != 0) {
    fprintf(stderr, "chaos_worker: bad url %s: %s\n", url, gtask_last_error());
    return 1;
  }
  gtask_redis_conf_set_timeout(conf, 1000);
  /* On a cluster a restart that outlasts the node timeout is a failover:
   * finishes wait for a replica, as the driver's sends do. */
  if (strncmp(url, "redis-cluster://", 16) == 0) gtask_redis_conf_set_wait_replicas(conf, 1, 1000);

  /* Redis may be down for a restart right now: retry for up to 60 s. */
  gtask_broker *broker = NULL;
  gtask_backend *backend = NULL;
  for (int tries = 0; tries < 600; tries++) {
    if (!broker && gtask_broker_redis_new(&broker, conf) != 0) broker = NULL;
    if (broker && !backend && gtask_backend_redis_new(&backend, conf) != 0) backend = NULL;
    if (broker && backend) break;
    usleep(100 * 1000);
  }
  gtask_redis_conf_free(conf);
  if (!broker || !backend) {
    fprintf(stderr, "chaos_worker: cannot reach %s: %s\n", url, gtask_last_error());
    gtask_broker_free(broker);
    gtask_backend_free(backend);
    return 1;
  }

  server = gtask_server_new(broker, backend);
  gtask_broker_free(broker);
  gtask_backend_free(backend);
  if (!server) return 1;
  int rc = 0;
  if (!rc) rc = gtask_server_reg(server, "add", add, NULL);
  if (!rc) rc = gtask_server_reg(server, "slowadd", slowadd, NULL);
  if (!rc) rc = gtask_server_reg(server, "flakyadd", flakyadd, NULL);
  if (!rc) rc = gtask_server_set_queues(server, queue);
  if (!rc) rc = gtask_server_set_lease(server, lease);
  if (!rc) rc = gtask_server_set_prefetch(server, (int)prefetch);
  /* Deliveries lost to kill -9 must never dead-letter a task here: the test
   * kills workers far more often than any real fleet loses them. */
  if (!rc) rc = gtask_server_set_max_deliveries(server, 1000000);
  if (!rc && name) rc = gtask_server_set_name(server, name);
  if (!rc && procs) {
    rc = gtask_server_set_pool(server, GTASK_POOL_PROCS);
    if (!rc) rc = gtask_server_set_kill_grace(server, 200);
  }
  if (rc) {
    fprintf(stderr, "chaos_worker: configuring: %s: %s\n", gtask_strerror(rc),
            gtask_server_errmsg(server));
    gtask_server_free(server);
    return 1;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  rc = gtask_server_run(server, (int)concurrency);
  if (rc)
    fprintf(stderr, "chaos_worker: gtask_server_run: %s: %s\n", gtask_strerror(rc),
            gtask_server_errmsg(server));
  gtask_server_free(server);
  return rc ? 2 : 0;
}
