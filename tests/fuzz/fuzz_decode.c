/* fuzz_decode.c -- libFuzzer target for everything that parses untrusted
 * bytes: the task and result decoders (message.c) and the Redis URL parser
 * (conf.c).  A decoder must never crash, leak or trip a sanitizer, whatever
 * the input; anything it accepts must encode again.
 *
 * Not part of the CMake build.  Build and run by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *     tests/fuzz/fuzz_decode.c src/util.c src/value.c src/message.c \
 *     src/redis/conf.c -ljansson -luuid -lpthread -lm -o fuzz_decode
 *   ./fuzz_decode -max_len=4096 tests/fuzz/corpus
 */
#include "internal.h"
#include "redis/conf.h"

#include <stdlib.h>
#include <string.h>

/* value.c calls gtask_ctx_fail (server.c), which this standalone link lacks.
 * This weak stand-in is used only when server.c is not linked in; it is
 * never reached here, since the decoders do not call gtask__check_args. */
__attribute__((weak)) int gtask_ctx_fail(gtask_ctx *ctx, const char *fmt, ...) {
  (void)ctx;
  (void)fmt;
  return GTASK_EHANDLER;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *)data;
  char err[256];

  gtask_task *t = NULL;
  if (gtask__task_decode(buf, size, &t, err, sizeof(err)) == 0) {
    char *out;
    size_t len;
    if (gtask__task_encode(t, &out, &len) != 0)
      abort(); /* a decoded task must be encodable */
    gtask__free(out);
    gtask__task_free(t);
  }

  char id[GTASK_ID_SIZE];
  gtask__uuid(id);
  gtask_result *r = NULL;
  if (gtask__result_decode(buf, size, id, &r, err, sizeof(err)) == 0) {
    char *out;
    size_t len;
    if (gtask__result_encode(r, &out, &len) != 0)
      abort();
    gtask__free(out);
    gtask_result_free(r);
  }

  char *url = malloc(size + 1);
  if (url == NULL)
    return 0;
  memcpy(url, data, size);
  url[size] = '\0';
  gtask_redis_conf *c = NULL;
  if (gtask_redis_conf_new(&c, url, NULL, -1) == 0) {
    gtask_redis_conf *copy;
    if (gtask__redis_conf_copy(c, &copy) == 0)
      gtask_redis_conf_free(copy);
    gtask_redis_conf_free(c);
  }
  free(url);
  return 0;
}
