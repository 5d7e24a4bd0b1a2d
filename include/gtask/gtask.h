/* gtask.h -- the public API of libgtask, an asynchronous task queue on Redis.
 *
 * A program *sends* a named task with typed arguments and gets a task id back at
 * once; worker *servers* lease tasks from a broker, run the registered C function
 * and store status and result in a backend, where any client holding the id reads
 * them or waits for them.  This is the C implementation of the Go library g_task:
 * the names mirror it (NewRedisConf -> gtask_redis_conf_new, Reg ->
 * gtask_server_reg, Send -> gtask_client_send, ...).
 *
 * Conventions used throughout:
 *  - Calls that can fail return 0 or a negative GTASK_E* code (see GTASK_ERRNO_MAP);
 *    the detail ("redis 127.0.0.1:6390: NOSCRIPT ...") is kept on the object
 *    (gtask_client_errmsg, gtask_server_errmsg) or, for calls without one, in a
 *    thread-local buffer read with gtask_last_error().
 *  - Every free function accepts NULL.
 *  - The library never calls exit, abort or printf; it logs through gtask_set_log().
 *    Caveat inherited from hiredis 0.14: hiredis itself aborts the process when
 *    one of *its* allocations fails (HIREDIS_OOM_HANDLER).
 *  - This header is ISO C11 (it needs _Generic, nothing later): it compiles
 *    without a warning under -std=c11 -pedantic (tests/unit/c11_header.c).
 */
#ifndef GTASK_GTASK_H
#define GTASK_GTASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GTASK_EXTERN __attribute__((visibility("default")))
#define GTASK__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define GTASK_EXTERN
#define GTASK__PRINTF(f, a)
#endif

/* ---------------------------------------------------------------- version */

/* The version of gtask: these three lines are the one place it is written.
 * CMakeLists.txt reads them into project(VERSION), from which the SONAME
 * (libgtask.so.MAJOR), gtask.pc, the Debian package and `gtask --version`
 * take it.  To release, change them and CHANGELOG.md together. */
#define GTASK_VERSION_MAJOR 0
#define GTASK_VERSION_MINOR 1
#define GTASK_VERSION_PATCH 0

#define GTASK__STR(x) #x
#define GTASK__XSTR(x) GTASK__STR(x)
/* "MAJOR.MINOR.PATCH" of this header, e.g. "0.1.0". */
#define GTASK_VERSION_STRING                                                  \
  GTASK__XSTR(GTASK_VERSION_MAJOR) "." GTASK__XSTR(GTASK_VERSION_MINOR) "."   \
  GTASK__XSTR(GTASK_VERSION_PATCH)
/* The same as one number for #if: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define GTASK_VERSION_NUMBER                                                  \
  (GTASK_VERSION_MAJOR * 10000 + GTASK_VERSION_MINOR * 100 + GTASK_VERSION_PATCH)

/* The version of the library the program runs with ("0.1.0"): a static string,
 * never NULL.  It can differ from GTASK_VERSION_STRING, the version of the
 * header the program was compiled against, when a newer libgtask.so.0 is
 * installed later. */
GTASK_EXTERN const char *gtask_version(void);

/* ---------------------------------------------------------------- errors */

/* XX(name, value, message).  Values are negative and stable. */
#define GTASK_ERRNO_MAP(XX)                                                   \
  XX(EINVAL, -1, "invalid argument")                                          \
  XX(ENOMEM, -2, "out of memory")                                             \
  XX(ECONN, -3, "cannot reach redis")                                         \
  XX(EREDIS, -4, "redis replied with an error")                               \
  XX(ETIMEDOUT, -5, "timed out")                                              \
  XX(ENOTFOUND, -6, "no such task")                                           \
  XX(EPROTO, -7, "malformed message")                                         \
  XX(ETOOBIG, -8, "payload too large")                                        \
  XX(ENOHANDLER, -9, "no handler registered under that name")                 \
  XX(EEXIST, -10, "already exists")                                           \
  XX(ESHUTDOWN, -11, "shutting down")                                         \
  XX(ELEASE, -12, "lease lost to another worker")                             \
  XX(ETYPE, -13, "argument type mismatch")                                    \
  XX(ERANGE, -14, "value out of range")                                       \
  XX(ESTATE, -15, "invalid state for this call")                              \
  XX(EHANDLER, -16, "the task handler reported an error")                     \
  XX(ETASKTIMEOUT, -17, "the task ran past its timeout")                      \
  XX(ELOST, -18, "the task was lost too many times (worker died)")            \
  XX(ECRASH, -19, "the task crashed its executor")                           \
  XX(EINDOUBT, -20, "sent, but the reply was lost: outcome unknown")          \
  XX(ENOPERM, -21, "redis denied a command to this user (ACL)")              \
  XX(EVERSION, -22, "workers of an incompatible version serve this queue")   \
  XX(ECANCELED, -23, "the task was cancelled")

typedef enum gtask_errno {
  GTASK_OK = 0,
#define GTASK__ERR_ENUM(name, value, msg) GTASK_##name = (value),
  GTASK_ERRNO_MAP(GTASK__ERR_ENUM)
#undef GTASK__ERR_ENUM
} gtask_errno;

/* Short message for a GTASK_E* code ("timed out"); never NULL. */
GTASK_EXTERN const char *gtask_strerror(int err);
/* The code's name ("ETIMEDOUT"); never NULL. */
GTASK_EXTERN const char *gtask_err_name(int err);
/* Detail of the last failure of a call that has no object to carry it (the
 * constructors), for the calling thread.  Valid until the next gtask call on
 * this thread. */
GTASK_EXTERN const char *gtask_last_error(void);

/* ---------------------------------------------------------------- logging */

typedef enum gtask_log_level {
  GTASK_LOG_DEBUG = 0,
  GTASK_LOG_INFO = 1,
  GTASK_LOG_WARN = 2,
  GTASK_LOG_ERROR = 3
} gtask_log_level;

/* Receives every log line of the library (no trailing newline).  May be called
 * from any library thread at the same time: the callback must be thread-safe. */
typedef void (*gtask_log_fn)(gtask_log_level level, const char *line, void *udata);

/* Replaces the process-wide logger.  NULL restores the default, which writes
 * "gtask LEVEL: line" to stderr for WARN and above.  min_level filters.
 * Call it before creating servers; it is not synchronised with running ones. */
GTASK_EXTERN void gtask_set_log(gtask_log_fn fn, void *udata, gtask_log_level min_level);

/* ---------------------------------------------------------------- values */

/* The argument and result types of g_task.  GTASK_INT and GTASK_UINT are Go's
 * int and uint: 64 bits here. */
typedef enum gtask_type {
  GTASK_BOOL = 1,
  GTASK_INT,
  GTASK_INT8,
  GTASK_INT16,
  GTASK_INT32,
  GTASK_INT64,
  GTASK_UINT,
  GTASK_UINT8,
  GTASK_UINT16,
  GTASK_UINT32,
  GTASK_UINT64,
  GTASK_FLOAT32,
  GTASK_FLOAT64,
  GTASK_STRING
} gtask_type;

/* One typed value: a task argument or a result value. */
typedef struct gtask_value {
  gtask_type type; /* which member of v is meaningful */
  union {
    bool b;     /* GTASK_BOOL */
    int64_t i;  /* GTASK_INT, GTASK_INT8..GTASK_INT64 (in range of the type) */
    uint64_t u; /* GTASK_UINT, GTASK_UINT8..GTASK_UINT64 (in range of the type) */
    double f;   /* GTASK_FLOAT64; GTASK_FLOAT32 holds a value exact in float */
    struct {
      const char *ptr; /* bytes, NUL-terminated; may contain NULs before len */
      size_t len;      /* length without the terminator */
    } s;               /* GTASK_STRING */
  } v;
} gtask_value;

/* The type's g_task name ("int64"), or "?" for an invalid type. */
GTASK_EXTERN const char *gtask_type_name(gtask_type t);
/* Parses a g_task type name; 0 or GTASK_EINVAL. */
GTASK_EXTERN int gtask_type_parse(const char *name, gtask_type *out);

/* Value constructors.  gtask_str borrows s: it must outlive the value's use. */
static inline gtask_value gtask_bool(bool b) { gtask_value x; x.type = GTASK_BOOL; x.v.b = b; return x; }
static inline gtask_value gtask_int(int64_t i) { gtask_value x; x.type = GTASK_INT; x.v.i = i; return x; }
static inline gtask_value gtask_int8(int8_t i) { gtask_value x; x.type = GTASK_INT8; x.v.i = i; return x; }
static inline gtask_value gtask_int16(int16_t i) { gtask_value x; x.type = GTASK_INT16; x.v.i = i; return x; }
static inline gtask_value gtask_int32(int32_t i) { gtask_value x; x.type = GTASK_INT32; x.v.i = i; return x; }
static inline gtask_value gtask_int64(int64_t i) { gtask_value x; x.type = GTASK_INT64; x.v.i = i; return x; }
static inline gtask_value gtask_uint(uint64_t u) { gtask_value x; x.type = GTASK_UINT; x.v.u = u; return x; }
static inline gtask_value gtask_uint8(uint8_t u) { gtask_value x; x.type = GTASK_UINT8; x.v.u = u; return x; }
static inline gtask_value gtask_uint16(uint16_t u) { gtask_value x; x.type = GTASK_UINT16; x.v.u = u; return x; }
static inline gtask_value gtask_uint32(uint32_t u) { gtask_value x; x.type = GTASK_UINT32; x.v.u = u; return x; }
static inline gtask_value gtask_uint64(uint64_t u) { gtask_value x; x.type = GTASK_UINT64; x.v.u = u; return x; }
static inline gtask_value gtask_float32(float f) { gtask_value x; x.type = GTASK_FLOAT32; x.v.f = f; return x; }
static inline gtask_value gtask_float64(double f) { gtask_value x; x.type = GTASK_FLOAT64; x.v.f = f; return x; }
GTASK_EXTERN gtask_value gtask_str(const char *s);
static inline gtask_value gtask_strn(const char *s, size_t n) { gtask_value x; x.type = GTASK_STRING; x.v.s.ptr = s; x.v.s.len = n; return x; }

/* ---------------------------------------------------------------- task states */

