/* heartbeat.c -- the heartbeat thread of a worker server: every lease/3 it
 * renews the leases of every job in flight and the worker's entry in its
 * queues' registry and record (see worker.h for a job's life).
 *
 * A thread of its own, not a step of the finisher's loop, because a write can
 * block for longer than a lease, and the lease of the very task being written
 * must not expire meanwhile.  On a Redis Cluster, a slot in migration whose
 * keys are split between two nodes answers every multi-key script of its queue
 * (finish.lua, started.lua) with TRYAGAIN until the move ends; pool.c retries
 * that for about 4 s, and the finisher then again with backoff.  When the
 * finisher also heartbeated, in turn with those writes, a 3 s lease expired
 * during one of them and a reclaim gave the task to another worker, which ran
 * it again (test_cluster's reshard test, one CI run: 33 finishes retried, one
 * task run twice).  extend.lua names one key, the stream: a migration
 * redirects it (ASK, MOVED) but never answers it TRYAGAIN, so the leases stay
 * renewed while the finisher waits (test_cluster:
 * a_finish_retried_through_a_split_slot_keeps_its_lease).
 *
 * Invariant: a job is renewed by this thread for as long as it is in the
 * in-flight list; the thread stops only after the finisher has ended (so the
 * outcomes it still retries at shutdown stay leased until it gives up). */
#include "worker.h"

/* Renews the leases of everything in flight, then the worker's entries. */
static void heartbeat(gtask_server *s) {
  pthread_mutex_lock(&s->mu);
  size_t n = 0, cap = s->ninflight;
  gtask_job **jobs = cap ? gtask__malloc(cap * sizeof(*jobs)) : NULL;
  gtask_msg **msgs = cap ? gtask__malloc(cap * sizeof(*msgs)) : NULL;
  bool *lost = cap ? gtask__calloc(cap, sizeof(*lost)) : NULL;
  bool *known = cap ? gtask__calloc(cap, sizeof(*known)) : NULL;
  if (cap && (!jobs || !msgs || !lost || !known)) {
    pthread_mutex_unlock(&s->mu);
    gtask__free(jobs), gtask__free(msgs), gtask__free(lost), gtask__free(known);
    return;
  }
  for (gtask_job *j = s->inflight; j && n < cap; j = j->inext) {
    j->refs++;
    jobs[n] = j;
    msgs[n++] = j->msg;
  }
  pthread_mutex_unlock(&s->mu);
  /* Every batch, even after one failed: a node that cannot be reached must
   * not cost the leases held on the others. */
  int rc = 0;
  for (size_t off = 0; off < n; off += MAX_BATCH) {
    size_t m = n - off < MAX_BATCH ? n - off : MAX_BATCH;
    int rb = s->broker->ops->extend(s->broker->impl, s->name, msgs + off, m, lost + off);
    if (rb == 0)
      for (size_t k = off; k < off + m; k++) known[k] = true;
    else if (rc == 0)
      rc = rb;
  }
  /* One line per outage, not one per heartbeat. */
  if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "heartbeat");
  int arc = gtask__server_announce(s, gtask__now_ms() + s->lease_ms);
  if (arc == GTASK_EVERSION || arc == GTASK_ENOPERM) gtask__server_fatal(s, arc, "announcing the worker");
  /* Its record for `gtask workers`: a courtesy; a failure is the heartbeat's. */
  if (arc == 0 && gtask__server_record(s, gtask__now_ms() + s->lease_ms) == GTASK_ENOPERM)
    gtask__server_fatal(s, GTASK_ENOPERM, "writing the worker record");
  if (rc && !s->hb_failing) gtask__log(GTASK_LOG_WARN, "heartbeat: %s (will keep trying)", gtask_last_error());
  if (!rc && s->hb_failing) gtask__log(GTASK_LOG_INFO, "heartbeat: working again");
  s->hb_failing = rc != 0;
  pthread_mutex_lock(&s->mu);
  for (size_t k = 0; k < n; k++) {
    /* A job done since the snapshot may have had its outcome written (and
     * its lease released) by the finisher or an executor meanwhile: extend
     * then finds the entry gone, which is no takeover.  A done job has
     * nothing to cancel; if its lease was really lost, its write is fenced
     * and says so. */
    if (known[k] && lost[k] && !jobs[k]->lease_lost && jobs[k]->state != GTASK_JOB_DONE &&
        !jobs[k]->finalized) {
      jobs[k]->lease_lost = true;
      atomic_store(&jobs[k]->ctx.cancelled, true);
      gtask__log(GTASK_LOG_WARN, "task %s: lease taken over by another worker; cancelling it here",
                 jobs[k]->msg->id);
    }
    gtask__job_unref_locked(s, jobs[k]);
  }
  pthread_mutex_unlock(&s->mu);
  gtask__free(jobs);
  gtask__free(msgs);
  gtask__free(lost);
  gtask__free(known);
}

int gtask__server_announce(gtask_server *s, int64_t until_ms) {
  if (!s->broker->ops->announce) return 0;
  return s->broker->ops->announce(s->broker->impl, s->name, s->queues, s->nqueues, until_ms);
}

void *gtask__heartbeat_main(void *arg) {
  gtask_server *s = arg;
  gtask__block_sigpipe();
  int64_t period = s->lease_ms / 3;
  pthread_mutex_lock(&s->mu);
  int64_t next = gtask__mono_ms() + period;
  while (!s->hb_stop) {
    if (gtask__mono_ms() < next) {
      gtask__timed_wait(&s->cv_hb, &s->mu, next);
      continue;
    }
    pthread_mutex_unlock(&s->mu);
    heartbeat(s);
    pthread_mutex_lock(&s->mu);
    /* From the end of this one: a heartbeat that took long (a node down)
     * is not followed by another at once. */
    next = gtask__mono_ms() + period;
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}
