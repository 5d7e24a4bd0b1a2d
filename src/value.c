/* value.c -- typed values: deep copies, range checks, and the argument checks
 * and conversions behind the GTASK_HANDLER typed-handler macros.
 *
 * A gtask_value carries its type and one union member; for the sized integer
 * types the member must hold a value in the type's range, and a float32 must
 * hold a double that is exactly a float.  The codec (encode.c, decode.c)
 * relies on gtask__value_check before encoding and produces only checked
 * values when decoding, so handlers can trust what they receive.
 */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- copies */

int gtask__values_copy(const gtask_value *vals, size_t n, gtask_value **out) {
  *out = NULL;
  if (n == 0)
    return 0;
  if (vals == NULL || n > SIZE_MAX / sizeof(gtask_value))
    return GTASK_EINVAL;
  size_t total = n * sizeof(gtask_value);
  for (size_t i = 0; i < n; i++) {
    if (vals[i].type != GTASK_STRING)
      continue;
    if (vals[i].v.s.ptr == NULL)
      return GTASK_EINVAL;
    size_t len = vals[i].v.s.len;
    if (len >= SIZE_MAX - total)
      return GTASK_ENOMEM; /* cannot be represented: treat as too much memory */
    total += len + 1;
  }

  /* Layout: the array, then each string's bytes and a terminator. */
  gtask_value *copy = gtask__malloc(total);
  if (copy == NULL)
    return GTASK_ENOMEM;
  char *bytes = (char *)(copy + n);
  for (size_t i = 0; i < n; i++) {
    copy[i] = vals[i];
    if (vals[i].type == GTASK_STRING) {
      size_t len = vals[i].v.s.len;
      if (len > 0)
        memcpy(bytes, vals[i].v.s.ptr, len);
      bytes[len] = '\0';
      copy[i].v.s.ptr = bytes;
      bytes += len + 1;
    }
  }
  *out = copy;
  return 0;
}

/* ---------------------------------------------------------------- ranges */

static bool is_signed_int(gtask_type t) { return t >= GTASK_INT && t <= GTASK_INT64; }
static bool is_unsigned_int(gtask_type t) { return t >= GTASK_UINT && t <= GTASK_UINT64; }
static bool is_float(gtask_type t) { return t == GTASK_FLOAT32 || t == GTASK_FLOAT64; }

/* Bounds of the integer types (GTASK_INT and GTASK_UINT are 64 bits). */
static int64_t signed_min(gtask_type t) {
  switch (t) {
  case GTASK_INT8:
    return INT8_MIN;
  case GTASK_INT16:
    return INT16_MIN;
  case GTASK_INT32:
    return INT32_MIN;
  default:
    return INT64_MIN;
  }
}

static int64_t signed_max(gtask_type t) {
  switch (t) {
  case GTASK_INT8:
    return INT8_MAX;
  case GTASK_INT16:
    return INT16_MAX;
  case GTASK_INT32:
    return INT32_MAX;
  default:
    return INT64_MAX;
  }
}

static uint64_t unsigned_max(gtask_type t) {
  switch (t) {
  case GTASK_UINT8:
    return UINT8_MAX;
  case GTASK_UINT16:
    return UINT16_MAX;
  case GTASK_UINT32:
    return UINT32_MAX;
  default:
    return UINT64_MAX;
  }
}

/* True if the finite or non-finite double f is exactly a float.  The range
 * test comes first: converting an out-of-range double to float is undefined. */
static bool float32_exact(double f) {
  if (!isfinite(f))
    return true;
  if (fabs(f) > FLT_MAX)
    return false;
  return (double)(float)f == f;
}

int gtask__value_check(const gtask_value *v) {
  if (v == NULL)
    return GTASK_EINVAL;
  switch (v->type) {
  case GTASK_BOOL:
  case GTASK_FLOAT64:
    return 0;
  case GTASK_INT:
  case GTASK_INT8:
  case GTASK_INT16:
  case GTASK_INT32:
  case GTASK_INT64:
    return v->v.i >= signed_min(v->type) && v->v.i <= signed_max(v->type) ? 0 : GTASK_ERANGE;
  case GTASK_UINT:
  case GTASK_UINT8:
  case GTASK_UINT16:
  case GTASK_UINT32:
  case GTASK_UINT64:
    return v->v.u <= unsigned_max(v->type) ? 0 : GTASK_ERANGE;
  case GTASK_FLOAT32:
    return float32_exact(v->v.f) ? 0 : GTASK_ERANGE;
  case GTASK_STRING:
    return v->v.s.ptr != NULL ? 0 : GTASK_EINVAL;
  }
  return GTASK_EINVAL;
}

