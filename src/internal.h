/* internal.h -- declarations shared by the files of libgtask, never installed.
 *
 * Three boundaries meet here:
 *  - utilities every file uses (allocation with a failure seam, errors, logging,
 *    clocks, ids);
 *  - the codec (encode.c, decode.c, decode_fast.c; value.c for the values) that
 *    turns tasks and results into bytes: its entry points are here, its own
 *    declarations and the format it writes in codec.h;
 *  - the broker and backend interfaces: const tables of functions plus a void
 *    *impl, implemented by src/redis/ and src/memory/ and used by the core
 *    (client.c, server.c), which never includes <hiredis.h>.
 */
#ifndef GTASK_INTERNAL_H
#define GTASK_INTERNAL_H

#include "gtask/gtask.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GTASK__HIDDEN __attribute__((visibility("hidden")))

/* ---------------------------------------------------------------- allocation
 * Every allocation of the library goes through these, so that a test can make
 * the N-th one fail (gtask__alloc_fail_at) and check that the failure is
 * reported, not crashed on or leaked.  jansson is routed here too. */
void *gtask__malloc(size_t n);
void *gtask__calloc(size_t count, size_t size);
void *gtask__realloc(void *p, size_t n);
char *gtask__strdup(const char *s);
char *gtask__strndup(const char *s, size_t n);
void gtask__free(void *p);
/* Test hook: the n-th allocation from now fails (1 = the next), 0 disables.
 * Returns how many allocations were made since the last call. */
long gtask__alloc_fail_at(long n);

/* ---------------------------------------------------------------- errors, logs */

/* Sets the calling thread's detail message (read by gtask_last_error()). */
void gtask__set_error(const char *fmt, ...) GTASK__PRINTF(1, 2);
void gtask__log(gtask_log_level level, const char *fmt, ...) GTASK__PRINTF(2, 3);
/* True for a failure that may pass if the same call is made again later: a
 * connection that failed or timed out (ECONN, ETIMEDOUT), a reply that was
 * lost (EINDOUBT: only for calls that are safe to repeat), out of memory. */
bool gtask__rc_transient(int rc);
/* Bounded, always-terminated formatting into a fixed buffer. */
void gtask__fmt(char *buf, size_t size, const char *fmt, ...) GTASK__PRINTF(3, 4);

/* ---------------------------------------------------------------- SIGPIPE
 * A write to a socket or pipe whose peer is gone raises SIGPIPE, whose default
 * action kills the process; hiredis 0.14 writes with write(2).  The library
 * never lets that happen:
 *  - threads it creates block SIGPIPE for their whole life (a write then fails
 *    with EPIPE, and the blocked signal stays pending, harmlessly);
 *  - on the application's threads, every borrow of a Redis connection blocks
 *    SIGPIPE until the connection is returned, then consumes a SIGPIPE that
 *    the library raised and restores the mask.  Nested borrows are counted.
 *    io_error: the connection saw an I/O error (only then can a SIGPIPE of
 *    ours be pending: a write that raises it fails with EPIPE). */
void gtask__block_sigpipe(void);
void gtask__sigpipe_enter(void);
void gtask__sigpipe_leave(bool io_error);

/* ---------------------------------------------------------------- clocks, ids */

int64_t gtask__now_ms(void);  /* CLOCK_REALTIME, ms since the epoch */
int64_t gtask__mono_ms(void); /* CLOCK_MONOTONIC, ms */
/* A random (version 4) UUID in its 36-character text form. */
void gtask__uuid(char out[GTASK_ID_SIZE]);
/* True if s is a well-formed task id (a UUID in text form). */
bool gtask__id_valid(const char *s);
/* True if s is a usable queue name: 1..128 bytes of [A-Za-z0-9_.:-]. */
bool gtask__queue_valid(const char *s);
/* NULL if s is a usable task name: 1..256 bytes, none of them a control
 * character (below 0x20, or 0x7f), which would break line-based output such
 * as `gtask dead list` (issue 14).  Else why not, as a constant string. */
