/* fuzz_cron.c -- libFuzzer target for the cron spec parser and next-fire
 * search (src/cron.c) and the TZif zone parser (src/tz.c), which read specs
 * from command lines and Redis, and zone files from the disk.
 *
 * Input layout: the first byte picks the mode.
 *  - even: a spec.  The bytes after the second, up to the first '\n', are the
 *    spec; the second byte picks a zone (UTC, New York, Berlin, Sydney,
 *    Kolkata, Chatham); the bytes after the '\n' (up to 8) the instant to
 *    start from.  Properties: an accepted spec's next 32 fire times increase
 *    strictly, and each formats (or is out of the years 0..9999: ERANGE).
 *  - odd: the rest is a TZif file.  Property: an accepted zone answers every
 *    lookup with a stretch around the instant and an offset within 26 h.
 * A failed property abort()s, which libFuzzer reports as a crash.
 *
 * Build and run: as tests/fuzz/fuzz_message.c, with fuzz_cron and
 * tests/fuzz/corpus/cron. */
#include "internal.h"
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_cron: property failed: %s\n", what);
  abort();
}

static void fuzz_zone(const uint8_t *data, size_t size) {
  gtask__tz *z;
  if (gtask__tz_parse("fuzz", data, size, &z) != 0) return;
  static const int64_t probes[] = {INT64_MIN / 4, -2000000000, -1, 0, 1700000000, 2100000000,
                                   4102444800LL, 99999999999LL, INT64_MAX / 4};
  for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
    int64_t s, e;
    int32_t off = gtask__tz_lookup(z, probes[k], &s, &e);
    check(s <= probes[k] && probes[k] < e, "lookup: the stretch holds the instant");
    check(off >= -26 * 3600 && off <= 26 * 3600, "lookup: offset within 26 h");
  }
  gtask__tz_free(z);
}

static void fuzz_spec(const uint8_t *data, size_t size) {
  static const char *const zones[] = {"UTC",           "America/New_York", "Europe/Berlin",
                                      "Australia/Sydney", "Asia/Kolkata",  "Pacific/Chatham"};
  if (size < 2) return;
  const char *zone = zones[data[1] % 6];
  const uint8_t *p = data + 2, *end = data + size;
  const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
  size_t len = (size_t)((nl ? nl : end) - p);
  char *spec = malloc(len + 1);
  if (!spec) return;
  memcpy(spec, p, len);
  spec[len] = '\0';
  int64_t t = 1767225600000; /* 2026-01-01 */
  if (nl && end - nl > 1) {
    uint64_t v = 0;
    for (const uint8_t *q = nl + 1; q < end && q < nl + 9; q++) v = v << 8 | *q;
    t = (int64_t)(v % (uint64_t)253402300799000ULL); /* up to the year 9999 */
  }
  gtask_cron *c;
  if (gtask_cron_new(&c, spec, zone) == 0) {
    for (int k = 0; k < 32; k++) {
      int64_t next;
      if (gtask_cron_next(c, t, &next) != 0) break;
      check(next > t, "next: strictly after");
      check(next % 1000 == 0, "next: a whole second");
      char buf[GTASK_TIME_SIZE];
      int rc = gtask_cron_format(c, next, buf, sizeof(buf));
      check(rc == 0 || rc == GTASK_ERANGE, "format");
      t = next;
    }
    gtask_cron_free(c);
  }
  free(spec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) fuzz_zone(data + 1, size - 1);
  else fuzz_spec(data, size);
  return 0;
}
