/* gtask/extend.h -- writing your own broker or backend (issue 21, part 1).
 *
 * gtask.h is the main header; this one adds what an implementation of a
 * broker (where task messages queue) or a backend (where task states and
 * results live) needs: the two operation tables, the values they exchange,
 * and the constructors that wrap a table and an implementation pointer into
 * the gtask_broker / gtask_backend handles that gtask_server_new() and
 * gtask_client_new() take.  The Redis and in-memory implementations that ship
 * with the library are built on the same tables (src/memory/ on this header
 * alone).  The contract suite states every rule below as a test and runs on
 * any implementation: <gtask/contract.h>.  docs/EXTENDING.md is the guide,
 * examples/sqlite_backend an implementation written outside the library.
 *
 * An implementation is a const table of functions plus a void *impl:
 *
 *   static const gtask_broker_ops my_ops = {
 *       .abi = GTASK_EXTEND_ABI, .name = "mine", .push = my_push, ...};
 *   gtask_broker *b;
 *   int rc = gtask_broker_new(&b, &my_ops, my_impl);
 *
 * Conventions for every operation below, unless it says otherwise:
 *  - it returns 0 or a negative GTASK_E* code (gtask.h), with any detail set
 *    for gtask_last_error() by the implementation (it may leave it unset);
 *    GTASK_EINVAL for a NULL where a value is required, GTASK_ENOMEM when an
 *    allocation fails, GTASK_ECONN / GTASK_ETIMEDOUT / GTASK_EINDOUBT for a
 *    store that cannot be reached or whose reply was lost;
 *  - it may be called from several threads at once: the implementation
 *    synchronises;
 *  - it returns without waiting for other callers, except the two operations
 *    that say they block (broker lease, backend wait); any call may wait for
 *    its store's I/O, which the implementation bounds with its own timeouts
 *    (reported as GTASK_ETIMEDOUT or GTASK_ECONN);
 *  - it never takes ownership of its arguments, and keeps no pointer into
 *    them after it returns (strings such as queue and consumer included:
 *    copy what you keep); it writes only the fields documented as "out",
 *    and on failure leaves out-parameters as documented (0 counts, NULL
 *    arrays);
 *  - a batch (an array and its length n) is applied whole or not at all
 *    unless the operation says otherwise; n == 0 is a successful no-op;
 *  - it must not call back into the gtask_broker / gtask_backend handle that
 *    wraps it.
 * The core retries an operation that failed with a transient code
 * (ECONN, ETIMEDOUT, ENOMEM, and EINDOUBT where the call is safe to repeat),
 * so an implementation should report such failures rather than block for
 * ever on them.
 *
 * Memory: every buffer that crosses these tables (messages, their strings,
 * the arrays of dead_list, the result copies of get and wait) is malloc()
 * memory, freed with free() or gtask_msg_free().
 *
 * Wire values: a message body (gtask_msg.body, gtask_fin.next,
 * gtask_revive.next) and a result record (gtask_fin.result, backend get/wait
 * output) are bytes the core encodes and decodes (docs/PROTOCOL.md, the task
 * message and the result record).  An implementation stores them as opaque
 * bytes and gives them back unchanged; they are what other processes and
 * other language clients read.  Everything else in these structs is metadata
 * of one call, marked [wire] where it has a counterpart in the Redis key
 * schema. */
#ifndef GTASK_EXTEND_H
#define GTASK_EXTEND_H

#include "gtask.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the tables below.  Put it in the abi field of your table.
 * When an operation is added at the end of a table, this number grows; the
 * library keeps accepting tables of every older version (the operations they
 * lack count as NULL: it never reads past the end of an older table) and
 * refuses newer ones.  Each operation says the version that added it.
 *   1  the first published tables (gtask 0.1.0)
 *   2  broker msg_ttl_ms: the message lifetime (issue 21); broker queues:
 *      the queue list (issue 17, `gtask stats --all`)
 *   3  broker push_unique, failed_list, failed_requeue, pause, paused;
 *      backend claim (issue 18: unique tasks, the failed set, pause)
 *   4  broker worker_put, worker_list, list, find: seeing inside (issue 20)
 *   5  broker cancel; backend finals, progress, progress_get (issue 18:
 *      cancel, progress); gtask_msg.priority, which a broker of abi 5
 *      honours (the client refuses a priority send to an older table)
 *   6  broker stats fills gtask_queue_stats.cancelled, a field added at the
 *      struct's end: the core zeroes the struct before it calls stats, so a
 *      table of an older version (compiled with the shorter struct) leaves
 *      it 0 */