/* ---------------------------------------------------------------- typed handlers */

/* Formats the reason for a failed check into a buffer and reports it both as
 * the task's failure (when there is a task context) and as the thread's last
 * error, which is what lets tests check the messages without a server. */
static int args_fail(gtask_ctx *ctx, const char *fmt, ...) GTASK__PRINTF(2, 3);
static int args_fail(gtask_ctx *ctx, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  gtask__set_error("%s", msg);
  if (ctx != NULL)
    gtask_ctx_fail(ctx, "%s", msg);
  return GTASK_ETYPE;
}

/* Checks that the integer argument a fits the integer parameter type w. */
static int check_int(gtask_ctx *ctx, const char *fn, size_t idx, gtask_type w,
                     const gtask_value *a) {
  bool fits;
  if (is_signed_int(a->type)) {
    int64_t x = a->v.i;
    if (is_signed_int(w))
      fits = x >= signed_min(w) && x <= signed_max(w);
    else
      fits = x >= 0 && (uint64_t)x <= unsigned_max(w);
    if (!fits)
      return args_fail(ctx, "%s: argument %zu: %s value %lld out of range", fn, idx,
                       gtask_type_name(w), (long long)x);
  } else {
    uint64_t x = a->v.u;
    if (is_signed_int(w))
      fits = x <= (uint64_t)signed_max(w);
    else
      fits = x <= unsigned_max(w);
    if (!fits)
      return args_fail(ctx, "%s: argument %zu: %s value %llu out of range", fn, idx,
                       gtask_type_name(w), (unsigned long long)x);
  }
  return 0;
}

int gtask__check_args(gtask_ctx *ctx, const char *fn, const gtask_type *want, size_t nwant,
                      const gtask_value *args, size_t nargs) {
  if (fn == NULL)
    fn = "?";
  if (nargs != nwant)
    return args_fail(ctx, "%s: expected %zu argument%s, got %zu", fn, nwant,
                     nwant == 1 ? "" : "s", nargs);
  if (nargs > 0 && (want == NULL || args == NULL))
    return args_fail(ctx, "%s: no arguments given", fn);
  for (size_t i = 0; i < nargs; i++) {
    gtask_type w = want[i];
    const gtask_value *a = &args[i];
    size_t idx = i + 1;
    bool same_kind = (is_signed_int(w) || is_unsigned_int(w))
                         ? is_signed_int(a->type) || is_unsigned_int(a->type)
                     : is_float(w) ? is_float(a->type)
                                   : a->type == w;
    if (!same_kind)
      return args_fail(ctx, "%s: argument %zu: expected %s, got %s", fn, idx,
                       gtask_type_name(w), gtask_type_name(a->type));
    if (is_signed_int(w) || is_unsigned_int(w)) {
      int rc = check_int(ctx, fn, idx, w, a);
      if (rc != 0)
        return rc;
    } else if (w == GTASK_FLOAT32 && isfinite(a->v.f) && fabs(a->v.f) > FLT_MAX) {
      /* Narrowing loses precision silently (the sender's choice) but a finite
       * value beyond float's range would become infinite. */
      return args_fail(ctx, "%s: argument %zu: float32 value %g out of range", fn, idx,
                       a->v.f);
    } else if (w == GTASK_STRING && a->v.s.ptr == NULL) {
      return args_fail(ctx, "%s: argument %zu: string without bytes", fn, idx);
    }
  }
  return 0;
}

/* The conversions below assume gtask__check_args accepted the value. */

int64_t gtask__arg_i(const gtask_value *v) {
  return is_unsigned_int(v->type) ? (int64_t)v->v.u : v->v.i;
}

uint64_t gtask__arg_u(const gtask_value *v) {
  return is_signed_int(v->type) ? (uint64_t)v->v.i : v->v.u;
}

double gtask__arg_f(const gtask_value *v) { return v->v.f; }
bool gtask__arg_b(const gtask_value *v) { return v->v.b; }
const char *gtask__arg_s(const gtask_value *v) { return v->v.s.ptr; }
