/* worker_record.c -- the record a worker keeps of itself in the broker, and
 * its reading (issue 20: `gtask workers`).
 *
 * A running server writes one JSON record through the broker's worker_put()
 * at start and on every heartbeat (heartbeat.c), live until a lease time
 * later, and removes it when it stops; gtask_client_workers() reads the live
 * ones back.  A worker that dies stops renewing it: it is gone a lease time
 * after its last heartbeat, the same time after which its tasks are
 * reclaimed.  The record (docs/PROTOCOL.md, "Worker records"), version 1:
 *
 *   {"v":1,"name":"h:1234:ab12cd34","host":"h","pid":1234,"queues":["default"],
 *    "concurrency":4,"pool":"threads","version":"0.1.0","started":MS,
 *    "heartbeat":MS,"lease":10000,"succeeded":N,"failed":N,"retried":N,
 *    "busy":[{"id":"...","name":"add","queue":"default","since":MS}]}
 *
 * Readers ignore fields they do not know; a new field needs no new version. */
#include "worker.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RECORD_VERSION 1
/* At most this many running tasks are listed (a worker may have thousands
 * of executors; the record stays small). */
#define MAX_BUSY 256

/* ---------------------------------------------------------------- writing */

static json_t *busy_json(gtask_server *s) {
  json_t *busy = json_array();
  if (!busy) return NULL;
  pthread_mutex_lock(&s->mu);
  size_t n = 0;
  for (gtask_job *j = s->inflight; j && n < MAX_BUSY; j = j->inext) {
    if (j->state != GTASK_JOB_RUNNING || !j->task || !j->run_since_ms) continue;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "id", j->msg->id, "name", j->task->name,
                          "queue", j->msg->queue ? j->msg->queue : "", "since",
                          (json_int_t)j->run_since_ms);
    if (o) json_array_append_new(busy, o), n++;
  }
  pthread_mutex_unlock(&s->mu);
  return busy;
}

/* Writes s's record until until_ms (0: removes it).  0 if the broker keeps
 * none. */
int gtask__server_record(gtask_server *s, int64_t until_ms) {
  const gtask_broker_ops *ops = s->broker->ops;
  if (ops->abi < 4 || !ops->worker_put) return 0;
  if (!until_ms) return ops->worker_put(s->broker->impl, s->name, NULL, 0, 0);
  gtask__json_init();
  gtask_server_counts counts;
  gtask_server_get_counts(s, &counts);
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  json_t *queues = json_array();
  for (size_t k = 0; queues && k < s->nqueues; k++) json_array_append_new(queues, json_string(s->queues[k]));
  json_t *busy = busy_json(s);
  json_t *o = queues && busy
                  ? json_pack("{s:i, s:s, s:s, s:I, s:o, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
                              "v", RECORD_VERSION, "name", s->name, "host", host, "pid",
                              (json_int_t)getpid(), "queues", queues, "concurrency", s->nexec,
                              "pool", s->pool == GTASK_POOL_PROCS ? "procs" : "threads",
                              "version", gtask_version(), "started", (json_int_t)s->started_ms,
                              "heartbeat", (json_int_t)gtask__now_ms(), "lease",
                              (json_int_t)s->lease_ms, "succeeded", (json_int_t)counts.succeeded,
                              "failed", (json_int_t)counts.failed, "retried",
                              (json_int_t)counts.retried, "busy", busy)
                  : NULL;
  if (!o) {
    /* json_pack steals the "o" values even when it fails. */
    if (!queues || !busy) json_decref(queues), json_decref(busy);
    return GTASK_ENOMEM;
  }
  char *text = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (!text) return GTASK_ENOMEM;
  int rc = ops->worker_put(s->broker->impl, s->name, text, strlen(text), until_ms);
  gtask__free(text);
  return rc;
}

/* ---------------------------------------------------------------- reading */

static char *dup_str(const json_t *o, const char *key) {
  const char *v = json_string_value(json_object_get(o, key));
  return gtask__strdup(v ? v : "");
}

