/* chaos.h -- the chaos test of gtask (issue 3): many tasks through several
 * worker processes while workers, their pool children and redis-server are
 * killed with SIGKILL; then every task is checked.
 *
 * Three programs share this header:
 *   chaos_driver.c  chaos_run(): the whole test, in the calling process
 *   chaos.c         the long form, by hand:  build/tests/chaos/chaos --help
 *   test_chaos.c    the short form, a TEST() run by ctest (label "chaos")
 * and the driver starts tests/chaos/chaos_worker.c as its worker processes.
 *
 * What one run does:
 *  1. starts a private redis-server (tests/support/redis_fixture.h) with
 *     "appendonly yes" and "appendfsync always", so that a kill -9 of Redis
 *     loses no write it acknowledged; with `cluster`, a Redis Cluster of 3
 *     masters and 3 replicas (cluster_fixture.h) with the same settings, and
 *     every client and worker with wait-replicas 1, so that an acknowledged
 *     write also survives a failover (a restart that outlasts the node
 *     timeout promotes the replica);
 *  2. starts `workers` chaos_worker processes on one queue (lease `lease_ms`);
 *     with `procs`, every other one runs its handlers in the process pool;
 *  3. a sender thread sends `tasks` tasks spread over `duration_ms`: batches of
 *     add(a, b) through gtask_client_send_many, and single sends of slowadd
 *     (sleeps 1-8 ms, so that kills land mid-task) and of flakyadd (timeout
 *     300 ms with 3 retries; its first attempt times out or asks for a retry,
 *     so "retried" is never 0).  A send that fails (Redis is down) is retried
 *     with new ids; only ids that a send returned count;
 *  4. a waiter thread waits (gtask_client_wait) for each id in turn and keeps
 *     the result it got, retrying through Redis restarts;
 *  5. meanwhile the main thread is the chaos loop: every ~worker_kill_ms it
 *     kill -9's a random worker and starts a replacement, every
 *     ~child_kill_ms it kill -9's a random child of a process-pool worker, and
 *     every ~redis_restart_ms it kill -9's redis-server and starts it again on
 *     the same port and data (each interval uniform in [0.5, 1.5] x the mean);
 *     a worker that dies on its own is a finding (worker-deaths).  The chaos
 *     stops once every result is in (or duration_ms + settle_ms have passed);
 *  6. after a quiet time of two leases, the workers get SIGTERM and must exit
 *     with status 0 (a clean gtask_server_shutdown);
 *  7. every id is checked against Redis itself (see below) and the figures
 *     are printed:
 *       sent=N finished=N retried=N lost=0 duplicated-final=0 wrong=0 ...
 *
 * The checks, per id that a send returned:
 *  - lost: no final result within the time allowed (the waiter never got one),
 *    or the stored state is not final;
 *  - finished: a final result that is right: SUCCESS whose values are
 *    (a + b, token), with a token that the worker logged for a completed
 *    execution of this very id (so the result belongs to this task and to a
 *    real run), and for flakyadd at least 2 attempts; or FAILURE "crashed: ...
 *    signal 9" -- a pool child we killed takes its task down with it, which
 *    is the documented outcome (crashes are not retried); there can be no more
 *    of those ("crashed") than pool children killed;
 *  - wrong: any other final result (bad value, foreign token, unexpected error);
 *  - duplicated-final: evidence that a final state was written more than once.
 *    Tasks run at least once, not exactly once, so a second *execution* is
 *    allowed (counted as "reran"); a second *final write* is not.  Each
 *    execution returns a fresh random 64-bit token, so two final writes cannot
 *    look alike.  Evidence counted: the notification list n:<id> (one RPUSH per
 *    transition to a final state, docs/PROTOCOL.md section 6) holds other than
 *    exactly one element; or the record in t:<id> at the end differs from that
 *    element or from the result the waiter got the moment the task finished
 *    (the final record was overwritten); or t:<id> no longer holds the final
 *    status the waiter saw;
 *  - leftovers: entries still in the stream, its pending list, the schedule
 *    set or the dead set once everything finished.
 * A run passes when sent == tasks, lost == wrong == duplicated-final == 0,
 * crashed <= child-kills, no leftovers, no worker died on its own, and every
 * worker shut down cleanly.  For each failing id (up to 10) the driver prints
 * what Redis holds about it and the worker's execution log lines: the
 * reproduction.  The seed (printed) fixes the task mix and the chaos schedule,
 * not the timing.
 */
