/* metrics.c -- Prometheus metrics of a worker server (issue 20): counters and
 * histograms per (queue, task name) fed by a lifecycle hook (hooks.c), the
 * worker's gauges read at scrape time, and the text exposition format
 * (version 0.0.4), served by libmicrohttpd at /metrics.
 *
 * Cost per event: one mutex and a hash lookup (the series of a queue and task
 * name, created on first sight).  The number of series is capped
 * (MAX_SERIES): a sender that invents task names cannot grow a worker's
 * memory without bound; past the cap, new names count under task="(other)".
 *
 * Locks: the metrics mutex is never held while taking the server's (gauges
 * are read first, under the server mutex alone), and the hook runs with no
 * server lock held (hooks.c), so there is no order to get wrong.
 *
 * The HTTP thread is libmicrohttpd's own; it only renders.  It is stopped in
 * gtask__metrics_free (gtask_server_free) before anything it reads goes. */
#include "worker.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 2000
#define NSLOTS 256

enum {
  C_STARTED,
  C_SUCCEEDED,
  C_FAILED,
  C_RETRIED,
  C_TIMED_OUT,
  C_CRASHED,
  C_LEASE_LOST,
  C_RECLAIMED,
  C_CANCELLED,
  NCOUNTERS
};

static const struct {
  const char *name, *help;
} counters[NCOUNTERS] = {
    [C_STARTED] = {"gtask_tasks_started_total", "Task runs started by this worker."},
    [C_SUCCEEDED] = {"gtask_tasks_succeeded_total", "Tasks this worker finished SUCCESS."},
    [C_FAILED] = {"gtask_tasks_failed_total", "Tasks this worker finished FAILURE (final)."},
    [C_RETRIED] = {"gtask_tasks_retried_total", "Runs that failed and were scheduled to retry."},
    [C_TIMED_OUT] = {"gtask_tasks_timed_out_total", "Runs that passed their deadline."},
    [C_CRASHED] = {"gtask_tasks_crashed_total", "Runs that crashed their child process."},
    [C_LEASE_LOST] = {"gtask_tasks_lease_lost_total",
                      "Outcomes not recorded: the lease had been taken over."},
    [C_RECLAIMED] = {"gtask_tasks_reclaimed_total",
                     "Tasks taken over from a lost worker and queued again or dead-lettered."},
    [C_CANCELLED] = {"gtask_tasks_cancelled_total",
                     "Tasks this worker held (running or prefetched) when they were cancelled."},
};

/* Bucket upper bounds, seconds: from 100 us (a fast handler) to 5 min. */
static const double bounds[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1,
                                0.5,    1,      5,     10,    30,   60,   300};
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))

typedef struct hist {
  uint64_t bucket[NBOUNDS]; /* not cumulative: rendered cumulatively */
  uint64_t count;
  double sum;
} hist;

typedef struct series {
  struct series *next;
  char *queue, *name;
  uint64_t c[NCOUNTERS];
  hist run, wait;
} series;

struct gtask__metrics {
  gtask_server *s;
  pthread_mutex_t mu;
  series *slot[NSLOTS]; /* [mu] */
  size_t nseries;       /* [mu] */
  struct MHD_Daemon *httpd;
  int port;
};

static void hist_add(hist *h, double x) {
  size_t k = 0;
  while (k < NBOUNDS && x > bounds[k]) k++;
  if (k < NBOUNDS) h->bucket[k]++;
  h->count++;
  h->sum += x;
}

static unsigned hash2(const char *a, const char *b) {
  uint32_t h = 2166136261u;
  for (; *a; a++) h = (h ^ (uint8_t)*a) * 16777619u;
  h = (h ^ 0xff) * 16777619u;
  for (; *b; b++) h = (h ^ (uint8_t)*b) * 16777619u;
  return h % NSLOTS;
}

/* The series of (queue, name), created if new.  m->mu held.  NULL on OOM. */
static series *series_get_locked(gtask__metrics *m, const char *queue, const char *name) {
  if (m->nseries >= MAX_SERIES) name = "(other)";
  unsigned h = hash2(queue, name);
  for (series *x = m->slot[h]; x; x = x->next)
    if (strcmp(x->name, name) == 0 && strcmp(x->queue, queue) == 0) return x;
  series *x = gtask__calloc(1, sizeof(*x));
  if (!x) return NULL;
  x->queue = gtask__strdup(queue);
  x->name = gtask__strdup(name);
  if (!x->queue || !x->name) {
    gtask__free(x->queue);
    gtask__free(x->name);
    gtask__free(x);
    return NULL;
  }
  x->next = m->slot[h];
  m->slot[h] = x;
  m->nseries++;
  return x;
}

