/* message.c -- the codec: task messages and result records to and from JSON.
 *
 * Brokers carry the encoded task as opaque bytes and backends store the encoded
 * result; only this file knows the format.  docs/PROTOCOL.md is the
 * specification; this comment is its summary.
 *
 * Task message, version 2 (GTASK_MSG_VERSION):
 *   {"v":2, "n":"<name>", "a":[VALUE...],
 *    "t":timeout_ms, "r":retry_max, "at":attempts, "l":lost,
 *    "bf":backoff_first_ms, "bm":backoff_max_ms, "c":created_ms,
 *    "x":expires_ms, "e":"last error"}
 *   "t","r","at","l","x" are left out when 0 and "e" when NULL; "bf" and "bm"
 *   are left out when they equal the defaults (1000 and 60000; 0 at encode
 *   also means the default).  The task id and queue are not in the message:
 *   whatever holds it carries them (the stream entry's "i" field, the 36 bytes
 *   before the message in the scheduled set, the dead set's hash field, the
 *   stream's key), which saves ~60 bytes of Redis memory per queued task.
 *   Version 1 had them as "id" and "q"; a decoder still reads it (when both a
 *   field and the holder give an id or queue, they must agree).
 * Result record, version 1 (GTASK_RESULT_VERSION):
 *   {"v":1, "s":"SUCCESS", "vals":[VALUE...], "err":"msg", "ec":-17, "at":n}
 *   "vals", "err", "ec" and "at" are left out when empty or 0.  The task id is
 *   not stored: it is the key.
 * VALUE is a pair [type name, value]: ["int64",5], ["string","x"],
 *   ["bool",true], ["float64",0.1].
 *   - Integers are JSON integers, except uint/uint64 values above INT64_MAX,
 *     which are decimal strings ("18446744073709551615").  A decoder accepts
 *     either form for every integer type and checks the declared type's range.
 *   - Floats are JSON reals printed with 17 significant digits, which
 *     round-trips every double exactly; NaN and the infinities are the strings
 *     "NaN", "Infinity" and "-Infinity" (the sign of a NaN is not kept).  A
 *     float32 is written as the double of the float, so it reads back exactly;
 *     a decoder refuses a float32 whose number is not exactly a float
 *     (["float32", 0.1]) rather than rounding it.
 *   - Strings are JSON strings with their length, so embedded NULs survive
 *     (as \u0000).  JSON text is UTF-8: a string argument or value that is not
 *     valid UTF-8 cannot be encoded (GTASK_EINVAL); send binary data in some
 *     text encoding (base64).  Error messages ("e", "err") are different: they
 *     come from handlers and must never make a result unstorable, so invalid
 *     bytes in them are replaced by '?'.
 * Decoders ignore keys they do not know, so a field may be added within a
 * version as long as old readers can do without it.
 *
 * Changing the format: a change that old readers cannot ignore (a new meaning
 * for an existing key, a required key, a new value form) needs a new version
 * number; then teach the decoders both versions before any encoder writes the
 * new one, and update docs/PROTOCOL.md and tests/unit/test_codec.c.
 *
 * Decoders never trust their input (it is fuzzed by tests/fuzz/fuzz_message.c):
 * every malformed field is GTASK_EPROTO with a human reason in err.
 */
#include "internal.h"

#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#define MAX_BODY ((size_t)16 << 20) /* larger messages are GTASK_ETOOBIG */
#define MAX_VALUES 1024             /* arguments of a task, values of a result */
#define DEFAULT_BACKOFF_FIRST_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 60000
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

/* ---------------------------------------------------------------- jansson */

static pthread_once_t json_once = PTHREAD_ONCE_INIT;

/* Set when a jansson allocation on this thread fails.  jansson does not
 * report every such failure: its lexer ignores a failed append to its token
 * buffer (jansson 2.14 load.c lex_save), silently dropping a character of a
 * string or number, and reports other failures while parsing as syntax
 * errors.  So the codec clears this flag before each jansson call and, when
 * it is set afterwards, returns GTASK_ENOMEM whatever jansson returned. */
static _Thread_local bool json_oom;

static void *json_malloc_hook(size_t n) {
  void *p = gtask__malloc(n);
  if (p == NULL)
    json_oom = true;
  return p;
}

static void json_init_once(void) { json_set_alloc_funcs(json_malloc_hook, gtask__free); }

/* jansson's allocator is process-wide: after this, every jansson allocation of
 * the process goes through gtask__malloc (plain malloc underneath, so objects
 * an application created before are still freed correctly). */
void gtask__json_init(void) { pthread_once(&json_once, json_init_once); }

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the well-formed UTF-8 sequence at s (left bytes available), or 0
 * if there is none: overlong forms, surrogates and code points above U+10FFFF
 * are rejected, as jansson does. */
