/* encode.c -- the codec's encoder: task messages and result records to JSON.
 *
 * Writes straight into a buffer, with no JSON tree: building jansson values
 * and dumping them cost ~16,000 instructions for a one-integer result (a fifth
 * of a worker's work per task).  The bytes are exactly what jansson's json_dump
 * writes for the same object with JSON_COMPACT | JSON_REAL_PRECISION(17)
 * (tests/unit/test_codec.c compares the two): any JSON reader reads them, and
 * the fast decoder (decode_fast.c) reads this one form without jansson.
 *
 * Whatever is encoded decodes: each value passes gtask__value_check first (an
 * int8 holding 300, a float32 that is not a float are GTASK_ERANGE), strings
 * must be UTF-8 (GTASK_EINVAL), and a float is written with 17 significant
 * digits, which read back as the same double.  Error messages are the
 * exception: invalid bytes in them are replaced by '?' (see codec.h).
 *
 * The format, and every place a change to it touches: codec.h.
 */
#include "codec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct jw {
  char *p;
  size_t len, cap;
  int rc; /* GTASK_ENOMEM or GTASK_ETOOBIG once something did not fit */
} jw;

static bool jw_room(jw *w, size_t n) {
  if (w->rc) return false;
  if (n > GTASK__MAX_BODY - w->len) {
    w->rc = GTASK_ETOOBIG;
    return false;
  }
  if (w->len + n + 1 > w->cap) { /* + 1: the terminator */
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n + 1) cap *= 2;
    char *p = gtask__realloc(w->p, cap);
    if (p == NULL) {
      w->rc = GTASK_ENOMEM;
      return false;
    }
    w->p = p;
    w->cap = cap;
  }
  return true;
}

static void jw_put(jw *w, const char *s, size_t n) {
  if (!jw_room(w, n)) return;
  memcpy(w->p + w->len, s, n);
  w->len += n;
}

static void jw_puts(jw *w, const char *s) { jw_put(w, s, strlen(s)); }

static void jw_u64(jw *w, uint64_t v) {
  char tmp[20];
  size_t n = sizeof(tmp);
  do {
    tmp[--n] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  jw_put(w, tmp + n, sizeof(tmp) - n);
}

static void jw_i64(jw *w, int64_t v) {
  if (v < 0) {
    jw_put(w, "-", 1);
    jw_u64(w, 0 - (uint64_t)v);
  } else {
    jw_u64(w, (uint64_t)v);
  }
}

/* A finite double as jansson writes a real: %.17g, with ".0" added when that
 * reads as an integer, and the exponent without '+' or leading zeros. */
static void jw_real(jw *w, double d) {
  char buf[40];
  int n = snprintf(buf, sizeof(buf), "%.17g", d);
  if (n < 0 || (size_t)n >= sizeof(buf) - 3) {
    w->rc = GTASK_EINVAL;
    return;
  }
  size_t len = (size_t)n;
  for (size_t k = 0; k < len; k++)
    if (buf[k] == ',') buf[k] = '.'; /* a locale's decimal comma */
  char *e = memchr(buf, 'e', len);
  if (!memchr(buf, '.', len) && !e) {
    memcpy(buf + len, ".0", 2);
    len += 2;
  }
  if (e) {
    char *start = e + 1, *end = start + 1;
    if (*start == '-') start++;
    while (end < buf + len && *end == '0') end++;
    if (end != start) {
      memmove(start, end, (size_t)(buf + len - end));
      len -= (size_t)(end - start);
    }
  }
  jw_put(w, buf, len);
}

/* A JSON string of valid UTF-8 s[0..n): escapes as jansson does (", \, and
 * control characters; \b \f \n \r \t by name, the others as \u00XX). */
static void jw_str(jw *w, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  jw_put(w, "\"", 1);
  size_t run = 0; /* bytes of s[k - run .. k) not written yet */
  for (size_t k = 0; k < n; k++) {
    unsigned char c = (unsigned char)s[k];
    if (c >= 0x20 && c != '"' && c != '\\') {
      run++;
      continue;
    }
    jw_put(w, s + k - run, run);
    run = 0;
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t len = 2;
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      len = 6;
    }
    jw_put(w, esc, len);
  }
  jw_put(w, s + n - run, run);
  jw_put(w, "\"", 1);
}

