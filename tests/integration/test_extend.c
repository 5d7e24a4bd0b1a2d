/* test_extend.c -- the public extension interface, <gtask/extend.h> (issue 21).
 *
 * gtask_broker_new / gtask_backend_new refuse a table they cannot use (a wrong
 * abi, a missing required operation) with GTASK_EINVAL and a detail that names
 * the problem, and leave the impl to the caller; and a broker written here,
 * outside the library, on the public tables runs a real server and client
 * round trip, and has its message lifetime (msg_ttl_ms, abi 2) honoured --
 * unless its table says abi 1, which the library must not read past.  The
 * custom broker is a thin layer over the memory broker: it counts the calls
 * it forwards.  internal.h is included only to reach the
 * memory broker's table and impl from its handle (an out-of-tree broker would
 * have its own). */
#include "test.h"
#include "worker_fixture.h"

#include <gtask/extend.h>

#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- a table checked */

static int impl_destroyed;
static void count_destroy(void *impl) {
  (void)impl;
  impl_destroyed++;
}

/* A broker table with every required operation (borrowed from the memory
 * broker) and the given abi and destroy. */
static gtask_broker_ops full_table(int abi) {
  gtask_broker *m = gtask_broker_memory_new();
  ASSERT_NOT_NULL(m);
  gtask_broker_ops ops = *m->ops;
  gtask_broker_free(m);
  ops.abi = abi;
  ops.name = "custom";
  ops.destroy = count_destroy;
  return ops;
}

TEST(broker_new_refuses_a_bad_abi) {
  int impl = 0;
  impl_destroyed = 0;
  gtask_broker *b = (gtask_broker *)&impl; /* must be reset to NULL */
  static gtask_broker_ops ops;
  ops = full_table(0);
  ASSERT_ERR(gtask_broker_new(&b, &ops, &impl), GTASK_EINVAL);
  ASSERT_NULL(b);
  ASSERT_STR_CONTAINS(gtask_last_error(), "abi 0");
  ops.abi = GTASK_EXTEND_ABI + 1;
  ASSERT_ERR(gtask_broker_new(&b, &ops, &impl), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "GTASK_EXTEND_ABI");
  ASSERT_EQ(impl_destroyed, 0); /* the impl is still the caller's */

  ops.abi = GTASK_EXTEND_ABI;
  ASSERT_OK(gtask_broker_new(&b, &ops, &impl));
  ASSERT_NOT_NULL(b);
  gtask_broker_free(b);
  ASSERT_EQ(impl_destroyed, 1);
}

TEST(broker_new_refuses_a_missing_required_op) {
  int impl = 0;
  impl_destroyed = 0;
  gtask_broker *b = NULL;
  static gtask_broker_ops ops;
  ops = full_table(GTASK_EXTEND_ABI);
  ops.finish = NULL;
  ASSERT_ERR(gtask_broker_new(&b, &ops, &impl), GTASK_EINVAL);
  ASSERT_NULL(b);
  ASSERT_STR_CONTAINS(gtask_last_error(), "lacks the required operation finish");
  ops = full_table(GTASK_EXTEND_ABI);
  ops.name = NULL;
  ASSERT_ERR(gtask_broker_new(&b, &ops, &impl), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "no name");
  /* The optional ones may be missing. */
  ops = full_table(GTASK_EXTEND_ABI);
  ops.announce = NULL;
  ops.colocated = NULL;
  ASSERT_OK(gtask_broker_new(&b, &ops, &impl));
  gtask_broker_free(b);
  ASSERT_EQ(impl_destroyed, 1);
  ASSERT_ERR(gtask_broker_new(NULL, &ops, &impl), GTASK_EINVAL);
  ASSERT_ERR(gtask_broker_new(&b, NULL, &impl), GTASK_EINVAL);
}

/* A table of abi 1 ends before the queues operation (added in abi 2): the
 * library never reads it there, even if the memory at its place is set. */
