/* test_sentinel.c -- gtask on a Sentinel set (one master, two replicas, three
 * sentinels, all started by the test): a worker serves and a sender sends
 * without pause while the master fails over (SENTINEL FAILOVER, then kill -9
 * of the master).  With wait-replicas 1 every acknowledged task must end
 * SUCCESS, exactly once; without it, what a failover lost is reported. */
#include "internal.h"
#include "redis_fixture.h"
#include "sentinel_fixture.h"
#include "test.h"
#include "tls_fixture.h"
#include "worker_fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

static atomic_int runs[4096]; /* per task number: how many times add ran */

static int add(int64_t a, int64_t b, int64_t *sum) {
  if (a >= 0 && a < 4096) atomic_fetch_add(&runs[a], 1);
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static void quiet_log(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (level >= GTASK_LOG_ERROR) fprintf(stderr, "[gtask] %s\n", line);
}

typedef struct sender {
  gtask_client *cli;
  atomic_bool stop;
  int next;                          /* task number (its first argument) */
  char ids[4096][GTASK_ID_SIZE];     /* acknowledged sends, by task number */
  bool acked[4096];
  int nacked, nfailed, nindoubt;
  int64_t last_ack_ms;               /* when the last send was acknowledged */
  int64_t longest_gap_ms;            /* the longest time without an acknowledged send */
} sender;

static void *send_loop(void *arg) {
  sender *s = arg;
  gtask_send_conf *sc = gtask_send_conf_new("add");
  s->last_ack_ms = test_now_ms();
  while (!atomic_load(&s->stop) && s->next < 4096) {
    int k = s->next++;
    char id[GTASK_ID_SIZE];
    int rc = GTASK_SEND(s->cli, sc, id, gtask_int64(k), gtask_int64(1));
    int64_t now = test_now_ms();
    if (rc == 0) {
      memcpy(s->ids[k], id, GTASK_ID_SIZE);
      s->acked[k] = true;
      s->nacked++;
      if (now - s->last_ack_ms > s->longest_gap_ms) s->longest_gap_ms = now - s->last_ack_ms;
      s->last_ack_ms = now;
    } else if (rc == GTASK_EINDOUBT) {
      s->nindoubt++;
    } else {
      s->nfailed++;
    }
    test_sleep_ms(rc ? 50 : 5);
  }
  gtask_send_conf_free(sc);
  return NULL;
}

/* What became of an acknowledged task, as the end of a test sees it. */
typedef enum fate {
  FATE_UNKNOWN, /* not read yet, or the read failed (a failover under way) */
  FATE_OK,      /* SUCCESS, with the right sum */
  FATE_SLOW,    /* not final yet: queued, scheduled or leased (it still runs) */
  FATE_WRONG,   /* final, but not SUCCESS with the right sum */
  FATE_NOWHERE, /* in no stream, PEL, schedule, dead or failed set, no result */
} fate;

static const char *const fate_name[] = {"unknown", "ok", "slow", "wrong", "nowhere"};

#define NOWHERE_CONFIRM_MS 2000 /* nowhere this long (read again and again): lost */

typedef struct tally {
  fate f[4096];
  int64_t nowhere_since[4096]; /* test_now_ms() of the first read that found it nowhere */
  char where[4096][24];        /* slow: its state or list; else why not ok */
  int n[5];                    /* tasks per fate */
  int lost;                    /* nowhere for NOWHERE_CONFIRM_MS */
  int reads;                   /* tally_settled calls */
  char summary[160];           /* the counts, and a task not final yet */
} tally;

/* Reads again what became of each acknowledged task not settled yet (ok or
 * wrong is final), then counts.  One round trip per task (wait with timeout
 * 0), and an inspect for one not found. */
static void tally_read(sender *s, tally *t) {
  memset(t->n, 0, sizeof(t->n));
  t->lost = 0;
  for (int i = 0; i < s->next; i++) {
    if (!s->acked[i]) continue;
    if (t->f[i] != FATE_OK && t->f[i] != FATE_WRONG) {
      gtask_result *r = NULL;
      int rc = gtask_client_wait(s->cli, s->ids[i], 0, &r);
      if (rc == 0) {
        bool ok = r->status == GTASK_SUCCESS && r->nvalues == 1 && r->values[0].v.i == i + 1;
        t->f[i] = ok ? FATE_OK : FATE_WRONG;
        snprintf(t->where[i], sizeof(t->where[i]), "%s", gtask_status_name(r->status));
      } else if (rc == GTASK_ETIMEDOUT) {
        gtask_status st = 0;
        t->f[i] = FATE_SLOW;
        snprintf(t->where[i], sizeof(t->where[i]), "%s",
                 gtask_client_status(s->cli, s->ids[i], &st) == 0 ? gtask_status_name(st) : "?");
      } else if (rc == GTASK_ENOTFOUND) {
        gtask_task_info *info = NULL;
        int irc = gtask_client_inspect(s->cli, s->ids[i], NULL, &info);
        if (irc == 0) {
          t->f[i] = FATE_SLOW;
          snprintf(t->where[i], sizeof(t->where[i]), "%s",
                   info ? gtask_list_state_name(info->state) : "?");
        } else if (irc == GTASK_ENOTFOUND) {
          if (t->f[i] != FATE_NOWHERE) t->nowhere_since[i] = test_now_ms();
          t->f[i] = FATE_NOWHERE;
          t->where[i][0] = '\0';
        } else {
          t->f[i] = FATE_UNKNOWN;
          snprintf(t->where[i], sizeof(t->where[i]), "%s", gtask_err_name(irc));
        }
        gtask_task_info_free(info, info ? 1 : 0);
      } else {
        t->f[i] = FATE_UNKNOWN;
        snprintf(t->where[i], sizeof(t->where[i]), "%s", gtask_err_name(rc));
      }
      gtask_result_free(r);
    }
    t->n[t->f[i]]++;
    if (t->f[i] == FATE_NOWHERE && test_now_ms() - t->nowhere_since[i] >= NOWHERE_CONFIRM_MS)
      t->lost++;
  }
}

/* True when nothing is left to wait for: every acknowledged task is ok,
 * wrong, or lost (nowhere, and still so NOWHERE_CONFIRM_MS later).  Each call
 * after the first waits 200 ms, then reads them all again (t->reads). */
static bool tally_settled(sender *s, tally *t) {
  if (t->reads++) test_sleep_ms(200);
  tally_read(s, t);
  int first = -1;
  for (int i = 0; i < s->next && first < 0; i++)
    if (s->acked[i] && (t->f[i] == FATE_SLOW || t->f[i] == FATE_UNKNOWN)) first = i;
  snprintf(t->summary, sizeof(t->summary), "slow %d, unknown %d, nowhere %d (lost %d), wrong %d%s%d%s%s",
           t->n[FATE_SLOW], t->n[FATE_UNKNOWN], t->n[FATE_NOWHERE], t->lost, t->n[FATE_WRONG],
           first >= 0 ? "; e.g. task " : "", first, first >= 0 ? ": " : "",
           first >= 0 ? t->where[first] : "");
  return t->n[FATE_SLOW] == 0 && t->n[FATE_UNKNOWN] == 0 && t->n[FATE_NOWHERE] == t->lost;
}

/* Logs the counts and the tasks not ok (the first 10). */
static void tally_print(const sender *s, const tally *t) {
  TEST_LOG("acknowledged %d: ok %d, slow %d, wrong %d, nowhere %d (lost %d), unknown %d", s->nacked,
           t->n[FATE_OK], t->n[FATE_SLOW], t->n[FATE_WRONG], t->n[FATE_NOWHERE], t->lost,
           t->n[FATE_UNKNOWN]);
  int shown = 0;
  for (int i = 0; i < s->next && shown < 10; i++)
    if (s->acked[i] && t->f[i] != FATE_OK) {
      TEST_LOG("task %d (%s): %s%s%s%s", i, s->ids[i], fate_name[t->f[i]], t->where[i][0] ? " (" : "",
               t->where[i], t->where[i][0] ? ")" : "");
      shown++;
    }
}

/* Waits until every acknowledged task is settled (see tally_settled), for a
 * generous while: the slow ones are only slow (a loaded machine, leases of
 * the dead master's worker connections expiring).  Returns how many are lost
 * or wrong (and logs them). */
static int settle_all(sender *s) {
  tally *t = calloc(1, sizeof(*t));
  ASSERT_NOT_NULL(t);
  int64_t t0 = test_now_ms();
  WAIT_UNTIL_MSG(tally_settled(s, t), 60000, "acknowledged tasks not final yet: %s", t->summary);
  TEST_LOG("all settled %lld ms after the sends stopped", (long long)(test_now_ms() - t0));
  tally_print(s, t);
  int bad = t->lost + t->n[FATE_WRONG];
  free(t);
  return bad;
}

/* Runs a worker and a sender on the set through `manual` SENTINEL FAILOVERs
 * (the old master alive) and `kills` kill -9s of the master (each followed,
 * once sends resumed, by the node rejoining as a replica); returns how many
 * acknowledged tasks did not end SUCCESS: lost (nowhere) or wrong; waits for
 * the slow ones (see settle_all). */
static int through_failovers(gt_sentinel *set, int wait_replicas, int manual, int kills,
                             sender *s) {
  memset(runs, 0, sizeof(runs));
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, gt_sentinel_url(set), NULL, -1));
  if (wait_replicas) ASSERT_OK(gtask_redis_conf_set_wait_replicas(conf, wait_replicas, 1000));
  gtask_broker *b;
  gtask_backend *k;
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  ASSERT_OK(gtask_backend_redis_new(&k, conf));
  gtask_redis_conf_free(conf);
  gtask_server *server = gtask_server_new(b, k);
  ASSERT_OK(GTASK_REG(server, add));
  ASSERT_OK(gtask_server_set_lease(server, 2000)); /* reclaim in-doubt leases within ~3 s */
  gt_worker w;
  gt_worker_start(&w, server, 4);
  pthread_t ts;
  s->cli = gtask_client_new(b, k);
  ASSERT_EQ(pthread_create(&ts, NULL, send_loop, s), 0);

  WAIT_UNTIL(s->nacked >= 50, 10000);
  for (int m = 0; m < manual; m++) {
    TEST_LOG("SENTINEL FAILOVER at task %d", s->next);
    ASSERT_EQ(gt_sentinel_failover(set), 0);
    ASSERT_EQ(gt_sentinel_demote_old_masters(set), 0);
    int before = s->nacked;
    WAIT_UNTIL_MSG(s->nacked >= before + 50, 15000, "sends did not resume after SENTINEL FAILOVER");
  }
  for (int m = 0; m < kills; m++) {
    TEST_LOG("kill -9 of the master at task %d", s->next);
    int killed = gt_sentinel_kill_master(set);
    ASSERT_GE(killed, 0);
    int before = s->nacked;
    WAIT_UNTIL_MSG(s->nacked >= before + 50, 20000, "sends did not resume after kill -9 of the master");
    ASSERT_EQ(gt_sentinel_rejoin(set, killed), 0);
  }
  atomic_store(&s->stop, true);
  pthread_join(ts, NULL);

  /* Every acknowledged task ends, on the master of the day.  A busy machine
   * only makes some slow; lost is what is nowhere. */
  int lost = settle_all(s);
  gt_worker_stop(&w);
  gtask_server_free(server);
  gtask_client_free(s->cli);
  gtask_broker_free(b);
  gtask_backend_free(k);
  return lost;
}

