/* contract.c -- the broker and backend contracts of <gtask/extend.h> as tests,
 * runnable against any implementation (issue 21; the entry point is
 * <gtask/contract.h>, STYLE.md point 12).
 *
 * Each case is written once, as a function of an `env` holding a broker and a
 * backend that the target's make() built, and CONTRACT(kind, name) registers
 * it in this file's list; gtask_contract_register() then registers, for one
 * target, every case whose kind applies as the test "<target>_<name>" with the
 * test runner (tests/support/runner.c, linked into the same library).  The
 * kinds:
 *   BROKER, BACKEND  the target has GTASK_CONTRACT_BROKER / _BACKEND;
 *   PAIR             always (a broker and a backend used together);
 *   COLOCATED        the target has GTASK_CONTRACT_COLOCATED;
 *   RESULT_TTL       the target has GTASK_CONTRACT_RESULT_TTL;
 *   NEW_TOKEN        the target has GTASK_CONTRACT_RECLAIM_NEW_TOKEN;
 *   BROKER_ALLOC, BACKEND_ALLOC  the part is under test and the target has
 *                    an allocation seam (fail_alloc_at).
 * The in-tree targets (memory, Redis, TLS, ACL) are in
 * tests/integration/test_contract.c; examples/sqlite_backend runs the suite
 * on a backend built outside the library.
 *
 * The cases use the public API only (gtask.h, extend.h), and call the
 * operation tables directly (e->bo->push(e->bi, ...)), as the core does, so
 * they test the interface and nothing above it.  Bodies are arbitrary bytes
 * -- brokers treat them as opaque -- and every case uses its own queue names.
 *
 * Timing: "promptly" means within test_timeout_ms(200) of the event.  Sleeps
 * that wait for a lease to expire or a due time to pass (test_sleep_ms(lease_ms
 * + 150), say) wait out a clock, not another thread: load only makes them
 * longer, never too short, so they stay sleeps rather than WAIT_UNTIL loops
 * (a loop would also reclaim a batch leased in one call in two parts when it
 * polls across the millisecond its entries expire in), and they leave a
 * margin of at least 10 ms.  What another thread does is waited for: see
 * later_main.  Under slow sanitizers, raise GTASK_TEST_TIMEOUT_MULTIPLIER. */
#define _GNU_SOURCE
#include "test.h"

#include <gtask/contract.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Final results are result records (docs/PROTOCOL.md, section 4): the Redis
 * backend reads a final task's status and attempts from its record. */
#define REC_OK(n, at) "{\"v\":1,\"s\":\"SUCCESS\",\"vals\":[[\"int64\"," #n "]],\"at\":" #at "}"
#define REC_FAIL(why, at) "{\"v\":1,\"s\":\"FAILURE\",\"err\":\"" why "\",\"at\":" #at "}"

/* The record lifetime the RESULT_TTL case asks for: the Redis minimum. */
#define RESULT_TTL_MS 1000

/* ---------------------------------------------------------------- registry */

typedef struct env {
  const gtask_contract_target *t;
  gtask_broker *b;
  gtask_backend *be;
  const gtask_broker_ops *bo; /* b's table and impl */
  void *bi;
  const gtask_backend_ops *eo; /* be's table and impl */
  void *ei;
  void *state; /* the target's, from make() */
  char q[64];  /* a queue name unique to this case */
} env;

typedef enum case_kind {
  BROKER,
  BACKEND,
  PAIR,
  COLOCATED,
  RESULT_TTL,
  NEW_TOKEN,
  BROKER_ALLOC,
  BACKEND_ALLOC
} case_kind;

typedef struct contract_case {
  const char *name;
  case_kind kind;
  int line; /* the runner orders tests by file and line */
  void (*fn)(env *e);
} contract_case;

static contract_case cases[96];
static size_t ncases;

static void case_add(const char *name, case_kind kind, int line, void (*fn)(env *)) {
  if (ncases == sizeof(cases) / sizeof(cases[0])) {
    fprintf(stderr, "contract.c: more cases than the list holds (%s)\n", name);
    abort();
  }
  cases[ncases++] = (contract_case){name, kind, line, fn};
}

/* Defines case_<name>(env *) and adds it to the list at load time, before
 * any constructor without a priority (which may register a target). */
#define CONTRACT(kind, name)                                                   \
  static void case_##name(env *e);                                             \
  __attribute__((constructor(101))) static void case_reg_##name(void) {        \
    case_add(#name, kind, __LINE__, case_##name);                              \
  }                                                                            \
  static void case_##name(env *e)

/* ---------------------------------------------------------------- portable helpers */

/* Wall-clock unix ms, the clock of due times (gtask_msg.due_ms). */
static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A new random (version 4) UUID in text form, as task ids are. */
static void new_id(char id[GTASK_ID_SIZE]) {
  unsigned char r[16];
  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
    TEST_FAIL("getrandom failed");
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
  snprintf(id, GTASK_ID_SIZE,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
           r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
           r[15]);
}

/* "q-" and 8 random hex digits, plus an optional suffix. */
static void unique_queue(char *buf, size_t size, const char *suffix) {
  char id[GTASK_ID_SIZE];
  new_id(id);
  snprintf(buf, size, "q-%.8s%s", id, suffix ? suffix : "");
}

/* How many calls are blocked in the target's store, or -1 if it cannot say. */
static int blocked(env *e) { return e->t->blocked ? e->t->blocked(e->t->arg, e->state) : -1; }

/* The colocated state of the pair (COLOCATED cases). */
static void *colocated(env *e) {
  ASSERT_NOT_NULL(e->bo->colocated);
  void *state = e->bo->colocated(e->bi, e->be);
  ASSERT_NOT_NULL(state);
  return state;
}

/* ---------------------------------------------------------------- running a case */

typedef struct registration {
  const gtask_contract_target *t;
  const contract_case *c;
  char name[128];
  struct registration *next; /* all of them, from `registrations` */
} registration;

static registration *registrations; /* live for the process */

static void run_case(void *arg) {
  const registration *r = arg;
  env e;
  memset(&e, 0, sizeof(e));
  e.t = r->t;
  int64_t ttl = r->c->kind == RESULT_TTL ? RESULT_TTL_MS : 0;
  int rc = r->t->make(r->t->arg, ttl, &e.b, &e.be, &e.state);
  if (rc != 0)
    TEST_FAIL("%s: make: %s (%s): %s", r->t->name, gtask_err_name(rc), gtask_strerror(rc),
              gtask_last_error());
  ASSERT_NOT_NULL(e.b);
  ASSERT_NOT_NULL(e.be);
  e.bo = gtask_broker_ops_get(e.b, &e.bi);
  e.eo = gtask_backend_ops_get(e.be, &e.ei);
  ASSERT_NOT_NULL(e.bo);
  ASSERT_NOT_NULL(e.eo);
  /* A broker that claims colocation the target did not declare (or the
   * reverse) would take the untested path. */
  bool colo = e.bo->colocated != NULL && e.bo->colocated(e.bi, e.be) != NULL;
  ASSERT_EQ(colo, (r->t->caps & GTASK_CONTRACT_COLOCATED) != 0);
  unique_queue(e.q, sizeof(e.q), NULL);
  r->c->fn(&e);
  gtask_broker_free(e.b);
  gtask_backend_free(e.be);
  if (r->t->done)
    r->t->done(r->t->arg, e.state);
}

static bool applies(const gtask_contract_target *t, const contract_case *c) {
  unsigned caps = t->caps;
  switch (c->kind) {
  case BROKER:
    return caps & GTASK_CONTRACT_BROKER;
  case BACKEND:
    return caps & GTASK_CONTRACT_BACKEND;
  case PAIR:
    return true;
  case COLOCATED:
    return caps & GTASK_CONTRACT_COLOCATED;
  case RESULT_TTL:
    return caps & GTASK_CONTRACT_RESULT_TTL;
  case NEW_TOKEN:
    return caps & GTASK_CONTRACT_RECLAIM_NEW_TOKEN;
  case BROKER_ALLOC:
    return (caps & GTASK_CONTRACT_BROKER) && t->fail_alloc_at != NULL;
  case BACKEND_ALLOC:
    return (caps & GTASK_CONTRACT_BACKEND) && t->fail_alloc_at != NULL;
  }
  return false;
}

static bool name_ok(const char *s) {
  if (s == NULL || *s == '\0')
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return false;
  return true;
}

int gtask_contract_register(const gtask_contract_target *t) {
  if (t == NULL || !name_ok(t->name) || t->make == NULL || t->abi < 0 ||
      t->abi > GTASK_CONTRACT_ABI) {
    fprintf(stderr, "gtask_contract_register: %s\n",
            t == NULL                   ? "NULL target"
            : !name_ok(t->name)         ? "the name must be letters, digits and '_'"
            : t->make == NULL           ? "make is required"
                                        : "unknown abi (GTASK_CONTRACT_ABI)");
    return GTASK_EINVAL;
  }
  for (size_t i = 0; i < ncases; i++) {
    if (!applies(t, &cases[i]))
      continue;
    registration *r = calloc(1, sizeof(*r));
    if (r == NULL)
      return GTASK_ENOMEM;
    r->next = registrations;
    registrations = r;
    r->t = t;
    r->c = &cases[i];
    snprintf(r->name, sizeof(r->name), "%s_%s", t->name, cases[i].name);
    test__register_arg(r->name, run_case, r, __FILE__, cases[i].line, TEST_DEFAULT_TIMEOUT_S);
  }
  return 0;
}

int gtask_contract_main(int argc, char **argv) { return test__main(argc, argv); }

int gtask_contract_run(const gtask_contract_target *t, int argc, char **argv) {
  int rc = gtask_contract_register(t);
  return rc != 0 ? 2 : gtask_contract_main(argc, argv);
}

/* ---------------------------------------------------------------- helpers */

static const char *const BODIES[] = {"{\"hello\":1}", "{\"hello\":2}", "{\"hello\":3}",
                                     "{\"hello\":4}", "{\"hello\":5}", "{\"hello\":6}"};

/* Pushes one message with body (len bytes) to queue, due at due_ms (0: now);
 * writes its new id to id_out (may be NULL). */
static void push_bytes(env *e, const char *queue, const char *body, size_t len, int64_t due_ms,
                       char *id_out) {
  char id[GTASK_ID_SIZE];
  new_id(id);
  gtask_msg *m = gtask_msg_new(id, queue, body, len);
  ASSERT_NOT_NULL(m);
  m->due_ms = due_ms;
  ASSERT_OK(e->bo->push(e->bi, &m, 1, NULL));
  gtask_msg_free(m);
  if (id_out)
    memcpy(id_out, id, GTASK_ID_SIZE);
}

static void push(env *e, const char *queue, const char *body, int64_t due_ms, char *id_out) {
  push_bytes(e, queue, body, strlen(body), due_ms, id_out);
}

/* Leases from one queue; returns how many. */
static size_t lease(env *e, const char *consumer, const char *queue, size_t max, int64_t wait_ms,
                    gtask_msg **out) {
  size_t n = 99;
  const char *queues[] = {queue};
  ASSERT_OK(e->bo->lease(e->bi, consumer, queues, 1, max, wait_ms, out, &n));
  ASSERT_LE(n, max);
  return n;
}

/* Leases exactly one message from e->q at once. */
static gtask_msg *lease1(env *e, const char *consumer) {
  gtask_msg *m = NULL;
  ASSERT_EQ(lease(e, consumer, e->q, 1, 0, &m), 1);
  ASSERT_NOT_NULL(m);
  ASSERT_NOT_NULL(m->lease);
  return m;
}

static void free_msgs(gtask_msg **m, size_t n) {
  for (size_t i = 0; i < n; i++)
    gtask_msg_free(m[i]);
}

/* Finishes one delivery; returns fin.fenced. */
static bool finish(env *e, const char *consumer, gtask_msg *m, gtask_fin_kind kind,
                   const char *next, int64_t next_due_ms) {
  gtask_fin f = {
      .msg = m,
      .kind = kind,
      .status = kind == GTASK_FIN_DONE    ? GTASK_SUCCESS
                : kind == GTASK_FIN_DEAD  ? GTASK_FAILURE
                : kind == GTASK_FIN_RETRY ? GTASK_RETRY
                                          : GTASK_PENDING,
      .next = next,
      .next_len = next ? strlen(next) : 0,
      .next_due_ms = next_due_ms,
      .fenced = true,
  };
  ASSERT_OK(e->bo->finish(e->bi, consumer, &f, 1, NULL));
  return f.fenced;
}

/* Heartbeat of one delivery; returns lost. */
static bool extend(env *e, const char *consumer, gtask_msg *m) {
  bool lost = false;
  ASSERT_OK(e->bo->extend(e->bi, consumer, &m, 1, &lost));
  return lost;
}

static gtask_queue_stats stats(env *e, const char *queue) {
  gtask_queue_stats s;
  memset(&s, 0xff, sizeof(s));
  ASSERT_OK(e->bo->stats(e->bi, queue, &s));
  return s;
}

#define ASSERT_STATS(e, queue, p, a, s, d)                                     \
  do {                                                                         \
    gtask_queue_stats st__ = stats((e), (queue));                              \
    ASSERT_EQ(st__.pending, (p));                                              \
    ASSERT_EQ(st__.active, (a));                                               \
    ASSERT_EQ(st__.scheduled, (s));                                            \
    ASSERT_EQ(st__.dead, (d));                                                 \
  } while (0)

static void assert_msg(const gtask_msg *m, const char *id, const char *queue, const char *body) {
  ASSERT_NOT_NULL(m);
  ASSERT_STR_EQ(m->id, id);
  ASSERT_STR_EQ(m->queue, queue);
  ASSERT_EQ(m->len, strlen(body));
  ASSERT_MEM_EQ(m->body, body, m->len);
  ASSERT_NOT_NULL(m->lease);
}

/* Something another thread does while the test's thread is blocked in a call
 * (a lease, a result wait), after a delay. */
typedef enum later_kind { LATER_PUSH, LATER_INTERRUPT, LATER_STORE } later_kind;

typedef struct later {
  env *e;
  later_kind kind;
  int64_t delay_ms;
  const char *consumer; /* LATER_INTERRUPT */
  gtask_msg *msg;       /* LATER_STORE: the task to make final */
  int64_t at_ms;        /* out: test_now_ms() when it was done */
  pthread_t thread;
} later;

static void *later_main(void *arg) {
  later *l = arg;
  /* With the target's blocked() hook the blocked call can be seen (Redis:
   * INFO clients); without it (the memory pair) the delay alone gives the
   * call the time to block.  Either way the event comes delay_ms after the
   * call blocked at the earliest, which tests that measure from the call's
   * start rely on. */
  if (blocked(l->e) >= 0)
    WAIT_UNTIL(blocked(l->e) > 0, 5000);
  test_sleep_ms(l->delay_ms);
  l->at_ms = test_now_ms();
  switch (l->kind) {
  case LATER_PUSH:
    push(l->e, l->e->q, BODIES[0], 0, NULL);
    break;
  case LATER_INTERRUPT:
    ASSERT_OK(l->e->bo->interrupt(l->e->bi, l->consumer));
    break;
  case LATER_STORE: {
    gtask_fin f = {.msg = l->msg, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                   .result = REC_OK(1, 1), .result_len = sizeof(REC_OK(1, 1)) - 1};
    ASSERT_OK(l->e->eo->store(l->e->ei, &f, 1));
    ASSERT_FALSE(f.fenced);
    break;
  }
  }
  return NULL;
}

static void later_start(later *l) {
  l->at_ms = 0;
  ASSERT_EQ(pthread_create(&l->thread, NULL, later_main, l), 0);
}

static void later_join(later *l) { ASSERT_EQ(pthread_join(l->thread, NULL), 0); }

/* ---------------------------------------------------------------- broker: leasing */

CONTRACT(BROKER, push_lease_fifo) {
  char ids[4][GTASK_ID_SIZE];
  for (int i = 0; i < 3; i++)
    push(e, e->q, BODIES[i], 0, ids[i]);
  /* Opaque bytes: an embedded NUL and no terminator of its own. */
  static const char binary[] = {'a', '\0', 'b', (char)0xff};
  push_bytes(e, e->q, binary, sizeof(binary), 0, ids[3]);

  gtask_msg *m[8];
  size_t n = lease(e, "c1", e->q, 8, 0, m);
  ASSERT_EQ(n, 4);
  for (int i = 0; i < 3; i++)
    assert_msg(m[i], ids[i], e->q, BODIES[i]);
  ASSERT_STR_EQ(m[3]->id, ids[3]);
  ASSERT_EQ(m[3]->len, sizeof(binary));
  ASSERT_MEM_EQ(m[3]->body, binary, sizeof(binary));
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      ASSERT_STR_NE(m[i]->lease, m[j]->lease);
  ASSERT_STATS(e, e->q, 0, 4, 0, 0);
  for (size_t i = 0; i < n; i++)
    ASSERT_FALSE(finish(e, "c1", m[i], GTASK_FIN_DONE, NULL, 0));
  free_msgs(m, n);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
}

CONTRACT(BROKER, lease_times_out) {
  gtask_msg *m[1];
  int64_t t0 = test_now_ms();
  ASSERT_EQ(lease(e, "c1", e->q, 1, 300, m), 0);
  int64_t took = test_now_ms() - t0;
  ASSERT_GE(took, 295);
  /* The slack covers a first connection (TLS handshake, AUTH) and the state
   * reads before and after the block on a loaded 2-core machine. */
  ASSERT_LT(took, 300 + test_timeout_ms(1000));
  /* wait_ms == 0 does not block. */
  t0 = test_now_ms();
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, m), 0);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(200));
}

CONTRACT(BROKER, lease_wakes_on_push) {
  later l = {.e = e, .kind = LATER_PUSH, .delay_ms = 150};
  later_start(&l);
  gtask_msg *m[1];
  ASSERT_EQ(lease(e, "c1", e->q, 1, test_timeout_ms(5000), m), 1);
  int64_t woke = test_now_ms();
  later_join(&l);
  ASSERT_LT(woke - l.at_ms, test_timeout_ms(200));
  ASSERT_STR_EQ(m[0]->body, BODIES[0]);
  free_msgs(m, 1);
}

CONTRACT(BROKER, lease_for_ever_wakes_on_push) {
  later l = {.e = e, .kind = LATER_PUSH, .delay_ms = 150};
  later_start(&l);
  gtask_msg *m[1];
  ASSERT_EQ(lease(e, "c1", e->q, 1, -1, m), 1);
  int64_t woke = test_now_ms();
  later_join(&l);
  ASSERT_LT(woke - l.at_ms, test_timeout_ms(200));
  free_msgs(m, 1);
}

CONTRACT(BROKER, interrupt_wakes_lease) {
  later l = {.e = e, .kind = LATER_INTERRUPT, .delay_ms = 150, .consumer = "c1"};
  later_start(&l);
  gtask_msg *m[1];
  int64_t t0 = test_now_ms();
  ASSERT_EQ(lease(e, "c1", e->q, 1, test_timeout_ms(5000), m), 0);
  int64_t woke = test_now_ms();
  later_join(&l);
  ASSERT_GE(woke - t0, 100); /* it did block until the interrupt */
  ASSERT_LT(woke - l.at_ms, test_timeout_ms(200));
}

/* An interrupt that comes just before the lease blocks is not lost. */
CONTRACT(BROKER, interrupt_before_lease) {
  ASSERT_OK(e->bo->interrupt(e->bi, "c1"));
  ASSERT_OK(e->bo->interrupt(e->bi, "c1")); /* idempotent */
  gtask_msg *m[1];
  int64_t t0 = test_now_ms();
  ASSERT_EQ(lease(e, "c1", e->q, 1, test_timeout_ms(5000), m), 0);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(200));
}

/* An interrupt cuts short one lease (the blocked one, or else the next), not
 * every later one. */
