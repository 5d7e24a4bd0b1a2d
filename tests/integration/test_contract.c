/* test_contract.c -- the broker and backend contract suite (tests/contract/,
 * <gtask/contract.h>) on the built-in implementations (STYLE.md point 12).
 *
 * Each target below makes a fresh pair for every case: memory_<case> on the
 * in-process pair, redis_<case> on a private redis-server
 * (tests/support/redis_fixture.h), tls_<case> on one that speaks mutual TLS
 * only, acl_<case> as a user with the README's minimal ACL, cluster_<case> on
 * a Redis Cluster of 3 masters and 3 replicas (issue 17) that all the
 * cluster_ cases of the binary share (TEST_SHARED: it takes a second or two
 * to start; the suite's queue names are new for every case); redis_split and
 * memory_split keep the backend apart from the broker (not colocated) and run
 * the cases that use both.  The cases themselves are the library's, the same
 * that an out-of-tree implementation runs (examples/sqlite_backend). */
#include "test.h"

#include <gtask/contract.h>

#include "cluster_fixture.h"
#include "internal.h"
#include "redis_fixture.h"
#include "tls_fixture.h"

#include <stdio.h>
#include <unistd.h>

/* ---------------------------------------------------------------- memory */

static int make_memory(void *arg, int64_t ttl_ms, gtask_broker **b, gtask_backend **be,
                       void **state) {
  *b = gtask_broker_memory_new();
  *be = gtask_backend_memory_new();
  if (*b == NULL || *be == NULL)
    return GTASK_ENOMEM;
  return ttl_ms > 0 ? gtask_backend_memory_set_expire_time(*be, ttl_ms) : 0;
}

static void fail_alloc_at(long k) { gtask__alloc_fail_at(k); }

/* The memory pair, kept apart: the memory backend's operations behind a copy
 * of its table, which the memory broker does not recognise as its colocated
 * backend (gtask_backend_impl compares tables), so that the path without
 * colocation stays covered on memory too.  *state holds the handle that owns
 * the implementation. */
static void no_destroy(void *impl) { (void)impl; }

static int make_memory_split(void *arg, int64_t ttl_ms, gtask_broker **b, gtask_backend **be,
                             void **state) {
  static gtask_backend_ops ops;
  gtask_backend *keep;
  ASSERT_OK(make_memory(arg, ttl_ms, b, &keep, state));
  void *impl;
  ops = *gtask_backend_ops_get(keep, &impl);
  ops.destroy = no_destroy; /* keep destroys the implementation */
  *state = keep;
  void *bi;
  ASSERT_NOT_NULL(gtask_broker_ops_get(*b, &bi)->colocated(bi, keep));
  return gtask_backend_new(be, &ops, impl);
}

static void done_memory_split(void *arg, void *state) { gtask_backend_free(state); }

/* ---------------------------------------------------------------- redis */

/* *state is the gt_redis server of the case. */
static int make_pair(gt_redis *r, const char *url, const char *backend_url, int64_t ttl_ms,
                     const gt_certs *certs, gtask_broker **b, gtask_backend **be, void **state) {
  ASSERT_NOT_NULL(r);
  *state = r;
  gtask_redis_conf *c, *c2;
  ASSERT_OK(gtask_redis_conf_new(&c, url, NULL, -1));
  ASSERT_OK(gtask_redis_conf_new(&c2, backend_url ? backend_url : url, NULL, -1));
  if (certs) {
    ASSERT_OK(gtask_redis_conf_set_tls(c, certs->ca, certs->client_cert, certs->client_key));
    ASSERT_OK(gtask_redis_conf_set_tls(c2, certs->ca, certs->client_cert, certs->client_key));
  }
  if (ttl_ms > 0)
    ASSERT_OK(gtask_redis_conf_set_expire_time(c2, ttl_ms));
  ASSERT_OK(gtask_broker_redis_new(b, c));
  ASSERT_OK(gtask_backend_redis_new(be, c2));
  gtask_redis_conf_free(c);
  gtask_redis_conf_free(c2);
  return 0;
}

