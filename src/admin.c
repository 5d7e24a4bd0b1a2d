/* admin.c -- queue inspection for tools and operators (issue 4: `gtask stats`,
 * `gtask dead list|requeue|purge`): a queue's counts, and its dead set listed,
 * moved back to the queue, or emptied.
 *
 * These are client calls on top of the broker and backend interfaces
 * (internal.h: stats, dead_list, dead_requeue, dead_purge; backend reset).
 *
 * Requeueing a dead task has to undo two things that are otherwise permanent:
 *  - its message says how often it was lost ("l"); a task requeued with l at
 *    max_deliveries would go straight back to the dead set the next time a
 *    worker dies holding it.  The message is decoded, l set to 0 (and an expiry
 *    moved to now + the broker's message TTL, or a task that has sat in the
 *    dead set for a day would expire unrun), and re-encoded here; the broker
 *    then swaps it in only if the dead set still holds the bytes we read
 *    (compare-and-swap), so a concurrent requeue or purge wins cleanly.  A
 *    message that does not decode is not requeued at all: a worker could only
 *    bury it again, and count it in the queue's failed counter again each
 *    time (issue 14);
 *  - its state is final (FAILURE), and a final state is never overwritten by
 *    the normal scripts, so the new run's result could never be recorded.  The
 *    state is reset to PENDING explicitly: in the same script when broker and
 *    backend are colocated, else through the backend's reset() *before* the
 *    message is queued -- the other order would let a fast worker finish the
 *    new run first, and the reset would then wipe its final result.
 * docs/PROTOCOL.md ("dead_requeue.lua") has the same reasoning. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEUE_CHUNK 256

/* After a failed broker/backend call: keep its detail. */
static int lib_err(gtask_client *c, int rc, const char *what) {
  return gtask__client_err(c, rc, "%s: %s (%s)", what, gtask_strerror(rc), gtask_last_error());
}

static void free_msgs(gtask_msg **v, size_t n) {
  for (size_t k = 0; k < n; k++) gtask_msg_free(v[k]);
  gtask__free(v);
}

/* ---------------------------------------------------------------- stats */

GTASK_EXTERN int gtask_client_stats(gtask_client *c, const char *queue, gtask_queue_stats *out) {
  if (!c || !out) return GTASK_EINVAL;
  /* Zeroed here, not only by the broker: a table older than abi 6 knows a
   * shorter struct and leaves `cancelled` as it finds it. */
  memset(out, 0, sizeof(*out));
  const char *q = queue ? queue : gtask__client_queue(c);
  if (!gtask__queue_valid(q)) return gtask__client_err(c, GTASK_EINVAL, "invalid queue name \"%s\"", q);
  gtask_broker *b = gtask__client_broker(c);
  int rc = b->ops->stats(b->impl, q, out);
  return rc ? lib_err(c, rc, "stats") : 0;
}

GTASK_EXTERN int gtask_client_queues(gtask_client *c, char ***names, size_t *n) {
  if (!c || !names || !n) return GTASK_EINVAL;
  *names = NULL;
  *n = 0;
  gtask_broker *b = gtask__client_broker(c);
  /* A table of abi 1 ends before the queues operation: never read it there. */
  if (b->ops->abi < 2 || !b->ops->queues)
    return gtask__client_err(c, GTASK_EINVAL, "the %s broker cannot list its queues", b->ops->name);
  int rc = b->ops->queues(b->impl, names, n);
  return rc ? lib_err(c, rc, "queues") : 0;
}

GTASK_EXTERN void gtask_queues_free(char **names, size_t n) {
  if (!names) return;
  for (size_t k = 0; k < n; k++) free(names[k]);
  free(names);
}

/* ---------------------------------------------------------------- pause */

static int pause_set(gtask_client *c, const char *queue, bool paused) {
  if (!c) return GTASK_EINVAL;
  const char *q = queue ? queue : gtask__client_queue(c);
  if (!gtask__queue_valid(q)) return gtask__client_err(c, GTASK_EINVAL, "invalid queue name \"%s\"", q);
  gtask_broker *b = gtask__client_broker(c);
  if (!b->ops->pause || !b->ops->paused)
    return gtask__client_err(c, GTASK_EINVAL, "broker \"%s\" cannot pause queues", b->ops->name);
  int rc = b->ops->pause(b->impl, q, paused);
  return rc ? lib_err(c, rc, paused ? "pause" : "resume") : 0;
}