CONTRACT(BROKER, interrupt_one_shot) {
  ASSERT_OK(e->bo->interrupt(e->bi, "c1"));
  push(e, e->q, BODIES[0], 0, NULL);
  gtask_msg *m[1];
  ASSERT_EQ(lease(e, "c1", e->q, 1, 1000, m), 0); /* interrupted, even with work */
  ASSERT_EQ(lease(e, "c1", e->q, 1, 1000, m), 1);
  free_msgs(m, 1);
  /* After waking a blocked lease, the interrupt is spent too. */
  later l = {.e = e, .kind = LATER_INTERRUPT, .delay_ms = 150, .consumer = "c1"};
  later_start(&l);
  ASSERT_EQ(lease(e, "c1", e->q, 1, test_timeout_ms(5000), m), 0);
  later_join(&l);
  push(e, e->q, BODIES[1], 0, NULL);
  ASSERT_EQ(lease(e, "c1", e->q, 1, 1000, m), 1);
  ASSERT_STR_EQ(m[0]->body, BODIES[1]);
  free_msgs(m, 1);
}

CONTRACT(BROKER, interrupt_other_consumer) {
  later l = {.e = e, .kind = LATER_INTERRUPT, .delay_ms = 50, .consumer = "c2"};
  later_start(&l);
  gtask_msg *m[1];
  int64_t t0 = test_now_ms();
  ASSERT_EQ(lease(e, "c1", e->q, 1, 400, m), 0); /* c2's interrupt does not wake c1 */
  ASSERT_GE(test_now_ms() - t0, 395);
  later_join(&l);
}

CONTRACT(BROKER, lease_max_batch) {
  char ids[5][GTASK_ID_SIZE];
  for (int i = 0; i < 5; i++)
    push(e, e->q, BODIES[i], 0, ids[i]);
  gtask_msg *m[5];
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, m), 2);
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, m + 2), 2);
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, m + 4), 1);
  for (int i = 0; i < 5; i++)
    assert_msg(m[i], ids[i], e->q, BODIES[i]);
  ASSERT_STATS(e, e->q, 0, 5, 0, 0);
  free_msgs(m, 5);
}

/* max bounds the whole batch across queues, and nothing beyond it is taken. */
CONTRACT(BROKER, lease_max_across_queues) {
  char qb[64];
  unique_queue(qb, sizeof(qb), "-b");
  for (int i = 0; i < 3; i++) {
    push(e, e->q, BODIES[i], 0, NULL);
    push(e, qb, BODIES[3 + i], 0, NULL);
  }
  const char *queues[] = {e->q, qb};
  gtask_msg *m[6];
  size_t n1 = 0, n2 = 0;
  ASSERT_OK(e->bo->lease(e->bi, "c1", queues, 2, 4, 0, m, &n1));
  ASSERT_EQ(n1, 4);
  ASSERT_OK(e->bo->lease(e->bi, "c1", queues, 2, 4, 0, m + n1, &n2));
  ASSERT_EQ(n2, 2);
  int seen[6] = {0};
  for (size_t i = 0; i < 6; i++) {
    for (int k = 0; k < 6; k++)
      if (strcmp(m[i]->body, BODIES[k]) == 0)
        seen[k]++;
    ASSERT_STR_EQ(m[i]->queue, strcmp(m[i]->body, BODIES[3]) >= 0 ? qb : e->q);
  }
  for (int k = 0; k < 6; k++)
    ASSERT_EQ(seen[k], 1);
  ASSERT_STATS(e, e->q, 0, 3, 0, 0);
  ASSERT_STATS(e, qb, 0, 3, 0, 0);
  free_msgs(m, 6);
}

/* ---------------------------------------------------------------- broker: leases */

CONTRACT(BROKER, extend_keeps_lease) {
  /* Renewed every quarter lease, for 1.5 leases in all: the sleeps give the
   * lease the time to expire, which it must not do.  Scaled, so that on a
   * busy machine a renewal may come up to 3/4 of a lease late. */
  const int64_t lease_ms = test_timeout_ms(400);
  char id[GTASK_ID_SIZE];
  push(e, e->q, BODIES[0], 0, id);
  gtask_msg *m = lease1(e, "c1");
  for (int i = 0; i < 6; i++) {
    test_sleep_ms(lease_ms / 4);
    ASSERT_FALSE(extend(e, "c1", m));
  }
  gtask_msg *r[1];
  size_t n = 99;
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, lease_ms, 10, r, &n));
  ASSERT_EQ(n, 0);
  ASSERT_STATS(e, e->q, 0, 1, 0, 0);
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0));
  gtask_msg_free(m);
}

CONTRACT(BROKER, reclaim_fences_old_holder) {
  const int64_t lease_ms = 200;
  char id[GTASK_ID_SIZE];
  push(e, e->q, BODIES[0], 0, id);
  gtask_msg *m1 = lease1(e, "c1");

  gtask_msg *r[4];
  size_t n = 99;
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, lease_ms, 4, r, &n));
  ASSERT_EQ(n, 0); /* not expired yet */

  test_sleep_ms(lease_ms + 150);
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, lease_ms, 4, r, &n));
  ASSERT_EQ(n, 1);
  gtask_msg *m2 = r[0];
  assert_msg(m2, id, e->q, BODIES[0]);
  ASSERT_STATS(e, e->q, 0, 1, 0, 0);

  /* The old holder can change nothing. */
  ASSERT_TRUE(extend(e, "c1", m1));
  ASSERT_TRUE(finish(e, "c1", m1, GTASK_FIN_DONE, NULL, 0));
  ASSERT_TRUE(finish(e, "c1", m1, GTASK_FIN_REQUEUE, BODIES[1], 0));
  ASSERT_STATS(e, e->q, 0, 1, 0, 0);

  /* The new holder can. */
  ASSERT_FALSE(extend(e, "c2", m2));
  ASSERT_FALSE(finish(e, "c2", m2, GTASK_FIN_REQUEUE, BODIES[2], 0));
  gtask_msg *m3 = lease1(e, "c2");
  assert_msg(m3, id, e->q, BODIES[2]);
  ASSERT_FALSE(finish(e, "c2", m3, GTASK_FIN_DONE, NULL, 0));
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  gtask_msg_free(m1);
  gtask_msg_free(m2);
  gtask_msg_free(m3);
}

CONTRACT(BROKER, reclaim_max) {
  for (int i = 0; i < 3; i++)
    push(e, e->q, BODIES[i], 0, NULL);
  gtask_msg *m[3];
  ASSERT_EQ(lease(e, "c1", e->q, 3, 0, m), 3);
  test_sleep_ms(300);
  gtask_msg *r[3];
  size_t n1 = 0, n2 = 0;
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, 200, 2, r, &n1));
  ASSERT_EQ(n1, 2);
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, 200, 2, r + n1, &n2));
  ASSERT_EQ(n2, 1);
  ASSERT_STATS(e, e->q, 0, 3, 0, 0);
  free_msgs(m, 3);
  free_msgs(r, 3);
}

/* ---------------------------------------------------------------- broker: finish */

CONTRACT(BROKER, finish_done) {
  push(e, e->q, BODIES[0], 0, NULL);
  gtask_msg *m = lease1(e, "c1");
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0));
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  gtask_msg *x[1];
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, x), 0);
  gtask_msg *r[1];
  size_t n = 99;
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, 0, 1, r, &n));
  ASSERT_EQ(n, 0);
  /* Finishing twice: the lease is gone. */
  ASSERT_TRUE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0));
  /* Another consumer cannot finish what it does not hold. */
  push(e, e->q, BODIES[1], 0, NULL);
  gtask_msg *m2 = lease1(e, "c1");
  ASSERT_TRUE(finish(e, "c2", m2, GTASK_FIN_DONE, NULL, 0));
  ASSERT_TRUE(extend(e, "c2", m2));
  ASSERT_STATS(e, e->q, 0, 1, 0, 0);
  ASSERT_FALSE(finish(e, "c1", m2, GTASK_FIN_DONE, NULL, 0));
  gtask_msg_free(m);
  gtask_msg_free(m2);
}

CONTRACT(BROKER, finish_retry_schedules) {
  char id[GTASK_ID_SIZE];
  push(e, e->q, BODIES[0], 0, id);
  gtask_msg *m = lease1(e, "c1");
  int64_t due = now_ms() + 400;
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_RETRY, "retry-body", due));
  gtask_msg_free(m);
  ASSERT_STATS(e, e->q, 0, 0, 1, 0);

  gtask_msg *x[1];
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, x), 0);
  int64_t next = -1;
  ASSERT_OK(e->bo->promote(e->bi, e->q, 100, &next));
  ASSERT_EQ(next, due);
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, x), 0);
  ASSERT_STATS(e, e->q, 0, 0, 1, 0);

  int64_t left = due - now_ms();
  test_sleep_ms((left > 0 ? left : 0) + 100);
  ASSERT_OK(e->bo->promote(e->bi, e->q, 100, &next));
  ASSERT_EQ(next, 0);
  ASSERT_STATS(e, e->q, 1, 0, 0, 0);
  m = lease1(e, "c1");
  assert_msg(m, id, e->q, "retry-body");
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0));
  gtask_msg_free(m);
}

CONTRACT(BROKER, finish_requeue) {
  char id[GTASK_ID_SIZE];
  push(e, e->q, BODIES[0], 0, id);
  push(e, e->q, BODIES[1], 0, NULL);
  gtask_msg *m = lease1(e, "c1");
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_REQUEUE, "requeued", 0));
  ASSERT_STATS(e, e->q, 2, 0, 0, 0);
  /* At the tail, at once, with its new body and a new lease. */
  gtask_msg *x[2];
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, x), 2);
  ASSERT_STR_EQ(x[0]->body, BODIES[1]);
  assert_msg(x[1], id, e->q, "requeued");
  ASSERT_STR_NE(x[1]->lease, m->lease);
  ASSERT_TRUE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0)); /* the old delivery */
  free_msgs(x, 2);
  gtask_msg_free(m);
}

CONTRACT(BROKER, finish_requeue_wakes_lease) {
  push(e, e->q, BODIES[0], 0, NULL);
  gtask_msg *m = lease1(e, "c1");
  gtask_msg *x[1];
  ASSERT_EQ(lease(e, "c2", e->q, 1, 0, x), 0);
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_REQUEUE, NULL, 0)); /* NULL next: same body */
  ASSERT_EQ(lease(e, "c2", e->q, 1, 0, x), 1);
  ASSERT_STR_EQ(x[0]->body, BODIES[0]);
  free_msgs(x, 1);
  gtask_msg_free(m);
}

CONTRACT(BROKER, finish_dead) {
  push(e, e->q, BODIES[0], 0, NULL);
  gtask_msg *m = lease1(e, "c1");
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DEAD, "dead-body", 0));
  ASSERT_STATS(e, e->q, 0, 0, 0, 1);
  gtask_msg *x[1];
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, x), 0);
  int64_t next = -1;
  ASSERT_OK(e->bo->promote(e->bi, e->q, 100, &next));
  ASSERT_EQ(next, 0);
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, x), 0);
  gtask_msg_free(m);
}

/* Several fins in one call, each handled on its own. */
CONTRACT(BROKER, finish_batch) {
  for (int i = 0; i < 4; i++)
    push(e, e->q, BODIES[i], 0, NULL);
  gtask_msg *m[4];
  ASSERT_EQ(lease(e, "c1", e->q, 4, 0, m), 4);
  gtask_msg *stale = gtask_msg_new(m[0]->id, e->q, "x", 1);
  ASSERT_NOT_NULL(stale);
  ASSERT_OK(gtask_msg_set_lease(stale, "0-1")); /* never handed out by either broker */
  gtask_fin f[5] = {
      {.msg = m[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS},
      {.msg = m[1], .kind = GTASK_FIN_RETRY, .status = GTASK_RETRY, .next = "r", .next_len = 1,
       .next_due_ms = now_ms() + 60000},
      {.msg = m[2], .kind = GTASK_FIN_REQUEUE, .status = GTASK_PENDING},
      {.msg = m[3], .kind = GTASK_FIN_DEAD, .status = GTASK_FAILURE},
      {.msg = stale, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS},
  };
  ASSERT_OK(e->bo->finish(e->bi, "c1", f, 5, NULL));
  for (int i = 0; i < 4; i++)
    ASSERT_FALSE(f[i].fenced);
  ASSERT_TRUE(f[4].fenced);
  ASSERT_STATS(e, e->q, 1, 0, 1, 1);
  free_msgs(m, 4);
  gtask_msg_free(stale);
}

/* A batch among many leases of the same consumer: the lease check covers the
 * batch's id range at once (Redis: one XPENDING, cut at a count, then one by
 * one), and must still fence another consumer's entry inside the range and an
 * entry listed twice. */
CONTRACT(BROKER, finish_batch_among_many_leases) {
  enum { A = 300, B = 10, C = 390 };
  for (int i = 0; i < A + B + C; i++)
    push(e, e->q, BODIES[i % 4], 0, NULL);
  gtask_msg **m = calloc(A + B + C, sizeof(*m));
  ASSERT_NOT_NULL(m);
  ASSERT_EQ(lease(e, "c1", e->q, A, 0, m), A);
  ASSERT_EQ(lease(e, "c2", e->q, B, 0, m + A), B);
  ASSERT_EQ(lease(e, "c1", e->q, C, 0, m + A + B), C);
  gtask_fin f[4] = {
      {.msg = m[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS},
      {.msg = m[A + 1], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS}, /* c2's */
      {.msg = m[A + B + C - 1], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS},
      {.msg = m[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS}, /* twice */
  };
  ASSERT_OK(e->bo->finish(e->bi, "c1", f, 4, NULL));
  ASSERT_FALSE(f[0].fenced);
  ASSERT_TRUE(f[1].fenced);
  ASSERT_FALSE(f[2].fenced);
  ASSERT_TRUE(f[3].fenced);
  ASSERT_STATS(e, e->q, 0, A + B + C - 2, 0, 0);
  /* c2 still holds its entry: it can end it. */
  ASSERT_FALSE(finish(e, "c2", m[A + 1], GTASK_FIN_DONE, NULL, 0));
  ASSERT_STATS(e, e->q, 0, A + B + C - 3, 0, 0);
  free_msgs(m, A + B + C);
  free(m);
}

/* Finishes msgs[0..n) of consumer c as DONE in one batch; none fenced. */
static void finish_all(env *e, const char *c, gtask_msg **msgs, size_t n) {
  gtask_fin *f = calloc(n, sizeof(*f));
  ASSERT_NOT_NULL(f);
  for (size_t i = 0; i < n; i++)
    f[i] = (gtask_fin){.msg = msgs[i], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS};
  ASSERT_OK(e->bo->finish(e->bi, c, f, n, NULL));
  for (size_t i = 0; i < n; i++)
    ASSERT_FALSE(f[i].fenced);
  free(f);
}

/* Finishing drops finished entries and only those: another consumer's older
 * leases and the entries not yet delivered stay, whichever batch ends first.
 * (Redis: a batch trims the entries below the oldest lease still held and
 * deletes its own above it by id; a batch of a few deletes by id.  The stats'
 * pending count is the stream's length minus the leases: it sees any entry
 * left behind or dropped too early.) */
CONTRACT(BROKER, finish_keeps_older_leases_and_undelivered_entries) {
  enum { A = 50, B = 40, U = 20, N = A + B + U };
  for (int i = 0; i < N; i++)
    push(e, e->q, BODIES[i % 6], 0, NULL);
  gtask_msg *m[A + B], *r[A] = {0}, *u[U];
  ASSERT_EQ(lease(e, "c1", e->q, A, 0, m), A);
  ASSERT_EQ(lease(e, "c2", e->q, B, 0, m + A), B);
  /* The younger batch ends first. */
  finish_all(e, "c2", m + A, B);
  ASSERT_STATS(e, e->q, U, A, 0, 0);
  /* c1's entries are all still there: a reclaim hands them over intact. */
  test_sleep_ms(20);
  size_t n = 0;
  while (n < A) {
    size_t got = 0;
    ASSERT_OK(e->bo->reclaim(e->bi, "c3", e->q, 10, A - n, r + n, &got));
    ASSERT_GT(got, 0);
    n += got;
  }
  for (int i = 0; i < A; i++)
    assert_msg(r[i], m[i]->id, e->q, BODIES[i % 6]);
  /* A batch around leases still held (r[10..29]). */
  gtask_msg *around[30];
  for (int i = 0; i < 10; i++) around[i] = r[i];
  for (int i = 30; i < A; i++) around[i - 20] = r[i];
  finish_all(e, "c3", around, 30);
  ASSERT_STATS(e, e->q, U, 20, 0, 0);
  /* The last leases: none older is held. */
  finish_all(e, "c3", r + 10, 20);
  ASSERT_STATS(e, e->q, U, 0, 0, 0);
  /* The undelivered come next, in order; a batch older than every lease left,
   * then a few. */
  ASSERT_EQ(lease(e, "c1", e->q, U, 0, u), U);
  for (int i = 0; i < U; i++)
    ASSERT_MEM_EQ(u[i]->body, BODIES[(A + B + i) % 6], u[i]->len);
  finish_all(e, "c1", u, U - 4);
  ASSERT_STATS(e, e->q, 0, 4, 0, 0);
  finish_all(e, "c1", u + U - 4, 4);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  free_msgs(m, A + B);
  free_msgs(r, A);
  free_msgs(u, U);
}

/* ---------------------------------------------------------------- broker: schedule, stats */

CONTRACT(BROKER, push_due_future) {
  int64_t due = now_ms() + 300;
  char id[GTASK_ID_SIZE];
  push(e, e->q, BODIES[0], due, id);
  ASSERT_STATS(e, e->q, 0, 0, 1, 0);
  gtask_msg *x[1];
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, x), 0);
  int64_t next = -1;
  ASSERT_OK(e->bo->promote(e->bi, e->q, 10, &next));
  ASSERT_EQ(next, due);

  /* A due time in the past is now. */
  push(e, e->q, BODIES[1], now_ms() - 1000, NULL);
  ASSERT_STATS(e, e->q, 1, 0, 1, 0);

  int64_t left = due - now_ms();
  test_sleep_ms((left > 0 ? left : 0) + 100);
  ASSERT_OK(e->bo->promote(e->bi, e->q, 10, &next));
  ASSERT_EQ(next, 0);
  gtask_msg *m[2];
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, m), 2);
  ASSERT_STR_EQ(m[0]->body, BODIES[1]);
  assert_msg(m[1], id, e->q, BODIES[0]);
  free_msgs(m, 2);
}

CONTRACT(BROKER, promote_max_and_order) {
  int64_t now = now_ms();
  /* Pushed out of order; they come out by due time. */
  push(e, e->q, BODIES[2], now + 250, NULL);
  push(e, e->q, BODIES[0], now + 150, NULL);
  push(e, e->q, BODIES[1], now + 200, NULL);
  push(e, e->q, BODIES[3], now + 60000, NULL);
  test_sleep_ms(350);
  int64_t next = -1;
  ASSERT_OK(e->bo->promote(e->bi, e->q, 2, &next));
  ASSERT_EQ(next, now + 250); /* the one left behind by max, then the far one */
  ASSERT_STATS(e, e->q, 2, 0, 2, 0);
  ASSERT_OK(e->bo->promote(e->bi, e->q, 10, &next));
  ASSERT_EQ(next, now + 60000);
  gtask_msg *m[4];
  ASSERT_EQ(lease(e, "c1", e->q, 4, 0, m), 3);
  for (int i = 0; i < 3; i++)
    ASSERT_STR_EQ(m[i]->body, BODIES[i]);
  free_msgs(m, 3);
}