typedef enum gtask_status {
  GTASK_PENDING = 1, /* queued (or scheduled), not yet taken */
  GTASK_STARTED = 2, /* a worker holds the lease and runs it */
  GTASK_RETRY = 3,   /* failed or timed out; scheduled to run again */
  GTASK_SUCCESS = 4, /* final: the handler returned values */
  GTASK_FAILURE = 5, /* final: error, timeout without retries left, or dead */
  GTASK_CANCELLED = 6 /* final: cancelled (gtask_client_cancel) before it ended
                         (issue 18; protocol version 5) */
} gtask_status;

/* "PENDING", ..., or "?" */
GTASK_EXTERN const char *gtask_status_name(gtask_status s);

/* Size of a task id buffer: a 36-character UUID and its terminator. */
#define GTASK_ID_SIZE 37

/* ---------------------------------------------------------------- redis config */

/* Where a broker or a backend keeps its data, mirroring g_task's
 * broker.NewRedisConf(url, password, db).  Opaque. */
typedef struct gtask_redis_conf gtask_redis_conf;

/* Creates a configuration.
 *   url      "host:port" (g_task's form), "redis://[user:pass@]host[:port][/db]",
 *            "unix:/path/to/sock[?db=N]" or "unix:///path[?db=N]"; see also
 *            gtask_redis_conf_set_tls (rediss://) and _set_cluster
 *            (redis-cluster://h1:p1,h2:p2).  NULL means
 *            "127.0.0.1:6379".
 *   password overrides the URL's password when non-NULL and non-empty.
 *   db       the db (0..100000) for a URL that names none ("host:port",
 *            "redis://host", a Sentinel URL without /db); -1 means "the
 *            URL's, else 0".  A db >= 0 that differs from the one the URL
 *            names ("redis://h/2" with db 3) is GTASK_EINVAL; the same one is
 *            accepted.
 * Defaults: pool size 16, expiry 24 h, connect timeout 2 s, key prefix "gtask".
 * Returns 0 and *out (free with gtask_redis_conf_free), or GTASK_EINVAL with the
 * reason in gtask_last_error(). */
GTASK_EXTERN int gtask_redis_conf_new(gtask_redis_conf **out, const char *url,
                                      const char *password, int db);
GTASK_EXTERN void gtask_redis_conf_free(gtask_redis_conf *c);
/* Maximum connections the pool keeps open (g_task SetPoolSize).  n >= 1. */
GTASK_EXTERN int gtask_redis_conf_set_pool_size(gtask_redis_conf *c, int n);
/* How long task messages (broker) or results (backend) live, in ms (g_task
 * SetExpireTime).  ms >= 1000. */
GTASK_EXTERN int gtask_redis_conf_set_expire_time(gtask_redis_conf *c, int64_t ms);
/* Timeout for connecting and for non-blocking commands, in ms.  ms >= 1. */
GTASK_EXTERN int gtask_redis_conf_set_timeout(gtask_redis_conf *c, int64_t ms);
/* Key prefix (default "gtask"): letters, digits, '_', '-', '.', ':' only. */
GTASK_EXTERN int gtask_redis_conf_set_prefix(gtask_redis_conf *c, const char *prefix);
/* Durability across a failover.  Redis replicates asynchronously: a write the
 * master acknowledged can vanish if it fails before a replica has it.  With
 * n > 0, every send, finish and dead-set requeue waits (WAIT) until n
 * replicas have it, at most timeout_ms.  A send or requeue that n replicas
 * did not confirm in time returns GTASK_EINDOUBT (it is applied on the
 * master, and lost if the master fails now: check the ids); a worker's finish
 * is kept and logged (if lost, the task is still leased on the new master,
 * and runs again).  Costs a round trip per such command.  n == 0: off (the
 * default). */
GTASK_EXTERN int gtask_redis_conf_set_wait_replicas(gtask_redis_conf *c, int n, int64_t timeout_ms);
/* TLS.  rediss://host:port/db?cacert=FILE&capath=DIR&cert=FILE&key=FILE&sni=NAME
 * in the URL, or this setter on any TCP conf: turns TLS on with the server's
 * certificate checked against ca_file (PEM; NULL: the URL's cacert, else the
 * system's CA store) and its name against the host (or sni), and, for mutual
 * TLS, presents cert_file with key_file (both or neither).  A NULL argument
 * keeps what the URL set.  Files are read when a broker or backend is
 * created: a missing or bad file is GTASK_EINVAL then, with the reason.
 * GTASK_EINVAL for a unix-socket conf. */
GTASK_EXTERN int gtask_redis_conf_set_tls(gtask_redis_conf *c, const char *ca_file,
                                          const char *cert_file, const char *key_file);
/* Skips the server certificate and name checks (rediss://...?insecure=1):
 * encryption without authentication, open to a man in the middle.  Every
 * broker or backend made with it logs a warning. */
GTASK_EXTERN int gtask_redis_conf_set_tls_insecure(gtask_redis_conf *c, bool insecure);
/* Redis Cluster.  "redis-cluster://[user:pass@]h1:p1,h2:p2,..." (or
 * "rediss-cluster://...?cacert=..." for TLS, with rediss://'s parameters) in
 * the URL, or this setter on a "host:port" or redis:// conf (the address
 * becomes the one seed node: a managed cluster's configuration endpoint).
 * Any reachable seed gives the slot map; commands then go to the master of
 * each queue's slot (keys carry the queue as their hash tag), following
 * MOVED and ASK redirections, retrying TRYAGAIN and CLUSTERDOWN a few times
 * with backoff, and reading the map again when nodes come or go.  db must be
 * 0.  GTASK_EINVAL for a unix-socket or Sentinel conf, or another db.
 * on == false turns it off again. */
GTASK_EXTERN int gtask_redis_conf_set_cluster(gtask_redis_conf *c, bool on);
/* A printable form of the address without the password, e.g.
 * "redis://127.0.0.1:6390/1".  Valid while c lives. */
GTASK_EXTERN const char *gtask_redis_conf_describe(const gtask_redis_conf *c);

/* ---------------------------------------------------------------- broker and backend */

/* A broker queues task messages; a backend stores states and results.  Both are
 * reference-counted handles, safe to share between threads, clients and servers:
 * each user takes its own reference, so you may free yours as soon as you have
 * handed it to a server or a client. */
typedef struct gtask_broker gtask_broker;
typedef struct gtask_backend gtask_backend;

/* Redis implementations.  They copy conf, connect once to check the address
 * (GTASK_ECONN with the address in gtask_last_error() when it fails) and load
 * their Lua scripts.  When a broker and a backend point at the same server and
 * db, finishing a task is one atomic script. */
GTASK_EXTERN int gtask_broker_redis_new(gtask_broker **out, const gtask_redis_conf *conf);
GTASK_EXTERN int gtask_backend_redis_new(gtask_backend **out, const gtask_redis_conf *conf);

/* In-process implementations, for single-process use and tests.  Tasks live in
 * memory only.  A memory broker and a memory backend are colocated: finishing
 * a task is one step.  Return NULL on out-of-memory.
 *
 * Other implementations: see <gtask/extend.h>. */
GTASK_EXTERN gtask_broker *gtask_broker_memory_new(void);
GTASK_EXTERN gtask_backend *gtask_backend_memory_new(void);
/* How long a memory backend keeps a task's record (state and result), in ms,
 * counted from each write of it, as the Redis backend's expire time
 * (gtask_redis_conf_set_expire_time; the default is the same, 24 h).  Once a
 * record has expired the task is unknown (GTASK_ENOTFOUND) and its id may be
 * sent again (gtask_send_conf_set_id).  Applies to records written from now
 * on.  ms >= 1000.  GTASK_EINVAL if backend is not a memory backend or ms is
 * out of range.  Thread-safe. */
GTASK_EXTERN int gtask_backend_memory_set_expire_time(gtask_backend *backend, int64_t ms);

/* Drop a reference. */
GTASK_EXTERN void gtask_broker_free(gtask_broker *b);
GTASK_EXTERN void gtask_backend_free(gtask_backend *b);

/* ---------------------------------------------------------------- task context */

/* What a running task can see of itself.  Valid only during the handler call,
 * and only on the thread that runs it. */
typedef struct gtask_ctx gtask_ctx;

/* The context of the task running on this thread, or NULL (for typed handlers,
 * which do not receive it as a parameter). */
GTASK_EXTERN gtask_ctx *gtask_ctx_current(void);
GTASK_EXTERN const char *gtask_ctx_task_id(const gtask_ctx *ctx);
GTASK_EXTERN const char *gtask_ctx_task_name(const gtask_ctx *ctx);
/* 1 on the first run; counts runs (timeouts and retries), not redeliveries. */
GTASK_EXTERN uint32_t gtask_ctx_attempt(const gtask_ctx *ctx);
/* Deadline in CLOCK_REALTIME milliseconds since the epoch, or 0 if none. */
GTASK_EXTERN int64_t gtask_ctx_deadline_ms(const gtask_ctx *ctx);
/* True once the deadline has passed, or once this worker has lost the task's
 * lease (another worker runs it now).  Long handlers should check it and return
 * early; whatever they return after that is discarded.  A graceful shutdown
 * does not cancel: running tasks are allowed to finish. */
GTASK_EXTERN bool gtask_ctx_cancelled(const gtask_ctx *ctx);
/* Sleeps up to ms, waking early when the task is cancelled.  Returns true if it
 * slept the whole time, false when cancelled. */
GTASK_EXTERN bool gtask_ctx_sleep(gtask_ctx *ctx, int64_t ms);

/* The most bytes of a progress message kept (longer ones are cut). */
#define GTASK_PROGRESS_MESSAGE_MAX 200

/* Reports how far the running task got (issue 18): done of total units
 * (total 0: unknown) and an optional message (NULL: none; control characters
 * become spaces; cut at GTASK_PROGRESS_MESSAGE_MAX bytes).  Only the latest
 * report is kept; the worker writes it with the task's state at most every
 * 500 ms, so a tight loop may call this as often as it likes.  Readers see it
 * with gtask_client_progress, `gtask status` and the bar of `gtask result
 * --wait`.  Works in the process pool too (the child sends it to its
 * supervisor).  GTASK_EINVAL: ctx NULL, done or total negative, or total
 * non-zero and below done; GTASK_ENOMEM. */
