/* client.c -- sending tasks and reading their states and results (g_task's
 * client package), and the per-send options (g_task's SendConf).
 *
 * A send encodes each task, then queues it and records it PENDING: in one
 * atomic script when broker and backend share a server (the default), else
 * PENDING first and the message second, so that a worker can never finish a
 * task before its PENDING record exists (which would then overwrite nothing:
 * a final state is never overwritten). */
#include "internal.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX_PAYLOAD (512 * 1024)
#define PUSH_CHUNK 512

struct gtask_send_conf {
  char *name;
  char *queue;
  int64_t timeout_ms;
  int32_t retry;
  uint32_t retry_on; /* GTASK_RETRY_ON_*; 0: the default (timeouts) */
  uint32_t priority; /* 0..GTASK_PRIORITY_MAX */
  int64_t backoff_first_ms, backoff_max_ms;
  int64_t delay_ms;
  char id[GTASK_ID_SIZE]; /* gtask_send_conf_set_id, or "" for random ids */
  bool unique;            /* gtask_send_conf_set_unique */
  int64_t unique_ttl_ms;  /* > 0, or GTASK_UNIQUE_UNTIL_DONE */
};

/* The last tasks this client sent to its own queue: they exist, so waiting on
 * one needs no check first (see the backend's wait). */
#define SENT_RING 16

struct gtask_client {
  gtask_broker *broker;
  gtask_backend *backend;
  void *state;
  char queue[129];
  size_t max_payload;
  char errmsg[256];
  char sent[SENT_RING][GTASK_ID_SIZE];
  unsigned sent_next;
};

/* ---------------------------------------------------------------- send conf */

GTASK_EXTERN gtask_send_conf *gtask_send_conf_new(const char *name) {
  const char *why = gtask__task_name_check(name);
  if (why) {
    gtask__set_error("gtask_send_conf_new: %s", why);
    return NULL;
  }
  gtask_send_conf *c = gtask__calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->name = gtask__strdup(name);
  if (!c->name) {
    gtask__free(c);
    return NULL;
  }
  c->backoff_first_ms = 1000;
  c->backoff_max_ms = 60000;
  return c;
}

GTASK_EXTERN void gtask_send_conf_free(gtask_send_conf *c) {
  if (!c) return;
  gtask__free(c->name);
  gtask__free(c->queue);
  gtask__free(c);
}

