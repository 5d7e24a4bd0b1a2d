/* cron.c -- cron specs and their fire times (issue 19).
 *
 * A spec is parsed once into bit sets (one per field) and a zone (tz.c);
 * gtask_cron_next() then walks forward from an instant to the next one whose
 * wall-clock reading in the zone matches.  The object is immutable after
 * gtask_cron_new(), so threads may share it.
 *
 * Syntax: 5 fields "min hour dom month dow" or 6 with seconds first
 * "sec min hour dom month dow"; each field a comma list of *, N, N-M, with an
 * optional /STEP (N/STEP means N-max/STEP); month and weekday names (JAN,
 * MON; any case); weekday 0 or 7 is Sunday; ? is * in the day fields.
 * Like Vixie cron, when both day fields are restricted (neither starts with
 * *) a day matches if either does.  Macros: @yearly (@annually), @monthly,
 * @weekly, @daily (@midnight), @hourly, and "@every DUR" (DUR like 90s, 5m,
 * 1h30m, 2d; at least 1 s), which fires at the multiples of DUR since the
 * Unix epoch -- the same instants for every scheduler, whenever it started.
 *
 * Daylight saving, as Vixie cron and cronie do it (cron(8): "Special
 * considerations exist when the clock is changed by less than 3 hours"):
 *  - a *fixed-time* spec (neither the minute nor the hour field starts with
 *    *; the @hourly macro is "0 * * * *" and so not fixed) whose time falls
 *    in a spring-forward gap fires once, at the first instant after the gap
 *    (02:30 on the night New York skips 02:00-03:00 fires at 03:00 EDT); in
 *    a fall-back overlap it fires once, at the first of the two instants;
 *  - a *wildcard* spec follows the clock: gap times do not exist, so they
 *    do not fire, and the repeated hour fires in both passes (every 15
 *    minutes stays every 15 minutes of real time).
 */
#include "internal.h"
#include "tz.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* How far gtask_cron_next searches: a spec such as "0 0 29 2 1" (Feb 29 or
 * any Monday) always fires within a year, "0 0 29 2 *" within 8. */
#define SEARCH_YEARS 12
#define MAX_YEAR 9999

struct gtask_cron {
  char *spec;
  gtask__tz *tz;
  int64_t every_s; /* @every: the period; 0 for a field spec */
  uint64_t sec, min;   /* bits 0..59 */
  uint32_t hour;       /* bits 0..23 */
  uint32_t dom;        /* bits 1..31 */
  uint32_t mon;        /* bits 1..12 */
  uint32_t dow;        /* bits 0..6, 0 = Sunday */
  bool dom_star, dow_star;
  bool fixed; /* neither minute nor hour starts with *: DST rules above */
};

/* ---------------------------------------------------------------- parsing */

typedef struct field_def {
  const char *name;
  int lo, hi;
  const char *const *names; /* names[i] is value lo + i, or NULL */
} field_def;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"};

static const field_def f_sec = {"second", 0, 59, NULL};
static const field_def f_min = {"minute", 0, 59, NULL};
static const field_def f_hour = {"hour", 0, 23, NULL};
static const field_def f_dom = {"day-of-month", 1, 31, NULL};
static const field_def f_mon = {"month", 1, 12, month_names};
static const field_def f_dow = {"day-of-week", 0, 7, day_names};

/* A number or a name of field f at *p; advances *p. */
static bool parse_value(const field_def *f, const char **p, int *out) {
  const char *s = *p;
  if (isdigit((unsigned char)*s)) {
    int v = 0, n = 0;
    while (isdigit((unsigned char)*s) && n < 4) v = v * 10 + (*s++ - '0'), n++;
    if (isdigit((unsigned char)*s)) return false;
    *p = s;
    *out = v;
    return true;
  }
  if (!f->names) return false;
  for (int i = 0; i <= f->hi - f->lo; i++) {
    if (strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
      *p = s + 3;
      *out = f->lo + i;
      return true;
    }
  }
  return false;
}

