/* dashboard.c -- `gtask dashboard` (issue 20): a web UI and a JSON API over
 * the public inspection calls, and the queue-level Prometheus gauges.
 *
 *   GET  /                    the UI (cli/web/, embedded at build time)
 *   GET  /api/session         {"csrf": token, "version", "queues": [...]}
 *   GET  /api/overview        every queue's counts, and the last minutes of
 *                             samples (throughput, depth) for the charts
 *   GET  /api/queue?name=Q&state=S&after=C&limit=N   a page of tasks
 *   GET  /api/task?queue=Q&id=ID                     one task's record
 *   GET  /api/workers         the live workers
 *   POST /api/dead/requeue?queue=Q[&id=ID], /api/dead/purge?queue=Q,
 *        /api/rerun?queue=Q&id=ID, /api/queue/pause?queue=Q, /api/queue/resume,
 *        /api/cancel?queue=Q&id=ID
 *   GET  /metrics             gtask_queue_* gauges (one place reads Redis for
 *                             them, not every worker)
 *
 * Safety: it binds loopback unless told otherwise; with --token every
 * request needs the token (?token=T once, which sets an HttpOnly cookie, or
 * "Authorization: Bearer T"); every POST needs the X-CSRF-Token header that
 * /api/session gives, which a cross-site form cannot send; task data goes out
 * as JSON only and the UI puts it in the page as text (never as HTML).
 *
 * Threads: libmicrohttpd serves every request on its one internal thread,
 * with one gtask_client; a sampler thread with a client of its own reads
 * every queue's counts each second into a ring of SAMPLES, under mu. */
#include "cli.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

typedef struct web_asset {
  const char *path, *type;
  const unsigned char *bytes;
  size_t len;
} web_asset;
extern const web_asset web_assets[]; /* generated: cmake/embed_files.cmake */

#define SAMPLES 600 /* 10 minutes at one a second */
#define MAX_QUEUES 64

typedef struct sample {
  int64_t t_ms;
  gtask_queue_stats st[MAX_QUEUES];
} sample;

typedef struct dash {
  cli *c;
  const char *token;        /* --token, or NULL */
  char csrf[33];
  char queues_buf[4096];
  const char *queues[MAX_QUEUES]; /* [mu] the queues shown: --queues and the workers' */
  size_t nqueues;           /* [mu] */
  gtask_client *http;       /* the HTTP thread's client */
  gtask_client *sampler;    /* the sampler thread's */
  pthread_mutex_t mu;
  sample *ring;             /* [mu] SAMPLES */
  size_t nsamples, head;    /* [mu] */
  atomic_bool stop;         /* set by the main thread at a signal */
} dash;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- queues, sampling */

/* Adds q to the shown queues if new (d->mu held).  q must outlive d: names
 * from worker records are copied into queues_buf. */
static void queue_add_locked(dash *d, const char *q) {
  for (size_t k = 0; k < d->nqueues; k++)
    if (strcmp(d->queues[k], q) == 0) return;
  if (d->nqueues == MAX_QUEUES) return;
  size_t used = 0;
  for (size_t k = 0; k < d->nqueues; k++)
    if (d->queues[k] >= d->queues_buf && d->queues[k] < d->queues_buf + sizeof(d->queues_buf))
      used = (size_t)(d->queues[k] - d->queues_buf) + strlen(d->queues[k]) + 1 > used
                 ? (size_t)(d->queues[k] - d->queues_buf) + strlen(d->queues[k]) + 1
                 : used;
  size_t n = strlen(q) + 1;
  if (used + n > sizeof(d->queues_buf)) return;
  memcpy(d->queues_buf + used, q, n);
  d->queues[d->nqueues++] = d->queues_buf + used;
}

/* Copies the shown queues into qs (d->mu taken here); returns how many.  The
 * names stay valid unlocked: a queue, once shown, is never removed. */
static size_t queues_now(dash *d, const char *qs[MAX_QUEUES]) {
  pthread_mutex_lock(&d->mu);
  size_t nq = d->nqueues;
  memcpy(qs, d->queues, nq * sizeof(*qs));
  pthread_mutex_unlock(&d->mu);
  return nq;
}