#define GTASK_EXTEND_ABI 6

/* ---------------------------------------------------------------- messages */

/* A task message as a broker carries it.  Made by gtask_msg_new(), freed by
 * gtask_msg_free(); every pointer in it is owned by it.  The broker treats
 * body as opaque bytes. */
typedef struct gtask_msg {
  char id[GTASK_ID_SIZE]; /* [wire] task id (a UUID in text form) */
  char *queue;            /* [wire] queue name */
  char *body;             /* [wire] the encoded task message, NUL-terminated
                             for convenience (len does not count the NUL) */
  size_t len;             /* body length in bytes */
  char *lease;            /* the broker's token for this delivery, NUL-terminated;
                             NULL until leased.  Set by the broker, with
                             gtask_msg_set_lease() or a malloc()ed string */
  int64_t epoch;          /* the broker's count of lease takeovers in the queue
                             when this lease began (Redis: the fence key); -1
                             unknown.  Informational */
  int64_t due_ms;         /* [wire] push: unix ms when it may run; 0: now
                             (Redis: the scheduled set's score) */
  int priority;           /* [wire] the task's level, 0..GTASK_PRIORITY_MAX
                             (abi 5): push: the level to queue it at (the
                             body's "pr" says the same); lease, reclaim,
                             dead_list, failed_list, list, find: the level it
                             was queued at, set by the broker.  A message
                             comes back at its level from every path (a
                             delay, a retry, a requeue, the dead and failed
                             sets).  0 from gtask_msg_new() */
} gtask_msg;

/* A new message with copies of id (truncated to GTASK_ID_SIZE - 1 bytes),
 * queue and body[0..len), epoch -1, no lease, due now.  NULL body means an
 * empty one.  Returns NULL on out-of-memory; free with gtask_msg_free(). */
GTASK_EXTERN gtask_msg *gtask_msg_new(const char *id, const char *queue, const char *body,
                                      size_t len);
/* Sets m->lease to a copy of lease (NULL clears it), freeing the old one.
 * 0 or GTASK_ENOMEM (m unchanged). */
GTASK_EXTERN int gtask_msg_set_lease(gtask_msg *m, const char *lease);
/* Frees m and everything it owns.  Accepts NULL. */
GTASK_EXTERN void gtask_msg_free(gtask_msg *m);

/* How a delivery ends. */
typedef enum gtask_fin_kind {
  GTASK_FIN_DONE = 1,    /* final: record status (SUCCESS/FAILURE) and result */
  GTASK_FIN_RETRY = 2,   /* record RETRY and result; queue `next` at next_due_ms */
  GTASK_FIN_REQUEUE = 3, /* lost or handed back: queue `next` now, record PENDING */
  GTASK_FIN_DEAD = 4     /* final FAILURE, and keep `next` in the dead set */
} gtask_fin_kind;

/* The end of one delivery, for broker finish() and backend store().  Filled by
 * the core; everything it points to is owned by the caller and valid during
 * the call only. */
typedef struct gtask_fin {
  gtask_msg *msg;          /* the leased delivery being finished (queue, id, lease) */
  gtask_fin_kind kind;     /* what to do */
  gtask_status status;     /* [wire] the state to record (see gtask_fin_kind) */
  const char *result;      /* [wire] encoded result record (DONE, DEAD, RETRY),
                              or NULL; not NUL-terminated */
  size_t result_len;       /* result length in bytes */
  const char *next;        /* [wire] RETRY, REQUEUE, DEAD: the message to keep
                              (a new body, with the attempt counted); not
                              NUL-terminated */
  size_t next_len;         /* next length in bytes */
  int64_t next_due_ms;     /* [wire] RETRY: unix ms when due.  DONE with status
                              FAILURE and next set: keep next in the
                              queue's failed set until then (abi 3; a broker
                              without failed_list ignores it) */
  bool fresh;              /* no state record can exist for the task: a first
                              delivery (attempts and losses 0) that got no
                              STARTED mark.  Its final state needs no removal
                              of an older record, and its hand-back (REQUEUE)
                              may record nothing: the task still reads PENDING
                              as it did when sent.  An optimisation only:
                              ignoring it is correct */
  bool fenced;             /* out: nothing was recorded -- the lease was no longer
                              the caller's (broker: nothing changed), or the task
                              was already final (backend; and a colocated broker
                              then only releases the lease) */
} gtask_fin;