/* Parses one field (text [s, s+len)) into *bits.  *star: it starts with * or ?. */
static int parse_field(const field_def *f, const char *s, size_t len, uint64_t *bits, bool *star,
                       char *why, size_t whysize) {
  char buf[128];
  if (len >= sizeof(buf)) {
    gtask__fmt(why, whysize, "%s field is too long", f->name);
    return GTASK_EINVAL;
  }
  memcpy(buf, s, len);
  buf[len] = '\0';
  *bits = 0;
  *star = buf[0] == '*' || buf[0] == '?';
  if (buf[0] == '?' && f != &f_dom && f != &f_dow) {
    gtask__fmt(why, whysize, "%s field \"%s\": ? is for the day fields only", f->name, buf);
    return GTASK_EINVAL;
  }
  const char *p = buf;
  for (;;) {
    int lo, hi, step = 1;
    bool range = false;
    if (*p == '*' || *p == '?') {
      p++;
      lo = f->lo;
      hi = f == &f_dow ? 6 : f->hi;
      range = true;
    } else {
      if (!parse_value(f, &p, &lo)) goto bad;
      hi = lo;
      if (*p == '-') {
        p++;
        if (!parse_value(f, &p, &hi)) goto bad;
        range = true;
      }
    }
    if (*p == '/') {
      p++;
      if (!isdigit((unsigned char)*p)) goto bad;
      if (!parse_value(&f_sec, &p, &step)) goto bad;
      if (step == 0) {
        gtask__fmt(why, whysize, "%s field \"%s\": a step of 0", f->name, buf);
        return GTASK_EINVAL;
      }
      if (!range) hi = f == &f_dow ? 6 : f->hi; /* N/STEP: from N to the end */
    }
    if (lo < f->lo || lo > f->hi || hi < f->lo || hi > f->hi) {
      gtask__fmt(why, whysize, "%s field \"%s\": %d is out of range (%d-%d)", f->name, buf,
                 lo < f->lo || lo > f->hi ? lo : hi, f->lo, f->hi);
      return GTASK_EINVAL;
    }
    if (hi < lo) {
      gtask__fmt(why, whysize, "%s field \"%s\": the range %d-%d goes backwards", f->name, buf, lo,
                 hi);
      return GTASK_EINVAL;
    }
    for (int v = lo; v <= hi; v += step) *bits |= (uint64_t)1 << (f == &f_dow && v == 7 ? 0 : v);
    if (*p == '\0') break;
    if (*p != ',' || p[1] == '\0') goto bad;
    p++;
  }
  return 0;
bad:
  gtask__fmt(why, whysize, "%s field \"%s\" is malformed (expected *, N, N-M, a list of "
             "them, each with an optional /STEP%s)",
             f->name, buf, f->names ? ", or names" : "");
  return GTASK_EINVAL;
}

/* "90s", "5m", "1h30m", "2d": whole seconds, > 0. */
static bool parse_every(const char *s, int64_t *out) {
  int64_t total = 0;
  if (!*s) return false;
  while (*s) {
    if (!isdigit((unsigned char)*s)) return false;
    int64_t v = 0;
    while (isdigit((unsigned char)*s)) {
      if (v > 1000000000) return false;
      v = v * 10 + (*s++ - '0');
    }
    int64_t unit;
    switch (*s++) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return false;
    }
    total += v * unit;
    if (total > (int64_t)366 * 86400 * 100) return false;
  }
  *out = total;
  return total > 0;
}

static const struct {
  const char *name, *spec;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static int parse_fields(gtask_cron *c, const char *spec, char *why, size_t whysize) {
  const char *start[7];
  size_t len[7];
  int n = 0;
  for (const char *p = spec; *p;) {
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) break;
    if (n == 6) {
      gtask__fmt(why, whysize, "too many fields (5 or 6 expected)");
      return GTASK_EINVAL;
    }
    start[n] = p;
    while (*p && *p != ' ' && *p != '\t') p++;
    len[n] = (size_t)(p - start[n]);
    n++;
  }
  if (n != 5 && n != 6) {
    gtask__fmt(why, whysize, "%d field%s (5: min hour dom month dow, or 6 with seconds first)", n,
               n == 1 ? "" : "s");
    return GTASK_EINVAL;
  }
  const field_def *defs[6] = {&f_sec, &f_min, &f_hour, &f_dom, &f_mon, &f_dow};
  uint64_t bits[6];
  bool star[6];
  bits[0] = 1; /* 5 fields: second 0 */
  star[0] = false;
  for (int i = 0; i < n; i++) {
    int k = i + (6 - n);
    int rc = parse_field(defs[k], start[i], len[i], &bits[k], &star[k], why, whysize);
    if (rc) return rc;
  }
  c->sec = bits[0];
  c->min = bits[1];
  c->hour = (uint32_t)bits[2];
  c->dom = (uint32_t)bits[3];
  c->mon = (uint32_t)bits[4];
  c->dow = (uint32_t)bits[5];
  c->dom_star = star[3];
  c->dow_star = star[5];
  c->fixed = !star[1] && !star[2];
  /* A day of the month that none of the months has ("0 0 30 2 *") never
   * fires: say so now rather than search for ever. */
  if (!c->dom_star && c->dow_star) {
    int first_dom = __builtin_ctz(c->dom);
    bool ok = false;
    for (int m = 1; m <= 12; m++)
      if ((c->mon >> m & 1) && first_dom <= gtask__days_in_month(2000, m)) ok = true;
    if (!ok) {
      gtask__fmt(why, whysize, "it never fires: no month given has day %d", first_dom);
      return GTASK_EINVAL;
    }
  }
  return 0;
}

