/* redis/internal.h -- what the Redis broker and backend share: a connection pool
 * that owns hiredis contexts, the embedded Lua scripts and the key schema.
 * Only files under src/redis/ include <hiredis.h>.
 *
 * Key schema (version GTASK__KEYS_VERSION, 5; docs/PROTOCOL.md section 2 is
 * the specification -- change both together, and bump GTASK__KEYS_VERSION if
 * an old worker could misread a key or miss a write it must make):
 *   P:{q}:stream   stream of queued messages, consumer group "workers"
 *   P:{q}:sched    zset: due ms -> task id (36 bytes) + message body
 *   P:{q}:dead     hash: task id -> message body
 *   P:{q}:stats    hash: succeeded, failed -- tasks finished (counters)
 *   P:{q}:pending  set: ids of sent tasks that no finish has ended yet; one
 *                  without a t:ID hash or n:ID list reads PENDING
 *   P:{q}:fence    integer: reclaims that took over a lease (reclaim.lua
 *                  increments it; while unchanged, finish.lua may skip its
 *                  lease check -- new in version 4)
 *   P:{q}:workers  hash: worker name -> "SCHEMA UNTIL_MS", the workers serving
 *                  the queue and their key schema (register.lua)
 *   P:{q}:t:ID     hash: s (status), a (attempts), r (record) -- states before
 *                  the final one; deleted when the task becomes final
 *   P:{q}:n:ID     list: the final state -- one element, the result record
 *                  (waiters block on it)
 *   P:{q}:cron:NAME hash: last, id, at, skipped -- the fire state of the
 *                  periodic task NAME that queues to q (cron_fire.lua)
 *   P:{q}:limits   hash: "t:<task>" or "q" -> "RATE PERIOD_MS CONC"; with
 *   P:{q}:rl:<t>, P:{q}:cc:<t>, P:{q}:lw:<t> a limit's admissions, slots and
 *                  waiting tasks (limits.c, limit_admit.lua, limit_slots.lua)
 *   P:cron         hash: periodic task name -> its definition (JSON); the
 *                  one key outside any queue's slot (cron.c)
 *   P:{q}:u:DIGEST string: the id of the task holding a unique key
 *                  (claim.lua; added without a schema bump:
 *                  only clients read or write it)
 *   P:workers      zset: worker name -> live until (unix ms)  (inspect.c)
 *   P:worker:NAME  string: the worker's JSON record, expiring then
 * P is the configured prefix, {q} the queue as a Redis Cluster hash tag. */
#ifndef GTASK_REDIS_INTERNAL_H
#define GTASK_REDIS_INTERNAL_H

#include "../internal.h"
#include "conf.h"
#include "conn.h"

#include <hiredis/hiredis.h>
#include <pthread.h>

#define GTASK__KEYS_VERSION 5
#define GTASK__GROUP "workers"

/* The embedded scripts: GTASK__LUA_<NAME> for src/redis/<name>.lua, and
 * gtask__lua_src[] / gtask__lua_name[] (generated at build time by
 * cmake/embed_lua.cmake; adding a script is adding its file). */
#include "lua_scripts.h"

typedef struct gtask__cluster gtask__cluster;

/* A pool of connections to one server and database.  Thread-safe.
 * Invariant: the pool mutex is never held while calling into hiredis.
 * In Redis Cluster mode (conf->cluster) the handle a broker or backend holds
 * has no connections of its own: `cluster` holds a pool per node and the slot
 * map (cluster.c), and each node's pool has `parent` set to that handle.  A
 * connection knows its pool (conn->owner): gtask__redis_put, _eval and _cmd
 * act on the pool of the connection they are given. */
