/* tz.c -- IANA time zones from TZif files, without touching TZ (issue 19).
 *
 * A cron entry has a zone; its fire times are wall-clock times there.  The C
 * library's way to convert (setenv("TZ") + tzset + localtime_r/mktime) reads
 * and writes process-global state, a data race in a threaded library.  So we
 * read the zone file ourselves: a TZif file (RFC 8536) is a table of
 * transition instants, each naming a "local time type" (UTC offset, DST
 * flag), followed (version 2 and later) by a POSIX TZ string such as
 * "EST5EDT,M3.2.0,M11.1.0" that gives the rule for every instant after the
 * last transition in the table.  Debian's tzdata ships "fat" files with
 * transitions up to 2037; the rule covers the years after.
 *
 * The file is trusted no more than any input: every count and index is
 * checked, so a truncated or corrupt file is an error, never a bad read.
 * Leap-second files (right/...) are refused: cron counts POSIX seconds. */
#include "tz.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZONEINFO_DIR "/usr/share/zoneinfo"
#define ZONE_NAME_MAX 128
#define TZIF_MAX_BYTES (256 * 1024)
/* Offsets beyond +-26 h exist in no zone, and would break the callers'
 * assumption that a wall-clock time is within a day of its instant. */
#define OFFSET_LIMIT (26 * 3600)

/* One rule date of a POSIX TZ string: Jn, n or Mm.w.d, and the local time of
 * day (seconds; may be negative or past 24 h in version 3 files). */
typedef struct tz_rule_date {
  char kind; /* 'J' (1..365, Feb 29 never counted), 'D' (0..365), 'M' */
  int n;     /* J or D: the day */
  int m, w, d; /* M: month 1..12, week 1..5 (5: the last), weekday 0..6 (Sun) */
  int32_t time;
} tz_rule_date;

/* The TZ string after the table: standard offset, and DST with its two
 * dates when there is one. */
typedef struct tz_rule {
  bool present;
  int32_t std_off; /* seconds east of UTC */
  bool has_dst;
  int32_t dst_off;
  tz_rule_date start, end; /* DST starts, ends (local time of the offset before) */
} tz_rule;

struct gtask__tz {
  char name[ZONE_NAME_MAX + 1];
  bool utc;
  size_t ntrans;
  int64_t *trans;  /* transition instants, ascending */
  int32_t *trans_off; /* the offset from each transition on */
  int32_t first_off;  /* before the first transition: time type 0 */
  tz_rule rule;
};

/* ---------------------------------------------------------------- calendar */

/* Howard Hinnant's days_from_civil / civil_from_days (public domain
 * algorithms), proleptic Gregorian, any year in int64 range we use. */
