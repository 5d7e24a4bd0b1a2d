/* executor.c -- runs handlers on executor threads and turns how a run ended into
 * the outcome that the finisher writes: SUCCESS, FAILURE, RETRY (with backoff),
 * REQUEUE (lost or handed back) or DEAD.  Also the task context API that
 * handlers see (gtask_ctx_*).
 *
 * The pool's threads take turns at leasing (the fetch role: gtask__server_fetch
 * in server.c).  A run that ends puts its job on the DONE list, and the
 * finisher writes whole batches in one round trip (or the executor writes its
 * own when the worker is otherwise idle: gtask__server_finish_inline_locked). */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Thread_local gtask_ctx *current_ctx;

/* ---------------------------------------------------------------- context API */

GTASK_EXTERN gtask_ctx *gtask_ctx_current(void) { return current_ctx; }

void gtask__set_current_ctx(gtask_ctx *ctx) { current_ctx = ctx; }

GTASK_EXTERN const char *gtask_ctx_task_id(const gtask_ctx *ctx) {
  return ctx && ctx->job ? ctx->job->msg->id : "";
}

GTASK_EXTERN const char *gtask_ctx_task_name(const gtask_ctx *ctx) {
  return ctx && ctx->job && ctx->job->task ? ctx->job->task->name : "";
}

GTASK_EXTERN uint32_t gtask_ctx_attempt(const gtask_ctx *ctx) {
  return ctx && ctx->job && ctx->job->task ? ctx->job->task->attempts + 1 : 0;
}

GTASK_EXTERN int64_t gtask_ctx_deadline_ms(const gtask_ctx *ctx) { return ctx ? ctx->deadline_ms : 0; }

GTASK_EXTERN bool gtask_ctx_cancelled(const gtask_ctx *ctx) {
  if (!ctx) return false;
  if (atomic_load(&ctx->cancelled)) return true;
  /* The finisher sets the flag at the deadline; checking the clock here too
   * makes the answer exact rather than as late as the finisher's timer.  The
   * same monotonic deadline decides whether the run timed out (one clock, so
   * a handler told "cancelled" is always judged timed out). */
  return ctx->job && ctx->job->deadline_mono && gtask__mono_ms() >= ctx->job->deadline_mono;
}