typedef struct gtask__redis {
  gtask_redis_conf *conf; /* owned copy */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  gtask__conn **idle; /* idle connections, conf->pool_size slots */
  int nidle;
  int nopen;             /* connections open, idle or lent */
  gtask__conn **own_idle; /* idle own connections (gtask__redis_get_own), pool_size slots */
  int nown_idle;
  char sha[GTASK__LUA_COUNT][41];
  bool outage;           /* the last connect failed: log recovery once */
  int nlost;             /* connections dropped broken and not yet replaced (for
                            the reconnect counter, gtask__redis_reconnects) */
  SSL_CTX *tls;          /* the conf's TLS context (CA, client certificate), or NULL */
  /* Sentinel: the master's generation, bumped by the watcher thread on each
   * +switch-master of our master; a connection made under an older one is
   * closed instead of lent or kept (it may lead to the demoted master, which
   * takes writes until the sentinels convert it -- writes a failover loses). */
  atomic_uint gen;
  pthread_t watcher;
  bool watching;          /* the watcher thread runs */
  atomic_bool stop_watch;
  gtask__cluster *cluster;        /* Redis Cluster: the nodes and the slot map, or NULL */
  struct gtask__redis *parent;    /* a cluster node's pool: the cluster handle, or NULL */
  atomic_int live;                /* its connections alive anywhere (idle, lent, own) */
} gtask__redis;

/* Creates a pool and opens one connection to check the address and load the
 * scripts.  GTASK_ECONN (detail in gtask_last_error) if unreachable. */
int gtask__redis_new(const gtask_redis_conf *conf, gtask__redis **out);
void gtask__redis_free(gtask__redis *r);

/* Lends a connection for one command or pipeline (opening one if below the
 * pool size, else waiting for one, at most the conf's timeout: then
 * GTASK_ETIMEDOUT).  GTASK_ECONN if it cannot connect.  The detail goes to
 * gtask_last_error().  Never for a blocking command: see gtask__redis_get_own. */
int gtask__redis_get(gtask__redis *r, gtask__conn **out);
/* The master generation now (see gtask__redis.gen): a connection whose gen
 * differs leads to a master that is no longer the master. */
unsigned gtask__redis_gen(gtask__redis *r);
/* Returns a connection; a broken one (c->err set) is closed instead. */
void gtask__redis_put(gtask__redis *r, gtask__conn *c);
/* A connection outside the pool's count, for a command that blocks (a result
 * wait, a lease): reuses an idle one or opens one, never waits for the pool.
 * Return it with gtask__redis_put_own (or redisFree it, balancing the SIGPIPE
 * guard with gtask__sigpipe_leave). */
int gtask__redis_get_own(gtask__redis *r, gtask__conn **out);
void gtask__redis_put_own(gtask__redis *r, gtask__conn *c);

/* ---------------------------------------------------------------- Redis Cluster (cluster.c) */

/* CRC16/XMODEM, and the slot (0..16383) of a key (its {hash tag} if any). */
uint16_t gtask__crc16(const char *buf, size_t len);
unsigned gtask__key_slot(const char *key, size_t len);
/* The pool a command on `key` goes to: r itself unless r is a cluster handle,
 * then the master of the key's slot (reading the map first if it is stale). */
gtask__redis *gtask__redis_route(gtask__redis *r, const char *key, size_t len);
/* The same for a queue's keys (all in the slot of the queue's hash tag). */
gtask__redis *gtask__redis_for_queue(gtask__redis *r, const char *queue);
/* Makes *c a connection to the pool of queue: keeps *c if it is one already,
 * else returns it (if any) and borrows one.  On failure *c is NULL.  The
 * caller returns the last one with gtask__redis_put (NULL is fine). */
int gtask__redis_use(gtask__redis *r, const char *queue, gtask__conn **c);
/* The masters' pools now (r alone for a single server): up to max of them
 * into out; returns how many. */
size_t gtask__redis_masters(gtask__redis *r, gtask__redis **out, size_t max);
/* Marks the slot map of cluster handle r stale (NULL or not a cluster: no-op). */
void gtask__cluster_stale(gtask__redis *r);
/* Node n answered err, "MOVED slot host:port": slot's master is that node
 * now, and the map is stale (anything else: just stale). */
void gtask__cluster_moved(gtask__redis *n, const char *err);
/* Reads the map of cluster handle r now (or waits for the read under way):
 * for a caller that met a moved slot without being told where (UNBLOCKED). */
void gtask__cluster_refresh_now(gtask__redis *r);
/* The bound of the map's age (ms; 15 s): a call that finds it older reads it
 * again.  Also how long a node out of the map keeps its pool.  Tests lower it. */