TEST(queues_of_an_abi_1_table_is_never_read) {
  static gtask_broker_ops ops;
  gtask_broker *m = gtask_broker_memory_new();
  ASSERT_NOT_NULL(m);
  ops = *m->ops;
  ops.abi = 1;
  ops.name = "old";
  ops.destroy = count_destroy;
  ASSERT_NOT_NULL(ops.queues);
  gtask_broker *b = NULL;
  ASSERT_OK(gtask_broker_new(&b, &ops, m->impl));
  gtask_backend *k = gtask_backend_memory_new();
  gtask_client *c = gtask_client_new(b, k);
  ASSERT_NOT_NULL(c);
  char **names = (char **)&ops;
  size_t n = 7;
  ASSERT_ERR(gtask_client_queues(c, &names, &n), GTASK_EINVAL);
  ASSERT_NULL(names);
  ASSERT_EQ(n, 0);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(c), "cannot list its queues");
  /* The memory broker's own table (abi 2) lists. */
  gtask_client *c2 = gtask_client_new(m, k);
  ASSERT_OK(gtask_client_queues(c2, &names, &n));
  ASSERT_EQ(n, 0);
  gtask_queues_free(names, n);
  gtask_client_free(c2);
  gtask_client_free(c);
  gtask_broker_free(b);
  gtask_backend_free(k);
  gtask_broker_free(m);
}

/* Tables of abi 4 end before cancel (broker) and finals, progress and
 * progress_get (backend), added in abi 5: never read there; a cancel through
 * them is refused and changes nothing, and no progress is kept. */
TEST(cancel_of_an_abi_4_table_is_never_read) {
  static gtask_broker_ops ops;
  static gtask_backend_ops kops;
  gtask_broker *m = gtask_broker_memory_new();
  gtask_backend *mk = gtask_backend_memory_new();
  ASSERT_NOT_NULL(m);
  ASSERT_NOT_NULL(mk);
  ops = *m->ops;
  ops.abi = 4;
  ops.name = "old";
  ops.destroy = count_destroy;
  ASSERT_NOT_NULL(ops.cancel);
  kops = *mk->ops;
  kops.abi = 4;
  kops.destroy = count_destroy;
  ASSERT_NOT_NULL(kops.finals);
  ASSERT_NOT_NULL(kops.progress);
  gtask_broker *b = NULL;
  gtask_backend *k = NULL;
  ASSERT_OK(gtask_broker_new(&b, &ops, m->impl));
  ASSERT_OK(gtask_backend_new(&k, &kops, mk->impl));
  ASSERT_NULL(b->ops->cancel);
  ASSERT_NULL(k->ops->finals);
  ASSERT_NULL(k->ops->progress);
  ASSERT_NULL(k->ops->progress_get);
  gtask_client *c = gtask_client_new(b, k);
  ASSERT_NOT_NULL(c);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(c, sc, id, gtask_int64(1)));
  ASSERT_ERR(gtask_client_cancel(c, id, NULL), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_client_errmsg(c), "not supported");
  gtask_status st;
  ASSERT_OK(gtask_client_status(c, id, &st));
  ASSERT_EQ(st, GTASK_PENDING);
  gtask_progress p;
  ASSERT_ERR(gtask_client_progress(c, id, &p), GTASK_EINVAL);
  gtask_send_conf_free(sc);
  gtask_client_free(c);
  gtask_broker_free(b);
  gtask_backend_free(k);
  gtask_broker_free(m);
  gtask_backend_free(mk);
}

TEST(backend_new_refuses_a_bad_table) {
  gtask_backend *m = gtask_backend_memory_new();
  ASSERT_NOT_NULL(m);
  static gtask_backend_ops ops;
  ops = *m->ops;
  ops.destroy = count_destroy;
  impl_destroyed = 0;
  gtask_backend *k = NULL;
  ops.abi = 7;
  ASSERT_ERR(gtask_backend_new(&k, &ops, NULL), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "abi 7");
  ops.abi = GTASK_EXTEND_ABI;
  ops.wait = NULL;
  ASSERT_ERR(gtask_backend_new(&k, &ops, NULL), GTASK_EINVAL);
  ASSERT_NULL(k);
  ASSERT_STR_CONTAINS(gtask_last_error(), "lacks the required operation wait");
  ASSERT_EQ(impl_destroyed, 0);
  /* gtask_backend_impl recognises a handle by its table. */
  ASSERT_PTR_EQ(gtask_backend_impl(m, m->ops), m->impl);
  ASSERT_NULL(gtask_backend_impl(m, &ops));
  ASSERT_NULL(gtask_backend_impl(NULL, m->ops));
  gtask_backend_free(m);
}