int64_t gtask__days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void gtask__civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int gtask__days_in_month(int64_t y, int m) {
  static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* ---------------------------------------------------------------- POSIX TZ rule */

typedef struct cursor {
  const char *p, *end;
} cursor;

static int cur_peek(const cursor *c) { return c->p < c->end ? (unsigned char)*c->p : -1; }

static bool parse_num(cursor *c, int lo, int hi, int *out) {
  int v = 0, digits = 0;
  while (cur_peek(c) >= '0' && cur_peek(c) <= '9' && digits < 4) {
    v = v * 10 + (*c->p++ - '0');
    digits++;
  }
  if (digits == 0 || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* A zone abbreviation: 3+ letters, or <...> of letters, digits, '+', '-'. */
static bool parse_abbr(cursor *c) {
  size_t n = 0;
  if (cur_peek(c) == '<') {
    c->p++;
    while (cur_peek(c) != '>') {
      int ch = cur_peek(c);
      if (ch < 0 || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '+' || ch == '-'))
        return false;
      c->p++;
      n++;
    }
    c->p++;
  } else {
    for (int ch; (ch = cur_peek(c)) >= 0 && ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'));
         c->p++)
      n++;
  }
  return n >= 3;
}

/* [+-]hh[:mm[:ss]], hours up to max_h. */
static bool parse_hms(cursor *c, int max_h, int32_t *out) {
  int sign = 1;
  if (cur_peek(c) == '+' || cur_peek(c) == '-') sign = *c->p++ == '-' ? -1 : 1;
  int h, mi = 0, s = 0;
  if (!parse_num(c, 0, max_h, &h)) return false;
  if (cur_peek(c) == ':') {
    c->p++;
    if (!parse_num(c, 0, 59, &mi)) return false;
    if (cur_peek(c) == ':') {
      c->p++;
      if (!parse_num(c, 0, 59, &s)) return false;
    }
  }
  *out = sign * (h * 3600 + mi * 60 + s);
  return true;
}

static bool parse_rule_date(cursor *c, tz_rule_date *r) {
  int ch = cur_peek(c);
  if (ch == 'J') {
    c->p++;
    r->kind = 'J';
    if (!parse_num(c, 1, 365, &r->n)) return false;
  } else if (ch == 'M') {
    c->p++;
    r->kind = 'M';
    if (!parse_num(c, 1, 12, &r->m) || cur_peek(c) != '.') return false;
    c->p++;
    if (!parse_num(c, 1, 5, &r->w) || cur_peek(c) != '.') return false;
    c->p++;
    if (!parse_num(c, 0, 6, &r->d)) return false;
  } else {
    r->kind = 'D';
    if (!parse_num(c, 0, 365, &r->n)) return false;
  }
  r->time = 2 * 3600;
  if (cur_peek(c) == '/') {
    c->p++;
    if (!parse_hms(c, 167, &r->time)) return false;
  }
  return true;
}

static bool parse_rule(const char *s, size_t len, tz_rule *r) {
  cursor c = {s, s + len};
  memset(r, 0, sizeof(*r));
  int32_t west;
  if (!parse_abbr(&c) || !parse_hms(&c, 24, &west)) return false;
  r->std_off = -west;
  r->present = true;
  if (cur_peek(&c) < 0) return true;
  if (!parse_abbr(&c)) return false;
  r->has_dst = true;
  r->dst_off = r->std_off + 3600;
  if (cur_peek(&c) != ',' && cur_peek(&c) >= 0) {
    if (!parse_hms(&c, 24, &west)) return false;
    r->dst_off = -west;
  }
  /* A DST name without dates: POSIX leaves the dates to the implementation;
   * no TZif file written by zic has one. */
  if (cur_peek(&c) != ',') return false;
  c.p++;
  if (!parse_rule_date(&c, &r->start) || cur_peek(&c) != ',') return false;
  c.p++;
  if (!parse_rule_date(&c, &r->end)) return false;
  return cur_peek(&c) < 0;
}

/* The day (days since the epoch) on which a rule date falls in year y. */
static int64_t rule_day(const tz_rule_date *r, int64_t y) {
  int64_t jan1 = gtask__days_from_civil(y, 1, 1);
  switch (r->kind) {
  case 'J':
    return jan1 + r->n - 1 + (is_leap(y) && r->n >= 60 ? 1 : 0);
  case 'D':
    return jan1 + r->n;
  default: {
    int64_t first = gtask__days_from_civil(y, r->m, 1);
    int wd = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
    int64_t day = first + (r->d - wd + 7) % 7 + (int64_t)(r->w - 1) * 7;
    while (day >= first + gtask__days_in_month(y, r->m)) day -= 7;
    return day;
  }
  }
}

/* The rule's offset at t and the stretch around it, from the transitions of
 * the years around t (a southern-hemisphere rule starts DST late in the year
 * and ends it early in the next: sorting the instants handles both). */
static int32_t rule_lookup(const tz_rule *r, int64_t t, int64_t *start, int64_t *end) {
  if (!r->has_dst) {
    *start = INT64_MIN;
    *end = INT64_MAX;
    return r->std_off;
  }
  int64_t days = (t + r->std_off) / 86400 - ((t + r->std_off) % 86400 < 0);
  int64_t y;
  int m, d;
  gtask__civil_from_days(days, &y, &m, &d);
  int64_t at[6];
  int32_t off[6];
  for (int k = 0; k < 3; k++) {
    int64_t yy = y - 1 + k;
    at[2 * k] = rule_day(&r->start, yy) * 86400 + r->start.time - r->std_off;
    off[2 * k] = r->dst_off;
    at[2 * k + 1] = rule_day(&r->end, yy) * 86400 + r->end.time - r->dst_off;
    off[2 * k + 1] = r->std_off;
  }
  for (int i = 1; i < 6; i++) /* insertion sort of six */
    for (int j = i; j > 0 && at[j - 1] > at[j]; j--) {
      int64_t ta = at[j];
      at[j] = at[j - 1];
      at[j - 1] = ta;
      int32_t to = off[j];
      off[j] = off[j - 1];
      off[j - 1] = to;
    }
  int last = -1;
  for (int i = 0; i < 6; i++)
    if (at[i] <= t) last = i;
  *start = last >= 0 ? at[last] : INT64_MIN;
  *end = last + 1 < 6 ? at[last + 1] : INT64_MAX;
  /* Before the first of the six (never, for t in year y): the offset the
   * first one ends. */
  return last >= 0 ? off[last] : (off[0] == r->dst_off ? r->std_off : r->dst_off);
}

/* ---------------------------------------------------------------- lookup */

int32_t gtask__tz_lookup(const gtask__tz *z, int64_t t, int64_t *start, int64_t *end) {
  if (z->utc) {
    *start = INT64_MIN;
    *end = INT64_MAX;
    return 0;
  }
  size_t n = z->ntrans;
  if (n == 0 || t < z->trans[0]) {
    if (n == 0 && z->rule.present) return rule_lookup(&z->rule, t, start, end);
    *start = INT64_MIN;
    *end = n ? z->trans[0] : INT64_MAX;
    return z->first_off;
  }
  size_t lo = 0, hi = n; /* the last transition <= t is in [lo, hi) */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (z->trans[mid] <= t) lo = mid;
    else hi = mid;
  }
  if (lo + 1 < n) {
    *start = z->trans[lo];
    *end = z->trans[lo + 1];
    return z->trans_off[lo];
  }
  if (!z->rule.present) {
    *start = z->trans[lo];
    *end = INT64_MAX;
    return z->trans_off[lo];
  }
  int32_t off = rule_lookup(&z->rule, t, start, end);
  if (*start < z->trans[lo]) *start = z->trans[lo];
  return off;
}

const char *gtask__tz_name(const gtask__tz *z) { return z->name; }
bool gtask__tz_is_utc(const gtask__tz *z) { return z->utc; }

void gtask__tz_free(gtask__tz *z) {
  if (!z) return;
  gtask__free(z->trans);
  gtask__free(z->trans_off);
  gtask__free(z);
}

/* ---------------------------------------------------------------- TZif */

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static int64_t be64(const unsigned char *p) {
  return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzif_counts {
  uint32_t isut, isstd, leap, time, type, chars;
} tzif_counts;

static bool read_header(const unsigned char *p, size_t avail, tzif_counts *c, char *version) {
  if (avail < 44 || memcmp(p, "TZif", 4) != 0) return false;
  *version = (char)p[4];
  c->isut = be32(p + 20);
  c->isstd = be32(p + 24);
  c->leap = be32(p + 28);
  c->time = be32(p + 32);
  c->type = be32(p + 36);
  c->chars = be32(p + 40);
  return c->type >= 1 && c->type <= 256 && c->chars >= 1 && c->time <= 100000 &&
         c->leap <= 100000 && c->chars <= 100000 && (c->isut == 0 || c->isut == c->type) &&
         (c->isstd == 0 || c->isstd == c->type);
}

static size_t block_size(const tzif_counts *c, size_t tsize) {
  return c->time * tsize + c->time + c->type * 6u + c->chars + c->leap * (tsize + 4) + c->isstd +
         c->isut;
}

/* Parses the data block at p (times of tsize bytes) into z.  false: malformed
 * (the reason in *why). */
static int parse_block(gtask__tz *z, const unsigned char *p, const tzif_counts *c, size_t tsize,
                       const char **why) {
  if (c->leap) {
    *why = "it counts leap seconds (a right/ zone); use the zone without right/";
    return GTASK_EINVAL;
  }
  const unsigned char *times = p, *idx = p + c->time * tsize, *types = idx + c->time;
  int32_t *offs = gtask__calloc(c->type, sizeof(int32_t));
  if (!offs) return GTASK_ENOMEM;
  for (uint32_t i = 0; i < c->type; i++) {
    int32_t off = (int32_t)be32(types + 6 * i);
    if (off < -OFFSET_LIMIT || off > OFFSET_LIMIT || types[6 * i + 4] > 1 ||
        types[6 * i + 5] >= c->chars) {
      gtask__free(offs);
      *why = "a local time type is out of range";
      return GTASK_EINVAL;
    }
    offs[i] = off;
  }
  z->first_off = offs[0];
  if (c->time) {
    z->trans = gtask__calloc(c->time, sizeof(int64_t));
    z->trans_off = gtask__calloc(c->time, sizeof(int32_t));
    if (!z->trans || !z->trans_off) {
      gtask__free(offs);
      return GTASK_ENOMEM;
    }
  }
  for (uint32_t i = 0; i < c->time; i++) {
    int64_t t = tsize == 8 ? be64(times + 8 * i) : (int64_t)(int32_t)be32(times + 4 * i);
    if (idx[i] >= c->type || (i > 0 && t <= z->trans[i - 1])) {
      gtask__free(offs);
      *why = "its transitions are out of order or name no type";
      return GTASK_EINVAL;
    }
    z->trans[i] = t;
    z->trans_off[i] = offs[idx[i]];
  }
  z->ntrans = c->time;
  gtask__free(offs);
  return 0;
}

static int parse_tzif(gtask__tz *z, const unsigned char *buf, size_t len, const char **why) {
  tzif_counts c;
  char version;
  *why = "it is not a TZif file";
  if (!read_header(buf, len, &c, &version)) return GTASK_EINVAL;
  size_t v1 = 44 + block_size(&c, 4);
  *why = "it is truncated";
  if (v1 > len) return GTASK_EINVAL;
  if (version == '\0') return parse_block(z, buf + 44, &c, 4, why);
  /* Version 2+: a second header and block with 64-bit times, then the TZ
   * string between newlines. */
  const unsigned char *p = buf + v1;
  size_t avail = len - v1;
  *why = "its 64-bit header is malformed";
  if (!read_header(p, avail, &c, &version)) return GTASK_EINVAL;
  size_t v2 = 44 + block_size(&c, 8);
  *why = "it is truncated";
  if (v2 > avail) return GTASK_EINVAL;
  int rc = parse_block(z, p + 44, &c, 8, why);
  if (rc) return rc;
  const unsigned char *f = p + v2, *end = buf + len;
  *why = "its footer is malformed";
  if (f >= end || *f != '\n') return GTASK_EINVAL;
  const unsigned char *nl = memchr(f + 1, '\n', (size_t)(end - f - 1));
  if (!nl) return GTASK_EINVAL;
  size_t tzlen = (size_t)(nl - f - 1);
  if (tzlen == 0) return 0; /* no rule: the last type holds for ever */
  *why = "its TZ rule is malformed";
  if (!parse_rule((const char *)f + 1, tzlen, &z->rule)) return GTASK_EINVAL;
  return 0;
}

/* IANA names: components of [A-Za-z0-9_+-] joined by '/'.  Dots are not
 * allowed at all, so no name can climb out of the zoneinfo directory. */
static bool zone_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > ZONE_NAME_MAX || name[0] == '/' || name[n - 1] == '/') return false;
  for (size_t i = 0; i < n; i++) {
    char ch = name[i];
    bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '+' || ch == '-' || (ch == '/' && name[i + 1] != '/');
    if (!ok) return false;
  }
  return true;
}