/* A master that dies (kill -9): the sentinels promote the replica with the
 * most data, so one replica's confirmation (WAIT 1) keeps every acknowledged
 * send.  Twice, the killed node rejoining as a replica in between. */
TEST_TIMEOUT(with_wait_replicas_1_no_acknowledged_task_is_lost_when_the_master_dies, 180) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR);
  gt_sentinel *set = gt_sentinel_start(2, 3, "mymaster");
  ASSERT_NOT_NULL(set);
  sender *s = calloc(1, sizeof(*s));
  int lost = through_failovers(set, 1, 0, 2, s);
  TEST_LOG("wait-replicas 1, 2 x kill -9: %d sends acknowledged, %d in doubt, %d refused; longest "
           "gap between acknowledged sends %lld ms; lost %d",
           s->nacked, s->nindoubt, s->nfailed, (long long)s->longest_gap_ms, lost);
  ASSERT_EQ(lost, 0);
  ASSERT_LT(s->longest_gap_ms, test_timeout_ms(15000));
  free(s);
  gt_sentinel_stop(set);
}

/* A failover while the old master lives (SENTINEL FAILOVER, a maintenance
 * switch): until the sentinels convert it, the old master takes writes, and a
 * replica that has not yet moved to the new master confirms them -- WAIT 1
 * is not enough (the test without wait-replicas shows the loss).  Waiting
 * for every replica is: the promoted one stops confirming the old master. */