TEST(msg_new_set_lease_free) {
  gtask_msg *m = gtask_msg_new("00000000-0000-4000-8000-000000000001", "q", "ab\0c", 4);
  ASSERT_NOT_NULL(m);
  ASSERT_STR_EQ(m->queue, "q");
  ASSERT_EQ(m->len, 4);
  ASSERT_MEM_EQ(m->body, "ab\0c", 5);
  ASSERT_EQ(m->epoch, -1);
  ASSERT_NULL(m->lease);
  ASSERT_OK(gtask_msg_set_lease(m, "tok-1"));
  ASSERT_STR_EQ(m->lease, "tok-1");
  ASSERT_OK(gtask_msg_set_lease(m, NULL));
  ASSERT_NULL(m->lease);
  gtask_msg_free(m);
  gtask_msg_free(NULL);
}

/* ---------------------------------------------------------------- a custom broker */

/* The custom broker's impl: the broker it forwards to, and call counts. */
typedef struct counting {
  gtask_broker *inner; /* owned: freed by destroy */
  atomic_int pushed, leased, finished;
  int64_t ttl_ms; /* what msg_ttl_ms answers, in the tables that have it */
} counting;

#define INNER(impl) (((counting *)(impl))->inner)

static int c_push(void *impl, gtask_msg *const *msgs, size_t n, void *state) {
  atomic_fetch_add(&((counting *)impl)->pushed, (int)n);
  return INNER(impl)->ops->push(INNER(impl)->impl, msgs, n, state);
}
static int c_lease(void *impl, const char *consumer, const char *const *queues, size_t nq,
                   size_t max, int64_t wait_ms, gtask_msg **out, size_t *n) {
  int rc = INNER(impl)->ops->lease(INNER(impl)->impl, consumer, queues, nq, max, wait_ms, out, n);
  if (rc == 0) atomic_fetch_add(&((counting *)impl)->leased, (int)*n);
  return rc;
}
static int c_interrupt(void *impl, const char *consumer) {
  return INNER(impl)->ops->interrupt(INNER(impl)->impl, consumer);
}
static int c_extend(void *impl, const char *consumer, gtask_msg *const *msgs, size_t n,
                    bool *lost) {
  return INNER(impl)->ops->extend(INNER(impl)->impl, consumer, msgs, n, lost);
}
static int c_finish(void *impl, const char *consumer, gtask_fin *fins, size_t n, void *state) {
  atomic_fetch_add(&((counting *)impl)->finished, (int)n);
  return INNER(impl)->ops->finish(INNER(impl)->impl, consumer, fins, n, state);
}
static int c_reclaim(void *impl, const char *consumer, const char *queue, int64_t lease_ms,
                     size_t max, gtask_msg **out, size_t *n) {
  return INNER(impl)->ops->reclaim(INNER(impl)->impl, consumer, queue, lease_ms, max, out, n);
}
static int c_promote(void *impl, const char *queue, size_t max, int64_t *next_due_ms) {
  return INNER(impl)->ops->promote(INNER(impl)->impl, queue, max, next_due_ms);
}
static int c_stats(void *impl, const char *queue, gtask_queue_stats *out) {
  return INNER(impl)->ops->stats(INNER(impl)->impl, queue, out);
}
static int c_dead_list(void *impl, const char *queue, const char *id, gtask_msg ***out,
                       size_t *n) {
  return INNER(impl)->ops->dead_list(INNER(impl)->impl, queue, id, out, n);
}
static int c_dead_requeue(void *impl, gtask_revive *rs, size_t n, void *state) {
  return INNER(impl)->ops->dead_requeue(INNER(impl)->impl, rs, n, state);
}
static int c_dead_purge(void *impl, const char *queue, size_t *removed) {
  return INNER(impl)->ops->dead_purge(INNER(impl)->impl, queue, removed);
}
static int64_t c_msg_ttl_ms(void *impl) { return ((counting *)impl)->ttl_ms; }
static void c_destroy(void *impl) {
  gtask_broker_free(INNER(impl));
  free(impl);
}