GTASK_EXTERN int gtask_client_queue_pause(gtask_client *c, const char *queue) {
  return pause_set(c, queue, true);
}

GTASK_EXTERN int gtask_client_queue_resume(gtask_client *c, const char *queue) {
  return pause_set(c, queue, false);
}

GTASK_EXTERN int gtask_client_queue_paused(gtask_client *c, const char *queue, bool *paused) {
  if (!c || !paused) return GTASK_EINVAL;
  *paused = false;
  const char *q = queue ? queue : gtask__client_queue(c);
  if (!gtask__queue_valid(q)) return gtask__client_err(c, GTASK_EINVAL, "invalid queue name \"%s\"", q);
  gtask_broker *b = gtask__client_broker(c);
  if (!b->ops->paused) return 0;
  int rc = b->ops->paused(b->impl, &q, 1, paused);
  return rc ? lib_err(c, rc, "paused") : 0;
}

/* ---------------------------------------------------------------- dead list */

GTASK_EXTERN void gtask_dead_list_free(gtask_dead_entry *entries, size_t n) {
  if (!entries) return;
  for (size_t k = 0; k < n; k++) {
    gtask__free(entries[k].name);
    gtask__free(entries[k].error);
  }
  gtask__free(entries);
}

/* Fills e from the dead message m: name and message error from the body, then
 * the error of its result record, which is the more recent. */
static int entry_fill(gtask_client *c, const gtask_msg *m, gtask_dead_entry *e) {
  gtask__fmt(e->id, sizeof(e->id), "%s", m->id);
  const char *error = NULL;
  gtask_task *t = NULL;
  char why[200];
  int rc = gtask__task_decode_in(m->body, m->len, m->id, m->queue, &t, why, sizeof(why));
  if (rc == GTASK_ENOMEM) return rc;
  if (rc == 0) {
    if (!(e->name = gtask__strdup(t->name))) {
      gtask__task_free(t);
      return GTASK_ENOMEM;
    }
    error = t->last_error;
  }
  gtask_result *r = NULL;
  gtask_backend *be = gtask__client_backend(c);
  char *buf = NULL;
  size_t len = 0;
  gtask_status st;
  rc = e->id[0] ? be->ops->get(be->impl, m->queue, e->id, &st, NULL, &buf, &len) : GTASK_ENOTFOUND;
  if (rc == 0 && buf) {
    char err[200];
    if (gtask__result_decode(buf, len, e->id, &r, err, sizeof(err)) == 0 && r->error && r->error[0])
      error = r->error;
  } else if (rc != 0 && rc != GTASK_ENOTFOUND) {
    gtask__free(buf);
    gtask__task_free(t);
    return rc;
  }
  e->error = gtask__strdup(error ? error : "");
  gtask_result_free(r);
  gtask__free(buf);
  gtask__task_free(t);
  return e->error ? 0 : GTASK_ENOMEM;
}

static int entry_cmp(const void *x, const void *y) {
  const gtask_dead_entry *a = x, *b = y;
  return strcmp(a->id, b->id);
}

/* The dead set (failed false) or the failed set, listed. */
static int list_entries(gtask_client *c, bool failed, gtask_dead_entry **out, size_t *n) {
  if (!c || !out || !n) return GTASK_EINVAL;
  *out = NULL;
  *n = 0;
  gtask_broker *b = gtask__client_broker(c);
  const char *what = failed ? "failed list" : "dead list";
  if (failed && !b->ops->failed_list) return 0; /* a broker that keeps none */
  gtask_msg **msgs = NULL;
  size_t nm = 0;
  int rc = failed ? b->ops->failed_list(b->impl, gtask__client_queue(c), NULL, &msgs, &nm)
                  : b->ops->dead_list(b->impl, gtask__client_queue(c), NULL, &msgs, &nm);
  if (rc) return lib_err(c, rc, what);
  if (nm == 0) return 0;
  gtask_dead_entry *v = gtask__calloc(nm, sizeof(*v));
  if (!v) rc = GTASK_ENOMEM;
  for (size_t k = 0; k < nm && rc == 0; k++) rc = entry_fill(c, msgs[k], &v[k]);
  free_msgs(msgs, nm);
  if (rc) {
    gtask_dead_list_free(v, nm);
    return lib_err(c, rc, what);
  }
  qsort(v, nm, sizeof(*v), entry_cmp);
  *out = v;
  *n = nm;
  return 0;
}