CONTRACT(BROKER, stats_counts) {
  ASSERT_STATS(e, e->q, 0, 0, 0, 0); /* an unknown queue */
  gtask_msg *batch[4];
  for (int i = 0; i < 4; i++) {
    char id[GTASK_ID_SIZE];
    new_id(id);
    batch[i] = gtask_msg_new(id, e->q, BODIES[i], strlen(BODIES[i]));
    ASSERT_NOT_NULL(batch[i]);
  }
  batch[3]->due_ms = now_ms() + 60000;
  ASSERT_OK(e->bo->push(e->bi, batch, 4, NULL));
  free_msgs(batch, 4);
  ASSERT_STATS(e, e->q, 3, 0, 1, 0);
  gtask_msg *m = lease1(e, "c1");
  ASSERT_STATS(e, e->q, 2, 1, 1, 0);
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DEAD, NULL, 0));
  ASSERT_STATS(e, e->q, 2, 0, 1, 1);
  gtask_msg_free(m);
}

/* queues() (optional, abi 2): every queue that holds something, once each,
 * sorted.  The store may hold other cases' queues too (a shared one), so
 * only the ones made here are looked for. */
static bool has_name(char **names, size_t n, const char *q) {
  for (size_t k = 0; k < n; k++)
    if (strcmp(names[k], q) == 0)
      return true;
  return false;
}

CONTRACT(BROKER, queues_lists_every_queue_once_sorted) {
  if (e->bo->abi < 2 || e->bo->queues == NULL)
    SKIP("the broker does not list its queues (optional)");
  char q2[80], q3[80];
  snprintf(q2, sizeof(q2), "%s-b", e->q);
  snprintf(q3, sizeof(q3), "%s-c", e->q);
  push(e, e->q, BODIES[0], 0, NULL);
  push(e, e->q, BODIES[1], 0, NULL);
  push(e, q2, BODIES[0], now_ms() + 60000, NULL); /* scheduled only */
  push(e, q3, BODIES[0], 0, NULL);
  char **names = NULL;
  size_t n = 0;
  ASSERT_OK(e->bo->queues(e->bi, &names, &n));
  ASSERT_TRUE(has_name(names, n, e->q));
  ASSERT_TRUE(has_name(names, n, q2));
  ASSERT_TRUE(has_name(names, n, q3));
  for (size_t k = 1; k < n; k++)
    ASSERT_LT(strcmp(names[k - 1], names[k]), 0);
  gtask_queues_free(names, n);
}

/* finish() counts each task that ends DONE or DEAD with a final status, once. */
CONTRACT(BROKER, stats_finished_counters) {
  for (int i = 0; i < 5; i++)
    push(e, e->q, BODIES[i], 0, NULL);
  gtask_msg *m[5];
  ASSERT_EQ(lease(e, "c1", e->q, 5, 0, m), 5);
  gtask_msg *stale = gtask_msg_new(m[0]->id, e->q, "x", 1);
  ASSERT_NOT_NULL(stale);
  ASSERT_OK(gtask_msg_set_lease(stale, "0-1"));
  gtask_fin f[6] = {
      {.msg = m[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS},
      {.msg = m[1], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS},
      {.msg = m[2], .kind = GTASK_FIN_DONE, .status = GTASK_FAILURE},
      {.msg = m[3], .kind = GTASK_FIN_DEAD, .status = GTASK_FAILURE},
      {.msg = m[4], .kind = GTASK_FIN_RETRY, .status = GTASK_RETRY, .next = "r", .next_len = 1,
       .next_due_ms = now_ms() + 60000},
      {.msg = stale, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS}, /* fenced: not counted */
  };
  ASSERT_OK(e->bo->finish(e->bi, "c1", f, 6, NULL));
  ASSERT_TRUE(f[5].fenced);
  gtask_queue_stats st = stats(e, e->q);
  ASSERT_EQ(st.succeeded, 2);
  ASSERT_EQ(st.failed, 2);
  ASSERT_EQ(st.scheduled, 1);
  ASSERT_EQ(st.dead, 1);
  /* Per queue, and zero for a queue never used. */
  char other[64];
  unique_queue(other, sizeof(other), "-other");
  st = stats(e, other);
  ASSERT_EQ(st.succeeded, 0);
  ASSERT_EQ(st.failed, 0);
  free_msgs(m, 5);
  gtask_msg_free(stale);
}

/* Moves a leased message to the dead set with body `dead`. */
static void bury(env *e, const char *dead) {
  gtask_msg *m = lease1(e, "c1");
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DEAD, dead, 0));
  gtask_msg_free(m);
}

static const gtask_msg *find_id(gtask_msg **v, size_t n, const char *id) {
  for (size_t k = 0; k < n; k++)
    if (strcmp(v[k]->id, id) == 0)
      return v[k];
  return NULL;
}

CONTRACT(BROKER, dead_list_requeue_purge) {
  gtask_msg **v = (gtask_msg **)1;
  size_t n = 99;
  ASSERT_OK(e->bo->dead_list(e->bi, e->q, NULL, &v, &n)); /* unknown queue */
  ASSERT_NULL(v);
  ASSERT_EQ(n, 0);

  char ids[3][GTASK_ID_SIZE];
  static const char *const dead[] = {"dead-0", "dead-1", "dead-2"};
  for (int i = 0; i < 3; i++) {
    push(e, e->q, BODIES[i], 0, ids[i]);
    bury(e, dead[i]);
  }
  ASSERT_STATS(e, e->q, 0, 0, 0, 3);

  ASSERT_OK(e->bo->dead_list(e->bi, e->q, NULL, &v, &n));
  ASSERT_EQ(n, 3);
  for (int i = 0; i < 3; i++) {
    const gtask_msg *m = find_id(v, n, ids[i]);
    ASSERT_NOT_NULL(m);
    ASSERT_STR_EQ(m->queue, e->q);
    ASSERT_EQ(m->len, strlen(dead[i]));
    ASSERT_MEM_EQ(m->body, dead[i], m->len);
    ASSERT_NULL(m->lease);
  }

  /* One id only; an id not in the set gives nothing. */
  gtask_msg **one = NULL;
  size_t n1 = 0;
  ASSERT_OK(e->bo->dead_list(e->bi, e->q, ids[1], &one, &n1));
  ASSERT_EQ(n1, 1);
  ASSERT_STR_EQ(one[0]->id, ids[1]);
  ASSERT_MEM_EQ(one[0]->body, dead[1], one[0]->len);
  free_msgs(one, n1);
  free(one);
  char unknown[GTASK_ID_SIZE];
  new_id(unknown);
  one = (gtask_msg **)1;
  ASSERT_OK(e->bo->dead_list(e->bi, e->q, unknown, &one, &n1));
  ASSERT_EQ(n1, 0);
  ASSERT_NULL(one);

  /* Requeue is a compare-and-swap on the body. */
  const gtask_msg *m0 = find_id(v, n, ids[0]);
  gtask_msg *changed = gtask_msg_new(ids[1], e->q, "other", 5);
  ASSERT_NOT_NULL(changed);
  gtask_revive rs[2] = {
      {.msg = m0, .next = "again-0", .next_len = 7, .moved = false},
      {.msg = changed, .next = "again-1", .next_len = 7, .moved = true},
  };
  ASSERT_OK(e->bo->dead_requeue(e->bi, rs, 2, NULL));
  ASSERT_TRUE(rs[0].moved);
  ASSERT_FALSE(rs[1].moved);
  ASSERT_STATS(e, e->q, 1, 0, 0, 2);
  gtask_msg *x = lease1(e, "c1");
  ASSERT_STR_EQ(x->id, ids[0]);
  ASSERT_EQ(x->len, 7);
  ASSERT_MEM_EQ(x->body, "again-0", 7);
  /* Once moved, the same swap does nothing (a second requeue loses). */
  rs[0].moved = true;
  ASSERT_OK(e->bo->dead_requeue(e->bi, rs, 1, NULL));
  ASSERT_FALSE(rs[0].moved);
  ASSERT_STATS(e, e->q, 0, 1, 0, 2);
  ASSERT_FALSE(finish(e, "c1", x, GTASK_FIN_DONE, NULL, 0));
  gtask_msg_free(x);
  gtask_msg_free(changed);
  free_msgs(v, n);
  free(v);

  size_t removed = 99;
  ASSERT_OK(e->bo->dead_purge(e->bi, e->q, &removed));
  ASSERT_EQ(removed, 2);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  ASSERT_OK(e->bo->dead_purge(e->bi, e->q, &removed));
  ASSERT_EQ(removed, 0);
  ASSERT_OK(e->bo->dead_list(e->bi, e->q, NULL, &v, &n));
  ASSERT_EQ(n, 0);
}

/* ---------------------------------------------------------------- seeing inside (abi 4, issue 20) */

static void need_list(env *e) {
  if (e->bo->abi < 4 || !e->bo->list || !e->bo->find)
    SKIP("the broker cannot list its tasks (no list, find)");
}

/* Pages through state in e->q with pages of limit, and checks that exactly
 * ids[0..n) are listed, each once and in that order, with the queue; for
 * ACTIVE held by holder, for SCHEDULED and FAILED with due_ms set. */
static void page_all(env *e, int state, size_t limit, char (*ids)[GTASK_ID_SIZE], size_t n,
                     const char *holder) {
  size_t seen = 0, pages = 0;
  char *cursor = NULL;
  do {
    gtask_msg **v = (gtask_msg **)1;
    size_t nv = 99;
    char *next = (char *)1;
    ASSERT_OK(e->bo->list(e->bi, e->q, state, cursor, limit, &v, &nv, &next));
    ASSERT_LE(nv, limit);
    if (nv == 0)
      ASSERT_NULL(v);
    for (size_t k = 0; k < nv; k++) {
      ASSERT_LT(seen, n);
      ASSERT_STR_EQ(v[k]->id, ids[seen]);
      ASSERT_STR_EQ(v[k]->queue, e->q);
      if (state == GTASK_LIST_ACTIVE)
        ASSERT_STR_EQ(v[k]->lease, holder);
      if (state == GTASK_LIST_SCHEDULED || state == GTASK_LIST_FAILED)
        ASSERT_GT(v[k]->due_ms, now_ms());
      seen++;
    }
    free_msgs(v, nv);
    free(v);
    free(cursor);
    cursor = next;
    ASSERT_LT(++pages, 100);
  } while (cursor);
  ASSERT_EQ(seen, n);
}

/* Finds id in e->q: its state, and the body it holds. */
static void assert_found(env *e, const char *id, int state, const char *body) {
  int st = -1;
  gtask_msg *m = NULL;
  ASSERT_OK(e->bo->find(e->bi, e->q, id, &st, &m));
  ASSERT_EQ(st, state);
  ASSERT_NOT_NULL(m);
  ASSERT_STR_EQ(m->id, id);
  ASSERT_STR_EQ(m->queue, e->q);
  ASSERT_EQ(m->len, strlen(body));
  ASSERT_MEM_EQ(m->body, body, m->len);
  if (state == GTASK_LIST_SCHEDULED || state == GTASK_LIST_FAILED)
    ASSERT_GT(m->due_ms, now_ms());
  gtask_msg_free(m);
}

/* list() pages through each place a task can be, in a stable order, to the
 * end; find() tells where a task is; bad cursors change nothing. */
CONTRACT(BROKER, list_and_find_each_state) {
  need_list(e);
  bool failed = e->bo->failed_list != NULL;
  /* Pushed as a client pushes: with the colocated state if there is one (the
   * Redis broker finds a queued task through the pending set that a
   * colocated push writes). */
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  char p[6][GTASK_ID_SIZE], s[3][GTASK_ID_SIZE];
  for (int i = 0; i < 6; i++) {
    new_id(p[i]);
    gtask_msg *pm = gtask_msg_new(p[i], e->q, BODIES[i], strlen(BODIES[i]));
    ASSERT_NOT_NULL(pm);
    ASSERT_OK(e->bo->push(e->bi, &pm, 1, state));
    gtask_msg_free(pm);
  }
  int64_t hour = now_ms() + 3600 * 1000;
  for (int i = 0; i < 3; i++) /* due in reverse order of sending */
    push(e, e->q, BODIES[i], hour + (2 - i) * 1000, s[2 - i]);
  /* p0 active, p1 dead, p2 failed (kept for an hour) or done, p3..p5 pending. */
  gtask_msg *m[3] = {NULL, NULL, NULL};
  ASSERT_EQ(lease(e, "c1", e->q, 3, 0, m), 3);
  ASSERT_STR_EQ(m[0]->id, p[0]);
  ASSERT_FALSE(finish(e, "c1", m[1], GTASK_FIN_DEAD, "dead-1", 0));
  gtask_fin f = {.msg = m[2], .kind = GTASK_FIN_DONE, .status = GTASK_FAILURE,
                 .next = "failed-2", .next_len = 8, .next_due_ms = hour};
  ASSERT_OK(e->bo->finish(e->bi, "c1", &f, 1, NULL));
  ASSERT_FALSE(f.fenced);

  for (size_t limit = 1; limit <= 1000; limit *= 10) {
    page_all(e, GTASK_LIST_PENDING, limit, p + 3, 3, NULL);
    page_all(e, GTASK_LIST_ACTIVE, limit, p, 1, "c1");
    page_all(e, GTASK_LIST_SCHEDULED, limit, s, 3, NULL);
    page_all(e, GTASK_LIST_DEAD, limit, p + 1, 1, NULL);
    page_all(e, GTASK_LIST_FAILED, limit, p + 2, failed ? 1 : 0, NULL);
  }
  /* "" is the start, as NULL is; an unknown queue has nothing. */
  gtask_msg **v = NULL;
  size_t nv = 0;
  char *next = NULL;
  ASSERT_OK(e->bo->list(e->bi, e->q, GTASK_LIST_PENDING, "", 1000, &v, &nv, &next));
  ASSERT_EQ(nv, 3);
  ASSERT_NULL(next);
  ASSERT_MEM_EQ(v[0]->body, BODIES[3], v[0]->len);
  free_msgs(v, nv);
  free(v);
  char other[80];
  snprintf(other, sizeof(other), "%s-none", e->q);
  ASSERT_OK(e->bo->list(e->bi, other, GTASK_LIST_PENDING, NULL, 10, &v, &nv, &next));
  ASSERT_EQ(nv, 0);
  ASSERT_NULL(v);
  ASSERT_NULL(next);

  /* Bad cursors and states: GTASK_EINVAL. */
  for (int st = GTASK_LIST_PENDING; st <= GTASK_LIST_FAILED; st++) {
    next = (char *)1;
    ASSERT_ERR(e->bo->list(e->bi, e->q, st, "zz", 10, &v, &nv, &next), GTASK_EINVAL);
    ASSERT_NULL(next);
    ASSERT_EQ(nv, 0);
  }
  ASSERT_ERR(e->bo->list(e->bi, e->q, 9, NULL, 10, &v, &nv, &next), GTASK_EINVAL);

  assert_found(e, p[4], GTASK_LIST_PENDING, BODIES[4]);
  assert_found(e, p[1], GTASK_LIST_DEAD, "dead-1");
  assert_found(e, s[0], GTASK_LIST_SCHEDULED, BODIES[2]);
  if (failed)
    assert_found(e, p[2], GTASK_LIST_FAILED, "failed-2");
  assert_found(e, p[0], GTASK_LIST_ACTIVE, BODIES[0]);
  gtask_msg *x = NULL;
  int st = 0;
  ASSERT_OK(e->bo->find(e->bi, e->q, p[0], &st, &x));
  ASSERT_STR_EQ(x->lease, "c1");
  gtask_msg_free(x);
  /* Done, unknown: not found. */
  ASSERT_FALSE(finish(e, "c1", m[0], GTASK_FIN_DONE, NULL, 0));
  char unknown[GTASK_ID_SIZE];
  new_id(unknown);
  const char *gone[] = {p[0], unknown};
  for (int i = 0; i < 2; i++) {
    x = (gtask_msg *)1;
    st = 9;
    ASSERT_ERR(e->bo->find(e->bi, e->q, gone[i], &st, &x), GTASK_ENOTFOUND);
    ASSERT_NULL(x);
    ASSERT_EQ(st, 0);
  }
  free_msgs(m, 3);
}

/* The pending list runs through the priority levels, highest first and FIFO
 * within a level, across pages (the level itself travels in the body). */
CONTRACT(BROKER, list_pending_levels) {
  need_list(e);
  if (e->bo->abi < 5)
    SKIP("the broker has no priority levels (abi < 5)");
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  static const int level[] = {0, 2, 1, 0, 2};
  char id[5][GTASK_ID_SIZE];
  for (int i = 0; i < 5; i++) {
    new_id(id[i]);
    gtask_msg *m = gtask_msg_new(id[i], e->q, BODIES[i], strlen(BODIES[i]));
    ASSERT_NOT_NULL(m);
    m->priority = level[i];
    ASSERT_OK(e->bo->push(e->bi, &m, 1, state));
    gtask_msg_free(m);
  }
  char want[5][GTASK_ID_SIZE];
  static const int order[] = {1, 4, 2, 0, 3};
  for (int i = 0; i < 5; i++)
    memcpy(want[i], id[order[i]], GTASK_ID_SIZE);
  for (size_t limit = 1; limit <= 1000; limit *= 10)
    page_all(e, GTASK_LIST_PENDING, limit, want, 5, NULL);
  assert_found(e, id[2], GTASK_LIST_PENDING, BODIES[2]); /* found in its level */
}

/* Whether record is among v[0..n), and how many times. */
static int count_record(char **v, size_t n, const char *record) {
  int k = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i], record) == 0)
      k++;
  return k;
}

/* Worker records: kept until their time, replaced by a later put, removed by
 * a put with until_ms 0.  Other workers may be listed too (a shared store):
 * only this case's records are counted. */
CONTRACT(BROKER, worker_records) {
  if (e->bo->abi < 4 || !e->bo->worker_put || !e->bo->worker_list)
    SKIP("the broker keeps no worker records (no worker_put, worker_list)");
  char w[3][96], rec[4][128];
  for (int i = 0; i < 3; i++) {
    snprintf(w[i], sizeof(w[i]), "%s-worker-%d", e->q, i);
    snprintf(rec[i], sizeof(rec[i]), "{\"name\":\"%s\",\"n\":%d}", w[i], i);
  }
  snprintf(rec[3], sizeof(rec[3]), "{\"name\":\"%s\",\"n\":9}", w[0]);
  int64_t until = now_ms() + 60000;
  ASSERT_OK(e->bo->worker_put(e->bi, w[0], rec[0], strlen(rec[0]), until));
  ASSERT_OK(e->bo->worker_put(e->bi, w[1], rec[1], strlen(rec[1]), until));
  ASSERT_OK(e->bo->worker_put(e->bi, w[2], rec[2], strlen(rec[2]), now_ms() - 1000));
  char **v = NULL;
  size_t n = 0;
  ASSERT_OK(e->bo->worker_list(e->bi, &v, &n));
  ASSERT_EQ(count_record(v, n, rec[0]), 1);
  ASSERT_EQ(count_record(v, n, rec[1]), 1);
  ASSERT_EQ(count_record(v, n, rec[2]), 0); /* its time is past */
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
  /* A heartbeat replaces the record; until_ms 0 removes it. */
  ASSERT_OK(e->bo->worker_put(e->bi, w[0], rec[3], strlen(rec[3]), until + 1000));
  ASSERT_OK(e->bo->worker_put(e->bi, w[1], NULL, 0, 0));
  ASSERT_OK(e->bo->worker_list(e->bi, &v, &n));
  ASSERT_EQ(count_record(v, n, rec[0]), 0);
  ASSERT_EQ(count_record(v, n, rec[3]), 1);
  ASSERT_EQ(count_record(v, n, rec[1]), 0);
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
  ASSERT_OK(e->bo->worker_put(e->bi, w[0], NULL, 0, 0));
}

/* The client's view (admin.c) on the pair, colocated or not: a task lost too
 * often is listed with its name and error, requeued with a fresh delivery
 * count and a PENDING state, runs and finishes again; then purge. */
