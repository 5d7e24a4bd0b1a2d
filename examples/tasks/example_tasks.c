/* example_tasks.c -- handlers that `gtask worker` loads at run time:
 *
 *     gtask worker --tasks build/examples/tasks/example_tasks.so
 *     gtask send mul 6 7 --wait                 # 42
 *     gtask send concat foo bar --wait          # foobar
 *
 * A tasks file is a shared object (built here as a CMake MODULE library) that
 * exports one function, gtask_tasks_register, which the worker calls once with
 * its server before it starts: register the handlers there and return 0 (any
 * other value stops the worker with an error).  Compile your own with
 *
 *     cc -shared -fPIC my_tasks.c -o my_tasks.so $(pkg-config --cflags gtask)
 *
 * (no need to link libgtask: the worker that loads it provides it). */
#include <gtask/gtask.h>

#include <stdlib.h>
#include <string.h>

static int mul(int64_t a, int64_t b, int64_t *product) {
  *product = (int64_t)((uint64_t)a * (uint64_t)b);
  return 0;
}
GTASK_HANDLER(mul, (int64_t, int64_t), (int64_t))

/* Joins any number of strings. */
static int concat(gtask_ctx *ctx, const gtask_value *args, size_t n, void *udata) {
  (void)udata;
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    if (args[i].type != GTASK_STRING)
      return gtask_ctx_fail(ctx, "concat: argument %zu is %s, not a string", i + 1,
                            gtask_type_name(args[i].type));
    len += args[i].v.s.len;
  }
  char *out = malloc(len + 1);
  if (!out) return gtask_ctx_fail(ctx, "concat: out of memory");
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(out + at, args[i].v.s.ptr, args[i].v.s.len);
    at += args[i].v.s.len;
  }
  out[len] = '\0';
  gtask_value v = gtask_strn(out, len);
  int rc = gtask_ctx_return(ctx, &v, 1); /* copies the string */
  free(out);
  return rc;
}

/* The one symbol the worker looks for.  Exported explicitly: the build hides
 * everything else. */
__attribute__((visibility("default"))) int gtask_tasks_register(gtask_server *svr);

int gtask_tasks_register(gtask_server *svr) {
  int rc = GTASK_REG(svr, mul);
  if (rc == 0) rc = gtask_server_reg(svr, "concat", concat, NULL);
  return rc;
}