/* A dead message to move back to its queue (broker dead_requeue()). */
typedef struct gtask_revive {
  const gtask_msg *msg; /* as dead_list returned it: queue, id, and the body the
                           dead set holds now (the compare-and-swap's old value) */
  const char *next;     /* [wire] the body to queue (the caller's re-encoded
                           message); not NUL-terminated */
  size_t next_len;      /* next length in bytes */
  bool moved;           /* out: the entry still held msg->body and was moved */
} gtask_revive;

/* A send that must not duplicate a task (broker push_unique(), backend
 * claim(); abi 3): its id must be new, and, with a unique key, no live task
 * may hold that key.  Filled by the core; msg and key are the caller's. */
typedef struct gtask_claim {
  gtask_msg *msg;         /* the message to queue; msg->id is the id to claim */
  const char *unique_key; /* [wire] NULL, or the content key: a hex digest of the
                             task's name and arguments (its queue is msg->queue) */
  int64_t unique_ttl_ms;  /* with a key: > 0 hold it this long; 0 hold it until
                             the task is final (at most the backend's expiry) */
  bool duplicate;         /* out: nothing was queued or recorded for this one:
                             msg->id is a task that exists (queued, running,
                             retrying, or final and kept), or the key is held */
  char existing[GTASK_ID_SIZE]; /* out, when duplicate: that task's id */
} gtask_claim;

/* ---------------------------------------------------------------- broker */

/* The broker interface.  `consumer` names a lease holder: one per server,
 * stable for its life.
 *
 * Colocation -- "broker and backend in one store, finished atomically".  A
 * broker may be able to write a particular backend's records in its own
 * atomic steps (the Redis broker and backend on the same server, database and
 * prefix; the memory broker and backend).  It says so through colocated(),
 * which returns an opaque `state` (typically the backend's impl, found with
 * gtask_backend_impl()); the core then passes that state to push(),
 * finish() and dead_requeue() and skips the separate backend calls
 * (pending(), store(), reset()).  Without colocation the core calls the
 * backend first and the broker second, which is safe but two steps: a crash
 * between them leaves a state that the next delivery corrects.  With it, a
 * task's queue entry and its state never disagree.  A broker that is not
 * colocated with any backend leaves colocated NULL and receives state NULL
 * (it may refuse anything else with GTASK_EINVAL). */
