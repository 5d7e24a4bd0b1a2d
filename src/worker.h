/* worker.h -- the private structures of a worker server, shared by server.c
 * (fetching, finishing, lifecycle), executor.c (running handlers, deciding
 * outcomes) and procpool.c (the process pool's children).
 *
 * A delivery becomes a job.  Its life:
 *   fetcher: lease -> decode -> READY list (or straight to the DONE list when it
 *            cannot run: malformed, unknown name, expired, reclaimed from a dead
 *            worker)
 *   executor: READY -> RUNNING -> handler -> outcome -> DONE list
 * The fetcher is not a thread of its own but a role: the pool has one thread
 * more than its concurrency, and whichever holds the role leases.  When a lease
 * brings one task to an idle worker, the fetcher keeps the job, gives the role
 * to an idle thread and runs the job itself: no thread wake-up stands between a
 * send and its handler (see accept_msgs in server.c).
 *   finisher: DONE list -> one broker/backend round trip for a whole batch -> freed
 *   heartbeat (a thread of its own): renews the lease of every job in flight
 * A job that passes its deadline while RUNNING is finished by the finisher at the
 * deadline (job->finalized); the executor discards what the handler returns late.
 * Jobs are reference-counted under the server mutex because that job can be held
 * by its executor and by the DONE list at the same time. */
#ifndef GTASK_WORKER_H
#define GTASK_WORKER_H

#include "internal.h"

#include <pthread.h>
#include <sys/types.h>

/* The most jobs the fetcher accepts, or the finisher writes, in one step. */
#define MAX_BATCH 256
/* The periodic calls whose TRYAGAIN (a slot in migration) is logged once per
 * queue and migration (gtask_server.migrating). */
#define MIGRATING_RECLAIM 1u
#define MIGRATING_PROMOTE 2u

typedef struct gtask_job gtask_job;
typedef struct gtask_handler gtask_handler;

typedef struct gtask__metrics gtask__metrics;

/* A lifecycle callback (gtask_server_on). */
#define GTASK__MAX_HOOKS 16
typedef struct gtask__hook {
  unsigned mask;
  gtask_event_fn fn;
  void *udata;
} gtask__hook;

struct gtask_handler {
  char *name;
  gtask_handler_fn fn;
  void *udata;
};

struct gtask_ctx {
  gtask_job *job;
  atomic_bool cancelled;
  int64_t deadline_ms;   /* realtime ms, 0: none */
  gtask_value *values;   /* set by gtask_ctx_return (one allocation) */
  size_t nvalues;
  bool returned;
  char *error;           /* set by gtask_ctx_fail / gtask_ctx_retry */
  bool want_retry;
  _Atomic(char *) progress; /* the latest gtask_ctx_progress report not yet written
                               ("DONE TOTAL MESSAGE"), or NULL: the handler swaps a
                               new one in, the finisher takes it (issue 18) */
};

/* A prefork child of the process pool (procpool.c), owned by one executor. */
typedef struct gtask__child {
  pid_t pid;        /* 0: none running */
  int req, res;     /* request (write) and reply (read) pipe ends */
  uint32_t ntasks;  /* tasks run, for recycling */
} gtask__child;

typedef enum gtask_job_state { GTASK_JOB_READY, GTASK_JOB_RUNNING, GTASK_JOB_DONE } gtask_job_state;