GTASK_EXTERN int gtask_ctx_progress(gtask_ctx *ctx, int64_t done, int64_t total,
                                    const char *message);
/* Sets the result values (copied; strings too).  May be called once per run. */
GTASK_EXTERN int gtask_ctx_return(gtask_ctx *ctx, const gtask_value *values, size_t n);
/* Records an error message for the task (printf format); the handler then
 * returns non-zero and the task ends as FAILURE with this message.  Returns the
 * GTASK_EHANDLER code so that `return gtask_ctx_fail(ctx, "...")` reads well. */
GTASK_EXTERN int gtask_ctx_fail(gtask_ctx *ctx, const char *fmt, ...) GTASK__PRINTF(2, 3);
/* Like gtask_ctx_fail, but asks for a retry if the task has retries left (with
 * the task's backoff); without retries left it ends as FAILURE. */
GTASK_EXTERN int gtask_ctx_retry(gtask_ctx *ctx, const char *fmt, ...) GTASK__PRINTF(2, 3);

/* A generic handler: args[0..nargs) are the task's arguments, valid during the
 * call.  Return 0 for SUCCESS (values set with gtask_ctx_return, or none), or
 * non-zero for FAILURE (message set with gtask_ctx_fail; without one the message
 * says which code the handler returned). */
typedef int (*gtask_handler_fn)(gtask_ctx *ctx, const gtask_value *args, size_t nargs,
                                void *udata);

/* ---------------------------------------------------------------- server */

/* A worker server: leases tasks from its broker's queues and runs them.
 * Thread safety: configure it from one thread before gtask_server_run();
 * gtask_server_shutdown() is safe from any thread and from a signal handler. */
typedef struct gtask_server gtask_server;

/* Creates a server on broker and backend (it takes its own reference to each).
 * Returns NULL on out-of-memory or NULL arguments. */
GTASK_EXTERN gtask_server *gtask_server_new(gtask_broker *broker, gtask_backend *backend);
/* Stops it if running (as gtask_server_shutdown) and frees it.  Must not be
 * called while another thread is still inside gtask_server_run(). */
GTASK_EXTERN void gtask_server_free(gtask_server *s);
GTASK_EXTERN const char *gtask_server_errmsg(const gtask_server *s);

/* Registers a handler under name (g_task Reg): 1..256 bytes without control
 * characters, else GTASK_EINVAL.  GTASK_EEXIST if the name is taken,
 * GTASK_ESTATE once running.  udata is passed to every call. */
GTASK_EXTERN int gtask_server_reg(gtask_server *s, const char *name, gtask_handler_fn fn,
                                  void *udata);
/* The queues to serve, comma-separated ("default" unless set), in one of two
 * forms (issue 18):
 *  - plain, "a,b,c": a strict priority -- each lease takes from a as much as
 *    it holds, then from b, then c;
 *  - weighted, "critical:6,default:3,low:1" (weights 1..1000): each lease
 *    tries the queues in a new order, by smooth weighted round robin, so that
 *    over time each queue goes first in proportion to its weight (here 60%,
 *    30%, 10% of the leases while all have work) and no queue is starved.
 *    See gtask_server_set_strict for a strict order by weight.
 * Either every queue has a weight or none: a queue whose name ends in
 * ":DIGITS" is written with a weight ("jobs:2:1").  GTASK_EINVAL (with
 * gtask_server_errmsg) for a bad name, a weight of 0 or above 1000, a queue
 * listed twice, weights on some queues only, or more than 256 queues; the
 * previous list is kept.  GTASK_ESTATE while running. */
GTASK_EXTERN int gtask_server_set_queues(gtask_server *s, const char *queues);
/* Strict priority for a weighted queue list (`gtask worker --strict`): every
 * lease tries the queues by weight, highest first (ties in list order), so a
 * lower queue runs only while all higher ones are empty -- and can starve.
 * Default false.  A plain list is always strict.  GTASK_ESTATE while running. */
GTASK_EXTERN int gtask_server_set_strict(gtask_server *s, bool strict);
/* Lease length in ms (default 10000, minimum 300).  A task whose worker stops
 * heartbeating for this long is handed to another worker.  Heartbeats run every
 * lease/3. */
GTASK_EXTERN int gtask_server_set_lease(gtask_server *s, int64_t ms);
/* How many times a task may be delivered and lost (worker died) before it goes
 * to the dead set as FAILURE (default 5, minimum 1). */
GTASK_EXTERN int gtask_server_set_max_deliveries(gtask_server *s, int n);
/* How long a task that ends FAILURE (its retries used up, or an error that is
 * never retried) stays in its queue's failed set, where
 * gtask_client_failed_list lists it and gtask_client_rerun runs it again
 * (default GTASK_FAILED_RETENTION_DEFAULT, 7 days; 0: not kept).  The Redis
 * and memory brokers keep at most 10000 per queue, dropping the oldest. */
#define GTASK_FAILED_RETENTION_DEFAULT (7 * 24 * 3600 * 1000LL)
GTASK_EXTERN int gtask_server_set_failed_retention(gtask_server *s, int64_t ms);
/* Most tasks leased by this worker and running or waiting for an executor at
 * once, which is also the largest batch leased in one round trip (1..1000).
 * Finished tasks whose outcome is still being written do not count (at most
 * 512 of them).  By default it adapts: at least 8 x concurrency (64..1000),
 * rising while tasks are short to about 10 ms of work per executor (from the
 * average run time of the last tasks), at most 1000 -- so a worker of
 * microsecond tasks leases and finishes them in batches of hundreds.  Set it
 * to fix it; lower it for long tasks shared by many workers. */
GTASK_EXTERN int gtask_server_set_prefetch(gtask_server *s, int n);
/* A unique worker name, used as the consumer name in Redis (default
 * "hostname:pid:random"). */
GTASK_EXTERN int gtask_server_set_name(gtask_server *s, const char *name);

/* Where handlers run. */
typedef enum gtask_pool {
  GTASK_POOL_THREADS = 0, /* executor threads in this process (default): fastest;
                             timeouts are cooperative (gtask_ctx_cancelled) */
  GTASK_POOL_PROCS = 1    /* one prefork child process per executor: a task that
                             loops, leaks, exit()s or crashes takes down only its
                             child, which is replaced; at the deadline the child
                             gets SIGTERM, then SIGKILL after the kill grace */
} gtask_pool;

/* Chooses the executor mode (before gtask_server_run).  In GTASK_POOL_PROCS
 * mode handlers run in forked children: they must not rely on state changed in
 * the parent after the child started, and their results travel back encoded. */
GTASK_EXTERN int gtask_server_set_pool(gtask_server *s, gtask_pool pool);
/* Process pool: replace a child after max_tasks tasks (0: never) or once its
 * resident memory reaches max_rss_mb (0: never) -- for leaky tasks. */
GTASK_EXTERN int gtask_server_set_child_recycle(gtask_server *s, uint32_t max_tasks,
                                                size_t max_rss_mb);
/* Process pool: address-space limit of each child in MB (RLIMIT_AS; 0: none,
 * else >= 16).  A task that allocates past it sees malloc fail. */
GTASK_EXTERN int gtask_server_set_child_memory_limit(gtask_server *s, size_t mb);
/* Process pool: time between the soft signal at a deadline and SIGKILL
 * (default 1000 ms). */
GTASK_EXTERN int gtask_server_set_kill_grace(gtask_server *s, int64_t ms);

/* What a server has done since it was created; counted once the outcome is
 * written to the backend. */
typedef struct gtask_server_counts {
  uint64_t succeeded; /* tasks finished SUCCESS */
  uint64_t failed;    /* tasks finished FAILURE (including dead-lettered) */
  uint64_t retried;   /* runs that ended in RETRY */
  uint64_t in_flight; /* leased now: queued in this worker or running */
} gtask_server_counts;

/* Reads the counts.  Thread-safe; may be called while the server runs. */
GTASK_EXTERN int gtask_server_get_counts(gtask_server *s, gtask_server_counts *out);

/* ---------------------------------------------------------------- lifecycle hooks
 *
 * Callbacks on what happens to the tasks a server runs, for metrics, logging
 * or tracing (issue 20).  Register them before gtask_server_run(). */

/* What happened.  Values are bits, so that a mask can select several. */
typedef enum gtask_event_type {
  GTASK_EV_STARTED = 1u << 0,    /* an executor starts running the task */
  GTASK_EV_SUCCEEDED = 1u << 1,  /* its SUCCESS is recorded */
  GTASK_EV_FAILED = 1u << 2,     /* its final FAILURE is recorded (a handler error,
                                    a timeout or crash without retries left, no
                                    handler, expired, malformed, dead-lettered) */
  GTASK_EV_RETRIED = 1u << 3,    /* the run failed and a retry is scheduled */
  GTASK_EV_TIMED_OUT = 1u << 4,  /* the run passed its deadline (then RETRIED or
                                    FAILED follows for the same run) */
  GTASK_EV_CRASHED = 1u << 5,    /* the run crashed its child process (process
                                    pool; then FAILED follows) */
  GTASK_EV_LEASE_LOST = 1u << 6, /* this worker's outcome was not recorded: the
                                    lease had been taken over by another worker
                                    (or the task was already final) */
  GTASK_EV_RECLAIMED = 1u << 7,  /* this worker took over a task whose worker was
                                    lost and queued it again (or, past the
                                    delivery cap, dead-lettered it: FAILED
                                    follows) */
  GTASK_EV_CANCELLED = 1u << 8,  /* a task this worker held was cancelled
                                    (gtask_client_cancel): fired once the worker
                                    has let it go -- its handler returned or its
                                    child was killed, or, prefetched, it was
                                    dropped unrun (attempt 0) -- and nothing of
                                    its run was recorded.  A task cancelled while
                                    queued or delayed fires no event anywhere:
                                    no worker held it.  A cancel that lands
                                    after the handler returned but before the
                                    worker checked (every 500 ms) is reported
                                    as LEASE_LOST, as the worker cannot tell it
                                    from a takeover */
  GTASK_EV_ALL = 0x1ffu
} gtask_event_type;

