/* sentinel_fixture.h -- a private Redis Sentinel set for one test.
 *
 * For the Sentinel tests of issue 16.  gt_sentinel_start() starts one master,
 * some replicas and some sentinels, each a gt_redis (redis_fixture.h) on a free
 * loopback port in its own temp dir, as children of the test process, and
 * returns once the set is settled (see gt_sentinel_wait_ready()).  Typical use:
 *
 *     gt_sentinel *s = gt_sentinel_start(1, 3, "mymaster");
 *     ASSERT_NOT_NULL(s);
 *     // library under test: gt_sentinel_url(s)
 *     //   "redis-sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0"
 *     int old = gt_sentinel_master_port(s);
 *     ASSERT_OK(gt_sentinel_failover(s));           // SENTINEL FAILOVER
 *     ASSERT_NE(gt_sentinel_master_port(s), old);
 *     ...
 *     int dead = gt_sentinel_kill_master(s);        // kill -9
 *     ASSERT_OK(gt_sentinel_wait_new_master(s, gt_redis_port(gt_sentinel_node(s, dead))));
 *     ASSERT_OK(gt_sentinel_rejoin(s, dead));        // back, as a replica
 *     gt_sentinel_stop(s);
 *
 * The data nodes get `repl-diskless-sync-delay 0` (7.0 waits 5 s by default
 * before the first sync) and replicas `replicaof 127.0.0.1 M`.  Each sentinel
 * has its own conf, which it rewrites: port S, bind 127.0.0.1, dir, `sentinel
 * resolve-hostnames no`, `sentinel monitor NAME 127.0.0.1 M Q` with Q the
 * majority (nsentinels / 2 + 1), down-after-milliseconds 1000,
 * failover-timeout 4000.  With these a SENTINEL FAILOVER switches in about 1.5 s
 * and a kill -9 of the master in about 3 to 5 s (1 s to be seen down, then the
 * vote).
 *
 * What the sentinels do by themselves, and how long it takes (Redis 7.0):
 *  - they find the replicas in the master's INFO at once, and each other
 *    through hello messages every 2 s: a set is ready some 2 s after starting;
 *  - after a failover, an old master that is still running stays a master until
 *    a sentinel turns it into a replica, some 10 s later ("+convert-to-slave");
 *    gt_sentinel_demote_old_masters() does it at once, as the sentinel will,
 *    for tests that need the set settled sooner.
 *
 * After every successful wait, each node's extra conf (gt_redis_set_extra_conf())
 * follows the topology the sentinels agree on, so that gt_redis_restart() of a
 * node brings it back in its current role (the sentinels' CONFIG REWRITE of the
 * node's conf would be overwritten at the restart).
 *
 * Every wait is bounded by a deadline scaled by GTASK_TEST_TIMEOUT_MULTIPLIER;
 * a function that times out prints what it was waiting for (the last answers)
 * on stderr and returns -1.  Processes are cleaned up as gt_redis's are.
 * Not thread-safe: use a gt_sentinel from the test's main thread.
 */
#ifndef GTASK_TEST_SENTINEL_FIXTURE_H
#define GTASK_TEST_SENTINEL_FIXTURE_H

#include "redis_fixture.h"

typedef struct gt_sentinel gt_sentinel;

/* Starts one master, nreplicas replicas (0 or more) and nsentinels sentinels
 * (1 or more) that monitor the master as master_name (NULL: "mymaster"), and
 * waits until the set is ready (gt_sentinel_wait_ready()).  Returns NULL
 * (reason on stderr) if anything fails to start or settle.  Free with
 * gt_sentinel_stop(). */
gt_sentinel *gt_sentinel_start(int nreplicas, int nsentinels, const char *master_name);