struct gtask_job {
  gtask_job *next;               /* READY or DONE list */
  gtask_job *iprev, *inext;      /* in-flight list: every leased job not yet finished */
  int refs;                      /* under the server mutex */
  gtask_job_state state;
  bool finalized;                /* the outcome is decided; late results are discarded */
  bool lease_lost;               /* a heartbeat found the lease taken over */
  bool reclaimed;                /* leased from a lost worker (may have its marks) */
  bool marked;                   /* its STARTED mark was (being) written */
  bool write_failed;             /* [finisher] a write of its outcome failed: it
                                    goes last in the next batch, after the others */
  bool cancel_seen;              /* [mu] its task was found final while held: cancelled
                                    (issue 18); ctx.cancelled is set too */
  gtask_msg *msg;                /* the delivery (owns queue, body, lease) */
  gtask_task *task;              /* decoded message; NULL if malformed */
  const gtask_handler *handler;  /* NULL if unknown */
  int64_t deadline_mono;         /* monotonic ms, 0: none */
  gtask_ctx ctx;
  gtask_fin fin;                 /* the outcome to write */
  char *result_buf;              /* owned storage behind fin.result */
  char *next_buf;                /* owned storage behind fin.next */
  int64_t run_since_ms;          /* unix ms when its run started (the worker record) */
  /* For the lifecycle hooks (hooks.c), set only when a hook is registered: */
  int64_t start_ns;              /* monotonic ns when its run started, 0: not run */
  int64_t run_ns;                /* how long the handler ran, 0: not (yet) known */
  int64_t wait_ms;               /* sent to started, ms */
  char *err;                     /* the outcome's error message (any failure), or NULL */
  int err_code;                  /* its GTASK_E* code, else 0 */
};

/* Who may touch each field, in four groups:
 *  [config]  set by the application before gtask_server_run (the setters
 *            refuse, or must not be called, while it runs); read-only while
 *            it runs, so read without a lock.
 *  [run]     set by gtask_server_run before it starts the threads, read-only
 *            until they are joined.
 *  [mu]      guarded by mu (functions named *_locked expect it held).
 *  [role]    owned by the thread that holds the fetch role (fetching, under
 *            mu, says who): only one thread at a time touches them, and the
 *            hand-off goes through mu.
 *  [finisher] the finisher thread's own.
 *  [heartbeat] the heartbeat thread's own.
 * The rest says how it is shared itself. */
struct gtask_server {
  gtask_broker *broker;       /* [config] a reference of the server's own */
  gtask_backend *backend;     /* [config] likewise */
  void *state;                /* [config] broker->ops->colocated(...): the backend the
                                 broker can write, or NULL */
  char errmsg[256];           /* the application's thread: setters and run */
  char name[160];             /* [config] consumer name */
  char *queues_buf;           /* [config] */
  const char **queues;        /* [config] */
  size_t nqueues;             /* [config] */
  int *weights;               /* [config] per queue (1 each in a plain list) */
  bool weighted;              /* [config] the list gave weights: the order changes per lease */
  bool strict;                /* [config] gtask_server_set_strict: highest weight first, always */
  int64_t *credit;            /* [config] the array (nqueues); [role] weighted round robin's
                                 credit per queue (queue_order.c) */
  const char **order;         /* [config] the array (nqueues); [role] this lease's order */
  int64_t lease_ms;           /* [config] */
  int max_deliveries;         /* [config] */
  int64_t failed_keep_ms;     /* [config] how long a failed task's message is kept
                                 for gtask_client_rerun (0: not kept) */
  int prefetch;               /* [config] set by the user, else 0 until run: see prefetch_limit */
  bool prefetch_auto;         /* [run] not set by the user -- the limit adapts */
  int nexec;                  /* [run] executors */
  int64_t started_ms;         /* [run] unix ms when gtask_server_run started */
  size_t prefetch_limit;      /* [mu] what bounds READY + RUNNING now (fetch_room_locked) */
  int64_t run_ns_avg;         /* [mu] moving average of handler run times, ns (0: none yet) */
  gtask_pool pool;            /* [config] threads or processes */
  uint32_t child_max_tasks;   /* [config] procs: recycle a child after this many tasks (0: never) */
  size_t child_max_rss_mb;    /* [config] procs: recycle a child at this RSS (0: never) */
  size_t child_mem_mb;        /* [config] procs: RLIMIT_AS of a child (0: none) */
  int64_t kill_grace_ms;      /* [config] procs: SIGTERM to SIGKILL at a deadline */
  gtask_handler *handlers;    /* [config] */
  size_t nhandlers;           /* [config] */
  gtask__hook hooks[GTASK__MAX_HOOKS]; /* [config] gtask_server_on (hooks.c) */
  size_t nhooks;              /* [config] */
  unsigned hook_mask;         /* [config] the OR of the hooks' masks: 0 costs nothing */
  gtask__metrics *metrics;    /* [config] Prometheus metrics (metrics.c), or NULL */