static void on_event(const gtask_event *ev, void *udata) {
  gtask__metrics *m = udata;
  int c;
  switch (ev->type) {
  case GTASK_EV_STARTED: c = C_STARTED; break;
  case GTASK_EV_SUCCEEDED: c = C_SUCCEEDED; break;
  case GTASK_EV_FAILED: c = C_FAILED; break;
  case GTASK_EV_RETRIED: c = C_RETRIED; break;
  case GTASK_EV_TIMED_OUT: c = C_TIMED_OUT; break;
  case GTASK_EV_CRASHED: c = C_CRASHED; break;
  case GTASK_EV_LEASE_LOST: c = C_LEASE_LOST; break;
  case GTASK_EV_RECLAIMED: c = C_RECLAIMED; break;
  case GTASK_EV_CANCELLED: c = C_CANCELLED; break;
  default: return;
  }
  /* A run's time is observed once, with its outcome: the event that ends
   * it (a timeout is followed by RETRIED or FAILED for the same run). */
  bool ends_run = ev->attempt > 0 &&
                  (c == C_SUCCEEDED || c == C_FAILED || c == C_RETRIED || c == C_CANCELLED);
  pthread_mutex_lock(&m->mu);
  series *x = series_get_locked(m, ev->queue, ev->name);
  if (x) {
    x->c[c]++;
    if (c == C_STARTED) hist_add(&x->wait, (double)ev->queue_wait_ms / 1e3);
    if (ends_run) hist_add(&x->run, (double)ev->run_ns / 1e9);
  }
  pthread_mutex_unlock(&m->mu);
}

/* ---------------------------------------------------------------- text format */

/* A label value: backslash, double quote and line feed escaped. */
static void label_value(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '\\') fputs("\\\\", f);
    else if (*s == '"') fputs("\\\"", f);
    else if (*s == '\n') fputs("\\n", f);
    else fputc(*s, f);
  }
}

static void labels(FILE *f, const series *x) {
  fputs("{queue=\"", f);
  label_value(f, x->queue);
  fputs("\",task=\"", f);
  label_value(f, x->name);
  fputc('"', f);
}

static void render_hist(FILE *f, gtask__metrics *m, const char *name, const char *help,
                        size_t off) {
  fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (size_t k = 0; k < NSLOTS; k++)
    for (const series *x = m->slot[k]; x; x = x->next) {
      const hist *h = (const hist *)((const char *)x + off);
      if (!h->count) continue;
      uint64_t cum = 0;
      for (size_t b = 0; b < NBOUNDS; b++) {
        cum += h->bucket[b];
        fprintf(f, "%s_bucket", name);
        labels(f, x);
        fprintf(f, ",le=\"%g\"} %llu\n", bounds[b], (unsigned long long)cum);
      }
      fprintf(f, "%s_bucket", name);
      labels(f, x);
      fprintf(f, ",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
      fprintf(f, "%s_sum", name);
      labels(f, x);
      fprintf(f, "} %.9g\n%s_count", h->sum, name);
      labels(f, x);
      fprintf(f, "} %llu\n", (unsigned long long)h->count);
    }
}

static int render(gtask__metrics *m, char **out, size_t *len) {
  gtask_server *s = m->s;
  pthread_mutex_lock(&s->mu);
  size_t busy = s->nrunning, inflight = s->ninflight;
  int nexec = atomic_load(&s->running) ? s->nexec : 0;
  pthread_mutex_unlock(&s->mu);

  char *buf = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&buf, &size);
  if (!f) return GTASK_ENOMEM;
  fputs("# HELP gtask_worker_info The worker this process runs.\n"
        "# TYPE gtask_worker_info gauge\ngtask_worker_info{worker=\"", f);
  label_value(f, s->name);
  fprintf(f, "\",version=\"%s\",pool=\"%s\"} 1\n", gtask_version(),
          s->pool == GTASK_POOL_PROCS ? "procs" : "threads");
  fprintf(f,
          "# HELP gtask_executors Executors of the worker (0 while it does not run).\n"
          "# TYPE gtask_executors gauge\ngtask_executors %d\n"
          "# HELP gtask_executors_busy Executors running a task now.\n"
          "# TYPE gtask_executors_busy gauge\ngtask_executors_busy %zu\n"
          "# HELP gtask_tasks_in_flight Tasks leased by the worker: running or waiting in it.\n"
          "# TYPE gtask_tasks_in_flight gauge\ngtask_tasks_in_flight %zu\n"
          "# HELP gtask_redis_errors_total Redis connects that failed and connections lost "
          "broken (this process).\n"
          "# TYPE gtask_redis_errors_total counter\ngtask_redis_errors_total %llu\n"
          "# HELP gtask_redis_reconnects_total Redis connections opened to replace lost ones "
          "(this process).\n"
          "# TYPE gtask_redis_reconnects_total counter\ngtask_redis_reconnects_total %llu\n",
          nexec, busy, inflight, (unsigned long long)atomic_load(&gtask__redis_errors),
          (unsigned long long)atomic_load(&gtask__redis_reconnects));
  pthread_mutex_lock(&m->mu);
  for (int c = 0; c < NCOUNTERS; c++) {
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", counters[c].name, counters[c].help,
            counters[c].name);
    for (size_t k = 0; k < NSLOTS; k++)
      for (const series *x = m->slot[k]; x; x = x->next) {
        fputs(counters[c].name, f);
        labels(f, x);
        fprintf(f, "} %llu\n", (unsigned long long)x->c[c]);
      }
  }
  render_hist(f, m, "gtask_task_run_seconds", "How long handlers ran, by outcome's run.",
              offsetof(series, run));
  render_hist(f, m, "gtask_task_queue_wait_seconds",
              "From send to the start of a run (a delayed or retried task's wait includes its delay).",
              offsetof(series, wait));
  pthread_mutex_unlock(&m->mu);
  if (fclose(f) != 0 || !buf) {
    free(buf);
    return GTASK_ENOMEM;
  }
  *out = buf;
  *len = size;
  return 0;
}

