/* finisher.c -- the finisher thread of a worker server, and the executors'
 * inline writes (see worker.h for a job's life).
 *
 * The finisher writes STARTED marks and outcomes in batches (one broker or
 * backend round trip for up to MAX_BATCH jobs) and fails tasks at their
 * deadline.  A write that fails transiently is retried with backoff; one that
 * fails permanently is isolated to the tasks it concerns (isolate()).  When
 * the worker is otherwise idle, an executor writes its own job's outcome
 * instead (gtask__server_finish_inline_locked): no thread wake-up between a
 * handler's return and its result.  The leases of the jobs in flight are
 * renewed by a thread of its own (heartbeat.c): a write here may be retried
 * for longer than a lease.
 *
 * Invariant: a job stays in the in-flight list until its outcome is written
 * (or the worker gives up on it at shutdown), so it is heartbeated until then;
 * if the process dies at any point, the lease expires and another worker's
 * reclaim requeues the task. */
#include "worker.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>

#define START_DELAY_MS 10
/* For this long after outcomes were last written, the finisher wakes by itself
 * every START_DELAY_MS, so that executors need not wake it for each task's
 * STARTED mark (a context switch per task when tasks come one by one). */
#define LINGER_MS 100
/* How often the tasks held (running or prefetched) are checked for a cancel
 * (issue 18): a cancelled task's handler sees gtask_ctx_cancelled() within
 * this, plus a round trip. */
#define CANCEL_CHECK_MS 500 /* also how often the progress reports are written */
/* The finisher retries a write that failed transiently after a backoff that
 * doubles from WRITE_BACKOFF_FIRST_MS to WRITE_BACKOFF_MAX_MS; once the
 * executors are done (shutdown), it gives up after WRITE_GIVE_UP_MS of
 * failures: those tasks stay leased and another worker runs them again. */
#define WRITE_BACKOFF_FIRST_MS 50
#define WRITE_BACKOFF_MAX_MS 2000
#define WRITE_GIVE_UP_MS 10000

void gtask__server_mark_started_locked(gtask_server *s, gtask_job *job) {
  if (s->nto_start == s->cap_to_start) {
    size_t cap = s->cap_to_start ? 2 * s->cap_to_start : 64;
    gtask_job **ts = gtask__realloc(s->to_start, cap * sizeof(*ts));
    if (ts) s->to_start = ts;
    uint32_t *ta = gtask__realloc(s->to_start_att, cap * sizeof(*ta));
    if (ta) s->to_start_att = ta;
    if (ts && ta) s->cap_to_start = cap;
  }
  /* STARTED is a courtesy for observers; if memory is short, skip it. */
  if (s->nto_start < s->cap_to_start) {
    if (s->nto_start == 0) {
      s->first_start_mono = gtask__mono_ms();
      gtask__server_finisher_due_locked(s, s->first_start_mono + START_DELAY_MS);
    }
    s->to_start[s->nto_start] = job;
    s->to_start_att[s->nto_start++] = job->task->attempts + 1;
    job->refs++; /* released by the finisher once STARTED is written */
  }
}

void gtask__server_finisher_due_locked(gtask_server *s, int64_t due_mono) {
  /* Awake, it looks at every deadline and mark before it sleeps again. */
  if (s->finisher_wake && due_mono < s->finisher_wake) pthread_cond_signal(&s->cv_done);
}


/* Writes the outcomes of jobs[0..n).  Returns 0 when every job is settled
 * (written or fenced), else an error, and then only the fins marked settled
 * are written (the broker settles what it can: a batch spans queues on
 * several nodes, and one failing must not hold back the others). */
