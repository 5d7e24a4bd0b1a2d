/* internal.h -- declarations shared by the files of libgtask, never installed.
 *
 * Three boundaries meet here:
 *  - utilities every file uses (allocation with a failure seam, errors, logging,
 *    clocks, ids);
 *  - the codec (encode.c, decode.c, decode_fast.c; value.c for the values) that
 *    turns tasks and results into bytes: its entry points are here, its own
 *    declarations and the format it writes in codec.h;
 *  - the broker and backend interfaces: const tables of functions plus a void
 *    *impl, public in <gtask/extend.h>, implemented by src/redis/ and
 *    src/memory/ and used by the core (client.c, server.c), which never
 *    includes <hiredis.h>; here only the handles around them.
 * The utilities live in util.h, which this includes.
 */
#ifndef GTASK_INTERNAL_H
#define GTASK_INTERNAL_H

#include "gtask/extend.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

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
  uint32_t retry_on;        /* GTASK_RETRY_ON_* of the outcomes retried (0 read as
                               GTASK_RETRY_ON_TIMEOUT, the default) */
  uint32_t priority;        /* 0 (normal) .. GTASK_PRIORITY_MAX (urgent) */
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

/* ---------------------------------------------------------------- broker and backend
 *
 * The operation tables and the values they exchange (gtask_msg, gtask_fin,
 * gtask_revive) are public: <gtask/extend.h>.  The handles around them are
 * private: */

struct gtask_broker {
  int64_t msg_ttl_ms; /* how long a queued message lives (0: for ever): ops->msg_ttl_ms, read once */
  const gtask_broker_ops *ops; /* the table, or ops_copy for an older abi's table */
  void *impl;
  atomic_int refs;
  gtask_broker_ops ops_copy; /* an older table, padded with NULL operations */
};

struct gtask_backend {
  const gtask_backend_ops *ops;   /* the table, or ops_copy for an older ABI's table */
  const gtask_backend_ops *table; /* the caller's table (gtask_backend_impl compares it) */
  void *impl;
  atomic_int refs;
  gtask_backend_ops ops_copy; /* an older table, padded with NULL operations */
};

/* Wraps a built-in implementation in a new handle with one reference (NULL on
 * OOM; the impl is then destroyed).  Unlike the public gtask_broker_new, no
 * check of the table: ours are checked by the tests. */
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

/* ---------------------------------------------------------------- periodic tasks
 *
 * The message a send with conf would queue (client.c), without id, queue or
 * expiry: the template a periodic task stamps with an id and times at each
 * tick (schedule.c).  GTASK_EINVAL / ERANGE for bad arguments, detail in
 * gtask_last_error(). */
int gtask__send_conf_encode(const gtask_send_conf *conf, const gtask_value *args, size_t nargs,
                            int64_t created_ms, char **body, size_t *len);
const char *gtask__send_conf_name(const gtask_send_conf *conf);
const char *gtask__send_conf_queue(const gtask_send_conf *conf); /* NULL: not set */
int64_t gtask__send_conf_delay(const gtask_send_conf *conf);     /* ms, 0: none */
/* The unique option: -1 none, GTASK_UNIQUE_UNTIL_DONE (0), else the TTL in ms. */
int64_t gtask__send_conf_unique(const gtask_send_conf *conf);
bool gtask__send_conf_has_id(const gtask_send_conf *conf);
/* The content key of a task (gtask_send_conf_set_unique): the lower-case hex
 * SHA-256 of the message that holds only its name and arguments. */
int gtask__unique_digest(const char *name, const gtask_value *args, size_t nargs, char out[65]);

/* Where periodic tasks live in Redis (redis/cron.c; GTASK_EINVAL for a broker
 * that is not Redis).  A raw definition, as stored: */
typedef struct gtask__cron_raw {
  char *name; /* entry name */
  char *def;  /* its definition (JSON, schedule.c) */
  size_t len;
} gtask__cron_raw;
/* An entry's fire state (P:{q}:cron:NAME). */
typedef struct gtask__cron_fired {
  bool known;               /* the state exists */
  int64_t last_ms;          /* the last tick done (queued or skipped) */
  char id[GTASK_ID_SIZE];   /* the task of the last tick queued, or "" */
  int64_t at_ms;            /* when that task was queued */
  int64_t skipped;          /* ticks skipped as missed */
} gtask__cron_fired;
/* True for a broker that keeps periodic tasks (a Redis broker). */
bool gtask__cron_supported(const gtask_broker *b);
/* Stores (replaces) the definition of entry name. */
int gtask__cron_put(gtask_broker *b, const char *name, const char *def, size_t len);
/* Removes it; GTASK_ENOTFOUND if there is none.  Its fire state stays, so
 * that an entry added again under the name never repeats a tick. */
int gtask__cron_del(gtask_broker *b, const char *name);
/* Every definition (name NULL) or that of name (GTASK_ENOTFOUND if none), in
 * a new array; free with gtask__cron_defs_free. */
int gtask__cron_all(gtask_broker *b, const char *name, gtask__cron_raw **out, size_t *n);
void gtask__cron_defs_free(gtask__cron_raw *v, size_t n);
int gtask__cron_state(gtask_broker *b, const char *queue, const char *name, gtask__cron_fired *st);
/* What cron_fire.lua queues for a tick: the task (id, body), when it is due
 * (0: now; later: into the schedule) and, with a unique key (ukey non-NULL,
 * the content digest), for how long the key is held (unique_ms: 0 until the
 * task is final, else ms). */
typedef struct gtask__cron_task {
  const char *id;
  const char *body;
  size_t len;
  int64_t due_ms;
  const char *ukey;
  int64_t unique_ms;
} gtask__cron_task;
/* cron_fire.lua: queues (task non-NULL) or skips the tick, unless the
 * entry's last tick is at or past it already.  Returns 1 (done by this call),
 * 0 (done before) or 2 (done by this call without queueing: the task's
 * unique key is held by another task), with the entry's last tick in
 * *last_ms; or a negative code. */
int gtask__cron_fire(gtask_broker *b, bool with_state, const char *queue, const char *name,
                     int64_t tick_ms, const gtask__cron_task *task, int64_t *last_ms);

/* Limits in Redis (redis/limits.c; GTASK_EINVAL for a broker that is not
 * Redis).  Sets field ("rate:<t>" / "conc:<t>", <t> "q" or "t:<task>") of
 * queue's limits to value, or with value NULL removes both limits of target
 * field (GTASK_ENOTFOUND if it had none). */
int gtask__limit_set(gtask_broker *b, const char *queue, const char *field, const char *value);
int gtask__limit_list(gtask_broker *b, const char *queue, gtask_limit **out, size_t *n);

/* ---------------------------------------------------------------- backoff */

/* Delay before retry k (1-based) of t: min(max, first * 2^(k-1)) +-25% jitter. */
int64_t gtask__backoff_ms(const gtask_task *t, uint32_t k);

/* ---------------------------------------------------------------- jansson */

/* Routes jansson's allocations through gtask__malloc/gtask__free (once per
 * process, thread-safe).  Every file that calls jansson calls this first
 * (today only decode.c, which defines it). */
void gtask__json_init(void);

#endif /* GTASK_INTERNAL_H */
