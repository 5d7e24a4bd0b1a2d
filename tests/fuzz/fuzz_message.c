/* fuzz_message.c -- libFuzzer target for the codec (src/codec.h): the task
 * message and result record decoders, which read bytes that anyone with access
 * to Redis can write.
 *
 * Every input goes to both decoders.  Properties checked, beyond "no crash, no
 * leak, no sanitizer report" (ASan + UBSan, built with -DGTASK_FUZZ=ON):
 *  - anything a decoder accepts, the matching encoder encodes (a worker must
 *    always be able to requeue or store what it read);
 *  - the encoding is a fixed point: decode(encode(x)) succeeds and encodes to
 *    the same bytes, so a message requeued any number of times (retries, lost
 *    deliveries) never drifts;
 *  - the task decoder's fast path agrees with the jansson decoder: whatever
 *    it accepts, jansson accepts as the same task (it may decline anything).
 * A failed property abort()s, which libFuzzer reports as a crash with the input.
 *
 * Build and run (scripts/test does this in its "fuzz" stage):
 *   CC=clang cmake -S . -B build-fuzz -DGTASK_FUZZ=ON -DGTASK_TESTS=OFF
 *   cmake --build build-fuzz --target fuzz_message
 *   build-fuzz/tests/fuzz/fuzz_message -max_len=4096 tests/fuzz/corpus/message
 * (libFuzzer writes new inputs into the first corpus directory: give it a copy
 * unless you mean to grow the seed corpus.) */
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *a, size_t alen, const char *b, size_t blen) {
  fprintf(stderr, "fuzz_message: %s\n  first:  %.*s\n  second: %.*s\n", what, (int)alen, a,
          (int)blen, b);
  abort();
}

/* What holds the message (a stream entry, the dead set) gives id and queue;
 * a version 1 message carries them too, and they must agree. */
static void task_round_trip(const char *buf, size_t size) {
  static const char id[] = "0f8fad5b-d9cb-469f-a165-70867728950e";
  char err[256];
  gtask_task *t = NULL;
  if (gtask__task_decode_in(buf, size, id, "default", &t, err, sizeof(err)) != 0) return;
  if (strcmp(t->id, id) != 0 || strcmp(t->queue, "default") != 0)
    die("a decoded task lost its holder's id or queue", t->id, strlen(t->id), t->queue,
        strlen(t->queue));
  char *once = NULL;
  size_t once_len = 0;
  int rc = gtask__task_encode(t, &once, &once_len);
  gtask__task_free(t);
  if (rc == GTASK_ENOMEM) return;
  if (rc != 0) die("a decoded task does not encode", buf, size, "", 0);

  gtask_task *t2 = NULL;
  if (gtask__task_decode_in(once, once_len, id, "default", &t2, err, sizeof(err)) != 0)
    die("an encoded task does not decode", buf, size, once, once_len);
  char *twice = NULL;
  size_t twice_len = 0;
  rc = gtask__task_encode(t2, &twice, &twice_len);
  gtask__task_free(t2);
  if (rc != 0) die("a re-decoded task does not encode", once, once_len, "", 0);
  if (once_len != twice_len || memcmp(once, twice, once_len) != 0)
    die("task encoding is not a fixed point", once, once_len, twice, twice_len);
  gtask__free(once);
  gtask__free(twice);
}

static void result_round_trip(const char *buf, size_t size) {
  static const char id[] = "0f8fad5b-d9cb-469f-a165-70867728950e";
  char err[256];
  gtask_result *r = NULL;
  if (gtask__result_decode(buf, size, id, &r, err, sizeof(err)) != 0) return;
  if (strcmp(r->id, id) != 0) die("a decoded result lost its id", r->id, strlen(r->id), id, 36);
  char *once = NULL;
  size_t once_len = 0;
  int rc = gtask__result_encode(r, &once, &once_len);
  gtask_result_free(r);
  if (rc == GTASK_ENOMEM) return;
  if (rc != 0) die("a decoded result does not encode", buf, size, "", 0);

  gtask_result *r2 = NULL;
  if (gtask__result_decode(once, once_len, id, &r2, err, sizeof(err)) != 0)
    die("an encoded result does not decode", buf, size, once, once_len);
  char *twice = NULL;
  size_t twice_len = 0;
  rc = gtask__result_encode(r2, &twice, &twice_len);
  gtask_result_free(r2);
  if (rc != 0) die("a re-decoded result does not encode", once, once_len, "", 0);
  if (once_len != twice_len || memcmp(once, twice, once_len) != 0)
    die("result encoding is not a fixed point", once, once_len, twice, twice_len);
  gtask__free(once);
  gtask__free(twice);
}

/* Whatever the fast path reads, the reference reads the same (compared
 * through their encodings, which hold every field but id and queue). */
static void fast_path_agrees(const char *buf, size_t size) {
  static const char id[] = "0f8fad5b-d9cb-469f-a165-70867728950e";
  gtask_task *f = NULL, *r = NULL;
  char err[256];
  if (gtask__task_decode_fast(buf, size, id, "default", &f) != 0) return;
  if (gtask__task_decode_ref(buf, size, id, "default", &r, err, sizeof(err)) != 0)
    die("the fast path accepts a message jansson refuses", buf, size, err, strlen(err));
  char *a = NULL, *b = NULL;
  size_t al = 0, bl = 0;
  int ra = gtask__task_encode(f, &a, &al), rb = gtask__task_encode(r, &b, &bl);
  bool same = strcmp(f->id, r->id) == 0 && strcmp(f->queue, r->queue) == 0;
  gtask__task_free(f);
  gtask__task_free(r);
  if (ra == 0 && rb == 0 && (!same || al != bl || memcmp(a, b, al) != 0))
    die("the fast path and jansson read different tasks", a, al, b, bl);
  gtask__free(a);
  gtask__free(b);
}

/* The same for result records. */
static void result_fast_path_agrees(const char *buf, size_t size) {
  static const char id[] = "0f8fad5b-d9cb-469f-a165-70867728950e";
  gtask_result *f = NULL, *r = NULL;
  char err[256];
  if (gtask__result_decode_fast(buf, size, id, &f) != 0) return;
  if (gtask__result_decode_ref(buf, size, id, &r, err, sizeof(err)) != 0)
    die("the fast path accepts a result jansson refuses", buf, size, err, strlen(err));
  char *a = NULL, *b = NULL;
  size_t al = 0, bl = 0;
  int ra = gtask__result_encode(f, &a, &al), rb = gtask__result_encode(r, &b, &bl);
  bool same = strcmp(f->id, r->id) == 0;
  gtask_result_free(f);
  gtask_result_free(r);
  if (ra == 0 && rb == 0 && (!same || al != bl || memcmp(a, b, al) != 0))
    die("the fast path and jansson read different results", a, al, b, bl);
  gtask__free(a);
  gtask__free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The decoders take a length and must not read past it: hand them an exact
   * copy without a terminator so that ASan sees any overread. */
  char *buf = malloc(size ? size : 1);
  if (buf == NULL) return 0;
  memcpy(buf, data, size);
  task_round_trip(buf, size);
  fast_path_agrees(buf, size);
  result_round_trip(buf, size);
  result_fast_path_agrees(buf, size);
  free(buf);
  return 0;
}