const char *gtask__task_name_check(const char *s);

/* ---------------------------------------------------------------- values (value.c) */

/* Deep copy of vals[0..n): one allocation holds the array and all string bytes.
 * Free with gtask__free(*out).  n == 0 gives *out == NULL. */
int gtask__values_copy(const gtask_value *vals, size_t n, gtask_value **out);
/* Range check of v against its own type (an int8 holding 300 is GTASK_ERANGE,
 * a NaN is fine, a string with ptr NULL is GTASK_EINVAL). */
int gtask__value_check(const gtask_value *v);

/* ---------------------------------------------------------------- codec
 *
 * The task message and the result record are JSON objects with a version field
 * "v"; docs/PROTOCOL.md is their specification, and codec.h says how the
 * codec's files divide the work (encode.c, decode.c, decode_fast.c).  Decoders
 * never trust input: any malformed field is GTASK_EPROTO with a reason in err. */

/* A decoded task message.  Everything it points to is owned by it. */
typedef struct gtask_task {
  char id[GTASK_ID_SIZE];   /* task id */
  char *name;               /* registered handler name */
  char *queue;              /* queue it was sent to */
  gtask_value *args;        /* arguments (one allocation, gtask__values_copy) */
  size_t nargs;             /* number of arguments */
  int64_t timeout_ms;       /* run time limit; 0: none */
  int32_t retry_max;        /* retries allowed after timeouts or handler retries */
  uint32_t attempts;        /* runs that ended before this delivery (timed out,
                               or failed with a retry); losses count in lost */
  uint32_t lost;            /* deliveries lost so far (worker died holding it) */
  int64_t backoff_first_ms; /* first retry delay */
  int64_t backoff_max_ms;   /* cap of the retry delay */
  int64_t created_ms;       /* unix ms when sent */
  int64_t expires_ms;       /* unix ms after which it is dropped unrun; 0: never */
  char *last_error;         /* error of the previous run (retries), or NULL */
} gtask_task;

/* Encodes t into a new buffer (*out, free with gtask__free; NUL-terminated,
 * *len without the NUL). */
int gtask__task_encode(const gtask_task *t, char **out, size_t *len);
/* Decodes buf[0..len); *out is a new task to free with gtask__task_free.
 * On GTASK_EPROTO, err receives the reason ("field \"args\": not an array").
 * The message does not carry its id and queue (version 2): id and queue are
 * those of what holds it (NULL or "": unknown, then the message must carry
 * them, as version 1 did). */
int gtask__task_decode_in(const char *buf, size_t len, const char *id, const char *queue,
                          gtask_task **out, char *err, size_t errlen);
/* gtask__task_decode_in without a holder. */
int gtask__task_decode(const char *buf, size_t len, gtask_task **out, char *err,
                       size_t errlen);
void gtask__task_free(gtask_task *t);

/* Encodes a result record (status, values, error, error_code, attempts; id is
 * not encoded: it is the key). */
int gtask__result_encode(const gtask_result *r, char **out, size_t *len);
/* Decodes a result record into a new gtask_result (free with
 * gtask_result_free) whose id is set to id. */
int gtask__result_decode(const char *buf, size_t len, const char *id, gtask_result **out,
                         char *err, size_t errlen);

/* ---------------------------------------------------------------- broker and backend */

/* A message as a broker carries it.  The broker treats body as opaque bytes. */
typedef struct gtask_msg {
  char id[GTASK_ID_SIZE]; /* task id */
  char *queue;            /* queue name, owned */
  char *body;             /* encoded task (gtask__task_encode), owned */
  size_t len;             /* body length */
  char *lease;            /* the broker's token for this delivery, owned; NULL until leased */
  int64_t epoch;          /* the broker's count of lease takeovers in the queue when
                             this lease began (Redis: the fence key); -1 unknown */
  int64_t due_ms;         /* push: unix ms when it may run; 0: now */
} gtask_msg;

/* New message with copies of queue and body.  NULL on out-of-memory. */
gtask_msg *gtask__msg_new(const char *id, const char *queue, const char *body, size_t len);
void gtask__msg_free(gtask_msg *m);