/* No announce (optional), no colocated: the core then writes states through
 * the backend itself, in a separate step. */
static const gtask_broker_ops counting_ops = {
    .abi = GTASK_EXTEND_ABI,
    .name = "counting",
    .push = c_push,
    .lease = c_lease,
    .interrupt = c_interrupt,
    .extend = c_extend,
    .finish = c_finish,
    .reclaim = c_reclaim,
    .promote = c_promote,
    .stats = c_stats,
    .dead_list = c_dead_list,
    .dead_requeue = c_dead_requeue,
    .dead_purge = c_dead_purge,
    .destroy = c_destroy,
};

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

TEST(custom_broker_runs_a_server_and_client_round_trip) {
  counting *impl = calloc(1, sizeof(*impl));
  ASSERT_NOT_NULL(impl);
  impl->inner = gtask_broker_memory_new();
  ASSERT_NOT_NULL(impl->inner);
  gtask_broker *b = NULL;
  ASSERT_OK(gtask_broker_new(&b, &counting_ops, impl));
  gtask_backend *k = gtask_backend_memory_new();
  ASSERT_NOT_NULL(k);

  gtask_server *s = gtask_server_new(b, k);
  ASSERT_NOT_NULL(s);
  gtask_broker_free(b); /* the server holds its own references */
  gtask_backend_free(k);
  ASSERT_OK(GTASK_REG(s, add));
  gtask_client *c = gtask_client_from_server(s);
  ASSERT_NOT_NULL(c);
  gt_worker w;
  gt_worker_start(&w, s, 2);

  gtask_send_conf *conf = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(conf);
  enum { N = 3 };
  for (int i = 0; i < N; i++) {
    char id[GTASK_ID_SIZE];
    ASSERT_OK(GTASK_SEND(c, conf, id, gtask_int64(40), gtask_int64(i)));
    gtask_result *r = NULL;
    ASSERT_OK(gtask_client_wait(c, id, test_timeout_ms(10000), &r));
    ASSERT_EQ(r->status, GTASK_SUCCESS);
    ASSERT_EQ(r->nvalues, 1);
    ASSERT_EQ(r->values[0].v.i, 40 + i);
    gtask_result_free(r);
  }
  gtask_send_conf_free(conf);
  /* Broker and backend are not colocated here: the result is stored first,
   * then the broker's finish counts it, so a waiter can see the result a
   * moment before the counter moves. */
  gtask_queue_stats st;
  WAIT_UNTIL((gtask_client_stats(c, "default", &st) == 0 && st.succeeded == N), 5000);

  (void)gt_worker_stop(&w);
  ASSERT_EQ(atomic_load(&impl->pushed), N);
  ASSERT_EQ(atomic_load(&impl->leased), N);
  ASSERT_EQ(atomic_load(&impl->finished), N);
  gtask_client_free(c);
  gtask_server_free(s); /* drops the last reference: c_destroy frees impl */
}

/* ---------------------------------------------------------------- message lifetime */

/* Sends add(1, 2) through a server on a counting broker whose msg_ttl_ms
 * answers ttl_ms in a table of the given abi; lets the message sit for
 * sit_ms; then runs the server and returns the task's result. */