CONTRACT(PAIR, client_dead_requeue) {
  gtask_client *cli = gtask_client_new(e->b, e->be);
  ASSERT_NOT_NULL(cli);
  ASSERT_OK(gtask_client_set_queue(cli, e->q));
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  gtask_send_conf_free(sc);

  /* What a worker does with a task lost max_deliveries times: the message
   * gets a delivery count ("l", docs/PROTOCOL.md section 3; absent while 0)
   * and the task a FAILURE record (section 4). */
  gtask_msg *m = lease1(e, "c1");
  static const char head[] = "{\"v\":2,";
  ASSERT_GT(m->len, sizeof(head) - 1);
  ASSERT_MEM_EQ(m->body, head, sizeof(head) - 1);
  ASSERT_NULL(strstr(m->body, "\"l\":"));
  char next[512];
  int nlen = snprintf(next, sizeof(next), "%s\"l\":5,%s", head, m->body + sizeof(head) - 1);
  ASSERT_LT(nlen, (int)sizeof(next));
  char res[256];
  int rlen = snprintf(res, sizeof(res),
                      "{\"v\":1,\"s\":\"FAILURE\",\"err\":\"lost: delivered 5 times\",\"ec\":%d}",
                      GTASK_ELOST);
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_DEAD, .status = GTASK_FAILURE, .result = res,
                 .result_len = (size_t)rlen, .next = next, .next_len = (size_t)nlen};
  if (!state)
    ASSERT_OK(e->eo->store(e->ei, &f, 1));
  ASSERT_OK(e->bo->finish(e->bi, "c1", &f, 1, state));
  ASSERT_FALSE(f.fenced);
  gtask_msg_free(m);

  gtask_status st;
  ASSERT_OK(gtask_client_status(cli, id, &st));
  ASSERT_EQ(st, GTASK_FAILURE);
  gtask_queue_stats qs;
  ASSERT_OK(gtask_client_stats(cli, NULL, &qs));
  ASSERT_EQ(qs.dead, 1);
  ASSERT_EQ(qs.failed, 1);

  gtask_dead_entry *d = NULL;
  size_t nd = 0;
  ASSERT_OK(gtask_client_dead_list(cli, &d, &nd));
  ASSERT_EQ(nd, 1);
  ASSERT_STR_EQ(d[0].id, id);
  ASSERT_STR_EQ(d[0].name, "add");
  ASSERT_STR_EQ(d[0].error, "lost: delivered 5 times");
  gtask_dead_list_free(d, nd);

  char unknown[GTASK_ID_SIZE];
  new_id(unknown);
  size_t moved = 99;
  ASSERT_ERR(gtask_client_dead_requeue(cli, unknown, &moved), GTASK_ENOTFOUND);
  ASSERT_EQ(moved, 0);
  ASSERT_OK(gtask_client_dead_requeue(cli, id, &moved));
  ASSERT_EQ(moved, 1);
  ASSERT_OK(gtask_client_status(cli, id, &st));
  ASSERT_EQ(st, GTASK_PENDING);
  gtask_result *r = NULL;
  ASSERT_ERR(gtask_client_wait(cli, id, 0, &r), GTASK_ETIMEDOUT);
  ASSERT_OK(gtask_client_stats(cli, NULL, &qs));
  ASSERT_EQ(qs.dead, 0);
  ASSERT_EQ(qs.pending, 1);

  /* It runs again with a fresh delivery count, and its new result sticks. */
  m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, id);
  ASSERT_NULL(strstr(m->body, "\"l\":"));
  ASSERT_NOT_NULL(strstr(m->body, "\"n\":\"add\""));
  const char *ok = REC_OK(3, 1);
  size_t oklen = strlen(ok);
  gtask_fin g = {.msg = m, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = ok,
                 .result_len = oklen};
  if (!state) {
    ASSERT_OK(e->eo->store(e->ei, &g, 1));
    ASSERT_FALSE(g.fenced);
  }
  ASSERT_OK(e->bo->finish(e->bi, "c1", &g, 1, state));
  ASSERT_FALSE(g.fenced);
  gtask_msg_free(m);
  ASSERT_OK(gtask_client_wait(cli, id, test_timeout_ms(2000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->nvalues, 1);
  ASSERT_EQ(r->values[0].v.i, 3);
  gtask_result_free(r);

  /* requeue --all and purge on a set of three: two task messages and one
   * that does not decode.  That one stays in the dead set (a worker could
   * only bury it again, and count it failed again: issue 14); requeued by
   * its id, it is GTASK_EPROTO.  A requeued task that fails again is a new
   * outcome, and counts. */
  char junk[GTASK_ID_SIZE], tid[2][GTASK_ID_SIZE];
  push(e, e->q, BODIES[0], 0, junk);
  bury(e, BODIES[0]);
  for (int i = 0; i < 2; i++) {
    sc = gtask_send_conf_new("add");
    ASSERT_NOT_NULL(sc);
    ASSERT_OK(GTASK_SEND(cli, sc, tid[i], gtask_int64(i), gtask_int64(2)));
    gtask_send_conf_free(sc);
    gtask_msg *dm = lease1(e, "c1");
    ASSERT_STR_EQ(dm->id, tid[i]);
    ASSERT_FALSE(finish(e, "c1", dm, GTASK_FIN_DEAD, NULL, 0));
    gtask_msg_free(dm);
  }
  ASSERT_OK(gtask_client_stats(cli, NULL, &qs));
  ASSERT_EQ(qs.dead, 3);
  int64_t failed = qs.failed;
  ASSERT_OK(gtask_client_dead_requeue(cli, NULL, &moved));
  ASSERT_EQ(moved, 2);
  ASSERT_OK(gtask_client_stats(cli, NULL, &qs));
  ASSERT_EQ(qs.dead, 1);
  ASSERT_EQ(qs.pending, 2);
  ASSERT_ERR(gtask_client_dead_requeue(cli, junk, &moved), GTASK_EPROTO);
  ASSERT_EQ(moved, 0);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), junk);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), "does not decode");
  gtask_msg *two[2];
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, two), 2);
  for (int i = 0; i < 2; i++)
    ASSERT_FALSE(finish(e, "c1", two[i], GTASK_FIN_DEAD, NULL, 0));
  free_msgs(two, 2);
  ASSERT_OK(gtask_client_stats(cli, NULL, &qs));
  ASSERT_EQ(qs.dead, 3);
  ASSERT_EQ(qs.failed, failed + 2);
  size_t removed = 0;
  ASSERT_OK(gtask_client_dead_purge(cli, &removed));
  ASSERT_EQ(removed, 3);
  ASSERT_OK(gtask_client_stats(cli, NULL, &qs));
  ASSERT_EQ(qs.dead, 0);
  ASSERT_EQ(qs.failed, failed + 2);
  gtask_client_free(cli);
}

/* ---------------------------------------------------------------- a real server */

static int rt_add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(rt_add, (int64_t, int64_t), (int64_t))

static int rt_fail(int64_t code) {
  return gtask_ctx_fail(gtask_ctx_current(), "refused %lld", (long long)code);
}
GTASK_HANDLER(rt_fail, (int64_t), ())

/* Asks for a retry on its first attempt; returns its attempt number. */
static int rt_again(int64_t *attempt) {
  gtask_ctx *ctx = gtask_ctx_current();
  if (gtask_ctx_attempt(ctx) < 2)
    return gtask_ctx_retry(ctx, "once more");
  *attempt = gtask_ctx_attempt(ctx);
  return 0;
}
GTASK_HANDLER(rt_again, (), (int64_t))

static void *rt_serve(void *server) {
  ASSERT_OK(gtask_server_run(server, 2));
  return NULL;
}

static void rt_send(gtask_client *c, const char *name, char *id, const gtask_value *args,
                    size_t nargs, int retry) {
  gtask_send_conf *sc = gtask_send_conf_new(name);
  ASSERT_NOT_NULL(sc);
  ASSERT_OK(gtask_send_conf_set_retry_num(sc, retry));
  ASSERT_OK(gtask_send_conf_set_backoff(sc, 1, 1));
  ASSERT_OK(gtask_client_send(c, sc, args, nargs, id));
  gtask_send_conf_free(sc);
}

/* The pair under a real server and client, as a user runs it: tasks sent,
 * run by two workers, their final states (a success, a failure, a success
 * after a retry) waited for and read back, and the finished counters. */
CONTRACT(PAIR, server_round_trip) {
  gtask_server *s = gtask_server_new(e->b, e->be);
  ASSERT_NOT_NULL(s);
  ASSERT_OK(gtask_server_set_queues(s, e->q));
  ASSERT_OK(GTASK_REG(s, rt_add));
  ASSERT_OK(GTASK_REG(s, rt_fail));
  ASSERT_OK(GTASK_REG(s, rt_again));
  gtask_client *c = gtask_client_new(e->b, e->be);
  ASSERT_NOT_NULL(c);
  ASSERT_OK(gtask_client_set_queue(c, e->q));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, rt_serve, s), 0);

  enum { N = 20 };
  char ids[N + 2][GTASK_ID_SIZE];
  for (int i = 0; i < N; i++) {
    gtask_value args[2] = {gtask_int64(i), gtask_int64(1000)};
    rt_send(c, "rt_add", ids[i], args, 2, 0);
  }
  gtask_value code = gtask_int64(7);
  rt_send(c, "rt_fail", ids[N], &code, 1, 0);
  rt_send(c, "rt_again", ids[N + 1], NULL, 0, 2);

  for (int i = 0; i < N + 2; i++) {
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(c, ids[i], test_timeout_ms(10000), &r));
    if (i < N) {
      ASSERT_EQ(r->status, GTASK_SUCCESS);
      ASSERT_EQ(r->nvalues, 1);
      ASSERT_EQ(r->values[0].v.i, 1000 + i);
    } else if (i == N) {
      ASSERT_EQ(r->status, GTASK_FAILURE);
      ASSERT_STR_CONTAINS(r->error, "refused 7");
    } else {
      ASSERT_EQ(r->status, GTASK_SUCCESS);
      ASSERT_EQ(r->values[0].v.i, 2);
      ASSERT_EQ(r->attempts, 2);
    }
    gtask_result_free(r);
    gtask_status st;
    ASSERT_OK(gtask_client_status(c, ids[i], &st));
    ASSERT_EQ(st, i == N ? GTASK_FAILURE : GTASK_SUCCESS);
  }
  /* Without colocation the result is stored before the broker's finish
   * counts it: wait for the counters rather than read them once. */
  gtask_queue_stats qs;
  WAIT_UNTIL(gtask_client_stats(c, NULL, &qs) == 0 && qs.succeeded == N + 1 && qs.failed == 1,
             5000);
  ASSERT_EQ(qs.pending + qs.active + qs.scheduled + qs.dead, 0);

  gtask_server_shutdown(s);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  gtask_client_free(c);
  gtask_server_free(s);
}

/* ---------------------------------------------------------------- weighted queues (issue 18)
 *
 * A worker of one executor that leases one task at a time, over queues that
 * all hold a backlog: the order in which it runs them is the order its leases
 * took the queues in. */

static pthread_mutex_t ran_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t ran[2100]; /* the queue index each task run carried, in run order */
static size_t nran;

static int rt_mark(int64_t queue) {
  pthread_mutex_lock(&ran_mu);
  if (nran < sizeof(ran) / sizeof(ran[0])) ran[nran++] = queue;
  pthread_mutex_unlock(&ran_mu);
  return 0;
}
GTASK_HANDLER(rt_mark, (int64_t), ())

static size_t ran_count(void) {
  pthread_mutex_lock(&ran_mu);
  size_t n = nran;
  pthread_mutex_unlock(&ran_mu);
  return n;
}

static void *rt_serve1(void *server) {
  ASSERT_OK(gtask_server_run(server, 1));
  return NULL;
}

static void *rt_serve_n(void *server) {
  ASSERT_OK(gtask_server_run(server, 4));
  return NULL;
}

/* Queues q-a, q-b, q-c with `per` tasks each (task k of queue i carries i),
 * then a worker on them with weights w[0..3) run until `until` tasks ran: the
 * run order is in ran[]. */
static void run_backlog(env *e, const int w[3], bool strict, int per, size_t until) {
  static const char *const sfx[3] = {"-a", "-b", "-c"};
  gtask_client *c = gtask_client_new(e->b, e->be);
  ASSERT_NOT_NULL(c);
  for (int i = 0; i < 3; i++) {
    char q[96];
    snprintf(q, sizeof(q), "%s%s", e->q, sfx[i]);
    ASSERT_OK(gtask_client_set_queue(c, q));
    for (int k = 0; k < per; k++) {
      char id[GTASK_ID_SIZE];
      gtask_value arg = gtask_int64(i);
      rt_send(c, "rt_mark", id, &arg, 1, 0);
    }
  }
  gtask_client_free(c);
  nran = 0;
  gtask_server *s = gtask_server_new(e->b, e->be);
  ASSERT_NOT_NULL(s);
  char list[512];
  snprintf(list, sizeof(list), "%s-a:%d,%s-b:%d,%s-c:%d", e->q, w[0], e->q, w[1], e->q, w[2]);
  ASSERT_OK(gtask_server_set_queues(s, list));
  ASSERT_OK(gtask_server_set_strict(s, strict));
  ASSERT_OK(gtask_server_set_prefetch(s, 1));
  ASSERT_OK(GTASK_REG(s, rt_mark));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, rt_serve1, s), 0);
  WAIT_UNTIL(ran_count() >= until, 20000);
  gtask_server_shutdown(s);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  gtask_server_free(s);
}

/* Weights 6:3:1: of any 10 consecutive leases while every queue has work,
 * 6, 3 and 1 take from a, b and c first -- the low queue is not starved. */
CONTRACT(PAIR, weighted_queue_shares) {
  run_backlog(e, (const int[3]){6, 3, 1}, false, 120, 100);
  size_t got[3] = {0, 0, 0};
  for (size_t k = 0; k < 100; k++) {
    ASSERT_TRUE(ran[k] >= 0 && ran[k] < 3);
    got[ran[k]]++;
    if (k % 10 == 9) { /* every full round of the weights, exactly */
      ASSERT_EQ(got[0], (k + 1) / 10 * 6);
      ASSERT_EQ(got[1], (k + 1) / 10 * 3);
      ASSERT_EQ(got[2], (k + 1) / 10 * 1);
    }
  }
  /* The low queue's turns are spread out, not bunched at the end. */
  size_t first_c = 0;
  while (first_c < 100 && ran[first_c] != 2) first_c++;
  ASSERT_TRUE(first_c < 10);
}

/* Strict: by weight, highest first, whatever the list order -- the lower
 * queues wait until the higher ones are empty. */
CONTRACT(PAIR, weighted_queue_strict) {
  run_backlog(e, (const int[3]){1, 5, 3}, true, 20, 60);
  for (size_t k = 0; k < 60; k++) ASSERT_EQ(ran[k], k < 20 ? 1 : k < 40 ? 2 : 0);
}

/* ---------------------------------------------------------------- unique sends, failed set, pause (issue 18)
 *
 * Through the client, as a user sends: a chosen id, and content keys held for
 * a TTL or until the task is final.  Each runs colocated (one step: the
 * broker's push_unique) and split (the backend's claim, then push). */

/* Ends the delivery m as a worker does (state recorded): SUCCESS. */
static void finish_success(env *e, gtask_msg *m) {
  const char *res = REC_OK(3, 1);
  size_t rlen = strlen(res);
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = res,
                 .result_len = rlen};
  if (!state) {
    ASSERT_OK(e->eo->store(e->ei, &f, 1));
    ASSERT_FALSE(f.fenced);
  }
  ASSERT_OK(e->bo->finish(e->bi, "c1", &f, 1, state));
  ASSERT_FALSE(f.fenced);
}

/* Whether the pair can send without duplicates (a colocated push_unique,
 * or the backend's claim): else the unique cases do not apply. */
static void need_claim(env *e) {
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  if (!e->eo->claim && !(state && e->bo->push_unique))
    SKIP("the pair cannot check sends for duplicates (no claim, no push_unique)");
}

static gtask_client *client_on(env *e) {
  gtask_client *cli = gtask_client_new(e->b, e->be);
  ASSERT_NOT_NULL(cli);
  ASSERT_OK(gtask_client_set_queue(cli, e->q));
  return cli;
}

CONTRACT(PAIR, client_send_with_id) {
  need_claim(e);
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  /* Bad ids change nothing. */
  ASSERT_ERR(gtask_send_conf_set_id(sc, "not-an-id"), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "not a task id");
  ASSERT_ERR(gtask_send_conf_set_id(sc, "0F8FAD5B-D9CB-469F-A165-70867728950E"), GTASK_EINVAL);
  ASSERT_ERR(gtask_send_conf_set_id(sc, "0f8fad5b-d9cb-469f-a165-70867728950e-"), GTASK_EINVAL);
  char want[GTASK_ID_SIZE], id[GTASK_ID_SIZE];
  new_id(want);
  ASSERT_OK(gtask_send_conf_set_id(sc, want));
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  ASSERT_STR_EQ(id, want);
  gtask_status st;
  ASSERT_OK(gtask_client_status(cli, want, &st));
  ASSERT_EQ(st, GTASK_PENDING);

  /* Queued: a second send with that id (other arguments) is refused and
   * leaves the first untouched. */
  memset(id, 'x', sizeof(id));
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(7), gtask_int64(7)), GTASK_EEXIST);
  ASSERT_STR_EQ(id, want);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), want);
  ASSERT_STATS(e, e->q, 1, 0, 0, 0);
  /* A batch cannot share one id. */
  gtask_value two[4] = {gtask_int64(1), gtask_int64(2), gtask_int64(3), gtask_int64(4)};
  char ids[2][GTASK_ID_SIZE];
  ASSERT_ERR(gtask_client_send_many(cli, sc, 2, two, 2, ids), GTASK_EINVAL);
  ASSERT_STATS(e, e->q, 1, 0, 0, 0);

  /* Running, then final (its result kept): still refused. */
  gtask_msg *m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, want);
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  finish_success(e, m);
  gtask_msg_free(m);
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_result(cli, want, &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 3);
  gtask_result_free(r);

  /* A delayed task holds its id too; another queue is another namespace. */
  char other[GTASK_ID_SIZE];
  new_id(other);
  ASSERT_OK(gtask_send_conf_set_id(sc, other));
  ASSERT_OK(gtask_send_conf_set_delay(sc, 60000));
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1)));
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1)), GTASK_EEXIST);
  ASSERT_STATS(e, e->q, 0, 0, 1, 0);
  char q2[80];
  snprintf(q2, sizeof(q2), "%s-b", e->q);
  ASSERT_OK(gtask_send_conf_set_queue(sc, q2));
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1)));
  ASSERT_STR_EQ(id, other);
  ASSERT_STATS(e, q2, 0, 0, 1, 0);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
}

CONTRACT(PAIR, client_send_unique_ttl) {
  need_claim(e);
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  ASSERT_ERR(gtask_send_conf_set_unique(sc, -1), GTASK_EINVAL);
  int64_t ttl = test_timeout_ms(400);
  ASSERT_OK(gtask_send_conf_set_unique(sc, ttl));
  char a[GTASK_ID_SIZE], id[GTASK_ID_SIZE];
  int64_t sent = test_now_ms();
  ASSERT_OK(GTASK_SEND(cli, sc, a, gtask_int64(1), gtask_int64(2)));
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  ASSERT_STR_EQ(id, a);
  /* Other arguments, other types of the same numbers, another name, another
   * queue: other content. */
  char b[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, b, gtask_int64(1), gtask_int64(3)));
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int32(1), gtask_int64(2)));
  gtask_send_conf *sc2 = gtask_send_conf_new("add2");
  ASSERT_NOT_NULL(sc2);
  ASSERT_OK(gtask_send_conf_set_unique(sc2, ttl));
  ASSERT_OK(GTASK_SEND(cli, sc2, id, gtask_int64(1), gtask_int64(2)));
  ASSERT_STATS(e, e->q, 4, 0, 0, 0);

  /* A batch reports each duplicate, against an earlier task or an earlier
   * one of the same batch, and queues the others. */
  gtask_value args[6] = {gtask_int64(5), gtask_int64(5), gtask_int64(5),
                         gtask_int64(5), gtask_int64(1), gtask_int64(2)};
  char ids[3][GTASK_ID_SIZE];
  int rcs[3] = {99, 99, 99};
  ASSERT_OK(gtask_client_send_batch(cli, sc, 3, args, 2, ids, rcs));
  ASSERT_EQ(rcs[0], 0);
  ASSERT_EQ(rcs[1], GTASK_EEXIST);
  ASSERT_STR_EQ(ids[1], ids[0]);
  ASSERT_EQ(rcs[2], GTASK_EEXIST);
  ASSERT_STR_EQ(ids[2], a);
  ASSERT_STATS(e, e->q, 5, 0, 0, 0);
  ASSERT_ERR(gtask_client_send_many(cli, sc, 3, args, 2, ids), GTASK_EEXIST);
  ASSERT_STATS(e, e->q, 5, 0, 0, 0);

  /* With a TTL the key is held even after the task ends, until the TTL. */
  gtask_msg *m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, a);
  finish_success(e, m);
  gtask_msg_free(m);
  if (test_now_ms() - sent < ttl - 50)
    ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  test_sleep_ms(ttl - (test_now_ms() - sent) + 60);
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  ASSERT_STR_NE(id, a);
  gtask_send_conf_free(sc);
  gtask_send_conf_free(sc2);
  gtask_client_free(cli);
}

