/* gtask/contract.h -- the broker and backend contract suite, for any
 * implementation of <gtask/extend.h> (issue 21).
 *
 * The suite is the set of cases that the built-in Redis and memory
 * implementations pass (tests/contract/contract.c states each rule of
 * extend.h as a test).  It lives in a static library, libgtask_contract.a
 * (pkg-config gtask-contract), so that a broker or backend written outside
 * gtask runs exactly the same cases.  A test program describes how to make
 * its implementation and hands over to the suite:
 *
 *   #include <gtask/contract.h>
 *
 *   static int make(void *arg, int64_t result_ttl_ms, gtask_broker **broker,
 *                   gtask_backend **backend, void **state) {
 *     *broker = gtask_broker_memory_new();           // the side not under test
 *     return my_backend_new(backend, result_ttl_ms); // a fresh, empty store
 *   }
 *
 *   int main(int argc, char **argv) {
 *     static const gtask_contract_target t = {
 *         .name = "mine", .make = make,
 *         .caps = GTASK_CONTRACT_BACKEND | GTASK_CONTRACT_RESULT_TTL};
 *     return gtask_contract_run(&t, argc, argv);
 *   }
 *
 * and runs as `./my_contract [--list] [substring...]`: each case is named
 * "<target>_<case>" (mine_backend_flow, ...), and the substrings select the
 * cases to run (all by default).  Each case runs in its own forked process,
 * in its own temporary directory (its working directory), with a timeout, and
 * the process group is killed after it; output is one line per case and a
 * summary; the exit status is 0 iff no case failed.  Environment:
 *   GTASK_TEST_TIMEOUT_MULTIPLIER  scales timeouts and "promptly" (a float;
 *                                  raise it under sanitizers or valgrind);
 *   GTASK_TEST_VERBOSE=1           shows each case's output as it runs;
 *   GTASK_TEST_NOFORK=1            runs the cases in-process (for gdb).
 *
 * Link: the suite calls the public API only (gtask.h, extend.h), so link it
 * with libgtask, shared or static: `pkg-config --libs gtask-contract gtask`.
 * The library also holds gtask's test runner, whose functions are named
 * test_* and test__*: keep those names out of the program that links it.
 *
 * What the suite checks: every operation of both tables as extend.h states
 * it -- FIFO order and opaque bytes, blocking leases woken by a push or an
 * interrupt, lease renewal, takeover and fencing, every kind of finish,
 * batches applied per fin, schedules, stats and finished counters, the dead
 * set's compare-and-swap, listing and finding tasks and worker records (abi
 * 4, where the broker has them), cancel and its counter, backend states and
 * blocking waits, reset, record expiry (and a chosen id free again after
 * it); and the pair under a real server and client (gtask_server_run,
 * gtask_client_wait, retries, counters) and the client's dead-set calls.
 * "Promptly" means within 200 ms (times the multiplier) of the event.  The
 * suite uses queue names of the form "q-XXXXXXXX[-suffix]", new for every
 * case. */
#ifndef GTASK_CONTRACT_H
#define GTASK_CONTRACT_H

#include "extend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of gtask_contract_target.  Put it in the abi field. */
#define GTASK_CONTRACT_ABI 1

/* Capabilities and parts under test: what a target asks the suite to check. */
enum {
  /* The broker is under test: the broker cases run. */
  GTASK_CONTRACT_BROKER = 1u << 0,
  /* The backend is under test: the backend cases run. */
  GTASK_CONTRACT_BACKEND = 1u << 1,
  /* The broker is colocated with the backend ("one store, finished
   * atomically": broker colocated() returns a state for it): the colocated
   * cases run.  Without it the suite checks that colocated() returns NULL. */
  GTASK_CONTRACT_COLOCATED = 1u << 2,
  /* The backend expires records: make() honours result_ttl_ms, and a case
   * checks that a final record is gone (GTASK_ENOTFOUND) once it expired. */
  GTASK_CONTRACT_RESULT_TTL = 1u << 3,
  /* Beyond the contract: every reclaim issues a new lease token, even to the
   * same consumer, so a stale holder of the same name is fenced too (the
   * memory broker; Redis fences by consumer name). */
  GTASK_CONTRACT_RECLAIM_NEW_TOKEN = 1u << 4
};

/* How to make the implementation under test.  Cases that use both a broker
 * and a backend (the client's dead-set calls, colocation) always run: make
 * the side that is not under test with gtask_broker_memory_new() or
 * gtask_backend_memory_new(). */
typedef struct gtask_contract_target {
  int abi;          /* GTASK_CONTRACT_ABI (0 is read as 1) */
  const char *name; /* prefix of the case names: letters, digits, '_'; required */
  unsigned caps;    /* GTASK_CONTRACT_* flags */
  void *arg;        /* passed to the functions below */

  /* Required.  Makes a new broker and backend for one case, both empty of
   * the suite's queues (a fresh store, or the same store: the suite's queue
   * names are new every time).  Called once per case, in the case's own
   * process.  result_ttl_ms: 0 for the implementation's default record
   * lifetime (which must outlast a case: a minute or more), or, only for a
   * target with GTASK_CONTRACT_RESULT_TTL, the lifetime of backend records
   * to use (1000 ms).  *state (initially NULL) may receive anything that
   * done() needs.  Returns 0, or a GTASK_E* code (the case fails with it and
   * gtask_last_error()). */
  int (*make)(void *arg, int64_t result_ttl_ms, gtask_broker **broker, gtask_backend **backend,
              void **state);

  /* Optional.  Called after the case freed the broker and backend, with the
   * state make() set: stop what make started. */
  void (*done)(void *arg, void *state);

  /* Optional.  How many calls are blocked in the store right now (Redis:
   * blocked_clients), or -1 if unknown.  With it, the cases that wake a
   * blocked lease or wait start their delay once the call is seen blocked;
   * without, after the delay alone. */
  int (*blocked)(void *arg, void *state);

  /* Optional.  An allocation seam: makes the k-th allocation from now on fail
   * (k == 0: none).  With it, a case checks that push, lease, finish, reclaim
   * and store change nothing when they fail with GTASK_ENOMEM. */
  void (*fail_alloc_at)(long k);
} gtask_contract_target;

/* Registers every case that applies to t under the name "<t->name>_<case>".
 * t must stay valid until gtask_contract_main returns.  Returns 0, or
 * GTASK_EINVAL (t, its name or make missing, an unknown abi; the reason is
 * printed on stderr) or GTASK_ENOMEM.  Not thread-safe: call it from main()
 * (or a constructor) before gtask_contract_main. */
int gtask_contract_register(const gtask_contract_target *t);

/* Runs the registered cases that argv selects ([--list] [substring...], as
 * described above), printing one line per case on stdout.  Returns the exit
 * status: 0 when none failed, 1 when one failed, 2 on a usage error. */
int gtask_contract_main(int argc, char **argv);

/* gtask_contract_register(t), then gtask_contract_main(argc, argv). */
int gtask_contract_run(const gtask_contract_target *t, int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* GTASK_CONTRACT_H */