/* An error message as a JSON string: s itself if it is valid UTF-8, else with
 * each byte that starts no valid sequence replaced by '?'. */
static void jw_error_str(jw *w, const char *s) {
  size_t len = strlen(s);
  if (gtask__utf8_valid(s, len)) {
    jw_str(w, s, len);
    return;
  }
  char *fixed = gtask__malloc(len + 1);
  if (fixed == NULL) {
    w->rc = GTASK_ENOMEM;
    return;
  }
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    size_t n = gtask__utf8_seq_len(p + i, len - i);
    if (n == 0) {
      fixed[i++] = '?';
    } else {
      memcpy(fixed + i, p + i, n);
      i += n;
    }
  }
  jw_str(w, fixed, len);
  gtask__free(fixed);
}

/* Writes ["type", value] for v.  what/idx name it in the error. */
static int jw_value(jw *w, const gtask_value *v, const char *what, size_t idx) {
  int rc = gtask__value_check(v);
  if (rc != 0) {
    if (rc == GTASK_ERANGE)
      gtask__set_error("%s %zu: value out of range of %s", what, idx, gtask_type_name(v->type));
    else
      gtask__set_error("%s %zu: invalid %s value", what, idx, gtask_type_name(v->type));
    return rc;
  }
  if (v->type == GTASK_STRING && !gtask__utf8_valid(v->v.s.ptr, v->v.s.len)) {
    gtask__set_error("%s %zu: string is not valid UTF-8", what, idx);
    return GTASK_EINVAL;
  }
  jw_put(w, "[\"", 2);
  jw_puts(w, gtask_type_name(v->type));
  jw_put(w, "\",", 2);
  switch (v->type) {
  case GTASK_BOOL:
    jw_puts(w, v->v.b ? "true" : "false");
    break;
  case GTASK_INT:
  case GTASK_INT8:
  case GTASK_INT16:
  case GTASK_INT32:
  case GTASK_INT64:
    jw_i64(w, v->v.i);
    break;
  case GTASK_UINT:
  case GTASK_UINT8:
  case GTASK_UINT16:
  case GTASK_UINT32:
  case GTASK_UINT64:
    if (v->v.u <= INT64_MAX) {
      jw_u64(w, v->v.u);
    } else { /* above what a JSON integer holds for every reader: a string */
      jw_put(w, "\"", 1);
      jw_u64(w, v->v.u);
      jw_put(w, "\"", 1);
    }
    break;
  case GTASK_FLOAT32:
  case GTASK_FLOAT64:
    if (isfinite(v->v.f))
      jw_real(w, v->v.f);
    else
      jw_puts(w, isnan(v->v.f) ? "\"NaN\"" : v->v.f > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    break;
  case GTASK_STRING:
    jw_str(w, v->v.s.ptr, v->v.s.len);
    break;
  }
  jw_put(w, "]", 1);
  return 0;
}

/* Writes the array of n values. */
static int jw_values(jw *w, const gtask_value *vals, size_t n, const char *what) {
  if (n > GTASK__MAX_VALUES) {
    gtask__set_error("too many %ss (%zu, at most %d)", what, n, GTASK__MAX_VALUES);
    return GTASK_EINVAL;
  }
  if (n > 0 && vals == NULL) {
    gtask__set_error("%zu %ss but no array", n, what);
    return GTASK_EINVAL;
  }
  jw_put(w, "[", 1);
  for (size_t i = 0; i < n; i++) {
    if (i) jw_put(w, ",", 1);
    int rc = jw_value(w, &vals[i], what, i + 1);
    if (rc != 0) return rc;
  }
  jw_put(w, "]", 1);
  return 0;
}

/* True if least <= v <= greatest (a function: the same test written inline
 * on a field's own type draws "always true" warnings). */
static bool in_range(int64_t v, int64_t least, int64_t greatest) {
  return v >= least && v <= greatest;
}

/* ,"key":integer */
static void jw_field_int(jw *w, const char *key, int64_t v) {
  jw_put(w, ",\"", 2);
  jw_puts(w, key);
  jw_put(w, "\":", 2);
  jw_i64(w, v);
}

/* Hands the buffer over, NUL-terminated, or frees it and says why. */
static int jw_finish(jw *w, int rc, char **out, size_t *len) {
  if (rc == 0 && w->rc == 0 && jw_room(w, 0)) {
    w->p[w->len] = '\0';
    *out = w->p;
    *len = w->len;
    return 0;
  }
  gtask__free(w->p);
  if (rc != 0) return rc; /* its message is set */
  if (w->rc == GTASK_ETOOBIG)
    gtask__set_error("encoded message exceeds %zu bytes", GTASK__MAX_BODY);
  else if (w->rc == GTASK_EINVAL)
    gtask__set_error("a float did not format");
  else
    gtask__set_error("out of memory");
  return w->rc;
}

int gtask__task_encode(const gtask_task *t, char **out, size_t *len) {
  if (out == NULL || len == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  *len = 0;
  if (t == NULL)
    return GTASK_EINVAL;
  if (!gtask__id_valid(t->id)) {
    gtask__set_error("task encode: invalid task id");
    return GTASK_EINVAL;
  }
  if (t->name == NULL || t->name[0] == '\0' || !gtask__utf8_valid(t->name, strlen(t->name))) {
    gtask__set_error("task encode: task name empty or not UTF-8");
    return GTASK_EINVAL;
  }
  if (!gtask__queue_valid(t->queue)) {
    gtask__set_error("task encode: invalid queue name");
    return GTASK_EINVAL;
  }
  /* The integer fields (codec.h), one local each, a 0 read as the value when
   * absent; each must be in range, and the backoff max at least the first. */
#define XX(member, key, type, least, greatest, absent, kept) \
  int64_t member = t->member ? (int64_t)t->member : (absent);
  GTASK__TASK_INT_FIELDS(XX)
#undef XX
  bool ok = backoff_max_ms >= backoff_first_ms;
#define XX(member, key, type, least, greatest, absent, kept) \
  ok = ok && in_range(member, least, greatest);
  GTASK__TASK_INT_FIELDS(XX)
#undef XX
  if (!ok) {
    gtask__set_error("task encode: negative time, negative retries or backoff max < first");
    return GTASK_EINVAL;
  }
  jw w = {NULL, 0, 0, 0};
  jw_put(&w, "{\"v\":", 5);
  jw_i64(&w, GTASK_MSG_VERSION);
  jw_put(&w, ",\"n\":", 5);
  jw_str(&w, t->name, strlen(t->name));
  jw_put(&w, ",\"a\":", 5);
  int rc = jw_values(&w, t->args, t->nargs, "argument");
  if (rc == 0) {
#define XX(member, key, type, least, greatest, absent, kept) \
  if ((kept) || member != (absent)) jw_field_int(&w, key, member);
    GTASK__TASK_INT_FIELDS(XX)
#undef XX
    if (t->last_error != NULL) {
      jw_put(&w, ",\"e\":", 5);
      jw_error_str(&w, t->last_error);
    }
    jw_put(&w, "}", 1);
  }
  return jw_finish(&w, rc, out, len);
}

int gtask__result_encode(const gtask_result *r, char **out, size_t *len) {
  if (out == NULL || len == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  *len = 0;
  if (r == NULL)
    return GTASK_EINVAL;
  if (r->status < GTASK_PENDING || r->status > GTASK_CANCELLED) {
    gtask__set_error("result encode: invalid status %d", (int)r->status);
    return GTASK_EINVAL;
  }
  jw w = {NULL, 0, 0, 0};
  jw_put(&w, "{\"v\":", 5);
  jw_i64(&w, GTASK_RESULT_VERSION);
  jw_put(&w, ",\"s\":\"", 6);
  jw_puts(&w, gtask_status_name(r->status));
  jw_put(&w, "\"", 1);
  int rc = 0;
  if (r->nvalues > 0) {
    jw_put(&w, ",\"vals\":", 8);
    rc = jw_values(&w, r->values, r->nvalues, "value");
  }
  if (rc == 0) {
    if (r->error != NULL) {
      jw_put(&w, ",\"err\":", 7);
      jw_error_str(&w, r->error);
    }
#define XX(member, key, type, least, greatest, absent, kept) \
  if ((kept) || r->member != (absent)) jw_field_int(&w, key, r->member);
    GTASK__RESULT_INT_FIELDS(XX)
#undef XX
    jw_put(&w, "}", 1);
  }
  return jw_finish(&w, rc, out, len);
}