extern atomic_llong gtask__cluster_max_age_ms;
/* How many node pools were freed, having left the map (for tests). */
extern atomic_ulong gtask__cluster_nodes_freed;
/* After a lease on cluster handle r failed with GTASK_ECONN (attempt: how
 * many times this was asked for the same lease): true if it is to be leased
 * again now, its error (gtask_last_error) saying that the queue's slot moved:
 * MOVED (the slot's entry corrected already), "UNBLOCKED the stream key no
 * longer exists" (its stream migrated while the lease blocked on it: the map
 * is read again), or ASK (the stream moved, the slot's move is not over:
 * after 5, 10 ... 160 ms, then no more).  So a worker goes to the new node at
 * once, without its pause after a failed fetch.  Counted in
 * gtask__cluster_lease_moves. */
bool gtask__redis_lease_moved(gtask__redis *r, int attempt);
extern atomic_ulong gtask__cluster_lease_moves;
/* Closes the idle connections of pool r (a node out of the map). */
void gtask__redis_close_idle(gtask__redis *r);
/* After node n answered `err` instead of running a command (hop: how many
 * times before), where to run it: 0 and *to (n itself after a pause, for
 * TRYAGAIN and CLUSTERDOWN) with *ask set if ASKING must precede it; -1 if
 * err is not one to follow (or too many hops). */
int gtask__cluster_redirect(gtask__redis *n, const char *err, int hop, gtask__redis **to, bool *ask);
/* How many MOVED, ASK, TRYAGAIN and CLUSTERDOWN replies were followed, in
 * that order (for tests and logs). */
extern atomic_ulong gtask__cluster_followed[4];
int gtask__cluster_new(gtask__redis *r);
void gtask__cluster_free(gtask__cluster *cl);
/* A pool for one node of cluster handle parent (no connection yet). */
int gtask__redis_node_new(gtask__redis *parent, const char *host, int port, gtask__redis **out);
/* Loads the scripts on r's server (SCRIPT LOAD). */
int gtask__redis_load_scripts(gtask__redis *r);

/* The one place that maps a Redis error reply to a gtask code: a server that
 * cannot serve now but will (LOADING, BUSY, OOM, READONLY, MASTERDOWN,
 * TRYAGAIN, CLUSTERDOWN) is GTASK_ECONN, retried like a refused connection;
 * NOPERM is GTASK_ENOPERM; anything else (WRONGTYPE, a script's error) is
 * GTASK_EREDIS, permanent.  NOSCRIPT and NOGROUP are handled where they
 * occur (reload the scripts; create the group). */
int gtask__redis_reply_rc(const char *err);

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
 * GTASK_ECONN (I/O error before the command was sent: c is broken),
 * GTASK_EINDOUBT (sent, but no reply came: Redis may have run it; c is
 * broken), or the code of an error reply (gtask__redis_reply_rc; the reply is
 * freed), recording the detail in gtask_last_error(). */
int gtask__redis_cmd(gtask__redis *r, gtask__conn *c, gtask__argv *a, redisReply **reply);
/* The same, sent in one write after the npre commands already appended to c
 * (redisAppendCommand); their replies go to pre[0..npre) (NULL where none:
 * on a connection error all are NULL), the caller frees them. */
int gtask__redis_cmd_after(gtask__redis *r, gtask__conn *c, size_t npre, redisReply **pre,
                           gtask__argv *a, redisReply **reply);

/* A command in two halves, for one awaited on several connections at once
 * (gtask__conn_wait_any): send writes it (GTASK_ECONN if it could not: c is
 * broken); recv reads its reply as gtask__redis_cmd does (what names the
 * command in messages). */
int gtask__redis_send(gtask__redis *r, gtask__conn *c, gtask__argv *a);
int gtask__redis_recv(gtask__redis *r, gtask__conn *c, const char *what, redisReply **reply);

/* gtask__conn_command for a command on one key of c's pool, that on a
 * cluster follows MOVED and ASK to the node that has the key (on a
 * connection borrowed there and returned) and retries TRYAGAIN and
 * CLUSTERDOWN, as script calls do.  Never for a blocking command.  The reply
 * (an error reply too: also a redirection it could not follow), or NULL with
 * c->err set (c failed). */
redisReply *gtask__redis_command(gtask__conn *c, const char *fmt, ...);

/* How many times each script was run (gtask__redis_eval calls), for tests
 * that check every script ran on a cluster. */
extern atomic_ulong gtask__eval_count[GTASK__LUA_COUNT];

/* Runs script s with nkeys keys taken from the front of a (after which come
 * the ARGV).  Reloads the scripts and retries once on NOSCRIPT.  On a cluster
 * node, keys not all in one slot are GTASK_EINVAL, not sent. */