static int write_outcomes(gtask_server *s, gtask_job **jobs, size_t n, gtask_fin *fins) {
  for (size_t k = 0; k < n; k++) {
    const gtask_job *j = jobs[k];
    fins[k] = j->fin;
    fins[k].msg = j->msg;
    fins[k].fenced = false;
    fins[k].settled = false;
    /* (marked is final here: a job on the DONE list gets no mark.) */
    fins[k].fresh = j->task && !j->reclaimed && !j->marked && j->task->attempts == 0 && j->task->lost == 0;
  }
  int rc;
  if (s->state) {
    rc = s->broker->ops->finish(s->broker->impl, s->name, fins, n, s->state);
  } else {
    /* Different stores: check the lease, record the result (idempotent, never
     * over a final state), then release the lease.  A crash in between leaves
     * the task leased: it is reclaimed and its stored final state wins. */
    bool lost[MAX_BATCH];
    gtask_msg *msgs[MAX_BATCH] = {0}; /* (all n set below; gcc -O2 cannot tell) */
    for (size_t k = 0; k < n; k++) msgs[k] = fins[k].msg;
    rc = s->broker->ops->extend(s->broker->impl, s->name, msgs, n, lost);
    if (rc) return rc;
    gtask_fin live[MAX_BATCH];
    size_t map[MAX_BATCH], m = 0;
    for (size_t k = 0; k < n; k++) {
      if (lost[k]) {
        fins[k].fenced = fins[k].settled = true;
        continue;
      }
      map[m] = k;
      live[m++] = fins[k];
    }
    rc = s->backend->ops->store(s->backend->impl, live, m);
    if (rc) return rc;
    for (size_t k = 0; k < m; k++)
      if (live[k].fenced) { /* already final: just release the lease */
        live[k].kind = GTASK_FIN_DONE;
        live[k].next = NULL; /* nor keep it as failed: its final state may be another */
        live[k].next_due_ms = 0;
        live[k].fenced = false;
      }
    rc = s->broker->ops->finish(s->broker->impl, s->name, live, m, NULL);
    for (size_t k = 0; k < m; k++) {
      fins[map[k]].fenced = live[k].fenced;
      fins[map[k]].settled = live[k].settled;
    }
  }
  return rc;
}

/* Ends the jobs whose outcomes write_outcomes() has just written: counts them,
 * takes them off the in-flight list, drops their lifecycle reference, and
 * tells the fetcher about a retry due before its next promote. */
static void settle(gtask_server *s, gtask_job **batch, const gtask_fin *fins, size_t n) {
  if (s->hook_mask) gtask__hooks_settled(s, batch, fins, n); /* before the unrefs below */
  int64_t earliest_retry = 0;
  for (size_t k = 0; k < n; k++) {
    if (fins[k].fenced && !batch[k]->cancel_seen) /* (a cancelled one was logged) */
      gtask__log(GTASK_LOG_WARN,
                 "task %s: outcome not recorded (lease lost or task already final)",
                 batch[k]->msg->id);
    else if (fins[k].kind == GTASK_FIN_RETRY &&
             (!earliest_retry || fins[k].next_due_ms < earliest_retry))
      earliest_retry = fins[k].next_due_ms;
  }
  pthread_mutex_lock(&s->mu);
  s->last_write_mono = gtask__mono_ms();
  for (size_t k = 0; k < n; k++) {
    if (!fins[k].fenced) {
      if (fins[k].status == GTASK_SUCCESS) s->finished++;
      if (fins[k].status == GTASK_FAILURE) s->failed++;
      if (fins[k].kind == GTASK_FIN_RETRY) s->retried++;
    }
    gtask__inflight_remove_locked(s, batch[k]);
    gtask__job_unref_locked(s, batch[k]);
  }
  bool poke = false;
  if (earliest_retry) {
    if (!s->next_due_ms || earliest_retry < s->next_due_ms) s->next_due_ms = earliest_retry;
    int64_t in = earliest_retry - gtask__now_ms();
    poke = gtask__mono_ms() + in < s->fetch_until_mono && !s->stopping;
  }
  pthread_cond_broadcast(&s->cv_room);
  pthread_mutex_unlock(&s->mu);
  /* Wake the fetcher so that it promotes the retry when it is due. */
  if (poke) s->broker->ops->interrupt(s->broker->impl, s->name);
}

/* After a write that failed (rc): settles the jobs of batch[0..*n) whose
 * outcomes the broker wrote nonetheless (fin.settled) and keeps the others,
 * in order, in batch[0..*n) and fins[0..*n) to be retried. */
static void settle_written(gtask_server *s, gtask_job **batch, gtask_fin *fins, size_t *n) {
  size_t keep = 0;
  for (size_t k = 0; k < *n; k++) {
    if (fins[k].settled) {
      settle(s, &batch[k], &fins[k], 1);
      continue;
    }
    batch[keep] = batch[k];
    fins[keep++] = fins[k];
  }
  *n = keep;
}

