/* server.c -- a worker server: registration, the fetch role, and running and
 * stopping (see worker.h for a job's life).
 *
 *  - The fetcher leases batches (one blocking round trip for up to `prefetch`
 *    tasks), recovers expired leases of dead workers (reclaim) and moves due
 *    retries into their queue (promote).  It is a role that n + 1 pool
 *    threads take in turn (worker.h).
 *  - n executors run handlers (executor.c); one writes its own outcome when
 *    the worker is otherwise idle, else the finisher does.
 *  - The finisher (finisher.c) writes STARTED marks and outcomes in batches
 *    and fails tasks at their deadline.
 *  - The heartbeat (heartbeat.c) renews the leases of everything in flight.
 *
 * Invariant: every leased delivery is in the in-flight list until its outcome
 * is written, so it is heartbeated until then; if this process dies at any
 * point, the lease expires and another worker's reclaim requeues it. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PREFETCH_MAX 1000                 /* gtask_server_set_prefetch's limit */
#define PAUSE_CHECK_MS 500                /* how often the fetcher asks which queues are paused */
#define PREFETCH_WORK_NS (10 * 1000000LL) /* the adaptive prefetch: see gtask__prefetch_adapt */

/* ---------------------------------------------------------------- setup */

static void set_err(gtask_server *s, const char *fmt, ...) GTASK__PRINTF(2, 3);
static void set_err(gtask_server *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
  va_end(ap);
}

GTASK_EXTERN gtask_server *gtask_server_new(gtask_broker *broker, gtask_backend *backend) {
  if (!broker || !backend) {
    gtask__set_error("gtask_server_new: broker and backend are required");
    return NULL;
  }
  gtask_server *s = gtask__calloc(1, sizeof(*s));
  if (!s) return NULL;
  if (pipe(s->wake_pipe) != 0) {
    gtask__set_error("pipe: %s", strerror(errno));
    gtask__free(s);
    return NULL;
  }
  for (int k = 0; k < 2; k++) {
    fcntl(s->wake_pipe[k], F_SETFL, O_NONBLOCK);
    fcntl(s->wake_pipe[k], F_SETFD, FD_CLOEXEC);
  }
  s->broker = gtask__broker_ref(broker);
  s->backend = gtask__backend_ref(backend);
  s->state = broker->ops->colocated ? broker->ops->colocated(broker->impl, backend) : NULL;
  s->lease_ms = 10000;
  s->max_deliveries = 5;
  s->failed_keep_ms = GTASK_FAILED_RETENTION_DEFAULT;
  s->kill_grace_ms = 1000;
  char host[64] = "host";
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  char id[GTASK_ID_SIZE];
  gtask__uuid(id);
  gtask__fmt(s->name, sizeof(s->name), "%s:%d:%.8s", host, (int)getpid(), id);
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv_ready, &ca);
  pthread_cond_init(&s->cv_room, &ca);
  pthread_cond_init(&s->cv_done, &ca);
  pthread_cond_init(&s->cv_hb, &ca);
  pthread_condattr_destroy(&ca);
  if (gtask_server_set_queues(s, "default") != 0) {
    gtask_server_free(s);
    return NULL;
  }
  return s;
}

GTASK_EXTERN void gtask_server_free(gtask_server *s) {
  if (!s) return;
  gtask__metrics_free(s->metrics); /* first: its HTTP thread reads the server */
  for (size_t k = 0; k < s->nhandlers; k++) gtask__free(s->handlers[k].name);
  gtask__free(s->handlers);
  gtask__free(s->queues_buf);
  gtask__free(s->queues);
  gtask__free(s->order);
  gtask__free(s->weights);
  gtask__free(s->credit);
  gtask__free(s->migrating);
  gtask__free(s->to_start);
  gtask__free(s->to_start_att);
  close(s->wake_pipe[0]);
  close(s->wake_pipe[1]);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv_ready);
  pthread_cond_destroy(&s->cv_room);
  pthread_cond_destroy(&s->cv_done);
  pthread_cond_destroy(&s->cv_hb);
  gtask_broker_free(s->broker);
  gtask_backend_free(s->backend);
  gtask__free(s);
}

GTASK_EXTERN const char *gtask_server_errmsg(const gtask_server *s) { return s ? s->errmsg : ""; }