/* How a delivery ends. */
typedef enum gtask_fin_kind {
  GTASK_FIN_DONE = 1,    /* final: record status (SUCCESS/FAILURE) and result */
  GTASK_FIN_RETRY = 2,   /* record RETRY and result; queue `next` at next_due_ms */
  GTASK_FIN_REQUEUE = 3, /* lost or handed back: queue `next` now, record PENDING */
  GTASK_FIN_DEAD = 4     /* final FAILURE, and keep the message in the dead set */
} gtask_fin_kind;

typedef struct gtask_fin {
  gtask_msg *msg;          /* the leased delivery being finished (queue, id, lease) */
  gtask_fin_kind kind;     /* what to do */
  gtask_status status;     /* the state to record (see gtask_fin_kind) */
  const char *result;      /* encoded result record (DONE, DEAD, RETRY), or NULL */
  size_t result_len;
  const char *next;        /* RETRY, REQUEUE, DEAD: the message to keep (new body) */
  size_t next_len;
  int64_t next_due_ms;     /* RETRY: unix ms when due */
  bool fresh;              /* no state hash can exist for the task: a first
                              delivery (attempts and losses 0) that got no
                              STARTED mark.  Its final state needs no DEL of
                              the hash, and its hand-back (REQUEUE) records no
                              state: the pending set still says PENDING. */
  bool fenced;             /* out: nothing was recorded -- the lease was no longer
                              ours (broker: nothing changed), or the task was
                              already final (backend; and a broker writing state
                              then only releases the lease) */
} gtask_fin;

/* Per-queue counts (gtask_queue_stats) are public: see gtask.h. */

/* A dead message to move back to its queue (dead_requeue). */
typedef struct gtask_revive {
  const gtask_msg *msg; /* as dead_list returned it: queue, id, and the body the
                           dead set holds now (the compare-and-swap's old value) */
  const char *next;     /* the body to queue (the caller's re-encoded message) */
  size_t next_len;
  bool moved;           /* out: the entry still held msg->body and was moved */
} gtask_revive;

/* The broker interface.  Every function returns 0 or a negative GTASK_E*, may
 * be called from several threads at once (implementations synchronise), and
 * never takes ownership of its arguments unless it says so.  `consumer` names
 * the lease holder (one per server). */
