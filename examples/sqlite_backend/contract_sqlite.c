/* contract_sqlite.c -- runs gtask's broker/backend contract suite
 * (<gtask/contract.h>) on the SQLite backend: how an implementation written
 * outside gtask proves it keeps the contract.
 *
 *   ./contract_sqlite [--list] [substring...]
 *
 * Two targets, each case on a fresh database file in the case's own temporary
 * directory (the working directory the suite gives it), paired with the
 * memory broker (only the backend is under test):
 *   sqlite_*      one backend handle: waits are woken by the condition
 *                 variable of the process;
 *   sqlite_2conn_*  writes go through one connection and reads and waits
 *                 through another on the same file, as when a worker process
 *                 stores results that a client process waits for: waits see
 *                 them only by polling, so the cases that measure how
 *                 promptly a wait wakes check the polling's backoff bound. */
#include "sqlite_backend.h"

#include <gtask/contract.h>

#include <stdlib.h>

static int make_sqlite(void *arg, int64_t result_ttl_ms, gtask_broker **broker,
                       gtask_backend **backend, void **state) {
  (void)arg;
  (void)state;
  *broker = gtask_broker_memory_new();
  if (*broker == NULL)
    return GTASK_ENOMEM;
  return sqlite_backend_new(backend, "results.db", result_ttl_ms);
}

/* ---------------------------------------------------------------- two connections */

/* A backend that writes through w and reads through r, two SQLite backends
 * on the same file: a wrapper built with gtask_backend_ops_get(). */
typedef struct two_conn {
  gtask_backend *w, *r; /* owned */
} two_conn;

#define W_OPS(impl, wi) gtask_backend_ops_get(((two_conn *)(impl))->w, &(wi))
#define R_OPS(impl, ri) gtask_backend_ops_get(((two_conn *)(impl))->r, &(ri))

static int tc_pending(void *impl, gtask_msg *const *msgs, size_t n) {
  void *wi;
  return W_OPS(impl, wi)->pending(wi, msgs, n);
}
static int tc_started(void *impl, gtask_msg *const *msgs, const uint32_t *attempts, size_t n) {
  void *wi;
  return W_OPS(impl, wi)->started(wi, msgs, attempts, n);
}
static int tc_store(void *impl, gtask_fin *fins, size_t n) {
  void *wi;
  return W_OPS(impl, wi)->store(wi, fins, n);
}
static int tc_reset(void *impl, gtask_msg *const *msgs, size_t n) {
  void *wi;
  return W_OPS(impl, wi)->reset(wi, msgs, n);
}
static int tc_get(void *impl, const char *queue, const char *id, gtask_status *status,
                  uint32_t *attempts, char **result, size_t *len) {
  void *ri;
  return R_OPS(impl, ri)->get(ri, queue, id, status, attempts, result, len);
}
static int tc_wait(void *impl, const char *queue, const char *id, int64_t timeout_ms, bool known,
                   char **result, size_t *len) {
  void *ri;
  return R_OPS(impl, ri)->wait(ri, queue, id, timeout_ms, known, result, len);
}
static int tc_claim(void *impl, gtask_claim *cs, size_t n) {
  void *wi;
  return W_OPS(impl, wi)->claim(wi, cs, n);
}
static void tc_destroy(void *impl) {
  two_conn *tc = impl;
  gtask_backend_free(tc->w);
  gtask_backend_free(tc->r);
  free(tc);
}

static const gtask_backend_ops two_conn_ops = {
    .abi = GTASK_EXTEND_ABI,
    .name = "sqlite-2conn",
    .pending = tc_pending,
    .started = tc_started,
    .store = tc_store,
    .get = tc_get,
    .wait = tc_wait,
    .reset = tc_reset,
    .destroy = tc_destroy,
    .claim = tc_claim,
};

static int make_two_conn(void *arg, int64_t result_ttl_ms, gtask_broker **broker,
                         gtask_backend **backend, void **state) {
  (void)arg;
  (void)state;
  two_conn *tc = calloc(1, sizeof(*tc));
  if (tc == NULL)
    return GTASK_ENOMEM;
  int rc = sqlite_backend_new(&tc->w, "results.db", result_ttl_ms);
  if (rc == 0)
    rc = sqlite_backend_new(&tc->r, "results.db", result_ttl_ms);
  if (rc == 0)
    rc = gtask_backend_new(backend, &two_conn_ops, tc);
  if (rc != 0) {
    tc_destroy(tc);
    return rc;
  }
  *broker = gtask_broker_memory_new();
  return *broker != NULL ? 0 : GTASK_ENOMEM;
}

int main(int argc, char **argv) {
  static const gtask_contract_target targets[] = {
      {.abi = GTASK_CONTRACT_ABI, .name = "sqlite", .make = make_sqlite,
       .caps = GTASK_CONTRACT_BACKEND | GTASK_CONTRACT_RESULT_TTL},
      {.abi = GTASK_CONTRACT_ABI, .name = "sqlite_2conn", .make = make_two_conn,
       .caps = GTASK_CONTRACT_BACKEND},
  };
  for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
    if (gtask_contract_register(&targets[i]) != 0)
      return 2;
  return gtask_contract_main(argc, argv);
}