GTASK_EXTERN int gtask_server_reg(gtask_server *s, const char *name, gtask_handler_fn fn,
                                  void *udata) {
  if (!s || !name || !fn || !name[0] || strlen(name) > 256) {
    if (s) set_err(s, "gtask_server_reg: a name of 1..256 bytes and a function are required");
    return GTASK_EINVAL;
  }
  const char *why = gtask__task_name_check(name);
  if (why) {
    set_err(s, "gtask_server_reg: %s", why);
    return GTASK_EINVAL;
  }
  if (atomic_load(&s->running)) {
    set_err(s, "gtask_server_reg(\"%s\"): the server is running", name);
    return GTASK_ESTATE;
  }
  for (size_t k = 0; k < s->nhandlers; k++)
    if (strcmp(s->handlers[k].name, name) == 0) {
      set_err(s, "gtask_server_reg: \"%s\" is already registered", name);
      return GTASK_EEXIST;
    }
  gtask_handler *h = gtask__realloc(s->handlers, (s->nhandlers + 1) * sizeof(*h));
  if (!h) return GTASK_ENOMEM;
  s->handlers = h;
  char *copy = gtask__strdup(name);
  if (!copy) return GTASK_ENOMEM;
  s->handlers[s->nhandlers++] = (gtask_handler){.name = copy, .fn = fn, .udata = udata};
  return 0;
}

GTASK_EXTERN int gtask_server_set_queues(gtask_server *s, const char *queues) {
  if (!s || !queues) return GTASK_EINVAL;
  if (atomic_load(&s->running)) return GTASK_ESTATE;
  size_t n = 1;
  for (const char *p = queues; *p; p++) n += *p == ',';
  if (n > GTASK__QUEUES_MAX) {
    set_err(s, "%zu queues: at most %d", n, GTASK__QUEUES_MAX);
    return GTASK_EINVAL;
  }
  char *buf = gtask__strdup(queues);
  const char **list = gtask__calloc(n, sizeof(*list));
  const char **order = gtask__calloc(n, sizeof(*order));
  int *weights = gtask__calloc(n, sizeof(*weights));
  int64_t *credit = gtask__calloc(n, sizeof(*credit));
  uint8_t *migrating = gtask__calloc(n, sizeof(*migrating));
  size_t k = 0;
  bool weighted = false;
  int rc = buf && list && order && weights && credit && migrating ? 0 : GTASK_ENOMEM;
  if (rc == 0)
    rc = gtask__queue_list_parse(buf, list, weights, &k, &weighted, s->errmsg, sizeof(s->errmsg));
  if (rc) { /* nothing changed */
    gtask__free(buf);
    gtask__free(list);
    gtask__free(order);
    gtask__free(weights);
    gtask__free(credit);
    gtask__free(migrating);
    return rc;
  }
  gtask__free(s->queues_buf);
  gtask__free(s->queues);
  gtask__free(s->order);
  gtask__free(s->weights);
  gtask__free(s->credit);
  gtask__free(s->migrating);
  s->queues_buf = buf;
  s->queues = list;
  s->order = order;
  s->weights = weights;
  s->credit = credit;
  s->migrating = migrating;
  s->weighted = weighted;
  s->nqueues = k;
  return 0;
}

GTASK_EXTERN int gtask_server_set_strict(gtask_server *s, bool strict) {
  if (!s) return GTASK_EINVAL;
  if (atomic_load(&s->running)) return GTASK_ESTATE;
  s->strict = strict;
  return 0;
}

GTASK_EXTERN int gtask_server_set_lease(gtask_server *s, int64_t ms) {
  if (!s || ms < 300) return GTASK_EINVAL;
  s->lease_ms = ms;
  return 0;
}

GTASK_EXTERN int gtask_server_set_max_deliveries(gtask_server *s, int n) {
  if (!s || n < 1) return GTASK_EINVAL;
  s->max_deliveries = n;
  return 0;
}

GTASK_EXTERN int gtask_server_set_failed_retention(gtask_server *s, int64_t ms) {
  if (!s || ms < 0) return GTASK_EINVAL;
  s->failed_keep_ms = ms;
  return 0;
}

GTASK_EXTERN int gtask_server_set_prefetch(gtask_server *s, int n) {
  if (!s) return GTASK_EINVAL;
  if (n < 1 || n > PREFETCH_MAX) {
    set_err(s, "gtask_server_set_prefetch: %d out of range 1..%d", n, PREFETCH_MAX);
    return GTASK_EINVAL;
  }
  s->prefetch = n;
  return 0;
}

GTASK_EXTERN int gtask_server_set_pool(gtask_server *s, gtask_pool pool) {
  if (!s || (pool != GTASK_POOL_THREADS && pool != GTASK_POOL_PROCS)) return GTASK_EINVAL;
  if (atomic_load(&s->running)) return GTASK_ESTATE;
  s->pool = pool;
  return 0;
}

GTASK_EXTERN int gtask_server_set_child_recycle(gtask_server *s, uint32_t max_tasks,
                                                size_t max_rss_mb) {
  if (!s) return GTASK_EINVAL;
  s->child_max_tasks = max_tasks;
  s->child_max_rss_mb = max_rss_mb;
  return 0;
}

