/* redis_fixture.h -- a private redis-server for one test.
 *
 * The harness owns its redis-server (STYLE.md point 23): gt_redis_start() makes a
 * temp dir, writes a redis.conf there, probes a free port on 127.0.0.1 (never
 * 6379), starts `redis-server <dir>/redis.conf` as a child of the test process
 * (so it is in the test's process group and dies with it), and returns once the
 * server answers PING.  Typical use:
 *
 *     gt_redis *r = gt_redis_start(NULL);
 *     ASSERT_NOT_NULL(r);
 *     gtask_redis_conf *conf;
 *     ASSERT_OK(gtask_redis_conf_new(&conf, gt_redis_url(r), NULL, -1));
 *     ...
 *     ASSERT_OK(gt_redis_restart(r));        // same port, same dir
 *     ...
 *     gt_redis_stop(r);
 *
 * The generated redis.conf holds: bind 127.0.0.1, port P, unixsocket
 * <dir>/redis.sock (perm 700), save "", appendonly no, dir <dir>, pidfile,
 * logfile <dir>/redis.log, daemonize no, protected-mode no.  extra_conf lines
 * are appended, so they override these (e.g. "appendonly yes\nappendfsync
 * always\n").  The server is found through $GTASK_REDIS_SERVER, else PATH.
 *
 * TLS (issue 16): gt_redis_start_tls() starts a server that speaks TLS only on
 * its TCP port (port 0, tls-port P) with certificates from tls_fixture.h; its
 * readiness is checked over TLS.  The unix socket stays plain, so the harness's
 * own hiredis connections (gt_redis_connect, gt_redis_restart's SHUTDOWN) go
 * through it, and tests can inspect keys with hiredis 0.14, which has no TLS.
 * Sentinels: sentinel_fixture.h builds on gt_redis_start_opts(.sentinel).
 *
 * The temp dir is made inside the test's own temp dir ($GTASK_TEST_TMPDIR, set
 * by the runner) when that path is short enough for a unix socket, else under
 * $TMPDIR or /tmp.
 *
 * Every server still running when the test process exits (a failed assertion
 * calls exit()) is stopped by an atexit handler, and the test runner kills the
 * test's process group afterwards in any case.  A forked child of the test
 * process never stops the parent's servers (not in gt_redis_stop, not at exit).
 *
 * Not thread-safe: start and stop servers from the test's main thread.
 * Waits are scaled by GTASK_TEST_TIMEOUT_MULTIPLIER.
 */
#ifndef GTASK_TEST_REDIS_FIXTURE_H
#define GTASK_TEST_REDIS_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

typedef struct gt_redis gt_redis;
typedef struct gt_certs gt_certs; /* tls_fixture.h */

/* Starts a server; extra_conf: more redis.conf lines, or NULL.  Returns NULL
 * after printing the reason (redis-server not found, failed to start: the tail
 * of its log) on stderr.  Free with gt_redis_stop(). */
gt_redis *gt_redis_start(const char *extra_conf);

/* Starts a server that accepts TLS connections only, on gt_redis_tls_port():
 * the conf gets port 0, tls-port P, tls-cert-file server_cert, tls-key-file
 * server_key, tls-ca-cert-file certs->ca (the CA that client certificates must
 * chain to) and tls-auth-clients auth_clients, then extra_conf.
 *   server_cert, server_key  any pair from certs (certs->expired_cert ...), or
 *                            NULL for certs->server_cert / server_key;
 *   auth_clients             "no", "optional" or "yes"; NULL means "yes".
 * The server is ready when it answers PING and INFO over TLS to a client that
 * presents certs->client_cert and does not verify the server (so a server with
 * a bad certificate starts too).  Returns NULL (reason on stderr) as
 * gt_redis_start() does.  certs must outlive the server. */
gt_redis *gt_redis_start_tls(const gt_certs *certs, const char *server_cert,
                             const char *server_key, const char *auth_clients,
                             const char *extra_conf);

/* Everything gt_redis_start_opts() can vary; zero fields mean the defaults of
 * gt_redis_start(NULL).  Use designated initialisers:
 *     gt_redis_opts o = {.sentinel = true, .extra_conf = "sentinel monitor ..."}; */