/* One event.  Every pointer is valid only during the callback. */
typedef struct gtask_event {
  gtask_event_type type; /* one bit */
  const char *id;        /* the task id */
  const char *name;      /* the task name ("" for a message that does not decode) */
  const char *queue;     /* the queue it came from */
  const char *worker;    /* the server's name (gtask_server_set_name) */
  uint32_t attempt;      /* the run: 1 for the first (0 when it never ran) */
  int64_t run_ns;        /* how long the handler ran, ns (0 for STARTED, and for
                            tasks that did not run) */
  int64_t queue_wait_ms; /* from when it was sent to when this run started, ms
                            (a delayed or retried task's wait includes its
                            delay); 0 when it did not run */
  const char *error;     /* the error message (FAILED, RETRIED, TIMED_OUT,
                            CRASHED), else NULL */
  int error_code;        /* its GTASK_E* code, else 0 */
} gtask_event;

typedef void (*gtask_event_fn)(const gtask_event *ev, void *udata);

/* Calls fn(ev, udata) for every event whose type is in the mask events (an OR
 * of GTASK_EV_*).  Up to 16 callbacks, called in the order registered.
 * GTASK_EINVAL for an empty mask or NULL fn, GTASK_ESTATE while running.
 *
 * Where they run: STARTED on the executor thread, just before the handler;
 * the others on the thread that wrote the outcome to Redis (the finisher, or
 * the executor when the worker is otherwise idle), right after the write,
 * for each task of the batch in turn.  No lock of the server is held, so a
 * callback may call any gtask function, but several callbacks run at the
 * same time on different threads: they must be thread-safe.
 *
 * What a slow hook costs: the finisher also renews the worker's leases.  A
 * callback that takes t delays the next task's STARTED by t (executor), and
 * the next batch of results and the next heartbeat by t for every task of
 * the batch (finisher): a callback slow enough to hold the finisher for a
 * third of the lease lets other workers take the leases over.  Keep them to
 * a few microseconds (a counter, a queue push) and hand anything slower to a
 * thread of your own.  With no callback registered the cost is one test of
 * a mask per task. */
GTASK_EXTERN int gtask_server_on(gtask_server *s, unsigned events, gtask_event_fn fn, void *udata);

/* ---------------------------------------------------------------- Prometheus metrics */

/* Collects Prometheus metrics of s (built on the lifecycle hooks) and, when
 * addr is non-NULL, serves them at http://ADDR/metrics in the text format,
 * from a thread of its own (libmicrohttpd), from now until gtask_server_free.
 * addr is "host:port" with an IPv4 address or "[IPv6]"; port 0 picks a free
 * one (gtask_server_metrics_port says which).  Call it before
 * gtask_server_run.  What it exports, per queue and task name:
 *   gtask_tasks_{started,succeeded,failed,retried,timed_out,crashed,
 *   lease_lost,reclaimed}_total, gtask_task_run_seconds and
 *   gtask_task_queue_wait_seconds (histograms); and gtask_executors,
 *   gtask_executors_busy, gtask_tasks_in_flight, gtask_redis_errors_total,
 *   gtask_redis_reconnects_total.  Costs: a mutex and a hash lookup per
 *   event (README, "Metrics", has the measured cost per task).
 * Returns 0; GTASK_EINVAL for a bad address; GTASK_ECONN when it cannot
 * listen there (the reason in gtask_server_errmsg); GTASK_ESTATE when s runs
 * or already collects. */
GTASK_EXTERN int gtask_server_serve_metrics(gtask_server *s, const char *addr);
/* The TCP port /metrics is served on, or 0 if it is not. */
GTASK_EXTERN int gtask_server_metrics_port(const gtask_server *s);
/* The metrics text as /metrics serves it, for an application that serves
 * HTTP itself (after gtask_server_serve_metrics(s, NULL)): a new
 * NUL-terminated string in *out (free with free()), *len without the NUL.
 * GTASK_ESTATE when s does not collect metrics. */
GTASK_EXTERN int gtask_server_metrics_text(gtask_server *s, char **out, size_t *len);

/* Runs n executor threads (g_task Run(n)) and blocks until shutdown, then
 * returns after running tasks finished (or their deadline passed), unstarted
 * leased tasks were handed back and results were stored.  Returns 0 after a clean
 * shutdown, or a GTASK_E* code if it could not start. */
GTASK_EXTERN int gtask_server_run(gtask_server *s, int n);
/* Asks a running server to stop.  Async-signal-safe and thread-safe; idempotent.
 * Returns at once; gtask_server_run() returns when the stop is complete. */
GTASK_EXTERN void gtask_server_shutdown(gtask_server *s);

/* ---------------------------------------------------------------- client */

/* Per-send options, mirroring g_task's client.NewSendConf(name). */
typedef struct gtask_send_conf gtask_send_conf;

/* name is the registered task name (copied): 1..256 bytes, no control
 * characters (bytes below 0x20, and 0x7f).  NULL on a bad name (the reason in
 * gtask_last_error()) or out-of-memory. */
GTASK_EXTERN gtask_send_conf *gtask_send_conf_new(const char *name);
GTASK_EXTERN void gtask_send_conf_free(gtask_send_conf *c);
/* A run that lasts longer than ms fails as timed out (g_task SetTimeout); 0: none. */
GTASK_EXTERN int gtask_send_conf_set_timeout(gtask_send_conf *c, int64_t ms);
/* Retries after a timeout or a handler's gtask_ctx_retry (g_task SetRetryNum);
 * gtask_send_conf_set_retry_on adds other outcomes. */
GTASK_EXTERN int gtask_send_conf_set_retry_num(gtask_send_conf *c, int n);
/* Which outcomes of a run are retried (while retries are left), an OR of: */
#define GTASK_RETRY_ON_TIMEOUT 1u /* the run passed its timeout (the default, as g_task) */
#define GTASK_RETRY_ON_ERROR 2u   /* the handler failed (returned non-zero) */
#define GTASK_RETRY_ON_CRASH 4u   /* process pool: the child died running it */
/* A handler's gtask_ctx_retry is always retried.  Never retried, whatever
 * this says, are errors a new run cannot fix: no handler registered under the
 * name (GTASK_ENOHANDLER), arguments of the wrong count or types
 * (GTASK_ETYPE), a message that does not decode (GTASK_EPROTO), a message
 * expired before it ran.  flags must be a non-empty OR of the above, else
 * GTASK_EINVAL.  Default: GTASK_RETRY_ON_TIMEOUT.  Workers older than this
 * call retry timeouts only. */
GTASK_EXTERN int gtask_send_conf_set_retry_on(gtask_send_conf *c, unsigned flags);
/* Priority within the queue: 0 (GTASK_PRIORITY_NORMAL, the default),
 * 1 (GTASK_PRIORITY_HIGH) or 2 (GTASK_PRIORITY_URGENT).  A worker leases from
 * the highest level of a queue that has tasks first, and in order of sending
 * within a level; the level stays with the task through delays, retries and
 * requeues.  Three levels, because each level is one more stream a worker
 * reads (README, "Priorities").  GTASK_EINVAL (the reason in
 * gtask_last_error()) outside 0..GTASK_PRIORITY_MAX, c unchanged.  A send
 * with a level above 0 fails, queueing nothing, with GTASK_EINVAL on a broker
 * that has no levels (a plugin table of extension ABI < 5), and with
 * GTASK_EVERSION where a live worker of the queue predates levels (Redis:
 * key schema < 5, which would never read them).  Periodic tasks run at level
 * 0: gtask_client_cron_add refuses a conf with a level (GTASK_EINVAL). */
#define GTASK_PRIORITY_NORMAL 0
#define GTASK_PRIORITY_HIGH 1
#define GTASK_PRIORITY_URGENT 2
#define GTASK_PRIORITY_MAX 2
GTASK_EXTERN int gtask_send_conf_set_priority(gtask_send_conf *c, int level);
/* Backoff before retry k (1-based): min(max_ms, first_ms * 2^(k-1)), with +-25%
 * jitter.  Defaults 1000 and 60000.  first_ms >= 1, max_ms >= first_ms. */
GTASK_EXTERN int gtask_send_conf_set_backoff(gtask_send_conf *c, int64_t first_ms,
                                             int64_t max_ms);
/* The queue to send to (default: the client's queue). */
GTASK_EXTERN int gtask_send_conf_set_queue(gtask_send_conf *c, const char *queue);
/* Do not run before now + ms. */
GTASK_EXTERN int gtask_send_conf_set_delay(gtask_send_conf *c, int64_t ms);
/* Sends with this task id (copied) instead of a random one: a task id in
 * lower-case UUID text form ("0f8fad5b-d9cb-469f-a165-70867728950e"), else
 * GTASK_EINVAL.  NULL goes back to random ids.  A send whose id belongs to a
 * task of the queue that is still queued, scheduled, running, retrying, or
 * whose final state is still kept (the backend's expire time) fails with
 * GTASK_EEXIST and changes nothing: the existing task is untouched.  Only for
 * gtask_client_send (a batch cannot share one id: GTASK_EINVAL). */
GTASK_EXTERN int gtask_send_conf_set_id(gtask_send_conf *c, const char *id);
/* For gtask_send_conf_set_unique: hold the lock until the task ends. */
#define GTASK_UNIQUE_UNTIL_DONE 0
/* Unique by content, as asynq's Unique: a send is refused with GTASK_EEXIST
 * while another task of the same name, queue and arguments (compared as
 * encoded, so int64 5 and int32 5 differ) holds the lock; the existing task is
 * untouched and its id is returned.  The lock is taken by the send:
 *   ttl_ms > 0                 it is held for ttl_ms, whatever the task does
 *                              meanwhile (it may end sooner: the lock stays);
 *   GTASK_UNIQUE_UNTIL_DONE    it is held until the task is final (SUCCESS or
 *                              FAILURE), and at most the backend's expire time
 *                              (24 h by default), so that a lost record cannot
 *                              lock the content for ever.
 * A negative ttl_ms is GTASK_EINVAL.  Without this call a send takes no lock. */
GTASK_EXTERN int gtask_send_conf_set_unique(gtask_send_conf *c, int64_t ttl_ms);

/* A client sends tasks and reads results.  Not thread-safe: use one per thread
 * or guard it.  It holds references to its broker and backend. */
typedef struct gtask_client gtask_client;