/* The last job of a burst is written by the executor that ran it.  When the
 * finisher sleeps, nothing else is ready and no other executor is writing,
 * handing the outcome over would cost a thread wake-up on the path from send
 * to result (an idle worker's latency) and win no batching.  Under load jobs
 * go to the finisher, which writes them in batches.  Called with s->mu held
 * right after gtask__server_job_done_locked(job); returns with it held.
 * False: the job is (again) on the DONE list, and the finisher must be woken. */
bool gtask__server_finish_inline_locked(gtask_server *s, gtask_job *job) {
  if (s->done_head != job || s->done_tail != job || s->nready || s->inline_writing ||
      !s->finisher_wake || s->stopping)
    return false;
  s->done_head = s->done_tail = NULL;
  s->inline_writing = true;
  pthread_mutex_unlock(&s->mu);
  gtask_fin fin;
  int rc = write_outcomes(s, &job, 1, &fin);
  if (rc == 0)
    settle(s, &job, &fin, 1);
  else /* the finisher retries it, with its backoff */
    gtask__log(GTASK_LOG_WARN, "writing the result of task %s: %s (the finisher retries)",
               job->msg->id, gtask_last_error());
  pthread_mutex_lock(&s->mu);
  s->inline_writing = false;
  if (rc == 0) return true;
  job->next = s->done_head;
  s->done_head = job;
  if (!s->done_tail) s->done_tail = job;
  return false;
}

/* A batch failed with an error that will not pass by retrying (WRONGTYPE on
 * a task's key that someone overwrote, a script's run-time error).  It may
 * concern one task only: each is written alone, and one that still fails
 * alone is moved to the dead set by the broker alone, with the error as its
 * reason (its state record is what cannot be written).  If even that fails
 * permanently, the job is dropped here: its lease expires and reclaim brings
 * it back, up to the delivery cap.  The others are settled.  Returns how
 * many jobs failed transiently, moved to batch[0..), to be retried (*rc: the
 * error; 0 if none). */
static size_t isolate(gtask_server *s, gtask_job **batch, size_t n, gtask_fin *fins, int *rc) {
  int batch_rc = *rc;
  size_t keep = 0;
  *rc = 0;
  for (size_t k = 0; k < n; k++) {
    gtask_job *j = batch[k];
    int r = n > 1 ? write_outcomes(s, &j, 1, &fins[k]) : batch_rc;
    if (r == 0) {
      settle(s, &j, &fins[k], 1);
      continue;
    }
    if (!gtask__rc_transient(r) && r != GTASK_ENOPERM) {
      char why[300];
      gtask__fmt(why, sizeof(why), "%s", gtask_last_error());
      gtask__log(GTASK_LOG_ERROR, "task %s: its outcome cannot be written (%s); moving it to the dead set",
                 j->msg->id, why);
      gtask__job_outcome_unwritable(s, j, why);
      fins[k] = j->fin;
      fins[k].msg = j->msg;
      fins[k].fresh = false;
      fins[k].fenced = false;
      r = s->broker->ops->finish(s->broker->impl, s->name, &fins[k], 1, NULL);
      if (r == 0) {
        settle(s, &j, &fins[k], 1);
        continue;
      }
      if (!gtask__rc_transient(r) && r != GTASK_ENOPERM) {
        gtask__log(GTASK_LOG_ERROR,
                   "task %s: cannot be moved to the dead set either (%s); it stays leased "
                   "until reclaimed",
                   j->msg->id, gtask_last_error());
        pthread_mutex_lock(&s->mu);
        gtask__inflight_remove_locked(s, j);
        gtask__job_unref_locked(s, j);
        pthread_cond_broadcast(&s->cv_room);
        pthread_mutex_unlock(&s->mu);
        continue;
      }
    }
    batch[keep++] = j;
    *rc = r;
  }
  return keep;
}

/* Asks the backend which of the tasks held are final already -- cancelled
 * (gtask_client_cancel) -- and tells their handlers (ctx.cancelled); a
 * prefetched one is then not run (executor.c).  One finals() call for all
 * of them; nothing when nothing is held. */