  /* Shutdown: the signal-safe half (flag + pipe) and the orderly half. */
  atomic_int stop_requested;  /* atomic; set from any thread or a signal handler */
  int wake_pipe[2];           /* immutable after gtask_server_new */
  atomic_bool running;        /* atomic: gtask_server_run is in progress */

  pthread_mutex_t mu;
  pthread_cond_t cv_ready;    /* executors: READY non-empty or stopping */
  pthread_cond_t cv_room;     /* fetcher: room for more jobs */
  pthread_cond_t cv_done;     /* finisher: DONE non-empty, or a timer */
  pthread_cond_t cv_hb;       /* heartbeat: hb_stop */
  bool hb_stop;               /* [mu] the heartbeat thread ends (after the finisher) */
  gtask_job *ready_head, *ready_tail; /* [mu] */
  gtask_job *done_head, *done_tail;   /* [mu] */
  gtask_job *inflight;        /* [mu] doubly linked, for heartbeats and deadlines */
  size_t nready, nrunning, ninflight; /* [mu] */
  size_t nidle_exec;          /* [mu] executors waiting on cv_ready */
  size_t nwoken_exec;         /* [mu] of those, signalled but not yet running */
  gtask_job **to_start;       /* [mu] running jobs whose STARTED is not yet written (referenced) */
  uint32_t *to_start_att;     /* [mu] */
  size_t nto_start, cap_to_start; /* [mu] */
  int64_t first_start_mono;   /* [mu] when the oldest pending STARTED mark was queued */
  int64_t finisher_wake;      /* [mu] the finisher sleeps until this mono ms; 0: awake
                                 (it rescans deadlines and marks before it sleeps) */
  bool stopping;              /* [mu] no more fetching; READY jobs are handed back */
  int64_t last_write_mono;    /* [mu] when outcomes were last written (finisher or inline) */
  bool inline_writing;        /* [mu] an executor writes its own job's outcome
                                 (gtask__server_finish_inline_locked) */
  bool executors_done;        /* [mu] all executor threads have exited */
  int64_t fetch_until_mono;   /* [mu] the fetcher's current block ends about then */
  /* The fetch role (gtask__server_fetch). */
  bool fetch_free;            /* [mu] nobody holds it: the next pool thread to look takes it */
  bool fetching;              /* [mu] a thread holds it */
  int64_t next_reclaim_mono, next_promote_mono, fetch_backoff_ms; /* [role] */
  bool fetch_outage;          /* [role] the last lease failed (log once per outage) */
  gtask_msg **fetch_out;      /* [run] the array; [role] its PREFETCH_MAX deliveries of one lease */
  bool hk_failing;            /* [role] the last housekeeping failed */
  uint8_t *migrating;         /* [config] the array (nqueues); [role] per queue, the
                                 periodic calls (MIGRATING_*) that met TRYAGAIN
                                 and were logged once: its slot is in migration */
  bool started_migrating;     /* [finisher] a STARTED write met TRYAGAIN (logged once) */
  /* Paused queues (issue 18): the fetcher asks the broker every
   * PAUSE_CHECK_MS and leases from the others only. */
  const char **active;        /* [run] the array (nqueues); [role] the queues not paused */
  size_t nactive;             /* [role] */
  bool *paused_buf;           /* [run] the array (nqueues); [role] the last answer */
  int64_t next_pause_mono;    /* [role] when to ask again (0: at once) */
  bool pause_failing;         /* [role] the last check failed (log once) */
  int64_t next_due_ms;        /* [mu] earliest scheduled retry we know of (realtime), 0 none */
  uint64_t finished, retried, failed; /* [mu] */
  atomic_int fatal_rc;        /* atomic: a permanent error (ENOPERM) stopped the worker;
                                 run returns it */
  char fatal_msg[256];        /* written once, by the thread whose compare-and-swap set
                                 fatal_rc; read by run after the threads are joined */
  bool hb_failing;            /* [heartbeat] the last heartbeat failed (log once per outage) */
  int64_t trimmed_write_mono; /* [mu] the last_write_mono after which the finisher last gave
                                 cached free memory back (malloc_trim, finisher.c) */
};

