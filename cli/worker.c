/* worker.c -- `gtask worker`: runs a worker server until SIGINT or SIGTERM, then
 * shuts it down gracefully (running tasks finish, leased-but-unstarted ones go
 * back to the queue, results are written) and exits 0.  A second signal during
 * the shutdown exits at once (status 130); the leases of unfinished tasks then
 * expire and other workers run them.
 *
 * Handlers come from --builtin (builtin.c) and from shared objects given with
 * --tasks FILE.so, each exporting
 *
 *     int gtask_tasks_register(gtask_server *svr);
 *
 * which registers its handlers (gtask_server_reg / GTASK_REG) and returns 0,
 * or non-zero to refuse to start (see README "Command line" and
 * examples/tasks/example_tasks.c).  Log lines go to stderr. */
#include "cli.h"

#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TASKS_REGISTER_SYMBOL "gtask_tasks_register"

typedef int (*tasks_register_fn)(gtask_server *svr);

static const char usage_worker[] =
    "usage: gtask worker [--concurrency N] [--pool threads|procs] [--tasks FILE.so]...\n"
    "                    [--builtin] [--queues a,b | a:6,b:3,c:1 [--strict]]\n"
    "                    [--failed-retention DUR]\n"
    "                    [--scheduler] [--metrics ADDR]\n"
    "\n"
    "Runs a worker until SIGINT or SIGTERM, then shuts down gracefully (exit 0).\n"
    "\n"
    "  --concurrency N   tasks run at once (default 10)\n"
    "  --pool MODE       threads (default): executor threads in this process;\n"
    "                    procs: a child process per executor, so a task that\n"
    "                    crashes, hangs past its timeout or leaks takes down only\n"
    "                    its child\n"
    "  --tasks FILE.so   load handlers from a shared object that exports\n"
    "                    int " TASKS_REGISTER_SYMBOL "(gtask_server *svr); repeatable\n"
    "  --builtin         register the test tasks add, echo, sleep, fail, crash\n"
    "  --queues a,b      queues to serve, in strict priority order (default: --queue)\n"
    "  --queues a:6,b:3,c:1  weighted queues (weights 1..1000): each lease tries\n"
    "                    the queues in an order chosen by weighted round robin, so\n"
    "                    each goes first in proportion to its weight and none is\n"
    "                    starved; give every queue a weight or none\n"
    "  --strict          with weights: always highest weight first (a lower queue\n"
    "                    waits until the higher ones are empty)\n"
    "  --failed-retention DUR  how long a task that ended FAILURE stays listed by\n"
    "                    `gtask failed list` and can be run again with `gtask\n"
    "                    rerun` (default 7 days = 168h; 0s: not kept)\n"
    "  --scheduler       also run a scheduler: queue the ticks of the periodic\n"
    "                    tasks stored in Redis (`gtask cron add`), as `gtask\n"
    "                    scheduler` does; any number may run, each tick is queued\n"
    "                    exactly once\n"
    "  --metrics ADDR    serve Prometheus metrics at http://ADDR/metrics\n"
    "                    (ADDR: IP:PORT or [IPv6]:PORT, e.g. 127.0.0.1:9464)\n";

enum {
  O_CONCURRENCY = 1,
  O_POOL,
  O_TASKS,
  O_BUILTIN,
  O_QUEUES,
  O_FAILED_RETENTION,
  O_SCHEDULER,
  O_METRICS,
  O_STRICT
};

/* ---------------------------------------------------------------- logging */

void cli_log_line(gtask_log_level level, const char *line, void *udata) {
  (void)udata;
  static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
  /* One fprintf per line: stdio locks the stream, so lines from several
   * threads do not interleave. */
  fprintf(stderr, "%s.%03ld gtask %s: %s\n", when, ts.tv_nsec / 1000000L,
          level <= GTASK_LOG_ERROR ? names[level] : "?", line);
}

/* ---------------------------------------------------------------- signals */

