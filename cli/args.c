/* args.c -- the command line of `gtask`: scanning options (global ones anywhere,
 * a command's own after it), and parsing the two value syntaxes of the
 * contract: task arguments (ARG: "TYPE:VALUE" or a bare value) and durations
 * (DUR: a number with ms, s, m or h).  Nothing here prints except the scanner's
 * usage errors and the --help of a command without options (cli_scan_none). */
#include "cli.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- scanning */

static bool looks_negative_number(const char *s) {
  return s[0] == '-' && (s[1] == '.' || (s[1] >= '0' && s[1] <= '9'));
}

static const struct {
  const char *unit;
  double factor;
} duration_units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};

/* A signed number (digits and dots) followed by one of the units: what the
 * user meant as a DUR, valid or not ("-1s", "9999999999999h", "1.5.s"). */
static bool duration_shaped(const char *s) {
  const char *p = s + (s[0] == '-' || s[0] == '+');
  size_t n = strspn(p, "0123456789.");
  if (strcspn(p, "0123456789") >= n) return false; /* no digit */
  for (size_t k = 0; k < sizeof(duration_units) / sizeof(duration_units[0]); k++)
    if (strcmp(p + n, duration_units[k].unit) == 0) return true;
  return false;
}

int cli_scan_next(cli *c, cli_scan *s, const cli_opt *opts, const char **value) {
  *value = NULL;
  for (;;) {
    if (s->i >= s->argc) return -1;
    const char *a = s->argv[s->i++];
    if (s->only_positional || a[0] != '-' || a[1] == '\0' || looks_negative_number(a)) {
      *value = a;
      return 0;
    }
    if (strcmp(a, "--") == 0) {
      s->only_positional = true;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return OPT_HELP;
    if (a[1] != '-') {
      cli_usage_error(c, "unknown option %s", a);
      return -2;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const char *inline_val = eq ? eq + 1 : NULL;

    /* Global options, accepted before or after the command. */
    static const char *const globals[] = {"redis",    "backend", "queue",         "tls-ca",
                                          "tls-cert", "tls-key", "password-file", "wait-replicas"};
    const char **dest[] = {&c->redis_url, &c->backend_url,   &c->queue,        &c->tls_ca,
                           &c->tls_cert,  &c->tls_key,       &c->password_file, &c->wait_replicas};
    bool matched = false;
    for (size_t k = 0; k < sizeof(globals) / sizeof(globals[0]); k++) {
      if (strlen(globals[k]) != len || strncmp(name, globals[k], len) != 0) continue;
      const char *v = inline_val;
      if (!v) {
        if (s->i >= s->argc) {
          cli_usage_error(c, "--%s needs a value", globals[k]);
          return -2;
        }
        v = s->argv[s->i++];
      }
      *dest[k] = v;
      matched = true;
    }
    if (matched) continue;
    if (len == 4 && strncmp(name, "json", 4) == 0 && !inline_val) {
      c->json = true;
      continue;
    }
    if (len == 12 && strncmp(name, "tls-insecure", 12) == 0 && !inline_val) {
      c->tls_insecure = true;
      continue;
    }

    for (const cli_opt *o = opts; o && o->name; o++) {
      if (strlen(o->name) != len || strncmp(name, o->name, len) != 0) continue;
      switch (o->arg) {
      case OPT_NONE:
        if (inline_val) {
          cli_usage_error(c, "--%s takes no value", o->name);
          return -2;
        }
        return o->id;
      case OPT_REQUIRED:
        if (!inline_val) {
          if (s->i >= s->argc) {
            cli_usage_error(c, "--%s needs a value", o->name);
            return -2;
          }
          inline_val = s->argv[s->i++];
        }
        *value = inline_val;
        return o->id;
      case OPT_DURATION:
        /* A DUR-shaped next argument is the option's, even when it is not a
         * valid DUR: `--wait -1s` is a bad duration, not a task argument
         * "-1s" and a wait for ever (issue 14). */
        if (inline_val) {
          *value = inline_val;
        } else if (s->i < s->argc && !s->only_positional && duration_shaped(s->argv[s->i])) {
          *value = s->argv[s->i++];
        }
        return o->id;
      }
    }
    cli_usage_error(c, "unknown option --%.*s", (int)len, name);
    return -2;
  }
}

int cli_scan_none(cli *c, int argc, char **argv, const char *usage) {
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  const char *v;
  int r = cli_scan_next(c, &s, NULL, &v);
  if (r == -1) return CLI_OK;
  if (r == -2) return CLI_USAGE;
  if (r == OPT_HELP) {
    fputs(usage, stdout);
    return -1;
  }
  return cli_usage_error(c, "unexpected argument \"%s\"", v);
}

/* ---------------------------------------------------------------- numbers */

int cli_parse_int(const char *s, long long min, long long max, long long *out) {
  if (!s || !*s) return -1;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < min || v > max) return -1;
  *out = v;
  return 0;
}

/* Digits with at most one '.', and at least one digit: "12", "1.5", ".5". */
static bool plain_decimal(const char *s, size_t len) {
  bool digit = false, dot = false;
  for (size_t k = 0; k < len; k++) {
    if (s[k] >= '0' && s[k] <= '9') {
      digit = true;
    } else if (s[k] == '.' && !dot) {
      dot = true;
    } else {
      return false;
    }
  }
  return digit;
}

int cli_parse_duration(const char *s, int64_t *ms) {
  if (!s) return -1;
  size_t len = strlen(s);
  for (size_t k = 0; k < sizeof(duration_units) / sizeof(duration_units[0]); k++) {
    size_t ul = strlen(duration_units[k].unit);
    if (len <= ul || strcmp(s + len - ul, duration_units[k].unit) != 0) continue;
    if (!plain_decimal(s, len - ul)) return -1;
    char num[64];
    if (len - ul >= sizeof(num)) return -1;
    memcpy(num, s, len - ul);
    num[len - ul] = '\0';
    double v = strtod(num, NULL) * duration_units[k].factor;
    if (!(v >= 0) || v > 1e15) return -1; /* about 31 700 years */
    *ms = (int64_t)llround(v);
    if (*ms == 0 && v > 0) *ms = 1; /* "0.1ms" is the shortest, not 0 (none) */
    return 0;
  }
  return -1;
}

/* ---------------------------------------------------------------- task arguments */

static int why_fail(char *why, size_t whylen, const char *fmt, ...) CLI_PRINTF(3, 4);
static int why_fail(char *why, size_t whylen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, whylen, fmt, ap);
  va_end(ap);
  return -1;
}

