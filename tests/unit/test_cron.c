/* test_cron.c -- cron specs and fire times (src/cron.c, src/tz.c; issue 19):
 * a table of specs, zones and instants with the fire times a user expects,
 * written out by hand -- month ends, leap days, daylight-saving gaps and
 * overlaps in New York, Berlin and Sydney (a southern-hemisphere zone,
 * whose DST spans the new year), years past the zone files' tables (2040,
 * from their POSIX TZ rules) -- then bad specs and zones with their errors. */
#include "test.h"

#include "tz.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "YYYY-MM-DDTHH:MM:SSZ" to Unix ms. */
static int64_t utc_ms(const char *iso) {
  int y, mo, d, h, mi, s;
  if (sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &y, &mo, &d, &h, &mi, &s) != 6)
    TEST_FAIL("bad test time %s", iso);
  return (gtask__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000;
}

typedef struct fire_case {
  const char *spec, *zone, *after;
  const char *want[6]; /* the next fire times, NULL-terminated */
} fire_case;

static const fire_case cases[] = {
    /* Month ends and leap days. */
    {"0 0 29 2 *", NULL, "2026-01-01T00:00:00Z",
     {"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"}},
    {"0 0 29 2 *", NULL, "2096-03-01T00:00:00Z", {"2104-02-29T00:00:00Z"}}, /* 2100 is no leap year */
    {"0 12 31 * *", NULL, "2026-01-31T13:00:00Z",
     {"2026-03-31T12:00:00Z", "2026-05-31T12:00:00Z", "2026-07-31T12:00:00Z",
      "2026-08-31T12:00:00Z"}},
    {"0 0 28-31 2 *", NULL, "2027-02-27T00:00:00Z",
     {"2027-02-28T00:00:00Z", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z"}},
    {"59 23 31 12 *", NULL, "2026-12-31T23:59:00Z", {"2027-12-31T23:59:00Z"}},
    {"0 0 1 1 *", NULL, "2026-12-31T23:59:59Z", {"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"}},
    /* Both day fields restricted: either matches (Fridays, and the 13th). */
    {"0 0 13 * FRI", NULL, "2026-02-01T00:00:00Z",
     {"2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z",
      "2026-02-27T00:00:00Z", "2026-03-06T00:00:00Z"}},
    /* One restricted: only it (the 1st that is a Monday... any 1st: dow is *). */
    {"0 0 1 * *", NULL, "2026-02-01T00:00:00Z", {"2026-03-01T00:00:00Z"}},
    /* Names, ranges, lists; Sunday as 7; strictly after. */
    {"0 9 * jan,JUL Mon-Fri", NULL, "2026-06-30T12:00:00Z",
     {"2026-07-01T09:00:00Z", "2026-07-02T09:00:00Z", "2026-07-03T09:00:00Z",
      "2026-07-06T09:00:00Z"}},
    {"0 0 * * 7", NULL, "2026-02-01T00:00:00Z", {"2026-02-08T00:00:00Z"}},
    {"10-20/5 8,20 * * *", NULL, "2026-05-05T08:12:00Z",
     {"2026-05-05T08:15:00Z", "2026-05-05T08:20:00Z", "2026-05-05T20:10:00Z"}},
    {"45/10 * * * *", NULL, "2026-05-05T08:00:00Z",
     {"2026-05-05T08:45:00Z", "2026-05-05T08:55:00Z", "2026-05-05T09:45:00Z"}},
    /* Seconds, macros, @every (multiples since the epoch). */
    {"*/20 * * * * *", NULL, "2026-01-01T00:00:05Z",
     {"2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"}},
    {"@hourly", NULL, "2026-01-01T00:00:00Z", {"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"}},
    {"@weekly", NULL, "2026-01-01T00:00:00Z", {"2026-01-04T00:00:00Z"}},
    {"@monthly", NULL, "2026-01-15T00:00:00Z", {"2026-02-01T00:00:00Z"}},
    {"@YEARLY", NULL, "2026-01-15T00:00:00Z", {"2027-01-01T00:00:00Z"}},
    {"@every 90s", NULL, "2026-01-01T00:00:00Z", {"2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"}},
    {"@every 1h30m", "Europe/Berlin", "2026-01-01T00:00:00Z",
     {"2026-01-01T02:30:00+01:00", "2026-01-01T04:00:00+01:00"}},

    /* New York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT.  A fixed
     * time in the gap fires once at its end; a wildcard spec skips the gap. */
    {"30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z",
     {"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
    {"15,45 2 * * *", "America/New_York", "2026-03-08T06:00:00Z",
     {"2026-03-08T03:00:00-04:00", "2026-03-09T02:15:00-04:00"}},
    {"30 3 * * *", "America/New_York", "2026-03-08T06:00:00Z", {"2026-03-08T03:30:00-04:00"}},
    {"*/30 * * * *", "America/New_York", "2026-03-08T06:15:00Z",
     {"2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"}},
    /* New York, fall back 2026-11-01 02:00 EDT -> 01:00 EST: fixed once (the
     * first pass), wildcard in both passes. */
    {"30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z",
     {"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
    {"30 1 * * *", "America/New_York", "2026-11-01T05:45:00Z", /* 01:45 EDT, first pass */
     {"2026-11-02T01:30:00-05:00"}},
    {"*/30 * * * *", "America/New_York", "2026-11-01T04:45:00Z",
     {"2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00",
      "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"}},
    /* The same in 2040, past the file's table: from its rule EST5EDT,M3.2.0,M11.1.0. */
    {"30 2 * * *", "America/New_York", "2040-03-10T12:00:00Z",
     {"2040-03-11T03:00:00-04:00", "2040-03-12T02:30:00-04:00"}},
    {"30 1 * * *", "America/New_York", "2040-11-03T12:00:00Z",
     {"2040-11-04T01:30:00-04:00", "2040-11-05T01:30:00-05:00"}},

    /* Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET. */
    {"30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
     {"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
    {"30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z",
     {"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
    {"0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z",
     {"2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"}},
    {"0 0 29 2 *", "Europe/Berlin", "2026-01-01T00:00:00Z", {"2028-02-29T00:00:00+01:00"}},

    /* Sydney: DST from the first Sunday of October (02:00 AEST -> 03:00
     * AEDT) to the first Sunday of April (03:00 AEDT -> 02:00 AEST). */
    {"30 2 * * *", "Australia/Sydney", "2026-10-03T00:00:00Z",
     {"2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"}},
    {"30 2 * * *", "Australia/Sydney", "2026-04-04T00:00:00Z",
     {"2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"}},
    {"0 12 1 1 *", "Australia/Sydney", "2045-06-01T00:00:00Z", {"2046-01-01T12:00:00+11:00"}},
    {"0 12 1 7 *", "Australia/Sydney", "2045-01-01T00:00:00Z", {"2045-07-01T12:00:00+10:00"}},
};

TEST(cron_fire_table) {
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    const fire_case *fc = &cases[k];
    gtask_cron *c;
    int rc = gtask_cron_new(&c, fc->spec, fc->zone);
    if (rc) TEST_FAIL("\"%s\" %s: %s: %s", fc->spec, fc->zone, gtask_err_name(rc), gtask_last_error());
    int64_t t = utc_ms(fc->after);
    for (int i = 0; fc->want[i]; i++) {
      ASSERT_OK(gtask_cron_next(c, t, &t));
      char buf[GTASK_TIME_SIZE];
      ASSERT_OK(gtask_cron_format(c, t, buf, sizeof(buf)));
      if (strcmp(buf, fc->want[i]) != 0)
        TEST_FAIL("\"%s\" in %s after %s: fire %d is %s, want %s", fc->spec,
                  fc->zone ? fc->zone : "UTC", fc->after, i + 1, buf, fc->want[i]);
    }
    gtask_cron_free(c);
  }
}

/* An instant that is not a whole second: the next fire is still strictly
 * after it, and format shows milliseconds only when there are some. */
TEST(cron_subsecond) {
  gtask_cron *c;
  ASSERT_OK(gtask_cron_new(&c, "  * * * * * *  ", NULL));
  ASSERT_STR_EQ(gtask_cron_spec(c), "* * * * * *");
  ASSERT_STR_EQ(gtask_cron_zone(c), "UTC");
  int64_t t;
  ASSERT_OK(gtask_cron_next(c, 1500, &t));
  ASSERT_EQ(t, 2000);
  ASSERT_OK(gtask_cron_next(c, 2000, &t));
  ASSERT_EQ(t, 3000);
  ASSERT_OK(gtask_cron_next(c, -1, &t));
  ASSERT_EQ(t, 0);
  char buf[GTASK_TIME_SIZE];
  ASSERT_OK(gtask_cron_format(NULL, 1250, buf, sizeof(buf)));
  ASSERT_STR_EQ(buf, "1970-01-01T00:00:01.250Z");
  ASSERT_ERR(gtask_cron_format(NULL, 0, buf, 10), GTASK_EINVAL);
  gtask_cron_free(c);
  /* The ends of the range: an answer or ENOTFOUND / ERANGE, nothing undefined. */
  const char *specs[] = {"0 0 29 2 *", "@every 7s", "30 2 * * *"};
  const int64_t ends[] = {INT64_MIN, INT64_MIN / 2, -62167219200001LL, 253402300799000LL, INT64_MAX};
  for (size_t i = 0; i < 3; i++) {
    ASSERT_OK(gtask_cron_new(&c, specs[i], i == 2 ? "Europe/Berlin" : NULL));
    for (size_t k = 0; k < sizeof(ends) / sizeof(ends[0]); k++) {
      int rc = gtask_cron_next(c, ends[k], &t);
      if (rc == 0) {
        ASSERT_GT(t, ends[k]);
        rc = gtask_cron_format(c, t, buf, sizeof(buf));
        ASSERT_TRUE(rc == 0 || rc == GTASK_ERANGE);
      } else {
        ASSERT_ERR(rc, GTASK_ENOTFOUND);
      }
      rc = gtask_cron_format(c, ends[k], buf, sizeof(buf));
      ASSERT_TRUE(rc == 0 || rc == GTASK_ERANGE);
    }
    gtask_cron_free(c);
  }
}

typedef struct bad_case {
  const char *spec, *zone, *why;
} bad_case;

static const bad_case bad[] = {
    {"", NULL, "0 fields"},
    {"* * * *", NULL, "4 fields"},
    {"* * * * * * *", NULL, "too many fields"},
    {"60 * * * *", NULL, "minute field \"60\": 60 is out of range (0-59)"},
    {"* 24 * * *", NULL, "hour field \"24\": 24 is out of range (0-23)"},
    {"* * 0 * *", NULL, "day-of-month field \"0\": 0 is out of range (1-31)"},
    {"* * 32 * *", NULL, "out of range (1-31)"},
    {"* * * 13 *", NULL, "month field \"13\""},
    {"* * * * 8", NULL, "day-of-week field \"8\": 8 is out of range (0-7)"},
    {"60 * * * * *", NULL, "second field"},
    {"5-1 * * * *", NULL, "the range 5-1 goes backwards"},
    {"*/0 * * * *", NULL, "a step of 0"},
    {"1,,2 * * * *", NULL, "minute field \"1,,2\" is malformed"},
    {"1, * * * *", NULL, "is malformed"},
    {"? * * * *", NULL, "? is for the day fields only"},
    {"* * * FOO *", NULL, "month field \"FOO\" is malformed"},
    {"* * * * MONDAY", NULL, "is malformed"},
    {"a b c d e", NULL, "minute field \"a\" is malformed"},
    {"0 0 30 2 *", NULL, "it never fires: no month given has day 30"},
    {"0 0 31 4,6,9,11 *", NULL, "never fires"},
    {"@every", NULL, "@every needs a duration"},
    {"@every 0s", NULL, "@every needs a duration"},
    {"@every 5", NULL, "@every needs a duration"},
    {"@every 5x", NULL, "@every needs a duration"},
    {"@fortnightly", NULL, "unknown macro"},
    {"@daily", "Mars/Base", "unknown time zone \"Mars/Base\""},
    {"@daily", "../../etc/passwd", "invalid time zone name"},
    {"@daily", "/etc/passwd", "invalid time zone name"},
    {"@daily", "Europe//Berlin", "invalid time zone name"},
    {"@daily", "", "invalid time zone name"},
    {"@daily", "Europe", "not a zone file"},          /* a directory */
    {"@daily", "leapseconds", "not a TZif file"},      /* a text file */
    {"@daily", "right/UTC", "leap seconds"},
};

TEST(cron_bad_specs) {
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    gtask_cron *c = (void *)1;
    int rc = gtask_cron_new(&c, bad[k].spec, bad[k].zone);
    if (rc != GTASK_EINVAL)
      TEST_FAIL("\"%s\" %s: want EINVAL, got %s", bad[k].spec, bad[k].zone ? bad[k].zone : "",
                gtask_err_name(rc));
    ASSERT_NULL(c);
    ASSERT_STR_CONTAINS(gtask_last_error(), bad[k].why);
  }
  gtask_cron *c;
  ASSERT_ERR(gtask_cron_new(&c, NULL, NULL), GTASK_EINVAL);
  ASSERT_ERR(gtask_cron_new(NULL, "@daily", NULL), GTASK_EINVAL);
  gtask_cron_free(NULL);
}

/* Every allocation of gtask_cron_new may fail: an error, no leak. */
TEST(cron_alloc_failures) {
  for (long n = 1;; n++) {
    gtask__alloc_fail_at(n);
    gtask_cron *c = NULL;
    int rc = gtask_cron_new(&c, "30 2 * * *", "America/New_York");
    gtask__alloc_fail_at(0);
    if (rc == 0) {
      gtask_cron_free(c);
      ASSERT_GT(n, 2);
      break;
    }
    ASSERT_ERR(rc, GTASK_ENOMEM);
    ASSERT_NULL(c);
  }
}

/* A zone file cut short or with any byte changed: an error or a zone whose
 * answers are sane, never a read outside the bytes (the sanitizer build
 * checks that) -- the parser trusts no count or index in the file. */
TEST(cron_tzif_corrupted) {
  FILE *f = fopen("/usr/share/zoneinfo/America/New_York", "rb");
  if (!f) SKIP("no /usr/share/zoneinfo/America/New_York (tzdata)");
  unsigned char buf[8192];
  size_t len = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  ASSERT_GT(len, 100);
  gtask__tz *z;
  ASSERT_OK(gtask__tz_parse("NY", buf, len, &z));
  gtask__tz_free(z);
  size_t ok = 0;
  for (size_t cut = 0; cut < len; cut++) {
    unsigned char *copy = malloc(cut ? cut : 1); /* exactly cut bytes: ASan sees any overread */
    memcpy(copy, buf, cut);
    int rc = gtask__tz_parse("NY", copy, cut, &z);
    if (rc == 0) gtask__tz_free(z), ok++;
    else ASSERT_ERR(rc, GTASK_EINVAL);
    free(copy);
  }
  ASSERT_EQ(ok, 0); /* every cut loses the footer's final newline at least */
  const int64_t probes[] = {INT64_MIN / 2, -5000000000LL, 0, 1700000000, 2200000000LL, 9000000000LL};
  for (size_t pos = 0; pos < len; pos++) {
    unsigned char *copy = malloc(len);
    memcpy(copy, buf, len);
    copy[pos] ^= (unsigned char)(pos % 7 == 0 ? 0x80 : 0xff);
    if (gtask__tz_parse("NY", copy, len, &z) == 0) {
      for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
        int64_t s, e;
        int32_t off = gtask__tz_lookup(z, probes[k], &s, &e);
        ASSERT_LE(s, probes[k]);
        ASSERT_GT(e, probes[k]);
        ASSERT_LE(off < 0 ? -off : off, 26 * 3600);
      }
      gtask__tz_free(z);
    }
    free(copy);
  }
}