static void check_cancels(gtask_server *s) {
  pthread_mutex_lock(&s->mu);
  size_t n = 0, cap = s->ninflight;
  gtask_job **jobs = cap ? gtask__malloc(cap * sizeof(*jobs)) : NULL;
  gtask_msg **msgs = cap ? gtask__malloc(cap * sizeof(*msgs)) : NULL;
  bool *final = cap ? gtask__calloc(cap, sizeof(*final)) : NULL;
  if (!jobs || !msgs || !final) {
    pthread_mutex_unlock(&s->mu);
    gtask__free(jobs), gtask__free(msgs), gtask__free(final);
    return;
  }
  for (gtask_job *j = s->inflight; j && n < cap; j = j->inext) {
    if (j->state == GTASK_JOB_DONE || j->finalized || j->cancel_seen || !j->task) continue;
    j->refs++;
    jobs[n] = j;
    msgs[n++] = j->msg;
  }
  pthread_mutex_unlock(&s->mu);
  int rc = n ? s->backend->ops->finals(s->backend->impl, msgs, n, final) : 0;
  if (rc) gtask__log(GTASK_LOG_WARN, "checking for cancelled tasks: %s", gtask_last_error());
  pthread_mutex_lock(&s->mu);
  for (size_t k = 0; k < n; k++) {
    if (rc == 0 && final[k] && jobs[k]->state != GTASK_JOB_DONE && !jobs[k]->finalized) {
      jobs[k]->cancel_seen = true;
      atomic_store(&jobs[k]->ctx.cancelled, true);
      gtask__log(GTASK_LOG_INFO, "task %s: cancelled; telling its handler", jobs[k]->msg->id);
    }
    gtask__job_unref_locked(s, jobs[k]);
  }
  pthread_mutex_unlock(&s->mu);
  gtask__free(jobs);
  gtask__free(msgs);
  gtask__free(final);
}

/* Writes the progress the running tasks reported since the last call
 * (issue 18): one backend call for all of them, so a worker writes progress
 * at most once per CANCEL_CHECK_MS however often its handlers report. */
static void write_progress(gtask_server *s) {
  pthread_mutex_lock(&s->mu);
  size_t n = 0, cap = s->ninflight;
  gtask_job **jobs = cap ? gtask__malloc(cap * sizeof(*jobs)) : NULL;
  gtask_msg **msgs = cap ? gtask__malloc(cap * sizeof(*msgs)) : NULL;
  char **vals = cap ? gtask__calloc(cap, sizeof(*vals)) : NULL;
  if (!jobs || !msgs || !vals) {
    pthread_mutex_unlock(&s->mu);
    gtask__free(jobs), gtask__free(msgs), gtask__free(vals);
    return;
  }
  for (gtask_job *j = s->inflight; j && n < cap; j = j->inext) {
    if (j->state != GTASK_JOB_RUNNING || !atomic_load(&j->ctx.progress)) continue;
    char *v = atomic_exchange(&j->ctx.progress, NULL);
    if (!v) continue;
    j->refs++;
    jobs[n] = j;
    msgs[n] = j->msg;
    vals[n++] = v;
  }
  pthread_mutex_unlock(&s->mu);
  if (n && s->backend->ops->progress(s->backend->impl, msgs, (const char *const *)vals, n) != 0)
    gtask__log(GTASK_LOG_WARN, "recording progress: %s", gtask_last_error());
  pthread_mutex_lock(&s->mu);
  for (size_t k = 0; k < n; k++) gtask__job_unref_locked(s, jobs[k]);
  pthread_mutex_unlock(&s->mu);
  for (size_t k = 0; k < n; k++) gtask__free(vals[k]);
  gtask__free(jobs);
  gtask__free(msgs);
  gtask__free(vals);
}