GTASK_EXTERN int gtask_server_set_child_memory_limit(gtask_server *s, size_t mb) {
  if (!s || (mb && mb < 16)) return GTASK_EINVAL;
  s->child_mem_mb = mb;
  return 0;
}

GTASK_EXTERN int gtask_server_set_kill_grace(gtask_server *s, int64_t ms) {
  if (!s || ms < 0 || ms > 600000) return GTASK_EINVAL;
  s->kill_grace_ms = ms;
  return 0;
}

GTASK_EXTERN int gtask_server_set_name(gtask_server *s, const char *name) {
  if (!s || !name || !name[0] || strlen(name) >= sizeof(s->name)) return GTASK_EINVAL;
  gtask__fmt(s->name, sizeof(s->name), "%s", name);
  return 0;
}

GTASK_EXTERN void gtask_server_shutdown(gtask_server *s) {
  if (!s) return;
  /* Async-signal-safe: an atomic store and a write(2). */
  atomic_store(&s->stop_requested, 1);
  int saved = errno;
  ssize_t w = write(s->wake_pipe[1], "x", 1);
  (void)w;
  errno = saved;
}

void gtask__server_fatal(gtask_server *s, int rc, const char *what) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&s->fatal_rc, &expected, rc)) return;
  gtask__fmt(s->fatal_msg, sizeof(s->fatal_msg), "%s: %s%s", what, gtask_last_error(),
             rc == GTASK_ENOPERM && !strstr(gtask_last_error(), "minimal ACL")
                 ? " (grant it: see the minimal ACL in the README)"
                 : "");
  gtask__log(GTASK_LOG_ERROR, "worker %s cannot run: %s; shutting down", s->name, s->fatal_msg);
  gtask_server_shutdown(s);
}

/* ---------------------------------------------------------------- jobs */

void gtask__job_unref_locked(gtask_server *s, gtask_job *job) {
  (void)s;
  if (--job->refs > 0) return;
  gtask_msg_free(job->msg);
  gtask__task_free(job->task);
  gtask__free(job->ctx.values);
  gtask__free(job->ctx.error);
  gtask__free(atomic_load(&job->ctx.progress));
  gtask__free(job->result_buf);
  gtask__free(job->next_buf);
  gtask__free(job->err);
  gtask__free(job);
}

bool gtask__server_job_done_locked(gtask_server *s, gtask_job *job) {
  job->state = GTASK_JOB_DONE;
  job->next = NULL;
  /* The finisher takes the whole list each time it wakes and looks again
   * before it sleeps: only the first job on an empty list needs to wake it. */
  bool was_empty = !s->done_head;
  if (s->done_tail)
    s->done_tail->next = job;
  else
    s->done_head = job;
  s->done_tail = job;
  return was_empty;
}

static void inflight_add_locked(gtask_server *s, gtask_job *job) {
  job->iprev = NULL;
  job->inext = s->inflight;
  if (s->inflight) s->inflight->iprev = job;
  s->inflight = job;
  s->ninflight++;
}

void gtask__inflight_remove_locked(gtask_server *s, gtask_job *job) {
  if (job->iprev)
    job->iprev->inext = job->inext;
  else
    s->inflight = job->inext;
  if (job->inext) job->inext->iprev = job->iprev;
  job->iprev = job->inext = NULL;
  s->ninflight--;
}

static const gtask_handler *find_handler(const gtask_server *s, const char *name) {
  for (size_t k = 0; k < s->nhandlers; k++)
    if (strcmp(s->handlers[k].name, name) == 0) return &s->handlers[k];
  return NULL;
}

/* Makes a job of a freshly leased (or reclaimed) message and decides whether it
 * can run.  Returns NULL on out-of-memory (the message stays leased and comes
 * back through reclaim). */
static gtask_job *job_new(gtask_server *s, gtask_msg *m, bool reclaimed) {
  gtask_job *job = gtask__calloc(1, sizeof(*job));
  if (!job) return NULL;
  job->refs = 1;
  job->msg = m;
  job->reclaimed = reclaimed;
  job->ctx.job = job;
  char err[256] = "";
  int rc = gtask__task_decode_in(m->body, m->len, m->id, m->queue, &job->task, err, sizeof(err));
  if (rc == 0 && !m->id[0]) memcpy(m->id, job->task->id, GTASK_ID_SIZE);
  job->finalized = true; /* unless it goes to READY below */
  if (rc == GTASK_ENOMEM) {
    gtask__job_outcome_handback(s, job);
  } else if (rc) {
    gtask__job_outcome_fail(s, job, GTASK_EPROTO, "malformed message: %s", err[0] ? err : gtask_strerror(rc));
  } else if (reclaimed) {
    gtask__job_outcome_lost(s, job);
  } else if (job->task->expires_ms && gtask__now_ms() > job->task->expires_ms) {
    gtask__job_outcome_fail(s, job, GTASK_ETIMEDOUT,
                            "expired: not run before its message expiry time");
  } else if (!(job->handler = find_handler(s, job->task->name))) {
    gtask__job_outcome_fail(s, job, GTASK_ENOHANDLER, "no handler registered for task \"%s\"",
                            job->task->name);
  } else {
    job->finalized = false;
    job->state = GTASK_JOB_READY;
  }
  return job;
}