/* A client on broker and backend.  NULL on out-of-memory or NULL arguments. */
GTASK_EXTERN gtask_client *gtask_client_new(gtask_broker *broker, gtask_backend *backend);
/* A client that reuses a server's broker and backend (as g_task's does). */
GTASK_EXTERN gtask_client *gtask_client_from_server(gtask_server *s);
GTASK_EXTERN void gtask_client_free(gtask_client *c);
GTASK_EXTERN const char *gtask_client_errmsg(const gtask_client *c);
/* The queue that sends default to and that status/result/wait read from
 * ("default" unless set).  Results are kept per queue: read them with a client
 * set to the queue they were sent to. */
GTASK_EXTERN int gtask_client_set_queue(gtask_client *c, const char *queue);
/* Largest encoded task message accepted (default 512 KiB); GTASK_ETOOBIG beyond. */
GTASK_EXTERN int gtask_client_set_max_payload(gtask_client *c, size_t bytes);

/* Sends one task (g_task Send); writes its id into id_out.  The message is
 * queued and its state PENDING when this returns 0.  GTASK_EEXIST: conf has
 * an id (gtask_send_conf_set_id) that a task of the queue already has, or a
 * unique lock (gtask_send_conf_set_unique) that another task holds: nothing
 * was sent, and id_out holds the id of the task that exists.  GTASK_EINDOUBT: the
 * command reached Redis but its reply was lost (a timeout, a cut connection):
 * the task may or may not be queued.  id_out holds its id: check it with
 * gtask_client_status (GTASK_ENOTFOUND: not queued) before sending again, or
 * a retry may run the task twice.  On any other error id_out is "" and the
 * task was not queued. */
GTASK_EXTERN int gtask_client_send(gtask_client *c, const gtask_send_conf *conf,
                                   const gtask_value *args, size_t nargs,
                                   char id_out[GTASK_ID_SIZE]);
/* Sends n tasks of the same name and options, in one round trip per 512
 * tasks (each such chunk is queued atomically).  args holds n * nargs values
 * (task i's are args[i*nargs .. i*nargs+nargs)).  On 0 all are queued and
 * ids_out[0..n) filled.  On an error, the chunks before the failing one are
 * queued and keep their ids; every task that was not queued has ids_out[i]
 * set to "".  GTASK_EINDOUBT: the failing chunk's reply was lost, so its tasks
 * keep their ids and may or may not be queued -- check them with
 * gtask_client_status (GTASK_ENOTFOUND: not queued) before sending them
 * again; tasks after it were not sent ("").  So a caller that retries exactly
 * the tasks whose id is "" never duplicates one. */
GTASK_EXTERN int gtask_client_send_many(gtask_client *c, const gtask_send_conf *conf,
                                        size_t n, const gtask_value *args, size_t nargs,
                                        char (*ids_out)[GTASK_ID_SIZE]);
/* gtask_client_send_many, with the outcome of each task in rcs_out[0..n): 0
 * queued (ids_out[i] its id), GTASK_EEXIST a duplicate under
 * gtask_send_conf_set_unique (ids_out[i] the id of the task that holds the
 * lock; another task of the same batch counts), or the error that stopped
 * the batch before task i was queued (ids_out[i] "", or its id for
 * GTASK_EINDOUBT).  Returns 0 when every task was queued or a duplicate,
 * else the first error.  gtask_client_send_many itself returns GTASK_EEXIST
 * when any was a duplicate, after queueing the others. */
GTASK_EXTERN int gtask_client_send_batch(gtask_client *c, const gtask_send_conf *conf,
                                         size_t n, const gtask_value *args, size_t nargs,
                                         char (*ids_out)[GTASK_ID_SIZE], int *rcs_out);

/* Convenience: GTASK_SEND(cli, conf, id, gtask_int64(1), gtask_int64(2)).  It
 * takes at least one value (C11 has no empty array); for a task without
 * arguments call gtask_client_send(cli, conf, NULL, 0, id). */
#define GTASK_SEND(cli, conf, id_out, ...)                                    \
  gtask_client_send((cli), (conf), (const gtask_value[]){__VA_ARGS__},        \
                    sizeof((const gtask_value[]){__VA_ARGS__}) / sizeof(gtask_value), \
                    (id_out))

/* A task's result.  Free with gtask_result_free(); every pointer inside lives
 * as long as the result. */
typedef struct gtask_result {
  char id[GTASK_ID_SIZE];    /* the task id */
  gtask_status status;       /* its state when read */
  gtask_value *values;       /* the handler's result values (SUCCESS) */
  size_t nvalues;            /* number of values */
  char *error;               /* error message (FAILURE, RETRY), else NULL */
  int error_code;            /* GTASK_E* of the failure (e.g. ETASKTIMEOUT), else 0 */
  uint32_t attempts;         /* runs so far (1 for a task that ran once) */
} gtask_result;

GTASK_EXTERN void gtask_result_free(gtask_result *r);

/* The latest progress a running task reported (gtask_ctx_progress). */
typedef struct gtask_progress {
  int64_t done;  /* units done */
  int64_t total; /* units in all; 0: unknown */
  char message[GTASK_PROGRESS_MESSAGE_MAX + 1]; /* "" if none */
} gtask_progress;

/* Reads the latest progress task id reported into *out (issue 18): 0, or
 * GTASK_ENOTFOUND when there is none (the task never reported any, has not
 * started, is final -- final states drop it -- or is unknown), GTASK_EINVAL
 * for a backend that keeps none. */
GTASK_EXTERN int gtask_client_progress(gtask_client *c, const char *id, gtask_progress *out);

/* The task's state (g_task Status).  GTASK_ENOTFOUND for an unknown or expired id. */
GTASK_EXTERN int gtask_client_status(gtask_client *c, const char *id, gtask_status *out);
/* 1 if SUCCESS or FAILURE, 0 if not yet, or a negative code (g_task IsFinish). */
GTASK_EXTERN int gtask_client_is_finish(gtask_client *c, const char *id);
/* The result as it stands now (g_task GetTaskResult), whatever the state. */
GTASK_EXTERN int gtask_client_result(gtask_client *c, const char *id, gtask_result **out);
/* Waits up to timeout_ms (< 0: for ever) for the task to finish, without polling
 * (the waiter blocks on a notification that the finishing worker writes), then
 * returns its result.  GTASK_ETIMEDOUT if it has not finished by then,
 * GTASK_ENOTFOUND for an unknown or expired id: at once, except for one of the
 * last 16 tasks this client sent to its queue, on which wait blocks without a
 * check first (one round trip, not two). */
GTASK_EXTERN int gtask_client_wait(gtask_client *c, const char *id, int64_t timeout_ms,
                                   gtask_result **out);

/* ---------------------------------------------------------------- queue inspection
 *
 * What `gtask stats` and `gtask dead ...` show, for tools and dashboards.  These
 * calls read or change the broker's queue directly; like every client call they
 * are not thread-safe per client. */

/* A queue's counts.  The first four are read together but not atomically (a
 * task moving between them may be missed or counted twice); the finished
 * counters are kept by the broker as tasks finish and are never reset. */
typedef struct gtask_queue_stats {
  int64_t pending;   /* queued, ready to be leased */
  int64_t active;    /* leased by a worker: running, or waiting in its prefetch */
  int64_t scheduled; /* waiting for a due time: retries with backoff, delayed sends */
  int64_t dead;      /* in the dead set (see gtask_client_dead_list) */
  int64_t succeeded; /* tasks finished SUCCESS since the queue was first used */
  int64_t failed;    /* tasks finished FAILURE, dead-lettered ones included */
  int64_t cancelled; /* tasks cancelled (gtask_client_cancel), queued or running
                        (added at the end after 0.1.0; a custom broker of
                        GTASK_EXTEND_ABI < 6 leaves it 0) */
} gtask_queue_stats;

/* Reads the counts of queue (NULL: the client's queue) into *out.
 * GTASK_EINVAL for a bad queue name; GTASK_ECONN when Redis cannot be reached
 * (detail in gtask_client_errmsg). */
GTASK_EXTERN int gtask_client_stats(gtask_client *c, const char *queue, gtask_queue_stats *out);

/* The queues the broker holds anything of (tasks in any state, counters),
 * sorted: *names is a new array of *n names (NULL and 0 if none); free it
 * with gtask_queues_free().  On a Redis Cluster every master is scanned
 * (SCAN, a pass over all keys: for administration, not for a hot loop).
 * GTASK_EINVAL if the broker cannot list its queues (a custom broker without
 * the operation); GTASK_ECONN as for stats. */
GTASK_EXTERN int gtask_client_queues(gtask_client *c, char ***names, size_t *n);
/* Frees what gtask_client_queues returned.  Accepts NULL. */
GTASK_EXTERN void gtask_queues_free(char **names, size_t n);
/* Pauses queue (NULL: the client's queue) for every worker (issue 18):
 * workers stop leasing from it within a second (they ask twice a second),
 * and tasks they hold run on and finish normally; sends still queue, and
 * delayed tasks and retries still come due into it.  It stays paused, across
 * worker restarts, until gtask_client_queue_resume(), which workers see
 * within half a second.  GTASK_EINVAL for a bad queue name or a broker that
 * cannot pause. */
GTASK_EXTERN int gtask_client_queue_pause(gtask_client *c, const char *queue);
GTASK_EXTERN int gtask_client_queue_resume(gtask_client *c, const char *queue);
/* Whether queue (NULL: the client's queue) is paused, into *paused (false
 * when the broker cannot pause). */
GTASK_EXTERN int gtask_client_queue_paused(gtask_client *c, const char *queue, bool *paused);

/* One task of a dead set: a task lost too many times (its worker died each
 * time) or a message no worker could decode. */
typedef struct gtask_dead_entry {
  char id[GTASK_ID_SIZE]; /* the task id ("" if a malformed message had none) */
  char *name;             /* the task name, or NULL if the message is malformed */
  char *error;            /* its last error: from its result record, else from the
                             message; "" if neither says.  Never NULL. */
} gtask_dead_entry;

/* Lists the dead set of the client's queue, sorted by id: a new array in *out
 * of *n entries (NULL and 0 when empty), to free with gtask_dead_list_free().
 * Reads one result record per entry. */
GTASK_EXTERN int gtask_client_dead_list(gtask_client *c, gtask_dead_entry **out, size_t *n);
/* Frees what gtask_client_dead_list returned.  Accepts NULL. */
GTASK_EXTERN void gtask_dead_list_free(gtask_dead_entry *entries, size_t n);

