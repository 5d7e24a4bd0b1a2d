/* decode_fast.c -- the codec's fast path: task messages and result records in
 * the compact form encode.c writes, read without jansson.
 *
 * A worker decodes every message it leases.  jansson builds a tree first
 * (~21,000 instructions and a dozen allocations for `add(1, 2)`, two thirds of
 * a worker's work per task), so messages in the form our encoder writes are
 * read directly: compact, known fields once each, integers without fraction
 * or exponent, strings without escapes, and arguments of the integer, bool and
 * string types.  Anything else -- whitespace, an escape, a float, an unknown or
 * repeated field, a value out of range, any error -- is declined
 * (GTASK__DECLINED) to the reference decoder (decode.c), which gives the
 * answer and the reason.  So the fast path either returns exactly what the
 * reference returns or declines: it applies the reference's rules, never its
 * own (tests/unit/test_codec.c and tests/fuzz/fuzz_message.c check that).
 * Result records, which a client reads one per task, take the same path
 * (fast_result).
 *
 * Nothing here is needed for correctness: declining everything would only be
 * slower.  So a format change may leave this file alone: it declines a key or
 * a value form it does not know, and a version newer than FAST_MSG_VERSION or
 * FAST_RESULT_VERSION, so messages with the change go to the reference.
 * codec.h lists every place a change touches.
 */
#include "codec.h"

#include <string.h>

/* The newest task message and result record versions this file reads; it
 * declines newer ones, in which a key it knows may mean something else.
 * Raise them once this file reads what the new version changed. */
#define FAST_MSG_VERSION 2
#define FAST_RESULT_VERSION 1
_Static_assert(FAST_MSG_VERSION <= GTASK_MSG_VERSION && FAST_RESULT_VERSION <= GTASK_RESULT_VERSION,
               "the fast path would read versions the reference refuses");

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
      return gtask__utf8_valid(start, *n);
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

/* A field's JSON integer in [min, max].  A minus sign only where min < 0: a
 * "-0" elsewhere is left to the reference (our encoder never writes it).
 * Inline: out of line, its calls cost ~50 instructions per message. */