/* ---------------------------------------------------------------- fetcher */

void gtask__timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t until_mono) {
  struct timespec ts = {(time_t)(until_mono / 1000), (long)(until_mono % 1000) * 1000000L};
  pthread_cond_timedwait(cv, mu, &ts);
}

/* Queues jobs made from msgs[0..n).  With may_keep, when the worker was idle
 * (READY empty, a thread asleep) a job that can run is not queued but
 * started and returned: the caller, the fetcher, runs it, and the role goes to
 * the sleeping thread, woken here.  That wake-up is off the path from send to
 * handler, and at most `nexec` threads run jobs, since one of the pool's
 * nexec + 1 threads always holds or is about to hold the role.  Only thread
 * pools keep: a process pool's executor owns a child process, and the fetcher
 * must not start one more. */
static gtask_job *accept_msgs(gtask_server *s, gtask_msg **msgs, size_t n, bool reclaimed,
                              bool may_keep) {
  gtask_job *jobs[MAX_BATCH];
  gtask_job *kept = NULL;
  may_keep = may_keep && s->pool == GTASK_POOL_THREADS;
  for (size_t i = 0; i < n;) {
    size_t m = 0;
    for (; i < n && m < MAX_BATCH; i++) {
      gtask_job *job = job_new(s, msgs[i], reclaimed);
      if (!job) {
        gtask__log(GTASK_LOG_ERROR, "out of memory: task %s stays leased until reclaimed", msgs[i]->id);
        gtask_msg_free(msgs[i]);
        continue;
      }
      jobs[m++] = job;
    }
    size_t wake = 0;
    bool wake_finisher = false;
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < m; k++) {
      gtask_job *job = jobs[k];
      inflight_add_locked(s, job);
      if (job->finalized) {
        wake_finisher |= gtask__server_job_done_locked(s, job);
        continue;
      }
      if (may_keep && !kept && !s->nready && s->nidle_exec > s->nwoken_exec && !s->stopping) {
        kept = job;
        gtask__job_start_locked(s, job);
        s->nwoken_exec++; /* the sleeper that takes the role, woken below */
        continue;
      }
      job->next = NULL;
      if (s->ready_tail)
        s->ready_tail->next = job;
      else
        s->ready_head = job;
      s->ready_tail = job;
      s->nready++;
      /* Wake an executor only if one is asleep; busy ones look again. */
      if (s->nidle_exec > s->nwoken_exec) {
        s->nwoken_exec++;
        wake++;
      }
    }
    pthread_mutex_unlock(&s->mu);
    /* Signalled after unlocking, an executor does not wake only to wait for
     * the mutex.  (It looks at the READY list itself, so a signal that comes
     * late wakes it to find the work taken or still there: both are fine.) */
    while (wake--) pthread_cond_signal(&s->cv_ready);
    if (wake_finisher) pthread_cond_signal(&s->cv_done);
  }
  if (kept) {
    /* Only now: the next fetcher leases into the array msgs points to. */
    pthread_mutex_lock(&s->mu);
    s->fetching = false;
    s->fetch_free = true;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->cv_ready);
  }
  return kept;
}

bool gtask__err_migrating(void) { return strstr(gtask_last_error(), "TRYAGAIN") != NULL; }

/* A periodic call's failure on queue q (call: MIGRATING_RECLAIM, ...).  A
 * TRYAGAIN is expected while q's slot is in migration (a reshard): it is
 * noted once, at info level, until the call works again on q, and is not a
 * failure of housekeeping.  True: a failure to report. */
static bool periodic_failed(gtask_server *s, size_t q, uint8_t call, const char *what) {
  if (!gtask__err_migrating()) return true;
  if (!(s->migrating[q] & call))
    gtask__log(GTASK_LOG_INFO, "%s on queue %s: its slot is in migration (%s); retrying quietly "
               "until the move ends", what, s->queues[q], gtask_last_error());
  s->migrating[q] |= call;
  return false;
}