/* Moves dead tasks of the client's queue back to it, to run again: the task
 * with id, or every dead task when id is NULL.  Each moved task gets a fresh
 * delivery count (it may be lost max_deliveries times again), a fresh message
 * expiry, and its state is reset to PENDING -- the one case where a final
 * FAILURE is replaced; its old result is dropped.  Waiters started before stay
 * blocked until the new run finishes.  *moved (may be NULL) receives how many
 * moved.  GTASK_ENOTFOUND when id is given and not in the dead set (or was
 * requeued or purged concurrently).  A message that does not decode (one a
 * worker buried as malformed) is never moved: no worker could run it, and
 * each time it failed again it would count in the queue's failed counter
 * again.  It stays in the dead set (gtask_client_dead_list() shows it,
 * gtask_client_dead_purge() removes it); with its id this is GTASK_EPROTO,
 * with id NULL it is left out of *moved. */
GTASK_EXTERN int gtask_client_dead_requeue(gtask_client *c, const char *id, size_t *moved);
/* Empties the dead set of the client's queue; *removed (may be NULL) receives
 * how many entries it held.  The tasks' FAILURE records stay until they expire. */
GTASK_EXTERN int gtask_client_dead_purge(gtask_client *c, size_t *removed);

/* ---------------------------------------------------------------- cron specs
 *
 * When a periodic task fires (issue 19).  A spec is
 *  - 5 fields "MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK", or 6 with seconds
 *    first "SEC MIN HOUR DOM MONTH DOW"; each field a comma list of *, N,
 *    N-M, each with an optional /STEP (N/STEP: from N to the end); months
 *    JAN..DEC and weekdays SUN..SAT by name (any case); weekday 0 or 7 is
 *    Sunday; ? is * in the day fields.  When both day fields are restricted
 *    a day matches if either does (Vixie cron);
 *  - @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly;
 *  - "@every DUR" (DUR: 90s, 5m, 1h30m, 2d; >= 1s): the multiples of DUR
 *    since the Unix epoch, so every scheduler computes the same instants.
 * Times are wall-clock times in the spec's IANA zone (default UTC), read from
 * /usr/share/zoneinfo (Debian's tzdata) by the library itself: no TZ
 * variable is read or set, so this is safe in threaded programs.
 * Daylight saving follows Vixie cron and cronie: a *fixed-time* spec
 * (neither minute nor hour starts with *) due in a spring-forward gap fires
 * once at the gap's end, and in a fall-back overlap once, at the first of the
 * two instants; a *wildcard* spec (and @hourly) follows the clock: gap times
 * do not fire, the repeated hour fires in both passes. */
typedef struct gtask_cron gtask_cron;

/* Parses spec in zone (NULL: "UTC").  Returns 0 and *out (free with
 * gtask_cron_free), GTASK_EINVAL for a malformed spec, a spec that can never
 * fire ("0 0 30 2 *") or an unknown zone, with the reason in
 * gtask_last_error() ("bad cron spec \"61 * * * *\": minute field \"61\": 61
 * is out of range (0-59)"), or GTASK_ENOMEM.  A gtask_cron is immutable:
 * threads may share it. */
GTASK_EXTERN int gtask_cron_new(gtask_cron **out, const char *spec, const char *zone);
GTASK_EXTERN void gtask_cron_free(gtask_cron *c);
/* The spec (trimmed) and the zone name it was made with. */
GTASK_EXTERN const char *gtask_cron_spec(const gtask_cron *c);
GTASK_EXTERN const char *gtask_cron_zone(const gtask_cron *c);
/* The first fire time strictly after after_ms (Unix ms) into *next_ms (a
 * whole second).  GTASK_ENOTFOUND if there is none within 12 years (or
 * before the year 10000). */
GTASK_EXTERN int gtask_cron_next(const gtask_cron *c, int64_t after_ms, int64_t *next_ms);

/* Size of a buffer for gtask_cron_format. */
#define GTASK_TIME_SIZE 40
/* Writes instant ms as ISO 8601 wall-clock time in c's zone with its UTC
 * offset: "2028-02-29T00:00:00Z" (offset 0), "2026-03-08T03:00:00-04:00";
 * milliseconds (".250") only when not 0.  c NULL: UTC.  GTASK_EINVAL when
 * size < GTASK_TIME_SIZE, GTASK_ERANGE outside the years 0..9999. */
GTASK_EXTERN int gtask_cron_format(const gtask_cron *c, int64_t ms, char *buf, size_t size);

/* ---------------------------------------------------------------- periodic tasks
 *
 * A periodic task (an *entry*) is a task -- name, arguments, send options,
 * queue -- and a cron spec in a zone.  Entries are declared in code
 * (gtask_scheduler_add) or stored in Redis (gtask_client_cron_add, `gtask cron
 * add`), where every scheduler finds them.  Any number of schedulers may run
 * (`gtask scheduler`, `gtask worker --scheduler`, gtask_scheduler_run): each
 * tick of each entry is queued exactly once, by one atomic script that checks
 * and advances the entry's last tick and queues the task with an id derived
 * from the entry name and the tick.  A second scheduler, a restart or a
 * scheduler killed with kill -9 never queues a tick twice or loses one.
 * Needs a Redis broker (GTASK_EINVAL otherwise).
 *
 * A tick more than 10 s late (no scheduler ran at the time) is *missed*; what
 * happens to missed ticks is the entry's choice: */
typedef enum gtask_missed {
  GTASK_MISSED_SKIP = 0,  /* they are skipped (the default) */
  GTASK_MISSED_LATEST = 1 /* the latest of them runs once, when a scheduler is back */
} gtask_missed;

/* Stores (or replaces) entry name in Redis: 1..128 bytes of [A-Za-z0-9_.:-].
 * Its tasks are sent as conf says (name, timeout, retries, backoff; the
 * queue is conf's, else the client's), with args[0..nargs) copied.  Ticks
 * after now fire.  Two send options act on each tick as on a send: a delay
 * (gtask_send_conf_set_delay) makes the tick's task due that long after the
 * tick queued it; a unique option (gtask_send_conf_set_unique) keeps a tick
 * from queueing its task while an earlier task with the same name and
 * arguments holds the content key (for the TTL, or until it is final), and
 * such a tick counts as skipped.  A conf with an id (gtask_send_conf_set_id)
 * is refused: each tick has its own.  GTASK_EINVAL for a bad name, spec,
 * zone, conf or argument (the reason in gtask_client_errmsg) -- nothing is
 * stored then. */
GTASK_EXTERN int gtask_client_cron_add(gtask_client *c, const char *name, const char *spec,
                                       const char *zone, gtask_missed missed,
                                       const gtask_send_conf *conf, const gtask_value *args,
                                       size_t nargs);
/* Removes entry name from Redis; GTASK_ENOTFOUND if there is none.  Its last
 * tick is kept, so an entry added again under the name never repeats one. */
GTASK_EXTERN int gtask_client_cron_remove(gtask_client *c, const char *name);

/* An entry stored in Redis, as gtask_client_cron_list reads it. */
typedef struct gtask_cron_entry {
  char *name;     /* entry name */
  char *spec;     /* cron spec */
  char *zone;     /* IANA zone */
  char *queue;    /* where its tasks go */
  char *task;     /* the task name */
  gtask_missed missed;
  int64_t created_ms;        /* when it was stored (unix ms) */
  int64_t last_ms;           /* the last tick done (unix ms), 0 if none yet */
  char last_id[GTASK_ID_SIZE]; /* the task id of the last tick queued, "" if none */
  int64_t last_at_ms;        /* when that task was queued, 0 if none */
  int64_t skipped;           /* ticks not queued: skipped as missed, or (with a
                                unique option) because an earlier tick's task
                                still held the unique key */
  int64_t next_ms;           /* the next tick (unix ms), 0 if it never fires again */
} gtask_cron_entry;

/* Lists the entries in Redis sorted by name (name NULL), or entry name alone
 * (GTASK_ENOTFOUND if none): a new array in *out of *n entries, to free with
 * gtask_cron_list_free. */
GTASK_EXTERN int gtask_client_cron_list(gtask_client *c, const char *name,
                                        gtask_cron_entry **out, size_t *n);
GTASK_EXTERN void gtask_cron_list_free(gtask_cron_entry *entries, size_t n);

/* A scheduler: queues the ticks of its entries (those added in code and,
 * unless turned off, those in Redis).  Configure it from one thread, then
 * gtask_scheduler_run; gtask_scheduler_shutdown is safe from any thread and
 * from a signal handler. */
typedef struct gtask_scheduler gtask_scheduler;

/* A scheduler on broker (a Redis broker) and backend (it takes its own
 * reference to each).  NULL on out-of-memory or NULL arguments. */
GTASK_EXTERN gtask_scheduler *gtask_scheduler_new(gtask_broker *broker, gtask_backend *backend);
/* Must not be called while gtask_scheduler_run runs. */
GTASK_EXTERN void gtask_scheduler_free(gtask_scheduler *s);
GTASK_EXTERN const char *gtask_scheduler_errmsg(const gtask_scheduler *s);
/* Declares an entry in code, as gtask_client_cron_add would store it (the
 * queue is conf's, else "default").  Its first tick is the first after the
 * scheduler first ran it, or after the last tick any scheduler did: so
 * every scheduler of a fleet should declare the same entries.  GTASK_EEXIST
 * for a name added twice, GTASK_ESTATE once running. */
GTASK_EXTERN int gtask_scheduler_add(gtask_scheduler *s, const char *name, const char *spec,
                                     const char *zone, gtask_missed missed,
                                     const gtask_send_conf *conf, const gtask_value *args,
                                     size_t nargs);
/* Whether to fire the entries stored in Redis too (default true); they are
 * re-read every second, so added and removed entries take effect within one.
 * An entry in code wins over one in Redis of the same name. */
GTASK_EXTERN int gtask_scheduler_set_registry(gtask_scheduler *s, bool on);
/* Runs until gtask_scheduler_shutdown: sleeps until the next tick of any
 * entry (or the next re-read), queues what is due, and carries on through
 * Redis outages (logged; ticks that come due meanwhile fire when Redis is
 * back, or count as missed).  Returns 0 after shutdown. */
