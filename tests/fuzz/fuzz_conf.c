/* fuzz_conf.c -- libFuzzer target for the Redis address parser
 * (gtask_redis_conf_new in src/redis/conf.c) and the conf setters, which read
 * URLs from command lines, environment variables and config files.
 *
 * Input layout: the bytes up to the first '\n' are the URL, the bytes up to
 * the next '\n' the password, the rest the key prefix; the first byte, taken
 * modulo 4, also picks the db argument (-1: keep the URL's, else 0..2).
 * Properties checked, beyond "no crash, no leak, no sanitizer report":
 *  - an accepted conf copies (gtask__redis_conf_copy) to one that names the
 *    same server and db;
 *  - its printable form (gtask_redis_conf_describe) is NUL-terminated within
 *    its buffer and, for a TCP address, parses again to the same server and db
 *    (unless truncated: over-long hosts).  Not for unix sockets: describe
 *    prints the path as is, so a path that starts with "//" or holds a '?'
 *    ("unix:////x" is the path "//x", described as "unix://x?db=0") does not
 *    read back; the form is for messages, not promised to be a URL.
 * A failed property abort()s, which libFuzzer reports as a crash with the input.
 *
 * Build and run: as tests/fuzz/fuzz_message.c, with fuzz_conf and
 * tests/fuzz/corpus/conf. */
#include "internal.h"
#include "redis/conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next '\n'-terminated piece of [*p, end) as a new string. */
static char *piece(const char **p, const char *end) {
  const char *nl = memchr(*p, '\n', (size_t)(end - *p));
  const char *stop = nl ? nl : end;
  size_t n = (size_t)(stop - *p);
  char *s = malloc(n + 1);
  if (s == NULL) abort();
  memcpy(s, *p, n);
  s[n] = '\0';
  *p = nl ? nl + 1 : end;
  return s;
}

static void check(const gtask_redis_conf *c, const char *url) {
  gtask_redis_conf *copy = NULL;
  if (gtask__redis_conf_copy(c, &copy) == 0) {
    if (!gtask__redis_conf_same_db(c, copy)) {
      fprintf(stderr, "fuzz_conf: copy of %s names another server\n", url);
      abort();
    }
    gtask_redis_conf_free(copy);
  }

  const char *d = gtask_redis_conf_describe(c);
  size_t dlen = strnlen(d, sizeof(c->describe));
  if (dlen == sizeof(c->describe)) {
    fprintf(stderr, "fuzz_conf: describe of %s is not terminated\n", url);
    abort();
  }
  if (dlen == sizeof(c->describe) - 1) return; /* truncated: cannot re-parse */
  if (c->unix_path != NULL) return;              /* see the header comment */
  gtask_redis_conf *again = NULL;
  int rc = gtask_redis_conf_new(&again, d, NULL, -1);
  if (rc == GTASK_ENOMEM) return;
  if (rc != 0 || !gtask__redis_conf_same_db(c, again)) {
    fprintf(stderr, "fuzz_conf: \"%s\" describes itself as \"%s\", which %s\n", url, d,
            rc ? gtask_last_error() : "names another server");
    abort();
  }
  gtask_redis_conf_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  int db = size ? (int)(data[0] % 4) - 1 : -1;
  char *url = piece(&p, end);
  char *password = piece(&p, end);
  char *prefix = malloc((size_t)(end - p) + 1);
  if (prefix == NULL) abort();
  memcpy(prefix, p, (size_t)(end - p));
  prefix[end - p] = '\0';

  gtask_redis_conf *c = NULL;
  if (gtask_redis_conf_new(&c, url, password, db) == 0) {
    (void)gtask_redis_conf_set_prefix(c, prefix);
    (void)gtask_redis_conf_set_pool_size(c, (int)size - 8);
    (void)gtask_redis_conf_set_expire_time(c, (int64_t)size * 100);
    (void)gtask_redis_conf_set_timeout(c, (int64_t)size - 4);
    check(c, url);
    gtask_redis_conf_free(c);
  }
  free(url);
  free(password);
  free(prefix);
  return 0;
}