void *gtask__finisher_main(void *arg) {
  gtask_server *s = arg;
  gtask__block_sigpipe();
  int64_t period = s->lease_ms / 3; /* the longest sleep, with nothing due */
  int64_t next_cancel_check = gtask__mono_ms() + CANCEL_CHECK_MS;
  bool check_cancel = s->backend->ops->finals != NULL;
  bool progress = s->backend->ops->progress != NULL;
  int64_t backoff = 0, failing_since = 0;
  gtask_job *batch[MAX_BATCH];
  gtask_fin fins[MAX_BATCH];
  gtask_job **start = NULL;
  uint32_t *start_att = NULL;

  pthread_mutex_lock(&s->mu);
  for (;;) {
    /* Wait for work: outcomes, STARTED marks, a deadline. */
    int64_t now = gtask__mono_ms();
    int64_t wake = now + period;
    size_t ntimed = 0;
    for (gtask_job *j = s->inflight; j; j = j->inext) {
      if (j->state != GTASK_JOB_RUNNING || j->finalized || !j->deadline_mono) continue;
      if (now >= j->deadline_mono) {
        /* Deadline: decide now; the handler's late return will be discarded. */
        j->finalized = true;
        atomic_store(&j->ctx.cancelled, true);
        /* Its lifecycle reference moves to the DONE list; the executor keeps
         * its own until the handler returns. */
        (void)gtask__server_job_done_locked(s, j); /* this is the finisher */
        j->state = GTASK_JOB_RUNNING; /* still on its executor */
        j->fin.kind = 0;              /* outcome built below, outside the lock */
        ntimed++;
      } else if (j->deadline_mono < wake) {
        wake = j->deadline_mono;
      }
    }
    bool quit = s->executors_done && !s->done_head && s->nto_start == 0;
    if (quit) break;
    if ((check_cancel || progress) && s->ninflight) {
      if (now >= next_cancel_check) {
        next_cancel_check = now + CANCEL_CHECK_MS;
        pthread_mutex_unlock(&s->mu);
        if (check_cancel) check_cancels(s);
        if (progress) write_progress(s);
        pthread_mutex_lock(&s->mu);
        continue;
      }
      if (next_cancel_check < wake) wake = next_cancel_check;
    } else {
      next_cancel_check = now + CANCEL_CHECK_MS; /* counted from the first task held */
    }
    /* STARTED marks alone wait up to START_DELAY_MS: most tasks finish by then
     * and need none (their final state supersedes it), which saves a round
     * trip on the latency path.  Observers see STARTED that much later. */
    bool start_due = s->nto_start && (s->executors_done || now >= s->first_start_mono + START_DELAY_MS);
    if (!s->done_head && !start_due && ntimed == 0) {
      if (s->nto_start && s->first_start_mono + START_DELAY_MS < wake)
        wake = s->first_start_mono + START_DELAY_MS;
      if (now - s->last_write_mono < LINGER_MS && now + START_DELAY_MS < wake)
        wake = now + START_DELAY_MS;
#ifdef __GLIBC__
      /* Idle after a burst: give glibc's cached free memory back (once per
       * burst, ~1.5 ms).  A worker's RSS otherwise creeps up by the threads'
       * tcaches and arenas' free space to a ceiling: 7 -> 12.6 MB over 30M
       * tasks with a flat live heap of ~65 KB (docs/DESIGN.md, "Worker
       * memory"); trimmed, an idle worker stays at 4.4-6.3 MB. */
      if (s->last_write_mono && s->last_write_mono != s->trimmed_write_mono &&
          now - s->last_write_mono >= LINGER_MS && !s->nrunning && !s->nready) {
        s->trimmed_write_mono = s->last_write_mono;
        pthread_mutex_unlock(&s->mu);
        malloc_trim(0);
        pthread_mutex_lock(&s->mu);
        continue;
      }
#endif
      s->finisher_wake = wake;
      gtask__timed_wait(&s->cv_done, &s->mu, wake);
      s->finisher_wake = 0;
      continue;
    }
    /* Take STARTED marks and up to MAX_BATCH outcomes. */
    size_t nstart = s->nto_start;
    start = s->to_start;
    start_att = s->to_start_att;
    s->to_start = NULL;
    s->to_start_att = NULL;
    s->nto_start = s->cap_to_start = 0;
    /* A job already done needs no STARTED mark: its final state, written in
     * this or a later batch, supersedes it.  Fast tasks skip a round trip. */
    size_t keep = 0;
    for (size_t k = 0; k < nstart; k++) {
      if (start[k]->state == GTASK_JOB_DONE) {
        gtask__job_unref_locked(s, start[k]);
        continue;
      }
      start[k]->marked = true;
      start[keep] = start[k];
      start_att[keep++] = start_att[k];
    }
    nstart = keep;
    size_t n = 0;
    while (s->done_head && n < MAX_BATCH) {
      gtask_job *j = s->done_head;
      s->done_head = j->next;
      if (!s->done_head) s->done_tail = NULL;
      j->next = NULL;
      batch[n++] = j;
    }
    pthread_mutex_unlock(&s->mu);
    /* Outcomes whose write failed last time (their queue's node down, its
     * slot in migration) go last: the broker writes a batch run by run, in
     * order, and the other queues' runs are then written before the failing
     * one is tried again (and retried, for seconds, inside the call). */
    size_t nfresh = 0;
    gtask_job *failed[MAX_BATCH];
    size_t nfailed = 0;
    for (size_t k = 0; k < n; k++) {
      if (batch[k]->write_failed)
        failed[nfailed++] = batch[k];
      else
        batch[nfresh++] = batch[k];
    }
    memcpy(batch + nfresh, failed, nfailed * sizeof(*failed));

    for (size_t k = 0; k < n; k++)
      if (batch[k]->fin.kind == 0) gtask__job_outcome_timeout(s, batch[k]);

    if (nstart) {
      gtask_msg **msgs = (gtask_msg **)gtask__malloc(nstart * sizeof(*msgs));
      if (msgs) {
        for (size_t k = 0; k < nstart; k++) msgs[k] = start[k]->msg;
        int rc = s->backend->ops->started(s->backend->impl, msgs, start_att, nstart);
        /* STARTED is a courtesy: a slot in migration (TRYAGAIN) is noted
         * once, at info level, until a STARTED write works again. */
        bool migrating = rc && gtask__err_migrating();
        if (rc && !migrating) gtask__log(GTASK_LOG_WARN, "recording STARTED: %s", gtask_last_error());
        if (migrating && !s->started_migrating)
          gtask__log(GTASK_LOG_INFO, "recording STARTED: a slot is in migration (%s); its marks "
                     "are skipped until the move ends", gtask_last_error());
        s->started_migrating = migrating;
        gtask__free(msgs);
      }
    }
    int rc = n ? write_outcomes(s, batch, n, fins) : 0;
    if (rc) settle_written(s, batch, fins, &n);
    if (rc && !gtask__rc_transient(rc) && rc != GTASK_ENOPERM) n = isolate(s, batch, n, fins, &rc);
    if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "writing results");

    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < nstart; k++) gtask__job_unref_locked(s, start[k]);
    pthread_mutex_unlock(&s->mu);
    gtask__free(start);
    gtask__free(start_att);
    start = NULL;
    start_att = NULL;

    if (rc) {
      int64_t t = gtask__mono_ms();
      if (!failing_since) {
        failing_since = t;
        gtask__log(GTASK_LOG_WARN, "writing results: %s (retrying with backoff)", gtask_last_error());
      }
      pthread_mutex_lock(&s->mu);
      bool give_up = s->executors_done && (t - failing_since > WRITE_GIVE_UP_MS ||
                                           atomic_load(&s->fatal_rc) != 0);
      if (give_up) {
        gtask__log(GTASK_LOG_ERROR,
                   "shutting down with %zu results unwritten: their tasks stay leased and "
                   "another worker will run them again",
                   n);
        for (size_t k = 0; k < n; k++) {
          gtask__inflight_remove_locked(s, batch[k]);
          gtask__job_unref_locked(s, batch[k]);
        }
      } else {
        /* Put the batch back in front, in order, and wait before retrying. */
        for (size_t k = n; k-- > 0;) {
          batch[k]->write_failed = true;
          batch[k]->next = s->done_head;
          s->done_head = batch[k];
          if (!s->done_tail) s->done_tail = batch[k];
        }
        backoff = backoff ? (backoff * 2 > WRITE_BACKOFF_MAX_MS ? WRITE_BACKOFF_MAX_MS : backoff * 2)
                          : WRITE_BACKOFF_FIRST_MS;
        int64_t until = gtask__mono_ms() + backoff;
        gtask__timed_wait(&s->cv_room, &s->mu, until); /* nobody signals cv_room for us: a sleep */
      }
      pthread_mutex_unlock(&s->mu);
    } else if (n) {
      if (failing_since) gtask__log(GTASK_LOG_INFO, "writing results: working again");
      failing_since = 0;
      backoff = 0;
      settle(s, batch, fins, n);
    }
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

