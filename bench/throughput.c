/* bench/throughput.c -- how many tasks a second gtask moves through one Redis.
 *
 *   throughput [--redis URL] [-n TASKS] [-c CONCURRENCY] [--mode MODE]...
 *              [--role all|client|worker] [--pool threads|procs] [--prefetch N]
 *              [--ready FILE] [--collect wait|count] [--queue NAME] [--metrics ADDR]
 *
 * --queue (default "bench") is the queue used (bench/cluster runs one
 * process per shard, each on a queue of its own shard).
 * Modes (each run once, in the order given; default: all four):
 *   awaited  one send, then wait for its result, repeated n times (latency
 *            p50/p99 in microseconds, and tasks/s)
 *   serial   n sends one at a time with a worker running, then wait for all
 *            (enqueue/s and end-to-end/s: first send to last result)
 *   bulk     the same with gtask_client_send_many in batches of 1000
 *   drain    fill the queue with n tasks first, then start the worker: first
 *            result to last (the worker's own rate)
 * The worker runs in this process (-c executors), on its own connections, with
 * the handler add(int64, int64) -> int64.  Output: one line per mode,
 * "mode=... n=... tasks_per_s=... [p50_us=... p99_us=...]".
 *
 * Roles, for bench/run, which runs workers as separate processes (so that
 * their RSS is their own, as for the peers it compares against):
 *   all     (default) worker thread and client in this process, as above
 *   worker  only the worker: serves queue "bench" until SIGTERM or SIGINT
 *   client  only the modes; a worker process must be serving.  serial and
 *           bulk first run 20 round trips (so a starting worker is up before
 *           the clock starts); drain fills the queue, then creates --ready FILE
 *           and waits for a worker to appear.
 *
 * How serial, bulk and drain learn that every result is stored:
 *   wait    (default) gtask_client_wait on every task, in order: one round
 *           trip per task on the client's side
 *   count   poll the queue's finished counter (gtask_client_stats: it is
 *           bumped in the same script that stores the result) every 2 ms, as
 *           bench/run's peers poll theirs; then, off the clock, read every
 *           result with gtask_client_wait to check it. */
#include <gtask/gtask.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef enum role { ROLE_ALL, ROLE_CLIENT, ROLE_WORKER } role;

typedef struct bench {
  const char *url;
  int n, conc;
  role role;
  gtask_pool pool;
  int prefetch;      /* 0: the server's default */
  const char *ready; /* drain, client role: created once the queue is full */
  bool count;        /* --collect count (else wait) */
  const char *metrics; /* --metrics ADDR: the worker serves Prometheus metrics (issue 20) */
  const char *queue; /* --queue, default "bench" */
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_server *server;
  pthread_t thread;
  gtask_client *client;
  gtask_send_conf *conf;
} bench;

static void *run(void *arg) {
  bench *b = arg;
  gtask_server_run(b->server, b->conc);
  return NULL;
}

static void die(const char *what, const char *msg);

static gtask_server *new_server(bench *b) {
  gtask_server *s = gtask_server_new(b->broker, b->backend);
  if (!s) die("server", "out of memory");
  GTASK_REG(s, add);
  gtask_server_set_queues(s, b->queue);
  if (gtask_server_set_pool(s, b->pool) != 0) die("server", gtask_server_errmsg(s));
  if (b->prefetch && gtask_server_set_prefetch(s, b->prefetch) != 0)
    die("server", gtask_server_errmsg(s));
  if (b->metrics && gtask_server_serve_metrics(s, b->metrics) != 0)
    die("server", gtask_server_errmsg(s));
  return s;
}

/* In the client role the worker is another process: nothing to start. */
static void start_worker(bench *b) {
  if (b->role == ROLE_CLIENT) return;
  b->server = new_server(b);
  pthread_create(&b->thread, NULL, run, b);
}