static int make_redis(void *arg, int64_t ttl_ms, gtask_broker **b, gtask_backend **be,
                      void **state) {
  gt_redis *r = gt_redis_start(NULL);
  ASSERT_NOT_NULL(r);
  return make_pair(r, gt_redis_url(r), NULL, ttl_ms, NULL, b, be, state);
}

/* The backend in another database of the server: not colocated, so the
 * client resets the state through the backend before the broker moves the
 * message. */
static int make_redis_split(void *arg, int64_t ttl_ms, gtask_broker **b, gtask_backend **be,
                            void **state) {
  gt_redis *r = gt_redis_start(NULL);
  ASSERT_NOT_NULL(r);
  char url1[64]; /* the server's db 1 (a db argument may not contradict the URL's /0) */
  snprintf(url1, sizeof(url1), "redis://127.0.0.1:%d/1", gt_redis_port(r));
  return make_pair(r, gt_redis_url(r), url1, ttl_ms, NULL, b, be, state);
}

/* The same over mutual TLS (issue 16): a TLS-only server that requires a
 * client certificate, the certificates made at test time.  The fixture's
 * own inspection connection (gt_redis_connect) uses the plain unix socket. */
static int make_tls(void *arg, int64_t ttl_ms, gtask_broker **b, gtask_backend **be,
                    void **state) {
  const char *why = gt_certs_missing_tool();
  if (why)
    SKIP("%s", why);
  const gt_certs *certs = gt_certs_make();
  ASSERT_NOT_NULL(certs);
  gt_redis *r = gt_redis_start_tls(certs, NULL, NULL, "yes", NULL);
  ASSERT_NOT_NULL(r);
  return make_pair(r, gt_redis_tls_url(r), NULL, ttl_ms, certs, b, be, state);
}

/* The same as an ACL user with the README's minimal permissions. */
static int make_acl(void *arg, int64_t ttl_ms, gtask_broker **b, gtask_backend **be,
                    void **state) {
  gt_redis *r = gt_redis_start("user worker on >pw ~gtask:* -@all +@read +@write +@scripting "
                               "+@connection +@transaction +@blocking +client|id "
                               "+client|unblock\n");
  ASSERT_NOT_NULL(r);
  char url[128];
  snprintf(url, sizeof(url), "redis://worker:pw@127.0.0.1:%d/0", gt_redis_port(r));
  return make_pair(r, url, NULL, ttl_ms, NULL, b, be, state);
}

static void done_redis(void *arg, void *state) { gt_redis_stop(state); }

static int blocked_redis(void *arg, void *state) { return gt_redis_blocked_clients(state); }

/* ---------------------------------------------------------------- Redis Cluster */

static gt_cluster *shared_cluster;

static const char *cluster_setup(void) {
  shared_cluster = gt_cluster_start(3, 1);
  return shared_cluster ? NULL : "cannot start a Redis Cluster (see the output above)";
}

static void cluster_teardown(void) { gt_cluster_stop(shared_cluster); }

TEST_SHARED(cluster, "cluster_", cluster_setup, cluster_teardown)

static int make_cluster(void *arg, int64_t ttl_ms, gtask_broker **b, gtask_backend **be,
                        void **state) {
  ASSERT_NOT_NULL(shared_cluster);
  gtask_redis_conf *c;
  ASSERT_OK(gtask_redis_conf_new(&c, gt_cluster_url(shared_cluster), NULL, -1));
  if (ttl_ms > 0)
    ASSERT_OK(gtask_redis_conf_set_expire_time(c, ttl_ms));
  ASSERT_OK(gtask_broker_redis_new(b, c));
  ASSERT_OK(gtask_backend_redis_new(be, c));
  gtask_redis_conf_free(c);
  *state = NULL;
  return 0;
}

/* Blocked calls on any node (the cases run one at a time). */
static int blocked_cluster(void *arg, void *state) {
  int sum = 0;
  for (int i = 0; i < gt_cluster_size(shared_cluster); i++) {
    int n = gt_redis_blocked_clients(gt_cluster_node(shared_cluster, i));
    if (n < 0)
      return -1;
    sum += n;
  }
  return sum;
}