static int64_t get_i(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static void worker_clear(gtask_worker_info *w) {
  gtask__free(w->name);
  gtask__free(w->host);
  gtask__free(w->pool);
  gtask__free(w->version);
  for (size_t k = 0; k < w->nqueues; k++) gtask__free(w->queues[k]);
  gtask__free(w->queues);
  for (size_t k = 0; k < w->nbusy; k++) {
    gtask__free(w->busy[k].name);
    gtask__free(w->busy[k].queue);
  }
  gtask__free(w->busy);
  memset(w, 0, sizeof(*w));
}

/* Decodes one record into w: 0, GTASK_EPROTO (skipped by the caller) or
 * GTASK_ENOMEM. */
static int worker_decode(const char *text, gtask_worker_info *w) {
  memset(w, 0, sizeof(*w));
  json_error_t je;
  json_t *o = json_loads(text, 0, &je);
  if (!json_is_object(o) || !json_is_string(json_object_get(o, "name"))) {
    json_decref(o);
    return GTASK_EPROTO;
  }
  int rc = 0;
  w->name = dup_str(o, "name");
  w->host = dup_str(o, "host");
  w->pool = dup_str(o, "pool");
  w->version = dup_str(o, "version");
  if (!w->name || !w->host || !w->pool || !w->version) rc = GTASK_ENOMEM;
  w->pid = get_i(o, "pid");
  w->concurrency = (int)get_i(o, "concurrency");
  w->started_ms = get_i(o, "started");
  w->heartbeat_ms = get_i(o, "heartbeat");
  w->lease_ms = get_i(o, "lease");
  w->succeeded = (uint64_t)get_i(o, "succeeded");
  w->failed = (uint64_t)get_i(o, "failed");
  w->retried = (uint64_t)get_i(o, "retried");
  const json_t *qs = json_object_get(o, "queues");
  size_t nq = json_is_array(qs) ? json_array_size(qs) : 0;
  if (rc == 0 && nq) {
    if (!(w->queues = gtask__calloc(nq, sizeof(*w->queues)))) rc = GTASK_ENOMEM;
    for (size_t k = 0; rc == 0 && k < nq; k++) {
      const char *q = json_string_value(json_array_get(qs, k));
      if (!(w->queues[w->nqueues] = gtask__strdup(q ? q : ""))) rc = GTASK_ENOMEM;
      else w->nqueues++;
    }
  }
  const json_t *bs = json_object_get(o, "busy");
  size_t nb = json_is_array(bs) ? json_array_size(bs) : 0;
  if (rc == 0 && nb) {
    if (!(w->busy = gtask__calloc(nb, sizeof(*w->busy)))) rc = GTASK_ENOMEM;
    for (size_t k = 0; rc == 0 && k < nb; k++) {
      const json_t *b = json_array_get(bs, k);
      gtask_worker_task *t = &w->busy[w->nbusy];
      const char *id = json_string_value(json_object_get(b, "id"));
      gtask__fmt(t->id, sizeof(t->id), "%s", id ? id : "");
      t->name = dup_str(b, "name");
      t->queue = dup_str(b, "queue");
      t->since_ms = get_i(b, "since");
      w->nbusy++;
      if (!t->name || !t->queue) rc = GTASK_ENOMEM;
    }
  }
  json_decref(o);
  if (rc) worker_clear(w);
  return rc;
}

static int worker_cmp(const void *x, const void *y) {
  return strcmp(((const gtask_worker_info *)x)->name, ((const gtask_worker_info *)y)->name);
}

GTASK_EXTERN void gtask_workers_free(gtask_worker_info *w, size_t n) {
  if (!w) return;
  for (size_t k = 0; k < n; k++) worker_clear(&w[k]);
  gtask__free(w);
}

GTASK_EXTERN int gtask_client_workers(gtask_client *c, gtask_worker_info **out, size_t *n) {
  if (!c || !out || !n) return GTASK_EINVAL;
  *out = NULL;
  *n = 0;
  gtask_broker *b = gtask__client_broker(c);
  if (b->ops->abi < 4 || !b->ops->worker_list)
    return gtask__client_err(c, GTASK_EINVAL, "the %s broker keeps no worker records", b->ops->name);
  gtask__json_init();
  char **recs = NULL;
  size_t nrec = 0;
  int rc = b->ops->worker_list(b->impl, &recs, &nrec);
  if (rc) return gtask__client_err(c, rc, "workers: %s (%s)", gtask_strerror(rc), gtask_last_error());
  gtask_worker_info *v = nrec ? gtask__calloc(nrec, sizeof(*v)) : NULL;
  size_t nv = 0;
  if (nrec && !v) rc = GTASK_ENOMEM;
  for (size_t k = 0; k < nrec; k++) {
    if (rc == 0) {
      int r = worker_decode(recs[k], &v[nv]);
      if (r == 0) nv++;
      else if (r == GTASK_ENOMEM) rc = r;
    }
    free(recs[k]);
  }
  free(recs);
  if (rc) {
    gtask_workers_free(v, nv);
    return rc;
  }
  if (nv > 1) qsort(v, nv, sizeof(*v), worker_cmp);
  if (!nv) {
    gtask__free(v);
    v = NULL;
  }
  *out = v;
  *n = nv;
  return 0;
}
