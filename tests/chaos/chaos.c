/* chaos.c -- the long form of the chaos test, run by hand (chaos.h says what
 * it does and checks).  The short form is test_chaos.c, run by ctest.
 *
 *   build/tests/chaos/chaos --tasks 20000 --workers 3 --duration 180
 *
 * prints progress every 5 s and ends with one line of figures:
 *   sent=20000 finished=20000 retried=... lost=0 duplicated-final=0 ...
 * Exit status: 0 if every check passed, 1 if one failed (the failing ids and
 * what Redis held about them are printed above the figures; the logs are kept),
 * 2 if it could not run.
 *
 * Isolation, as the test runner does it for the short form: the run happens in
 * a forked child that leads its own process group, in a fresh directory under
 * $TMPDIR (or /tmp), with redis-server, the workers and their pool children
 * all in that group.  This process is a child subreaper, reaps every orphan
 * while the run goes on, and afterwards kills the whole group, reaps it and
 * removes the directory (kept on failure, or with --keep).  Ctrl-C stops the
 * run cleanly; a second Ctrl-C, or --max-time, kills the group at once.
 */
#define _GNU_SOURCE
#include "chaos.h"
#include "proc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f) {
  chaos_opts d;
  chaos_opts_default(&d);
  fprintf(f,
          "usage: chaos [options]\n"
          "  --tasks N            tasks to send (default %u)\n"
          "  --workers N          worker processes, >= 2 (default %d)\n"
          "  --concurrency N      executors per worker (default %d)\n"
          "  --duration S         seconds over which tasks are sent; chaos lasts at least\n"
          "                       this long (default %lld)\n"
          "  --settle S           extra seconds allowed for the results (default %lld)\n"
          "  --worker-kill MS     mean ms between kill -9 of a worker, 0: none (default %lld)\n"
          "  --child-kill MS      mean ms between kill -9 of a pool child, 0: none (default %lld)\n"
          "  --redis-restart MS   mean ms between kill -9 + restart of redis, 0: none\n"
          "                       (default %lld)\n"
          "  --lease MS           the workers' lease (default %lld)\n"
          "  --threads            no process pool (by default odd worker slots use it)\n"
          "  --tls                redis speaks mutual TLS only (certificates made by openssl)\n"
          "  --cluster            a Redis Cluster (3 masters + 3 replicas); restarts kill the\n"
          "                       queue's master, and everyone uses wait-replicas 1\n"
          "  --ignore-sigpipe     workers ignore SIGPIPE (a workaround, to look past that\n"
          "                       finding; see chaos_worker.c)\n"
          "  --seed N             task mix and chaos schedule (default: from the clock)\n"
          "  --worker PATH        the chaos_worker binary (default: next to this one)\n"
          "  --max-time S         kill everything after S seconds (default: duration +\n"
          "                       2 x settle + 300)\n"
          "  --keep               keep the run directory (logs) even on success\n"
          "  --quiet              no progress lines\n",
          d.tasks, d.workers, d.concurrency, (long long)d.duration_ms / 1000,
          (long long)d.settle_ms / 1000, (long long)d.worker_kill_ms, (long long)d.child_kill_ms,
          (long long)d.redis_restart_ms, (long long)d.lease_ms);
}

static long long num(const char *opt, const char *s, long long min, long long max) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < min || v > max) {
    fprintf(stderr, "chaos: %s: expected a number in %lld..%lld, got \"%s\"\n", opt, min, max, s);
    exit(2);
  }
  return v;
}