#ifndef GTASK_CHAOS_H
#define GTASK_CHAOS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct chaos_opts {
  uint32_t tasks;           /* tasks to send (>= 1) */
  int workers;              /* worker processes (>= 2) */
  int concurrency;          /* executors per worker */
  int64_t duration_ms;      /* sending is spread over this long; the chaos lasts at least this */
  int64_t settle_ms;        /* extra time allowed for the results (and for chaos to end) */
  int64_t worker_kill_ms;   /* mean time between worker kills; 0: none */
  int64_t child_kill_ms;    /* mean time between pool child kills; 0: none */
  int64_t redis_restart_ms; /* mean time between redis kill -9 + restart; 0: none */
  int64_t lease_ms;         /* the workers' lease */
  bool procs;               /* odd worker slots use the process pool */
  uint64_t seed;            /* task mix and chaos schedule */
  const char *dir;          /* existing directory for logs (worker, execution, driver) */
  const char *worker_path;  /* the chaos_worker binary */
  bool verbose;             /* progress lines while running */
  bool ignore_sigpipe;      /* workers set SIGPIPE to SIG_IGN (chaos_worker --ignore-sigpipe) */
  bool tls;                 /* redis speaks mutual TLS only; everyone connects with rediss:// */
  bool cluster;             /* a Redis Cluster of 3 masters + 3 replicas (redis-cluster://);
                               the restarts kill -9 the master of the queue's slot (issue 17) */
} chaos_opts;

typedef struct chaos_report {
  uint64_t sent;           /* ids returned by send / send_many */
  uint64_t send_errors;    /* send calls that failed (retried with new ids) */
  uint64_t finished;       /* ids with a right final result */
  uint64_t succeeded;      /* ... of which SUCCESS */
  uint64_t crashed;        /* ... of which FAILURE because we killed its pool child */
  uint64_t retried;        /* finished ids that took more than one attempt */
  uint64_t reran;          /* ids whose handler completed more than once */
  uint64_t lost;           /* ids without a final result */
  uint64_t duplicated;     /* ids with evidence of more than one final write */
  uint64_t wrong;          /* ids with a wrong final result */
  uint64_t leftovers;      /* stream + pending + scheduled + dead entries at the end */
  uint64_t worker_kills;   /* kill -9 of a worker process */
  uint64_t child_kills;    /* kill -9 of a process-pool child */
  uint64_t redis_restarts; /* kill -9 + restart of redis-server */
  uint64_t worker_deaths;  /* workers that exited on their own (a finding) */
  uint64_t unclean_exits;  /* workers that did not shut down cleanly at the end */
  int64_t elapsed_ms;      /* the whole run */
  bool aborted;            /* stopped early (fatal setup error or interrupted) */
} chaos_report;

/* The short form's settings (3000 tasks, 2 workers, about 20 s of chaos). */
void chaos_opts_default(chaos_opts *o);

/* Runs the whole test; fills *r.  Returns 0 if every check passed, 1 if not,
 * -1 if it could not run (the reason on stderr).  Prints progress (verbose) and
 * the reproduction of failures on stdout.  Must be called from the main
 * thread (the redis fixture is not thread-safe); starts and reaps its own
 * children only (it never waits for unknown pids).  Interrupt it with
 * chaos_interrupt() (async-signal-safe). */
int chaos_run(const chaos_opts *o, chaos_report *r);
void chaos_interrupt(void);

/* True if r passes (see the header comment). */
bool chaos_passed(const chaos_report *r, const chaos_opts *o);

/* The one-line summary "sent=... elapsed=...". */
void chaos_report_print(FILE *f, const chaos_report *r, const chaos_opts *o);

/* "<dir of this executable>/chaos_worker" into buf; false if not found. */
bool chaos_default_worker_path(char *buf, size_t size);

#endif /* GTASK_CHAOS_H */