static gtask_server *volatile the_server;
static gtask_scheduler *volatile the_scheduler; /* --scheduler */
static volatile sig_atomic_t signals_seen;
static volatile sig_atomic_t last_signal;

static void on_signal(int sig) {
  last_signal = sig;
  if (signals_seen++ == 0) {
    gtask_server_shutdown(the_server); /* async-signal-safe */
    gtask_scheduler_shutdown(the_scheduler); /* so is this */
    return;
  }
  static const char msg[] = "gtask: second signal: exiting without waiting for running tasks\n";
  ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
  (void)w;
  _exit(130);
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* ---------------------------------------------------------------- --tasks */

typedef struct plugin {
  char *path;
  void *handle;
  tasks_register_fn reg;
} plugin;

/* Opens path (a name without '/' is taken as a file in the current directory,
 * not a library to search for) and finds its registration function. */
static int plugin_open(cli *c, const char *path, plugin *p) {
  size_t n = strlen(path) + 3;
  p->path = malloc(n);
  if (!p->path) {
    cli_error("out of memory");
    return CLI_FAILED;
  }
  snprintf(p->path, n, "%s%s", strchr(path, '/') ? "" : "./", path);
  dlerror();
  p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
  if (!p->handle) return cli_usage_error(c, "--tasks %s: cannot load: %s", path, dlerror());
  void *sym = dlsym(p->handle, TASKS_REGISTER_SYMBOL);
  if (!sym)
    return cli_usage_error(c, "--tasks %s: no function %s in it (see README \"Command line\")",
                           path, TASKS_REGISTER_SYMBOL);
  /* POSIX guarantees that a function's address round-trips through void *. */
  memcpy(&p->reg, &sym, sizeof(p->reg));
  return CLI_OK;
}

static void plugins_close(plugin *ps, size_t n) {
  for (size_t k = 0; k < n; k++) {
    if (ps[k].handle) dlclose(ps[k].handle);
    free(ps[k].path);
  }
  free(ps);
}

/* ---------------------------------------------------------------- --scheduler */

static void *run_scheduler(void *arg) {
  int rc = gtask_scheduler_run(arg);
  if (rc) cli_error("scheduler: %s (%s)", gtask_strerror(rc), gtask_scheduler_errmsg(arg));
  return NULL;
}

/* ---------------------------------------------------------------- the command */

typedef struct worker_opts {
  long long concurrency;
  gtask_pool pool;
  const char *pool_name;
  bool builtin;
  const char *queues;
  bool strict; /* --strict */
  bool scheduler;
  const char *metrics; /* --metrics ADDR */
  plugin *plugins;
  size_t nplugins;
  int64_t failed_retention_ms; /* --failed-retention; -1: the library's default */
} worker_opts;

/* Checks the --queues list as gtask_server_set_queues will (names, weights
 * 1..1000 on every queue or none, no name twice), but before connecting. */
static int check_queue_list(const cli *c, const char *list) {
  size_t n = 0, weighted = 0;
  char names[256][160];
  for (const char *p = list;; n++) {
    size_t len = strcspn(p, ",");
    if (n == sizeof(names) / sizeof(names[0]))
      return cli_usage_error(c, "bad --queues: at most %zu queues", n);
    char *name = names[n];
    snprintf(name, sizeof(names[0]), "%.*s", (int)(len < sizeof(names[0]) - 1 ? len : sizeof(names[0]) - 1), p);
    char *colon = strrchr(name, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
      long long w;
      if (cli_parse_int(colon + 1, 1, 1000, &w) != 0)
        return cli_usage_error(c, "bad weight in --queues entry \"%s\" (an integer from 1 to 1000)", name);
      *colon = '\0';
      weighted++;
    }
    int code = cli_check_queue(c, name);
    if (code != CLI_OK) return code;
    for (size_t i = 0; i < n; i++)
      if (strcmp(names[i], name) == 0) return cli_usage_error(c, "bad --queues: queue \"%s\" is listed twice", name);
    if (!p[len]) break;
    p += len + 1;
  }
  if (weighted && weighted != n + 1)
    return cli_usage_error(c, "bad --queues \"%s\": give every queue a weight (a:6,b:3,c:1) or none "
                              "(a,b,c: strict order)", list);
  return CLI_OK;
}

static int parse(cli *c, int argc, char **argv, worker_opts *w) {
  static const cli_opt opts[] = {{"concurrency", OPT_REQUIRED, O_CONCURRENCY},
                                 {"pool", OPT_REQUIRED, O_POOL},
                                 {"tasks", OPT_REQUIRED, O_TASKS},
                                 {"builtin", OPT_NONE, O_BUILTIN},
                                 {"queues", OPT_REQUIRED, O_QUEUES},
                                 {"failed-retention", OPT_REQUIRED, O_FAILED_RETENTION},
                                 {"scheduler", OPT_NONE, O_SCHEDULER},
                                 {"metrics", OPT_REQUIRED, O_METRICS},
                                 {"strict", OPT_NONE, O_STRICT},
                                 {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == OPT_HELP) {
      fputs(usage_worker, stdout);
      return -1;
    }
    if (r == -2) return CLI_USAGE;
    switch (r) {
    case O_CONCURRENCY:
      if (cli_parse_int(v, 1, 4096, &w->concurrency) != 0)
        return cli_usage_error(c, "bad --concurrency \"%s\" (an integer from 1 to 4096)", v);
      break;
    case O_POOL:
      if (strcmp(v, "threads") == 0) {
        w->pool = GTASK_POOL_THREADS;
      } else if (strcmp(v, "procs") == 0) {
        w->pool = GTASK_POOL_PROCS;
      } else {
        return cli_usage_error(c, "bad --pool \"%s\" (threads or procs)", v);
      }
      w->pool_name = v;
      break;
    case O_TASKS: {
      plugin *ps = realloc(w->plugins, (w->nplugins + 1) * sizeof(*ps));
      if (!ps) {
        cli_error("out of memory");
        return CLI_FAILED;
      }
      w->plugins = ps;
      memset(&ps[w->nplugins], 0, sizeof(*ps));
      int code = plugin_open(c, v, &ps[w->nplugins++]);
      if (code) return code;
      break;
    }
    case O_BUILTIN:
      w->builtin = true;
      break;
    case O_QUEUES:
      w->queues = v;
      break;
    case O_FAILED_RETENTION:
      if (cli_parse_duration(v, &w->failed_retention_ms) != 0)
        return cli_usage_error(c, "bad duration \"%s\" for --failed-retention (a number with ms, s, m or h: 0s, 7h)", v);
      break;
    case O_SCHEDULER:
      w->scheduler = true;
      break;
    case O_METRICS:
      w->metrics = v;
      break;
    case O_STRICT:
      w->strict = true;
      break;
    default:
      return cli_usage_error(c, "unexpected argument \"%s\"", v);
    }
  }
  if (!w->builtin && w->nplugins == 0)
    return cli_usage_error(c, "the worker has no tasks to run: give --builtin or --tasks FILE.so");
  return w->queues ? check_queue_list(c, w->queues) : CLI_OK;
}

/* Builds the server: queues, pool, handlers.  Prints the reason on failure. */
static int setup(cli *c, worker_opts *w, gtask_server *svr) {
  const char *queues = w->queues ? w->queues : c->queue;
  if (gtask_server_set_queues(svr, queues) != 0)
    return cli_usage_error(c, "bad queue list \"%s\": %s", queues, gtask_server_errmsg(svr));
  gtask_server_set_strict(svr, w->strict);
  if (w->failed_retention_ms >= 0) gtask_server_set_failed_retention(svr, w->failed_retention_ms);
  if (gtask_server_set_pool(svr, w->pool) != 0) {
    cli_error("cannot use the %s pool: %s", w->pool_name, gtask_server_errmsg(svr));
    return CLI_FAILED;
  }
  int rc = w->metrics ? gtask_server_serve_metrics(svr, w->metrics) : 0;
  if (rc == GTASK_EINVAL) return cli_usage_error(c, "--metrics: %s", gtask_server_errmsg(svr));
  if (rc) {
    cli_error("--metrics: %s", gtask_server_errmsg(svr));
    return CLI_FAILED;
  }
  rc = w->builtin ? builtin_register(svr) : 0;
  if (rc) {
    cli_error("registering the builtin tasks: %s (%s)", gtask_strerror(rc), gtask_server_errmsg(svr));
    return CLI_FAILED;
  }
  for (size_t k = 0; k < w->nplugins; k++) {
    rc = w->plugins[k].reg(svr);
    if (rc) {
      cli_error("--tasks %s: %s returned %d%s%s", w->plugins[k].path, TASKS_REGISTER_SYMBOL, rc,
                gtask_server_errmsg(svr)[0] ? ": " : "", gtask_server_errmsg(svr));
      return CLI_FAILED;
    }
  }
  return CLI_OK;
}

int cmd_worker(cli *c, int argc, char **argv) {
  worker_opts w = {.concurrency = 10, .pool = GTASK_POOL_THREADS, .pool_name = "threads",
                   .failed_retention_ms = -1};
  int code = parse(c, argc, argv, &w);
  if (code) {
    plugins_close(w.plugins, w.nplugins);
    return code < 0 ? CLI_OK : code;
  }
  if ((code = cli_connect(c)) != CLI_OK) {
    plugins_close(w.plugins, w.nplugins);
    return code;
  }
  gtask_set_log(cli_log_line, NULL, GTASK_LOG_INFO); /* after: cli_connect reports its own failure */
  gtask_server *svr = gtask_server_new(c->broker, c->backend);
  if (!svr) {
    cli_error("cannot create the server: %s", gtask_last_error());
    plugins_close(w.plugins, w.nplugins);
    return CLI_FAILED;
  }
  code = setup(c, &w, svr);
  if (code == CLI_OK) {
    the_server = svr;
    install_signals();
    char line[512];
    snprintf(line, sizeof(line), "gtask worker: serving %s on %s (results on %s), concurrency %lld, %s pool",
             w.queues ? w.queues : c->queue, c->redis_desc, c->backend_desc, w.concurrency,
             w.pool_name);
    cli_log_line(GTASK_LOG_INFO, line, NULL);
    if (w.metrics) {
      /* The port is named: with port 0 the system chose it. */
      snprintf(line, sizeof(line), "gtask worker: metrics on %s, port %d (GET /metrics)", w.metrics,
               gtask_server_metrics_port(svr));
      cli_log_line(GTASK_LOG_INFO, line, NULL);
    }
    pthread_t sched_thread;
    bool sched_running = false;
    if (w.scheduler) {
      the_scheduler = gtask_scheduler_new(c->broker, c->backend);
      sched_running = the_scheduler &&
                      pthread_create(&sched_thread, NULL, run_scheduler, the_scheduler) == 0;
      if (!sched_running) {
        cli_error("cannot start the scheduler: %s", gtask_last_error());
        code = CLI_FAILED;
      }
    }
    int rc = code ? 0 : gtask_server_run(svr, (int)w.concurrency);
    if (sched_running) {
      gtask_scheduler_shutdown(the_scheduler);
      pthread_join(sched_thread, NULL);
    }
    gtask_scheduler_free(the_scheduler);
    the_scheduler = NULL;
    if (rc) {
      cli_error("worker: %s (%s)", gtask_strerror(rc), gtask_server_errmsg(svr));
      code = CLI_FAILED;
    } else if (code == CLI_OK) {
      snprintf(line, sizeof(line), "gtask worker: clean shutdown%s%s", last_signal ? " after " : "",
               last_signal == SIGINT ? "SIGINT" : last_signal == SIGTERM ? "SIGTERM" : "");
      cli_log_line(GTASK_LOG_INFO, line, NULL);
    }
  }
  gtask_server_free(svr);
  the_server = NULL;
  plugins_close(w.plugins, w.nplugins);
  return code;
}