typedef struct gt_redis_opts {
  const char *extra_conf;       /* more conf lines, appended last, or NULL */
  bool sentinel;                /* run `redis-server CONF --sentinel`; its conf is
                                   written once and then left to the sentinel,
                                   which rewrites it (a restart keeps its state) */
  bool cluster;                 /* cluster-enabled yes (cluster_fixture.h): a port
                                   <= 55535 whose bus port (+10000) is free */
  const gt_certs *certs;        /* non-NULL: TLS only, as gt_redis_start_tls() */
  const char *tls_cert;         /* with certs: server certificate, default
                                   certs->server_cert */
  const char *tls_key;          /* its key, default certs->server_key */
  const char *tls_auth_clients; /* "no", "optional" or "yes" (the default) */
} gt_redis_opts;

/* Starts a server as o says (o may be NULL).  As gt_redis_start() otherwise. */
gt_redis *gt_redis_start_opts(const gt_redis_opts *o);

/* "redis://127.0.0.1:PORT/0"; valid while r lives (the port never changes).
 * NULL for a TLS server, which has no plain TCP port. */
const char *gt_redis_url(const gt_redis *r);
/* "rediss://127.0.0.1:TLS_PORT/0" for a TLS server, else NULL; valid while r
 * lives. */
const char *gt_redis_tls_url(const gt_redis *r);
/* "unix:<dir>/redis.sock?db=0"; valid while r lives.  Plain even with TLS. */
const char *gt_redis_unix_url(const gt_redis *r);
/* The plain TCP port; 0 for a TLS server. */
int gt_redis_port(const gt_redis *r);
/* The TLS port; 0 for a plain server. */
int gt_redis_tls_port(const gt_redis *r);
/* The server's temp dir (redis.conf, redis.log, data files). */
const char *gt_redis_dir(const gt_redis *r);
/* The redis-server pid, or 0 while it is down (after gt_redis_kill9). */
pid_t gt_redis_pid(const gt_redis *r);

/* Graceful restart: SHUTDOWN (NOSAVE unless the configuration persists data:
 * appendonly yes or a save point in extra_conf), SIGKILL if it has not exited
 * within 5 s, then starts it again on the same port and dir and waits until it
 * answers.  For a crash restart use gt_redis_kill9() + gt_redis_start_again().
 * Returns 0, or -1 with the reason on stderr. */
int gt_redis_restart(gt_redis *r);
/* SIGKILL and reap the server; it stays down.  0, or -1 if it was not running. */
int gt_redis_kill9(gt_redis *r);
/* Starts a stopped server again on the same port and dir, waiting until it
 * answers (after AOF loading, if any).  0, or -1 (also if already running). */
int gt_redis_start_again(gt_redis *r);
/* Replaces the extra conf lines (a copy is taken; NULL for none) for the next
 * start: gt_redis_restart() or gt_redis_start_again().  E.g. a killed master
 * comes back as a replica with "replicaof 127.0.0.1 P".  No effect on a
 * sentinel that has run (it keeps the conf it rewrote).  0, or -1 (no memory). */
int gt_redis_set_extra_conf(gt_redis *r, const char *extra_conf);
/* Stops the server (SIGTERM, SIGKILL after 3 s), removes its dir and frees r.
 * Accepts NULL. */
void gt_redis_stop(gt_redis *r);

/* A new hiredis connection to the server, for checking keys in tests: over
 * TCP, or over the unix socket for a TLS server (2 s connect timeout; commands
 * have none, so BLPOP works).  NULL (reason on
 * stderr) if it cannot connect.  Free with redisFree(). */
redisContext *gt_redis_connect(const gt_redis *r);
/* The same, but ms bounds the connect and every command (a stopped or hung
 * server cannot hang the caller), and it is quiet: NULL without a message.
 * For polling servers that may be down. */
redisContext *gt_redis_connect_timeout(const gt_redis *r, int64_t ms);

/* How many clients are blocked in a command now (XREADGROUP ... BLOCK, BLMOVE:
 * INFO clients, blocked_clients), for waiting until a lease or a result wait
 * blocks: WAIT_UNTIL(gt_redis_blocked_clients(r) > 0, 5000).  -1 if it cannot
 * ask.  Unlike the rest of the fixture, callable from any thread (it only
 * opens a connection of its own). */
int gt_redis_blocked_clients(const gt_redis *r);

#endif /* GTASK_TEST_REDIS_FIXTURE_H */