/* The same set over TLS only: every data node and sentinel is a TLS server as
 * gt_redis_start_tls(certs, NULL, NULL, "yes", ...) makes it (certs->server_cert,
 * client certificates required), with `tls-replication yes` so that replicas
 * and sentinels talk to the nodes over TLS, presenting certs->server_cert.
 * Ports and addresses are then TLS ports; the URL is "rediss-sentinel://...". */
gt_sentinel *gt_sentinel_start_tls(const gt_certs *certs, int nreplicas, int nsentinels,
                                   const char *master_name);

/* Stops every process of the set and frees s.  Accepts NULL. */
void gt_sentinel_stop(gt_sentinel *s);

/* "redis-sentinel://127.0.0.1:S1,127.0.0.1:S2,.../NAME/0" (rediss-sentinel://
 * with TLS), listing every sentinel in order; valid while s lives. */
const char *gt_sentinel_url(const gt_sentinel *s);
/* The master name the sentinels monitor. */
const char *gt_sentinel_master_name(const gt_sentinel *s);

/* The number of sentinels, and the port of sentinel i (0 <= i < count). */
int gt_sentinel_count(const gt_sentinel *s);
int gt_sentinel_port(const gt_sentinel *s, int i);
/* Sentinel i as a gt_redis, e.g. to gt_redis_kill9() one.  Owned by s. */
gt_redis *gt_sentinel_instance(const gt_sentinel *s, int i);

/* The number of data nodes (1 + nreplicas), and node i as a gt_redis: node 0
 * was started as the master, nodes 1.. as its replicas; after a failover any
 * may be the master.  Owned by s; gt_redis_connect() on it checks keys. */
int gt_sentinel_node_count(const gt_sentinel *s);
gt_redis *gt_sentinel_node(const gt_sentinel *s, int i);

/* The master's port as the first sentinel that answers says it
 * (SENTINEL get-master-addr-by-name), or -1 if none answers. */
int gt_sentinel_master_port(const gt_sentinel *s);
/* The index of the data node listening on that port, or -1. */
int gt_sentinel_master_node(const gt_sentinel *s);

/* Waits until every running sentinel names the same master, on a port other
 * than old_port, and that node answers INFO with role:master.  For after a
 * kill of the master or a failover started some other way.  0, or -1 after
 * gt_scaled_ms(20000). */
int gt_sentinel_wait_new_master(gt_sentinel *s, int old_port);

/* Sends SENTINEL FAILOVER NAME to the first sentinel that answers and waits as
 * gt_sentinel_wait_new_master() does.  The old master keeps running (as a
 * master, until converted: see above).  0, or -1 (the sentinel refused, e.g.
 * "NOGOODSLAVE", or the wait timed out). */
int gt_sentinel_failover(gt_sentinel *s);

/* SIGKILLs the current master (the node the sentinels name) and returns its
 * index (it stays down), or -1 if the master is unknown or not running. */
int gt_sentinel_kill_master(gt_sentinel *s);

/* Starts node i (stopped, e.g. by gt_sentinel_kill_master()) again as a replica
 * of the current master, so that it never comes back as a second master, and
 * waits until the set is ready again.  0, or -1. */
int gt_sentinel_rejoin(gt_sentinel *s, int node);

/* Turns every running data node that is not the current master but reports
 * role:master into its replica (REPLICAOF, then CLIENT KILL TYPE normal, as a
 * sentinel's +convert-to-slave does), then waits until the set is ready.
 * 0, or -1. */
int gt_sentinel_demote_old_masters(gt_sentinel *s);

/* Waits until the set is settled: every running sentinel names the same
 * master, which reports role:master; every other running data node reports
 * role:slave of that master with master_link_status:up; every running sentinel
 * lists each running replica (SENTINEL replicas, flags without s_down or
 * disconnected) and knows the other running sentinels (SENTINEL sentinels).
 * 0, or -1 after gt_scaled_ms(20000). */
int gt_sentinel_wait_ready(gt_sentinel *s);

#endif /* GTASK_TEST_SENTINEL_FIXTURE_H */