static void stop_worker(bench *b) {
  if (b->role == ROLE_CLIENT) return;
  gtask_server_shutdown(b->server);
  pthread_join(b->thread, NULL);
  gtask_server_free(b->server);
  b->server = NULL;
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "throughput: %s: %s\n", what, msg);
  exit(1);
}

static void wait_all(bench *b, char (*ids)[GTASK_ID_SIZE], int n) {
  for (int k = 0; k < n; k++) {
    gtask_result *r;
    if (gtask_client_wait(b->client, ids[k], 60000, &r) != 0) die("wait", gtask_client_errmsg(b->client));
    if (r->status != GTASK_SUCCESS) die("task", r->error ? r->error : "failed");
    gtask_result_free(r);
  }
}

static int64_t succeeded(bench *b) {
  gtask_queue_stats st;
  if (gtask_client_stats(b->client, NULL, &st) != 0) die("stats", gtask_client_errmsg(b->client));
  return st.succeeded;
}

/* Polls the queue's finished counter until it reaches target (60 s at most
 * without progress). */
static void wait_count(bench *b, int64_t target, long interval_us) {
  int64_t last = -1;
  double progress = now_s();
  for (;;) {
    int64_t got = succeeded(b);
    if (got >= target) return;
    if (got != last) last = got, progress = now_s();
    else if (now_s() - progress > 60) die("wait", "no task finished for 60 s");
    struct timespec ts = {0, interval_us * 1000};
    nanosleep(&ts, NULL);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void mode_awaited(bench *b) {
  start_worker(b);
  double *lat = malloc(sizeof(double) * (size_t)b->n);
  char id[GTASK_ID_SIZE];
  /* Warm up connections and scripts. */
  for (int k = 0; k < 50; k++) {
    gtask_result *r;
    GTASK_SEND(b->client, b->conf, id, gtask_int64(k), gtask_int64(1));
    gtask_client_wait(b->client, id, 10000, &r);
    gtask_result_free(r);
  }
  double t0 = now_s();
  for (int k = 0; k < b->n; k++) {
    double s = now_s();
    gtask_result *r;
    if (GTASK_SEND(b->client, b->conf, id, gtask_int64(k), gtask_int64(1)) != 0)
      die("send", gtask_client_errmsg(b->client));
    if (gtask_client_wait(b->client, id, 10000, &r) != 0) die("wait", gtask_client_errmsg(b->client));
    gtask_result_free(r);
    lat[k] = (now_s() - s) * 1e6;
  }
  double dt = now_s() - t0;
  qsort(lat, (size_t)b->n, sizeof(double), cmp_double);
  printf("mode=awaited n=%d tasks_per_s=%.0f p50_us=%.0f p99_us=%.0f\n", b->n, b->n / dt,
         lat[b->n / 2], lat[(int)(b->n * 0.99)]);
  free(lat);
  stop_worker(b);
}

/* A few round trips, so that a worker process that is still starting is
 * serving (and its connections and scripts warm) before the clock starts. */
static void warm_up(bench *b, int count) {
  char id[GTASK_ID_SIZE];
  for (int k = 0; k < count; k++) {
    gtask_result *r;
    if (GTASK_SEND(b->client, b->conf, id, gtask_int64(k), gtask_int64(1)) != 0)
      die("send", gtask_client_errmsg(b->client));
    if (gtask_client_wait(b->client, id, 60000, &r) != 0) die("warm-up", gtask_client_errmsg(b->client));
    gtask_result_free(r);
  }
}

static void mode_send(bench *b, bool bulk) {
  char(*ids)[GTASK_ID_SIZE] = malloc(sizeof(*ids) * (size_t)b->n);
  start_worker(b);
  if (b->role == ROLE_CLIENT) warm_up(b, 20);
  int64_t base = b->count ? succeeded(b) : 0;
  double t0 = now_s();
  if (bulk) {
    enum { BATCH = 1000 };
    gtask_value *args = malloc(sizeof(gtask_value) * 2 * BATCH);
    for (int done = 0; done < b->n; done += BATCH) {
      int m = b->n - done < BATCH ? b->n - done : BATCH;
      for (int k = 0; k < m; k++) {
        args[2 * k] = gtask_int64(done + k);
        args[2 * k + 1] = gtask_int64(1);
      }
      if (gtask_client_send_many(b->client, b->conf, (size_t)m, args, 2, ids + done) != 0)
        die("send_many", gtask_client_errmsg(b->client));
    }
    free(args);
  } else {
    for (int k = 0; k < b->n; k++)
      if (GTASK_SEND(b->client, b->conf, ids[k], gtask_int64(k), gtask_int64(1)) != 0)
        die("send", gtask_client_errmsg(b->client));
  }
  double t1 = now_s();
  if (b->count) wait_count(b, base + b->n, 2000);
  else wait_all(b, ids, b->n);
  double t2 = now_s();
  if (b->count) wait_all(b, ids, b->n); /* off the clock: check every result */
  printf("mode=%s n=%d enqueue_per_s=%.0f tasks_per_s=%.0f\n", bulk ? "bulk" : "serial", b->n,
         b->n / (t1 - t0), b->n / (t2 - t0));
  stop_worker(b);
  free(ids);
}

static void mode_drain(bench *b) {
  char(*ids)[GTASK_ID_SIZE] = malloc(sizeof(*ids) * (size_t)b->n);
  gtask_value *args = malloc(sizeof(gtask_value) * 2 * 1000);
  for (int done = 0; done < b->n; done += 1000) {
    int m = b->n - done < 1000 ? b->n - done : 1000;
    for (int k = 0; k < m; k++) {
      args[2 * k] = gtask_int64(done + k);
      args[2 * k + 1] = gtask_int64(1);
    }
    if (gtask_client_send_many(b->client, b->conf, (size_t)m, args, 2, ids + done) != 0)
      die("send_many", gtask_client_errmsg(b->client));
  }
  free(args);
  int64_t base = b->count ? succeeded(b) : 0;
  if (b->ready) {
    /* Tell bench/run the queue is full: it measures Redis memory now, then
     * starts the worker process. */
    FILE *f = fopen(b->ready, "w");
    if (!f || fclose(f) != 0) die("ready file", b->ready);
  }
  start_worker(b);
  /* First result to last: wait for the first, then the rest. */
  double t0, dt;
  if (b->count) {
    wait_count(b, base + 1, 500);
    t0 = now_s();
    wait_count(b, base + b->n, 2000);
    dt = now_s() - t0;
    wait_all(b, ids, b->n); /* off the clock: check every result */
  } else {
    gtask_result *r;
    if (gtask_client_wait(b->client, ids[0], 60000, &r) != 0) die("wait", gtask_client_errmsg(b->client));
    gtask_result_free(r);
    t0 = now_s();
    wait_all(b, ids, b->n);
    dt = now_s() - t0;
  }
  printf("mode=drain n=%d tasks_per_s=%.0f\n", b->n, (b->n - 1) / dt);
  stop_worker(b);
  free(ids);
}

static void usage(void) {
  fprintf(stderr,
          "usage: throughput [--redis URL] [-n TASKS] [-c CONCURRENCY] "
          "[--mode awaited|serial|bulk|drain]...\n"
          "                  [--role all|client|worker] [--pool threads|procs] "
          "[--prefetch N] [--ready FILE]\n"
          "                  [--collect wait|count] [--queue NAME] [--metrics ADDR]\n");
  exit(2);
}

static gtask_server *volatile worker_server;

static void on_signal(int sig) {
  (void)sig;
  if (worker_server) gtask_server_shutdown(worker_server); /* async-signal-safe */
}

/* The worker role: serve until SIGTERM/SIGINT, then shut down gracefully. */
static void role_worker(bench *b) {
  gtask_server *s = new_server(b);
  worker_server = s;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (gtask_server_run(s, b->conc) != 0) die("worker", gtask_server_errmsg(s));
  gtask_server_counts counts;
  if (gtask_server_get_counts(s, &counts) == 0)
    fprintf(stderr, "worker: succeeded=%" PRIu64 " failed=%" PRIu64 "\n", counts.succeeded,
            counts.failed);
  worker_server = NULL;
  gtask_server_free(s);
}

int main(int argc, char **argv) {
  bench b = {.url = getenv("GTASK_REDIS_URL"), .n = 20000, .conc = 8, .queue = "bench"};
  const char *modes[8];
  int nmodes = 0;
  for (int k = 1; k < argc; k++) {
    if (!strcmp(argv[k], "--redis") && k + 1 < argc) b.url = argv[++k];
    else if (!strcmp(argv[k], "-n") && k + 1 < argc) b.n = (int)strtol(argv[++k], NULL, 10);
    else if (!strcmp(argv[k], "-c") && k + 1 < argc) b.conc = (int)strtol(argv[++k], NULL, 10);
    else if (!strcmp(argv[k], "--mode") && k + 1 < argc && nmodes < 8) modes[nmodes++] = argv[++k];
    else if (!strcmp(argv[k], "--role") && k + 1 < argc) {
      const char *r = argv[++k];
      if (!strcmp(r, "all")) b.role = ROLE_ALL;
      else if (!strcmp(r, "client")) b.role = ROLE_CLIENT;
      else if (!strcmp(r, "worker")) b.role = ROLE_WORKER;
      else usage();
    } else if (!strcmp(argv[k], "--pool") && k + 1 < argc) {
      const char *p = argv[++k];
      if (!strcmp(p, "threads")) b.pool = GTASK_POOL_THREADS;
      else if (!strcmp(p, "procs")) b.pool = GTASK_POOL_PROCS;
      else usage();
    } else if (!strcmp(argv[k], "--metrics") && k + 1 < argc) {
      b.metrics = argv[++k];
    } else if (!strcmp(argv[k], "--prefetch") && k + 1 < argc)
      b.prefetch = (int)strtol(argv[++k], NULL, 10);
    else if (!strcmp(argv[k], "--ready") && k + 1 < argc) b.ready = argv[++k];
    else if (!strcmp(argv[k], "--queue") && k + 1 < argc) b.queue = argv[++k];
    else if (!strcmp(argv[k], "--collect") && k + 1 < argc) {
      const char *c = argv[++k];
      if (!strcmp(c, "count")) b.count = true;
      else if (!strcmp(c, "wait")) b.count = false;
      else usage();
    }
    else usage();
  }
  if (b.n < 2 || b.conc < 1) usage();
  if (!nmodes) {
    modes[0] = "awaited", modes[1] = "serial", modes[2] = "bulk", modes[3] = "drain";
    nmodes = 4;
  }
  gtask_redis_conf *conf;
  if (gtask_redis_conf_new(&conf, b.url, NULL, -1) != 0) die("config", gtask_last_error());
  if (gtask_broker_redis_new(&b.broker, conf) || gtask_backend_redis_new(&b.backend, conf))
    die("connect", gtask_last_error());
  gtask_redis_conf_free(conf);
  if (b.role == ROLE_WORKER) {
    role_worker(&b);
    gtask_broker_free(b.broker);
    gtask_backend_free(b.backend);
    return 0;
  }
  b.client = gtask_client_new(b.broker, b.backend);
  b.conf = gtask_send_conf_new("add");
  gtask_client_set_queue(b.client, b.queue);
  gtask_send_conf_set_queue(b.conf, b.queue);
  for (int k = 0; k < nmodes; k++) {
    if (!strcmp(modes[k], "awaited")) mode_awaited(&b);
    else if (!strcmp(modes[k], "serial")) mode_send(&b, false);
    else if (!strcmp(modes[k], "bulk")) mode_send(&b, true);
    else if (!strcmp(modes[k], "drain")) mode_drain(&b);
    else usage();
  }
  gtask_send_conf_free(b.conf);
  gtask_client_free(b.client);
  gtask_broker_free(b.broker);
  gtask_backend_free(b.backend);
  return 0;
}
