/* cluster_fixture.h -- a private Redis Cluster on loopback (issue 17).
 *
 * gt_cluster_start(3, 1) starts 6 redis-servers with the redis fixture
 * (gt_redis_opts.cluster: cluster-enabled, a port <= 55535 whose bus port is
 * free, each in its own temp dir), joins them with `redis-cli --cluster create
 * ... --cluster-replicas 1 --cluster-yes` and returns once every node says
 * cluster_state:ok and agrees on the slot map (about a second).  The node
 * timeout is 2000 ms (scaled), so a killed master's replica takes over within
 * a few seconds.
 *
 *     gt_cluster *cl = gt_cluster_start(3, 1);
 *     ASSERT_NOT_NULL(cl);
 *     gtask_redis_conf *conf;
 *     ASSERT_OK(gtask_redis_conf_new(&conf, gt_cluster_url(cl), NULL, -1));
 *     ...
 *     gt_cluster_stop(cl);
 *
 * A test binary can share one cluster among its tests with TEST_SHARED
 * (test.h): test_contract.c does.  Tests that kill or reshard nodes start
 * their own.  Not thread-safe: call from the test's main thread (or the
 * runner's).  Needs redis-cli (the redis-tools package).
 */
#ifndef GTASK_TEST_CLUSTER_FIXTURE_H
#define GTASK_TEST_CLUSTER_FIXTURE_H

#include "redis_fixture.h"

typedef struct gt_cluster gt_cluster;

/* Starts masters (1..8) masters with replicas (0..2) replicas each.  NULL
 * (reason on stderr) if a node or the create fails.  Free with
 * gt_cluster_stop(). */
gt_cluster *gt_cluster_start(int masters, int replicas);
/* The same with more redis.conf lines for every node (e.g. "appendonly
 * yes\nappendfsync always\n"), or NULL. */
gt_cluster *gt_cluster_start_conf(int masters, int replicas, const char *extra_conf);
/* A cluster that speaks mutual TLS only (tls_fixture.h's certificates: the
 * nodes on their TLS ports, tls-cluster and tls-replication on, clients must
 * present certs->client_cert); gt_cluster_url() is then
 * "rediss-cluster://...?cacert=...&cert=...&key=...".  The harness's own
 * connections (gt_cluster_connect, the checks) use each node's plain unix
 * socket.  certs must outlive the cluster. */
gt_cluster *gt_cluster_start_tls(int masters, int replicas, const gt_certs *certs);
/* "redis-cluster://127.0.0.1:P1,127.0.0.1:P2,..." naming every node; valid
 * while c lives. */
const char *gt_cluster_url(const gt_cluster *c);
/* The number of nodes, and node i (0..n-1; the first `masters` were masters
 * when the cluster was made). */
int gt_cluster_size(const gt_cluster *c);
gt_redis *gt_cluster_node(const gt_cluster *c, int i);
/* The slot of key, as the cluster computes it (CLUSTER KEYSLOT): -1 on error. */
int gt_cluster_keyslot(const gt_cluster *c, const char *key);
/* The node that is the master of slot now, as the first live node that
 * answers CLUSTER SHARDS says; NULL if none. */
gt_redis *gt_cluster_master_of(const gt_cluster *c, int slot);
/* Waits until every live node says cluster_state:ok and names the same master
 * for every slot, and every replica's link to its master is up (its first
 * sync done): 0, or -1 after gt_scaled_ms(ms). */
int gt_cluster_wait_ok(const gt_cluster *c, int64_t ms);
/* Moves slot, with its keys, to master dst the way redis-cli --cluster
 * reshard does: SETSLOT IMPORTING on dst, MIGRATING on the source, MIGRATE
 * of the keys in batches of `batch` (pausing pause_ms between batches, so a
 * test can act while the slot is half moved), then SETSLOT NODE on every
 * master.  0, or -1 (reason on stderr). */
int gt_cluster_move_slot(const gt_cluster *c, int slot, gt_redis *dst, int batch, int pause_ms);
/* The same, but with finish false it stops after the keys moved: the slot
 * stays MIGRATING on its master and IMPORTING on dst (every key on dst, so
 * the master answers ASK), until a call with finish true. */
int gt_cluster_migrate_slot(const gt_cluster *c, int slot, gt_redis *dst, int batch, int pause_ms,
                            bool finish);
/* Starts moving slot to dst and moves keys[0..n) only (keys of that slot
 * that exist on its master): the slot's keys are then split between the two
 * nodes (a script naming keys of both sides gets TRYAGAIN) until
 * gt_cluster_migrate_slot(c, slot, dst, ..., true) moves the rest and ends
 * the move.  0, or -1 (reason on stderr). */
int gt_cluster_migrate_keys(const gt_cluster *c, int slot, gt_redis *dst, const char *const *keys,
                            size_t n);
/* A hiredis connection to node n (gt_redis_connect). */
redisContext *gt_cluster_connect(const gt_cluster *c, int i);
/* Stops every node and frees c.  Accepts NULL. */
void gt_cluster_stop(gt_cluster *c);

#endif /* GTASK_TEST_CLUSTER_FIXTURE_H */