GTASK_EXTERN int gtask_client_dead_list(gtask_client *c, gtask_dead_entry **out, size_t *n) {
  return list_entries(c, false, out, n);
}

GTASK_EXTERN int gtask_client_failed_list(gtask_client *c, gtask_dead_entry **out, size_t *n) {
  return list_entries(c, true, out, n);
}

/* ---------------------------------------------------------------- requeue, purge */

/* The body to queue for dead message m, in *next (a new buffer).
 * GTASK_EPROTO, with the reason in why, for a message that does not decode:
 * it is not requeued (see gtask_client_dead_requeue). */
static int revived_body(gtask_client *c, const gtask_msg *m, bool fresh, char **next, size_t *len,
                        char *why, size_t whysize) {
  *next = NULL;
  *len = 0;
  gtask_task *t = NULL;
  int rc = gtask__task_decode_in(m->body, m->len, m->id, m->queue, &t, why, whysize);
  if (rc) return rc;
  t->lost = 0;
  if (fresh) { /* a rerun: its runs counted from 0 again, no previous error */
    t->attempts = 0;
    gtask__free(t->last_error);
    t->last_error = NULL;
  }
  int64_t ttl = gtask__client_broker(c)->msg_ttl_ms;
  if (t->expires_ms && ttl > 0) t->expires_ms = gtask__now_ms() + ttl;
  rc = gtask__task_encode(t, next, len);
  gtask__task_free(t);
  return rc;
}

/* Requeues msgs[0..n) (one chunk) from the dead set, or with failed from
 * the failed set; adds the number moved to *moved.  fresh (a rerun): their
 * runs count from 0 again.  A message that does not decode is left where it
 * is: with one_id (a requeue of that id) that is GTASK_EPROTO, else it is
 * skipped. */
static int requeue_chunk(gtask_client *c, gtask_msg **msgs, size_t n, bool one_id, bool failed,
                         bool fresh, size_t *moved) {
  gtask_broker *b = gtask__client_broker(c);
  gtask_backend *be = gtask__client_backend(c);
  void *state = gtask__client_state(c);
  gtask_revive rs[REQUEUE_CHUNK];
  gtask_msg *live[REQUEUE_CHUNK];
  char *bodies[REQUEUE_CHUNK] = {0};
  size_t m = 0;
  int rc = 0;
  char why[200] = "";
  for (size_t k = 0; k < n && rc == 0; k++) {
    size_t len = 0;
    rc = revived_body(c, msgs[k], fresh, &bodies[m], &len, why, sizeof(why));
    if (rc == GTASK_EPROTO && !one_id) {
      rc = 0;
      continue;
    }
    if (rc) break;
    live[m] = msgs[k];
    rs[m] = (gtask_revive){.msg = msgs[k], .next = bodies[m], .next_len = len};
    m++;
  }
  if (rc == GTASK_EPROTO) {
    rc = gtask__client_err(c, rc,
                           "task %s in queue %s: its message does not decode (%s); it stays in "
                           "the dead set, since no worker could run it (dead purge removes it)",
                           msgs[0]->id, msgs[0]->queue, why);
  } else if (rc) {
    rc = lib_err(c, rc, "dead requeue: re-encoding");
  } else if (m == 0) {
    /* nothing to requeue */
  } else if (!state && (rc = be->ops->reset(be->impl, live, m)) != 0) {
    /* Separate backend: PENDING first, then the message (see the file comment). */
    rc = lib_err(c, rc, "dead requeue: resetting the state");
  } else if ((rc = failed ? b->ops->failed_requeue(b->impl, rs, m, state)
                          : b->ops->dead_requeue(b->impl, rs, m, state)) != 0) {
    rc = lib_err(c, rc, failed ? "rerun" : "dead requeue");
  } else {
    for (size_t k = 0; k < m; k++) *moved += rs[k].moved;
  }
  for (size_t k = 0; k < m; k++) gtask__free(bodies[k]);
  return rc;
}