CONTRACT(PAIR, client_send_unique_until_done) {
  need_claim(e);
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  ASSERT_OK(gtask_send_conf_set_unique(sc, GTASK_UNIQUE_UNTIL_DONE));
  char a[GTASK_ID_SIZE], id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, a, gtask_int64(1), gtask_int64(2)));
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  ASSERT_STR_EQ(id, a);
  /* Held while it runs and while it waits for a retry... */
  gtask_msg *m = lease1(e, "c1");
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  const char *res = "{\"v\":1,\"s\":\"RETRY\",\"err\":\"again\",\"at\":1}";
  size_t rlen = strlen(res);
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_RETRY, .status = GTASK_RETRY, .result = res,
                 .result_len = rlen, .next = m->body, .next_len = m->len,
                 .next_due_ms = now_ms()};
  if (!state) ASSERT_OK(e->eo->store(e->ei, &f, 1));
  ASSERT_OK(e->bo->finish(e->bi, "c1", &f, 1, state));
  ASSERT_FALSE(f.fenced);
  gtask_msg_free(m);
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  ASSERT_STR_EQ(id, a);
  /* ... and free once it is final: the next send is a new task. */
  int64_t next = 0;
  ASSERT_OK(e->bo->promote(e->bi, e->q, 10, &next));
  m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, a);
  finish_success(e, m);
  gtask_msg_free(m);
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  ASSERT_STR_NE(id, a);
  char again[GTASK_ID_SIZE];
  ASSERT_ERR(GTASK_SEND(cli, sc, again, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  ASSERT_STR_EQ(again, id);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
}

/* What a worker does when a task fails for good: FAILURE, its message (runs
 * counted, error noted) kept in the failed set until keep_until. */
static void finish_failed(env *e, gtask_msg *m, int64_t keep_until) {
  /* The message with its runs counted ("at") and its error ("e"),
   * docs/PROTOCOL.md section 3. */
  static const char head[] = "{\"v\":2,";
  ASSERT_GT(m->len, sizeof(head) - 1);
  ASSERT_MEM_EQ(m->body, head, sizeof(head) - 1);
  char next[512];
  int nlen = snprintf(next, sizeof(next), "%s\"at\":1,\"e\":\"boom\",%s", head,
                      m->body + sizeof(head) - 1);
  ASSERT_LT(nlen, (int)sizeof(next));
  char res[128];
  int rlen = snprintf(res, sizeof(res), "{\"v\":1,\"s\":\"FAILURE\",\"err\":\"boom\",\"ec\":%d,\"at\":1}",
                      GTASK_EHANDLER);
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_DONE, .status = GTASK_FAILURE, .result = res,
                 .result_len = (size_t)rlen, .next = next, .next_len = (size_t)nlen,
                 .next_due_ms = keep_until};
  if (!state) ASSERT_OK(e->eo->store(e->ei, &f, 1));
  ASSERT_OK(e->bo->finish(e->bi, "c1", &f, 1, state));
  ASSERT_FALSE(f.fenced);
}

/* Failed tasks listed and run again (issue 18). */
CONTRACT(PAIR, client_failed_list_and_rerun) {
  if (!e->bo->failed_list || !e->bo->failed_requeue)
    SKIP("the broker keeps no failed tasks (no failed_list, failed_requeue)");
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  char id[GTASK_ID_SIZE], gone[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  ASSERT_OK(GTASK_SEND(cli, sc, gone, gtask_int64(5), gtask_int64(6)));
  gtask_msg *m = lease1(e, "c1"), *m2 = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, id);
  finish_failed(e, m, now_ms() + 60000);
  finish_failed(e, m2, now_ms() + test_timeout_ms(100)); /* kept briefly */
  gtask_msg_free(m);
  gtask_msg_free(m2);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0); /* not in the dead set */

  gtask_dead_entry *d = NULL;
  size_t nd = 0;
  ASSERT_OK(gtask_client_failed_list(cli, &d, &nd));
  ASSERT_EQ(nd, 2);
  gtask_dead_list_free(d, nd);
  test_sleep_ms(test_timeout_ms(100) + 50);
  ASSERT_OK(gtask_client_failed_list(cli, &d, &nd));
  ASSERT_EQ(nd, 1);
  ASSERT_STR_EQ(d[0].id, id);
  ASSERT_STR_EQ(d[0].name, "add");
  ASSERT_STR_EQ(d[0].error, "boom");
  gtask_dead_list_free(d, nd);

  /* Bad ids, a task past its keeping, an unknown one. */
  ASSERT_ERR(gtask_client_rerun(cli, "nope"), GTASK_EINVAL);
  ASSERT_ERR(gtask_client_rerun(cli, gone), GTASK_ENOTFOUND);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), "no longer kept");
  char unknown[GTASK_ID_SIZE];
  new_id(unknown);
  ASSERT_ERR(gtask_client_rerun(cli, unknown), GTASK_ENOTFOUND);

  /* The rerun: same id, PENDING, runs counted from 0, no old error. */
  ASSERT_OK(gtask_client_rerun(cli, id));
  gtask_status st;
  ASSERT_OK(gtask_client_status(cli, id, &st));
  ASSERT_EQ(st, GTASK_PENDING);
  ASSERT_OK(gtask_client_failed_list(cli, &d, &nd));
  ASSERT_EQ(nd, 0);
  ASSERT_ERR(gtask_client_rerun(cli, id), GTASK_ESTATE); /* queued: once is enough */
  ASSERT_STATS(e, e->q, 1, 0, 0, 0);
  m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, id);
  ASSERT_NULL(strstr(m->body, "\"at\":")); /* runs counted from 0 */
  ASSERT_NULL(strstr(m->body, "\"e\":"));  /* no old error */
  ASSERT_NOT_NULL(strstr(m->body, "[[\"int64\",1],[\"int64\",2]]"));
  finish_success(e, m);
  gtask_msg_free(m);
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(cli, id, test_timeout_ms(2000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
  ASSERT_ERR(gtask_client_rerun(cli, id), GTASK_ESTATE);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), "SUCCESS");

  /* A task in the dead set (lost too often) reruns too. */
  char dead[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, dead, gtask_int64(7), gtask_int64(7)));
  m = lease1(e, "c1");
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DEAD, NULL, 0));
  gtask_msg_free(m);
  ASSERT_STATS(e, e->q, 0, 0, 0, 1);
  ASSERT_OK(gtask_client_rerun(cli, dead));
  ASSERT_STATS(e, e->q, 1, 0, 0, 0);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
}


/* ---------------------------------------------------------------- priorities (issue 18)
 *
 * Levels 0..GTASK_PRIORITY_MAX within a queue: a lease takes the highest
 * level that has tasks first, FIFO within a level, and a task comes back at
 * its level from every path.  A broker without levels refuses a level above
 * 0 and queues nothing; the cases then skip. */

/* Pushes one message of level prio to queue; returns push's code. */
static int push_level(env *e, const char *queue, const char *body, int prio, int64_t due_ms,
                      char *id_out) {
  char id[GTASK_ID_SIZE];
  new_id(id);
  gtask_msg *m = gtask_msg_new(id, queue, body, strlen(body));
  ASSERT_NOT_NULL(m);
  m->priority = prio;
  m->due_ms = due_ms;
  int rc = e->bo->push(e->bi, &m, 1, NULL);
  gtask_msg_free(m);
  if (id_out)
    memcpy(id_out, id, GTASK_ID_SIZE);
  return rc;
}

/* Skips the case unless the broker queues levels; a refusal changed nothing. */
static void need_levels(env *e) {
  if (e->bo->abi < 5)
    SKIP("the broker predates priority levels (abi < 5)");
  char q[96];
  snprintf(q, sizeof(q), "%s-probe", e->q);
  int rc = push_level(e, q, BODIES[0], 1, 0, NULL);
  if (rc != 0) {
    ASSERT_EQ(rc, GTASK_EINVAL);
    ASSERT_STATS(e, q, 0, 0, 0, 0);
    SKIP("the broker refuses priority levels");
  }
  ASSERT_STATS(e, q, 1, 0, 0, 0);
}

/* Leases one message of e->q and checks it is id at level prio. */
static gtask_msg *lease_level(env *e, const char *id, int prio) {
  gtask_msg *m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, id);
  ASSERT_EQ(m->priority, prio);
  return m;
}

/* An urgent task sent after 100 routine ones is leased first; FIFO within
 * each level; one lease takes from several levels; out of range refused. */
CONTRACT(BROKER, priority_levels_order) {
  need_levels(e);
  enum { ROUTINE = 100 };
  char ids[ROUTINE][GTASK_ID_SIZE];
  gtask_msg *batch[ROUTINE];
  for (int k = 0; k < ROUTINE; k++) {
    new_id(ids[k]);
    ASSERT_NOT_NULL(batch[k] = gtask_msg_new(ids[k], e->q, BODIES[k % 6], strlen(BODIES[k % 6])));
  }
  ASSERT_OK(e->bo->push(e->bi, batch, ROUTINE, NULL));
  free_msgs(batch, ROUTINE);
  char high1[GTASK_ID_SIZE], urgent[GTASK_ID_SIZE], high2[GTASK_ID_SIZE];
  ASSERT_OK(push_level(e, e->q, "high-1", 1, 0, high1));
  ASSERT_OK(push_level(e, e->q, "urgent", 2, 0, urgent));
  ASSERT_OK(push_level(e, e->q, "high-2", 1, 0, high2));
  /* Out of range: refused whole, nothing queued. */
  ASSERT_ERR(push_level(e, e->q, "bad", 3, 0, NULL), GTASK_EINVAL);
  ASSERT_ERR(push_level(e, e->q, "bad", -1, 0, NULL), GTASK_EINVAL);
  ASSERT_STATS(e, e->q, ROUTINE + 3, 0, 0, 0);

  gtask_msg *m[ROUTINE + 3];
  ASSERT_EQ(lease(e, "c1", e->q, 4, 0, m), 4); /* one lease across the levels */
  ASSERT_STR_EQ(m[0]->id, urgent);
  ASSERT_EQ(m[0]->priority, 2);
  ASSERT_STR_EQ(m[1]->id, high1);
  ASSERT_STR_EQ(m[2]->id, high2);
  ASSERT_EQ(m[1]->priority, 1);
  ASSERT_EQ(m[2]->priority, 1);
  ASSERT_STR_EQ(m[3]->id, ids[0]);
  ASSERT_EQ(m[3]->priority, 0);
  ASSERT_EQ(lease(e, "c1", e->q, ROUTINE, 0, m + 4), ROUTINE - 1);
  for (int k = 1; k < ROUTINE; k++) {
    ASSERT_STR_EQ(m[3 + k]->id, ids[k]);
    ASSERT_EQ(m[3 + k]->priority, 0);
  }
  ASSERT_STATS(e, e->q, 0, ROUTINE + 3, 0, 0);
  for (int k = 0; k < ROUTINE + 3; k++)
    ASSERT_FALSE(finish(e, "c1", m[k], GTASK_FIN_DONE, NULL, 0));
  free_msgs(m, ROUTINE + 3);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
}

typedef struct level_push {
  env *e;
  const char *queue;
} level_push;

/* After 150 ms: BODIES[5] at level 2 to the queue. */
static void *push_urgent_later(void *arg) {
  level_push *lp = arg;
  test_sleep_ms(150);
  ASSERT_OK(push_level(lp->e, lp->queue, BODIES[5], 2, 0, NULL));
  return NULL;
}

/* A lease over several queues (a weighted or plain list) takes them in the
 * order given, and within each queue its levels highest first; and blocks
 * on all levels of all of them when all are empty. */
CONTRACT(BROKER, priority_within_each_queue_of_a_multi_queue_lease) {
  need_levels(e);
  char qa[96], qb[96];
  snprintf(qa, sizeof(qa), "%s-a", e->q);
  snprintf(qb, sizeof(qb), "%s-b", e->q);
  char a0[GTASK_ID_SIZE], a1[GTASK_ID_SIZE], a2[GTASK_ID_SIZE], b0[GTASK_ID_SIZE],
      b1[GTASK_ID_SIZE];
  push(e, qa, BODIES[0], 0, a0);
  push(e, qa, BODIES[1], 0, a1);
  ASSERT_OK(push_level(e, qa, BODIES[2], 2, 0, a2));
  push(e, qb, BODIES[3], 0, b0);
  ASSERT_OK(push_level(e, qb, BODIES[4], 1, 0, b1));
  const char *queues[] = {qb, qa};
  gtask_msg *m[8];
  size_t n = 0;
  ASSERT_OK(e->bo->lease(e->bi, "c1", queues, 2, 8, 0, m, &n));
  ASSERT_EQ(n, 5);
  const char *want[] = {b1, b0, a2, a0, a1};
  const int level[] = {1, 0, 2, 0, 0};
  for (size_t k = 0; k < 5; k++) {
    ASSERT_STR_EQ(m[k]->id, want[k]);
    ASSERT_EQ(m[k]->priority, level[k]);
  }
  finish_all(e, "c1", m, n);
  free_msgs(m, n);
  /* All empty: a blocked lease is woken by a send at a level. */
  level_push lp = {.e = e, .queue = qa};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, push_urgent_later, &lp), 0);
  n = 0;
  ASSERT_OK(e->bo->lease(e->bi, "c1", queues, 2, 8, test_timeout_ms(5000), m, &n));
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(m[0]->priority, 2);
  ASSERT_STR_EQ(m[0]->body, BODIES[5]);
  finish_all(e, "c1", m, n);
  free_msgs(m, n);
}

/* A task keeps its level through a delay, a retry, a reclaim and requeue,
 * and the dead set: each time it is leased before the routine task queued
 * ahead of it.  Its bodies carry the level as the core writes them (the
 * message field "pr"): a broker that keeps only bodies (Redis: the schedule,
 * the dead set) reads it there. */
#define PR2(tag) "{\"v\":2,\"n\":\"" tag "\",\"a\":[],\"pr\":2}"
CONTRACT(BROKER, priority_kept_on_every_path) {
  need_levels(e);
  char routine[GTASK_ID_SIZE], id[GTASK_ID_SIZE];
  push(e, e->q, BODIES[0], 0, routine);
  int64_t due = now_ms() + 200;
  ASSERT_OK(push_level(e, e->q, PR2("delayed"), 2, due, id));
  ASSERT_STATS(e, e->q, 1, 0, 1, 0);
  int64_t next = -1;
  WAIT_UNTIL((e->bo->promote(e->bi, e->q, 10, &next), stats(e, e->q).pending == 2), 5000);
  gtask_msg *m = lease_level(e, id, 2); /* delay */

  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_RETRY, PR2("retried"), now_ms() + 100));
  gtask_msg_free(m);
  WAIT_UNTIL((e->bo->promote(e->bi, e->q, 10, &next), stats(e, e->q).pending == 2), 5000);
  m = lease_level(e, id, 2); /* retry */
  ASSERT_STR_EQ(m->body, PR2("retried"));

  /* Its holder dies: another takes it over, at its level, and hands it back. */
  test_sleep_ms(250);
  gtask_msg *r[2];
  size_t n = 0;
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, 200, 2, r, &n));
  ASSERT_EQ(n, 1);
  ASSERT_STR_EQ(r[0]->id, id);
  ASSERT_EQ(r[0]->priority, 2);
  ASSERT_TRUE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0)); /* fenced */
  gtask_msg_free(m);
  ASSERT_FALSE(finish(e, "c2", r[0], GTASK_FIN_REQUEUE, PR2("requeued"), 0));
  gtask_msg_free(r[0]);
  m = lease_level(e, id, 2); /* reclaim, requeue */

  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DEAD, PR2("dead"), 0));
  gtask_msg_free(m);
  gtask_msg **v = NULL;
  ASSERT_OK(e->bo->dead_list(e->bi, e->q, id, &v, &n));
  ASSERT_EQ(n, 1);
  ASSERT_EQ(v[0]->priority, 2);
  gtask_revive rs = {.msg = v[0], .next = PR2("revived"), .next_len = strlen(PR2("revived"))};
  ASSERT_OK(e->bo->dead_requeue(e->bi, &rs, 1, NULL));
  ASSERT_TRUE(rs.moved);
  free_msgs(v, n);
  free(v);
  m = lease_level(e, id, 2); /* dead requeue */
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0));
  gtask_msg_free(m);
  m = lease_level(e, routine, 0);
  ASSERT_FALSE(finish(e, "c1", m, GTASK_FIN_DONE, NULL, 0));
  gtask_msg_free(m);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
}

/* Through the client: gtask_send_conf_set_priority validates, a send at
 * level 2 is leased first, a cancel finds it in its level, a failed task
 * runs again at its level. */
CONTRACT(PAIR, client_send_priority) {
  need_levels(e);
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  ASSERT_ERR(gtask_send_conf_set_priority(sc, 3), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "priority 3");
  ASSERT_ERR(gtask_send_conf_set_priority(sc, -1), GTASK_EINVAL);
  ASSERT_ERR(gtask_send_conf_set_priority(NULL, 1), GTASK_EINVAL);
  char plain[GTASK_ID_SIZE], urgent[GTASK_ID_SIZE], high[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, plain, gtask_int64(1))); /* the refusals left level 0 */
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_URGENT));
  ASSERT_OK(GTASK_SEND(cli, sc, urgent, gtask_int64(2)));
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_HIGH));
  ASSERT_OK(GTASK_SEND(cli, sc, high, gtask_int64(3)));
  ASSERT_STATS(e, e->q, 3, 0, 0, 0);
  /* Cancel finds a queued task in its level (here the urgent one). */
  bool cancelled = e->bo->cancel && e->bo->colocated && e->bo->colocated(e->bi, e->be);
  if (cancelled) {
    bool running = true;
    ASSERT_OK(gtask_client_cancel(cli, urgent, &running));
    ASSERT_FALSE(running);
    ASSERT_STATS(e, e->q, 2, 0, 0, 0);
    gtask_status st = 0;
    ASSERT_OK(gtask_client_status(cli, urgent, &st));
    ASSERT_EQ(st, GTASK_CANCELLED);
  }
  gtask_msg *m;
  if (!cancelled) {
    m = lease_level(e, urgent, 2);
    ASSERT_NOT_NULL(strstr(m->body, "\"pr\":2"));
    gtask_msg_free(m);
  }
  m = lease_level(e, high, 1);
  ASSERT_NOT_NULL(strstr(m->body, "\"pr\":1"));
  gtask_msg_free(m);
  m = lease_level(e, plain, 0);
  ASSERT_NULL(strstr(m->body, "\"pr\"")); /* level 0: the message as before */
  gtask_msg_free(m);
  /* A failed task run again (gtask rerun) comes back at its level. */
  if (e->bo->failed_list && e->bo->failed_requeue) {
    char failed[GTASK_ID_SIZE];
    ASSERT_OK(GTASK_SEND(cli, sc, failed, gtask_int64(4))); /* level 1 (set above) */
    push(e, e->q, BODIES[0], 0, NULL);                      /* a routine one ahead of its rerun */
    m = lease_level(e, failed, 1);
    finish_failed(e, m, now_ms() + 60000);
    gtask_msg_free(m);
    ASSERT_OK(gtask_client_rerun(cli, failed));
    m = lease_level(e, failed, 1);
    gtask_msg_free(m);
  }
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
}