static gtask_result *send_sit_run(int abi, int64_t ttl_ms, int64_t sit_ms) {
  static gtask_broker_ops ops;
  ops = counting_ops;
  ops.abi = abi;
  ops.msg_ttl_ms = c_msg_ttl_ms;
  counting *impl = calloc(1, sizeof(*impl));
  ASSERT_NOT_NULL(impl);
  impl->inner = gtask_broker_memory_new();
  ASSERT_NOT_NULL(impl->inner);
  impl->ttl_ms = ttl_ms;
  gtask_broker *b = NULL;
  ASSERT_OK(gtask_broker_new(&b, &ops, impl));
  gtask_backend *k = gtask_backend_memory_new();
  ASSERT_NOT_NULL(k);
  gtask_server *s = gtask_server_new(b, k);
  ASSERT_NOT_NULL(s);
  gtask_broker_free(b);
  gtask_backend_free(k);
  ASSERT_OK(GTASK_REG(s, add));
  gtask_client *c = gtask_client_from_server(s);
  ASSERT_NOT_NULL(c);
  gtask_send_conf *conf = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(conf);
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(c, conf, id, gtask_int64(1), gtask_int64(2)));
  gtask_send_conf_free(conf);
  test_sleep_ms(sit_ms);
  gt_worker w;
  gt_worker_start(&w, s, 2);
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(c, id, test_timeout_ms(10000), &r));
  (void)gt_worker_stop(&w);
  gtask_client_free(c);
  gtask_server_free(s);
  return r;
}

/* A custom broker's msg_ttl_ms (abi 2) is honoured as the Redis broker's
 * expire time is: a message that sat past it is failed, not run; one taken
 * in time runs. */
TEST(custom_broker_msg_ttl_expires_messages) {
  gtask_result *r = send_sit_run(2, 200, 400);
  ASSERT_EQ(r->status, GTASK_FAILURE);
  ASSERT_STR_CONTAINS(r->error, "expired");
  gtask_result_free(r);
  r = send_sit_run(2, test_timeout_ms(5000), 0);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  ASSERT_EQ(r->values[0].v.i, 3);
  gtask_result_free(r);
}

/* A table of abi 1 ends before msg_ttl_ms: the library does not read it (the
 * field here holds a function that a newer library would call), and messages
 * live for ever. */
TEST(abi1_broker_has_no_msg_ttl) {
  gtask_result *r = send_sit_run(1, 200, 400);
  ASSERT_EQ(r->status, GTASK_SUCCESS);
  gtask_result_free(r);
}

/* A negative lifetime is refused, and the impl stays the caller's. */
TEST(broker_new_refuses_a_negative_msg_ttl) {
  static gtask_broker_ops ops;
  ops = counting_ops;
  ops.msg_ttl_ms = c_msg_ttl_ms;
  counting impl = {.ttl_ms = -5};
  gtask_broker *b = NULL;
  ASSERT_ERR(gtask_broker_new(&b, &ops, &impl), GTASK_EINVAL);
  ASSERT_NULL(b);
  ASSERT_STR_CONTAINS(gtask_last_error(), "msg_ttl_ms returned -5");
}

/* Handles are reference-counted: the implementation lives until the last
 * reference goes (checked for leaks by the sanitizer builds). */
TEST(memory_handle_refs) {
  gtask_broker *b = gtask_broker_memory_new();
  gtask_backend *be = gtask_backend_memory_new();
  ASSERT_NOT_NULL(b);
  ASSERT_NOT_NULL(be);
  ASSERT_STR_EQ(b->ops->name, "memory");
  ASSERT_STR_EQ(be->ops->name, "memory");
  ASSERT_EQ(b->msg_ttl_ms, 0);
  /* The table and impl behind a handle, for callers of the operations. */
  void *impl = NULL;
  ASSERT_PTR_EQ(gtask_broker_ops_get(b, &impl), b->ops);
  ASSERT_PTR_EQ(impl, b->impl);
  ASSERT_PTR_EQ(gtask_backend_ops_get(be, &impl), be->ops);
  ASSERT_PTR_EQ(impl, be->impl);
  ASSERT_PTR_EQ(gtask_backend_ops_get(be, NULL), be->ops);
  ASSERT_NULL(gtask_broker_ops_get(NULL, &impl));
  ASSERT_NULL(impl);
  ASSERT_PTR_EQ(gtask__broker_ref(b), b);
  ASSERT_PTR_EQ(gtask__backend_ref(be), be);
  gtask_broker_free(b);
  gtask_backend_free(be);
  gtask_queue_stats st;
  ASSERT_OK(b->ops->stats(b->impl, "q", &st)); /* still alive */
  gtask_broker_free(b);
  gtask_backend_free(be);
  gtask_broker_free(NULL);
  gtask_backend_free(NULL);
}
