/* test_server_hooks.c -- lifecycle hooks (gtask_server_on, issue 20) on a
 * worker against a real redis-server: which events a success, a handler
 * failure, a retry, a timeout, a crash (process pool) and an unknown task
 * name report, in which order, with which id, name, queue, attempt, run time,
 * queue wait and error; and the argument checks. */
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- recorded events */

#define MAX_EVENTS 256

typedef struct rec {
  gtask_event_type type;
  char id[GTASK_ID_SIZE];
  char name[64];
  char queue[64];
  uint32_t attempt;
  int64_t run_ns, queue_wait_ms;
  char error[128];
  int error_code;
} rec;

typedef struct recorder {
  pthread_mutex_t mu;
  rec ev[MAX_EVENTS];
  size_t n;
} recorder;

static void on_event(const gtask_event *ev, void *ud) {
  recorder *r = ud;
  pthread_mutex_lock(&r->mu);
  if (r->n < MAX_EVENTS) {
    rec *e = &r->ev[r->n++];
    e->type = ev->type;
    snprintf(e->id, sizeof(e->id), "%s", ev->id);
    snprintf(e->name, sizeof(e->name), "%s", ev->name);
    snprintf(e->queue, sizeof(e->queue), "%s", ev->queue);
    e->attempt = ev->attempt;
    e->run_ns = ev->run_ns;
    e->queue_wait_ms = ev->queue_wait_ms;
    snprintf(e->error, sizeof(e->error), "%s", ev->error ? ev->error : "(null)");
    e->error_code = ev->error_code;
  }
  pthread_mutex_unlock(&r->mu);
}

/* The events of task id, in order, as a string of type letters (S started,
 * O succeeded, F failed, R retried, T timed out, C crashed, L lease lost, M
 * reclaimed); the last one's record in *last. */
static void events_of(recorder *r, const char *id, char *out, size_t size, rec *last) {
  size_t k = 0;
  if (last) memset(last, 0, sizeof(*last));
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n && k + 1 < size; i++) {
    if (strcmp(r->ev[i].id, id) != 0) continue;
    gtask_event_type t = r->ev[i].type;
    out[k++] = t == GTASK_EV_STARTED     ? 'S'
               : t == GTASK_EV_SUCCEEDED ? 'O'
               : t == GTASK_EV_FAILED    ? 'F'
               : t == GTASK_EV_RETRIED   ? 'R'
               : t == GTASK_EV_TIMED_OUT ? 'T'
               : t == GTASK_EV_CRASHED   ? 'C'
               : t == GTASK_EV_LEASE_LOST ? 'L'
                                          : 'M';
    if (last) *last = r->ev[i];
  }
  out[k] = '\0';
  pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------- handlers */

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int nap(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ud;
  if (n != 1) return gtask_ctx_fail(ctx, "nap takes 1 argument");
  if (!gtask_ctx_sleep(ctx, args[0].v.i)) return gtask_ctx_fail(ctx, "cancelled");
  return 0;
}

static int boom(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  return gtask_ctx_fail(ctx, "boom <%d>", 7);
}

static int flaky(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  if (gtask_ctx_attempt(ctx) < 2) return gtask_ctx_retry(ctx, "not yet");
  return 0;
}

static int segv(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)ctx, (void)args, (void)n, (void)ud;
  abort();
}

/* ---------------------------------------------------------------- fixture */

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_server *server;
  gtask_client *client;
  gt_worker worker;
  recorder rec;
} env;

static void env_open(env *e, gtask_pool pool) {
  memset(e, 0, sizeof(*e));
  pthread_mutex_init(&e->rec.mu, NULL);
  gtask_set_log(NULL, NULL, GTASK_LOG_ERROR);
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  e->server = gtask_server_new(e->broker, e->backend);
  ASSERT_NOT_NULL(e->server);
  ASSERT_OK(gtask_server_set_pool(e->server, pool));
  ASSERT_OK(GTASK_REG(e->server, add));
  ASSERT_OK(gtask_server_reg(e->server, "nap", nap, NULL));
  ASSERT_OK(gtask_server_reg(e->server, "boom", boom, NULL));
  ASSERT_OK(gtask_server_reg(e->server, "flaky", flaky, NULL));
  ASSERT_OK(gtask_server_reg(e->server, "segv", segv, NULL));
  ASSERT_OK(gtask_server_on(e->server, GTASK_EV_ALL, on_event, &e->rec));
  e->client = gtask_client_from_server(e->server);
  ASSERT_NOT_NULL(e->client);
  gt_worker_start(&e->worker, e->server, 2);
}