typedef struct gtask_broker_ops {
  const char *name; /* "redis", "memory" */

  /* Queues msgs[0..n), each in its own queue, due at its due_ms.  All or
   * nothing.  If state is non-NULL (see colocated) each id is also recorded as
   * PENDING in the same atomic step (as the backend's pending() would). */
  int (*push)(void *impl, gtask_msg *const *msgs, size_t n, void *state);

  /* Leases up to max messages from queues[0..nq) to consumer, blocking up to
   * wait_ms (< 0: for ever) while all are empty.  Writes new messages (free
   * with gtask__msg_free) to out[0..*n), never more than max.  A timeout or
   * interrupt is 0 with *n == 0; nq == 0 or max == 0 is GTASK_EINVAL.  Queues
   * are served in the order given (a priority order).  A leased message stays
   * owned by consumer until finish, or until its lease expires and reclaim
   * gives it to another. */
  int (*lease)(void *impl, const char *consumer, const char *const *queues, size_t nq,
               size_t max, int64_t wait_ms, gtask_msg **out, size_t *n);

  /* Makes a lease() of consumer that is blocked in another thread return at
   * once (0, *n == 0); if none is in progress, the next lease() of consumer
   * returns at once instead.  One interrupt is consumed by one lease.
   * Thread-safe, not async-signal-safe. */
  int (*interrupt)(void *impl, const char *consumer);

  /* Heartbeat: renews the leases of msgs (held by consumer).  lost[i] is set
   * to true for each lease that is no longer held (another worker took it). */
  int (*extend)(void *impl, const char *consumer, gtask_msg *const *msgs, size_t n,
                bool *lost);

  /* Ends deliveries.  For each fin whose lease consumer still holds: releases
   * the lease and, per kind, queues or schedules fin->next or moves it to the
   * dead set.  A fin whose lease is lost is left alone and marked fenced.  If
   * state is non-NULL, the backend record (status, result, notification) is
   * written in the same atomic step, and not if the task is already final. */
  int (*finish)(void *impl, const char *consumer, gtask_fin *fins, size_t n, void *state);

  /* Takes over up to max deliveries in queue whose lease has not been renewed
   * for lease_ms, leasing them to consumer; the caller then finishes them
   * (REQUEUE or DEAD).  Any live worker calls this.  Fencing: after a reclaim,
   * the previous holder's extend reports lost and its finish is fenced (Redis:
   * the PEL entry's owner changed; memory: a new token). */
  int (*reclaim)(void *impl, const char *consumer, const char *queue, int64_t lease_ms,
                 size_t max, gtask_msg **out, size_t *n);

  /* Moves up to max scheduled messages of queue whose due time has come into
   * the queue; *next_due_ms receives the earliest remaining due time, or 0 (a
   * time already past means max stopped it: call again). */
  int (*promote)(void *impl, const char *queue, size_t max, int64_t *next_due_ms);

  /* Counts of queue: pending, active, scheduled, dead, and the finished
   * counters, which finish() increments for each DONE or DEAD fin it applies
   * with a final status (SUCCESS: succeeded, FAILURE: failed).  An unknown
   * queue is all zeros. */
  int (*stats)(void *impl, const char *queue, gtask_queue_stats *out);

  /* Reads queue's dead set, or only its entry for id when id is non-NULL: a
   * new array *out of *n new messages (id, queue, body; lease NULL), NULL and
   * 0 when empty, each id once.  Free each message with gtask__msg_free and
   * the array with gtask__free.  Each entry is as it was when read; the whole
   * is not one snapshot. */
  int (*dead_list)(void *impl, const char *queue, const char *id, gtask_msg ***out, size_t *n);

  /* Moves dead messages back to their queues, each atomically: for each
   * revive whose dead-set entry still holds exactly msg->body (a
   * compare-and-swap, so a concurrent requeue or purge wins and nothing runs
   * twice), queues `next` to run now, removes the entry and sets moved.  If
   * state is non-NULL (see colocated), each moved task's record is reset to
   * PENDING in the same atomic step, as the backend's reset() does. */
  int (*dead_requeue)(void *impl, gtask_revive *rs, size_t n, void *state);

  /* Empties queue's dead set atomically; *removed receives how many entries it
   * held. */
  int (*dead_purge)(void *impl, const char *queue, size_t *removed);

  /* Records consumer as a live worker of queues[0..nq) until until_ms (unix
   * ms; a worker calls it again, with a later time, on each heartbeat), or,
   * with until_ms == 0, removes it.  Refuses -- GTASK_EVERSION, changing
   * nothing, the detail in gtask_last_error() -- when a live worker whose
   * protocol cannot be mixed with this broker's serves one of the queues
   * (Redis: another key schema version).  May be NULL: nothing to record. */
  int (*announce)(void *impl, const char *consumer, const char *const *queues, size_t nq,
                  int64_t until_ms);

  /* If this broker can write backend's records in its own atomic steps (same
   * implementation, same server and database), returns the backend's impl to
   * pass as `state`; else NULL. */
  void *(*colocated)(void *impl, const gtask_backend *backend);

  void (*destroy)(void *impl);
} gtask_broker_ops;