typedef struct gtask_broker_ops {
  int abi;          /* GTASK_EXTEND_ABI when the table was compiled */
  const char *name; /* for logs: "redis", "memory"; required */

  /* Required.  Queues msgs[0..n), each in its own queue (msg->queue), due at
   * its due_ms (0 or past: ready now).  Copies what it keeps.  All or
   * nothing.  If state is non-NULL, each id is also recorded as PENDING in
   * the backend in the same atomic step, as the backend's pending() would. */
  int (*push)(void *impl, gtask_msg *const *msgs, size_t n, void *state);

  /* Required.  Leases up to max messages from queues[0..nq) to consumer,
   * blocking up to wait_ms (< 0: for ever) while all are empty.  Writes new
   * messages, each with its lease token set, to out[0..*n) (out has room for
   * max), never more than max; the caller frees each with gtask_msg_free.  A timeout or interrupt
   * is 0 with *n == 0; nq == 0 or max == 0 is GTASK_EINVAL.  Queues are
   * served in the order given (a priority order); within a queue, a higher
   * priority level first and FIFO within a level (abi 5: msg->priority).  A leased message stays
   * owned by consumer until finish, or until its lease expires and reclaim
   * gives it to another.  Blocks: the one broker operation that waits for
   * others (interrupt() cuts it short). */
  int (*lease)(void *impl, const char *consumer, const char *const *queues, size_t nq,
               size_t max, int64_t wait_ms, gtask_msg **out, size_t *n);

  /* Required.  Makes a lease() of consumer that is blocked in another thread
   * return at once (0, *n == 0); if none is in progress, the next lease() of
   * consumer returns at once instead.  One interrupt is consumed by one
   * lease.  Never blocks; thread-safe, not async-signal-safe. */
  int (*interrupt)(void *impl, const char *consumer);

  /* Required.  Heartbeat: renews the leases of msgs[0..n) held by consumer.
   * lost[i] (out) is set to true for each lease that is no longer held
   * (another consumer took it over), false otherwise. */
  int (*extend)(void *impl, const char *consumer, gtask_msg *const *msgs, size_t n,
                bool *lost);

  /* Required.  Ends deliveries.  For each fin whose lease consumer still
   * holds: releases the lease and, per kind, drops the message (DONE),
   * schedules fin->next at next_due_ms (RETRY), queues it now (REQUEUE) or
   * moves it to the dead set (DEAD).  A fin whose lease is lost is left alone
   * and marked fenced.  If state is non-NULL (colocation), the backend record
   * is written in the same atomic step, as the backend's store() would; a
   * task already final keeps its state, the fin is marked fenced and only its
   * lease is released. */
  int (*finish)(void *impl, const char *consumer, gtask_fin *fins, size_t n, void *state);

  /* Required.  Takes over up to max deliveries in queue whose lease has not
   * been renewed for lease_ms, leasing them to consumer under new tokens, and
   * writes them to out[0..*n) as lease() does; the caller then finishes them
   * (REQUEUE or DEAD).  Any live consumer calls this.  Fencing: after a
   * reclaim, the previous holder's extend reports lost and its finish is
   * fenced. */
  int (*reclaim)(void *impl, const char *consumer, const char *queue, int64_t lease_ms,
                 size_t max, gtask_msg **out, size_t *n);

  /* Required.  Moves up to max scheduled messages of queue whose due time has
   * come into the queue; *next_due_ms (out) receives the earliest remaining
   * due time, or 0 (a time already past means max stopped it: call again). */
  int (*promote)(void *impl, const char *queue, size_t max, int64_t *next_due_ms);

  /* Required.  Counts of queue into *out: pending, active, scheduled, dead,
   * and the finished counters, which finish() increments for each DONE or
   * DEAD fin it applies with a final status (SUCCESS: succeeded, FAILURE:
   * failed), and (abi 6) cancelled, which cancel() increments for each task
   * it cancels.  An unknown queue is all zeros. */
  int (*stats)(void *impl, const char *queue, gtask_queue_stats *out);

  /* Required.  Reads queue's dead set, or only its entry for id when id is
   * non-NULL: a new array *out of *n new messages (id, queue, body; lease
   * NULL), NULL and 0 when empty, each id once.  The caller frees each
   * message with gtask_msg_free and the array with free().  Each entry is as
   * it was when read; the whole is not one snapshot. */
  int (*dead_list)(void *impl, const char *queue, const char *id, gtask_msg ***out, size_t *n);

  /* Required.  Moves dead messages back to their queues, each atomically: for
   * each revive whose dead-set entry still holds exactly msg->body (a
   * compare-and-swap, so a concurrent requeue or purge wins and nothing runs
   * twice), queues `next` to run now, removes the entry and sets moved.  If
   * state is non-NULL (colocation), each moved task's record is reset to
   * PENDING in the same atomic step, as the backend's reset() does. */
  int (*dead_requeue)(void *impl, gtask_revive *rs, size_t n, void *state);

  /* Required.  Empties queue's dead set atomically; *removed (out) receives
   * how many entries it held. */
  int (*dead_purge)(void *impl, const char *queue, size_t *removed);

  /* Optional (NULL: nothing to record).  Records consumer as a live worker of
   * queues[0..nq) until until_ms (unix ms; a worker calls it again, with a
   * later time, on each heartbeat), or, with until_ms == 0, removes it.
   * Refuses -- GTASK_EVERSION, changing nothing, the detail in
   * gtask_last_error() -- when a live worker whose protocol cannot be mixed
   * with this broker's serves one of the queues. */
  int (*announce)(void *impl, const char *consumer, const char *const *queues, size_t nq,
                  int64_t until_ms);

  /* Optional (NULL: never colocated).  If this broker can write backend's
   * records in its own atomic steps, returns the non-NULL state to pass to
   * push, finish and dead_requeue; else NULL.  Called once per server or
   * client; must not block. */
  void *(*colocated)(void *impl, const gtask_backend *backend);

  /* Required.  Frees impl.  Called exactly once, when the last reference to
   * the handle is dropped, when no other call can be in progress. */
  void (*destroy)(void *impl);

  /* ---- abi 2 */

  /* Optional (NULL, or a table of abi 1: messages live for ever).  How long
   * a queued message lives, in ms (0: for ever), as the broker's
   * configuration says (the Redis broker: gtask_redis_conf_set_expire_time).
   * gtask_broker_new() calls it once and the core honours it: a client
   * stamps each message it sends with an expiry, its due time plus this
   * ([wire] the message's "x" field, docs/PROTOCOL.md); a worker that leases
   * a message after its expiry records FAILURE ("expired") instead of running
   * it; a dead message requeued by hand gets a new expiry.  So the broker
   * itself need drop nothing (it may, as a store-level TTL).  Must not block;
   * a negative value makes gtask_broker_new() fail with GTASK_EINVAL. */
  int64_t (*msg_ttl_ms)(void *impl);

  /* Optional (NULL, or a table of abi 1: cannot list).
   * The names of the queues the broker holds anything of (queued, leased,
   * scheduled or dead tasks, counters), each once, sorted by strcmp: a new
   * array *names of *n new strings, all allocated with malloc (the library
   * frees them with free()); *names NULL when there are none.  On failure,
   * returns the error and allocates nothing.  May be slow (it may scan the
   * store): for administration, not for a worker's loop. */
  int (*queues)(void *impl, char ***names, size_t *n);

  /* ---- abi 3 */

  /* Optional (NULL: the core claims with the backend's claim(), then
   * push()es the claimed ones: two steps).  Only called with a colocated
   * state: push() for sends that must not duplicate, in one atomic step with
   * the backend's claim(): each claim that is not a duplicate is claimed
   * (PENDING, its key held) and queued; a duplicate changes nothing and is
   * marked.  Claims are applied in order, so a later one of the batch sees
   * the keys that earlier ones took. */
  int (*push_unique)(void *impl, gtask_claim *cs, size_t n, void *state);

  /* Optional (NULL: failed tasks are not kept; gtask_client_failed_list and
   * gtask_client_rerun then find none).  A broker that has it keeps the
   * `next` of each DONE fin with status FAILURE and a next_due_ms > 0 in the
   * queue's failed set until next_due_ms, as finish() applies it, and may
   * drop the oldest beyond a bound it documents.  failed_list reads the
   * entries of queue not yet past their time (or only those of id), as
   * dead_list does, each message's due_ms set to the time it is kept until. */
  int (*failed_list)(void *impl, const char *queue, const char *id, gtask_msg ***out,
                     size_t *n);

  /* Optional (with failed_list).  As dead_requeue, from the failed set: each
   * revive whose failed-set entry still holds exactly msg->body is queued
   * now as `next` and removed from the set (moved set); with state, its
   * record is reset to PENDING in the same step, as the backend's reset(). */
  int (*failed_requeue)(void *impl, gtask_revive *rs, size_t n, void *state);

  /* Optional (NULL: queues cannot be paused; gtask_client_queue_pause is
   * then GTASK_EINVAL).  Pauses queue (paused true) or resumes it: a flag
   * that stays until changed, for every worker.  Sends still queue; lease()
   * need not look at it (workers ask paused() and leave paused queues out). */
  int (*pause)(void *impl, const char *queue, bool paused);

  /* Optional (with pause).  out[i] (out) is whether queues[i] is paused, for
   * each of queues[0..nq).  Workers call it about twice a second: keep it
   * cheap (one round trip). */
  int (*paused)(void *impl, const char *const *queues, size_t nq, bool *out);

  /* ---- abi 4 (issue 20: seeing inside).  All optional: NULL makes the
   * calls that need them (gtask_client_workers, gtask_client_list,
   * gtask_client_inspect) return GTASK_EINVAL, "not supported by this
   * broker". */

  /* Stores record[0..len) (opaque bytes: the core's JSON worker record) as
   * consumer's worker record until until_ms (unix ms; renewed on each
   * heartbeat), or removes it when until_ms == 0. */
  int (*worker_put)(void *impl, const char *consumer, const char *record, size_t len,
                    int64_t until_ms);

  /* Reads the records of every worker live now (until_ms in the future): a
   * new array *out of *n malloc()ed NUL-terminated strings (NULL and 0 when
   * none), each freed with free(), the array too. */
  int (*worker_list)(void *impl, char ***out, size_t *n);

  /* Lists up to limit messages of queue in one state (gtask_list_state),
   * in a stable order, starting after cursor (NULL or "": from the start).
   * Writes new messages to *out[0..*n) (id, queue, body; for SCHEDULED
   * due_ms; for ACTIVE lease set to the name of the consumer holding it) and
   * a new malloc()ed cursor to *next for the page after this one, or NULL
   * when this was the last.  A page may hold fewer than limit messages
   * without being the last.  Each page is read when asked: messages that
   * move between pages may be skipped or listed twice. */
  int (*list)(void *impl, const char *queue, int state, const char *cursor, size_t limit,
              gtask_msg ***out, size_t *n, char **next);

  /* Finds task id's message in queue: *state (out) receives where it is
   * (a gtask_list_state) and *out a new message as list() gives it; or
   * GTASK_ENOTFOUND when the queue holds no message for id (the task is
   * final, expired, or unknown).  May scan the queue. */
  int (*find)(void *impl, const char *queue, const char *id, int *state, gtask_msg **out);

  /* ---- abi 5 (issue 18: cancel) */

  /* Optional (NULL: gtask_client_cancel is GTASK_EINVAL, "not supported").
   * Only called with a colocated state (non-NULL).  Cancels task id of queue
   * in one atomic step: unless the task's state is final already, records
   * result[0..len) (an encoded result record with status CANCELLED) as its
   * final state, waking its waiters, and removes its message from the queue
   * or the schedule unless a worker holds its lease.  *running (out) is true
   * when a worker holds it: the message stays until that worker's finish(),
   * which finds the task final and records nothing (the worker learns of the
   * cancel through the backend's finals()).  Returns 0, GTASK_ENOTFOUND for
   * an unknown or expired id, or GTASK_ESTATE when the task is final already
   * (nothing changed). */
  int (*cancel)(void *impl, const char *queue, const char *id, const char *result, size_t len,
                bool *running, void *state);
} gtask_broker_ops;

