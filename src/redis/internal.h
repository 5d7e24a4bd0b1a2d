/* redis/internal.h -- what the Redis broker and backend share: a connection pool
 * that owns hiredis contexts, the embedded Lua scripts and the key schema.
 * Only files under src/redis/ include <hiredis.h>.
 *
 * Key schema (version 3; docs/PROTOCOL.md is the specification -- change both
 * together, and bump GTASK__KEYS_VERSION if an old worker could misread a key):
 *   P:{q}:stream   stream of queued messages, consumer group "workers"
 *   P:{q}:sched    zset: due ms -> task id (36 bytes) + message body
 *   P:{q}:dead     hash: task id -> message body
 *   P:{q}:stats    hash: succeeded, failed -- tasks finished (counters)
 *   P:{q}:pending  set: ids of queued tasks that have no state hash yet (PENDING)
 *   P:{q}:t:ID     hash: s (status), a (attempts), r (record) -- states before
 *                  the final one; deleted when the task becomes final
 *   P:{q}:n:ID     list: the final state -- one element, the result record
 *                  (waiters block on it)
 * P is the configured prefix, {q} the queue as a Redis Cluster hash tag. */
#ifndef GTASK_REDIS_INTERNAL_H
#define GTASK_REDIS_INTERNAL_H

#include "../internal.h"
#include "conf.h"

#include <hiredis/hiredis.h>
#include <pthread.h>

#define GTASK__KEYS_VERSION 4
#define GTASK__GROUP "workers"

/* The embedded scripts (generated from src/redis/NAME.lua at build time). */
typedef enum gtask__script {
  GTASK__LUA_PUSH,
  GTASK__LUA_FINISH,
  GTASK__LUA_EXTEND,
  GTASK__LUA_PROMOTE,
  GTASK__LUA_STARTED,
  GTASK__LUA_STORE,
  GTASK__LUA_DEAD_REQUEUE,
  GTASK__LUA_DEAD_PURGE,
  GTASK__LUA_RESET,
  GTASK__LUA_RECLAIM,
  GTASK__LUA_COUNT
} gtask__script;

/* A pool of connections to one server and database.  Thread-safe.
 * Invariant: the pool mutex is never held while calling into hiredis. */
typedef struct gtask__redis {
  gtask_redis_conf *conf; /* owned copy */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  redisContext **idle; /* idle connections, conf->pool_size slots */
  int nidle;
  int nopen;             /* connections open, idle or lent */
  char sha[GTASK__LUA_COUNT][41];
  bool outage;           /* the last connect failed: log recovery once */
} gtask__redis;

/* Creates a pool and opens one connection to check the address and load the
 * scripts.  GTASK_ECONN (detail in gtask_last_error) if unreachable. */
int gtask__redis_new(const gtask_redis_conf *conf, gtask__redis **out);
void gtask__redis_free(gtask__redis *r);

/* Lends a connection (opening one if below the pool size, else waiting).
 * errbuf receives the reason on GTASK_ECONN. */
int gtask__redis_get(gtask__redis *r, redisContext **out);
/* Returns a connection; a broken one (c->err set) is closed instead. */
void gtask__redis_put(gtask__redis *r, redisContext *c);

/* A growable argument vector for redisCommandArgv / EVALSHA calls.  Integer
 * arguments are formatted into its own storage. */
typedef struct gtask__argv {
  const char **v;
  size_t *len;
  size_t n, cap;
  char *num;      /* storage for formatted integers: 21 bytes each */
  size_t nnum, capnum;
  bool oom;       /* an append failed: the vector is unusable */
} gtask__argv;

void gtask__argv_init(gtask__argv *a);
void gtask__argv_reset(gtask__argv *a);
void gtask__argv_free(gtask__argv *a);
void gtask__argv_add(gtask__argv *a, const char *s, size_t len);
void gtask__argv_adds(gtask__argv *a, const char *s);
void gtask__argv_addi(gtask__argv *a, int64_t i);

/* Runs a command on c.  Returns 0 and *reply (free with freeReplyObject), or
 * GTASK_ECONN (I/O error: c is broken) or GTASK_EREDIS (error reply, freed),
 * logging and recording the detail. */
int gtask__redis_cmd(gtask__redis *r, redisContext *c, gtask__argv *a, redisReply **reply);
/* The same, sent in one write after the npre commands already appended to c
 * (redisAppendCommand); their replies go to pre[0..npre) (NULL where none:
 * on a connection error all are NULL), the caller frees them. */
int gtask__redis_cmd_after(gtask__redis *r, redisContext *c, size_t npre, redisReply **pre,
                           gtask__argv *a, redisReply **reply);

/* Runs script s with nkeys keys taken from the front of a (after which come
 * the ARGV).  Reloads the scripts and retries once on NOSCRIPT. */
int gtask__redis_eval(gtask__redis *r, redisContext *c, gtask__script s, size_t nkeys,
                      gtask__argv *a, redisReply **reply);

/* Script replies (reply.c).  A reply not of the shape the script returns is
 * GTASK_EPROTO, with a message naming the script and what came back: */
/* ... proto_error records it: rep is not `want` (e.g. "an array of 3"); */
int gtask__redis_proto_error(const gtask__redis *r, const char *script, const redisReply *rep,
                             const char *want);
/* ... int_array checks that rep is an array of exactly n integers (0 if so). */
int gtask__redis_int_array(const gtask__redis *r, const char *script, const redisReply *rep,
                           size_t n);

/* Builds "P:{q}:suffix" or "P:{q}:suffix:id" into buf; returns its length. */
size_t gtask__redis_key(const gtask__redis *r, char *buf, size_t size, const char *queue,
                        const char *suffix, const char *id);
#define GTASK__KEY_MAX 256

extern const char gtask__lua_push[], gtask__lua_finish[], gtask__lua_extend[],
    gtask__lua_promote[], gtask__lua_started[], gtask__lua_store[],
    gtask__lua_dead_requeue[], gtask__lua_dead_purge[], gtask__lua_reset[], gtask__lua_reclaim[];

/* The Redis backend's impl, for a colocated broker (same server and db). */
typedef struct gtask__redis_backend gtask__redis_backend;
extern const gtask_backend_ops gtask__redis_backend_ops;
gtask__redis *gtask__redis_backend_pool(gtask__redis_backend *b);

#endif /* GTASK_REDIS_INTERNAL_H */