/* The backend interface: task states and results.  Same conventions. */
typedef struct gtask_backend_ops {
  const char *name;

  /* Records each msg's id as PENDING unless it already has a state. */
  int (*pending)(void *impl, gtask_msg *const *msgs, size_t n);

  /* Records STARTED with attempts[i] for each msg, unless its state is final
   * (a missing record is created). */
  int (*started)(void *impl, gtask_msg *const *msgs, const uint32_t *attempts, size_t n);

  /* Records each fin's status and result (fin->msg gives queue and id; a NULL
   * or empty result means none; a missing record is created).  A final state
   * is never overwritten: such fins are marked fenced.  Final states wake every
   * waiter of that task.  A fresh fin (see gtask_fin) may skip work: its final
   * state has no earlier record to drop, and its hand-back (PENDING) may
   * record nothing, the task reading PENDING as it did when sent. */
  int (*store)(void *impl, gtask_fin *fins, size_t n);

  /* Reads a task's state: *status, *attempts, and a new copy of its result
   * record (*result, free with gtask__free; NULL if none yet).  Any output
   * pointer but status may be NULL.
   * GTASK_ENOTFOUND for an unknown or expired id. */
  int (*get)(void *impl, const char *queue, const char *id, gtask_status *status,
             uint32_t *attempts, char **result, size_t *len);

  /* Blocks up to timeout_ms (< 0: for ever) until the task's state is final,
   * without polling.  0 when final, GTASK_ETIMEDOUT otherwise.  When result is
   * non-NULL it receives a new copy of the final result record (free with
   * gtask__free; NULL if the record is unavailable: read it with get), so that
   * a waiter needs no further round trip.  known: the caller sent this task
   * itself, so it exists: the backend may block at once instead of first
   * checking that (for an id unknown after all -- expired, or sent elsewhere
   * -- GTASK_ENOTFOUND then comes at the timeout instead of at once). */
  int (*wait)(void *impl, const char *queue, const char *id, int64_t timeout_ms, bool known,
              char **result, size_t *len);

  /* Forces each msg's record back to PENDING (attempts kept), dropping its
   * result record and its final notification -- final states included.  The
   * one write that replaces a final state: for a dead task requeued by hand,
   * called before its message is queued again (so that its new run cannot
   * finish before the reset and be overwritten).  A missing record is
   * created. */
  int (*reset)(void *impl, gtask_msg *const *msgs, size_t n);

  void (*destroy)(void *impl);
} gtask_backend_ops;

struct gtask_broker {
  int64_t msg_ttl_ms; /* how long a queued message lives (0: for ever); set by the implementation */
  const gtask_broker_ops *ops;
  void *impl;
  atomic_int refs;
};

struct gtask_backend {
  const gtask_backend_ops *ops;
  void *impl;
  atomic_int refs;
};

/* Wraps an implementation in a new handle with one reference (NULL on OOM; the
 * impl is then destroyed). */
gtask_broker *gtask__broker_new(const gtask_broker_ops *ops, void *impl);
gtask_backend *gtask__backend_new(const gtask_backend_ops *ops, void *impl);
gtask_broker *gtask__broker_ref(gtask_broker *b);
gtask_backend *gtask__backend_ref(gtask_backend *b);

/* The server's broker and backend (server.c), for gtask_client_from_server
 * (client.c). */
gtask_broker *gtask__server_broker(gtask_server *s);
gtask_backend *gtask__server_backend(gtask_server *s);

/* A client's parts (client.c), for the queue inspection calls (admin.c): its
 * broker, backend, colocated state (NULL if none) and queue, and its error
 * setter (formats into gtask_client_errmsg; returns rc). */
gtask_broker *gtask__client_broker(const gtask_client *c);
gtask_backend *gtask__client_backend(const gtask_client *c);
void *gtask__client_state(const gtask_client *c);
const char *gtask__client_queue(const gtask_client *c);
int gtask__client_err(gtask_client *c, int rc, const char *fmt, ...) GTASK__PRINTF(3, 4);

/* ---------------------------------------------------------------- backoff */

/* Delay before retry k (1-based) of t: min(max, first * 2^(k-1)) +-25% jitter. */
int64_t gtask__backoff_ms(const gtask_task *t, uint32_t k);

/* ---------------------------------------------------------------- jansson */

/* Routes jansson's allocations through gtask__malloc/gtask__free (once per
 * process, thread-safe).  Every file that calls jansson calls this first
 * (today only decode.c, which defines it). */
void gtask__json_init(void);

#endif /* GTASK_INTERNAL_H */