static size_t utf8_seq_len(const unsigned char *s, size_t left) {
  unsigned c = s[0];
  size_t n;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (left < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

static bool utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    if (p[i] < 0x80) { /* fast path for ASCII */
      i++;
      continue;
    }
    size_t n = utf8_seq_len(p + i, len - i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

/* ---------------------------------------------------------------- encoding
 *
 * Straight into a buffer, with no JSON tree: building jansson values and
 * dumping them cost ~16,000 instructions for a one-integer result (a fifth of
 * a worker's work per task).  The bytes are exactly what json_dump with
 * DUMP_FLAGS writes for the same object (tests/unit/test_codec.c compares the
 * two), so that nothing about the format changed. */

typedef struct jw {
  char *p;
  size_t len, cap;
  int rc; /* GTASK_ENOMEM or GTASK_ETOOBIG once something did not fit */
} jw;

static bool jw_room(jw *w, size_t n) {
  if (w->rc) return false;
  if (n > MAX_BODY - w->len) {
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
  if (utf8_valid(s, len)) {
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
    size_t n = utf8_seq_len(p + i, len - i);
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
  if (v->type == GTASK_STRING && !utf8_valid(v->v.s.ptr, v->v.s.len)) {
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
  if (n > MAX_VALUES) {
    gtask__set_error("too many %ss (%zu, at most %d)", what, n, MAX_VALUES);
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
    gtask__set_error("encoded message exceeds %zu bytes", MAX_BODY);
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
  if (t->name == NULL || t->name[0] == '\0' || !utf8_valid(t->name, strlen(t->name))) {
    gtask__set_error("task encode: task name empty or not UTF-8");
    return GTASK_EINVAL;
  }
  if (!gtask__queue_valid(t->queue)) {
    gtask__set_error("task encode: invalid queue name");
    return GTASK_EINVAL;
  }
  int64_t bf = t->backoff_first_ms ? t->backoff_first_ms : DEFAULT_BACKOFF_FIRST_MS;
  int64_t bm = t->backoff_max_ms ? t->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
  if (t->timeout_ms < 0 || t->retry_max < 0 || bf < 1 || bm < bf || t->created_ms < 0 ||
      t->expires_ms < 0) {
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
    if (t->timeout_ms != 0) jw_field_int(&w, "t", t->timeout_ms);
    if (t->retry_max != 0) jw_field_int(&w, "r", t->retry_max);
    if (t->attempts != 0) jw_field_int(&w, "at", t->attempts);
    if (t->lost != 0) jw_field_int(&w, "l", t->lost);
    if (bf != DEFAULT_BACKOFF_FIRST_MS) jw_field_int(&w, "bf", bf);
    if (bm != DEFAULT_BACKOFF_MAX_MS) jw_field_int(&w, "bm", bm);
    jw_field_int(&w, "c", t->created_ms);
    if (t->expires_ms != 0) jw_field_int(&w, "x", t->expires_ms);
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
  if (r->status < GTASK_PENDING || r->status > GTASK_FAILURE) {
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
    if (r->error_code != 0) jw_field_int(&w, "ec", r->error_code);
    if (r->attempts != 0) jw_field_int(&w, "at", r->attempts);
    jw_put(&w, "}", 1);
  }
  return jw_finish(&w, rc, out, len);
}

/* ---------------------------------------------------------------- decoding */

/* Parses buf into a JSON object whose "v" is a version this code reads
 * (1..max_version).  On success *root is a new reference. */
static int load(const char *buf, size_t len, int max_version, json_t **root, char *err,
                size_t errlen) {
  *root = NULL;
  if (len > MAX_BODY) {
    gtask__fmt(err, errlen, "message of %zu bytes exceeds the limit of %zu", len, MAX_BODY);
    return GTASK_ETOOBIG;
  }
  if (buf == NULL || len == 0) {
    gtask__fmt(err, errlen, "empty message");
    return GTASK_EPROTO;
  }
  json_error_t je;
  json_oom = false;
  json_t *j = json_loadb(buf, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
  if (json_oom || (j == NULL && json_error_code(&je) == json_error_out_of_memory)) {
    json_decref(j); /* possibly corrupted: see json_oom */
    gtask__fmt(err, errlen, "out of memory");
    return GTASK_ENOMEM;
  }
  if (j == NULL) {
    gtask__fmt(err, errlen, "invalid JSON at byte %d: %s", je.position, je.text);
    return GTASK_EPROTO;
  }
  if (!json_is_object(j)) {
    gtask__fmt(err, errlen, "not a JSON object");
    goto bad;
  }
  json_t *v = json_object_get(j, "v");
  if (v == NULL) {
    gtask__fmt(err, errlen, "missing field \"v\"");
    goto bad;
  }
  if (!json_is_integer(v)) {
    gtask__fmt(err, errlen, "field \"v\": not an integer");
    goto bad;
  }
  json_int_t version = json_integer_value(v);
  if (version > max_version) {
    gtask__fmt(err, errlen, "unsupported message version %lld", (long long)version);
    goto bad;
  }
  if (version < 1) {
    gtask__fmt(err, errlen, "invalid message version %lld", (long long)version);
    goto bad;
  }
  *root = j;
  return 0;
bad:
  json_decref(j);
  return GTASK_EPROTO;
}

/* Reads integer field key of obj into *out: def when absent, else it must be a
 * JSON integer in [min, max]. */
static int get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t def,
                   int64_t *out, char *err, size_t errlen) {
  json_t *j = json_object_get(obj, key);
  if (j == NULL) {
    *out = def;
    return 0;
  }
  if (!json_is_integer(j)) {
    gtask__fmt(err, errlen, "field \"%s\": not an integer", key);
    return GTASK_EPROTO;
  }
  json_int_t x = json_integer_value(j);
  if (x < min || x > max) {
    gtask__fmt(err, errlen, "field \"%s\": %lld out of range [%lld, %lld]", key, (long long)x,
               (long long)min, (long long)max);
    return GTASK_EPROTO;
  }
  *out = x;
  return 0;
}

/* Reads string field key of obj, without embedded NULs: *out points into obj
 * (or is NULL when absent and not required). */
static int get_str(const json_t *obj, const char *key, bool required, const char **out,
                   char *err, size_t errlen) {
  *out = NULL;
  json_t *j = json_object_get(obj, key);
  if (j == NULL) {
    if (!required)
      return 0;
    gtask__fmt(err, errlen, "missing field \"%s\"", key);
    return GTASK_EPROTO;
  }
  if (!json_is_string(j)) {
    gtask__fmt(err, errlen, "field \"%s\": not a string", key);
    return GTASK_EPROTO;
  }
  const char *s = json_string_value(j);
  if (strlen(s) != json_string_length(j)) {
    gtask__fmt(err, errlen, "field \"%s\": contains a NUL character", key);
    return GTASK_EPROTO;
  }
  *out = s;
  return 0;
}

/* Parses the decimal integer s[0..len): an optional '-' (if allow_minus) and
 * 1..20 digits, nothing else.  *neg and *mag receive sign and magnitude.
 * Returns false if it is not such a number or the magnitude overflows. */
static bool parse_decimal(const char *s, size_t len, bool allow_minus, bool *neg,
                          uint64_t *mag, bool *overflow) {
  *neg = false;
  *mag = 0;
  *overflow = false;
  size_t i = 0;
  if (allow_minus && len > 0 && s[0] == '-') {
    *neg = true;
    i = 1;
  }
  if (i == len)
    return false;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    unsigned d = (unsigned)(s[i] - '0');
    if (*mag > (UINT64_MAX - d) / 10)
      *overflow = true;
    else
      *mag = *mag * 10 + d;
  }
  return true;
}

/* Decodes the value jv of declared type t into *out (strings excluded).
 * label is "argument 3" or "value 1" for messages. */
static int decode_scalar(const json_t *jv, gtask_type t, gtask_value *out, const char *label,
                         char *err, size_t errlen) {
  const char *tn = gtask_type_name(t);
  out->type = t;
  switch (t) {
  case GTASK_BOOL:
    if (!json_is_boolean(jv)) {
      gtask__fmt(err, errlen, "%s: bool value is not true or false", label);
      return GTASK_EPROTO;
    }
    out->v.b = json_is_true(jv);
    return 0;

  case GTASK_INT:
  case GTASK_INT8:
  case GTASK_INT16:
  case GTASK_INT32:
  case GTASK_INT64:
  case GTASK_UINT:
  case GTASK_UINT8:
  case GTASK_UINT16:
  case GTASK_UINT32:
  case GTASK_UINT64: {
    bool is_signed = t <= GTASK_INT64;
    bool neg, overflow = false;
    uint64_t mag;
    if (json_is_integer(jv)) {
      json_int_t x = json_integer_value(jv);
      neg = x < 0;
      mag = neg ? (uint64_t)(-(x + 1)) + 1 : (uint64_t)x; /* no overflow at INT64_MIN */
    } else if (json_is_string(jv)) {
      const char *s = json_string_value(jv);
      size_t n = json_string_length(jv);
      if (!parse_decimal(s, n, true, &neg, &mag, &overflow)) {
        gtask__fmt(err, errlen, "%s: %s value \"%.40s\" is not an integer", label, tn, s);
        return GTASK_EPROTO;
      }
      if (overflow) {
        gtask__fmt(err, errlen, "%s: %s value %.40s out of range", label, tn, s);
        return GTASK_EPROTO;
      }
    } else {
      gtask__fmt(err, errlen, "%s: %s value is not an integer", label, tn);
      return GTASK_EPROTO;
    }
    /* Range of the declared type, compared on sign and magnitude. */
    gtask_value probe;
    probe.type = t;
    bool fits;
    if (is_signed) {
      fits = neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX;
      probe.v.i = !fits                                ? 0
                  : !neg                               ? (int64_t)mag
                  : mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN
                                                       : -(int64_t)mag;
    } else {
      fits = !neg || mag == 0;
      probe.v.u = mag;
    }
    if (!fits || gtask__value_check(&probe) != 0) {
      gtask__fmt(err, errlen, "%s: %s value %s%" PRIu64 " out of range", label, tn,
                 neg ? "-" : "", mag);
      return GTASK_EPROTO;
    }
    out->v = probe.v;
    return 0;
  }

  case GTASK_FLOAT32:
  case GTASK_FLOAT64: {
    double d;
    if (json_is_real(jv)) {
      d = json_real_value(jv);
    } else if (json_is_integer(jv)) {
      d = (double)json_integer_value(jv);
    } else if (json_is_string(jv)) {
      const char *s = json_string_value(jv);
      size_t n = json_string_length(jv);
      if (n == 3 && memcmp(s, "NaN", 3) == 0) {
        d = NAN;
      } else if (n == 8 && memcmp(s, "Infinity", 8) == 0) {
        d = INFINITY;
      } else if (n == 9 && memcmp(s, "-Infinity", 9) == 0) {
        d = -INFINITY;
      } else {
        gtask__fmt(err, errlen, "%s: %s value \"%.40s\" is not a number", label, tn, s);
        return GTASK_EPROTO;
      }
    } else {
      gtask__fmt(err, errlen, "%s: %s value is not a number", label, tn);
      return GTASK_EPROTO;
    }
    /* A float32 is the double the number denotes, and that double must be a
     * binary32 value (gtask__value_check): ["float32", 0.1] is malformed, not
     * rounded to 0.1f (issue 14).  What the encoder writes always passes. */
    out->v.f = d;
    if (gtask__value_check(out) != 0) {
      if (fabs(d) > FLT_MAX)
        gtask__fmt(err, errlen, "%s: float32 value %g out of range", label, d);
      else
        gtask__fmt(err, errlen, "%s: float32 value %.17g is not representable in binary32",
                   label, d);
      return GTASK_EPROTO;
    }
    return 0;
  }

  case GTASK_STRING:
    break;
  }
  gtask__fmt(err, errlen, "%s: bad type", label);
  return GTASK_EPROTO;
}

/* If el is a ["string", "<text>"] pair, the JSON string; else NULL. */
static const json_t *string_payload(const json_t *el) {
  if (!json_is_array(el) || json_array_size(el) != 2)
    return NULL;
  const json_t *tn = json_array_get(el, 0);
  const json_t *jv = json_array_get(el, 1);
  if (!json_is_string(tn) || !json_is_string(jv) || strcmp(json_string_value(tn), "string") != 0)
    return NULL;
  return jv;
}

/* Decodes the array of [type, value] pairs arr into one allocation laid out
 * as gtask__values_copy does (*out NULL when empty; free with gtask__free).
 * what is "argument" or "value", for messages. */
static int decode_values(const json_t *arr, const char *what, gtask_value **out, size_t *n,
                         char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  size_t count = json_array_size(arr);
  if (count == 0)
    return 0;
  if (count > MAX_VALUES) {
    gtask__fmt(err, errlen, "too many %ss (%zu, at most %d)", what, count, MAX_VALUES);
    return GTASK_EPROTO;
  }
  /* First pass: the size of the block (the array, then the string bytes). */
  size_t total = count * sizeof(gtask_value);
  for (size_t i = 0; i < count; i++) {
    const json_t *s = string_payload(json_array_get(arr, i));
    if (s != NULL)
      total += json_string_length(s) + 1; /* bounded by the 16 MiB input */
  }
  gtask_value *vals = gtask__malloc(total);
  if (vals == NULL) {
    gtask__fmt(err, errlen, "out of memory");
    return GTASK_ENOMEM;
  }
  char *bytes = (char *)(vals + count);
  char *end = (char *)vals + total;

  /* Second pass: check and convert each pair. */
  for (size_t i = 0; i < count; i++) {
    char label[32];
    gtask__fmt(label, sizeof(label), "%s %zu", what, i + 1);
    const json_t *el = json_array_get(arr, i);
    if (!json_is_array(el) || json_array_size(el) != 2) {
      gtask__fmt(err, errlen, "%s: not a [type, value] pair", label);
      goto bad;
    }
    const json_t *tn = json_array_get(el, 0);
    const json_t *jv = json_array_get(el, 1);
    if (!json_is_string(tn)) {
      gtask__fmt(err, errlen, "%s: type name is not a string", label);
      goto bad;
    }
    gtask_type t;
    if (strlen(json_string_value(tn)) != json_string_length(tn) ||
        gtask_type_parse(json_string_value(tn), &t) != 0) {
      gtask__fmt(err, errlen, "%s: unknown type \"%.32s\"", label, json_string_value(tn));
      goto bad;
    }
    if (t != GTASK_STRING) {
      if (decode_scalar(jv, t, &vals[i], label, err, errlen) != 0)
        goto bad;
      continue;
    }
    if (!json_is_string(jv)) {
      gtask__fmt(err, errlen, "%s: string value is not a string", label);
      goto bad;
    }
    size_t len = json_string_length(jv);
    if (len >= (size_t)(end - bytes)) { /* cannot happen: the first pass counted it */
      gtask__fmt(err, errlen, "%s: internal size mismatch", label);
      goto bad;
    }
    memcpy(bytes, json_string_value(jv), len);
    bytes[len] = '\0';
    vals[i].type = GTASK_STRING;
    vals[i].v.s.ptr = bytes;
    vals[i].v.s.len = len;
    bytes += len + 1;
  }
  *out = vals;
  *n = count;
  return 0;
bad:
  gtask__free(vals);
  return GTASK_EPROTO;
}

void gtask__task_free(gtask_task *t) {
  if (t == NULL)
    return;
  gtask__free(t->name);
  gtask__free(t->queue);
  gtask__free(t->args);
  gtask__free(t->last_error);
  gtask__free(t);
}

int gtask__task_decode(const char *buf, size_t len, gtask_task **out, char *err,
                       size_t errlen) {
  return gtask__task_decode_in(buf, len, NULL, NULL, out, err, errlen);
}

/* The task's id or queue: field `key` of the message (version 1) or, when it
 * is absent, `held` (what holds the message); both present must agree. */
static int held_str(json_t *root, const char *key, const char *held, const char **out, char *err,
                    size_t errlen) {
  int rc = get_str(root, key, false, out, err, errlen);
  if (rc != 0)
    return rc;
  if (held != NULL && held[0] != '\0') {
    if (*out != NULL && strcmp(*out, held) != 0) {
      gtask__fmt(err, errlen, "field \"%s\": \"%.40s\" differs from its holder's \"%.40s\"", key,
                 *out, held);
      return GTASK_EPROTO;
    }
    *out = held;
  }
  if (*out == NULL) {
    gtask__fmt(err, errlen, "missing field \"%s\"", key);
    return GTASK_EPROTO;
  }
  return 0;
}

/* ---------------------------------------------------------------- the fast path
 *
 * A worker decodes every message it leases.  jansson builds a tree first
 * (~21,000 instructions and a dozen allocations for `add(1, 2)`, two thirds of
 * a worker's work per task), so messages in the form our encoder writes are
 * read directly: compact, known fields once each, integers without fraction
 * or exponent, strings without escapes, and arguments of the integer, bool and
 * string types.  Anything else -- whitespace, an escape, a float, an unknown or
 * repeated field, a value out of range, any error -- is left to the jansson
 * decoder below, which gives the answer and the reason.  So the fast path
 * either returns exactly what the jansson path returns or declines
 * (tests/unit/test_codec.c and tests/fuzz/fuzz_message.c check that).  Result
 * records, which a client reads one per task, take the same path
 * (fast_result). */

#define FAST_DECLINE 1

typedef struct fcur {
  const char *p, *end;
} fcur;

static bool f_lit(fcur *c, const char *lit, size_t n) {
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) return false;
  c->p += n;
  return true;
}

/* A string without escapes or control characters, valid UTF-8. */
static bool f_str(fcur *c, const char **s, size_t *n) {
  if (c->p >= c->end || *c->p != '"') return false;
  const char *start = ++c->p;
  while (c->p < c->end) {
    unsigned char ch = (unsigned char)*c->p;
    if (ch == '"') {
      *s = start;
      *n = (size_t)(c->p - start);
      c->p++;
      return utf8_valid(start, *n);
    }
    if (ch == '\\' || ch < 0x20) return false;
    c->p++;
  }
  return false;
}

/* A NUL-terminated copy of s[0..n) (a string f_str read), or NULL. */
static char *f_dup(const char *s, size_t n) {
  char *d = gtask__malloc(n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* A JSON integer within int64 (what jansson reads as one), followed by a
 * delimiter: sign and magnitude. */
static bool f_int(fcur *c, bool *neg, uint64_t *mag) {
  *neg = c->p < c->end && *c->p == '-';
  if (*neg) c->p++;
  const char *d = c->p;
  uint64_t m = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    if (m > (UINT64_MAX - 9) / 10) return false;
    m = m * 10 + (uint64_t)(*c->p - '0');
    c->p++;
  }
  size_t digits = (size_t)(c->p - d);
  if (digits == 0 || digits > 19 || (digits > 1 && *d == '0')) return false;
  if (c->p >= c->end || (*c->p != ',' && *c->p != '}' && *c->p != ']')) return false;
  if (m > (*neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX)) return false;
  *mag = m;
  return true;
}

/* A non-negative field value in [min, max]. */
static bool f_field(fcur *c, int64_t min, int64_t max, int64_t *out) {
  bool neg;
  uint64_t mag;
  if (!f_int(c, &neg, &mag) || neg || mag > (uint64_t)max || (int64_t)mag < min) return false;
  *out = (int64_t)mag;
  return true;
}

/* One ["type", value] pair; with vals NULL only checks it and counts its
 * string bytes. */
static bool f_pair(fcur *c, gtask_value *val, char **bytes, size_t *strbytes) {
  const char *tn;
  size_t tl;
  char name[16];
  gtask_type t;
  if (!f_lit(c, "[", 1) || !f_str(c, &tn, &tl) || tl >= sizeof(name) || !f_lit(c, ",", 1))
    return false;
  memcpy(name, tn, tl);
  name[tl] = '\0';
  if (gtask_type_parse(name, &t) != 0) return false;
  gtask_value v;
  v.type = t;
  if (t == GTASK_BOOL) {
    if (f_lit(c, "true", 4))
      v.v.b = true;
    else if (f_lit(c, "false", 5))
      v.v.b = false;
    else
      return false;
  } else if (t == GTASK_STRING) {
    const char *s;
    size_t n;
    if (!f_str(c, &s, &n)) return false;
    *strbytes += n + 1;
    if (val) {
      memcpy(*bytes, s, n);
      (*bytes)[n] = '\0';
      v.v.s.ptr = *bytes;
      v.v.s.len = n;
      *bytes += n + 1;
    }
  } else if (t <= GTASK_UINT64) { /* the integer types: decode_scalar's rule */
    bool neg;
    uint64_t mag;
    if (!f_int(c, &neg, &mag)) return false;
    if (t <= GTASK_INT64)
      v.v.i = !neg ? (int64_t)mag : mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    else if (neg && mag != 0)
      return false;
    else
      v.v.u = mag;
    if (gtask__value_check(&v) != 0) return false;
  } else {
    return false; /* floats: jansson reads them */
  }
  if (!f_lit(c, "]", 1)) return false;
  if (val) *val = v;
  return true;
}

/* A values array, twice: to count, then to fill one block (the layout
 * decode_values makes: one free releases it). */
static int f_values(fcur *c, gtask_value **out, size_t *nout) {
  fcur first = *c;
  size_t count = 0, strbytes = 0;
  if (!f_lit(&first, "[", 1)) return FAST_DECLINE;
  if (!f_lit(&first, "]", 1)) {
    do {
      if (++count > MAX_VALUES || !f_pair(&first, NULL, NULL, &strbytes)) return FAST_DECLINE;
    } while (f_lit(&first, ",", 1));
    if (!f_lit(&first, "]", 1)) return FAST_DECLINE;
  }
  if (count > 0) {
    gtask_value *vals = gtask__malloc(count * sizeof(gtask_value) + strbytes);
    if (vals == NULL) return GTASK_ENOMEM;
    char *bytes = (char *)(vals + count);
    c->p++; /* '[' */
    for (size_t i = 0; i < count; i++) {
      if (i) c->p++; /* ',' */
      (void)f_pair(c, &vals[i], &bytes, &strbytes);
    }
    *out = vals;
    *nout = count;
  }
  *c = first;
  return 0;
}

/* Skips an array whose strings hold no escapes (an escape declines later
 * anyway): for a field read once the rest is known to be ours. */
static bool f_skip_array(fcur *c) {
  int depth = 0;
  while (c->p < c->end) {
    char ch = *c->p++;
    if (ch == '[') depth++;
    if (ch == ']' && --depth == 0) return true;
    if (ch == '"') {
      while (c->p < c->end && *c->p != '"' && *c->p != '\\') c->p++;
      if (c->p >= c->end || *c->p == '\\') return false;
      c->p++;
    }
  }
  return false;
}

static int fast_task(const char *buf, size_t len, const char *id, const char *queue,
                     gtask_task **out) {
  if (buf == NULL || len == 0 || len > MAX_BODY || id == NULL || !gtask__id_valid(id) ||
      queue == NULL || !gtask__queue_valid(queue))
    return FAST_DECLINE;
  fcur c = {buf, buf + len};
  enum { F_V = 1, F_N = 2, F_A = 4, F_T = 8, F_R = 16, F_AT = 32, F_L = 64, F_BF = 128, F_BM = 256,
         F_C = 512, F_X = 1024, F_E = 2048 };
  unsigned seen = 0;
  int64_t version = 0, x = 0;
  const char *name = NULL, *e = NULL;
  size_t name_len = 0, e_len = 0;
  fcur args = {NULL, NULL};
  gtask_task *t = gtask__calloc(1, sizeof(*t));
  if (t == NULL) return GTASK_ENOMEM;
  t->backoff_first_ms = DEFAULT_BACKOFF_FIRST_MS;
  t->backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
  int rc = FAST_DECLINE;
  if (!f_lit(&c, "{", 1)) goto out;
  do {
    const char *k;
    size_t kl;
    if (!f_str(&c, &k, &kl) || !f_lit(&c, ":", 1) || kl == 0 || kl > 2) goto out;
    unsigned f = kl == 1 ? (k[0] == 'v'   ? F_V
                            : k[0] == 'n' ? F_N
                            : k[0] == 'a' ? F_A
                            : k[0] == 't' ? F_T
                            : k[0] == 'r' ? F_R
                            : k[0] == 'l' ? F_L
                            : k[0] == 'c' ? F_C
                            : k[0] == 'x' ? F_X
                            : k[0] == 'e' ? F_E
                                          : 0)
                         : (k[0] == 'a' && k[1] == 't'   ? F_AT
                            : k[0] == 'b' && k[1] == 'f' ? F_BF
                            : k[0] == 'b' && k[1] == 'm' ? F_BM
                                                         : 0);
    if (f == 0 || (seen & f)) goto out; /* unknown or repeated: jansson decides */
    seen |= f;
    bool ok;
    switch (f) {
    case F_V: ok = f_field(&c, 1, GTASK_MSG_VERSION, &version); break;
    case F_N: ok = f_str(&c, &name, &name_len) && name_len > 0; break;
    case F_E: ok = f_str(&c, &e, &e_len); break;
    case F_A: /* skipped now, read once the rest is known to be ours */
      args = c;
      ok = f_skip_array(&c);
      break;
    case F_T: ok = f_field(&c, 0, INT64_MAX, &t->timeout_ms); break;
    case F_R: ok = f_field(&c, 0, INT32_MAX, &x), t->retry_max = (int32_t)x; break;
    case F_AT: ok = f_field(&c, 0, UINT32_MAX, &x), t->attempts = (uint32_t)x; break;
    case F_L: ok = f_field(&c, 0, UINT32_MAX, &x), t->lost = (uint32_t)x; break;
    case F_BF: ok = f_field(&c, 1, INT64_MAX, &t->backoff_first_ms); break;
    case F_BM: ok = f_field(&c, 1, INT64_MAX, &t->backoff_max_ms); break;
    case F_C: ok = f_field(&c, 0, INT64_MAX, &t->created_ms); break;
    default: ok = f_field(&c, 0, INT64_MAX, &t->expires_ms); break;
    }
    if (!ok) goto out;
  } while (f_lit(&c, ",", 1));
  if (!f_lit(&c, "}", 1) || c.p != c.end) goto out;
  if ((seen & (F_V | F_N | F_A)) != (F_V | F_N | F_A) || t->backoff_max_ms < t->backoff_first_ms)
    goto out;
  if ((rc = f_values(&args, &t->args, &t->nargs)) != 0) goto out;
  memcpy(t->id, id, GTASK_ID_SIZE);
  rc = GTASK_ENOMEM;
  if ((t->name = f_dup(name, name_len)) == NULL) goto out;
  if ((t->queue = gtask__strdup(queue)) == NULL) goto out;
  if (e != NULL && (t->last_error = f_dup(e, e_len)) == NULL) goto out;
  *out = t;
  return 0;
out:
  gtask__task_free(t);
  return rc;
}

/* The jansson decoder: the reference, and the path for whatever the fast one
 * declines. */
static int task_decode_jansson(const char *buf, size_t len, const char *id, const char *queue,
                               gtask_task **out, char *err, size_t errlen);

int gtask__task_decode_in(const char *buf, size_t len, const char *id, const char *queue,
                          gtask_task **out, char *err, size_t errlen) {
  gtask__fmt(err, errlen, "%s", "");
  if (out == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  int rc = fast_task(buf, len, id, queue, out);
  if (rc == 0) return 0;
  if (rc == GTASK_ENOMEM) {
    gtask__fmt(err, errlen, "out of memory");
    return rc;
  }
  return task_decode_jansson(buf, len, id, queue, out, err, errlen);
}

int gtask__task_decode_ref(const char *buf, size_t len, const char *id, const char *queue,
                           gtask_task **out, char *err, size_t errlen) {
  gtask__fmt(err, errlen, "%s", "");
  if (out == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  return task_decode_jansson(buf, len, id, queue, out, err, errlen);
}

int gtask__task_decode_fast(const char *buf, size_t len, const char *id, const char *queue,
                            gtask_task **out) {
  *out = NULL;
  return fast_task(buf, len, id, queue, out);
}

static int task_decode_jansson(const char *buf, size_t len, const char *id, const char *queue,
                               gtask_task **out, char *err, size_t errlen) {
  gtask__json_init();
  json_t *root;
  int rc = load(buf, len, GTASK_MSG_VERSION, &root, err, errlen);
  if (rc != 0)
    return rc;
  gtask_task *t = gtask__calloc(1, sizeof(*t));
  if (t == NULL) {
    rc = GTASK_ENOMEM;
    goto fail;
  }

  const char *s;
  if ((rc = held_str(root, "id", id, &s, err, errlen)) != 0)
    goto fail;
  if (!gtask__id_valid(s)) {
    gtask__fmt(err, errlen, "field \"id\": \"%.40s\" is not a task id", s);
    rc = GTASK_EPROTO;
    goto fail;
  }
  memcpy(t->id, s, GTASK_ID_SIZE); /* 36 characters and the NUL, checked above */

  if ((rc = get_str(root, "n", true, &s, err, errlen)) != 0)
    goto fail;
  if (s[0] == '\0') {
    gtask__fmt(err, errlen, "field \"n\": empty task name");
    rc = GTASK_EPROTO;
    goto fail;
  }
  if ((t->name = gtask__strdup(s)) == NULL)
    goto oom;

  if ((rc = held_str(root, "q", queue, &s, err, errlen)) != 0)
    goto fail;
  if (!gtask__queue_valid(s)) {
    gtask__fmt(err, errlen, "field \"q\": \"%.40s\" is not a valid queue name", s);
    rc = GTASK_EPROTO;
    goto fail;
  }
  if ((t->queue = gtask__strdup(s)) == NULL)
    goto oom;

  json_t *a = json_object_get(root, "a");
  if (a == NULL) {
    gtask__fmt(err, errlen, "missing field \"a\"");
    rc = GTASK_EPROTO;
    goto fail;
  }
  if (!json_is_array(a)) {
    gtask__fmt(err, errlen, "field \"a\": not an array");
    rc = GTASK_EPROTO;
    goto fail;
  }
  if ((rc = decode_values(a, "argument", &t->args, &t->nargs, err, errlen)) != 0)
    goto fail;

  int64_t x;
  if ((rc = get_int(root, "t", 0, INT64_MAX, 0, &t->timeout_ms, err, errlen)) != 0 ||
      (rc = get_int(root, "r", 0, INT32_MAX, 0, &x, err, errlen)) != 0)
    goto fail;
  t->retry_max = (int32_t)x;
  if ((rc = get_int(root, "at", 0, UINT32_MAX, 0, &x, err, errlen)) != 0)
    goto fail;
  t->attempts = (uint32_t)x;
  if ((rc = get_int(root, "l", 0, UINT32_MAX, 0, &x, err, errlen)) != 0)
    goto fail;
  t->lost = (uint32_t)x;
  if ((rc = get_int(root, "bf", 1, INT64_MAX, DEFAULT_BACKOFF_FIRST_MS, &t->backoff_first_ms,
                    err, errlen)) != 0 ||
      (rc = get_int(root, "bm", 1, INT64_MAX, DEFAULT_BACKOFF_MAX_MS, &t->backoff_max_ms, err,
                    errlen)) != 0 ||
      (rc = get_int(root, "c", 0, INT64_MAX, 0, &t->created_ms, err, errlen)) != 0 ||
      (rc = get_int(root, "x", 0, INT64_MAX, 0, &t->expires_ms, err, errlen)) != 0)
    goto fail;
  if (t->backoff_max_ms < t->backoff_first_ms) {
    gtask__fmt(err, errlen, "field \"bm\": backoff max %lld is below backoff first %lld",
               (long long)t->backoff_max_ms, (long long)t->backoff_first_ms);
    rc = GTASK_EPROTO;
    goto fail;
  }
  if ((rc = get_str(root, "e", false, &s, err, errlen)) != 0)
    goto fail;
  if (s != NULL && (t->last_error = gtask__strdup(s)) == NULL)
    goto oom;

  json_decref(root);
  *out = t;
  return 0;
oom:
  rc = GTASK_ENOMEM;
fail:
  if (rc == GTASK_ENOMEM)
    gtask__fmt(err, errlen, "out of memory");
  gtask__task_free(t);
  json_decref(root);
  return rc;
}

void gtask_result_free(gtask_result *r) {
  if (r == NULL)
    return;
  gtask__free(r->values);
  gtask__free(r->error);
  gtask__free(r);
}

/* A JSON integer in [min, max], either sign. */
static bool f_sfield(fcur *c, int64_t min, int64_t max, int64_t *out) {
  bool neg;
  uint64_t mag;
  if (!f_int(c, &neg, &mag)) return false;
  int64_t v = !neg ? (int64_t)mag : mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
  if (v < min || v > max) return false;
  *out = v;
  return true;
}

static void result_set_id(gtask_result *r, const char *id) {
  if (id != NULL) {
    size_t n = strnlen(id, GTASK_ID_SIZE - 1);
    memcpy(r->id, id, n);
    r->id[n] = '\0';
  }
}

/* Result records in our compact form, read directly under the rules of
 * fast_task (what gtask__result_encode writes: "v", "s", then "vals", "err",
 * "ec", "at" as present).  Declines what it does not read. */
static int fast_result(const char *buf, size_t len, const char *id, gtask_result **out) {
  if (buf == NULL || len == 0 || len > MAX_BODY) return FAST_DECLINE;
  fcur c = {buf, buf + len};
  enum { F_V = 1, F_S = 2, F_VALS = 4, F_ERR = 8, F_EC = 16, F_AT = 32 };
  unsigned seen = 0;
  int64_t x = 0;
  const char *e = NULL;
  size_t e_len = 0;
  fcur vals = {NULL, NULL};
  gtask_result *r = gtask__calloc(1, sizeof(*r));
  if (r == NULL) return GTASK_ENOMEM;
  int rc = FAST_DECLINE;
  if (!f_lit(&c, "{", 1)) goto out;
  do {
    const char *k;
    size_t kl;
    if (!f_str(&c, &k, &kl) || !f_lit(&c, ":", 1)) goto out;
    unsigned f = kl == 1 && k[0] == 'v'                ? F_V
                 : kl == 1 && k[0] == 's'              ? F_S
                 : kl == 4 && memcmp(k, "vals", 4) == 0 ? F_VALS
                 : kl == 3 && memcmp(k, "err", 3) == 0  ? F_ERR
                 : kl == 2 && memcmp(k, "ec", 2) == 0   ? F_EC
                 : kl == 2 && memcmp(k, "at", 2) == 0   ? F_AT
                                                        : 0;
    if (f == 0 || (seen & f)) goto out; /* unknown or repeated: jansson decides */
    seen |= f;
    bool ok = false;
    const char *s;
    size_t sl;
    switch (f) {
    case F_V: ok = f_field(&c, 1, GTASK_RESULT_VERSION, &x); break;
    case F_S:
      if (!f_str(&c, &s, &sl)) break;
      for (int st = GTASK_PENDING; st <= GTASK_FAILURE; st++) {
        const char *name = gtask_status_name((gtask_status)st);
        if (strlen(name) == sl && memcmp(name, s, sl) == 0) r->status = (gtask_status)st;
      }
      ok = r->status != 0;
      break;
    case F_VALS: vals = c; ok = f_skip_array(&c); break;
    case F_ERR: ok = f_str(&c, &e, &e_len); break;
    case F_EC: ok = f_sfield(&c, INT32_MIN, INT32_MAX, &x), r->error_code = (int)x; break;
    default: ok = f_field(&c, 0, UINT32_MAX, &x), r->attempts = (uint32_t)x; break;
    }
    if (!ok) goto out;
  } while (f_lit(&c, ",", 1));
  if (!f_lit(&c, "}", 1) || c.p != c.end || (seen & (F_V | F_S)) != (F_V | F_S)) goto out;
  if ((seen & F_VALS) && (rc = f_values(&vals, &r->values, &r->nvalues)) != 0) goto out;
  result_set_id(r, id);
  rc = GTASK_ENOMEM;
  if (e != NULL && (r->error = f_dup(e, e_len)) == NULL) goto out;
  *out = r;
  return 0;
out:
  gtask_result_free(r);
  return rc;
}

static int result_decode_jansson(const char *buf, size_t len, const char *id, gtask_result **out,
                                 char *err, size_t errlen);

int gtask__result_decode(const char *buf, size_t len, const char *id, gtask_result **out,
                         char *err, size_t errlen) {
  gtask__fmt(err, errlen, "%s", "");
  if (out == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  int rc = fast_result(buf, len, id, out);
  if (rc == 0) return 0;
  if (rc == GTASK_ENOMEM) {
    gtask__fmt(err, errlen, "out of memory");
    return rc;
  }
  return result_decode_jansson(buf, len, id, out, err, errlen);
}

int gtask__result_decode_ref(const char *buf, size_t len, const char *id, gtask_result **out,
                             char *err, size_t errlen) {
  gtask__fmt(err, errlen, "%s", "");
  if (out == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  return result_decode_jansson(buf, len, id, out, err, errlen);
}

int gtask__result_decode_fast(const char *buf, size_t len, const char *id, gtask_result **out) {
  *out = NULL;
  return fast_result(buf, len, id, out);
}

static int result_decode_jansson(const char *buf, size_t len, const char *id, gtask_result **out,
                                 char *err, size_t errlen) {
  gtask__json_init();
  json_t *root;
  int rc = load(buf, len, GTASK_RESULT_VERSION, &root, err, errlen);
  if (rc != 0)
    return rc;
  gtask_result *r = gtask__calloc(1, sizeof(*r));
  if (r == NULL) {
    rc = GTASK_ENOMEM;
    goto fail;
  }
  result_set_id(r, id);

  const char *s;
  if ((rc = get_str(root, "s", true, &s, err, errlen)) != 0)
    goto fail;
  r->status = 0;
  for (int st = GTASK_PENDING; st <= GTASK_FAILURE; st++) {
    if (strcmp(s, gtask_status_name((gtask_status)st)) == 0)
      r->status = (gtask_status)st;
  }
  if (r->status == 0) {
    gtask__fmt(err, errlen, "field \"s\": unknown status \"%.32s\"", s);
    rc = GTASK_EPROTO;
    goto fail;
  }

  json_t *vals = json_object_get(root, "vals");
  if (vals != NULL) {
    if (!json_is_array(vals)) {
      gtask__fmt(err, errlen, "field \"vals\": not an array");
      rc = GTASK_EPROTO;
      goto fail;
    }
    if ((rc = decode_values(vals, "value", &r->values, &r->nvalues, err, errlen)) != 0)
      goto fail;
  }

  if ((rc = get_str(root, "err", false, &s, err, errlen)) != 0)
    goto fail;
  if (s != NULL && (r->error = gtask__strdup(s)) == NULL) {
    rc = GTASK_ENOMEM;
    goto fail;
  }
  int64_t x;
  if ((rc = get_int(root, "ec", INT32_MIN, INT32_MAX, 0, &x, err, errlen)) != 0)
    goto fail;
  r->error_code = (int)x;
  if ((rc = get_int(root, "at", 0, UINT32_MAX, 0, &x, err, errlen)) != 0)
    goto fail;
  r->attempts = (uint32_t)x;

  json_decref(root);
  *out = r;
  return 0;
fail:
  if (rc == GTASK_ENOMEM)
    gtask__fmt(err, errlen, "out of memory");
  gtask_result_free(r);
  json_decref(root);
  return rc;
}