/* queue_order.c (issue 18: weighted queues) */
#define GTASK__QUEUE_WEIGHT_MAX 1000
#define GTASK__QUEUES_MAX 256
/* Parses buf ("a,b" or "a:6,b:1"; cut in place) into names[] and weights[]
 * (room for as many entries as buf has commas plus one): *weighted says
 * whether weights were given (else each is 1).  GTASK_EINVAL with err set
 * for a bad name or weight, a name listed twice, or weights on some queues
 * only. */
int gtask__queue_list_parse(char *buf, const char **names, int *weights, size_t *n,
                            bool *weighted, char *err, size_t errlen);
/* Sorts names[] (with weights[]) by weight, highest first, stably. */
void gtask__queue_order_strict(const char **names, int *weights, size_t n);
/* This lease's order of active[0..nactive) (pointers into queues[0..nq),
 * nactive <= GTASK__QUEUES_MAX) into order[], by smooth weighted round
 * robin over credit[] (per queue of queues[], updated). */
void gtask__queue_order_next(const char *const *queues, const int *weights, int64_t *credit,
                             size_t nq, const char *const *active, size_t nactive,
                             const char **order);

/* executor.c */
/* A pool thread: runs jobs, and leases while it holds the fetch role. */
void *gtask__executor_main(void *arg);
/* Takes a job off READY (or kept by the fetcher) as RUNNING.  s->mu held. */
void gtask__job_start_locked(gtask_server *s, gtask_job *job);
/* Sets the task context that gtask_ctx_current() returns on this thread. */
void gtask__set_current_ctx(gtask_ctx *ctx);
/* A crashed task: FAILURE with GTASK_ECRASH and why (never retried). */
void gtask__job_outcome_crash(gtask_server *s, gtask_job *job, const char *why);

/* procpool.c */
/* Runs job in child c, spawning it if needed: 0 with *rc as a handler call
 * would return it, or GTASK_ECRASH / GTASK_ETASKTIMEOUT / GTASK_ELEASE with
 * why (see procpool.c). */
int gtask__child_run(gtask_server *s, gtask__child *c, gtask_job *job, int *rc, char *why,
                     size_t whylen);
/* In a process-pool child running ctx's task: sends the progress report
 * value to the supervisor (at most one every 100 ms; the others are dropped)
 * and returns true; false anywhere else. */
bool gtask__child_progress(gtask_ctx *ctx, const char *value);
/* Ends child c: closes its request pipe (which ends its loop), SIGKILLs it if
 * it is still busy a second later, and reaps it. */
void gtask__child_stop(gtask__child *c);

/* executor.c: a job's outcome, into job->fin */
/* Decides job's outcome from how the handler ended and fills job->fin. */
void gtask__job_outcome_run(gtask_server *s, gtask_job *job, int rc);
/* The outcome for a job that cannot run: FAILURE with code and message, or
 * DEAD (malformed). */
void gtask__job_outcome_fail(gtask_server *s, gtask_job *job, int code, const char *fmt, ...)
    GTASK__PRINTF(4, 5);
/* Timed out at its deadline: RETRY or FAILURE ETASKTIMEOUT. */
void gtask__job_outcome_timeout(gtask_server *s, gtask_job *job);
/* Reclaimed from a lost worker: REQUEUE with lost+1, or DEAD past the cap. */
void gtask__job_outcome_lost(gtask_server *s, gtask_job *job);
/* Its outcome cannot be written (why: the store's error): DEAD with why as the
 * message's last error, for a broker-only finish. */
void gtask__job_outcome_unwritable(gtask_server *s, gtask_job *job, const char *why);
/* Cancelled while held (job->cancel_seen): a FAILURE ECANCELED outcome whose
 * write finds the task final (CANCELLED) and records nothing. */
void gtask__job_outcome_cancelled(gtask_server *s, gtask_job *job);
/* Handed back unstarted at shutdown: REQUEUE unchanged. */
void gtask__job_outcome_handback(gtask_server *s, gtask_job *job);

