/* decode.c -- the codec's decoder, the reference: task messages and result
 * records from JSON, and the decoding entry points of internal.h.
 *
 * jansson parses the text into a tree (any valid JSON: whitespace, escapes,
 * keys in any order, forms other producers write), then each field is checked
 * and converted here.  This code decides what is well-formed, following
 * docs/PROTOCOL.md: everything else is GTASK_EPROTO with a reason in err
 * ("argument 2: int8 value 300 out of range").  It reads both message
 * versions (version 1 carried the task id and queue, which now come from what
 * holds the message).
 *
 * It is also the slow path: the entry points (gtask__task_decode_in,
 * gtask__result_decode) first try the fast path of decode_fast.c, which reads
 * the compact form encode.c writes without building a tree, and come here
 * when it declines.  The fast path follows this file's rules and never
 * answers differently (tests/unit/test_codec.c and tests/fuzz/fuzz_message.c
 * check that), so a rule changes here first.
 *
 * The format, and every place a change to it touches: codec.h.
 */
#include "codec.h"

#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

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

/* ---------------------------------------------------------------- parsing, fields, values */

/* Parses buf into a JSON object whose "v" is a version this code reads
 * (1..max_version).  On success *root is a new reference. */
static int load(const char *buf, size_t len, int max_version, json_t **root, char *err,
                size_t errlen) {
  *root = NULL;
  if (len > GTASK__MAX_BODY) {
    gtask__fmt(err, errlen, "message of %zu bytes exceeds the limit of %zu", len, GTASK__MAX_BODY);
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
  if (count > GTASK__MAX_VALUES) {
    gtask__fmt(err, errlen, "too many %ss (%zu, at most %d)", what, count, GTASK__MAX_VALUES);
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

/* ---------------------------------------------------------------- task messages */

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
#define XX(member, key, type, least, greatest, absent, kept)                     \
  if ((rc = get_int(root, key, least, greatest, absent, &x, err, errlen)) != 0)  \
    goto fail;                                                                   \
  t->member = (type)x;
  GTASK__TASK_INT_FIELDS(XX)
#undef XX
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

/* ---------------------------------------------------------------- result records */

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
  gtask__result_set_id(r, id);

  const char *s;
  if ((rc = get_str(root, "s", true, &s, err, errlen)) != 0)
    goto fail;
  r->status = 0;
  for (int st = GTASK_PENDING; st <= GTASK_CANCELLED; st++) {
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
#define XX(member, key, type, least, greatest, absent, kept)                     \
  if ((rc = get_int(root, key, least, greatest, absent, &x, err, errlen)) != 0)  \
    goto fail;                                                                   \
  r->member = (type)x;
  GTASK__RESULT_INT_FIELDS(XX)
#undef XX

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

/* ---------------------------------------------------------------- entry points
 * The fast path first; the reference for whatever it declines.  An allocation
 * failure on the fast path is the answer (the reference would need more). */

int gtask__task_decode_in(const char *buf, size_t len, const char *id, const char *queue,
                          gtask_task **out, char *err, size_t errlen) {
  gtask__fmt(err, errlen, "%s", "");
  if (out == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  int rc = gtask__task_decode_fast(buf, len, id, queue, out);
  if (rc == 0) return 0;
  if (rc == GTASK_ENOMEM) {
    gtask__fmt(err, errlen, "out of memory");
    return rc;
  }
  return task_decode_jansson(buf, len, id, queue, out, err, errlen);
}

int gtask__task_decode(const char *buf, size_t len, gtask_task **out, char *err,
                       size_t errlen) {
  return gtask__task_decode_in(buf, len, NULL, NULL, out, err, errlen);
}

int gtask__task_decode_ref(const char *buf, size_t len, const char *id, const char *queue,
                           gtask_task **out, char *err, size_t errlen) {
  gtask__fmt(err, errlen, "%s", "");
  if (out == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  return task_decode_jansson(buf, len, id, queue, out, err, errlen);
}

int gtask__result_decode(const char *buf, size_t len, const char *id, gtask_result **out,
                         char *err, size_t errlen) {
  gtask__fmt(err, errlen, "%s", "");
  if (out == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  int rc = gtask__result_decode_fast(buf, len, id, out);
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

/* ---------------------------------------------------------------- ownership */

void gtask__task_free(gtask_task *t) {
  if (t == NULL)
    return;
  gtask__free(t->name);
  gtask__free(t->queue);
  gtask__free(t->args);
  gtask__free(t->last_error);
  gtask__free(t);
}

void gtask_result_free(gtask_result *r) {
  if (r == NULL)
    return;
  gtask__free(r->values);
  gtask__free(r->error);
  gtask__free(r);
}