GTASK_EXTERN int gtask_client_dead_requeue(gtask_client *c, const char *id, size_t *moved) {
  if (moved) *moved = 0;
  if (!c) return GTASK_EINVAL;
  if (id && (!id[0] || strlen(id) >= GTASK_ID_SIZE))
    return gtask__client_err(c, GTASK_EINVAL, "\"%s\" is not a task id", id);
  gtask_broker *b = gtask__client_broker(c);
  const char *queue = gtask__client_queue(c);
  gtask_msg **msgs = NULL;
  size_t nm = 0;
  int rc = b->ops->dead_list(b->impl, queue, id, &msgs, &nm);
  if (rc) return lib_err(c, rc, "dead requeue: reading the dead set");
  size_t done = 0;
  for (size_t k = 0; k < nm && rc == 0; k += REQUEUE_CHUNK)
    rc = requeue_chunk(c, msgs + k, nm - k < REQUEUE_CHUNK ? nm - k : REQUEUE_CHUNK, id != NULL,
                       false, false, &done);
  free_msgs(msgs, nm);
  if (moved) *moved = done;
  if (rc) return rc;
  if (id && done == 0)
    return gtask__client_err(c, GTASK_ENOTFOUND, "no task %s in the dead set of queue %s", id, queue);
  return 0;
}

GTASK_EXTERN int gtask_client_rerun(gtask_client *c, const char *id) {
  if (!c) return GTASK_EINVAL;
  if (!id || !gtask__id_valid(id))
    return gtask__client_err(c, GTASK_EINVAL, "\"%s\" is not a task id (a UUID)", id ? id : "(null)");
  gtask_broker *b = gtask__client_broker(c);
  const char *queue = gtask__client_queue(c);
  /* The failed set first, then the dead set: a task is in one at most. */
  for (int from = 0; from < 2; from++) {
    bool failed = from == 0;
    if (failed && !(b->ops->failed_list && b->ops->failed_requeue)) continue;
    gtask_msg **msgs = NULL;
    size_t nm = 0, done = 0;
    int rc = failed ? b->ops->failed_list(b->impl, queue, id, &msgs, &nm)
                    : b->ops->dead_list(b->impl, queue, id, &msgs, &nm);
    if (rc) return lib_err(c, rc, "rerun: reading the failed and dead sets");
    /* One entry (a task fails once; a second entry would be of an earlier
     * failure, rerun and failed again, and goes with its expiry). */
    if (nm) rc = requeue_chunk(c, msgs, 1, true, failed, true, &done);
    free_msgs(msgs, nm);
    if (rc) return rc;
    if (done) return 0;
  }
  /* Not kept: say why. */
  gtask_status st;
  int rc = gtask_client_status(c, id, &st);
  if (rc == GTASK_ENOTFOUND)
    return gtask__client_err(c, rc, "no task %s in queue %s (unknown or expired)", id, queue);
  if (rc) return rc;
  if (st == GTASK_FAILURE)
    return gtask__client_err(c, GTASK_ENOTFOUND,
                             "task %s failed, but its message is no longer kept (the failed "
                             "retention passed, or its worker keeps none)", id);
  return gtask__client_err(c, GTASK_ESTATE, "task %s is %s: only a failed task can be rerun", id,
                           gtask_status_name(st));
}

GTASK_EXTERN int gtask_client_dead_purge(gtask_client *c, size_t *removed) {
  if (removed) *removed = 0;
  if (!c) return GTASK_EINVAL;
  gtask_broker *b = gtask__client_broker(c);
  size_t n = 0;
  int rc = b->ops->dead_purge(b->impl, gtask__client_queue(c), &n);
  if (rc) return lib_err(c, rc, "dead purge");
  if (removed) *removed = n;
  return 0;
}