/* Records its level at its start (ran[] is the start order). */
static int pr_mark(int64_t level) {
  rt_mark(level);
  if (level == 0)
    test_sleep_ms(1); /* routine work: long enough for the urgent send to land mid-run */
  return 0;
}
GTASK_HANDLER(pr_mark, (int64_t), ())

static size_t ran_at_level(int64_t level) {
  pthread_mutex_lock(&ran_mu);
  size_t k = 0;
  for (size_t i = 0; i < nran; i++)
    k += ran[i] == level;
  pthread_mutex_unlock(&ran_mu);
  return k;
}

/* A backlog of 2,000 routine tasks under a running worker (4 executors,
 * prefetch 16), then 20 urgent ones: all 20 start before more than the
 * prefetched and running routine tasks (16 + 4) start after the send, and
 * nothing is lost.  The queue has used levels before (one high task, sent
 * first, runs first): a worker learns that a queue uses levels at its first
 * lease, or within 500 ms of the first send with a level (Redis). */
CONTRACT(PAIR, server_urgent_overtakes_backlog) {
  need_levels(e);
  enum { BACKLOG = 2000, URGENT = 20, PREFETCH = 16, EXECUTORS = 4 };
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("pr_mark");
  ASSERT_NOT_NULL(sc);
  gtask_value *args = calloc(BACKLOG, sizeof(*args));
  char(*ids)[GTASK_ID_SIZE] = calloc(BACKLOG, sizeof(*ids));
  ASSERT_NOT_NULL(args);
  ASSERT_NOT_NULL(ids);
  for (int k = 0; k < BACKLOG; k++)
    args[k] = gtask_int64(0);
  char high[GTASK_ID_SIZE];
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_HIGH));
  ASSERT_OK(GTASK_SEND(cli, sc, high, gtask_int64(1)));
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_NORMAL));
  ASSERT_OK(gtask_client_send_batch(cli, sc, BACKLOG, args, 1, ids, NULL));
  nran = 0;
  gtask_server *s = gtask_server_new(e->b, e->be);
  ASSERT_NOT_NULL(s);
  ASSERT_OK(gtask_server_set_queues(s, e->q));
  ASSERT_OK(gtask_server_set_prefetch(s, PREFETCH));
  ASSERT_OK(GTASK_REG(s, pr_mark));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, rt_serve_n, s), 0);
  WAIT_UNTIL(ran_count() >= 50, 20000);
  bool high_first = false; /* among the first batch's starts (4 executors in parallel) */
  for (size_t k = 0; k < EXECUTORS; k++)
    high_first |= ran[k] == 1;
  ASSERT_TRUE(high_first);
  for (int k = 0; k < URGENT; k++)
    args[k] = gtask_int64(2);
  ASSERT_OK(gtask_send_conf_set_priority(sc, GTASK_PRIORITY_URGENT));
  ASSERT_OK(gtask_client_send_batch(cli, sc, URGENT, args, 1, ids, NULL));
  /* Queued: from here on, only what the worker holds already (at most its
   * prefetch, running ones included) may start before them. */
  size_t before = ran_count();
  WAIT_UNTIL(ran_at_level(2) == URGENT, 20000);
  pthread_mutex_lock(&ran_mu);
  size_t last = nran;
  while (last > 0 && ran[last - 1] != 2)
    last--;
  size_t routine_after = 0;
  for (size_t i = before; i < last; i++)
    routine_after += ran[i] == 0;
  pthread_mutex_unlock(&ran_mu);
  ASSERT_LE(routine_after, PREFETCH + EXECUTORS); /* prefetch holds the running ones: margin */
  ASSERT_LT(ran_at_level(0), (size_t)BACKLOG); /* the backlog was still there */
  WAIT_UNTIL(ran_count() == BACKLOG + URGENT + 1, 60000);
  /* ran_count counts starts: the last finishes may still be on their way
   * (seen under TSan on the SQLite pair: 284 still active). */
  gtask_queue_stats qs;
  WAIT_UNTIL(gtask_client_stats(cli, e->q, &qs) == 0 && qs.active == 0 && qs.pending == 0, 60000);
  ASSERT_EQ(ran_count(), (size_t)(BACKLOG + URGENT + 1)); /* each ran once */
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  gtask_server_shutdown(s);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  gtask_server_free(s);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
  free(args);
  free(ids);
}

/* Pause flags (issue 18): per queue, kept until changed; sends still queue. */
CONTRACT(BROKER, pause_flags) {
  if (!e->bo->pause || !e->bo->paused) SKIP("the broker cannot pause queues (no pause, paused)");
  char q2[80];
  snprintf(q2, sizeof(q2), "%s-b", e->q);
  const char *qs[2] = {e->q, q2};
  bool p[2] = {true, true};
  ASSERT_OK(e->bo->paused(e->bi, qs, 2, p));
  ASSERT_FALSE(p[0]);
  ASSERT_FALSE(p[1]);
  ASSERT_OK(e->bo->pause(e->bi, e->q, true));
  ASSERT_OK(e->bo->pause(e->bi, e->q, true)); /* idempotent */
  ASSERT_OK(e->bo->paused(e->bi, qs, 2, p));
  ASSERT_TRUE(p[0]);
  ASSERT_FALSE(p[1]);
  push(e, e->q, BODIES[0], 0, NULL);
  ASSERT_STATS(e, e->q, 1, 0, 0, 0);

  gtask_client *cli = client_on(e);
  bool paused = false;
  ASSERT_OK(gtask_client_queue_paused(cli, NULL, &paused));
  ASSERT_TRUE(paused);
  ASSERT_OK(gtask_client_queue_paused(cli, q2, &paused));
  ASSERT_FALSE(paused);
  ASSERT_ERR(gtask_client_queue_pause(cli, "bad queue"), GTASK_EINVAL);
  ASSERT_OK(gtask_client_queue_resume(cli, NULL));
  ASSERT_OK(gtask_client_queue_resume(cli, NULL)); /* idempotent */
  ASSERT_OK(e->bo->paused(e->bi, qs, 2, p));
  ASSERT_FALSE(p[0]);
  ASSERT_OK(gtask_client_queue_pause(cli, q2));
  ASSERT_OK(e->bo->paused(e->bi, qs, 2, p));
  ASSERT_FALSE(p[0]);
  ASSERT_TRUE(p[1]);
  gtask_client_free(cli);
}

/* ---------------------------------------------------------------- backend */

static gtask_msg *task_msg(env *e) {
  char id[GTASK_ID_SIZE];
  new_id(id);
  gtask_msg *m = gtask_msg_new(id, e->q, BODIES[0], strlen(BODIES[0]));
  ASSERT_NOT_NULL(m);
  return m;
}

/* Reads a state; result is copied into res (NUL-terminated, "" if none). */
/* ---------------------------------------------------------------- cancel (issue 18) */

/* The pair can cancel: a broker with cancel() colocated with the backend. */
static void *need_cancel(env *e) {
  void *state = e->bo->colocated ? e->bo->colocated(e->bi, e->be) : NULL;
  if (!e->bo->cancel || !state) SKIP("the pair cannot cancel (no cancel, or not colocated)");
  return state;
}

/* Ends the leased delivery m with SUCCESS as a colocated worker does;
 * returns fin.fenced (true: nothing recorded, the task was final). */
static bool finish_done_fenced(env *e, const char *consumer, gtask_msg *m, void *state) {
  const char *res = REC_OK(3, 1);
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = res,
                 .result_len = strlen(res)};
  ASSERT_OK(e->bo->finish(e->bi, consumer, &f, 1, state));
  return f.fenced;
}

static void assert_cancelled(gtask_client *cli, const char *id) {
  gtask_status st = 0;
  ASSERT_OK(gtask_client_status(cli, id, &st));
  ASSERT_STR_EQ(gtask_status_name(st), "CANCELLED");
  ASSERT_EQ(gtask_client_is_finish(cli, id), 1);
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(cli, id, test_timeout_ms(2000), &r));
  ASSERT_EQ(r->status, GTASK_CANCELLED);
  ASSERT_EQ(r->error_code, GTASK_ECANCELED);
  gtask_result_free(r);
}

/* Queued, delayed and retrying tasks are removed; a leased one ends
 * CANCELLED and its holder's finish records nothing; final and unknown tasks
 * and bad ids are refused and change nothing. */
/* The queue's cancelled counter is n (a broker of abi 6 on counts it). */
static void assert_cancels_counted(env *e, int64_t n) {
  if (e->bo->abi >= 6)
    ASSERT_EQ(stats(e, e->q).cancelled, n);
}

CONTRACT(PAIR, client_cancel) {
  void *state = need_cancel(e);
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  bool running = true;
  ASSERT_ERR(gtask_client_cancel(cli, "not-an-id", &running), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), "not a task id");
  ASSERT_ERR(gtask_client_cancel(cli, NULL, NULL), GTASK_EINVAL);
  char unknown[GTASK_ID_SIZE];
  new_id(unknown);
  ASSERT_ERR(gtask_client_cancel(cli, unknown, NULL), GTASK_ENOTFOUND);

  char queued[GTASK_ID_SIZE], next[GTASK_ID_SIZE], delayed[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, queued, gtask_int64(1)));
  ASSERT_OK(GTASK_SEND(cli, sc, next, gtask_int64(2)));
  ASSERT_OK(gtask_send_conf_set_delay(sc, 60000));
  ASSERT_OK(GTASK_SEND(cli, sc, delayed, gtask_int64(3)));
  ASSERT_OK(gtask_send_conf_set_delay(sc, 0));
  ASSERT_STATS(e, e->q, 2, 0, 1, 0);
  /* Queued: removed, its neighbour untouched. */
  assert_cancels_counted(e, 0);
  ASSERT_OK(gtask_client_cancel(cli, queued, &running));
  ASSERT_FALSE(running);
  assert_cancelled(cli, queued);
  ASSERT_STATS(e, e->q, 1, 0, 1, 0);
  assert_cancels_counted(e, 1);
  /* Delayed: out of the schedule. */
  ASSERT_OK(gtask_client_cancel(cli, delayed, &running));
  ASSERT_FALSE(running);
  assert_cancelled(cli, delayed);
  ASSERT_STATS(e, e->q, 1, 0, 0, 0);
  /* Twice: final already, nothing changed (nor counted). */
  ASSERT_ERR(gtask_client_cancel(cli, queued, &running), GTASK_ESTATE);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), "CANCELLED");
  assert_cancels_counted(e, 2);
  /* The neighbour is leased next, as if nothing happened. */
  gtask_msg *m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, next);
  /* Leased: CANCELLED at once, the message stays with its holder... */
  ASSERT_OK(gtask_client_cancel(cli, next, &running));
  ASSERT_TRUE(running);
  assert_cancelled(cli, next);
  ASSERT_STATS(e, e->q, 0, 1, 0, 0);
  if (e->eo->finals) {
    bool fin = false;
    ASSERT_OK(e->eo->finals(e->ei, &m, 1, &fin));
    ASSERT_TRUE(fin);
  }
  /* ...whose finish records nothing and releases it. */
  ASSERT_TRUE(finish_done_fenced(e, "c1", m, state));
  gtask_msg_free(m);
  assert_cancelled(cli, next);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  assert_cancels_counted(e, 3);
  ASSERT_EQ(stats(e, e->q).succeeded + stats(e, e->q).failed, 0); /* the fenced finish counts not */

  /* Finished: refused, the result kept. */
  char done[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, done, gtask_int64(4)));
  m = lease1(e, "c1");
  if (e->eo->finals) {
    bool fin = true;
    ASSERT_OK(e->eo->finals(e->ei, &m, 1, &fin));
    ASSERT_FALSE(fin);
  }
  ASSERT_FALSE(finish_done_fenced(e, "c1", m, state));
  gtask_msg_free(m);
  ASSERT_ERR(gtask_client_cancel(cli, done, &running), GTASK_ESTATE);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(cli), "SUCCESS");
  gtask_status st;
  ASSERT_OK(gtask_client_status(cli, done, &st));
  ASSERT_EQ(st, GTASK_SUCCESS);

  /* Waiting for a retry: out of the schedule. */
  char retrying[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(cli, sc, retrying, gtask_int64(5)));
  m = lease1(e, "c1");
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_RETRY, .status = GTASK_RETRY, .next = m->body,
                 .next_len = m->len, .next_due_ms = now_ms() + 60000};
  ASSERT_OK(e->bo->finish(e->bi, "c1", &f, 1, state));
  ASSERT_FALSE(f.fenced);
  gtask_msg_free(m);
  ASSERT_STATS(e, e->q, 0, 0, 1, 0);
  ASSERT_OK(gtask_client_cancel(cli, retrying, &running));
  ASSERT_FALSE(running);
  assert_cancelled(cli, retrying);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  assert_cancels_counted(e, 4);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
}

/* Cancel racing with workers: each task ends in exactly one final state, and
 * the answers agree with it.  A consumer leases and finishes the tasks while
 * another thread cancels them all. */
enum { RACE_N = 200 };
typedef struct race {
  env *e;
  void *state;
  char ids[RACE_N][GTASK_ID_SIZE];
  bool leased[RACE_N], fenced[RACE_N];
  atomic_bool cancels_done;
} race;

static int race_index(race *r, const char *id) {
  for (int i = 0; i < RACE_N; i++)
    if (strcmp(r->ids[i], id) == 0) return i;
  TEST_FAIL("leased an unknown task %s", id);
  return -1;
}

static void *race_worker(void *arg) {
  race *r = arg;
  for (int idle = 0; idle < 3;) {
    gtask_msg *m[8] = {0};
    size_t n = lease(r->e, "c1", r->e->q, 8, 20, m);
    if (n == 0 && atomic_load(&r->cancels_done)) idle++;
    for (size_t k = 0; k < n; k++) {
      int i = race_index(r, m[k]->id);
      r->leased[i] = true;
      r->fenced[i] = finish_done_fenced(r->e, "c1", m[k], r->state);
      gtask_msg_free(m[k]);
    }
  }
  return NULL;
}

CONTRACT(PAIR, client_cancel_races_finish) {
  void *state = need_cancel(e);
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  race *r = calloc(1, sizeof(*r));
  ASSERT_NOT_NULL(r);
  r->e = e;
  r->state = state;
  for (int i = 0; i < RACE_N; i++) ASSERT_OK(GTASK_SEND(cli, sc, r->ids[i], gtask_int64(i)));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, race_worker, r), 0);
  int rcs[RACE_N];
  bool held[RACE_N];
  for (int i = RACE_N - 1; i >= 0; i--) { /* from the back: meets the worker midway */
    held[i] = false;
    rcs[i] = gtask_client_cancel(cli, r->ids[i], &held[i]);
  }
  atomic_store(&r->cancels_done, true);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  int cancelled = 0, succeeded = 0;
  for (int i = 0; i < RACE_N; i++) {
    gtask_status st = 0;
    ASSERT_OK(gtask_client_status(cli, r->ids[i], &st));
    if (rcs[i] == 0) {
      /* Cancelled: removed unleased, or leased and its finish fenced. */
      ASSERT_EQ(st, GTASK_CANCELLED);
      if (held[i]) ASSERT_TRUE(r->leased[i] && r->fenced[i]);
      if (!held[i]) ASSERT_FALSE(r->leased[i]);
      cancelled++;
    } else {
      /* Finished first: the cancel said so, and the success stands. */
      ASSERT_EQ(rcs[i], GTASK_ESTATE);
      ASSERT_EQ(st, GTASK_SUCCESS);
      ASSERT_TRUE(r->leased[i] && !r->fenced[i]);
      succeeded++;
    }
  }
  ASSERT_EQ(cancelled + succeeded, RACE_N);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  /* Counted with the cancels, atomically: exactly those that answered 0. */
  assert_cancels_counted(e, cancelled);
  ASSERT_EQ(stats(e, e->q).succeeded, succeeded);
  free(r);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
}

/* Under a real server: a running handler sees gtask_ctx_cancelled() within
 * about a second, and a prefetched task that was cancelled is not run. */
static atomic_int cn_runs, cn_seen;
static int cn_block(void) {
  gtask_ctx *ctx = gtask_ctx_current();
  atomic_fetch_add(&cn_runs, 1);
  for (int64_t until = now_ms() + test_timeout_ms(20000); now_ms() < until;)
    if (!gtask_ctx_sleep(ctx, 50)) {
      atomic_fetch_add(&cn_seen, 1);
      return gtask_ctx_fail(ctx, "stopped");
    }
  return 0;
}
GTASK_HANDLER(cn_block, (), ())

/* The server's events (GTASK_EV_CANCELLED): counts, and the attempt each
 * CANCELLED carried, by task. */
static atomic_int cn_ev_started, cn_ev_cancelled, cn_ev_other;
static pthread_mutex_t cn_ev_mu = PTHREAD_MUTEX_INITIALIZER;
static char cn_ev_ids[2][GTASK_ID_SIZE];
static uint32_t cn_ev_attempt[2];
static int64_t cn_ev_run_ns[2];

static void cn_on_event(const gtask_event *ev, void *udata) {
  (void)udata;
  if (ev->type == GTASK_EV_STARTED) {
    atomic_fetch_add(&cn_ev_started, 1);
  } else if (ev->type == GTASK_EV_CANCELLED) {
    pthread_mutex_lock(&cn_ev_mu);
    int k = atomic_load(&cn_ev_cancelled);
    if (k < 2) {
      snprintf(cn_ev_ids[k], GTASK_ID_SIZE, "%s", ev->id);
      cn_ev_attempt[k] = ev->attempt;
      cn_ev_run_ns[k] = ev->run_ns;
    }
    atomic_fetch_add(&cn_ev_cancelled, 1);
    pthread_mutex_unlock(&cn_ev_mu);
  } else {
    atomic_fetch_add(&cn_ev_other, 1);
  }
}

/* The CANCELLED event of task id: its attempt and run time. */
static void cn_event_of(const char *id, uint32_t *attempt, int64_t *run_ns) {
  pthread_mutex_lock(&cn_ev_mu);
  int k = strcmp(cn_ev_ids[0], id) == 0 ? 0 : strcmp(cn_ev_ids[1], id) == 0 ? 1 : -1;
  if (k >= 0) *attempt = cn_ev_attempt[k], *run_ns = cn_ev_run_ns[k];
  pthread_mutex_unlock(&cn_ev_mu);
  if (k < 0) TEST_FAIL("no CANCELLED event for task %s", id);
}

static void *cn_serve(void *server) {
  ASSERT_OK(gtask_server_run(server, 1));
  return NULL;
}