GTASK_EXTERN int gtask_scheduler_run(gtask_scheduler *s);
/* Asks gtask_scheduler_run to return.  Async-signal-safe and thread-safe. */
GTASK_EXTERN void gtask_scheduler_shutdown(gtask_scheduler *s);

/* ---------------------------------------------------------------- limits
 *
 * Rate and concurrency limits across all workers (issue 19).  A limit is set
 * on a task name in a queue, or on a whole queue (task NULL), and holds for
 * every worker serving that queue together:
 *  - a rate: at most n runs start in any period_ms (a sliding window; see
 *    docs/PROTOCOL.md for why not a token bucket);
 *  - a concurrency: at most k run at once.  A slot is held as a lease: a
 *    worker killed while holding one gives it back when its lease expires.
 * A task over a limit is neither failed nor lost: it waits -- over a rate
 * until the window has room, for a slot until one is released -- and the
 * worker leases other work meanwhile.  Workers read the limits of their
 * queues at each housekeeping round (every lease/3): a change takes effect
 * within that.  Needs a Redis broker (GTASK_EINVAL otherwise). */

/* Sets the rate limit of task in queue (NULL: the client's queue; task NULL:
 * the whole queue): n >= 1 runs per period_ms >= 1.  Replaces an earlier
 * rate; keeps a concurrency limit.  GTASK_EINVAL (nothing stored) for a bad
 * value, queue or task name. */
GTASK_EXTERN int gtask_client_limit_rate(gtask_client *c, const char *queue, const char *task,
                                         int64_t n, int64_t period_ms);
/* Sets the concurrency limit: k >= 1 running at once. */
GTASK_EXTERN int gtask_client_limit_concurrency(gtask_client *c, const char *queue,
                                                const char *task, int64_t k);
/* Removes both limits of task (or of the queue); GTASK_ENOTFOUND if none. */
GTASK_EXTERN int gtask_client_limit_remove(gtask_client *c, const char *queue, const char *task);

/* A limit and how it is used now. */
typedef struct gtask_limit {
  char *queue;         /* the queue */
  char *task;          /* the task name, or NULL: the whole queue */
  int64_t rate;        /* runs per period, 0: no rate limit */
  int64_t period_ms;   /* the rate's period */
  int64_t concurrency; /* at most this many at once, 0: no concurrency limit */
  int64_t in_window;   /* runs started in the current window */
  int64_t running;     /* slots held now */
  int64_t waiting;     /* tasks waiting for a slot (those waiting for the
                          rate's window count as scheduled in the stats) */
} gtask_limit;

/* The limits of queue (NULL: the client's queue): a new array in *out of *n,
 * to free with gtask_limit_list_free. */
GTASK_EXTERN int gtask_client_limit_list(gtask_client *c, const char *queue, gtask_limit **out,
                                         size_t *n);
GTASK_EXTERN void gtask_limit_list_free(gtask_limit *limits, size_t n);
/* Lists the failed set of the client's queue: tasks that ended FAILURE (their
 * retries used up, or an error that is never retried) within the workers'
 * failed retention (gtask_server_set_failed_retention), as dead_list does:
 * sorted by id, each with its name and last error; free with
 * gtask_dead_list_free().  Tasks lost too often are in the dead set, not
 * here. */
GTASK_EXTERN int gtask_client_failed_list(gtask_client *c, gtask_dead_entry **out, size_t *n);
/* Runs a failed task again on purpose (issue 18): same id, fresh attempts
 * (its runs count from 1 again, with all its retries), state PENDING; the old
 * result is dropped and waiters started before keep waiting for the new one.
 * It is taken from the failed set, else from the dead set (as
 * gtask_client_dead_requeue of that id, with fresh attempts).  Errors:
 * GTASK_EINVAL not a task id; GTASK_ENOTFOUND an unknown or expired task, or
 * a failed one whose message is no longer kept; GTASK_ESTATE a task that has
 * not failed (PENDING, STARTED, RETRY, SUCCESS); GTASK_EPROTO a dead message
 * that does not decode.  Two reruns at once run it once (compare-and-swap). */
GTASK_EXTERN int gtask_client_rerun(gtask_client *c, const char *id);
/* Cancels a task of the client's queue (issue 18).  A queued or delayed task
 * (also one waiting for a retry) is removed and ends CANCELLED at once.  A task
 * a worker holds (running, or leased in its prefetch) ends CANCELLED at once
 * too, and the worker is told: within about a second, gtask_ctx_cancelled()
 * turns true in its handler (a prefetched one is not run; a process-pool
 * child is killed after the kill grace if it does not return), and whatever
 * it returns is dropped.  Cancel racing with the task's end ends in exactly
 * one final state: whichever is written first.
 * running (out, may be NULL): true when a worker held the task (the cancel
 * was requested of it), false when it was removed from the queue.
 * Errors: GTASK_EINVAL not a task id, or a broker that cannot cancel (only
 * colocated brokers can: Redis with broker and backend on one server, the
 * memory pair); GTASK_ENOTFOUND an unknown or expired task; GTASK_ESTATE a
 * task that is final already (SUCCESS, FAILURE, CANCELLED): nothing
 * changed. */
GTASK_EXTERN int gtask_client_cancel(gtask_client *c, const char *id, bool *running);

/* ---------------------------------------------------------------- seeing inside (issue 20)
 *
 * Which workers are alive and what they run, and which tasks wait in a
 * queue: what `gtask workers` and `gtask inspect` show, and what a dashboard
 * reads.  Client calls, not thread-safe per client.  A broker without these
 * operations (a custom one of <gtask/extend.h> before abi 4) makes them return
 * GTASK_EINVAL. */

/* A task an executor of a worker runs now. */
typedef struct gtask_worker_task {
  char id[GTASK_ID_SIZE]; /* task id */
  char *name;             /* task name */
  char *queue;            /* its queue */
  int64_t since_ms;       /* unix ms when its run started */
} gtask_worker_task;

/* A live worker, as its last heartbeat recorded it (every lease/3).  A
 * worker that dies is gone from the list a lease time after its last
 * heartbeat; one that stops cleanly is gone at once. */
typedef struct gtask_worker_info {
  char *name;               /* its name (gtask_server_set_name; "host:pid:rand") */
  char *host;               /* host name */
  int64_t pid;              /* process id on that host */
  char **queues;            /* the queues it serves, in priority order */
  size_t nqueues;
  int concurrency;          /* executors */
  char *pool;               /* "threads" or "procs" */
  char *version;            /* its libgtask version */
  int64_t started_ms;       /* unix ms when gtask_server_run started */
  int64_t heartbeat_ms;     /* unix ms of the record: its last heartbeat */
  int64_t lease_ms;         /* its lease: it counts as dead this long after heartbeat_ms */
  uint64_t succeeded;       /* tasks it finished SUCCESS since it was created */
  uint64_t failed;          /* tasks it finished FAILURE */
  uint64_t retried;         /* runs it ended in RETRY */
  gtask_worker_task *busy;  /* what its executors run now */
  size_t nbusy;
} gtask_worker_info;

/* Lists the live workers of every queue (of this client's broker): a new
 * array *out of *n entries sorted by name (NULL and 0 when none), freed with
 * gtask_workers_free.  A record that does not decode is skipped. */
GTASK_EXTERN int gtask_client_workers(gtask_client *c, gtask_worker_info **out, size_t *n);
GTASK_EXTERN void gtask_workers_free(gtask_worker_info *w, size_t n);

/* Where a task waits in its queue. */
typedef enum gtask_list_state {
  GTASK_LIST_PENDING = 1,   /* queued, ready, not leased */
  GTASK_LIST_ACTIVE = 2,    /* leased by a worker (running or in its prefetch) */
  GTASK_LIST_SCHEDULED = 3, /* waiting for its due time (delay, retry backoff) */
  GTASK_LIST_DEAD = 4,      /* in the dead set */
  GTASK_LIST_FAILED = 5     /* ended FAILURE and kept in the failed set (issue 18;
                               due_ms: until when it is kept) */
} gtask_list_state;

/* "pending", "active", "scheduled", "dead", "failed", or "?". */
GTASK_EXTERN const char *gtask_list_state_name(gtask_list_state s);
/* Parses one of those names; 0 or GTASK_EINVAL. */
GTASK_EXTERN int gtask_list_state_parse(const char *name, gtask_list_state *out);

/* A queued task as its message says. */
typedef struct gtask_task_info {
  char id[GTASK_ID_SIZE];  /* task id */
  gtask_list_state state;  /* where it is */
  char *name;              /* task name; NULL if the message does not decode */
  gtask_value *args;       /* its arguments (strings point into this entry) */
  size_t nargs;
  uint32_t attempts;       /* runs that ended before (timeouts, retries) */
  uint32_t lost;           /* deliveries lost with their worker */
  int32_t retry_max;       /* retries allowed */
  int64_t timeout_ms;      /* run time limit, 0: none */
  int64_t created_ms;      /* unix ms when sent */
  int64_t due_ms;          /* SCHEDULED: unix ms when due; else 0 */
  char *last_error;        /* the previous run's error, or the reason it does not
                              decode; NULL if none */
  char *worker;            /* ACTIVE: the worker holding its lease; else NULL */
  int priority;            /* its priority level, 0..GTASK_PRIORITY_MAX */
} gtask_task_info;

/* Lists up to limit (1..1000) tasks of the client's queue in state,
 * after the cursor `after` (NULL or "": from the start).  Writes a new array
 * *out of *n entries (free with gtask_task_info_free) and, in *next, a new
 * cursor for the next page (free with free()), or NULL after the last page.
 * A page may be shorter than limit and still not be the last: go on while
 * *next is set.  GTASK_EINVAL: a bad queue name, state, limit or cursor. */
GTASK_EXTERN int gtask_client_list(gtask_client *c, gtask_list_state state, const char *after,
                                   size_t limit, gtask_task_info **out, size_t *n, char **next);
GTASK_EXTERN void gtask_task_info_free(gtask_task_info *v, size_t n);

/* Everything known about task id of the client's queue: *result (its
 * state record, as gtask_client_result gives it; NULL if none) and *info (its
 * message and where it waits; NULL when no queue structure holds it, e.g. a
 * final task).  Either output may be NULL if not wanted.  GTASK_ENOTFOUND
 * when neither exists.  Finding a pending task scans its queue's stream. */
