/* test_chaos.c -- the short form of the chaos test (chaos.h), run by ctest as
 * chaos.short (label "chaos"), in the plain build only: 3000 tasks through 2
 * workers (one in the process pool) in about 20 s, while a worker is killed
 * every ~1.5 s, a pool child every ~1 s and redis-server every ~5 s.
 *
 * Not under the sanitizers (scripts/test runs the asan stage with -LE chaos):
 * what this test looks for is protocol-level -- lost or doubly finished tasks
 * when processes and Redis die at random moments -- and it depends on kills
 * landing while tasks run; ASan's slowdown shifts that timing, and
 * LeakSanitizer's exit scans in forked pool children are unreliable (see
 * test_procpool.c).  The library's code on these paths is covered under ASan
 * and TSan by test_server.c and test_procpool.c.
 *
 * The seed comes from the clock (printed on failure); GTASK_CHAOS_SEED=N
 * repeats a schedule.  The long form, by hand: build/tests/chaos/chaos --help. */
#include "chaos.h"
#include "test.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void run_chaos(bool tls, bool cluster) {
  chaos_opts o;
  chaos_opts_default(&o);
  o.tls = tls;
  o.cluster = cluster;
  if (cluster) { /* half the short form: the chaos is the same, CI time is not free */
    o.tasks /= 2;
    o.duration_ms /= 2;
  }
  char worker[PATH_MAX];
  ASSERT_TRUE(chaos_default_worker_path(worker, sizeof(worker)));
  o.worker_path = worker;
  o.dir = test_tmpdir();
  o.settle_ms = test_timeout_ms(60000);
  o.verbose = true;
  const char *seed = getenv("GTASK_CHAOS_SEED");
  o.seed = seed && *seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
  TEST_LOG("seed %" PRIu64 " (GTASK_CHAOS_SEED=%" PRIu64 " repeats the schedule)", o.seed, o.seed);

  chaos_report r;
  int rc = chaos_run(&o, &r);
  chaos_report_print(stdout, &r, &o);
  ASSERT_FALSE(r.aborted);
  ASSERT_EQ(r.sent, o.tasks);
  ASSERT_EQ(r.lost, 0);
  ASSERT_EQ(r.duplicated, 0);
  ASSERT_EQ(r.wrong, 0);
  ASSERT_EQ(r.finished, r.sent);
  ASSERT_LE(r.crashed, r.child_kills);
  ASSERT_EQ(r.leftovers, 0);
  ASSERT_EQ(r.worker_deaths, 0);
  ASSERT_EQ(r.unclean_exits, 0);
  ASSERT_GT(r.retried, 0);
  ASSERT_GT(r.worker_kills, 0);
  ASSERT_GT(r.redis_restarts, 0);
  ASSERT_OK(rc);
}

TEST_TIMEOUT(chaos_short, 300) { run_chaos(false, false); }

/* The same over mutual TLS: connections cut mid-record, a TLS server restarted
 * under the workers. */
TEST_TIMEOUT(chaos_short_tls, 300) { run_chaos(true, false); }

/* On a Redis Cluster (issue 17): the master of the queue's slot is killed and
 * restarted under the workers; a restart longer than the node timeout is a
 * failover to its replica, which wait-replicas 1 makes lossless. */
TEST_TIMEOUT(chaos_short_cluster, 300) { run_chaos(false, true); }