CONTRACT(PAIR, server_cancel_running) {
  need_cancel(e);
  if (!e->eo->finals) SKIP("the backend has no finals(): workers cannot see a cancel");
  atomic_store(&cn_runs, 0);
  atomic_store(&cn_seen, 0);
  atomic_store(&cn_ev_started, 0);
  atomic_store(&cn_ev_cancelled, 0);
  atomic_store(&cn_ev_other, 0);
  memset(cn_ev_ids, 0, sizeof(cn_ev_ids));
  gtask_server *s = gtask_server_new(e->b, e->be);
  ASSERT_NOT_NULL(s);
  ASSERT_OK(gtask_server_on(s, GTASK_EV_ALL, cn_on_event, NULL));
  ASSERT_OK(gtask_server_set_queues(s, e->q));
  ASSERT_OK(gtask_server_set_prefetch(s, 4));
  ASSERT_OK(GTASK_REG(s, cn_block));
  gtask_client *c = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("cn_block");
  ASSERT_NOT_NULL(sc);
  char run[GTASK_ID_SIZE], wait[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(c, sc, NULL, 0, run));
  ASSERT_OK(gtask_client_send(c, sc, NULL, 0, wait));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, cn_serve, s), 0);
  /* One runs (concurrency 1), the other waits leased in the prefetch. */
  gtask_queue_stats qs;
  WAIT_UNTIL(atomic_load(&cn_runs) == 1 && gtask_client_stats(c, NULL, &qs) == 0 && qs.active == 2,
             5000);
  bool running = false;
  ASSERT_OK(gtask_client_cancel(c, wait, &running));
  ASSERT_TRUE(running);
  /* Let the worker see the prefetched one's cancel before the first ends. */
  test_sleep_ms(1200);
  int64_t t0 = now_ms();
  ASSERT_OK(gtask_client_cancel(c, run, &running));
  ASSERT_TRUE(running);
  WAIT_UNTIL(atomic_load(&cn_seen) == 1, 3000);
  int64_t seen_ms = now_ms() - t0;
  ASSERT_LE(seen_ms, test_timeout_ms(3000));
  assert_cancelled(c, run);
  assert_cancelled(c, wait);
  WAIT_UNTIL(gtask_client_stats(c, NULL, &qs) == 0 && qs.active == 0 && qs.pending == 0, 5000);
  ASSERT_EQ(atomic_load(&cn_runs), 1); /* the prefetched one never ran */
  ASSERT_EQ(qs.succeeded + qs.failed, 0); /* and nothing was counted as done */
  assert_cancels_counted(e, 2);
  /* Each fired CANCELLED on this worker once it let the task go: the run
   * with its attempt and run time, the prefetched one with attempt 0 (and
   * no STARTED); nothing else (no FAILED, no LEASE_LOST). */
  WAIT_UNTIL(atomic_load(&cn_ev_cancelled) == 2, 5000);
  uint32_t attempt = 9;
  int64_t run_ns = -1;
  cn_event_of(run, &attempt, &run_ns);
  ASSERT_EQ(attempt, 1);
  ASSERT_GT(run_ns, 1000 * 1000000LL); /* it ran over a second (the 1.2 s above) */
  cn_event_of(wait, &attempt, &run_ns);
  ASSERT_EQ(attempt, 0);
  ASSERT_EQ(run_ns, 0);
  ASSERT_EQ(atomic_load(&cn_ev_started), 1);
  ASSERT_EQ(atomic_load(&cn_ev_other), 0);
  gtask_server_shutdown(s);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  gtask_send_conf_free(sc);
  gtask_client_free(c);
  gtask_server_free(s);
}

static void get(env *e, const gtask_msg *m, gtask_status *status, uint32_t *attempts, char *res,
                size_t ressize) {
  char *r = NULL;
  size_t len = 0;
  ASSERT_OK(e->eo->get(e->ei, m->queue, m->id, status, attempts, &r, &len));
  if (r == NULL) {
    ASSERT_EQ(len, 0);
    res[0] = '\0';
  } else {
    ASSERT_LT(len, ressize);
    memcpy(res, r, len);
    res[len] = '\0';
    free(r);
  }
}

/* Two waits on a final task each hand over exactly the record `want` (a
 * waiter takes the element a rejected second final would have left behind). */
static void waits_get(env *e, const gtask_msg *m, const char *want) {
  for (int k = 0; k < 2; k++) {
    char *r = NULL;
    size_t len = 0;
    ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, 100, true, &r, &len));
    ASSERT_NOT_NULL(r);
    ASSERT_EQ(len, strlen(want));
    ASSERT_MEM_EQ(r, want, len);
    free(r);
  }
}

/* Asserts a task's state: its status and result record ("" for none). */
static void assert_state(env *e, const gtask_msg *m, gtask_status want, const char *want_res) {
  gtask_status s;
  uint32_t a;
  char res[128];
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, want);
  ASSERT_STR_EQ(res, want_res);
}

static bool store(env *e, gtask_msg *m, gtask_status status, const char *result) {
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_DONE, .status = status, .result = result,
                 .result_len = result ? strlen(result) : 0, .fenced = true};
  ASSERT_OK(e->eo->store(e->ei, &f, 1));
  return f.fenced;
}

/* ---------------------------------------------------------------- progress (issue 18) */

/* Progress is kept per task while it is not final; a final state drops it
 * and refuses later writes. */
CONTRACT(BACKEND, backend_progress) {
  if (!e->eo->progress || !e->eo->progress_get) SKIP("the backend keeps no progress");
  gtask_msg *m = gtask_msg_new("5d3c1a2b-0000-4000-8000-000000000001", e->q, "x", 1);
  ASSERT_NOT_NULL(m);
  char *v = (char *)"unchanged";
  ASSERT_ERR(e->eo->progress_get(e->ei, e->q, m->id, &v), GTASK_ENOTFOUND);
  ASSERT_NULL(v);
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  uint32_t att = 1;
  ASSERT_OK(e->eo->started(e->ei, &m, &att, 1));
  const char *vals[] = {"3 10 copying files"};
  ASSERT_OK(e->eo->progress(e->ei, &m, vals, 1));
  ASSERT_OK(e->eo->progress_get(e->ei, e->q, m->id, &v));
  ASSERT_STR_EQ(v, "3 10 copying files");
  free(v);
  const char *next_vals[] = {"7 10 "};
  ASSERT_OK(e->eo->progress(e->ei, &m, next_vals, 1));
  ASSERT_OK(e->eo->progress_get(e->ei, e->q, m->id, &v));
  ASSERT_STR_EQ(v, "7 10 ");
  free(v);
  assert_state(e, m, GTASK_STARTED, ""); /* the state is untouched */
  const char *res = REC_OK(3, 1);
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = res,
                 .result_len = strlen(res)};
  ASSERT_OK(e->eo->store(e->ei, &f, 1));
  ASSERT_ERR(e->eo->progress_get(e->ei, e->q, m->id, &v), GTASK_ENOTFOUND);
  ASSERT_OK(e->eo->progress(e->ei, &m, vals, 1)); /* a late report: dropped */
  ASSERT_ERR(e->eo->progress_get(e->ei, e->q, m->id, &v), GTASK_ENOTFOUND);
  assert_state(e, m, GTASK_SUCCESS, res);
  gtask_msg_free(m);
}

/* Under a real server: a handler's reports, read by the client while it
 * runs; bad reports refused. */
static atomic_int pg_go;
static int pg_task(void) {
  gtask_ctx *ctx = gtask_ctx_current();
  if (gtask_ctx_progress(ctx, -1, 10, NULL) != GTASK_EINVAL) return gtask_ctx_fail(ctx, "negative");
  if (gtask_ctx_progress(ctx, 11, 10, NULL) != GTASK_EINVAL) return gtask_ctx_fail(ctx, "over");
  for (int k = 0; k <= 100000; k++) /* a tight loop: written at most every 500 ms */
    if (gtask_ctx_progress(ctx, k < 3 ? k : 3, 10, "step\nthree") != 0) return gtask_ctx_fail(ctx, "report");
  for (int64_t until = now_ms() + test_timeout_ms(20000); now_ms() < until && !atomic_load(&pg_go);)
    gtask_ctx_sleep(ctx, 10);
  return 0;
}
GTASK_HANDLER(pg_task, (), ())

static void *pg_serve(void *server) {
  ASSERT_OK(gtask_server_run(server, 1));
  return NULL;
}

CONTRACT(PAIR, server_progress) {
  if (!e->eo->progress || !e->eo->progress_get) SKIP("the backend keeps no progress");
  atomic_store(&pg_go, 0);
  gtask_server *s = gtask_server_new(e->b, e->be);
  ASSERT_NOT_NULL(s);
  ASSERT_OK(gtask_server_set_queues(s, e->q));
  ASSERT_OK(GTASK_REG(s, pg_task));
  gtask_client *c = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("pg_task");
  ASSERT_NOT_NULL(sc);
  char id[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(c, sc, NULL, 0, id));
  gtask_progress p;
  ASSERT_ERR(gtask_client_progress(c, id, &p), GTASK_ENOTFOUND); /* not started */
  ASSERT_ERR(gtask_client_progress(c, "nope", &p), GTASK_EINVAL);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, pg_serve, s), 0);
  WAIT_UNTIL(gtask_client_progress(c, id, &p) == 0 && p.done == 3, 5000);
  ASSERT_EQ(p.total, 10);
  ASSERT_STR_EQ(p.message, "step three");
  atomic_store(&pg_go, 1);
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(c, id, test_timeout_ms(5000), &r));
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
  ASSERT_ERR(gtask_client_progress(c, id, &p), GTASK_ENOTFOUND); /* final: dropped */
  gtask_server_shutdown(s);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  gtask_send_conf_free(sc);
  gtask_client_free(c);
  gtask_server_free(s);
}

CONTRACT(BACKEND, backend_flow) {
  gtask_msg *m = task_msg(e);
  gtask_status s = 0;
  uint32_t a = 99;
  char res[64];
  char *r = (char *)"x";
  size_t len = 0;
  ASSERT_ERR(e->eo->get(e->ei, m->queue, m->id, &s, &a, &r, &len), GTASK_ENOTFOUND);

  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_PENDING);
  ASSERT_EQ(a, 0);
  ASSERT_STR_EQ(res, "");

  uint32_t one = 1, two = 2, three = 3;
  ASSERT_OK(e->eo->started(e->ei, &m, &one, 1));
  ASSERT_OK(e->eo->pending(e->ei, &m, 1)); /* has a state: no change */
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_STARTED);
  ASSERT_EQ(a, 1);

  ASSERT_FALSE(store(e, m, GTASK_RETRY, "{\"err\":\"again\"}"));
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_RETRY);
  ASSERT_EQ(a, 1);
  ASSERT_STR_EQ(res, "{\"err\":\"again\"}");

  ASSERT_OK(e->eo->started(e->ei, &m, &two, 1));
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_STARTED);
  ASSERT_EQ(a, 2);

  ASSERT_FALSE(store(e, m, GTASK_SUCCESS, REC_OK(42, 2)));
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_SUCCESS);
  ASSERT_EQ(a, 2);
  ASSERT_STR_EQ(res, REC_OK(42, 2));

  /* Final is final. */
  ASSERT_TRUE(store(e, m, GTASK_FAILURE, REC_FAIL("late", 2)));
  ASSERT_TRUE(store(e, m, GTASK_PENDING, NULL));
  waits_get(e, m, REC_OK(42, 2));
  ASSERT_OK(e->eo->started(e->ei, &m, &three, 1));
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_SUCCESS);
  ASSERT_EQ(a, 2);
  ASSERT_STR_EQ(res, REC_OK(42, 2));

  /* NULL outputs are allowed. */
  ASSERT_OK(e->eo->get(e->ei, m->queue, m->id, &s, NULL, NULL, NULL));

  /* States are per queue. */
  char other[64];
  unique_queue(other, sizeof(other), "-other");
  ASSERT_ERR(e->eo->get(e->ei, other, m->id, &s, &a, NULL, NULL), GTASK_ENOTFOUND);
  gtask_msg_free(m);
}

/* Fresh fins (a first delivery that got no STARTED mark): a final one is
 * recorded as any other; a hand-back (PENDING) leaves the task PENDING, also
 * where it records nothing (Redis: the pending set still holds it); a fresh
 * fin never writes over a final state. */
CONTRACT(BACKEND, backend_store_fresh_fins) {
  gtask_msg *m[3] = {task_msg(e), task_msg(e), task_msg(e)};
  ASSERT_OK(e->eo->pending(e->ei, m, 3));
  ASSERT_FALSE(store(e, m[2], GTASK_FAILURE, REC_FAIL("x", 1)));
  gtask_fin f[4] = {
      {.msg = m[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = REC_OK(1, 1),
       .result_len = sizeof(REC_OK(1, 1)) - 1, .fresh = true, .fenced = true},
      {.msg = m[1], .kind = GTASK_FIN_REQUEUE, .status = GTASK_PENDING, .fresh = true,
       .fenced = true},
      {.msg = m[2], .kind = GTASK_FIN_REQUEUE, .status = GTASK_PENDING, .fresh = true},
      {.msg = m[2], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = REC_OK(2, 1),
       .result_len = sizeof(REC_OK(2, 1)) - 1, .fresh = true},
  };
  ASSERT_OK(e->eo->store(e->ei, f, 4));
  ASSERT_FALSE(f[0].fenced);
  ASSERT_FALSE(f[1].fenced);
  ASSERT_TRUE(f[2].fenced);
  ASSERT_TRUE(f[3].fenced);
  assert_state(e, m[0], GTASK_SUCCESS, REC_OK(1, 1));
  waits_get(e, m[0], REC_OK(1, 1));
  assert_state(e, m[1], GTASK_PENDING, "");
  assert_state(e, m[2], GTASK_FAILURE, REC_FAIL("x", 1));
  /* The handed-back task runs again and ends like any other. */
  ASSERT_FALSE(store(e, m[1], GTASK_SUCCESS, REC_OK(3, 1)));
  assert_state(e, m[1], GTASK_SUCCESS, REC_OK(3, 1));
  free_msgs(m, 3);
}

/* A batch of stores: each fin on its own, the final ones fenced. */
CONTRACT(BACKEND, backend_store_batch) {
  gtask_msg *m[3] = {task_msg(e), task_msg(e), task_msg(e)};
  ASSERT_OK(e->eo->pending(e->ei, m, 3));
  ASSERT_FALSE(store(e, m[1], GTASK_FAILURE, REC_FAIL("x", 1)));
  gtask_fin f[3] = {
      {.msg = m[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = REC_OK(1, 1),
       .result_len = sizeof(REC_OK(1, 1)) - 1},
      {.msg = m[1], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = REC_OK(2, 1),
       .result_len = sizeof(REC_OK(2, 1)) - 1},
      {.msg = m[2], .kind = GTASK_FIN_RETRY, .status = GTASK_RETRY, .result = "c", .result_len = 1},
  };
  ASSERT_OK(e->eo->store(e->ei, f, 3));
  ASSERT_FALSE(f[0].fenced);
  ASSERT_TRUE(f[1].fenced);
  ASSERT_FALSE(f[2].fenced);
  assert_state(e, m[0], GTASK_SUCCESS, REC_OK(1, 1));
  assert_state(e, m[1], GTASK_FAILURE, REC_FAIL("x", 1));
  assert_state(e, m[2], GTASK_RETRY, "c");
  free_msgs(m, 3);
}

CONTRACT(BACKEND, backend_wait_wakes) {
  gtask_msg *m = task_msg(e);
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  later l = {.e = e, .kind = LATER_STORE, .delay_ms = 150, .msg = m};
  later_start(&l);
  int64_t t0 = test_now_ms();
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, test_timeout_ms(5000), false, NULL, NULL));
  int64_t woke = test_now_ms();
  later_join(&l);
  ASSERT_GE(woke - t0, 100);
  ASSERT_LT(woke - l.at_ms, test_timeout_ms(200));
  /* Already final: at once, whatever the timeout. */
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, 0, false, NULL, NULL));
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, -1, false, NULL, NULL));
  gtask_msg_free(m);
}

CONTRACT(BACKEND, backend_wait_for_ever_wakes) {
  gtask_msg *m = task_msg(e);
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  later l = {.e = e, .kind = LATER_STORE, .delay_ms = 150, .msg = m};
  later_start(&l);
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, -1, false, NULL, NULL));
  int64_t woke = test_now_ms();
  later_join(&l);
  ASSERT_LT(woke - l.at_ms, test_timeout_ms(200));
  gtask_msg_free(m);
}

CONTRACT(BACKEND, backend_wait_times_out) {
  gtask_msg *m = task_msg(e);
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  int64_t t0 = test_now_ms();
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 300, false, NULL, NULL), GTASK_ETIMEDOUT);
  int64_t took = test_now_ms() - t0;
  ASSERT_GE(took, 295);
  /* The slack covers a first connection (TLS handshake, AUTH) and the state
   * reads before and after the block on a loaded 2-core machine. */
  ASSERT_LT(took, 300 + test_timeout_ms(1000));
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 0, false, NULL, NULL), GTASK_ETIMEDOUT);
  /* A non-final store does not end the wait. */
  ASSERT_FALSE(store(e, m, GTASK_RETRY, "{}"));
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 100, false, NULL, NULL), GTASK_ETIMEDOUT);
  gtask_msg_free(m);
}

CONTRACT(BACKEND, backend_unknown_id) {
  char id[GTASK_ID_SIZE];
  new_id(id);
  gtask_status s;
  ASSERT_ERR(e->eo->get(e->ei, e->q, id, &s, NULL, NULL, NULL), GTASK_ENOTFOUND);
  int64_t t0 = test_now_ms();
  ASSERT_ERR(e->eo->wait(e->ei, e->q, id, test_timeout_ms(5000), false, NULL, NULL),
             GTASK_ENOTFOUND);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(200));
  /* Said to be known but unknown after all: not found, by the timeout at the
   * latest (never a success, never a wait for ever). */
  ASSERT_ERR(e->eo->wait(e->ei, e->q, id, 200, true, NULL, NULL), GTASK_ENOTFOUND);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(1000));
}

/* A waiter that knows the task exists (it sent it) gets the same answers: the
 * final result when it comes, a timeout while it does not, and the result at
 * once when it is final already. */
CONTRACT(BACKEND, backend_wait_known) {
  gtask_msg *m = task_msg(e);
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 100, true, NULL, NULL), GTASK_ETIMEDOUT);
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 0, true, NULL, NULL), GTASK_ETIMEDOUT);
  later l = {.e = e, .kind = LATER_STORE, .delay_ms = 150, .msg = m};
  later_start(&l);
  char *res = NULL;
  size_t len = 0;
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, test_timeout_ms(5000), true, &res, &len));
  int64_t woke = test_now_ms();
  later_join(&l);
  ASSERT_LT(woke - l.at_ms, test_timeout_ms(200));
  ASSERT_NOT_NULL(res);
  char want[64];
  gtask_status s;
  uint32_t a;
  get(e, m, &s, &a, want, sizeof(want));
  ASSERT_EQ(s, GTASK_SUCCESS);
  ASSERT_EQ(len, strlen(want));
  ASSERT_STR_EQ(res, want);
  free(res);
  int64_t t0 = test_now_ms();
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, test_timeout_ms(5000), true, NULL, NULL));
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(200));
  gtask_msg_free(m);
}

/* reset() is the one write that replaces a final state (a dead task requeued
 * by hand): PENDING, no result, waiters wait again; later writes work as for a
 * new task. */
CONTRACT(BACKEND, backend_reset) {
  gtask_msg *m = task_msg(e);
  gtask_status s;
  uint32_t a;
  char res[64];
  ASSERT_OK(e->eo->reset(e->ei, &m, 1)); /* a missing record is created */
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_PENDING);
  uint32_t two = 2;
  ASSERT_OK(e->eo->started(e->ei, &m, &two, 1));
  ASSERT_FALSE(store(e, m, GTASK_FAILURE, REC_FAIL("lost", 2)));
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, 0, false, NULL, NULL));

  ASSERT_OK(e->eo->reset(e->ei, &m, 1));
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_PENDING);
  ASSERT_EQ(a, 2); /* attempts kept */
  ASSERT_STR_EQ(res, "");
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 0, false, NULL, NULL), GTASK_ETIMEDOUT);
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 100, false, NULL, NULL), GTASK_ETIMEDOUT);

  /* A waiter started now is woken by the new final state, with the new record. */
  later l = {.e = e, .kind = LATER_STORE, .delay_ms = 150, .msg = m};
  later_start(&l);
  char *r = NULL;
  size_t len = 0;
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, test_timeout_ms(5000), false, &r, &len));
  later_join(&l);
  if (r != NULL) { /* the record, if handed over, is the new one */
    ASSERT_EQ(len, sizeof(REC_OK(1, 1)) - 1);
    ASSERT_MEM_EQ(r, REC_OK(1, 1), len);
    free(r);
  }
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_SUCCESS);
  ASSERT_STR_EQ(res, REC_OK(1, 1));
  gtask_msg_free(m);
}