static int read_file(const char *path, unsigned char **out, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TZIF_MAX_BYTES) {
    close(fd);
    return -EINVAL;
  }
  unsigned char *buf = gtask__malloc((size_t)st.st_size + 1);
  if (!buf) {
    close(fd);
    return -ENOMEM;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  *out = buf;
  *len = got;
  return 0;
}

int gtask__tz_load(const char *name, gtask__tz **out) {
  *out = NULL;
  if (!name || !zone_name_valid(name)) {
    gtask__set_error("invalid time zone name \"%s\" (an IANA name such as Europe/Berlin)",
                     name ? name : "(null)");
    return GTASK_EINVAL;
  }
  if (strcmp(name, "UTC") == 0) {
    gtask__tz *z = gtask__calloc(1, sizeof(*z));
    if (!z) return GTASK_ENOMEM;
    snprintf(z->name, sizeof(z->name), "%s", name);
    z->utc = true;
    *out = z;
    return 0;
  }
  char path[sizeof(ZONEINFO_DIR) + ZONE_NAME_MAX + 2];
  snprintf(path, sizeof(path), "%s/%s", ZONEINFO_DIR, name);
  unsigned char *buf = NULL;
  size_t len = 0;
  int err = read_file(path, &buf, &len);
  if (err == -ENOMEM) return GTASK_ENOMEM;
  if (err) {
    gtask__set_error("unknown time zone \"%s\" (%s: %s%s)", name, path,
                     err == -EINVAL ? "not a zone file" : strerror(-err),
                     err == -ENOENT ? "; is Debian's tzdata installed?" : "");
    return GTASK_EINVAL;
  }
  int rc = gtask__tz_parse(name, buf, len, out);
  gtask__free(buf);
  if (rc == GTASK_EINVAL) {
    char why[200];
    gtask__fmt(why, sizeof(why), "%s", gtask_last_error());
    gtask__set_error("time zone \"%s\": %s: %s", name, path, why);
  }
  return rc;
}

int gtask__tz_parse(const char *name, const unsigned char *buf, size_t len, gtask__tz **out) {
  *out = NULL;
  gtask__tz *z = gtask__calloc(1, sizeof(*z));
  if (!z) return GTASK_ENOMEM;
  gtask__fmt(z->name, sizeof(z->name), "%s", name ? name : "");
  const char *why = NULL;
  int rc = parse_tzif(z, buf, len, &why);
  if (rc) {
    if (rc == GTASK_EINVAL) gtask__set_error("%s", why);
    gtask__tz_free(z);
    return rc;
  }
  *out = z;
  return 0;
}
