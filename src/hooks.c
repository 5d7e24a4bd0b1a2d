/* hooks.c -- lifecycle hooks of a worker server (gtask_server_on, issue 20):
 * the callbacks that metrics, logs and tracing hang on, and the events the
 * executors and the finisher report to them.
 *
 * Cost.  Registration happens before gtask_server_run, so the hooks are
 * read-only while it runs and need no lock.  Every call site tests
 * s->hook_mask first: a worker without hooks pays one test per task, and
 * takes no clock reading it would not take anyway.  The times an event
 * carries are noted on the job (start_ns, run_ns, wait_ms) only when some
 * hook is registered.
 *
 * Threads.  STARTED is reported by the executor that runs the task, before
 * the handler; the outcome events by the thread that wrote the outcome
 * (finisher.c settle(), finisher or executor), after the write and before the
 * job's references are dropped -- so the job, its message and its task are
 * alive, and no lock is held: a callback may block the reporting thread but
 * never another thread's lock (gtask.h says what a slow one costs). */
#include "worker.h"

#include <string.h>

GTASK_EXTERN int gtask_server_on(gtask_server *s, unsigned events, gtask_event_fn fn,
                                 void *udata) {
  if (!s || !fn || !(events & GTASK_EV_ALL)) return GTASK_EINVAL;
  if (atomic_load(&s->running)) return GTASK_ESTATE;
  if (s->nhooks == GTASK__MAX_HOOKS) return GTASK_ERANGE;
  s->hooks[s->nhooks++] = (gtask__hook){.mask = events & GTASK_EV_ALL, .fn = fn, .udata = udata};
  s->hook_mask |= events & GTASK_EV_ALL;
  return 0;
}

void gtask__hooks_job_start_locked(gtask_server *s, gtask_job *job) {
  (void)s;
  job->start_ns = gtask__mono_ns();
  int64_t wait = gtask__now_ms() - job->task->created_ms;
  job->wait_ms = wait > 0 ? wait : 0;
}

static void emit(gtask_server *s, gtask_event_type type, const gtask_job *job) {
  if (!(s->hook_mask & type)) return;
  gtask_event ev = {
      .type = type,
      .id = job->msg->id,
      .name = job->task ? job->task->name : "",
      .queue = job->msg->queue ? job->msg->queue : "",
      .worker = s->name,
      .attempt = job->start_ns && job->task ? job->task->attempts + 1 : 0,
      .queue_wait_ms = job->start_ns ? job->wait_ms : 0,
  };
  if (type != GTASK_EV_STARTED && job->start_ns) {
    /* A job the finisher timed out has no run time yet: its handler is still
     * running (or abandoned); it ran until now. */
    ev.run_ns = job->run_ns ? job->run_ns : gtask__mono_ns() - job->start_ns;
  }
  if (type & (GTASK_EV_FAILED | GTASK_EV_RETRIED | GTASK_EV_TIMED_OUT | GTASK_EV_CRASHED)) {
    ev.error = job->err ? job->err : "";
    ev.error_code = job->err_code;
  }
  for (size_t k = 0; k < s->nhooks; k++)
    if (s->hooks[k].mask & type) s->hooks[k].fn(&ev, s->hooks[k].udata);
}

void gtask__hooks_started(gtask_server *s, gtask_job *job) { emit(s, GTASK_EV_STARTED, job); }

void gtask__hooks_settled(gtask_server *s, gtask_job **batch, const gtask_fin *fins, size_t n) {
  for (size_t k = 0; k < n; k++) {
    const gtask_job *job = batch[k];
    const gtask_fin *f = &fins[k];
    if (f->fenced) {
      /* A cancelled task (issue 18) lost nothing: its end is the cancel's. */
      emit(s, job->cancel_seen ? GTASK_EV_CANCELLED : GTASK_EV_LEASE_LOST, job);
      continue;
    }
    if (job->reclaimed) emit(s, GTASK_EV_RECLAIMED, job);
    if (f->kind == GTASK_FIN_REQUEUE) continue; /* reclaimed, or handed back unstarted */
    if (job->err_code == GTASK_ETASKTIMEOUT) emit(s, GTASK_EV_TIMED_OUT, job);
    if (job->err_code == GTASK_ECRASH) emit(s, GTASK_EV_CRASHED, job);
    if (f->kind == GTASK_FIN_RETRY)
      emit(s, GTASK_EV_RETRIED, job);
    else if (f->status == GTASK_SUCCESS)
      emit(s, GTASK_EV_SUCCEEDED, job);
    else
      emit(s, GTASK_EV_FAILED, job);
  }
}