static void housekeeping(gtask_server *s, int64_t *next_promote_mono) {
  gtask_msg *out[64];
  int failed = 0;
  for (size_t q = 0; q < s->nqueues; q++) {
    size_t n = 0;
    int rc = s->broker->ops->reclaim(s->broker->impl, s->name, s->queues[q], s->lease_ms, 64, out, &n);
    if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "reclaim");
    if (rc == 0) s->migrating[q] &= (uint8_t)~MIGRATING_RECLAIM;
    if (rc && periodic_failed(s, q, MIGRATING_RECLAIM, "reclaim") && !s->hk_failing && !failed++)
      gtask__log(GTASK_LOG_WARN, "reclaim on queue %s: %s (will keep trying)", s->queues[q], gtask_last_error());
    if (n) accept_msgs(s, out, n, true, false);
  }
  int64_t earliest = 0;
  for (size_t q = 0; q < s->nqueues; q++) {
    int64_t due = 0;
    int rc = s->broker->ops->promote(s->broker->impl, s->queues[q], 1000, &due);
    if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "promote");
    if (rc == 0) s->migrating[q] &= (uint8_t)~MIGRATING_PROMOTE;
    if (rc && periodic_failed(s, q, MIGRATING_PROMOTE, "promote") && !s->hk_failing && !failed++)
      gtask__log(GTASK_LOG_WARN, "promote on queue %s: %s (will keep trying)", s->queues[q], gtask_last_error());
    if (due && (!earliest || due < earliest)) earliest = due;
  }
  s->hk_failing = failed != 0;
  int64_t now = gtask__mono_ms();
  int64_t period = s->lease_ms / 3;
  *next_promote_mono = now + period;
  if (earliest) {
    int64_t in = earliest - gtask__now_ms();
    if (in < period) *next_promote_mono = now + (in > 0 ? in : 0);
  }
}

/* The default prefetch adapts to how long tasks run.  Its floor is 8 x
 * concurrency (64..1000); while tasks are short it rises towards about
 * PREFETCH_WORK_NS of work per executor, at most PREFETCH_MAX.  A worker of
 * tasks that take microseconds then leases and finishes batches of hundreds
 * (a drain of 100k `add` tasks: 48k -> 61k tasks/s with 16 executors, the
 * Redis time per task falling with the fewer, larger scripts), while one of
 * slow tasks keeps no more than the floor from other workers. */
size_t gtask__prefetch_adapt(size_t floor, int nexec, int64_t run_ns_avg) {
  if (run_ns_avg <= 0) return floor;
  int64_t want = (int64_t)nexec * (PREFETCH_WORK_NS / run_ns_avg);
  if (want > PREFETCH_MAX) want = PREFETCH_MAX;
  return (size_t)want > floor ? (size_t)want : floor;
}

/* An executor ran a handler for ns nanoseconds. */
void gtask__server_ran_locked(gtask_server *s, int64_t ns) {
  if (!s->prefetch_auto) return;
  if (ns < 1) ns = 1;
  /* Moving average over about the last 16 runs. */
  s->run_ns_avg = s->run_ns_avg ? s->run_ns_avg + (ns - s->run_ns_avg) / 16 : ns;
  s->prefetch_limit = gtask__prefetch_adapt((size_t)s->prefetch, s->nexec, s->run_ns_avg);
}

/* How many more tasks the fetcher may lease now.  `prefetch` bounds the tasks
 * that want or hold an executor (READY and RUNNING); tasks whose outcome only
 * waits for the finisher's write do not count, so that the next lease overlaps
 * the finisher's round trip instead of waiting for it (a worker of fast tasks
 * would otherwise alternate between the two).  Those outcomes are bounded too:
 * at most two finisher batches beyond `prefetch` are in flight in all. */
static size_t fetch_room_locked(const gtask_server *s) {
  size_t want = s->prefetch_limit, busy = s->nready + s->nrunning;
  size_t cap = want + 2 * MAX_BATCH;
  if (busy >= want || s->ninflight >= cap) return 0;
  size_t room = want - busy;
  return room < cap - s->ninflight ? room : cap - s->ninflight;
}

/* Which queues to lease from: all but the paused ones, asked of the broker
 * at most every PAUSE_CHECK_MS (the role's own state).  A worker therefore
 * stops leasing from a queue within PAUSE_CHECK_MS of its pause plus one
 * lease's block (capped at PAUSE_CHECK_MS too), and resumes as soon. */