static bool is_bare_integer(const char *s) {
  const char *p = s + (s[0] == '-');
  if (!*p) return false;
  for (; *p; p++)
    if (*p < '0' || *p > '9') return false;
  return true;
}

/* [-]digits[.digits][e[+-]digits] or [-].digits...: a decimal number (not
 * "inf", "nan" or hex, which strtod would also take). */
static bool is_bare_decimal(const char *s) {
  const char *p = s + (s[0] == '-');
  size_t mant = strcspn(p, "eE");
  if (!plain_decimal(p, mant)) return false;
  if (p[mant] == '\0') return strchr(p, '.') != NULL; /* "12" is an integer */
  const char *e = p + mant + 1;
  if (*e == '+' || *e == '-') e++;
  if (!*e) return false;
  for (; *e; e++)
    if (*e < '0' || *e > '9') return false;
  return true;
}

static int parse_signed(const char *v, gtask_type t, gtask_value *out, char *why, size_t whylen) {
  static const struct {
    gtask_type t;
    long long min, max;
  } ranges[] = {{GTASK_INT, LLONG_MIN, LLONG_MAX},   {GTASK_INT8, INT8_MIN, INT8_MAX},
                {GTASK_INT16, INT16_MIN, INT16_MAX}, {GTASK_INT32, INT32_MIN, INT32_MAX},
                {GTASK_INT64, LLONG_MIN, LLONG_MAX}};
  for (size_t k = 0; k < sizeof(ranges) / sizeof(ranges[0]); k++) {
    if (ranges[k].t != t) continue;
    long long x;
    if (!is_bare_integer(v) || cli_parse_int(v, ranges[k].min, ranges[k].max, &x) != 0)
      return why_fail(why, whylen, "\"%s\" is not an %s (an integer in its range)", v,
                      gtask_type_name(t));
    out->type = t;
    out->v.i = x;
    return 0;
  }
  return -1;
}