static inline bool f_field(fcur *c, int64_t min, int64_t max, int64_t *out) {
  bool neg;
  uint64_t mag;
  if (!f_int(c, &neg, &mag) || (neg && min >= 0)) return false;
  int64_t v = !neg ? (int64_t)mag : mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
  if (v < min || v > max) return false;
  *out = v;
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
  if (!f_lit(&first, "[", 1)) return GTASK__DECLINED;
  if (!f_lit(&first, "]", 1)) {
    do {
      if (++count > GTASK__MAX_VALUES || !f_pair(&first, NULL, NULL, &strbytes))
        return GTASK__DECLINED;
    } while (f_lit(&first, ",", 1));
    if (!f_lit(&first, "]", 1)) return GTASK__DECLINED;
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

/* A task message's fields, numbered for the mask of those seen: its strings
 * and arguments, then the integer fields of GTASK__TASK_INT_FIELDS. */
enum task_field {
  TF_V,
  TF_N,
  TF_A,
  TF_E,
#define XX(member, key, type, least, greatest, absent, kept) TF_##member,
  GTASK__TASK_INT_FIELDS(XX)
#undef XX
  TF_NONE /* an unknown key */
};
_Static_assert(TF_NONE < 32, "the mask of fields seen is 32 bits");

static enum task_field task_field(const char *k, size_t kl) {
  if (kl == 1 && k[0] == 'v') return TF_V;
  if (kl == 1 && k[0] == 'n') return TF_N;
  if (kl == 1 && k[0] == 'a') return TF_A;
  if (kl == 1 && k[0] == 'e') return TF_E;
#define XX(member, key, type, least, greatest, absent, kept) \
  if (kl == sizeof(key) - 1 && memcmp(k, key, sizeof(key) - 1) == 0) return TF_##member;
  GTASK__TASK_INT_FIELDS(XX)
#undef XX
  return TF_NONE;
}

static int fast_task(const char *buf, size_t len, const char *id, const char *queue,
                     gtask_task **out) {
  if (buf == NULL || len == 0 || len > GTASK__MAX_BODY || id == NULL || !gtask__id_valid(id) ||
      queue == NULL || !gtask__queue_valid(queue))
    return GTASK__DECLINED;
  fcur c = {buf, buf + len};
  unsigned seen = 0;
  int64_t version = 0, x = 0;
  const char *name = NULL, *e = NULL;
  size_t name_len = 0, e_len = 0;
  fcur args = {NULL, NULL};
  gtask_task *t = gtask__calloc(1, sizeof(*t));
  if (t == NULL) return GTASK_ENOMEM;
#define XX(member, key, type, least, greatest, absent, kept) t->member = (absent);
  GTASK__TASK_INT_FIELDS(XX)
#undef XX
  int rc = GTASK__DECLINED;
  if (!f_lit(&c, "{", 1)) goto out;
  do {
    const char *k;
    size_t kl;
    if (!f_str(&c, &k, &kl) || !f_lit(&c, ":", 1)) goto out;
    enum task_field f = task_field(k, kl);
    if (f == TF_NONE || (seen & 1u << f)) goto out; /* unknown or repeated: jansson decides */
    seen |= 1u << f;
    bool ok;
    switch (f) {
    case TF_V: ok = f_field(&c, 1, FAST_MSG_VERSION, &version); break;
    case TF_N: ok = f_str(&c, &name, &name_len) && name_len > 0; break;
    case TF_E: ok = f_str(&c, &e, &e_len); break;
    case TF_A: /* skipped now, read once the rest is known to be ours */
      args = c;
      ok = f_skip_array(&c);
      break;
#define XX(member, key, type, least, greatest, absent, kept) \
  case TF_##member: ok = f_field(&c, least, greatest, &x), t->member = (type)x; break;
      GTASK__TASK_INT_FIELDS(XX)
#undef XX
    default: ok = false; break;
    }
    if (!ok) goto out;
  } while (f_lit(&c, ",", 1));
  if (!f_lit(&c, "}", 1) || c.p != c.end) goto out;
  unsigned required = 1u << TF_V | 1u << TF_N | 1u << TF_A;
  if ((seen & required) != required || t->backoff_max_ms < t->backoff_first_ms) goto out;
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

/* A result record's fields, numbered as a task message's are. */
enum result_field {
  RF_V,
  RF_S,
  RF_VALS,
  RF_ERR,
#define XX(member, key, type, least, greatest, absent, kept) RF_##member,
  GTASK__RESULT_INT_FIELDS(XX)
#undef XX
  RF_NONE /* an unknown key */
};
_Static_assert(RF_NONE < 32, "the mask of fields seen is 32 bits");

static enum result_field result_field(const char *k, size_t kl) {
  if (kl == 1 && k[0] == 'v') return RF_V;
  if (kl == 1 && k[0] == 's') return RF_S;
  if (kl == 4 && memcmp(k, "vals", 4) == 0) return RF_VALS;
  if (kl == 3 && memcmp(k, "err", 3) == 0) return RF_ERR;
#define XX(member, key, type, least, greatest, absent, kept) \
  if (kl == sizeof(key) - 1 && memcmp(k, key, sizeof(key) - 1) == 0) return RF_##member;
  GTASK__RESULT_INT_FIELDS(XX)
#undef XX
  return RF_NONE;
}

/* Result records in our compact form, read directly under the rules of
 * fast_task (what gtask__result_encode writes: "v", "s", then "vals", "err"
 * and the integer fields as present).  Declines what it does not read. */
static int fast_result(const char *buf, size_t len, const char *id, gtask_result **out) {
  if (buf == NULL || len == 0 || len > GTASK__MAX_BODY) return GTASK__DECLINED;
  fcur c = {buf, buf + len};
  unsigned seen = 0;
  int64_t x = 0;
  const char *e = NULL;
  size_t e_len = 0;
  fcur vals = {NULL, NULL};
  gtask_result *r = gtask__calloc(1, sizeof(*r));
  if (r == NULL) return GTASK_ENOMEM;
#define XX(member, key, type, least, greatest, absent, kept) r->member = (absent);
  GTASK__RESULT_INT_FIELDS(XX)
#undef XX
  int rc = GTASK__DECLINED;
  if (!f_lit(&c, "{", 1)) goto out;
  do {
    const char *k;
    size_t kl;
    if (!f_str(&c, &k, &kl) || !f_lit(&c, ":", 1)) goto out;
    enum result_field f = result_field(k, kl);
    if (f == RF_NONE || (seen & 1u << f)) goto out; /* unknown or repeated: jansson decides */
    seen |= 1u << f;
    bool ok = false;
    const char *s;
    size_t sl;
    switch (f) {
    case RF_V: ok = f_field(&c, 1, FAST_RESULT_VERSION, &x); break;
    case RF_S:
      if (!f_str(&c, &s, &sl)) break;
      for (int st = GTASK_PENDING; st <= GTASK_CANCELLED; st++) {
        const char *name = gtask_status_name((gtask_status)st);
        if (strlen(name) == sl && memcmp(name, s, sl) == 0) r->status = (gtask_status)st;
      }
      ok = r->status != 0;
      break;
    case RF_VALS: vals = c; ok = f_skip_array(&c); break;
    case RF_ERR: ok = f_str(&c, &e, &e_len); break;
#define XX(member, key, type, least, greatest, absent, kept) \
  case RF_##member: ok = f_field(&c, least, greatest, &x), r->member = (type)x; break;
      GTASK__RESULT_INT_FIELDS(XX)
#undef XX
    default: break;
    }
    if (!ok) goto out;
  } while (f_lit(&c, ",", 1));
  unsigned required = 1u << RF_V | 1u << RF_S;
  if (!f_lit(&c, "}", 1) || c.p != c.end || (seen & required) != required) goto out;
  if ((seen & 1u << RF_VALS) && (rc = f_values(&vals, &r->values, &r->nvalues)) != 0) goto out;
  gtask__result_set_id(r, id);
  rc = GTASK_ENOMEM;
  if (e != NULL && (r->error = f_dup(e, e_len)) == NULL) goto out;
  *out = r;
  return 0;
out:
  gtask_result_free(r);
  return rc;
}

/* ---------------------------------------------------------------- entry points */

int gtask__task_decode_fast(const char *buf, size_t len, const char *id, const char *queue,
                            gtask_task **out) {
  *out = NULL;
  return fast_task(buf, len, id, queue, out);
}

int gtask__result_decode_fast(const char *buf, size_t len, const char *id, gtask_result **out) {
  *out = NULL;
  return fast_result(buf, len, id, out);
}