/* A final record lives for the backend's record lifetime, then is gone: get
 * and wait report GTASK_ENOTFOUND, and a write finds no record (make() was
 * asked for RESULT_TTL_MS). */
CONTRACT(RESULT_TTL, backend_result_expires) {
  gtask_msg *m = task_msg(e);
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  ASSERT_FALSE(store(e, m, GTASK_SUCCESS, REC_OK(1, 1)));
  assert_state(e, m, GTASK_SUCCESS, REC_OK(1, 1));
  test_sleep_ms(RESULT_TTL_MS + 700);
  gtask_status s;
  ASSERT_ERR(e->eo->get(e->ei, m->queue, m->id, &s, NULL, NULL, NULL), GTASK_ENOTFOUND);
  ASSERT_ERR(e->eo->wait(e->ei, m->queue, m->id, 0, false, NULL, NULL), GTASK_ENOTFOUND);
  /* Writes see the expired record as missing too: pending() creates one. */
  ASSERT_OK(e->eo->pending(e->ei, &m, 1));
  assert_state(e, m, GTASK_PENDING, "");
  gtask_msg_free(m);
}

/* A chosen id is taken while its task's record lives, and free again once
 * the record expired: a send with that id then queues a new task (the id's
 * "already exists" lasts as long as the result is kept). */
CONTRACT(RESULT_TTL, client_send_with_id_after_expiry) {
  need_claim(e);
  gtask_client *cli = client_on(e);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  char want[GTASK_ID_SIZE], id[GTASK_ID_SIZE];
  new_id(want);
  ASSERT_OK(gtask_send_conf_set_id(sc, want));
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)));
  gtask_msg *m = lease1(e, "c1");
  finish_success(e, m);
  gtask_msg_free(m);
  ASSERT_ERR(GTASK_SEND(cli, sc, id, gtask_int64(1), gtask_int64(2)), GTASK_EEXIST);
  test_sleep_ms(RESULT_TTL_MS + 700);
  gtask_status st;
  ASSERT_ERR(gtask_client_status(cli, want, &st), GTASK_ENOTFOUND);
  ASSERT_OK(GTASK_SEND(cli, sc, id, gtask_int64(5), gtask_int64(6)));
  ASSERT_STR_EQ(id, want);
  ASSERT_OK(gtask_client_status(cli, want, &st));
  ASSERT_EQ(st, GTASK_PENDING);
  m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, want);
  gtask_msg_free(m);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
}

/* ---------------------------------------------------------------- colocated finish */

/* When the broker can write the backend's records (Redis, same server and db;
 * the memory pair), finish with state changes broker and backend in one atomic
 * step. */
CONTRACT(COLOCATED, colocated_finish) {
  void *state = colocated(e);
  gtask_status s;
  uint32_t a;
  char res[64];

  /* push with state records PENDING. */
  char id[GTASK_ID_SIZE];
  new_id(id);
  gtask_msg *p = gtask_msg_new(id, e->q, BODIES[0], strlen(BODIES[0]));
  ASSERT_NOT_NULL(p);
  ASSERT_OK(e->bo->push(e->bi, &p, 1, state));
  get(e, p, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_PENDING);

  gtask_msg *m = lease1(e, "c1");
  ASSERT_STR_EQ(m->id, id);
  gtask_fin f = {.msg = m, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                 .result = REC_OK(1, 1), .result_len = sizeof(REC_OK(1, 1)) - 1, .fenced = true};
  ASSERT_OK(e->bo->finish(e->bi, "c1", &f, 1, state));
  ASSERT_FALSE(f.fenced);
  get(e, m, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_SUCCESS);
  ASSERT_STR_EQ(res, REC_OK(1, 1));
  ASSERT_OK(e->eo->wait(e->ei, m->queue, m->id, 0, false, NULL, NULL));
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  gtask_msg_free(m);
  gtask_msg_free(p);

  /* A fenced fin writes nothing: neither the broker nor the record. */
  push(e, e->q, BODIES[1], 0, id);
  gtask_msg *m1 = lease1(e, "c1");
  ASSERT_OK(e->eo->pending(e->ei, &m1, 1));
  test_sleep_ms(300);
  gtask_msg *r[1];
  size_t n = 0;
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, 200, 1, r, &n));
  ASSERT_EQ(n, 1);
  gtask_fin g = {.msg = m1, .kind = GTASK_FIN_DEAD, .status = GTASK_FAILURE,
                 .result = REC_FAIL("stale", 1), .result_len = sizeof(REC_FAIL("stale", 1)) - 1};
  ASSERT_OK(e->bo->finish(e->bi, "c1", &g, 1, state));
  ASSERT_TRUE(g.fenced);
  get(e, m1, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_PENDING);
  ASSERT_STR_EQ(res, "");
  ASSERT_STATS(e, e->q, 0, 1, 0, 0);

  /* A task already final keeps its state; its lease is still released. */
  ASSERT_FALSE(store(e, r[0], GTASK_FAILURE, REC_FAIL("first", 1)));
  gtask_fin h = {.msg = r[0], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                 .result = REC_OK(2, 1), .result_len = sizeof(REC_OK(2, 1)) - 1};
  ASSERT_OK(e->bo->finish(e->bi, "c2", &h, 1, state));
  get(e, m1, &s, &a, res, sizeof(res));
  ASSERT_EQ(s, GTASK_FAILURE);
  ASSERT_STR_EQ(res, REC_FAIL("first", 1));
  waits_get(e, m1, REC_FAIL("first", 1));
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  gtask_msg_free(m1);
  gtask_msg_free(r[0]);
}

/* One colocated batch mixing fins that Redis takes in its short form (fresh,
 * done, SUCCESS) with general ones, a fenced short fin and a short fin of a
 * task already final among them: each fin's outcome and state are its own. */
CONTRACT(COLOCATED, colocated_finish_batch_of_short_and_general_fins) {
  void *state = colocated(e);
  gtask_msg *p[5];
  for (int i = 0; i < 5; i++) {
    char id[GTASK_ID_SIZE];
    new_id(id);
    p[i] = gtask_msg_new(id, e->q, BODIES[i], strlen(BODIES[i]));
    ASSERT_NOT_NULL(p[i]);
  }
  ASSERT_OK(e->bo->push(e->bi, p, 5, state));
  gtask_msg *m[5];
  ASSERT_EQ(lease(e, "c1", e->q, 5, 0, m), 5);
  for (int i = 0; i < 5; i++)
    ASSERT_STR_EQ(m[i]->id, p[i]->id);
  ASSERT_FALSE(store(e, m[2], GTASK_FAILURE, REC_FAIL("first", 1))); /* final already */
  gtask_msg *stale = gtask_msg_new(m[4]->id, e->q, "x", 1);
  ASSERT_NOT_NULL(stale);
  ASSERT_OK(gtask_msg_set_lease(stale, "0-1")); /* never handed out */
#define FIN_OK(mm, v)                                                                      \
  {.msg = (mm), .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS, .result = REC_OK(v, 1),  \
   .result_len = sizeof(REC_OK(v, 1)) - 1, .fresh = true, .fenced = true}
  gtask_fin f[6] = {
      FIN_OK(m[0], 10),
      {.msg = m[1], .kind = GTASK_FIN_DONE, .status = GTASK_FAILURE, .result = REC_FAIL("no", 1),
       .result_len = sizeof(REC_FAIL("no", 1)) - 1, .fresh = true, .fenced = true},
      FIN_OK(m[2], 12),
      {.msg = m[3], .kind = GTASK_FIN_RETRY, .status = GTASK_RETRY, .result = REC_FAIL("again", 1),
       .result_len = sizeof(REC_FAIL("again", 1)) - 1, .next = "r", .next_len = 1,
       .next_due_ms = now_ms() + 60000, .fenced = true},
      FIN_OK(stale, 13),
      FIN_OK(m[4], 14),
  };
#undef FIN_OK
  ASSERT_OK(e->bo->finish(e->bi, "c1", f, 6, state));
  const bool fenced[6] = {false, false, true, false, true, false};
  for (int i = 0; i < 6; i++)
    ASSERT_EQ(f[i].fenced, fenced[i]);
  const gtask_status want_s[5] = {GTASK_SUCCESS, GTASK_FAILURE, GTASK_FAILURE, GTASK_RETRY,
                                  GTASK_SUCCESS};
  const char *want_r[5] = {REC_OK(10, 1), REC_FAIL("no", 1), REC_FAIL("first", 1),
                           REC_FAIL("again", 1), REC_OK(14, 1)};
  for (int i = 0; i < 5; i++)
    assert_state(e, m[i], want_s[i], want_r[i]);
  waits_get(e, m[0], REC_OK(10, 1));
  waits_get(e, m[4], REC_OK(14, 1));
  ASSERT_STATS(e, e->q, 0, 0, 1, 0);
  gtask_queue_stats st = stats(e, e->q);
  ASSERT_EQ(st.succeeded, 2);
  ASSERT_EQ(st.failed, 1);
  free_msgs(m, 5);
  free_msgs(p, 5);
  gtask_msg_free(stale);
}

/* Short fins of leases nobody took over (Redis: finish.lua trusts the fence and
 * skips its lease check): a finish run twice -- a reply lost, the batch sent
 * again -- records and counts each task once; the second run finds each fin
 * either final already (fenced) or its own earlier write (not fenced: Redis
 * compares the final record with the fin's), the same for all.  After a
 * takeover, the old holder's short fins are fenced and the new holder's are
 * recorded. */
CONTRACT(COLOCATED, colocated_short_fins_after_a_retry_and_a_takeover) {
  void *state = colocated(e);
  enum { N = 10 };
  gtask_msg *p[N], *m[N];
  for (int i = 0; i < N; i++) {
    char id[GTASK_ID_SIZE];
    new_id(id);
    p[i] = gtask_msg_new(id, e->q, BODIES[i % 4], strlen(BODIES[i % 4]));
    ASSERT_NOT_NULL(p[i]);
  }
  ASSERT_OK(e->bo->push(e->bi, p, N, state));
  /* (Redis reads the fence for a lease that follows one of several messages:
   * two leases of 2 and N - 2, finished in one batch.) */
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, m), 2);
  ASSERT_EQ(lease(e, "c1", e->q, N - 2, 0, m + 2), N - 2);
  gtask_fin f[N];
  int own = 0; /* second-run fins recognised as the first run's */
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < N; i++)
      f[i] = (gtask_fin){.msg = m[i], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                         .result = REC_OK(7, 1), .result_len = sizeof(REC_OK(7, 1)) - 1,
                         .fresh = true, .fenced = round == 0};
    ASSERT_OK(e->bo->finish(e->bi, "c1", f + 2, N - 2, state));
    ASSERT_OK(e->bo->finish(e->bi, "c1", f, 2, state));
    for (int i = 0; i < N; i++) {
      if (round == 0) ASSERT_FALSE(f[i].fenced);
      if (round == 1) own += !f[i].fenced;
    }
  }
  ASSERT_TRUE(own == 0 || own == N);
  gtask_queue_stats st = stats(e, e->q);
  ASSERT_EQ(st.succeeded, N);
  ASSERT_STATS(e, e->q, 0, 0, 0, 0);
  for (int i = 0; i < N; i++) {
    assert_state(e, m[i], GTASK_SUCCESS, REC_OK(7, 1));
    waits_get(e, m[i], REC_OK(7, 1));
  }
  free_msgs(m, N);
  free_msgs(p, N);

  /* A takeover: c2 reclaims c1's expired leases, then c1 finishes late. */
  gtask_msg *q[2], *r[2];
  for (int i = 0; i < 2; i++) {
    char id[GTASK_ID_SIZE];
    new_id(id);
    q[i] = gtask_msg_new(id, e->q, BODIES[i], strlen(BODIES[i]));
    ASSERT_NOT_NULL(q[i]);
  }
  ASSERT_OK(e->bo->push(e->bi, q, 2, state));
  ASSERT_EQ(lease(e, "c1", e->q, 2, 0, m), 2);
  test_sleep_ms(300);
  size_t n = 0;
  ASSERT_OK(e->bo->reclaim(e->bi, "c2", e->q, 200, 2, r, &n));
  ASSERT_EQ(n, 2);
  gtask_fin late[2], now[2];
  for (int i = 0; i < 2; i++) {
    late[i] = (gtask_fin){.msg = m[i], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                          .result = REC_OK(1, 1), .result_len = sizeof(REC_OK(1, 1)) - 1,
                          .fresh = true};
    now[i] = (gtask_fin){.msg = r[i], .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                         .result = REC_OK(2, 1), .result_len = sizeof(REC_OK(2, 1)) - 1,
                         .fresh = true, .fenced = true};
  }
  ASSERT_OK(e->bo->finish(e->bi, "c1", late, 2, state));
  ASSERT_TRUE(late[0].fenced);
  ASSERT_TRUE(late[1].fenced);
  for (int i = 0; i < 2; i++)
    assert_state(e, m[i], GTASK_PENDING, "");
  ASSERT_OK(e->bo->finish(e->bi, "c2", now, 2, state));
  ASSERT_FALSE(now[0].fenced);
  ASSERT_FALSE(now[1].fenced);
  for (int i = 0; i < 2; i++)
    assert_state(e, m[i], GTASK_SUCCESS, REC_OK(2, 1));
  free_msgs(m, 2);
  free_msgs(r, 2);
  free_msgs(q, 2);
}

/* ---------------------------------------------------------------- beyond the contract
 * Guarantees some implementations give beyond the contract (the memory broker
 * gives both), checked for targets that claim them. */

/* Every reclaim issues a new token, even to the same consumer: a stale holder
 * inside one server is fenced too.  (Redis fences by consumer name, with the
 * stream entry id as the token, so it cannot tell two holders of one name.) */
CONTRACT(NEW_TOKEN, reclaim_new_token) {
  push(e, e->q, BODIES[0], 0, NULL);
  gtask_msg *m1 = lease1(e, "c1");
  test_sleep_ms(60);
  gtask_msg *r[1];
  size_t n = 0;
  ASSERT_OK(e->bo->reclaim(e->bi, "c1", e->q, 50, 1, r, &n));
  ASSERT_EQ(n, 1);
  ASSERT_STR_NE(r[0]->lease, m1->lease);
  ASSERT_TRUE(extend(e, "c1", m1));
  ASSERT_TRUE(finish(e, "c1", m1, GTASK_FIN_DONE, NULL, 0));
  ASSERT_FALSE(finish(e, "c1", r[0], GTASK_FIN_DONE, NULL, 0));
  gtask_msg_free(m1);
  gtask_msg_free(r[0]);
}

/* With the target's allocation seam: makes the k-th allocation of an
 * operation fail for k = 1, 2, ... until it succeeds with no failure
 * injected; whenever it returns GTASK_ENOMEM it must have changed nothing,
 * which the check after each failure verifies. */
static int op_push2(env *e, long k) {
  gtask_msg *b[2];
  for (int i = 0; i < 2; i++) {
    char id[GTASK_ID_SIZE];
    new_id(id);
    b[i] = gtask_msg_new(id, e->q, BODIES[i], strlen(BODIES[i]));
    ASSERT_NOT_NULL(b[i]); /* no failure is injected yet */
  }
  b[1]->due_ms = now_ms() + 60000;
  e->t->fail_alloc_at(k);
  int rc = e->bo->push(e->bi, b, 2, NULL);
  e->t->fail_alloc_at(0);
  free_msgs(b, 2);
  return rc;
}

CONTRACT(BROKER_ALLOC, alloc_failures) {

  /* push: all or nothing. */
  for (long k = 1;; k++) {
    int rc = op_push2(e, k);
    if (rc == 0)
      break;
    ASSERT_ERR(rc, GTASK_ENOMEM);
    ASSERT_STATS(e, e->q, 0, 0, 0, 0);
    ASSERT_LT(k, 100);
  }
  ASSERT_STATS(e, e->q, 1, 0, 1, 0);

  /* lease: the message stays queued. */
  gtask_msg *m[1] = {NULL};
  for (long k = 1;; k++) {
    size_t n = 0;
    const char *queues[] = {e->q};
    e->t->fail_alloc_at(k);
    int rc = e->bo->lease(e->bi, "c1", queues, 1, 1, 0, m, &n);
    e->t->fail_alloc_at(0);
    if (rc == 0 && n == 1)
      break;
    ASSERT_ERR(rc, GTASK_ENOMEM);
    ASSERT_EQ(n, 0);
    ASSERT_STATS(e, e->q, 1, 0, 1, 0);
    ASSERT_LT(k, 100);
  }
  ASSERT_STATS(e, e->q, 0, 1, 1, 0);

  /* finish (RETRY with a new body): the lease stays until it succeeds. */
  for (long k = 1;; k++) {
    gtask_fin f = {.msg = m[0], .kind = GTASK_FIN_RETRY, .status = GTASK_RETRY,
                   .next = "again", .next_len = 5, .next_due_ms = now_ms() - 1};
    e->t->fail_alloc_at(k);
    int rc = e->bo->finish(e->bi, "c1", &f, 1, NULL);
    e->t->fail_alloc_at(0);
    if (rc == 0) {
      ASSERT_FALSE(f.fenced);
      break;
    }
    ASSERT_ERR(rc, GTASK_ENOMEM);
    ASSERT_STATS(e, e->q, 0, 1, 1, 0);
    ASSERT_LT(k, 100);
  }
  ASSERT_STATS(e, e->q, 0, 0, 2, 0);
  gtask_msg_free(m[0]);

  /* reclaim: the delivery stays with its holder. */
  int64_t next;
  ASSERT_OK(e->bo->promote(e->bi, e->q, 10, &next));
  ASSERT_EQ(lease(e, "c1", e->q, 1, 0, m), 1);
  ASSERT_STR_EQ(m[0]->body, "again");
  for (long k = 1;; k++) {
    gtask_msg *r[1];
    size_t n = 0;
    e->t->fail_alloc_at(k);
    int rc = e->bo->reclaim(e->bi, "c2", e->q, 0, 1, r, &n);
    e->t->fail_alloc_at(0);
    if (rc == 0 && n == 1) {
      ASSERT_TRUE(extend(e, "c1", m[0]));
      ASSERT_FALSE(extend(e, "c2", r[0]));
      gtask_msg_free(r[0]);
      break;
    }
    ASSERT_ERR(rc, GTASK_ENOMEM);
    ASSERT_FALSE(extend(e, "c1", m[0]));
    ASSERT_LT(k, 100);
  }
  gtask_msg_free(m[0]);
}

CONTRACT(BACKEND_ALLOC, backend_alloc_failures) {
  /* store: nothing written until it succeeds. */
  gtask_msg *t = task_msg(e);
  ASSERT_OK(e->eo->pending(e->ei, &t, 1));
  for (long k = 1;; k++) {
    gtask_fin f = {.msg = t, .kind = GTASK_FIN_DONE, .status = GTASK_SUCCESS,
                   .result = REC_OK(1, 1), .result_len = sizeof(REC_OK(1, 1)) - 1};
    e->t->fail_alloc_at(k);
    int rc = e->eo->store(e->ei, &f, 1);
    e->t->fail_alloc_at(0);
    gtask_status s;
    ASSERT_OK(e->eo->get(e->ei, t->queue, t->id, &s, NULL, NULL, NULL));
    if (rc == 0) {
      ASSERT_EQ(s, GTASK_SUCCESS);
      break;
    }
    ASSERT_ERR(rc, GTASK_ENOMEM);
    ASSERT_EQ(s, GTASK_PENDING);
    ASSERT_LT(k, 100);
  }
  gtask_msg_free(t);
}