/* ---------------------------------------------------------------- backend */

/* The backend interface: task states and results, kept per (queue, id).
 * Same conventions.  A final state (SUCCESS, FAILURE) is never overwritten,
 * except by reset().
 *
 * Expiry: a backend keeps records for a lifetime its own configuration sets
 * (the Redis backend: gtask_redis_conf_set_expire_time, default 24 h,
 * counted from each write of the record; the memory backend the same,
 * gtask_backend_memory_set_expire_time).
 * Once a record has expired, get and wait answer GTASK_ENOTFOUND as for an
 * id never seen; the core needs nothing else from it.  A colocated broker
 * that writes the records applies the same lifetime.  The contract suite
 * checks expiry for a target with GTASK_CONTRACT_RESULT_TTL
 * (<gtask/contract.h>). */
typedef struct gtask_backend_ops {
  int abi;          /* GTASK_EXTEND_ABI when the table was compiled */
  const char *name; /* for logs; required */

  /* Required.  Records each msg's id as PENDING unless it already has a state. */
  int (*pending)(void *impl, gtask_msg *const *msgs, size_t n);

  /* Required.  Records STARTED with attempts[i] for each msg, unless its
   * state is final (a missing record is created). */
  int (*started)(void *impl, gtask_msg *const *msgs, const uint32_t *attempts, size_t n);

  /* Required.  Records each fin's status and result (fin->msg gives queue and
   * id; a NULL or empty result keeps the previous one; a missing record is
   * created).  A final state is never overwritten: such fins are marked
   * fenced.  A new final state wakes every waiter of that task.  A fresh fin
   * (see gtask_fin) may skip work. */
  int (*store)(void *impl, gtask_fin *fins, size_t n);

  /* Required.  Reads a task's state: *status, *attempts, and a new copy of
   * its result record (*result, NUL-terminated, *len without the NUL; the
   * caller frees it with free(); NULL if none yet).  Any output pointer but
   * status may be NULL.  GTASK_ENOTFOUND for an unknown or expired id. */
  int (*get)(void *impl, const char *queue, const char *id, gtask_status *status,
             uint32_t *attempts, char **result, size_t *len);

  /* Required.  Blocks up to timeout_ms (< 0: for ever) until the task's
   * state is final, without polling.  0 when final, GTASK_ETIMEDOUT
   * otherwise, GTASK_ENOTFOUND for an unknown id.  When result is non-NULL it
   * receives a new copy of the final result record (freed with free(); NULL
   * if unavailable: the caller then reads it with get).  known: the caller
   * sent this task itself, so it exists: the backend may block at once
   * instead of first checking (an id unknown after all then gives
   * GTASK_ENOTFOUND at the timeout instead of at once). */
  int (*wait)(void *impl, const char *queue, const char *id, int64_t timeout_ms, bool known,
              char **result, size_t *len);

  /* Required.  Forces each msg's record back to PENDING (attempts kept),
   * dropping its result record -- final states included.  The one write
   * that replaces a final state: for a dead task requeued by hand, called
   * before its message is queued again.  A missing record is created. */
  int (*reset)(void *impl, gtask_msg *const *msgs, size_t n);

  /* Required.  Frees impl; as the broker's destroy. */
  void (*destroy)(void *impl);

  /* ---- abi 3 */

  /* Optional (NULL: sends with a chosen id or a unique key are refused with
   * GTASK_EINVAL).  For each claim, in order: if its id has a record, or its
   * unique key is held by a task that is not final (or, with a TTL, held at
   * all), marks it duplicate with the holder's id and changes nothing for it;
   * else records the id as PENDING and takes the key for it (with its TTL,
   * or until the task is final).  All or nothing for the batch on an error. */
  int (*claim)(void *impl, gtask_claim *cs, size_t n);

  /* ---- abi 5 (issue 18: cancel) */

  /* Optional (NULL: a worker never learns that a task it runs was cancelled,
   * and only its outcome is dropped).  out[i] (out): whether msgs[i]'s task
   * has a final state.  Workers ask for the tasks they hold every 500 ms
   * (one call, batched per queue), so it must be cheap: a read per task. */
  int (*finals)(void *impl, gtask_msg *const *msgs, size_t n, bool *out);

  /* Optional, both or neither (NULL: progress reports are dropped, and
   * gtask_client_progress is GTASK_EINVAL).  progress records values[i] (a
   * NUL-terminated string, "DONE TOTAL MESSAGE") as the progress of msgs[i]'s
   * task unless the task is final; a final state drops it.  progress_get
   * reads it into *value (a new string, freed with free()), or
   * GTASK_ENOTFOUND when there is none (issue 18). */
  int (*progress)(void *impl, gtask_msg *const *msgs, const char *const *values, size_t n);
  int (*progress_get)(void *impl, const char *queue, const char *id, char **value);
} gtask_backend_ops;