static int parse_unsigned(const char *v, gtask_type t, gtask_value *out, char *why, size_t whylen) {
  uint64_t max = t == GTASK_UINT8    ? UINT8_MAX
                 : t == GTASK_UINT16 ? UINT16_MAX
                 : t == GTASK_UINT32 ? UINT32_MAX
                                     : UINT64_MAX;
  errno = 0;
  char *end;
  unsigned long long x = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
  if (!(v[0] >= '0' && v[0] <= '9') || errno || *end || x > max)
    return why_fail(why, whylen, "\"%s\" is not a %s (a non-negative integer in its range)", v,
                    gtask_type_name(t));
  out->type = t;
  out->v.u = x;
  return 0;
}

static int parse_float(const char *v, gtask_type t, gtask_value *out, char *why, size_t whylen) {
  errno = 0;
  char *end;
  double x;
  if (t == GTASK_FLOAT32) {
    float f = strtof(v, &end);
    x = f;
  } else {
    x = strtod(v, &end);
  }
  if (!*v || *end || (errno == ERANGE && isinf(x)))
    return why_fail(why, whylen, "\"%s\" is not a %s", v, gtask_type_name(t));
  out->type = t;
  out->v.f = x;
  return 0;
}

int cli_parse_arg(const char *s, gtask_value *out, char *why, size_t whylen) {
  const char *colon = strchr(s, ':');
  gtask_type t;
  char tname[16];
  size_t tl = colon ? (size_t)(colon - s) : 0;
  if (colon && tl < sizeof(tname)) {
    memcpy(tname, s, tl);
    tname[tl] = '\0';
  }
  if (colon && tl < sizeof(tname) && gtask_type_parse(tname, &t) == 0) {
    const char *v = colon + 1;
    switch (t) {
    case GTASK_BOOL:
      if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = gtask_bool(true);
      } else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = gtask_bool(false);
      } else {
        return why_fail(why, whylen, "\"%s\" is not a bool (true or false)", v);
      }
      return 0;
    case GTASK_INT:
    case GTASK_INT8:
    case GTASK_INT16:
    case GTASK_INT32:
    case GTASK_INT64:
      return parse_signed(v, t, out, why, whylen);
    case GTASK_UINT:
    case GTASK_UINT8:
    case GTASK_UINT16:
    case GTASK_UINT32:
    case GTASK_UINT64:
      return parse_unsigned(v, t, out, why, whylen);
    case GTASK_FLOAT32:
    case GTASK_FLOAT64:
      return parse_float(v, t, out, why, whylen);
    case GTASK_STRING:
      *out = gtask_strn(v, strlen(v));
      return 0;
    }
    return why_fail(why, whylen, "%s: unsupported type", tname);
  }
  /* A bare value. */
  if (is_bare_integer(s)) {
    long long x;
    if (cli_parse_int(s, LLONG_MIN, LLONG_MAX, &x) != 0)
      return why_fail(why, whylen,
                      "\"%s\" is out of range for int64 (write uint64:%s or string:...)", s,
                      s[0] == '-' ? "..." : s);
    *out = gtask_int64(x);
    return 0;
  }
  if (is_bare_decimal(s)) return parse_float(s, GTASK_FLOAT64, out, why, whylen);
  *out = gtask_strn(s, strlen(s));
  return 0;
}

/* --retry-on timeout,error,crash: a non-empty comma-separated list of those
 * words, each at most once.  0, or -1 for anything else. */
int cli_parse_retry_on(const char *v, unsigned *out) {
  static const struct {
    const char *word;
    unsigned flag;
  } words[] = {{"timeout", GTASK_RETRY_ON_TIMEOUT}, {"error", GTASK_RETRY_ON_ERROR},
               {"crash", GTASK_RETRY_ON_CRASH}};
  unsigned flags = 0;
  for (const char *p = v;;) {
    size_t len = strcspn(p, ",");
    size_t k = 0;
    while (k < 3 && !(strlen(words[k].word) == len && strncmp(p, words[k].word, len) == 0)) k++;
    if (k == 3 || (flags & words[k].flag)) return -1;
    flags |= words[k].flag;
    if (!p[len]) break;
    p += len + 1;
  }
  *out = flags;
  return 0;
}