int gtask_cron_new(gtask_cron **out, const char *spec, const char *zone) {
  if (out) *out = NULL;
  if (!out || !spec) {
    gtask__set_error("gtask_cron_new: NULL argument");
    return GTASK_EINVAL;
  }
  gtask_cron *c = gtask__calloc(1, sizeof(*c));
  if (!c) return GTASK_ENOMEM;
  c->spec = gtask__strdup(spec);
  if (!c->spec) {
    gtask_cron_free(c);
    return GTASK_ENOMEM;
  }
  /* Trim, so that "  @daily " is @daily. */
  char *s = c->spec;
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
  memmove(c->spec, s, n + 1);

  char why[200] = "";
  int rc = 0;
  if (strlen(c->spec) > 256) {
    gtask__fmt(why, sizeof(why), "longer than 256 bytes");
    rc = GTASK_EINVAL;
  } else if (strncmp(c->spec, "@every", 6) == 0 && (c->spec[6] == ' ' || c->spec[6] == '\0')) {
    const char *d = c->spec + 6;
    while (*d == ' ' || *d == '\t') d++;
    if (!parse_every(d, &c->every_s)) {
      gtask__fmt(why, sizeof(why),
                 "@every needs a duration of at least 1s such as 90s, 5m, 1h30m or 2d");
      rc = GTASK_EINVAL;
    }
  } else if (c->spec[0] == '@') {
    const char *expanded = NULL;
    for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
      if (strcasecmp(c->spec, macros[i].name) == 0) expanded = macros[i].spec;
    if (!expanded) {
      gtask__fmt(why, sizeof(why), "unknown macro (@yearly, @annually, @monthly, @weekly, "
                                   "@daily, @midnight, @hourly, @every DUR)");
      rc = GTASK_EINVAL;
    } else {
      rc = parse_fields(c, expanded, why, sizeof(why));
    }
  } else {
    rc = parse_fields(c, c->spec, why, sizeof(why));
  }
  if (rc == 0) rc = gtask__tz_load(zone ? zone : "UTC", &c->tz);
  else gtask__set_error("bad cron spec \"%s\": %s", c->spec, why);
  if (rc) {
    gtask_cron_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void gtask_cron_free(gtask_cron *c) {
  if (!c) return;
  gtask__tz_free(c->tz);
  gtask__free(c->spec);
  gtask__free(c);
}

const char *gtask_cron_spec(const gtask_cron *c) { return c ? c->spec : ""; }
const char *gtask_cron_zone(const gtask_cron *c) { return c ? gtask__tz_name(c->tz) : ""; }

/* ---------------------------------------------------------------- matching */

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* The lowest set bit >= from in bits (of width bits), or -1. */
static int next_bit(uint64_t bits, int from, int width) {
  if (from >= width) return -1;
  uint64_t m = bits & (~(uint64_t)0 << from);
  return m ? __builtin_ctzll(m) : -1;
}

static bool day_matches(const gtask_cron *c, int64_t y, int m, int d) {
  bool dom = c->dom >> d & 1;
  int64_t days = gtask__days_from_civil(y, m, d);
  bool dow = c->dow >> (int)(((days + 4) % 7 + 7) % 7) & 1;
  return c->dom_star || c->dow_star ? dom && dow : dom || dow;
}

/* The first wall-clock time (civil seconds) >= x that matches the fields, or
 * -1 if none within SEARCH_YEARS (or past year MAX_YEAR). */
static int64_t next_match(const gtask_cron *c, int64_t x) {
  int64_t days = floor_div(x, 86400), sod = x - days * 86400;
  int64_t y;
  int mo, d;
  gtask__civil_from_days(days, &y, &mo, &d);
  int h = (int)(sod / 3600), mi = (int)(sod / 60 % 60), s = (int)(sod % 60);
  int64_t limit = y + SEARCH_YEARS;
  for (;;) {
    if (y > limit || y > MAX_YEAR) return -1;
    if (!(c->mon >> mo & 1)) {
      int nm = next_bit(c->mon, mo + 1, 13);
      if (nm < 0) y++, mo = next_bit(c->mon, 1, 13);
      else mo = nm;
      d = 1, h = mi = s = 0;
      continue;
    }
    if (!day_matches(c, y, mo, d)) {
      if (++d > gtask__days_in_month(y, mo)) {
        d = 1;
        if (++mo > 12) mo = 1, y++;
      }
      h = mi = s = 0;
      continue;
    }
    int nh = next_bit(c->hour, h, 24);
    if (nh >= 0) {
      if (nh > h) h = nh, mi = s = 0;
      int nmi = next_bit(c->min, mi, 60);
      if (nmi < 0) {
        mi = s = 0;
        if (++h < 24) continue;
      } else {
        if (nmi > mi) mi = nmi, s = 0;
        int ns = next_bit(c->sec, s, 60);
        if (ns >= 0)
          return gtask__days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + ns;
        s = 0;
        if (++mi < 60) continue;
        mi = 0;
        if (++h < 24) continue;
      }
    }
    /* No time left today: the next day. */
    h = mi = s = 0;
    if (++d > gtask__days_in_month(y, mo)) {
      d = 1;
      if (++mo > 12) mo = 1, y++;
    }
  }
}

/* The next fire instant (seconds) after `after`, walking the zone's
 * stretches of constant UTC offset forward (see the DST rules on top). */
static int64_t next_fire(const gtask_cron *c, int64_t after) {
  if (c->every_s) return (floor_div(after, c->every_s) + 1) * c->every_s;
  int64_t t = after + 1, start, end;
  int32_t off = gtask__tz_lookup(c->tz, t, &start, &end);
  int64_t dummy_s, dummy_e;
  int32_t prev_off = start == INT64_MIN ? off : gtask__tz_lookup(c->tz, start - 1, &dummy_s, &dummy_e);
  int64_t x = t + off;
  for (int guard = 0; guard < 1000; guard++) {
    if (start != INT64_MIN && start >= t) {
      /* A spring-forward gap at `start`: wall-clock [start + prev_off,
       * start + off) never happens.  A fixed-time spec due in it fires at
       * the gap's end. */
      if (c->fixed && off > prev_off) {
        int64_t g = next_match(c, start + prev_off);
        if (g >= 0 && g < start + off) return start;
      }
    }
    /* A fall-back overlap: [start + off, start + prev_off) was lived through
     * before `start`; a fixed-time spec fired there already. */
    if (c->fixed && off < prev_off && start != INT64_MIN && x < start + prev_off)
      x = start + prev_off;
    int64_t m = next_match(c, x);
    if (m < 0) return -1;
    if (end == INT64_MAX || m < end + off) return m - off;
    /* Not in this stretch: on to the next. */
    prev_off = off;
    start = end;
    off = gtask__tz_lookup(c->tz, start, &dummy_s, &end);
    x = start + off;
  }
  return -1;
}

int gtask_cron_next(const gtask_cron *c, int64_t after_ms, int64_t *next_ms) {
  if (!c || !next_ms) return GTASK_EINVAL;
  int64_t f = next_fire(c, floor_div(after_ms, 1000));
  if (f < 0 || f > INT64_MAX / 1000) { /* (none before 1970 either) */
    gtask__set_error("cron \"%s\": no fire time within %d years", c->spec, SEARCH_YEARS);
    return GTASK_ENOTFOUND;
  }
  *next_ms = f * 1000;
  return 0;
}

int gtask_cron_format(const gtask_cron *c, int64_t ms, char *buf, size_t size) {
  if (!buf || size < GTASK_TIME_SIZE) return GTASK_EINVAL;
  int64_t start, end;
  int64_t secs = floor_div(ms, 1000);
  int msec = (int)(ms % 1000);
  if (msec < 0) msec += 1000;
  int32_t off = c ? gtask__tz_lookup(c->tz, secs, &start, &end) : 0;
  int64_t local = secs + off;
  int64_t days = floor_div(local, 86400), sod = local - days * 86400;
  int64_t y;
  int mo, d;
  gtask__civil_from_days(days, &y, &mo, &d);
  if (y < 0 || y > MAX_YEAR) return GTASK_ERANGE;
  int n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d", (int)y, mo, d, (int)(sod / 3600),
                   (int)(sod / 60 % 60), (int)(sod % 60));
  if (msec) n += snprintf(buf + n, size - (size_t)n, ".%03d", msec);
  if (off == 0) {
    snprintf(buf + n, size - (size_t)n, "Z");
  } else {
    int a = off < 0 ? -off : off;
    n += snprintf(buf + n, size - (size_t)n, "%c%02d:%02d", off < 0 ? '-' : '+', a / 3600,
                  a / 60 % 60);
    if (a % 60) snprintf(buf + n, size - (size_t)n, ":%02d", a % 60);
  }
  return 0;
}