int gtask__redis_eval(gtask__redis *r, gtask__conn *c, gtask__script s, size_t nkeys,
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
/* GTASK_EVERSION, with the detail, for a push.lua or claim.lua reply
 * {0, worker, schema}: a send at level `level` refused (broker.c). */
int gtask__redis_levels_refused(const gtask__redis *r, const redisReply *rep, const char *q,
                                int level);
/* The priority level a task message carries in its "pr" field (0 without). */
int gtask__redis_body_level(const char *body, size_t len);
size_t gtask__redis_key(const gtask__redis *r, char *buf, size_t size, const char *queue,
                        const char *suffix, const char *id);
#define GTASK__KEY_MAX 256

/* The pool of a Redis broker (gtask_broker_redis_new), or NULL for any other
 * broker: what the Redis-only features (cron.c) talk to. */
gtask__redis *gtask__redis_broker_pool(const gtask_broker *b);

/* Rate and concurrency limits, worker side (limits.c): a Redis broker's
 * hooks around lease, finish, heartbeat and housekeeping.  Thread-safe. */
typedef struct gtask__limits gtask__limits;
gtask__limits *gtask__limits_new(void);
void gtask__limits_free(gtask__limits *l);
/* The worker's lease, which a concurrency slot's lease follows. */
void gtask__limits_set_lease(gtask__limits *l, int64_t lease_ms);
/* Housekeeping of a queue: re-reads its limits, sweeps expired slots and
 * wakes the tasks waiting for them. */
int gtask__limits_housekeep(gtask__limits *l, gtask__redis *r, const char *queue);
/* Before a lease: brings back the tasks this broker deferred that are due,
 * and returns wait_ms shortened to the next such due time. */
int64_t gtask__limits_before_lease(gtask__limits *l, gtask__redis *r, const char *const *queues,
                                   size_t nq, int64_t wait_ms);
/* After a lease: admits msgs[0..*n) or makes them wait; the admitted stay
 * (in order), the others are freed and *n shrinks. */
int gtask__limits_admit(gtask__limits *l, gtask__redis *r, gtask_msg **msgs, size_t *n);
/* After a finish / a heartbeat: releases / extends the slots the deliveries hold. */
void gtask__limits_release(gtask__limits *l, gtask__redis *r, gtask_msg *const *msgs, size_t n);
void gtask__limits_extend(gtask__limits *l, gtask__redis *r, gtask_msg *const *msgs, size_t n);
/* Claims (claim.c, claim.lua): the id of each claim, and its unique key if
 * any, named with sr's prefix; with queue, also queues each claimed message
 * in qr's stream or schedule in the same script (colocated: qr and sr are
 * the same server and db).  Runs on a connection of qr. */
int gtask__redis_claim(gtask__redis *qr, gtask__redis *sr, bool queue, gtask_claim *cs, size_t n);
/* Cancels (cancel.c, cancel.lua): the colocated broker's cancel() and the
 * backend's finals() (<gtask/extend.h>, abi 5) on a pool. */
int gtask__redis_cancel(gtask__redis *r, const char *queue, const char *id, const char *rec,
                        size_t len, bool *running);
int gtask__redis_finals(gtask__redis *r, gtask_msg *const *msgs, size_t n, bool *out);
/* inspect.c: the broker operations worker_put, worker_list, list and find
 * (<gtask/extend.h>, abi 4) on a pool. */
int gtask__redis_worker_put(gtask__redis *r, const char *consumer, const char *record, size_t len,
                            int64_t until_ms);
int gtask__redis_worker_list(gtask__redis *r, char ***out, size_t *n);
int gtask__redis_list(gtask__redis *r, const char *queue, int state, const char *cursor,
                      size_t limit, gtask_msg ***out, size_t *n, char **next);
int gtask__redis_find(gtask__redis *r, const char *queue, const char *id, int *state,
                      gtask_msg **out);

/* The Redis backend's impl, for a colocated broker (same server and db). */
typedef struct gtask__redis_backend gtask__redis_backend;
extern const gtask_backend_ops gtask__redis_backend_ops;
gtask__redis *gtask__redis_backend_pool(gtask__redis_backend *b);

#endif /* GTASK_REDIS_INTERNAL_H */