static void env_close(env *e) {
  ASSERT_OK(gt_worker_stop(&e->worker));
  gtask_client_free(e->client);
  gtask_server_free(e->server);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
  pthread_mutex_destroy(&e->rec.mu);
}

/* Sends name(args) with conf options, waits until it is final and its last
 * event (want_last) is recorded; returns its events in seq, the last in *last. */
static void run_task(env *e, gtask_send_conf *conf, const gtask_value *args, size_t n,
                     gtask_event_type want_last, char *id, char *seq, size_t seqsize, rec *last) {
  ASSERT_OK(gtask_client_send(e->client, conf, args, n, id));
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(e->client, id, test_timeout_ms(10000), &r));
  gtask_result_free(r);
  /* The outcome events follow the write that the wait saw. */
  WAIT_UNTIL((events_of(&e->rec, id, seq, seqsize, last), last->type == want_last), 5000);
}

/* ---------------------------------------------------------------- tests */

TEST(success_failure_retry_timeout) {
  env e;
  env_open(&e, GTASK_POOL_THREADS);
  char id[GTASK_ID_SIZE], seq[16];
  rec last;

  gtask_send_conf *c = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_delay(c, 200));
  run_task(&e, c, (gtask_value[]){gtask_int64(1), gtask_int64(2)}, 2, GTASK_EV_SUCCEEDED, id, seq,
           sizeof(seq), &last);
  ASSERT_STR_EQ(seq, "SO");
  ASSERT_STR_EQ(last.name, "add");
  ASSERT_STR_EQ(last.queue, "default");
  ASSERT_EQ(last.attempt, 1);
  ASSERT_STR_EQ(last.error, "(null)");
  ASSERT_EQ(last.error_code, 0);
  ASSERT_GE(last.queue_wait_ms, 200); /* sent with a 200 ms delay */
  ASSERT_GT(last.run_ns, 0);
  gtask_send_conf_free(c);

  c = gtask_send_conf_new("nap");
  run_task(&e, c, (gtask_value[]){gtask_int64(60)}, 1, GTASK_EV_SUCCEEDED, id, seq, sizeof(seq), &last);
  ASSERT_STR_EQ(seq, "SO");
  ASSERT_GE(last.run_ns, 59 * 1000000LL); /* gtask_ctx_sleep counts whole ms */
  ASSERT_LT(last.queue_wait_ms, test_timeout_ms(5000));
  gtask_send_conf_free(c);

  c = gtask_send_conf_new("boom");
  run_task(&e, c, NULL, 0, GTASK_EV_FAILED, id, seq, sizeof(seq), &last);
  ASSERT_STR_EQ(seq, "SF");
  ASSERT_STR_EQ(last.error, "boom <7>");
  ASSERT_EQ(last.error_code, GTASK_EHANDLER);
  ASSERT_EQ(last.attempt, 1);
  gtask_send_conf_free(c);

  c = gtask_send_conf_new("flaky");
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 2));
  ASSERT_OK(gtask_send_conf_set_backoff(c, 10, 10));
  run_task(&e, c, NULL, 0, GTASK_EV_SUCCEEDED, id, seq, sizeof(seq), &last);
  ASSERT_STR_EQ(seq, "SRSO");
  ASSERT_EQ(last.attempt, 2);
  gtask_send_conf_free(c);

  /* Timed out with a retry left, then without: T before R, T before F. */
  c = gtask_send_conf_new("nap");
  ASSERT_OK(gtask_send_conf_set_timeout(c, 50));
  ASSERT_OK(gtask_send_conf_set_retry_num(c, 1));
  ASSERT_OK(gtask_send_conf_set_backoff(c, 10, 10));
  run_task(&e, c, (gtask_value[]){gtask_int64(5000)}, 1, GTASK_EV_FAILED, id, seq, sizeof(seq), &last);
  ASSERT_STR_EQ(seq, "STRSTF");
  ASSERT_EQ(last.error_code, GTASK_ETASKTIMEOUT);
  ASSERT_STR_CONTAINS(last.error, "timeout");
  ASSERT_EQ(last.attempt, 2);
  ASSERT_GE(last.run_ns, 49 * 1000000LL); /* the deadline has ms granularity */
  gtask_send_conf_free(c);

  /* Never ran: no STARTED, attempt 0, no run time. */
  c = gtask_send_conf_new("nosuch");
  run_task(&e, c, NULL, 0, GTASK_EV_FAILED, id, seq, sizeof(seq), &last);
  ASSERT_STR_EQ(seq, "F");
  ASSERT_EQ(last.error_code, GTASK_ENOHANDLER);
  ASSERT_EQ(last.attempt, 0);
  ASSERT_EQ(last.run_ns, 0);
  ASSERT_STR_EQ(last.name, "nosuch");
  gtask_send_conf_free(c);
  env_close(&e);
}