/* ---------------------------------------------------------------- HTTP */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **con_cls) {
  (void)version, (void)upload, (void)upload_len, (void)con_cls;
  gtask__metrics *m = cls;
  struct MHD_Response *resp;
  unsigned status = MHD_HTTP_OK;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    static const char msg[] = "method not allowed\n";
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
  } else if (strcmp(url, "/metrics") != 0) {
    static const char msg[] = "not found: metrics are at /metrics\n";
    status = MHD_HTTP_NOT_FOUND;
    resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
  } else {
    char *text = NULL;
    size_t len = 0;
    if (render(m, &text, &len) != 0) return MHD_NO;
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) free(text);
    else MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  }
  if (!resp) return MHD_NO;
  enum MHD_Result r = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return r;
}

/* Parses "host:port" (IPv4) or "[v6]:port" into sa. */
static int parse_addr(const char *addr, struct sockaddr_storage *sa, bool *v6) {
  memset(sa, 0, sizeof(*sa));
  const char *colon = strrchr(addr, ':');
  if (!colon || !colon[1]) return GTASK_EINVAL;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535) return GTASK_EINVAL;
  char host[64];
  size_t hl = (size_t)(colon - addr);
  if (hl == 0 || hl >= sizeof(host)) return GTASK_EINVAL;
  memcpy(host, addr, hl);
  host[hl] = '\0';
  if (host[0] == '[' && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *v6 = true;
    return inet_pton(AF_INET6, host + 1, &s6->sin6_addr) == 1 ? 0 : GTASK_EINVAL;
  }
  struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
  s4->sin_family = AF_INET;
  s4->sin_port = htons((uint16_t)port);
  *v6 = false;
  if (strcmp(host, "localhost") == 0) return inet_pton(AF_INET, "127.0.0.1", &s4->sin_addr) == 1 ? 0 : GTASK_EINVAL;
  return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : GTASK_EINVAL;
}

/* ---------------------------------------------------------------- API */

void gtask__metrics_free(gtask__metrics *m) {
  if (!m) return;
  if (m->httpd) MHD_stop_daemon(m->httpd);
  for (size_t k = 0; k < NSLOTS; k++)
    for (series *x = m->slot[k], *next; x; x = next) {
      next = x->next;
      gtask__free(x->queue);
      gtask__free(x->name);
      gtask__free(x);
    }
  pthread_mutex_destroy(&m->mu);
  gtask__free(m);
}

GTASK_EXTERN int gtask_server_serve_metrics(gtask_server *s, const char *addr) {
  if (!s) return GTASK_EINVAL;
  if (atomic_load(&s->running) || s->metrics) {
    gtask__fmt(s->errmsg, sizeof(s->errmsg), "gtask_server_serve_metrics: %s",
               s->metrics ? "metrics are already collected" : "the server is running");
    return GTASK_ESTATE;
  }
  struct sockaddr_storage sa;
  bool v6 = false;
  if (addr && parse_addr(addr, &sa, &v6) != 0) {
    gtask__fmt(s->errmsg, sizeof(s->errmsg),
               "gtask_server_serve_metrics: bad address \"%s\" (HOST:PORT with an IP address, "
               "or [IPv6]:PORT)",
               addr);
    return GTASK_EINVAL;
  }
  gtask__metrics *m = gtask__calloc(1, sizeof(*m));
  if (!m) return GTASK_ENOMEM;
  m->s = s;
  pthread_mutex_init(&m->mu, NULL);
  if (addr) {
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | (v6 ? MHD_USE_IPv6 : 0);
    m->httpd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR,
                                (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, 64u,
                                MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!m->httpd) {
      gtask__fmt(s->errmsg, sizeof(s->errmsg),
                 "gtask_server_serve_metrics: cannot listen on %s (in use, or not an address "
                 "of this host)",
                 addr);
      gtask__metrics_free(m);
      return GTASK_ECONN;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->httpd, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : 0;
  }
  int rc = gtask_server_on(s, GTASK_EV_ALL, on_event, m);
  if (rc) {
    gtask__metrics_free(m);
    return rc;
  }
  s->metrics = m;
  return 0;
}

GTASK_EXTERN int gtask_server_metrics_port(const gtask_server *s) {
  return s && s->metrics ? s->metrics->port : 0;
}

GTASK_EXTERN int gtask_server_metrics_text(gtask_server *s, char **out, size_t *len) {
  if (!s || !out || !len) return GTASK_EINVAL;
  *out = NULL;
  *len = 0;
  if (!s->metrics) return GTASK_ESTATE;
  return render(s->metrics, out, len);
}