static void check_paused(gtask_server *s, int64_t now) {
  if (!s->broker->ops->paused || now < s->next_pause_mono) return;
  s->next_pause_mono = now + PAUSE_CHECK_MS;
  int rc = s->broker->ops->paused(s->broker->impl, s->queues, s->nqueues, s->paused_buf);
  if (rc) { /* keep the last answer */
    if (!s->pause_failing)
      gtask__log(GTASK_LOG_WARN, "reading paused queues: %s (will keep trying)", gtask_last_error());
    s->pause_failing = true;
    return;
  }
  s->pause_failing = false;
  size_t k = 0;
  for (size_t q = 0; q < s->nqueues; q++) {
    bool was = true;
    for (size_t a = 0; a < s->nactive && was; a++) was = s->active[a] != s->queues[q];
    if (s->paused_buf[q] != was)
      gtask__log(GTASK_LOG_INFO, "queue %s %s", s->queues[q], s->paused_buf[q] ? "paused" : "resumed");
    if (!s->paused_buf[q]) s->active[k++] = s->queues[q];
  }
  s->nactive = k;
}

gtask_job *gtask__server_fetch(gtask_server *s) {
  int64_t period = s->lease_ms / 3;
  /* A lease blocks at most until the next pause check. */
  int64_t block_max = s->broker->ops->paused && period > PAUSE_CHECK_MS ? PAUSE_CHECK_MS : period;
  for (;;) {
    check_paused(s, gtask__mono_ms());
    pthread_mutex_lock(&s->mu);
    int64_t now = gtask__mono_ms();
    /* A retry scheduled by our finisher may be due before our next promote. */
    if (s->next_due_ms) {
      int64_t in = s->next_due_ms - gtask__now_ms();
      int64_t at = now + (in > 0 ? in : 0);
      if (at < s->next_promote_mono) s->next_promote_mono = at;
      s->next_due_ms = 0;
    }
    int64_t house = s->next_reclaim_mono < s->next_promote_mono ? s->next_reclaim_mono : s->next_promote_mono;
    while (!s->stopping && fetch_room_locked(s) == 0 && now < house) {
      gtask__timed_wait(&s->cv_room, &s->mu, house);
      now = gtask__mono_ms();
    }
    if (s->stopping) {
      s->fetching = false;
      pthread_cond_broadcast(&s->cv_room); /* gtask_server_run waits for this */
      pthread_mutex_unlock(&s->mu);
      return NULL;
    }
    size_t room = fetch_room_locked(s);
    int64_t wait = house - now;
    if (wait < 0) wait = 0;
    if (wait > block_max) wait = block_max;
    s->fetch_until_mono = now + wait;
    pthread_mutex_unlock(&s->mu);

    if (now >= house) {
      housekeeping(s, &s->next_promote_mono);
      s->next_reclaim_mono = gtask__mono_ms() + period;
      continue;
    }
    if (room == 0) continue;
    if (s->nactive == 0) { /* every queue paused: wait for the next check */
      pthread_mutex_lock(&s->mu);
      int64_t until = gtask__mono_ms() + wait;
      while (!s->stopping && gtask__mono_ms() < until) gtask__timed_wait(&s->cv_room, &s->mu, until);
      pthread_mutex_unlock(&s->mu);
      continue;
    }

    /* Weighted queues: this lease's order (queue_order.c); else the list's. */
    const char *const *queues = s->active;
    if (s->weighted && !s->strict && s->nactive > 1) {
      gtask__queue_order_next(s->queues, s->weights, s->credit, s->nqueues, s->active, s->nactive,
                              s->order);
      queues = s->order;
    }
    size_t n = 0;
    int rc = s->broker->ops->lease(s->broker->impl, s->name, queues, s->nactive, room, wait,
                                   s->fetch_out, &n);
    if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "fetch");
    if (rc) {
      if (!s->fetch_outage) gtask__log(GTASK_LOG_WARN, "fetch: %s (retrying with backoff)", gtask_last_error());
      s->fetch_outage = true;
      int64_t b = s->fetch_backoff_ms;
      s->fetch_backoff_ms = b ? (b * 2 > 5000 ? 5000 : b * 2) : 100;
      pthread_mutex_lock(&s->mu);
      int64_t until = gtask__mono_ms() + s->fetch_backoff_ms;
      while (!s->stopping && gtask__mono_ms() < until) gtask__timed_wait(&s->cv_room, &s->mu, until);
      pthread_mutex_unlock(&s->mu);
      continue;
    }
    if (s->fetch_outage) gtask__log(GTASK_LOG_INFO, "fetch: working again");
    s->fetch_outage = false;
    s->fetch_backoff_ms = 0;
    /* Only a lease of one task is kept: a batch amortises the hand-off, and
     * leasing on a different thread each time spreads the lease's transient
     * allocations over every thread's malloc arena (a drain's RSS doubled). */
    gtask_job *kept = n ? accept_msgs(s, s->fetch_out, n, false, n == 1) : NULL;
    if (kept) return kept;
  }
}

/* ---------------------------------------------------------------- run, stop */