/* finisher.c */
/* The finisher thread (see finisher.c); started by gtask_server_run. */
void *gtask__finisher_main(void *arg);

/* heartbeat.c */
/* The heartbeat thread (see heartbeat.c); started by gtask_server_run, which
 * ends it (hb_stop, cv_hb) once the finisher has ended. */
void *gtask__heartbeat_main(void *arg);
/* Records this worker as live on its queues until until_ms (unix ms; 0:
 * removes it) through the broker's announce(); 0 if it has none. */
int gtask__server_announce(gtask_server *s, int64_t until_ms);
/* worker_record.c: writes s's worker record until until_ms (unix ms; 0:
 * removes it) through the broker's worker_put(); 0 if it has none. */
int gtask__server_record(gtask_server *s, int64_t until_ms);
/* Writes job's outcome on the executor's thread when the worker is otherwise
 * idle (see finisher.c).  False: it waits on the DONE list; wake the finisher. */
bool gtask__server_finish_inline_locked(gtask_server *s, gtask_job *job);
/* Queues a STARTED mark for a job an executor has just taken (the finisher
 * writes it after START_DELAY_MS unless the job is done by then). */
void gtask__server_mark_started_locked(gtask_server *s, gtask_job *job);
/* Something is due at due_mono (a deadline, a STARTED mark): wakes the
 * finisher if it sleeps past it.  Called with s->mu held. */
void gtask__server_finisher_due_locked(gtask_server *s, int64_t due_mono);

/* hooks.c */
/* A job starts running (an executor, s->mu held): notes the times the hooks
 * report.  Only when s->hook_mask is non-zero. */
void gtask__hooks_job_start_locked(gtask_server *s, gtask_job *job);
/* STARTED, on the executor thread, no lock held. */
void gtask__hooks_started(gtask_server *s, gtask_job *job);
/* The events of the outcomes just written for batch[0..n) (fins: as written),
 * no lock held.  Only when s->hook_mask is non-zero. */
void gtask__hooks_settled(gtask_server *s, gtask_job **batch, const gtask_fin *fins, size_t n);

/* metrics.c: stops the /metrics thread and frees m (gtask_server_free). */
void gtask__metrics_free(gtask__metrics *m);

/* server.c */
/* Takes job off the in-flight list.  s->mu held. */
void gtask__inflight_remove_locked(gtask_server *s, gtask_job *job);
/* pthread_cond_timedwait until a CLOCK_MONOTONIC time in ms. */
void gtask__timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t until_mono);
/* Drops a reference to job; the last one frees it.  s->mu held. */
void gtask__job_unref_locked(gtask_server *s, gtask_job *job);
/* A permanent error that the worker cannot run past (rc, e.g. GTASK_ENOPERM;
 * what: the activity, the detail from gtask_last_error()): logs it, records
 * it for gtask_server_run to return, and shuts the worker down.  The first
 * such error wins.  Thread-safe. */
void gtask__server_fatal(gtask_server *s, int rc, const char *what);
/* Whether the last error was a TRYAGAIN: a Redis Cluster slot in migration,
 * expected during a reshard (server.c). */
bool gtask__err_migrating(void);
/* The fetch role: leases and queues jobs until it keeps one to run, having
 * given the role to an idle thread (returns that job, RUNNING), or until the
 * worker stops (returns NULL, the role given up for good). */
gtask_job *gtask__server_fetch(gtask_server *s);
/* Puts a job whose outcome is decided on the DONE list.  True when the
 * finisher must be woken (signal cv_done, best after unlocking). */
bool gtask__server_job_done_locked(gtask_server *s, gtask_job *job);
/* An executor's handler ran for ns nanoseconds (feeds the default prefetch). */
void gtask__server_ran_locked(gtask_server *s, int64_t ns);
/* The default prefetch for a floor, nexec executors and an average handler run
 * time (0: none measured yet). */
size_t gtask__prefetch_adapt(size_t floor, int nexec, int64_t run_ns_avg);

#endif /* GTASK_WORKER_H */
