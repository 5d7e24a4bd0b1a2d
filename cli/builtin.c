/* builtin.c -- the test tasks of `gtask worker --builtin` (issue 4), for trying
 * the system and for the CLI tests and the demo:
 *   add(int64, int64) -> int64
 *   echo(any...)      -> the same values
 *   sleep(int64 ms)   -> ms; wakes early and fails "cancelled" at its deadline
 *                        (or its cancel); reports its progress every 100 ms
 *                        (ms slept of ms, "sleeping")
 *   fail(string)      -> FAILURE with that message
 *   crash()           -> dies of SIGSEGV: in the process pool only its child
 *                        dies (the isolation demo); in the thread pool it takes
 *                        the whole worker down, which is the point of the demo. */
#include "cli.h"

#include <signal.h>

static int add(int64_t a, int64_t b, int64_t *sum) {
  /* Wraps like Go's int64 addition instead of being undefined. */
  *sum = (int64_t)((uint64_t)a + (uint64_t)b);
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int echo(gtask_ctx *ctx, const gtask_value *args, size_t n, void *udata) {
  (void)udata;
  return gtask_ctx_return(ctx, args, n);
}

static bool is_integer(gtask_type t) { return t >= GTASK_INT && t <= GTASK_UINT64; }

static int sleep_task(gtask_ctx *ctx, const gtask_value *args, size_t n, void *udata) {
  (void)udata;
  if (n != 1 || !is_integer(args[0].type))
    return gtask_ctx_fail(ctx, "sleep: takes one integer (milliseconds)");
  int64_t ms = args[0].type >= GTASK_UINT ? (int64_t)(args[0].v.u > INT64_MAX ? INT64_MAX : args[0].v.u)
                                          : args[0].v.i;
  if (ms < 0) return gtask_ctx_fail(ctx, "sleep: negative duration %lld ms", (long long)ms);
  for (int64_t slept = 0; slept < ms;) {
    gtask_ctx_progress(ctx, slept, ms, "sleeping");
    int64_t step = ms - slept < 100 ? ms - slept : 100;
    if (!gtask_ctx_sleep(ctx, step)) return gtask_ctx_fail(ctx, "sleep: cancelled");
    slept += step;
  }
  gtask_value v = gtask_int64(ms);
  return gtask_ctx_return(ctx, &v, 1);
}

static int fail_task(gtask_ctx *ctx, const gtask_value *args, size_t n, void *udata) {
  (void)udata;
  if (n != 1 || args[0].type != GTASK_STRING)
    return gtask_ctx_fail(ctx, "fail: takes one string (the error message)");
  return gtask_ctx_fail(ctx, "%s", args[0].v.s.ptr);
}

static int crash_task(gtask_ctx *ctx, const gtask_value *args, size_t n, void *udata) {
  (void)ctx, (void)args, (void)n, (void)udata;
  /* The default action, even under a sanitizer that catches SIGSEGV: the
   * process dies of the signal, as a real crash does. */
  signal(SIGSEGV, SIG_DFL);
  raise(SIGSEGV);
  return gtask_ctx_fail(ctx, "crash: still alive after SIGSEGV");
}

int builtin_register(gtask_server *s) {
  int rc = GTASK_REG(s, add);
  if (rc == 0) rc = gtask_server_reg(s, "echo", echo, NULL);
  if (rc == 0) rc = gtask_server_reg(s, "sleep", sleep_task, NULL);
  if (rc == 0) rc = gtask_server_reg(s, "fail", fail_task, NULL);
  if (rc == 0) rc = gtask_server_reg(s, "crash", crash_task, NULL);
  return rc;
}
