/* server.c -- a worker server: registration, and the three kinds of thread that
 * move tasks through it (see worker.h for a job's life).
 *
 *  - The fetcher leases batches (one blocking round trip for up to `prefetch`
 *    tasks), recovers expired leases of dead workers (reclaim) and moves due
 *    retries into their queue (promote).  It is a role that n + 1 pool
 *    threads take in turn (worker.h).
 *  - n executors run handlers; one writes its own outcome when the worker is
 *    otherwise idle, else the finisher does.
 *  - The finisher writes STARTED marks and outcomes in batches, renews the
 *    leases of everything in flight (heartbeat) and fails tasks at their
 *    deadline.
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

#define MAX_BATCH 256
#define START_DELAY_MS 10
/* For this long after outcomes were last written, the finisher wakes by itself
 * every START_DELAY_MS, so that executors need not wake it for each task's
 * STARTED mark (a context switch per task when tasks come one by one). */
#define LINGER_MS 100
/* The finisher retries a write that failed transiently after a backoff that
 * doubles from WRITE_BACKOFF_FIRST_MS to WRITE_BACKOFF_MAX_MS; once the
 * executors are done (shutdown), it gives up after WRITE_GIVE_UP_MS of
 * failures: those tasks stay leased and another worker runs them again. */
#define WRITE_BACKOFF_FIRST_MS 50
#define WRITE_BACKOFF_MAX_MS 2000
#define WRITE_GIVE_UP_MS 10000
#define PREFETCH_MAX 1000                 /* gtask_server_set_prefetch's limit */
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
  pthread_condattr_destroy(&ca);
  if (gtask_server_set_queues(s, "default") != 0) {
    gtask_server_free(s);
    return NULL;
  }
  return s;
}

GTASK_EXTERN void gtask_server_free(gtask_server *s) {
  if (!s) return;
  for (size_t k = 0; k < s->nhandlers; k++) gtask__free(s->handlers[k].name);
  gtask__free(s->handlers);
  gtask__free(s->queues_buf);
  gtask__free(s->queues);
  gtask__free(s->to_start);
  gtask__free(s->to_start_att);
  close(s->wake_pipe[0]);
  close(s->wake_pipe[1]);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv_ready);
  pthread_cond_destroy(&s->cv_room);
  pthread_cond_destroy(&s->cv_done);
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
  char *buf = gtask__strdup(queues);
  if (!buf) return GTASK_ENOMEM;
  size_t n = 1;
  for (const char *p = buf; *p; p++) n += *p == ',';
  const char **list = gtask__calloc(n, sizeof(*list));
  if (!list) {
    gtask__free(buf);
    return GTASK_ENOMEM;
  }
  size_t k = 0;
  for (char *p = buf;;) {
    char *comma = strchr(p, ',');
    if (comma) *comma = '\0';
    if (!gtask__queue_valid(p)) {
      set_err(s, "invalid queue name \"%s\" (1..128 of A-Z a-z 0-9 _ . : -)", p);
      gtask__free(buf);
      gtask__free(list);
      return GTASK_EINVAL;
    }
    list[k++] = p;
    if (!comma) break;
    p = comma + 1;
  }
  gtask__free(s->queues_buf);
  gtask__free(s->queues);
  s->queues_buf = buf;
  s->queues = list;
  s->nqueues = k;
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
  gtask__msg_free(job->msg);
  gtask__task_free(job->task);
  gtask__free(job->ctx.values);
  gtask__free(job->ctx.error);
  gtask__free(job->result_buf);
  gtask__free(job->next_buf);
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

void gtask__server_finisher_due_locked(gtask_server *s, int64_t due_mono) {
  /* Awake, it looks at every deadline and mark before it sleeps again. */
  if (s->finisher_wake && due_mono < s->finisher_wake) pthread_cond_signal(&s->cv_done);
}

static void inflight_add_locked(gtask_server *s, gtask_job *job) {
  job->iprev = NULL;
  job->inext = s->inflight;
  if (s->inflight) s->inflight->iprev = job;
  s->inflight = job;
  s->ninflight++;
}