TEST_TIMEOUT(with_wait_replicas_all_no_acknowledged_task_is_lost_in_a_switch, 180) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR);
  gt_sentinel *set = gt_sentinel_start(2, 3, "mymaster");
  ASSERT_NOT_NULL(set);
  sender *s = calloc(1, sizeof(*s));
  int lost = through_failovers(set, 2, 2, 0, s);
  TEST_LOG("wait-replicas 2 (all), 2 x SENTINEL FAILOVER: %d sends acknowledged, %d in doubt, "
           "%d refused; longest gap %lld ms; lost %d",
           s->nacked, s->nindoubt, s->nfailed, (long long)s->longest_gap_ms, lost);
  ASSERT_EQ(lost, 0);
  ASSERT_LT(s->longest_gap_ms, test_timeout_ms(15000));
  free(s);
  gt_sentinel_stop(set);
}

/* Without wait-replicas, an acknowledged send can vanish in a failover:
 * Redis replicates asynchronously.  Reported, not asserted. */
TEST_TIMEOUT(without_wait_replicas_a_failover_may_lose_acknowledged_tasks, 180) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR);
  gt_sentinel *set = gt_sentinel_start(2, 3, "mymaster");
  ASSERT_NOT_NULL(set);
  sender *s = calloc(1, sizeof(*s));
  int lost = through_failovers(set, 0, 1, 1, s);
  TEST_LOG("wait-replicas 0, SENTINEL FAILOVER + kill -9: %d sends acknowledged, %d refused; "
           "lost %d of them (asynchronous replication)",
           s->nacked, s->nfailed, lost);
  ASSERT_GT(s->nacked, 150);
  free(s);
  gt_sentinel_stop(set);
}