static volatile sig_atomic_t signals;
static void on_signal(int sig) {
  (void)sig;
  signals++;
}
static void on_signal_child(int sig) {
  (void)sig;
  chaos_interrupt();
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  chaos_opts o;
  chaos_opts_default(&o);
  o.verbose = true;
  o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  bool keep = false;
  long long max_time = 0;
  static char worker[PATH_MAX];
  for (int k = 1; k < argc; k++) {
    const char *a = argv[k];
    const char *v = k + 1 < argc ? argv[k + 1] : NULL;
#define NEEDS_VALUE()                                                          \
  do {                                                                         \
    if (!v) {                                                                  \
      fprintf(stderr, "chaos: %s needs a value\n", a);                         \
      return 2;                                                                \
    }                                                                          \
    k++;                                                                       \
  } while (0)
    if (!strcmp(a, "--tasks")) { NEEDS_VALUE(); o.tasks = (uint32_t)num(a, v, 1, 10000000); }
    else if (!strcmp(a, "--workers")) { NEEDS_VALUE(); o.workers = (int)num(a, v, 2, 64); }
    else if (!strcmp(a, "--concurrency")) { NEEDS_VALUE(); o.concurrency = (int)num(a, v, 1, 256); }
    else if (!strcmp(a, "--duration")) { NEEDS_VALUE(); o.duration_ms = num(a, v, 0, 86400) * 1000; }
    else if (!strcmp(a, "--settle")) { NEEDS_VALUE(); o.settle_ms = num(a, v, 1, 86400) * 1000; }
    else if (!strcmp(a, "--worker-kill")) { NEEDS_VALUE(); o.worker_kill_ms = num(a, v, 0, 86400000); }
    else if (!strcmp(a, "--child-kill")) { NEEDS_VALUE(); o.child_kill_ms = num(a, v, 0, 86400000); }
    else if (!strcmp(a, "--redis-restart")) { NEEDS_VALUE(); o.redis_restart_ms = num(a, v, 0, 86400000); }
    else if (!strcmp(a, "--lease")) { NEEDS_VALUE(); o.lease_ms = num(a, v, 300, 3600000); }
    else if (!strcmp(a, "--seed")) { NEEDS_VALUE(); o.seed = (uint64_t)num(a, v, 0, LLONG_MAX); }
    else if (!strcmp(a, "--worker")) { NEEDS_VALUE(); snprintf(worker, sizeof(worker), "%s", v); }
    else if (!strcmp(a, "--max-time")) { NEEDS_VALUE(); max_time = num(a, v, 1, 86400 * 7); }
    else if (!strcmp(a, "--threads")) o.procs = false;
    else if (!strcmp(a, "--ignore-sigpipe")) o.ignore_sigpipe = true;
    else if (!strcmp(a, "--tls")) o.tls = true;
    else if (!strcmp(a, "--cluster")) o.cluster = true;
    else if (!strcmp(a, "--keep")) keep = true;
    else if (!strcmp(a, "--quiet")) o.verbose = false;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
    else { usage(stderr); return 2; }
#undef NEEDS_VALUE
  }
  if (!worker[0] && !chaos_default_worker_path(worker, sizeof(worker))) {
    fprintf(stderr, "chaos: chaos_worker not found next to this binary; use --worker\n");
    return 2;
  }
  o.worker_path = worker;
  if (!max_time) max_time = (o.duration_ms + 2 * o.settle_ms) / 1000 + 300;

  const char *base = getenv("TMPDIR");
  static char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/gtask-chaos-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(dir)) {
    fprintf(stderr, "chaos: mkdtemp %s: %s\n", dir, strerror(errno));
    return 2;
  }
  o.dir = dir;
  setenv("GTASK_TEST_TMPDIR", dir, 1); /* the redis fixture makes its dir in here */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  fflush(NULL);

  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "chaos: fork: %s\n", strerror(errno));
    return 2;
  }
  if (pid == 0) {
    setpgid(0, 0);
    sa.sa_handler = on_signal_child;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("chaos: run directory %s\n", dir);
    chaos_report r;
    int rc = chaos_run(&o, &r);
    chaos_report_print(stdout, &r, &o);
    fflush(stdout);
    exit(rc == 0 ? 0 : rc > 0 ? 1 : 2); /* exit: the fixture's atexit cleanup runs */
  }
  setpgid(pid, pid);

  int64_t deadline = mono_ms() + max_time * 1000;
  int status = 0, forwarded = 0;
  bool done = false, killed = false;
  while (!done) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG); /* the run, or an orphan of its group */
    if (p == pid) {
      status = st;
      done = true;
      break;
    }
    if (p > 0) continue;
    if (signals > forwarded) {
      forwarded = signals;
      if (signals == 1) {
        fprintf(stderr, "chaos: interrupted; stopping (Ctrl-C again to kill at once)\n");
        kill(pid, SIGINT);
      } else {
        killpg(pid, SIGKILL);
        killed = true;
      }
    }
    if (!killed && mono_ms() > deadline) {
      fprintf(stderr, "chaos: --max-time of %lld s reached; killing the run\n", max_time);
      killpg(pid, SIGKILL);
      killed = true;
    }
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  /* Nothing of the run outlives it: kill the group, then reap every orphan
   * (they are re-parented to this subreaper), for at most 10 s. */
  killpg(pid, SIGKILL);
  int64_t reap_until = mono_ms() + 10000;
  while (mono_ms() < reap_until) {
    pid_t p = waitpid(-1, NULL, WNOHANG);
    if (p < 0 && errno == ECHILD) break;
    if (p == 0) {
      struct timespec ts = {0, 10 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
  if (killed) rc = 2;
  if (rc == 0 && !keep) {
    gt_rm_tree(dir);
  } else {
    printf("chaos: logs kept in %s (driver.log, worker-*.log, exec-*.log)\n", dir);
  }
  return rc;
}