/* ---------------------------------------------------------------- handles
 *
 * A handle holds a table, its impl and a reference count.  Servers and
 * clients take their own references, so the creator may free its handle as
 * soon as it has passed it on; the impl is destroyed when the last reference
 * goes.  Every function below is thread-safe, and a handle may be used by
 * any number of servers and clients in any threads at once (the
 * implementation synchronises, as the conventions above require). */

/* Wraps ops and impl in a new broker handle with one reference (free it with
 * gtask_broker_free(); ops->destroy(impl) runs when the last reference goes).
 * ops must stay valid and unchanged for the life of the handle (a static
 * const table).  Returns 0 and sets *out, or:
 *   GTASK_EINVAL  out or ops NULL, ops->abi not a version this library
 *                 accepts (1..GTASK_EXTEND_ABI), or a required operation or
 *                 the name missing; the detail names it in gtask_last_error();
 *   GTASK_ENOMEM  out of memory.
 * On failure *out is NULL and impl is NOT destroyed: it is still the
 * caller's. */
GTASK_EXTERN int gtask_broker_new(gtask_broker **out, const gtask_broker_ops *ops, void *impl);
/* The same for a backend. */
GTASK_EXTERN int gtask_backend_new(gtask_backend **out, const gtask_backend_ops *ops,
                                   void *impl);

/* The impl of backend if it was made with exactly the table ops (compared by
 * address), else NULL.  For colocated(): a broker recognises a backend of its
 * own kind this way.  The pointer is valid while backend lives. */
GTASK_EXTERN void *gtask_backend_impl(const gtask_backend *backend, const gtask_backend_ops *ops);

/* The table and impl behind a handle: returns the table (NULL for a NULL
 * handle) and, when impl is non-NULL, stores the implementation pointer in
 * *impl.  For code that calls an implementation's operations itself -- the
 * contract suite (<gtask/contract.h>), a wrapper that adds to a built-in
 * broker -- under the same rules as the core: the handle must outlive the
 * calls, and the conventions above hold. */
GTASK_EXTERN const gtask_broker_ops *gtask_broker_ops_get(const gtask_broker *broker, void **impl);
/* The same for a backend. */
GTASK_EXTERN const gtask_backend_ops *gtask_backend_ops_get(const gtask_backend *backend,
                                                            void **impl);

#ifdef __cplusplus
}
#endif

#endif /* GTASK_EXTEND_H */