GTASK_EXTERN int gtask_client_inspect(gtask_client *c, const char *id, gtask_result **result,
                                      gtask_task_info **info);

/* ---------------------------------------------------------------- typed handlers
 *
 * A plain C function such as
 *
 *     int add(int64_t a, int64_t b, int64_t *sum) { *sum = a + b; return 0; }
 *
 * becomes a handler with one line at file scope and one line to register it:
 *
 *     GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))
 *     ...
 *     GTASK_REG(svr, add);            // registers "add"
 *
 * Inputs come first, then a pointer for each output; the function returns 0 for
 * success or non-zero for failure (it may call gtask_ctx_fail(gtask_ctx_current(),
 * ...) for a message).  Supported C types: bool, int8_t..int64_t, uint8_t..uint64_t,
 * float, double, const char * (inputs only; valid during the call) and char *
 * (outputs only: return a malloc'd string, the library frees it).  Up to 8 inputs
 * and 4 outputs.  An integer argument converts to any integer parameter it fits;
 * float32/float64 convert to each other; anything else, or a wrong count, fails
 * the task with a message naming the argument, the expected and the given type.
 */
#define GTASK_REG(svr, fn) gtask_server_reg((svr), #fn, fn##__gtask, NULL)

#define GTASK_HANDLER(fn, IN, OUT)                                                  \
  static int fn##__gtask(gtask_ctx *ctx__, const gtask_value *args__, size_t n__,   \
                         void *ud__) {                                              \
    (void)ud__;                                                                     \
    static const gtask_type in__[] = {GTASK__TYPES IN GTASK_STRING};                \
    if (gtask__check_args(ctx__, #fn, in__, sizeof(in__) / sizeof(in__[0]) - 1,     \
                          args__, n__) != 0)                                        \
      return GTASK_ETYPE;                                                           \
    GTASK__DECL_OUT OUT                                                             \
    int rc__ = GTASK__CALL(fn, IN, OUT);                                            \
    if (rc__ == 0) {                                                                \
      gtask_value res__[] = {GTASK__PACK OUT gtask_bool(0)};                        \
      rc__ = gtask_ctx_return(ctx__, res__, sizeof(res__) / sizeof(res__[0]) - 1);  \
    }                                                                               \
    GTASK__FREE_OUT OUT                                                             \
    return rc__;                                                                    \
  }

/* -- the machinery behind GTASK_HANDLER; not for direct use. */
GTASK_EXTERN int gtask__check_args(gtask_ctx *ctx, const char *fn, const gtask_type *want,
                                   size_t nwant, const gtask_value *args, size_t nargs);
GTASK_EXTERN int64_t gtask__arg_i(const gtask_value *v);
GTASK_EXTERN uint64_t gtask__arg_u(const gtask_value *v);
GTASK_EXTERN double gtask__arg_f(const gtask_value *v);
GTASK_EXTERN bool gtask__arg_b(const gtask_value *v);
GTASK_EXTERN const char *gtask__arg_s(const gtask_value *v);
static inline void gtask__free_out_str(char **p) { free(*p); }
static inline void gtask__free_out_none(void *p) { (void)p; }

#define GTASK__TYPE_OF(T)                                                           \
  _Generic((T){0}, bool: GTASK_BOOL, int8_t: GTASK_INT8, int16_t: GTASK_INT16,     \
           int32_t: GTASK_INT32, int64_t: GTASK_INT64, uint8_t: GTASK_UINT8,        \
           uint16_t: GTASK_UINT16, uint32_t: GTASK_UINT32, uint64_t: GTASK_UINT64,  \
           float: GTASK_FLOAT32, double: GTASK_FLOAT64, const char *: GTASK_STRING, \
           char *: GTASK_STRING)
#define GTASK__GET(T, v)                                                            \
  ((T)_Generic((T){0}, bool: gtask__arg_b, float: gtask__arg_f, double: gtask__arg_f, \
               uint8_t: gtask__arg_u, uint16_t: gtask__arg_u, uint32_t: gtask__arg_u, \
               uint64_t: gtask__arg_u, const char *: gtask__arg_s,                  \
               default: gtask__arg_i)(v))
#define GTASK__MAKE(T, x)                                                           \
  _Generic((T){0}, bool: gtask_bool, int8_t: gtask_int8, int16_t: gtask_int16,      \
           int32_t: gtask_int32, int64_t: gtask_int64, uint8_t: gtask_uint8,        \
           uint16_t: gtask_uint16, uint32_t: gtask_uint32, uint64_t: gtask_uint64,  \
           float: gtask_float32, double: gtask_float64, char *: gtask_str)(x)
#define GTASK__FREE(T, p)                                                           \
  _Generic((T){0}, char *: gtask__free_out_str, default: gtask__free_out_none)(p)

/* Preprocessor iteration over up to 8 types, with the index.  Strict C11: no
 * __VA_OPT__ (C23), and every variadic macro gets at least one argument for
 * its "...".  An empty list -- "()" for a handler without inputs or outputs --
 * is told from a one-type list by GTASK__ISEMPTY: its first element, placed
 * between GTASK__PROBE and "()", calls GTASK__PROBE (which yields a comma)
 * only when there is none.  So a type may not start with "(" or be the name
 * of a function-like macro; no C type name of the supported set is either. */
#define GTASK__CAT(a, b) GTASK__CAT_(a, b)
#define GTASK__CAT_(a, b) a##b
#define GTASK__FIRST(...) GTASK__FIRST_(__VA_ARGS__, ~)
#define GTASK__FIRST_(a, ...) a
#define GTASK__HAS_COMMA(...) GTASK__HAS_COMMA_(__VA_ARGS__, 1, 0, ~)
#define GTASK__HAS_COMMA_(a, b, n, ...) n
#define GTASK__PROBE(...) ,
#define GTASK__ISEMPTY(...) GTASK__ISEMPTY_(GTASK__FIRST(__VA_ARGS__))
#define GTASK__ISEMPTY_(first) GTASK__HAS_COMMA(GTASK__PROBE first ())
#define GTASK__NARG(...) GTASK__CAT(GTASK__NARG_, GTASK__ISEMPTY(__VA_ARGS__))(__VA_ARGS__)
#define GTASK__NARG_1(...) 0
#define GTASK__NARG_0(...) GTASK__NARG_N(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, ~)
#define GTASK__NARG_N(a1, a2, a3, a4, a5, a6, a7, a8, n, ...) n
#define GTASK__EACH(M, ...) GTASK__CAT(GTASK__EACH_, GTASK__NARG(__VA_ARGS__))(M, __VA_ARGS__)
#define GTASK__EACH_0(M, ...)
#define GTASK__EACH_1(M, a) M(0, a)
#define GTASK__EACH_2(M, a, b) M(0, a) M(1, b)
#define GTASK__EACH_3(M, a, b, c) GTASK__EACH_2(M, a, b) M(2, c)
#define GTASK__EACH_4(M, a, b, c, d) GTASK__EACH_3(M, a, b, c) M(3, d)
#define GTASK__EACH_5(M, a, b, c, d, e) GTASK__EACH_4(M, a, b, c, d) M(4, e)
#define GTASK__EACH_6(M, a, b, c, d, e, f) GTASK__EACH_5(M, a, b, c, d, e) M(5, f)
#define GTASK__EACH_7(M, a, b, c, d, e, f, g) GTASK__EACH_6(M, a, b, c, d, e, f) M(6, g)
#define GTASK__EACH_8(M, a, b, c, d, e, f, g, h) GTASK__EACH_7(M, a, b, c, d, e, f, g) M(7, h)

#define GTASK__TYPE_ITEM(i, T) GTASK__TYPE_OF(T),
#define GTASK__TYPES(...) GTASK__EACH(GTASK__TYPE_ITEM, __VA_ARGS__)
/* The call: fn(GET(T0, &args[0]), ..., &out0, ...), with a comma between the
 * inputs and the outputs only when both lists are non-empty (neither
 * GTASK__ISEMPTY is 1). */
#define GTASK__EXPAND(...) __VA_ARGS__
#define GTASK__CALL(fn, IN, OUT)                                                    \
  fn(GTASK__EACH(GTASK__ARG_ITEM, GTASK__EXPAND IN) GTASK__COMMA_IF_BOTH(IN, OUT)   \
         GTASK__OUTPTRS OUT)
#define GTASK__COMMA_IF_BOTH(IN, OUT)                                               \
  GTASK__CAT(GTASK__COMMA_IF_BOTH_, GTASK__CAT(GTASK__ISEMPTY IN, GTASK__ISEMPTY OUT))
#define GTASK__COMMA_IF_BOTH_00 ,
#define GTASK__COMMA_IF_BOTH_01
#define GTASK__COMMA_IF_BOTH_10
#define GTASK__COMMA_IF_BOTH_11
#define GTASK__ARG_ITEM(i, T) GTASK__CAT(GTASK__SEP_, i) GTASK__GET(T, &args__[i])
#define GTASK__SEP_0
#define GTASK__SEP_1 ,
#define GTASK__SEP_2 ,
#define GTASK__SEP_3 ,
#define GTASK__SEP_4 ,
#define GTASK__SEP_5 ,
#define GTASK__SEP_6 ,
#define GTASK__SEP_7 ,
/* Outputs: declared as locals out0.., passed as &out0.., packed, freed. */
#define GTASK__DECL_ITEM(i, T) T out##i##__ = (T){0};
#define GTASK__DECL_OUT(...) GTASK__EACH(GTASK__DECL_ITEM, __VA_ARGS__)
#define GTASK__PTR_ITEM(i, T) GTASK__CAT(GTASK__SEP_, i) &out##i##__
#define GTASK__OUTPTRS(...) GTASK__EACH(GTASK__PTR_ITEM, __VA_ARGS__)
#define GTASK__PACK_ITEM(i, T) GTASK__MAKE(T, out##i##__),
#define GTASK__PACK(...) GTASK__EACH(GTASK__PACK_ITEM, __VA_ARGS__)
#define GTASK__FREE_ITEM(i, T) GTASK__FREE(T, &out##i##__);
#define GTASK__FREE_OUT(...) GTASK__EACH(GTASK__FREE_ITEM, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* GTASK_GTASK_H */