static void *sampler_main(void *arg) {
  dash *d = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  int64_t next = now_ms();
  while (!atomic_load(&d->stop)) {
    /* Queues that live workers serve appear by themselves. */
    gtask_worker_info *w = NULL;
    size_t nw = 0;
    if (gtask_client_workers(d->sampler, &w, &nw) == 0) {
      pthread_mutex_lock(&d->mu);
      for (size_t k = 0; k < nw; k++)
        for (size_t q = 0; q < w[k].nqueues; q++) queue_add_locked(d, w[k].queues[q]);
      pthread_mutex_unlock(&d->mu);
      gtask_workers_free(w, nw);
    }
    const char *qs[MAX_QUEUES];
    size_t nq = queues_now(d, qs);
    sample s = {.t_ms = now_ms()};
    bool ok = true;
    for (size_t k = 0; k < nq && ok; k++) ok = gtask_client_stats(d->sampler, qs[k], &s.st[k]) == 0;
    if (ok) {
      pthread_mutex_lock(&d->mu);
      d->ring[d->head] = s;
      d->head = (d->head + 1) % SAMPLES;
      if (d->nsamples < SAMPLES) d->nsamples++;
      pthread_mutex_unlock(&d->mu);
    }
    next += 1000;
    int64_t left = next - now_ms();
    if (left < 0) next = now_ms(), left = 0;
    while (left > 0 && !atomic_load(&d->stop)) {
      struct timespec ts = {0, (left > 100 ? 100 : left) * 1000000L};
      nanosleep(&ts, NULL);
      left = next - now_ms();
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- responses */

typedef struct reply {
  unsigned status;
  const char *type;
  char *body; /* malloc()ed */
  size_t len;
  const char *cookie; /* Set-Cookie value, or NULL */
} reply;

static FILE *json_begin(char **buf, size_t *len) { return open_memstream(buf, len); }

static void reply_error(reply *r, unsigned status, const char *msg) {
  FILE *f = open_memstream(&r->body, &r->len);
  if (f) {
    out_obj o;
    out_obj_begin(&o, f);
    out_obj_str(&o, "error", msg);
    out_obj_end(&o);
    fclose(f);
  }
  r->status = status;
  r->type = "application/json";
}

static const char *arg(struct MHD_Connection *conn, const char *key) {
  return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

/* A client for queue q (the HTTP thread's, set to it), or an error reply. */
static gtask_client *client_for(dash *d, reply *r, const char *q) {
  if (!q || gtask_client_set_queue(d->http, q) != 0) {
    reply_error(r, 400, "missing or invalid queue name");
    return NULL;
  }
  return d->http;
}

/* A failed library call: 404 for an unknown task, 409 for a task in the
 * wrong state (e.g. final already), 503 for Redis, else 400. */
static void reply_fail(reply *r, gtask_client *cl, int rc) {
  char msg[512];
  snprintf(msg, sizeof(msg), "%s", gtask_client_errmsg(cl));
  unsigned status = rc == GTASK_ENOTFOUND                       ? 404
                    : rc == GTASK_ESTATE                        ? 409
                    : rc == GTASK_ECONN || rc == GTASK_ETIMEDOUT ? 503
                                                                : 400;
  reply_error(r, status, msg);
}

static void stats_fields(out_obj *o, const gtask_queue_stats *s) {
  out_obj_int(o, "pending", s->pending);
  out_obj_int(o, "active", s->active);
  out_obj_int(o, "scheduled", s->scheduled);
  out_obj_int(o, "dead", s->dead);
  out_obj_int(o, "succeeded", s->succeeded);
  out_obj_int(o, "failed", s->failed);
  out_obj_int(o, "cancelled", s->cancelled);
}

static void api_session(dash *d, reply *r) {
  FILE *f = json_begin(&r->body, &r->len);
  if (!f) return;
  out_obj o;
  out_obj_begin(&o, f);
  out_obj_str(&o, "csrf", d->csrf);
  out_obj_str(&o, "version", gtask_version());
  pthread_mutex_lock(&d->mu);
  out_obj_strs(&o, "queues", (char *const *)d->queues, d->nqueues);
  pthread_mutex_unlock(&d->mu);
  out_obj_end(&o);
  fclose(f);
}

static void api_overview(dash *d, reply *r) {
  const char *qs[MAX_QUEUES];
  size_t nq = queues_now(d, qs);
  gtask_queue_stats st[MAX_QUEUES];
  bool paused[MAX_QUEUES];
  for (size_t k = 0; k < nq; k++) {
    int rc = gtask_client_stats(d->http, qs[k], &st[k]);
    if (rc == 0) rc = gtask_client_queue_paused(d->http, qs[k], &paused[k]);
    if (rc) {
      reply_fail(r, d->http, rc);
      return;
    }
  }
  FILE *f = json_begin(&r->body, &r->len);
  if (!f) return;
  fputs("{\"now_ms\":", f);
  fprintf(f, "%lld,\"queues\":[", (long long)now_ms());
  for (size_t k = 0; k < nq; k++) {
    if (k) fputc(',', f);
    out_obj o;
    out_obj_begin(&o, f);
    out_obj_str(&o, "name", qs[k]);
    stats_fields(&o, &st[k]);
    out_obj_key(&o, "paused");
    fputs(paused[k] ? "true" : "false", f);
    fputc('}', f);
  }
  /* The samples, oldest first: per queue, the counts at each second. */
  fputs("],\"samples\":{\"t\":[", f);
  pthread_mutex_lock(&d->mu);
  size_t ns = d->nsamples, first = (d->head + SAMPLES - ns) % SAMPLES;
  for (size_t k = 0; k < ns; k++) fprintf(f, "%s%lld", k ? "," : "", (long long)d->ring[(first + k) % SAMPLES].t_ms);
  fputs("],\"queues\":{", f);
  for (size_t q = 0; q < nq; q++) {
    fprintf(f, "%s", q ? "," : "");
    out_json_string(f, qs[q], strlen(qs[q]));
    static const char *const keys[] = {"succeeded", "failed", "pending", "active", "scheduled", "dead"};
    fputs(":{", f);
    for (size_t kk = 0; kk < 6; kk++) {
      fprintf(f, "%s\"%s\":[", kk ? "," : "", keys[kk]);
      for (size_t k = 0; k < ns; k++) {
        const gtask_queue_stats *s = &d->ring[(first + k) % SAMPLES].st[q];
        int64_t v = kk == 0 ? s->succeeded : kk == 1 ? s->failed : kk == 2 ? s->pending
                  : kk == 3 ? s->active : kk == 4 ? s->scheduled : s->dead;
        fprintf(f, "%s%lld", k ? "," : "", (long long)v);
      }
      fputc(']', f);
    }
    fputc('}', f);
  }
  pthread_mutex_unlock(&d->mu);
  fputs("}}}\n", f);
  fclose(f);
}

static void task_json(FILE *f, const gtask_task_info *t) {
  out_obj o;
  out_obj_begin(&o, f);
  out_obj_str(&o, "task_id", t->id);
  out_obj_str(&o, "state", gtask_list_state_name(t->state));
  out_obj_str(&o, "name", t->name);
  out_obj_values(&o, "args", t->args, t->nargs);
  out_obj_int(&o, "attempts", t->attempts);
  out_obj_int(&o, "lost", t->lost);
  out_obj_int(&o, "retry_max", t->retry_max);
  out_obj_int(&o, "timeout_ms", (long long)t->timeout_ms);
  out_obj_int(&o, "created_ms", (long long)t->created_ms);
  out_obj_int(&o, "due_ms", (long long)t->due_ms);
  out_obj_str(&o, "last_error", t->last_error);
  out_obj_str(&o, "worker", t->worker);
  fputc('}', f);
}

static void api_queue(dash *d, struct MHD_Connection *conn, reply *r) {
  gtask_client *cl = client_for(d, r, arg(conn, "name"));
  if (!cl) return;
  gtask_list_state state = GTASK_LIST_PENDING;
  const char *s = arg(conn, "state");
  if (s && gtask_list_state_parse(s, &state) != 0) {
    reply_error(r, 400, "state: pending, active, scheduled, dead or failed");
    return;
  }
  long limit = 50;
  const char *l = arg(conn, "limit");
  if (l) {
    char *end;
    limit = strtol(l, &end, 10);
    if (*end || limit < 1 || limit > 1000) {
      reply_error(r, 400, "limit: 1..1000");
      return;
    }
  }
  gtask_task_info *v = NULL;
  size_t n = 0;
  char *next = NULL;
  int rc = gtask_client_list(cl, state, arg(conn, "after"), (size_t)limit, &v, &n, &next);
  if (rc) {
    reply_fail(r, cl, rc);
    return;
  }
  FILE *f = json_begin(&r->body, &r->len);
  if (f) {
    fputs("{\"tasks\":[", f);
    for (size_t k = 0; k < n; k++) {
      if (k) fputc(',', f);
      task_json(f, &v[k]);
    }
    fputs("],\"next\":", f);
    if (next) out_json_string(f, next, strlen(next));
    else fputs("null", f);
    fputs("}\n", f);
    fclose(f);
  }
  free(next);
  gtask_task_info_free(v, n);
}

static void api_task(dash *d, struct MHD_Connection *conn, reply *r) {
  gtask_client *cl = client_for(d, r, arg(conn, "queue"));
  if (!cl) return;
  gtask_result *res = NULL;
  gtask_task_info *t = NULL;
  int rc = gtask_client_inspect(cl, arg(conn, "id"), &res, &t);
  if (rc) {
    reply_fail(r, cl, rc);
    return;
  }
  FILE *f = json_begin(&r->body, &r->len);
  if (f) {
    out_obj o;
    out_obj_begin(&o, f);
    out_obj_str(&o, "task_id", arg(conn, "id"));
    out_obj_str(&o, "queue", arg(conn, "queue"));
    out_obj_str(&o, "status", res ? gtask_status_name(res->status) : NULL);
    out_obj_int(&o, "attempts", res ? res->attempts : 0);
    out_obj_values(&o, "values", res ? res->values : NULL, res ? res->nvalues : 0);
    out_obj_str(&o, "error", res ? res->error : NULL);
    out_obj_str(&o, "error_code", res && res->error_code ? gtask_err_name(res->error_code) : NULL);
    out_obj_key(&o, "message");
    if (t) task_json(f, t);
    else fputs("null", f);
    out_obj_end(&o);
    fclose(f);
  }
  gtask_result_free(res);
  gtask_task_info_free(t, t ? 1 : 0);
}

static void api_workers(dash *d, reply *r) {
  gtask_worker_info *w = NULL;
  size_t n = 0;
  int rc = gtask_client_workers(d->http, &w, &n);
  if (rc) {
    reply_fail(r, d->http, rc);
    return;
  }
  FILE *f = json_begin(&r->body, &r->len);
  if (f) {
    fputs("{\"now_ms\":", f);
    fprintf(f, "%lld,\"workers\":[", (long long)now_ms());
    for (size_t k = 0; k < n; k++) {
      out_obj o;
      out_obj_begin(&o, f);
      if (k) fputc(',', f);
      out_obj_str(&o, "name", w[k].name);
      out_obj_str(&o, "host", w[k].host);
      out_obj_int(&o, "pid", (long long)w[k].pid);
      out_obj_strs(&o, "queues", w[k].queues, w[k].nqueues);
      out_obj_int(&o, "concurrency", w[k].concurrency);
      out_obj_str(&o, "pool", w[k].pool);
      out_obj_str(&o, "version", w[k].version);
      out_obj_int(&o, "started_ms", (long long)w[k].started_ms);
      out_obj_int(&o, "heartbeat_ms", (long long)w[k].heartbeat_ms);
      out_obj_int(&o, "succeeded", (long long)w[k].succeeded);
      out_obj_int(&o, "failed", (long long)w[k].failed);
      out_obj_key(&o, "busy");
      fputc('[', f);
      for (size_t b = 0; b < w[k].nbusy; b++) {
        out_obj t;
        out_obj_begin(&t, f);
        if (b) fputc(',', f);
        out_obj_str(&t, "id", w[k].busy[b].id);
        out_obj_str(&t, "name", w[k].busy[b].name);
        out_obj_str(&t, "queue", w[k].busy[b].queue);
        out_obj_int(&t, "since_ms", (long long)w[k].busy[b].since_ms);
        fputc('}', f);
      }
      fputs("]}", f);
    }
    fputs("]}\n", f);
    fclose(f);
  }
  gtask_workers_free(w, n);
}

/* One {"key": n} reply. */
static void reply_count(reply *r, const char *key, long long n) {
  FILE *f = json_begin(&r->body, &r->len);
  if (!f) return;
  out_obj o;
  out_obj_begin(&o, f);
  out_obj_int(&o, key, n);
  out_obj_end(&o);
  fclose(f);
}

/* Reruns a failed (or dead) task: same id, fresh attempts (issue 18). */
static void api_rerun(dash *d, struct MHD_Connection *conn, reply *r) {
  gtask_client *cl = client_for(d, r, arg(conn, "queue"));
  if (!cl) return;
  int rc = gtask_client_rerun(cl, arg(conn, "id"));
  if (rc) reply_fail(r, cl, rc);
  else reply_count(r, "rerun", 1);
}

/* Cancels a queued, scheduled or running task (issue 18):
 * {"task_id", "status": "CANCELLED", "running"}, running true when a worker
 * held it (it is told to stop).  409 when the task is final already. */
static void api_cancel(dash *d, struct MHD_Connection *conn, reply *r) {
  gtask_client *cl = client_for(d, r, arg(conn, "queue"));
  if (!cl) return;
  const char *id = arg(conn, "id");
  if (!id || !id[0]) {
    reply_error(r, 400, "missing task id (id=...)");
    return;
  }
  bool running = false;
  int rc = gtask_client_cancel(cl, id, &running);
  if (rc) {
    reply_fail(r, cl, rc);
    return;
  }
  FILE *f = json_begin(&r->body, &r->len);
  if (!f) return;
  out_cancelled_json(f, id, running);
  fclose(f);
}

/* Pauses or resumes a queue for every worker (issue 18). */
static void api_pause(dash *d, struct MHD_Connection *conn, reply *r, bool pause) {
  gtask_client *cl = client_for(d, r, arg(conn, "queue"));
  if (!cl) return;
  int rc = pause ? gtask_client_queue_pause(cl, NULL) : gtask_client_queue_resume(cl, NULL);
  if (rc) reply_fail(r, cl, rc);
  else reply_count(r, "paused", pause);
}

static void api_dead(dash *d, struct MHD_Connection *conn, reply *r, bool purge) {
  gtask_client *cl = client_for(d, r, arg(conn, "queue"));
  if (!cl) return;
  size_t n = 0;
  int rc = purge ? gtask_client_dead_purge(cl, &n) : gtask_client_dead_requeue(cl, arg(conn, "id"), &n);
  if (rc) reply_fail(r, cl, rc);
  else reply_count(r, purge ? "purged" : "requeued", (long long)n);
}

/* The queue gauges, for Prometheus: one place reads Redis for them. */
static void metrics(dash *d, reply *r) {
  const char *qs[MAX_QUEUES];
  size_t nq = queues_now(d, qs);
  gtask_queue_stats st[MAX_QUEUES];
  int64_t oldest[MAX_QUEUES];
  for (size_t k = 0; k < nq; k++) {
    int rc = gtask_client_stats(d->http, qs[k], &st[k]);
    if (rc) {
      reply_error(r, 503, gtask_client_errmsg(d->http));
      return;
    }
    /* The oldest pending task: the first of the pending list. */
    oldest[k] = 0;
    gtask_task_info *v = NULL;
    size_t n = 0;
    char *next = NULL;
    if (gtask_client_set_queue(d->http, qs[k]) == 0 &&
        gtask_client_list(d->http, GTASK_LIST_PENDING, NULL, 1, &v, &n, &next) == 0 && n == 1 &&
        v[0].created_ms > 0)
      oldest[k] = now_ms() - v[0].created_ms;
    free(next);
    gtask_task_info_free(v, n);
  }
  FILE *f = open_memstream(&r->body, &r->len);
  if (!f) return;
  static const char *const names[] = {"pending", "active", "scheduled", "dead"};
  static const char *const helps[] = {"Tasks queued, ready, not leased.",
                                      "Tasks leased by a worker (running or prefetched).",
                                      "Tasks waiting for a due time (delays, retry backoff).",
                                      "Tasks in the dead set."};
  for (size_t m = 0; m < 5; m++) {
    if (m < 4)
      fprintf(f, "# HELP gtask_queue_%s %s\n# TYPE gtask_queue_%s gauge\n", names[m], helps[m], names[m]);
    else
      fputs("# HELP gtask_queue_oldest_pending_age_seconds Age of the oldest pending task "
            "(0 when none).\n# TYPE gtask_queue_oldest_pending_age_seconds gauge\n", f);
    for (size_t k = 0; k < nq; k++) {
      int64_t v = m == 0 ? st[k].pending : m == 1 ? st[k].active : m == 2 ? st[k].scheduled : st[k].dead;
      fprintf(f, m < 4 ? "gtask_queue_%s{queue=\"" : "%sgtask_queue_oldest_pending_age_seconds{queue=\"",
              m < 4 ? names[m] : "");
      fputs(qs[k], f); /* queue names are [A-Za-z0-9_.:-]: nothing to escape */
      if (m < 4) fprintf(f, "\"} %lld\n", (long long)v);
      else fprintf(f, "\"} %.3f\n", oldest[k] > 0 ? (double)oldest[k] / 1e3 : 0.0);
    }
  }
  for (size_t m = 0; m < 2; m++) {
    const char *name = m ? "failed" : "succeeded";
    fprintf(f, "# HELP gtask_queue_%s_total Tasks finished %s in the queue (all workers).\n"
               "# TYPE gtask_queue_%s_total counter\n", name, m ? "FAILURE" : "SUCCESS", name);
    for (size_t k = 0; k < nq; k++)
      fprintf(f, "gtask_queue_%s_total{queue=\"%s\"} %lld\n", name, qs[k],
              (long long)(m ? st[k].failed : st[k].succeeded));
  }
  fclose(f);
  r->type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---------------------------------------------------------------- routing */

static bool authorized(dash *d, struct MHD_Connection *conn, reply *r) {
  if (!d->token) return true;
  const char *q = arg(conn, "token");
  const char *cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, "gtask_token");
  const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
  if ((q && strcmp(q, d->token) == 0)) {
    r->cookie = "set";
    return true;
  }
  if (cookie && strcmp(cookie, d->token) == 0) return true;
  if (auth && strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, d->token) == 0) return true;
  reply_error(r, 401, "an access token is required: open the dashboard with ?token=...");
  return false;
}

static void route(dash *d, struct MHD_Connection *conn, const char *url, const char *method,
                  reply *r) {
  r->status = 200;
  r->type = "application/json";
  if (!authorized(d, conn, r)) return;
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  bool post = strcmp(method, "POST") == 0;
  if (post) {
    const char *csrf = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");
    if (!csrf || strcmp(csrf, d->csrf) != 0) {
      reply_error(r, 403, "missing or wrong X-CSRF-Token (reload the page)");
      return;
    }
    if (strcmp(url, "/api/dead/requeue") == 0) api_dead(d, conn, r, false);
    else if (strcmp(url, "/api/dead/purge") == 0) api_dead(d, conn, r, true);
    else if (strcmp(url, "/api/rerun") == 0) api_rerun(d, conn, r);
    else if (strcmp(url, "/api/queue/pause") == 0) api_pause(d, conn, r, true);
    else if (strcmp(url, "/api/queue/resume") == 0) api_pause(d, conn, r, false);
    else if (strcmp(url, "/api/cancel") == 0) api_cancel(d, conn, r);
    else reply_error(r, 404, "no such action");
    return;
  }
  if (!get) {
    reply_error(r, 405, "method not allowed");
    return;
  }
  if (strcmp(url, "/api/session") == 0) api_session(d, r);
  else if (strcmp(url, "/api/overview") == 0) api_overview(d, r);
  else if (strcmp(url, "/api/queue") == 0) api_queue(d, conn, r);
  else if (strcmp(url, "/api/task") == 0) api_task(d, conn, r);
  else if (strcmp(url, "/api/workers") == 0) api_workers(d, r);
  else if (strcmp(url, "/metrics") == 0) metrics(d, r);
  else {
    const char *path = strcmp(url, "/") == 0 ? "/index.html" : url;
    for (const web_asset *a = web_assets; a->path; a++)
      if (strcmp(a->path, path) == 0) {
        r->type = a->type;
        r->body = malloc(a->len ? a->len : 1);
        if (r->body) memcpy(r->body, a->bytes, a->len);
        r->len = a->len;
        return;
      }
    reply_error(r, 404, "not found");
  }
}

/* POST bodies are not used: the upload is read and dropped. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **con_cls) {
  (void)version, (void)upload;
  if (!*con_cls) {
    *con_cls = (void *)1;
    return MHD_YES;
  }
  if (*upload_len) {
    *upload_len = 0;
    return MHD_YES;
  }
  dash *d = cls;
  reply r = {0};
  route(d, conn, url, method, &r);
  if (!r.body) {
    r.status = 500;
    r.type = "text/plain";
  }
  struct MHD_Response *resp = MHD_create_response_from_buffer(r.len, r.body ? r.body : (void *)"",
                                                              r.body ? MHD_RESPMEM_MUST_FREE
                                                                     : MHD_RESPMEM_PERSISTENT);
  if (!resp) {
    free(r.body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", r.type);
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "X-Frame-Options", "DENY");
  MHD_add_response_header(resp, "Content-Security-Policy",
                          "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                          "frame-ancestors 'none'");
  if (r.cookie) {
    char cookie[600];
    snprintf(cookie, sizeof(cookie), "gtask_token=%s; Path=/; HttpOnly; SameSite=Strict", d->token);
    MHD_add_response_header(resp, "Set-Cookie", cookie);
  }
  enum MHD_Result ret = MHD_queue_response(conn, r.status, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* ---------------------------------------------------------------- command */

static const char usage_dashboard[] =
    "usage: gtask dashboard [--listen ADDR] [--token T] [--queues a,b]\n"
    "\n"
    "Serves a web dashboard of the queues, their tasks and the live workers,\n"
    "with a JSON API under /api/ and the queue gauges for Prometheus at\n"
    "/metrics, until SIGINT or SIGTERM.\n"
    "\n"
    "  --listen ADDR   IP:PORT to listen on (default 127.0.0.1:8080: loopback\n"
    "                  only; another address exposes it, use --token then)\n"
    "  --token T       require T: open http://ADDR/?token=T once (a cookie keeps\n"
    "                  it), or send \"Authorization: Bearer T\"\n"
    "  --queues a,b    queues to show besides --queue and those live workers\n"
    "                  serve\n"
    "\n"
    "Actions (requeue or purge dead tasks, rerun a failed one, cancel a queued,\n"
    "scheduled or running one, pause or resume a queue) are POSTs that need the\n"
    "page's CSRF token, each behind a confirmation in the UI.\n"
    "\n"
    "exit: 0 after a signal, 1 cannot listen, 2 usage error, 5 cannot reach\n"
    "redis\n";

enum { O_LISTEN = 1, O_TOKEN, O_QUEUES };

static int parse_listen(const char *addr, struct sockaddr_in *sa) {
  memset(sa, 0, sizeof(*sa));
  const char *colon = strrchr(addr, ':');
  if (!colon) return -1;
  char host[64];
  size_t hl = (size_t)(colon - addr);
  if (hl == 0 || hl >= sizeof(host)) return -1;
  memcpy(host, addr, hl);
  host[hl] = '\0';
  long long port;
  if (cli_parse_int(colon + 1, 0, 65535, &port) != 0) return -1;
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof(host), "127.0.0.1");
  return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int cmd_dashboard(cli *c, int argc, char **argv) {
  static const cli_opt opts[] = {{"listen", OPT_REQUIRED, O_LISTEN},
                                 {"token", OPT_REQUIRED, O_TOKEN},
                                 {"queues", OPT_REQUIRED, O_QUEUES},
                                 {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  const char *listen = "127.0.0.1:8080", *token = NULL, *queues = NULL;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == OPT_HELP) {
      fputs(usage_dashboard, stdout);
      return CLI_OK;
    }
    if (r == -2) return CLI_USAGE;
    if (r == O_LISTEN) listen = v;
    else if (r == O_TOKEN) token = v;
    else if (r == O_QUEUES) queues = v;
    else return cli_usage_error(c, "unexpected argument \"%s\"", v);
  }
  struct sockaddr_in sa;
  if (parse_listen(listen, &sa) != 0)
    return cli_usage_error(c, "bad --listen \"%s\" (IP:PORT, e.g. 127.0.0.1:8080)", listen);
  if (token && (!token[0] || strlen(token) > 256 || strpbrk(token, " ;,\"\\\r\n")))
    return cli_usage_error(c, "bad --token (1..256 characters, no spaces, ; , \" or \\)");
  static dash d;
  memset(&d, 0, sizeof(d));
  d.c = c;
  d.token = token;
  pthread_mutex_init(&d.mu, NULL);
  queue_add_locked(&d, c->queue);
  for (const char *p = queues; p && *p;) {
    size_t n = strcspn(p, ",");
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)(n < 255 ? n : 255), p);
    int code = cli_check_queue(c, name);
    if (code != CLI_OK) return code;
    queue_add_locked(&d, name);
    p += n + (p[n] ? 1 : 0);
  }
  unsigned char rnd[16];
  if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
    cli_error("cannot make a CSRF token: %s", strerror(errno));
    return CLI_FAILED;
  }
  for (size_t k = 0; k < sizeof(rnd); k++) snprintf(d.csrf + 2 * k, 3, "%02x", rnd[k]);
  int code = cli_connect(c);
  if (code == CLI_OK) code = cli_client(c, &d.http);
  if (code == CLI_OK) code = cli_client(c, &d.sampler);
  d.ring = code == CLI_OK ? calloc(SAMPLES, sizeof(*d.ring)) : NULL;
  if (code == CLI_OK && !d.ring) {
    cli_error("out of memory");
    code = CLI_FAILED;
  }
  /* SIGINT and SIGTERM are blocked in every thread (the HTTP and sampler
   * threads inherit the mask) and taken by sigwait below. */
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGINT);
  sigaddset(&stop_set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
  struct MHD_Daemon *httpd = NULL;
  if (code == CLI_OK) {
    httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
                             on_request, &d, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                             MHD_OPTION_END);
    if (!httpd) {
      cli_error("cannot listen on %s (in use?)", listen);
      code = CLI_FAILED;
    }
  }
  pthread_t sampler;
  bool sampling = false;
  if (code == CLI_OK) {
    sampling = pthread_create(&sampler, NULL, sampler_main, &d) == 0;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(httpd, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "gtask dashboard: http://%s:%d/ (redis %s)%s\n",
            inet_ntoa(sa.sin_addr), info ? info->port : 0, c->redis_desc,
            token ? "; a token is required" : "");
    int sig = 0;
    sigwait(&stop_set, &sig);
    atomic_store(&d.stop, true);
  }
  if (sampling) pthread_join(sampler, NULL);
  if (httpd) MHD_stop_daemon(httpd);
  gtask_client_free(d.http);
  gtask_client_free(d.sampler);
  free(d.ring);
  pthread_mutex_destroy(&d.mu);
  return code;
}