/* ---------------------------------------------------------------- targets */

#define BOTH (GTASK_CONTRACT_BROKER | GTASK_CONTRACT_BACKEND | GTASK_CONTRACT_COLOCATED)

static const gtask_contract_target targets[] = {
    {.abi = GTASK_CONTRACT_ABI, .name = "memory", .make = make_memory,
     .caps = BOTH | GTASK_CONTRACT_RESULT_TTL | GTASK_CONTRACT_RECLAIM_NEW_TOKEN,
     .fail_alloc_at = fail_alloc_at},
    {.abi = GTASK_CONTRACT_ABI, .name = "memory_split", .make = make_memory_split,
     .done = done_memory_split},
    /* The record expiry is checked on memory and plain Redis only: it is the
     * same code over TLS and ACL, and the cases wait out a second each. */
    {.abi = GTASK_CONTRACT_ABI, .name = "redis", .make = make_redis, .done = done_redis,
     .blocked = blocked_redis, .caps = BOTH | GTASK_CONTRACT_RESULT_TTL},
    {.abi = GTASK_CONTRACT_ABI, .name = "redis_split", .make = make_redis_split,
     .done = done_redis, .blocked = blocked_redis},
    {.abi = GTASK_CONTRACT_ABI, .name = "tls", .make = make_tls, .done = done_redis,
     .blocked = blocked_redis, .caps = BOTH},
    {.abi = GTASK_CONTRACT_ABI, .name = "acl", .make = make_acl, .done = done_redis,
     .blocked = blocked_redis, .caps = BOTH},
    {.abi = GTASK_CONTRACT_ABI, .name = "cluster", .make = make_cluster,
     .blocked = blocked_cluster, .caps = BOTH},
};

/* At load time, after the cases have registered themselves (contract.c's
 * constructors have a priority; this one has none, so it runs after them). */
__attribute__((constructor)) static void register_targets(void) {
  for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
    if (gtask_contract_register(&targets[i]) != 0)
      abort();
}

/* ---------------------------------------------------------------- older tables (issue 18) */

/* A backend table of abi 2 ends before claim: the handle reads it as NULL
 * (never past the table), and a unique send over a pair that is not
 * colocated is refused, changing nothing, while plain sends work. */
TEST(memory_abi2_backend_cannot_claim) {
  gtask_broker *b = gtask_broker_memory_new();
  gtask_backend *keep = gtask_backend_memory_new();
  ASSERT_NOT_NULL(b);
  ASSERT_NOT_NULL(keep);
  void *impl;
  static gtask_backend_ops v2;
  v2 = *gtask_backend_ops_get(keep, &impl);
  v2.abi = 2; /* claim stays set in v2: the handle must not look past an abi-2 table */
  v2.destroy = no_destroy;
  gtask_backend *old = NULL;
  ASSERT_OK(gtask_backend_new(&old, &v2, impl));
  ASSERT_NULL(gtask_backend_ops_get(old, NULL)->claim);
  gtask_client *cli = gtask_client_new(b, old);
  ASSERT_NOT_NULL(cli);
  char q[64];
  snprintf(q, sizeof(q), "q-abi2-%d", (int)getpid());
  ASSERT_OK(gtask_client_set_queue(cli, q));
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_send_conf_set_unique(sc, 1000));
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1)), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), "cannot check for duplicates");
  ASSERT_STR_EQ(id, "");
  gtask_queue_stats st;
  ASSERT_OK(gtask_client_stats(cli, NULL, &st));
  ASSERT_EQ(st.pending, 0);
  gtask_send_conf_free(sc);
  sc = gtask_send_conf_new("add");
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1)));
  ASSERT_OK(gtask_client_stats(cli, NULL, &st));
  ASSERT_EQ(st.pending, 1);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
  gtask_backend_free(old);
  gtask_broker_free(b);
  gtask_backend_free(keep);
}