GTASK_EXTERN bool gtask_ctx_sleep(gtask_ctx *ctx, int64_t ms) {
  int64_t end = gtask__mono_ms() + (ms > 0 ? ms : 0);
  for (;;) {
    if (gtask_ctx_cancelled(ctx)) return false;
    int64_t left = end - gtask__mono_ms();
    if (left <= 0) return true;
    /* Sleep in short slices so that cancellation is seen within 10 ms. */
    int64_t slice = left < 10 ? left : 10;
    struct timespec ts = {(time_t)(slice / 1000), (long)(slice % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

GTASK_EXTERN int gtask_ctx_progress(gtask_ctx *ctx, int64_t done, int64_t total,
                                    const char *message) {
  if (!ctx || done < 0 || total < 0 || (total && total < done)) return GTASK_EINVAL;
  char value[64 + GTASK_PROGRESS_MESSAGE_MAX];
  int k = snprintf(value, sizeof(value), "%lld %lld ", (long long)done, (long long)total);
  size_t len = (size_t)k;
  for (const char *m = message; m && *m && len < (size_t)k + GTASK_PROGRESS_MESSAGE_MAX; m++)
    value[len++] = (unsigned char)*m < 0x20 || *m == 0x7f ? ' ' : *m;
  value[len] = '\0';
  if (gtask__child_progress(ctx, value)) return 0;
  char *copy = gtask__strdup(value);
  if (!copy) return GTASK_ENOMEM;
  gtask__free(atomic_exchange(&ctx->progress, copy)); /* the finisher writes the latest */
  return 0;
}

GTASK_EXTERN int gtask_ctx_return(gtask_ctx *ctx, const gtask_value *values, size_t n) {
  if (!ctx || (n && !values)) return GTASK_EINVAL;
  if (ctx->returned) return GTASK_ESTATE;
  for (size_t k = 0; k < n; k++) {
    int rc = gtask__value_check(&values[k]);
    if (rc) return gtask_ctx_fail(ctx, "result value %zu: %s", k + 1, gtask_strerror(rc)), rc;
  }
  gtask_value *copy = NULL;
  int rc = gtask__values_copy(values, n, &copy);
  if (rc) return rc;
  ctx->values = copy;
  ctx->nvalues = n;
  ctx->returned = true;
  return 0;
}

static int ctx_verror(gtask_ctx *ctx, bool retry, const char *fmt, va_list ap) GTASK__PRINTF(3, 0);
static int ctx_verror(gtask_ctx *ctx, bool retry, const char *fmt, va_list ap) {
  if (!ctx) return GTASK_EINVAL;
  char buf[1024];
  if (fmt)
    vsnprintf(buf, sizeof(buf), fmt, ap);
  else
    buf[0] = '\0';
  char *e = gtask__strdup(buf);
  if (e) {
    gtask__free(ctx->error);
    ctx->error = e;
  }
  ctx->want_retry = retry;
  return GTASK_EHANDLER;
}

GTASK_EXTERN int gtask_ctx_fail(gtask_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = ctx_verror(ctx, false, fmt, ap);
  va_end(ap);
  return rc;
}

GTASK_EXTERN int gtask_ctx_retry(gtask_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = ctx_verror(ctx, true, fmt, ap);
  va_end(ap);
  return rc;
}

/* ---------------------------------------------------------------- outcomes */

static void set_result(gtask_job *job, gtask_status status, const gtask_value *vals, size_t n,
                       const char *error, int code, uint32_t attempts) {
  gtask_result r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  r.values = (gtask_value *)vals;
  r.nvalues = n;
  r.error = (char *)error;
  r.error_code = code;
  r.attempts = attempts;
  char *buf = NULL;
  size_t len = 0;
  if (gtask__result_encode(&r, &buf, &len) != 0) {
    /* Out of memory or a value the codec refuses: record the failure itself. */
    memset(&r, 0, sizeof(r));
    r.status = GTASK_FAILURE;
    r.error = (char *)"the task's result could not be encoded";
    r.error_code = GTASK_EPROTO;
    r.attempts = attempts;
    status = GTASK_FAILURE;
    if (gtask__result_encode(&r, &buf, &len) != 0) buf = NULL, len = 0;
  }
  gtask__free(job->result_buf);
  job->result_buf = buf;
  /* The hooks report the error; success, the fast path, has none to copy. */
  if (job->err || r.error) {
    gtask__free(job->err);
    job->err = r.error ? gtask__strdup(r.error) : NULL;
  }
  job->err_code = r.error_code;
  job->fin.result = buf;
  job->fin.result_len = len;
  job->fin.status = status;
}

/* A FAILURE outcome of a decoded task: its message, with the runs counted
 * and the error, is kept in the queue's failed set for a rerun (issue 18),
 * unless the server keeps none. */
static void keep_failed(gtask_server *s, gtask_job *job, const gtask_task *t, uint32_t runs,
                        const char *error);

/* Re-encodes the job's task as the message to queue again. */
static int set_next(gtask_job *job, const gtask_task *t) {
  char *buf = NULL;
  size_t len = 0;
  int rc = gtask__task_encode(t, &buf, &len);
  if (rc) return rc;
  gtask__free(job->next_buf);
  job->next_buf = buf;
  job->fin.next = buf;
  job->fin.next_len = len;
  return 0;
}

/* Whether the task asked for retries of this kind of outcome (GTASK_RETRY_ON_*). */
static bool retry_on(const gtask_task *t, uint32_t kind) {
  return ((t->retry_on ? t->retry_on : GTASK_RETRY_ON_TIMEOUT) & kind) != 0;
}

/* Codes a new run cannot change: never retried (issue 18). */
static bool code_final(int code) {
  return code == GTASK_ETYPE || code == GTASK_ENOHANDLER || code == GTASK_EPROTO;
}

static void outcome_error(gtask_server *s, gtask_job *job, const char *error, int code,
                          bool retryable) {
  gtask_task *t = job->task;
  uint32_t run = t->attempts + 1;
  job->fin.msg = job->msg;
  if (retryable && t->retry_max > 0 && run <= (uint32_t)t->retry_max) {
    gtask_task next = *t;
    next.attempts = run;
    next.last_error = (char *)error;
    if (set_next(job, &next) == 0) {
      int64_t delay = gtask__backoff_ms(t, run);
      job->fin.kind = GTASK_FIN_RETRY;
      job->fin.next_due_ms = gtask__now_ms() + delay;
      set_result(job, GTASK_RETRY, NULL, 0, error, code, run);
      gtask__log(GTASK_LOG_INFO, "task %s (%s): %s; retry %u of %d in %lld ms", job->msg->id,
                 t->name, error, run, t->retry_max, (long long)delay);
      return;
    }
    gtask__log(GTASK_LOG_ERROR, "task %s: cannot encode its retry; failing it", job->msg->id);
  }
  job->fin.kind = GTASK_FIN_DONE;
  set_result(job, GTASK_FAILURE, NULL, 0, error, code, run);
  keep_failed(s, job, t, run, error);
}

static void keep_failed(gtask_server *s, gtask_job *job, const gtask_task *t, uint32_t runs,
                        const char *error) {
  job->fin.next = NULL;
  job->fin.next_due_ms = 0;
  if (s->failed_keep_ms <= 0) return;
  gtask_task kept = *t;
  kept.attempts = runs;
  kept.last_error = (char *)error;
  if (set_next(job, &kept) != 0) {
    job->fin.next = NULL; /* not kept: only the rerun is lost */
    return;
  }
  job->fin.next_due_ms = gtask__now_ms() + s->failed_keep_ms;
}

void gtask__job_outcome_run(gtask_server *s, gtask_job *job, int rc) {
  gtask_ctx *ctx = &job->ctx;
  uint32_t run = job->task->attempts + 1;
  job->fin.msg = job->msg;
  if (rc == 0 && !ctx->error) {
    job->fin.kind = GTASK_FIN_DONE;
    set_result(job, GTASK_SUCCESS, ctx->values, ctx->nvalues, NULL, 0, run);
    return;
  }
  char fallback[96];
  const char *err = ctx->error;
  if (!err) {
    gtask__fmt(fallback, sizeof(fallback), "handler returned %d", rc);
    err = fallback;
  }
  int code = code_final(rc) ? rc : GTASK_EHANDLER;
  bool retry = !code_final(code) && (ctx->want_retry || retry_on(job->task, GTASK_RETRY_ON_ERROR));
  outcome_error(s, job, err, code, retry);
}

void gtask__job_outcome_fail(gtask_server *s, gtask_job *job, int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  job->fin.msg = job->msg;
  if (!job->task) {
    /* Undecodable: keep the bytes in the dead set for inspection. */
    job->fin.kind = GTASK_FIN_DEAD;
    job->fin.next = NULL;
    set_result(job, GTASK_FAILURE, NULL, 0, msg, code, 0);
  } else {
    job->fin.kind = GTASK_FIN_DONE;
    set_result(job, GTASK_FAILURE, NULL, 0, msg, code, job->task->attempts);
    if (code != GTASK_ELEASE) keep_failed(s, job, job->task, job->task->attempts, msg);
  }
  gtask__log(GTASK_LOG_WARN, "task %s: %s", job->msg->id[0] ? job->msg->id : "(no id)", msg);
  (void)s;
}

void gtask__job_outcome_crash(gtask_server *s, gtask_job *job, const char *why) {
  gtask__log(GTASK_LOG_WARN, "task %s (%s): %s", job->msg->id, job->task->name, why);
  outcome_error(s, job, why, GTASK_ECRASH, retry_on(job->task, GTASK_RETRY_ON_CRASH));
}

void gtask__job_outcome_timeout(gtask_server *s, gtask_job *job) {
  char msg[128];
  gtask__fmt(msg, sizeof(msg), "timeout: ran longer than %lld ms", (long long)job->task->timeout_ms);
  outcome_error(s, job, msg, GTASK_ETASKTIMEOUT, retry_on(job->task, GTASK_RETRY_ON_TIMEOUT));
}

void gtask__job_outcome_lost(gtask_server *s, gtask_job *job) {
  job->fin.msg = job->msg;
  if (!job->task) {
    gtask__job_outcome_fail(s, job, GTASK_EPROTO, "malformed message in a lost delivery");
    return;
  }
  gtask_task next = *job->task;
  next.lost = job->task->lost + 1;
  if (next.lost >= (uint32_t)s->max_deliveries) {
    char msg[200];
    gtask__fmt(msg, sizeof(msg),
               "lost: delivered %u times and its worker was lost each time (died or hung); "
               "moved to the dead set",
               next.lost);
    job->fin.kind = GTASK_FIN_DEAD;
    set_next(job, &next);
    set_result(job, GTASK_FAILURE, NULL, 0, msg, GTASK_ELOST, job->task->attempts);
    gtask__log(GTASK_LOG_WARN, "task %s: %s", job->msg->id, msg);
    return;
  }
  if (set_next(job, &next) != 0) {
    job->fin.next = NULL; /* requeue the original bytes; only the count is lost */
  }
  job->fin.kind = GTASK_FIN_REQUEUE;
  job->fin.status = GTASK_PENDING;
  job->fin.result = NULL;
  job->err_code = 0;
  gtask__log(GTASK_LOG_INFO, "task %s: recovered from a lost worker (loss %u of %d allowed)",
             job->msg->id, next.lost, s->max_deliveries - 1);
}

void gtask__job_outcome_unwritable(gtask_server *s, gtask_job *job, const char *why) {
  char msg[400];
  gtask__fmt(msg, sizeof(msg), "its outcome could not be written: %s", why);
  job->fin.msg = job->msg;
  job->fin.kind = GTASK_FIN_DEAD;
  job->fin.status = GTASK_FAILURE;
  job->fin.next = NULL; /* the dead set keeps msg->body unless re-encoded below */
  if (job->task) {
    gtask_task next = *job->task;
    next.last_error = msg;
    if (set_next(job, &next) != 0) job->fin.next = NULL;
  }
  set_result(job, GTASK_FAILURE, NULL, 0, msg, GTASK_EREDIS, job->task ? job->task->attempts + 1 : 0);
  (void)s;
}

void gtask__job_outcome_cancelled(gtask_server *s, gtask_job *job) {
  job->fin.msg = job->msg;
  job->fin.kind = GTASK_FIN_DONE;
  job->fin.next = NULL; /* not kept in the failed set */
  job->fin.next_due_ms = 0;
  set_result(job, GTASK_FAILURE, NULL, 0, "cancelled", GTASK_ECANCELED,
             job->task ? job->task->attempts + 1 : 0);
  gtask__log(GTASK_LOG_INFO, "task %s: cancelled", job->msg->id);
  (void)s;
}

void gtask__job_outcome_handback(gtask_server *s, gtask_job *job) {
  job->fin.msg = job->msg;
  job->fin.kind = GTASK_FIN_REQUEUE;
  job->fin.status = GTASK_PENDING;
  job->fin.next = NULL; /* the broker requeues msg->body unchanged */
  job->fin.result = NULL;
  (void)s;
}

/* ---------------------------------------------------------------- executor thread */

void gtask__job_start_locked(gtask_server *s, gtask_job *job) {
  s->nrunning++;
  job->state = GTASK_JOB_RUNNING;
  job->refs++; /* the executor's reference while it runs */
  job->run_since_ms = gtask__now_ms();
  gtask__server_mark_started_locked(s, job);
  if (s->hook_mask) gtask__hooks_job_start_locked(s, job);
  int64_t timeout = job->task->timeout_ms;
  if (timeout > 0) {
    job->deadline_mono = gtask__mono_ms() + timeout;
    job->ctx.deadline_ms = gtask__now_ms() + timeout;
    gtask__server_finisher_due_locked(s, job->deadline_mono); /* it enforces deadlines */
  }
}

/* Runs a started job's handler and queues its outcome.  Called with s->mu
 * held; returns with it held. */
static void run_job(gtask_server *s, gtask_job *job, gtask__child *child) {
  /* Cancelled while it waited in the prefetch (the finisher's check): not run. */
  bool skip = job->cancel_seen;
  if (skip) job->start_ns = 0; /* it never ran: no STARTED, and CANCELLED says attempt 0 */
  pthread_mutex_unlock(&s->mu);

  int rc = 0, prc = 0;
  char why[200] = "";
  struct timespec t0 = {0, 0}, t1 = {0, 0}; /* run time: for the adaptive prefetch only */
  if (!skip && (s->hook_mask & GTASK_EV_STARTED)) gtask__hooks_started(s, job);
  if (s->prefetch_auto) clock_gettime(CLOCK_MONOTONIC, &t0);
  if (skip) {
    prc = GTASK_ECANCELED;
  } else if (s->pool == GTASK_POOL_PROCS) {
    prc = gtask__child_run(s, child, job, &rc, why, sizeof(why));
  } else {
    current_ctx = &job->ctx;
    rc = job->handler->fn(&job->ctx, job->task->args, job->task->nargs, job->handler->udata);
    current_ctx = NULL;
  }
  if (s->prefetch_auto) clock_gettime(CLOCK_MONOTONIC, &t1);
  int64_t run_ns = s->hook_mask ? gtask__mono_ns() - job->start_ns : 0;

  /* Claim the outcome under the mutex (the finisher may be timing the job
   * out right now), then encode it outside, then queue it.  Without a
   * deadline nobody else decides a running job: no claim is needed. */
  bool mine = true, cancelled = prc == GTASK_ECANCELED;
  if (job->deadline_mono || atomic_load(&job->ctx.cancelled)) {
    pthread_mutex_lock(&s->mu);
    mine = !job->finalized;
    job->finalized = true;
    cancelled = cancelled || job->cancel_seen;
    pthread_mutex_unlock(&s->mu);
  }
  if (mine) {
    /* Only once the outcome is ours: a job timed out by the finisher is
     * reported by it, with the run time up to the deadline (hooks.c). */
    job->run_ns = run_ns;
    if (cancelled)
      gtask__job_outcome_cancelled(s, job);
    else if (prc == GTASK_ECRASH)
      gtask__job_outcome_crash(s, job, why);
    else if (prc == GTASK_ETASKTIMEOUT ||
             (job->deadline_mono && gtask__mono_ms() >= job->deadline_mono))
      /* A run that ends at or past its deadline timed out, whatever it
       * returns (it may have returned because gtask_ctx_cancelled() said so
       * just before the finisher's timer fired). */
      gtask__job_outcome_timeout(s, job);
    else if (prc == GTASK_ELEASE)
      gtask__job_outcome_fail(s, job, GTASK_ELEASE, "cancelled: the lease was lost");
    else
      gtask__job_outcome_run(s, job, rc);
  }

  pthread_mutex_lock(&s->mu);
  s->nrunning--;
  gtask__server_ran_locked(s, (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
  bool wake_finisher = false;
  if (mine)
    wake_finisher = gtask__server_job_done_locked(s, job) && !gtask__server_finish_inline_locked(s, job);
  else if (prc == 0)
    gtask__log(GTASK_LOG_INFO, "task %s returned after its deadline; its result is discarded",
               job->msg->id);
  gtask__job_unref_locked(s, job);
  pthread_cond_signal(&s->cv_room);
  if (wake_finisher) {
    /* After unlocking: woken under the mutex, it would only wait for it. */
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->cv_done);
    pthread_mutex_lock(&s->mu);
  }
}

void *gtask__executor_main(void *arg) {
  gtask_server *s = arg;
  gtask__block_sigpipe();
  gtask__child child = {.pid = 0, .req = -1, .res = -1}; /* process pool only */
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->ready_head && !s->stopping && !s->fetch_free) {
      s->nidle_exec++;
      pthread_cond_wait(&s->cv_ready, &s->mu);
      s->nidle_exec--;
      if (s->nwoken_exec) s->nwoken_exec--;
    }
    gtask_job *job;
    if (s->fetch_free && !s->stopping) {
      /* The fetch role before the READY list: whoever gave it up is running
       * a job on the promise that an idle thread would take it. */
      s->fetch_free = false;
      s->fetching = true;
      pthread_mutex_unlock(&s->mu);
      job = gtask__server_fetch(s);
      pthread_mutex_lock(&s->mu);
      if (!job) break; /* stopping: the role is given up, and this thread ends */
    } else {
      job = s->ready_head;
      if (!job) break; /* stopping, and nothing left to run */
      s->ready_head = job->next;
      if (!s->ready_head) s->ready_tail = NULL;
      job->next = NULL;
      s->nready--;
      gtask__job_start_locked(s, job);
    }
    run_job(s, job, &child);
  }
  pthread_mutex_unlock(&s->mu);
  gtask__child_stop(&child);
  return NULL;
}