static void inflight_remove_locked(gtask_server *s, gtask_job *job) {
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

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t until_mono) {
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
        gtask__msg_free(msgs[i]);
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

static void housekeeping(gtask_server *s, int64_t *next_promote_mono) {
  gtask_msg *out[64];
  int failed = 0;
  for (size_t q = 0; q < s->nqueues; q++) {
    size_t n = 0;
    int rc = s->broker->ops->reclaim(s->broker->impl, s->name, s->queues[q], s->lease_ms, 64, out, &n);
    if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "reclaim");
    if (rc && !s->hk_failing && !failed++)
      gtask__log(GTASK_LOG_WARN, "reclaim on queue %s: %s (will keep trying)", s->queues[q], gtask_last_error());
    if (n) accept_msgs(s, out, n, true, false);
  }
  int64_t earliest = 0;
  for (size_t q = 0; q < s->nqueues; q++) {
    int64_t due = 0;
    int rc = s->broker->ops->promote(s->broker->impl, s->queues[q], 1000, &due);
    if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "promote");
    if (rc && !s->hk_failing && !failed++)
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

gtask_job *gtask__server_fetch(gtask_server *s) {
  int64_t period = s->lease_ms / 3;
  for (;;) {
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
      timed_wait(&s->cv_room, &s->mu, house);
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
    if (wait > period) wait = period;
    s->fetch_until_mono = now + wait;
    pthread_mutex_unlock(&s->mu);

    if (now >= house) {
      housekeeping(s, &s->next_promote_mono);
      s->next_reclaim_mono = gtask__mono_ms() + period;
      continue;
    }
    if (room == 0) continue;

    size_t n = 0;
    int rc = s->broker->ops->lease(s->broker->impl, s->name, s->queues, s->nqueues, room, wait,
                                   s->fetch_out, &n);
    if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "fetch");
    if (rc) {
      if (!s->fetch_outage) gtask__log(GTASK_LOG_WARN, "fetch: %s (retrying with backoff)", gtask_last_error());
      s->fetch_outage = true;
      int64_t b = s->fetch_backoff_ms;
      s->fetch_backoff_ms = b ? (b * 2 > 5000 ? 5000 : b * 2) : 100;
      pthread_mutex_lock(&s->mu);
      int64_t until = gtask__mono_ms() + s->fetch_backoff_ms;
      while (!s->stopping && gtask__mono_ms() < until) timed_wait(&s->cv_room, &s->mu, until);
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

/* ---------------------------------------------------------------- finisher */

/* Writes the outcomes of jobs[0..n).  Returns 0 when every job is settled
 * (written or fenced), else an error and nothing is to be considered written. */
static int write_outcomes(gtask_server *s, gtask_job **jobs, size_t n, gtask_fin *fins) {
  for (size_t k = 0; k < n; k++) {
    const gtask_job *j = jobs[k];
    fins[k] = j->fin;
    fins[k].msg = j->msg;
    fins[k].fenced = false;
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
        fins[k].fenced = true;
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
        live[k].fenced = false;
      }
    rc = s->broker->ops->finish(s->broker->impl, s->name, live, m, NULL);
    for (size_t k = 0; k < m; k++) fins[map[k]].fenced = live[k].fenced;
  }
  return rc;
}

/* Ends the jobs whose outcomes write_outcomes() has just written: counts them,
 * takes them off the in-flight list, drops their lifecycle reference, and
 * tells the fetcher about a retry due before its next promote. */
static void settle(gtask_server *s, gtask_job **batch, const gtask_fin *fins, size_t n) {
  int64_t earliest_retry = 0;
  for (size_t k = 0; k < n; k++) {
    if (fins[k].fenced)
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
    inflight_remove_locked(s, batch[k]);
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
        inflight_remove_locked(s, j);
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

/* Records this worker as live on its queues until until_ms (0: removes it). */
static int announce(gtask_server *s, int64_t until_ms) {
  if (!s->broker->ops->announce) return 0;
  return s->broker->ops->announce(s->broker->impl, s->name, s->queues, s->nqueues, until_ms);
}

static void heartbeat(gtask_server *s) {
  pthread_mutex_lock(&s->mu);
  size_t n = 0, cap = s->ninflight;
  gtask_job **jobs = cap ? gtask__malloc(cap * sizeof(*jobs)) : NULL;
  gtask_msg **msgs = cap ? gtask__malloc(cap * sizeof(*msgs)) : NULL;
  bool *lost = cap ? gtask__calloc(cap, sizeof(*lost)) : NULL;
  if (cap && (!jobs || !msgs || !lost)) {
    pthread_mutex_unlock(&s->mu);
    gtask__free(jobs), gtask__free(msgs), gtask__free(lost);
    return;
  }
  for (gtask_job *j = s->inflight; j && n < cap; j = j->inext) {
    j->refs++;
    jobs[n] = j;
    msgs[n++] = j->msg;
  }
  pthread_mutex_unlock(&s->mu);
  int rc = 0;
  for (size_t off = 0; off < n && rc == 0; off += MAX_BATCH) {
    size_t m = n - off < MAX_BATCH ? n - off : MAX_BATCH;
    rc = s->broker->ops->extend(s->broker->impl, s->name, msgs + off, m, lost + off);
  }
  /* One line per outage, not one per heartbeat. */
  if (rc == GTASK_ENOPERM) gtask__server_fatal(s, rc, "heartbeat");
  int arc = announce(s, gtask__now_ms() + s->lease_ms);
  if (arc == GTASK_EVERSION || arc == GTASK_ENOPERM) gtask__server_fatal(s, arc, "announcing the worker");
  if (rc && !s->hb_failing) gtask__log(GTASK_LOG_WARN, "heartbeat: %s (will keep trying)", gtask_last_error());
  if (!rc && s->hb_failing) gtask__log(GTASK_LOG_INFO, "heartbeat: working again");
  s->hb_failing = rc != 0;
  pthread_mutex_lock(&s->mu);
  for (size_t k = 0; k < n; k++) {
    /* A job done since the snapshot may have had its outcome written (and
     * its lease released) by an executor meanwhile: extend then finds the
     * entry gone, which is no takeover.  A done job has nothing to cancel;
     * if its lease was really lost, its write is fenced and says so. */
    if (rc == 0 && lost[k] && !jobs[k]->lease_lost && jobs[k]->state != GTASK_JOB_DONE &&
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
}

static void *finisher_main(void *arg) {
  gtask_server *s = arg;
  gtask__block_sigpipe();
  int64_t period = s->lease_ms / 3;
  int64_t next_hb = gtask__mono_ms() + period;
  int64_t backoff = 0, failing_since = 0;
  gtask_job *batch[MAX_BATCH];
  gtask_fin fins[MAX_BATCH];
  gtask_job **start = NULL;
  uint32_t *start_att = NULL;

  pthread_mutex_lock(&s->mu);
  for (;;) {
    /* Wait for work: outcomes, STARTED marks, a deadline, or the heartbeat. */
    int64_t now = gtask__mono_ms();
    int64_t wake = next_hb;
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
    /* STARTED marks alone wait up to START_DELAY_MS: most tasks finish by then
     * and need none (their final state supersedes it), which saves a round
     * trip on the latency path.  Observers see STARTED that much later. */
    bool start_due = s->nto_start && (s->executors_done || now >= s->first_start_mono + START_DELAY_MS);
    if (!s->done_head && !start_due && now < next_hb && ntimed == 0) {
      if (s->nto_start && s->first_start_mono + START_DELAY_MS < wake)
        wake = s->first_start_mono + START_DELAY_MS;
      if (now - s->last_write_mono < LINGER_MS && now + START_DELAY_MS < wake)
        wake = now + START_DELAY_MS;
      s->finisher_wake = wake;
      timed_wait(&s->cv_done, &s->mu, wake);
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

    for (size_t k = 0; k < n; k++)
      if (batch[k]->fin.kind == 0) gtask__job_outcome_timeout(s, batch[k]);

    if (nstart) {
      gtask_msg **msgs = (gtask_msg **)gtask__malloc(nstart * sizeof(*msgs));
      if (msgs) {
        for (size_t k = 0; k < nstart; k++) msgs[k] = start[k]->msg;
        int rc = s->backend->ops->started(s->backend->impl, msgs, start_att, nstart);
        if (rc) gtask__log(GTASK_LOG_WARN, "recording STARTED: %s", gtask_last_error());
        gtask__free(msgs);
      }
    }
    int rc = n ? write_outcomes(s, batch, n, fins) : 0;
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
          inflight_remove_locked(s, batch[k]);
          gtask__job_unref_locked(s, batch[k]);
        }
      } else {
        /* Put the batch back in front, in order, and wait before retrying. */
        for (size_t k = n; k-- > 0;) {
          batch[k]->next = s->done_head;
          s->done_head = batch[k];
          if (!s->done_tail) s->done_tail = batch[k];
        }
        backoff = backoff ? (backoff * 2 > WRITE_BACKOFF_MAX_MS ? WRITE_BACKOFF_MAX_MS : backoff * 2)
                          : WRITE_BACKOFF_FIRST_MS;
        int64_t until = gtask__mono_ms() + backoff;
        timed_wait(&s->cv_room, &s->mu, until); /* nobody signals cv_room for us: a sleep */
      }
      pthread_mutex_unlock(&s->mu);
    } else if (n) {
      if (failing_since) gtask__log(GTASK_LOG_INFO, "writing results: working again");
      failing_since = 0;
      backoff = 0;
      settle(s, batch, fins, n);
    }

    if (gtask__mono_ms() >= next_hb) {
      heartbeat(s);
      next_hb = gtask__mono_ms() + period;
    }
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
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
  int arc = announce(s, gtask__now_ms() + s->lease_ms);
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
  /* n executors and one more thread: the fetch role's (see worker.h). */
  pthread_t *exec = s->fetch_out ? gtask__calloc((size_t)n + 1, sizeof(*exec)) : NULL;
  if (!exec) {
    gtask__free(s->fetch_out);
    s->fetch_out = NULL;
    atomic_store(&s->running, false);
    return GTASK_ENOMEM;
  }
  pthread_t finisher;
  int started = 0, rc = 0;
  bool have_finisher = pthread_create(&finisher, NULL, finisher_main, s) == 0;
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
  gtask__free(exec);
  gtask__free(s->fetch_out);
  s->fetch_out = NULL;

  if (announce(s, 0) != 0)
    gtask__log(GTASK_LOG_INFO, "worker %s: not unregistered (%s); its entry expires by itself",
               s->name, gtask_last_error());
  /* Anything still in flight could not be written: it stays leased in the
   * broker and is reclaimed by another worker.  Free our copies. */
  pthread_mutex_lock(&s->mu);
  while (s->inflight) {
    gtask_job *j = s->inflight;
    inflight_remove_locked(s, j);
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