TEST(crash_in_process_pool) {
  env e;
  env_open(&e, GTASK_POOL_PROCS);
  char id[GTASK_ID_SIZE], seq[16];
  rec last;
  gtask_send_conf *c = gtask_send_conf_new("segv");
  run_task(&e, c, NULL, 0, GTASK_EV_FAILED, id, seq, sizeof(seq), &last);
  ASSERT_STR_EQ(seq, "SCF");
  ASSERT_EQ(last.error_code, GTASK_ECRASH);
  gtask_send_conf_free(c);
  env_close(&e);
}

static void count_hook(const gtask_event *ev, void *ud) {
  (void)ev;
  __atomic_fetch_add((int *)ud, 1, __ATOMIC_RELAXED);
}

typedef struct mem_run {
  gtask_server *s;
  int rc;
} mem_run;

static void *mem_run_main(void *arg) {
  mem_run *m = arg;
  m->rc = gtask_server_run(m->s, 1);
  return NULL;
}

TEST(arguments_and_masks) {
  gtask_set_log(NULL, NULL, GTASK_LOG_ERROR);
  gtask_broker *b = gtask_broker_memory_new();
  gtask_backend *k = gtask_backend_memory_new();
  gtask_server *s = gtask_server_new(b, k);
  int failed = 0, succeeded = 0;
  ASSERT_EQ(gtask_server_on(NULL, GTASK_EV_ALL, count_hook, &failed), GTASK_EINVAL);
  ASSERT_EQ(gtask_server_on(s, 0, count_hook, &failed), GTASK_EINVAL);
  ASSERT_EQ(gtask_server_on(s, 1u << 20, count_hook, &failed), GTASK_EINVAL);
  ASSERT_EQ(gtask_server_on(s, GTASK_EV_ALL, NULL, &failed), GTASK_EINVAL);
  for (int i = 0; i < 15; i++) ASSERT_OK(gtask_server_on(s, GTASK_EV_FAILED, count_hook, &failed));
  ASSERT_OK(gtask_server_on(s, GTASK_EV_SUCCEEDED, count_hook, &succeeded));
  ASSERT_EQ(gtask_server_on(s, GTASK_EV_FAILED, count_hook, &failed), GTASK_ERANGE);
  ASSERT_OK(GTASK_REG(s, add));

  /* Three successes and one failure: each FAILED hook runs once, the
   * SUCCEEDED one three times, and nothing else is reported to them. */
  gtask_client *c = gtask_client_from_server(s);
  gtask_send_conf *conf = gtask_send_conf_new("add");
  gtask_send_conf *nosuch = gtask_send_conf_new("nosuch");
  char ids[4][GTASK_ID_SIZE];
  for (int i = 0; i < 3; i++) ASSERT_OK(GTASK_SEND(c, conf, ids[i], gtask_int64(i), gtask_int64(1)));
  ASSERT_OK(gtask_client_send(c, nosuch, NULL, 0, ids[3]));
  mem_run m = {.s = s};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, mem_run_main, &m), 0);
  WAIT_UNTIL(__atomic_load_n(&succeeded, __ATOMIC_RELAXED) == 3 &&
                 __atomic_load_n(&failed, __ATOMIC_RELAXED) == 15,
             5000);
  /* Registering while it runs is refused. */
  ASSERT_EQ(gtask_server_on(s, GTASK_EV_FAILED, count_hook, &failed), GTASK_ESTATE);
  gtask_server_shutdown(s);
  pthread_join(t, NULL);
  ASSERT_OK(m.rc);
  ASSERT_EQ(succeeded, 3);
  ASSERT_EQ(failed, 15);
  gtask_send_conf_free(conf);
  gtask_send_conf_free(nosuch);
  gtask_client_free(c);
  gtask_server_free(s);
  gtask_broker_free(b);
  gtask_backend_free(k);
}