GTASK_EXTERN int gtask_server_run(gtask_server *s, int n) {
  if (!s) return GTASK_EINVAL;
  if (n < 1 || n > 4096) {
    set_err(s, "gtask_server_run: concurrency %d out of range 1..4096", n);
    return GTASK_EINVAL;
  }
  bool expected = false;
  if (!atomic_compare_exchange_strong(&s->running, &expected, true)) {
    set_err(s, "gtask_server_run: already running");
    return GTASK_ESTATE;
  }
  /* Join the queues, unless workers of an incompatible version serve them.
   * If Redis cannot be reached now, the heartbeat tries again (and stops the
   * worker then, if it must). */
  int arc = gtask__server_announce(s, gtask__now_ms() + s->lease_ms);
  if (arc == GTASK_EVERSION || arc == GTASK_ENOPERM) {
    set_err(s, "%s", gtask_last_error());
    gtask__log(GTASK_LOG_ERROR, "worker %s cannot run: %s", s->name, s->errmsg);
    atomic_store(&s->running, false);
    return arc;
  }
  int saved_prefetch = s->prefetch;
  /* Leasing in batches is what makes a worker fast (one round trip leases
   * and one finishes a whole batch); leased tasks waiting here stay
   * heartbeated and are handed back at shutdown. */
  s->prefetch_auto = s->prefetch == 0;
  if (!s->prefetch) s->prefetch = 8 * n < 64 ? 64 : 8 * n > PREFETCH_MAX ? PREFETCH_MAX : 8 * n;
  s->nexec = n;
  s->started_ms = gtask__now_ms();
  if (gtask__server_record(s, s->started_ms + s->lease_ms) != 0)
    gtask__log(GTASK_LOG_INFO, "worker %s: record not written yet (%s); the heartbeat retries",
               s->name, gtask_last_error());
  s->prefetch_limit = (size_t)s->prefetch;
  s->run_ns_avg = 0;
  s->stopping = false;
  s->executors_done = false;
  s->fetch_free = true;
  s->fetching = false;
  s->nidle_exec = s->nwoken_exec = 0; /* (a previous run ends with both at 0) */
  s->next_reclaim_mono = s->next_promote_mono = 0;
  s->fetch_backoff_ms = 0;
  s->fetch_outage = false;
  s->fetch_out = gtask__calloc(PREFETCH_MAX, sizeof(*s->fetch_out));
  /* Strict priority: the queues by weight, highest first (a plain list is
   * in its own order already); weighted: every credit starts at 0. */
  if (s->strict) gtask__queue_order_strict(s->queues, s->weights, s->nqueues);
  for (size_t q = 0; q < s->nqueues; q++) s->credit[q] = 0;
  s->active = gtask__calloc(s->nqueues, sizeof(*s->active));
  s->paused_buf = gtask__calloc(s->nqueues, sizeof(*s->paused_buf));
  for (size_t q = 0; s->active && q < s->nqueues; q++) s->active[q] = s->queues[q];
  s->nactive = s->nqueues;
  s->next_pause_mono = 0;
  s->pause_failing = false;
  /* n executors and one more thread: the fetch role's (see worker.h). */
  pthread_t *exec = s->fetch_out && s->active && s->paused_buf
                        ? gtask__calloc((size_t)n + 1, sizeof(*exec))
                        : NULL;
  if (!exec) {
    gtask__free(s->fetch_out);
    s->fetch_out = NULL;
    gtask__free(s->active);
    s->active = NULL;
    gtask__free(s->paused_buf);
    s->paused_buf = NULL;
    atomic_store(&s->running, false);
    return GTASK_ENOMEM;
  }
  pthread_t finisher, heart;
  int started = 0, rc = 0;
  s->hb_stop = false;
  bool have_heart = pthread_create(&heart, NULL, gtask__heartbeat_main, s) == 0;
  bool have_finisher = have_heart && pthread_create(&finisher, NULL, gtask__finisher_main, s) == 0;
  for (; have_finisher && started < n + 1; started++)
    if (pthread_create(&exec[started], NULL, gtask__executor_main, s) != 0) break;
  if (started < n + 1) {
    set_err(s, "gtask_server_run: cannot start threads: %s", strerror(errno));
    rc = GTASK_ENOMEM;
  } else {
    gtask__log(GTASK_LOG_INFO, "worker %s: %d %s on %zu queue(s), %s broker%s", s->name, n,
               s->pool == GTASK_POOL_PROCS ? "child processes" : "executor threads", s->nqueues,
               s->broker->ops->name, s->state ? " (atomic finish)" : "");
    /* Block until gtask_server_shutdown() writes to the pipe. */
    while (!atomic_load(&s->stop_requested)) {
      struct pollfd p = {.fd = s->wake_pipe[0], .events = POLLIN};
      poll(&p, 1, 1000);
    }
    gtask__log(GTASK_LOG_INFO, "worker %s: shutting down", s->name);
  }

  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  pthread_cond_broadcast(&s->cv_room);
  pthread_mutex_unlock(&s->mu);
  /* Wait for the fetcher to give up its role: then nothing more is leased. */
  if (s->broker->ops->interrupt(s->broker->impl, s->name) != 0)
    gtask__log(GTASK_LOG_WARN,
               "worker %s: cannot interrupt the blocked lease (%s): shutdown waits for it to "
               "time out (up to %lld ms)",
               s->name, gtask_last_error(), (long long)(s->lease_ms / 3));
  pthread_mutex_lock(&s->mu);
  while (s->fetching) pthread_cond_wait(&s->cv_room, &s->mu);
  pthread_mutex_unlock(&s->mu);
  /* Hand back what was leased but not started, then let running tasks end. */
  pthread_mutex_lock(&s->mu);
  size_t handed = 0;
  for (gtask_job *j = s->ready_head, *next; j; j = next) {
    next = j->next;
    j->finalized = true;
    gtask__job_outcome_handback(s, j);
    if (gtask__server_job_done_locked(s, j)) pthread_cond_signal(&s->cv_done);
    handed++;
  }
  s->ready_head = s->ready_tail = NULL;
  s->nready = 0;
  pthread_cond_broadcast(&s->cv_ready);
  pthread_mutex_unlock(&s->mu);
  if (handed) gtask__log(GTASK_LOG_INFO, "worker %s: handing back %zu unstarted task(s)", s->name, handed);
  for (int k = 0; k < started; k++) pthread_join(exec[k], NULL);
  pthread_mutex_lock(&s->mu);
  s->executors_done = true;
  pthread_cond_broadcast(&s->cv_done);
  pthread_mutex_unlock(&s->mu);
  if (have_finisher) pthread_join(finisher, NULL);
  /* Only now: the finisher may have retried outcomes until here, their
   * tasks leased. */
  pthread_mutex_lock(&s->mu);
  s->hb_stop = true;
  pthread_cond_signal(&s->cv_hb);
  pthread_mutex_unlock(&s->mu);
  if (have_heart) pthread_join(heart, NULL);
  gtask__free(exec);
  gtask__free(s->fetch_out);
  s->fetch_out = NULL;
  gtask__free(s->active);
  s->active = NULL;
  gtask__free(s->paused_buf);
  s->paused_buf = NULL;

  if (gtask__server_record(s, 0) != 0)
    gtask__log(GTASK_LOG_INFO, "worker %s: record not removed (%s); it expires by itself",
               s->name, gtask_last_error());
  if (gtask__server_announce(s, 0) != 0)
    gtask__log(GTASK_LOG_INFO, "worker %s: not unregistered (%s); its entry expires by itself",
               s->name, gtask_last_error());
  /* Anything still in flight could not be written: it stays leased in the
   * broker and is reclaimed by another worker.  Free our copies. */
  pthread_mutex_lock(&s->mu);
  while (s->inflight) {
    gtask_job *j = s->inflight;
    gtask__inflight_remove_locked(s, j);
    j->refs = 1;
    gtask__job_unref_locked(s, j);
  }
  s->done_head = s->done_tail = NULL;
  pthread_mutex_unlock(&s->mu);

  char drain[64];
  while (read(s->wake_pipe[0], drain, sizeof(drain)) > 0) {
  }
  atomic_store(&s->stop_requested, 0);
  s->prefetch = saved_prefetch;
  gtask__log(GTASK_LOG_INFO, "worker %s: stopped (%llu succeeded, %llu failed, %llu retried)", s->name,
             (unsigned long long)s->finished, (unsigned long long)s->failed,
             (unsigned long long)s->retried);
  int fatal = atomic_exchange(&s->fatal_rc, 0);
  if (fatal && rc == 0) {
    set_err(s, "%s", s->fatal_msg);
    rc = fatal;
  }
  atomic_store(&s->running, false);
  return rc;
}

/* For gtask_client_from_server (client.c). */
gtask_broker *gtask__server_broker(gtask_server *s) { return s->broker; }
gtask_backend *gtask__server_backend(gtask_server *s) { return s->backend; }

GTASK_EXTERN int gtask_server_get_counts(gtask_server *s, gtask_server_counts *out) {
  if (!s || !out) return GTASK_EINVAL;
  pthread_mutex_lock(&s->mu);
  out->succeeded = s->finished;
  out->failed = s->failed;
  out->retried = s->retried;
  out->in_flight = s->ninflight;
  pthread_mutex_unlock(&s->mu);
  return 0;
}