/* Sentinels and data nodes that speak mutual TLS only: rediss-sentinel://
 * with the client certificate reaches the master through them, and finds
 * the new one after a failover. */
TEST_TIMEOUT(sentinel_over_tls, 120) {
  gtask_set_log(quiet_log, NULL, GTASK_LOG_ERROR);
  const char *why = gt_certs_missing_tool();
  if (why) SKIP("%s", why);
  const gt_certs *certs = gt_certs_make();
  ASSERT_NOT_NULL(certs);
  gt_sentinel *set = gt_sentinel_start_tls(certs, 1, 3, "tlsmaster");
  ASSERT_NOT_NULL(set);
  char url[2048];
  snprintf(url, sizeof(url), "%s?cacert=%s&cert=%s&key=%s", gt_sentinel_url(set), certs->ca,
           certs->client_cert, certs->client_key);
  gtask_broker *b;
  gtask_backend *k;
  gt_redis_pair(url, &b, &k);
  gtask_server *server = gtask_server_new(b, k);
  ASSERT_OK(GTASK_REG(server, add));
  gt_worker w;
  gt_worker_start(&w, server, 4);
  gtask_client *cli = gtask_client_new(b, k);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  for (int round = 0; round < 2; round++) {
    if (round == 1) {
      ASSERT_EQ(gt_sentinel_failover(set), 0);
      ASSERT_EQ(gt_sentinel_demote_old_masters(set), 0);
    }
    char id[GTASK_ID_SIZE];
    int rc;
    int64_t until = test_now_ms() + test_timeout_ms(15000);
    while ((rc = GTASK_SEND(cli, sc, id, gtask_int64(40 + round), gtask_int64(2))) != 0 &&
           test_now_ms() < until)
      test_sleep_ms(100);
    if (rc) TEST_FAIL("round %d: send: %s", round, gtask_client_errmsg(cli));
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(cli, id, test_timeout_ms(15000), &r));
    ASSERT_EQ(r->values[0].v.i, 42 + round);
    gtask_result_free(r);
  }
  gt_worker_stop(&w);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
  gtask_server_free(server);
  gtask_broker_free(b);
  gtask_backend_free(k);
  gt_sentinel_stop(set);
}