GTASK_EXTERN int gtask_send_conf_set_timeout(gtask_send_conf *c, int64_t ms) {
  if (!c || ms < 0) return GTASK_EINVAL;
  c->timeout_ms = ms;
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_retry_num(gtask_send_conf *c, int n) {
  if (!c || n < 0 || n > 1000000) return GTASK_EINVAL;
  c->retry = n;
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_retry_on(gtask_send_conf *c, unsigned flags) {
  const unsigned all = GTASK_RETRY_ON_TIMEOUT | GTASK_RETRY_ON_ERROR | GTASK_RETRY_ON_CRASH;
  if (!c || flags == 0 || (flags & ~all) != 0) return GTASK_EINVAL;
  c->retry_on = flags;
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_priority(gtask_send_conf *c, int level) {
  if (!c) return GTASK_EINVAL;
  if (level < 0 || level > GTASK_PRIORITY_MAX) {
    gtask__set_error("priority %d: the levels are 0 (normal), 1 (high) and 2 (urgent)", level);
    return GTASK_EINVAL;
  }
  c->priority = (uint32_t)level;
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_backoff(gtask_send_conf *c, int64_t first_ms, int64_t max_ms) {
  if (!c || first_ms < 1 || max_ms < first_ms) return GTASK_EINVAL;
  c->backoff_first_ms = first_ms;
  c->backoff_max_ms = max_ms;
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_queue(gtask_send_conf *c, const char *queue) {
  if (!c || !queue || !gtask__queue_valid(queue)) return GTASK_EINVAL;
  char *q = gtask__strdup(queue);
  if (!q) return GTASK_ENOMEM;
  gtask__free(c->queue);
  c->queue = q;
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_delay(gtask_send_conf *c, int64_t ms) {
  if (!c || ms < 0) return GTASK_EINVAL;
  c->delay_ms = ms;
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_id(gtask_send_conf *c, const char *id) {
  if (!c) return GTASK_EINVAL;
  if (!id) {
    c->id[0] = '\0';
    return 0;
  }
  bool lower = true;
  for (const char *p = id; *p && lower; p++) lower = !(*p >= 'A' && *p <= 'F');
  if (!gtask__id_valid(id) || !lower) {
    gtask__set_error("gtask_send_conf_set_id: \"%.60s\" is not a task id (a lower-case UUID)", id);
    return GTASK_EINVAL;
  }
  memcpy(c->id, id, GTASK_ID_SIZE);
  return 0;
}

GTASK_EXTERN int gtask_send_conf_set_unique(gtask_send_conf *c, int64_t ttl_ms) {
  if (!c || ttl_ms < 0) return GTASK_EINVAL;
  c->unique = true;
  c->unique_ttl_ms = ttl_ms;
  return 0;
}

/* ---------------------------------------------------------------- client */

static int set_err(gtask_client *c, int rc, const char *fmt, ...) GTASK__PRINTF(3, 4);
static int set_err(gtask_client *c, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
  va_end(ap);
  return rc;
}

/* After a failed broker/backend call: keep its detail. */
static int lib_err(gtask_client *c, int rc, const char *what) {
  return set_err(c, rc, "%s: %s (%s)", what, gtask_strerror(rc), gtask_last_error());
}

GTASK_EXTERN gtask_client *gtask_client_new(gtask_broker *broker, gtask_backend *backend) {
  if (!broker || !backend) {
    gtask__set_error("gtask_client_new: broker and backend are required");
    return NULL;
  }
  gtask_client *c = gtask__calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->broker = gtask__broker_ref(broker);
  c->backend = gtask__backend_ref(backend);
  c->state = broker->ops->colocated ? broker->ops->colocated(broker->impl, backend) : NULL;
  gtask__fmt(c->queue, sizeof(c->queue), "default");
  c->max_payload = DEFAULT_MAX_PAYLOAD;
  return c;
}

GTASK_EXTERN gtask_client *gtask_client_from_server(gtask_server *s) {
  if (!s) return NULL;
  return gtask_client_new(gtask__server_broker(s), gtask__server_backend(s));
}

GTASK_EXTERN void gtask_client_free(gtask_client *c) {
  if (!c) return;
  gtask_broker_free(c->broker);
  gtask_backend_free(c->backend);
  gtask__free(c);
}

GTASK_EXTERN const char *gtask_client_errmsg(const gtask_client *c) { return c ? c->errmsg : ""; }

gtask_broker *gtask__client_broker(const gtask_client *c) { return c->broker; }
gtask_backend *gtask__client_backend(const gtask_client *c) { return c->backend; }
void *gtask__client_state(const gtask_client *c) { return c->state; }
const char *gtask__client_queue(const gtask_client *c) { return c->queue; }

int gtask__client_err(gtask_client *c, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
  va_end(ap);
  return rc;
}

GTASK_EXTERN int gtask_client_set_queue(gtask_client *c, const char *queue) {
  if (!c) return GTASK_EINVAL;
  if (!queue || !gtask__queue_valid(queue))
    return set_err(c, GTASK_EINVAL, "invalid queue name \"%s\"", queue ? queue : "(null)");
  gtask__fmt(c->queue, sizeof(c->queue), "%s", queue);
  memset(c->sent, 0, sizeof(c->sent)); /* sent to the old queue */
  return 0;
}

GTASK_EXTERN int gtask_client_set_max_payload(gtask_client *c, size_t bytes) {
  if (!c || bytes < 256) return GTASK_EINVAL;
  c->max_payload = bytes;
  return 0;
}

/* ---------------------------------------------------------------- send */

static void free_msgs(gtask_msg **msgs, size_t n) {
  for (size_t k = 0; k < n; k++) gtask_msg_free(msgs[k]);
}

static int push_chunk(gtask_client *c, gtask_msg **msgs, size_t n) {
  int rc;
  if (c->state) {
    rc = c->broker->ops->push(c->broker->impl, msgs, n, c->state);
    return rc ? lib_err(c, rc, "send") : 0;
  }
  rc = c->backend->ops->pending(c->backend->impl, msgs, n);
  if (rc) return lib_err(c, rc, "send: recording PENDING");
  rc = c->broker->ops->push(c->broker->impl, msgs, n, NULL);
  return rc ? lib_err(c, rc, "send: queueing") : 0;
}

/* A send that must not duplicate (a chosen id, a unique key): claimed and
 * queued in one step when the broker can (push_unique, colocated), else
 * claimed on the backend first and the claimed ones queued second -- a crash
 * between the two leaves a PENDING record (and a held key) for a task nobody
 * received, as a plain send's two steps do. */
static int push_chunk_unique(gtask_client *c, gtask_claim *cs, gtask_msg **msgs, size_t n) {
  int rc;
  if (c->state && c->broker->ops->push_unique) {
    rc = c->broker->ops->push_unique(c->broker->impl, cs, n, c->state);
    return rc ? lib_err(c, rc, "send") : 0;
  }
  if (!c->backend->ops->claim)
    return set_err(c, GTASK_EINVAL,
                   "send: backend \"%s\" cannot check for duplicates (no claim operation)",
                   c->backend->ops->name);
  rc = c->backend->ops->claim(c->backend->impl, cs, n);
  if (rc) return lib_err(c, rc, "send: claiming");
  size_t m = 0;
  for (size_t k = 0; k < n; k++)
    if (!cs[k].duplicate) msgs[m++] = cs[k].msg;
  rc = m ? c->broker->ops->push(c->broker->impl, msgs, m, NULL) : 0;
  return rc ? lib_err(c, rc, "send: queueing") : 0;
}

/* The content key of a unique send: the SHA-256, in hex, of the message
 * that holds only the task's name and arguments (the encoding of every value
 * is canonical, so equal arguments give equal bytes).  The queue is not
 * hashed: the key lives in the queue's own keys. */
/* What a message carries of its send conf: the name and the run options.
 * Every message built from a conf (a send, a periodic task's template) takes
 * them from here, so that an option added to the conf reaches all of them. */
static void task_options(const gtask_send_conf *conf, gtask_task *t) {
  t->name = conf->name;
  t->timeout_ms = conf->timeout_ms;
  t->retry_max = conf->retry;
  t->retry_on = conf->retry_on;
  t->priority = conf->priority;
  t->backoff_first_ms = conf->backoff_first_ms;
  t->backoff_max_ms = conf->backoff_max_ms;
}

int gtask__unique_digest(const char *name, const gtask_value *args, size_t nargs, char out[65]) {
  gtask_task t;
  memset(&t, 0, sizeof(t));
  /* A fixed id and queue (the encoder wants them; version 2 writes neither). */
  memcpy(t.id, "00000000-0000-4000-8000-000000000000", GTASK_ID_SIZE);
  t.queue = (char *)"q";
  t.name = (char *)name;
  t.args = (gtask_value *)args;
  t.nargs = nargs;
  char *body = NULL;
  size_t len = 0;
  int rc = gtask__task_encode(&t, &body, &len);
  if (rc) return rc;
  unsigned char md[32];
  unsigned int mdlen = 0;
  int ok = EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL);
  gtask__free(body);
  if (!ok || mdlen != sizeof(md)) return GTASK_ENOMEM;
  for (size_t k = 0; k < sizeof(md); k++) snprintf(out + 2 * k, 3, "%02x", md[k]);
  return 0;
}

GTASK_EXTERN int gtask_client_send_batch(gtask_client *c, const gtask_send_conf *conf, size_t n,
                                         const gtask_value *args, size_t nargs,
                                         char (*ids_out)[GTASK_ID_SIZE], int *rcs_out) {
  if (!c) return GTASK_EINVAL;
  if (!conf || (nargs && !args) || !ids_out)
    return set_err(c, GTASK_EINVAL, "send: conf, args and ids are required");
  if (nargs > 1024) return set_err(c, GTASK_EINVAL, "send: %zu arguments (at most 1024)", nargs);
  if (conf->id[0] && n > 1)
    return set_err(c, GTASK_EINVAL, "send: %zu tasks cannot share the id %s", n, conf->id);
  for (size_t k = 0; k < n * nargs; k++) {
    int rc = gtask__value_check(&args[k]);
    if (rc)
      return set_err(c, rc, "send %s: argument %zu: %s (type %s)", conf->name, k % nargs + 1,
                     gtask_strerror(rc), gtask_type_name(args[k].type));
  }
  if (conf->priority && c->broker->ops->abi < 5)
    return set_err(c, GTASK_EINVAL, "send: broker \"%s\" has no priority levels (abi %d < 5)",
                   c->broker->ops->name, c->broker->ops->abi);
  bool claiming = conf->id[0] || conf->unique;
  const char *queue = conf->queue ? conf->queue : c->queue;
  int64_t now = gtask__now_ms();
  gtask_msg *msgs[PUSH_CHUNK];
  gtask_claim *cs = NULL;
  char(*keys)[65] = NULL;
  if (claiming && n) {
    size_t m = n < PUSH_CHUNK ? n : PUSH_CHUNK;
    cs = gtask__calloc(m, sizeof(*cs));
    keys = conf->unique ? gtask__calloc(m, sizeof(*keys)) : NULL;
    if (!cs || (conf->unique && !keys)) {
      gtask__free(cs);
      gtask__free(keys);
      return set_err(c, GTASK_ENOMEM, "send: out of memory");
    }
  }
  int rc = 0;
  bool dups = false;
  for (size_t done = 0; done < n && rc == 0;) {
    size_t m = n - done < PUSH_CHUNK ? n - done : PUSH_CHUNK;
    size_t built = 0;
    for (; built < m; built++) {
      size_t i = done + built;
      gtask_task t;
      memset(&t, 0, sizeof(t));
      if (conf->id[0])
        memcpy(t.id, conf->id, GTASK_ID_SIZE);
      else
        gtask__uuid(t.id);
      task_options(conf, &t);
      t.queue = (char *)queue;
      t.args = (gtask_value *)(args + i * nargs);
      t.nargs = nargs;
      t.created_ms = now;
      t.expires_ms = c->broker->msg_ttl_ms ? now + conf->delay_ms + c->broker->msg_ttl_ms : 0;
      char *body = NULL;
      size_t len = 0;
      rc = gtask__task_encode(&t, &body, &len);
      if (rc == 0 && conf->unique) rc = gtask__unique_digest(conf->name, t.args, nargs, keys[built]);
      if (rc) {
        gtask__free(body);
        set_err(c, rc, "send %s: encoding: %s", conf->name, gtask_last_error());
        break;
      }
      if (len > c->max_payload) {
        gtask__free(body);
        rc = set_err(c, GTASK_ETOOBIG, "send %s: message of %zu bytes exceeds the limit of %zu",
                     conf->name, len, c->max_payload);
        break;
      }
      msgs[built] = gtask_msg_new(t.id, queue, body, len);
      gtask__free(body);
      if (!msgs[built]) {
        rc = set_err(c, GTASK_ENOMEM, "send: out of memory");
        break;
      }
      msgs[built]->due_ms = conf->delay_ms ? now + conf->delay_ms : 0;
      msgs[built]->priority = (int)conf->priority;
      memcpy(ids_out[i], t.id, GTASK_ID_SIZE);
      if (claiming) {
        memset(&cs[built], 0, sizeof(cs[built]));
        cs[built].msg = msgs[built];
        cs[built].unique_key = conf->unique ? keys[built] : NULL;
        cs[built].unique_ttl_ms = conf->unique_ttl_ms;
      }
    }
    if (rc == 0) rc = claiming ? push_chunk_unique(c, cs, msgs, m) : push_chunk(c, msgs, m);
    if (rc == 0 && claiming) {
      for (size_t k = 0; k < m; k++) {
        if (!cs[k].duplicate) continue;
        dups = true;
        memcpy(ids_out[done + k], cs[k].existing, GTASK_ID_SIZE);
        ids_out[done + k][GTASK_ID_SIZE - 1] = '\0';
        if (rcs_out) rcs_out[done + k] = GTASK_EEXIST;
      }
    }
    /* Recorded before cs[] is reused; the messages go with this chunk. */
    for (size_t k = 0; rc == 0 && rcs_out && k < m; k++)
      if (!claiming || !cs[k].duplicate) rcs_out[done + k] = 0;
    free_msgs(msgs, built);
    /* This chunk was not queued, unless its reply was lost: then its ids are
     * what the caller checks.  Later chunks are not sent either way. */
    if (rc) {
      for (size_t i = rc == GTASK_EINDOUBT ? done + m : done; i < n; i++) ids_out[i][0] = '\0';
      for (size_t i = done; rcs_out && i < n; i++) rcs_out[i] = rc;
      if (rc == GTASK_EINDOUBT)
        set_err(c, rc,
                "send %s: in doubt (%s): tasks %zu..%zu may or may not be queued (durably); "
                "check their ids with status (ENOTFOUND: not queued)",
                conf->name, gtask_last_error(), done + 1, done + m);
    }
    done += m;
  }
  gtask__free(cs);
  gtask__free(keys);
  if (rc == 0 && strcmp(queue, c->queue) == 0)
    for (size_t i = n > SENT_RING ? n - SENT_RING : 0; i < n; i++)
      memcpy(c->sent[c->sent_next++ % SENT_RING], ids_out[i], GTASK_ID_SIZE);
  if (rc == 0 && dups && !rcs_out) {
    if (n == 1)
      return set_err(c, GTASK_EEXIST, "send %s: task %s already exists in queue %s%s", conf->name,
                     ids_out[0], queue, conf->id[0] ? "" : " with the same name and arguments");
    return set_err(c, GTASK_EEXIST,
                   "send %s: some tasks were duplicates of existing ones (the others were queued)",
                   conf->name);
  }
  return rc;
}

GTASK_EXTERN int gtask_client_send_many(gtask_client *c, const gtask_send_conf *conf, size_t n,
                                        const gtask_value *args, size_t nargs,
                                        char (*ids_out)[GTASK_ID_SIZE]) {
  return gtask_client_send_batch(c, conf, n, args, nargs, ids_out, NULL);
}

static bool sent_here(const gtask_client *c, const char *id) {
  for (size_t k = 0; k < SENT_RING; k++)
    if (memcmp(c->sent[k], id, GTASK_ID_SIZE) == 0) return true;
  return false;
}

GTASK_EXTERN int gtask_client_send(gtask_client *c, const gtask_send_conf *conf,
                                   const gtask_value *args, size_t nargs,
                                   char id_out[GTASK_ID_SIZE]) {
  if (!id_out) return c ? set_err(c, GTASK_EINVAL, "send: id_out is required") : GTASK_EINVAL;
  return gtask_client_send_many(c, conf, 1, args, nargs, (char(*)[GTASK_ID_SIZE])id_out);
}

/* ---------------------------------------------------------------- results
 *
 * Reads are idempotent, so a read that meets a broken connection (Redis
 * restarting, CLIENT KILL) is tried again with backoff until its deadline:
 * wait's own timeout, or the connect timeout for status and result. */

#define RETRY_FIRST_MS 20
#define RETRY_MAX_MS 1000

static void backoff_sleep(int64_t *delay, int64_t deadline_mono) {
  int64_t left = deadline_mono - gtask__mono_ms();
  int64_t d = *delay < left ? *delay : left;
  if (d > 0) {
    struct timespec ts = {(time_t)(d / 1000), (long)(d % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  *delay = *delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *delay * 2;
}

/* A read that may pass if tried again (a read changes nothing, so a lost
 * reply is as good as none).  Not a timeout: that is a wait's own answer. */
static bool read_retry(int rc) { return rc == GTASK_ECONN || rc == GTASK_EINDOUBT; }

static int get_retrying(gtask_client *c, const char *id, gtask_status *st, uint32_t *att,
                        char **buf, size_t *len) {
  int64_t deadline = gtask__mono_ms() + 3000, delay = RETRY_FIRST_MS;
  for (;;) {
    int rc = c->backend->ops->get(c->backend->impl, c->queue, id, st, att, buf, len);
    if (!read_retry(rc) || gtask__mono_ms() >= deadline) return rc;
    backoff_sleep(&delay, deadline);
  }
}

static int check_id(gtask_client *c, const char *id) {
  if (!id || !gtask__id_valid(id))
    return set_err(c, GTASK_EINVAL, "\"%s\" is not a task id (a UUID)", id ? id : "(null)");
  return 0;
}

GTASK_EXTERN int gtask_client_status(gtask_client *c, const char *id, gtask_status *out) {
  if (!c || !out) return GTASK_EINVAL;
  int rc = check_id(c, id);
  if (rc) return rc;
  uint32_t att;
  rc = get_retrying(c, id, out, &att, NULL, NULL);
  if (rc == GTASK_ENOTFOUND)
    return set_err(c, rc, "no task %s in queue %s (unknown or expired)", id, c->queue);
  return rc ? lib_err(c, rc, "status") : 0;
}

GTASK_EXTERN int gtask_client_is_finish(gtask_client *c, const char *id) {
  gtask_status st;
  int rc = gtask_client_status(c, id, &st);
  if (rc) return rc;
  return st == GTASK_SUCCESS || st == GTASK_FAILURE || st == GTASK_CANCELLED;
}

GTASK_EXTERN int gtask_client_result(gtask_client *c, const char *id, gtask_result **out) {
  if (!c || !out) return GTASK_EINVAL;
  *out = NULL;
  int rc = check_id(c, id);
  if (rc) return rc;
  gtask_status st;
  uint32_t att = 0;
  char *buf = NULL;
  size_t len = 0;
  rc = get_retrying(c, id, &st, &att, &buf, &len);
  if (rc == GTASK_ENOTFOUND)
    return set_err(c, rc, "no task %s in queue %s (unknown or expired)", id, c->queue);
  if (rc) return lib_err(c, rc, "result");
  gtask_result *r = NULL;
  if (buf) {
    char err[200];
    rc = gtask__result_decode(buf, len, id, &r, err, sizeof(err));
    gtask__free(buf);
    if (rc) return set_err(c, rc, "result of %s: %s", id, err);
  } else {
    r = gtask__calloc(1, sizeof(*r));
    if (!r) return GTASK_ENOMEM;
    memcpy(r->id, id, GTASK_ID_SIZE);
    r->attempts = att;
  }
  /* The state field is authoritative (a RETRY record keeps the last error). */
  r->status = st;
  if (st == GTASK_STARTED || st == GTASK_PENDING) r->attempts = att > r->attempts ? att : r->attempts;
  *out = r;
  return 0;
}

GTASK_EXTERN int gtask_client_wait(gtask_client *c, const char *id, int64_t timeout_ms,
                                   gtask_result **out) {
  if (!c || !out) return GTASK_EINVAL;
  *out = NULL;
  int rc = check_id(c, id);
  if (rc) return rc;
  int64_t start = gtask__mono_ms(), delay = RETRY_FIRST_MS;
  char *buf = NULL;
  size_t len = 0;
  for (;;) {
    int64_t left = timeout_ms < 0 ? -1 : timeout_ms - (gtask__mono_ms() - start);
    if (timeout_ms >= 0 && left < 0) left = 0;
    rc = c->backend->ops->wait(c->backend->impl, c->queue, id, left, sent_here(c, id), &buf, &len);
    if (!read_retry(rc)) break;
    if (timeout_ms >= 0 && gtask__mono_ms() - start >= timeout_ms) break;
    backoff_sleep(&delay, timeout_ms < 0 ? INT64_MAX : start + timeout_ms);
  }
  if (rc == GTASK_ETIMEDOUT)
    return set_err(c, rc, "task %s did not finish within %lld ms", id, (long long)timeout_ms);
  if (rc == GTASK_ENOTFOUND)
    return set_err(c, rc, "no task %s in queue %s (unknown or expired)", id, c->queue);
  if (rc) return lib_err(c, rc, "wait");
  if (!buf) return gtask_client_result(c, id, out); /* record not handed over: read it */
  char err[200];
  rc = gtask__result_decode(buf, len, id, out, err, sizeof(err));
  gtask__free(buf);
  if (rc) return set_err(c, rc, "result of %s: %s", id, err);
  return 0;
}

/* ---------------------------------------------------------------- periodic tasks */

const char *gtask__send_conf_name(const gtask_send_conf *conf) { return conf->name; }
const char *gtask__send_conf_queue(const gtask_send_conf *conf) { return conf->queue; }
int64_t gtask__send_conf_delay(const gtask_send_conf *conf) { return conf->delay_ms; }
int64_t gtask__send_conf_unique(const gtask_send_conf *conf) {
  return conf->unique ? conf->unique_ttl_ms : -1;
}
bool gtask__send_conf_has_id(const gtask_send_conf *conf) { return conf->id[0] != '\0'; }

int gtask__send_conf_encode(const gtask_send_conf *conf, const gtask_value *args, size_t nargs,
                            int64_t created_ms, char **body, size_t *len) {
  if (conf->priority) { /* cron_fire.lua queues in the level-0 stream */
    gtask__set_error("priority %u: periodic tasks run at level 0 (no priority)", conf->priority);
    return GTASK_EINVAL;
  }
  if (nargs > 1024) {
    gtask__set_error("%zu arguments (at most 1024)", nargs);
    return GTASK_EINVAL;
  }
  for (size_t k = 0; k < nargs; k++) {
    int rc = gtask__value_check(&args[k]);
    if (rc) {
      gtask__set_error("argument %zu: %s (type %s)", k + 1, gtask_strerror(rc),
                       gtask_type_name(args[k].type));
      return rc;
    }
  }
  gtask_task t;
  memset(&t, 0, sizeof(t));
  /* The message carries neither id nor queue (version 2); the encoder checks
   * that they are valid. */
  memcpy(t.id, "00000000-0000-0000-0000-000000000000", GTASK_ID_SIZE);
  t.queue = conf->queue ? conf->queue : (char *)"default";
  task_options(conf, &t);
  t.args = (gtask_value *)args;
  t.nargs = nargs;
  t.created_ms = created_ms;
  return gtask__task_encode(&t, body, len);
}
