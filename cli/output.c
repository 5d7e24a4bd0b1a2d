/* output.c -- how `gtask` prints: typed values as text (one per line) or JSON,
 * one-line JSON objects with our own small escaping printer (the program needs
 * no JSON parser, and libgtask's process-wide jansson allocator stays its own
 * business), and a task's result with the exit code it implies. */
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- values */

void out_format_double(char *buf, size_t size, double x, bool is_float32) {
  if (isnan(x)) {
    snprintf(buf, size, "NaN");
    return;
  }
  if (isinf(x)) {
    snprintf(buf, size, x > 0 ? "Infinity" : "-Infinity");
    return;
  }
  /* The shortest precision that reads back exactly: 0.1 prints as "0.1", not
   * "0.10000000000000001"; a float32 is read back as a float. */
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, x);
    if (is_float32 ? strtof(buf, NULL) == (float)x : strtod(buf, NULL) == x) return;
  }
  snprintf(buf, size, "%.17g", x);
}

void out_value_text(FILE *f, const gtask_value *v) {
  char num[64];
  switch (v->type) {
  case GTASK_BOOL:
    fputs(v->v.b ? "true" : "false", f);
    break;
  case GTASK_INT:
  case GTASK_INT8:
  case GTASK_INT16:
  case GTASK_INT32:
  case GTASK_INT64:
    fprintf(f, "%" PRId64, v->v.i);
    break;
  case GTASK_UINT:
  case GTASK_UINT8:
  case GTASK_UINT16:
  case GTASK_UINT32:
  case GTASK_UINT64:
    fprintf(f, "%" PRIu64, v->v.u);
    break;
  case GTASK_FLOAT32:
  case GTASK_FLOAT64:
    out_format_double(num, sizeof(num), v->v.f, v->type == GTASK_FLOAT32);
    fputs(num, f);
    break;
  case GTASK_STRING:
    fwrite(v->v.s.ptr, 1, v->v.s.len, f); /* as it is, embedded NULs included */
    break;
  }
}

void out_text_escaped(FILE *f, const char *s, size_t len) {
  for (size_t k = 0; k < len; k++) {
    unsigned char ch = (unsigned char)s[k];
    switch (ch) {
    case '\\': fputs("\\\\", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    default:
      if (ch < 0x20 || ch == 0x7f)
        fprintf(f, "\\x%02x", ch);
      else
        fputc(ch, f);
    }
  }
}

/* ---------------------------------------------------------------- JSON */

void out_json_string(FILE *f, const char *s, size_t len) {
  fputc('"', f);
  for (size_t k = 0; k < len; k++) {
    unsigned char ch = (unsigned char)s[k];
    switch (ch) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    case '\b': fputs("\\b", f); break;
    case '\f': fputs("\\f", f); break;
    default:
      /* Control characters (NUL included) escaped; other bytes, UTF-8 as the
       * protocol's strings are, pass through. */
      if (ch < 0x20 || ch == 0x7f)
        fprintf(f, "\\u%04x", ch);
      else
        fputc(ch, f);
    }
  }
  fputc('"', f);
}

static void json_value(FILE *f, const gtask_value *v) {
  char num[64];
  switch (v->type) {
  case GTASK_FLOAT32:
  case GTASK_FLOAT64:
    out_format_double(num, sizeof(num), v->v.f, v->type == GTASK_FLOAT32);
    if (isfinite(v->v.f))
      fputs(num, f);
    else
      out_json_string(f, num, strlen(num)); /* JSON has no NaN or Infinity */
    break;
  case GTASK_STRING:
    out_json_string(f, v->v.s.ptr, v->v.s.len);
    break;
  default:
    out_value_text(f, v); /* integers and bools are valid JSON as text */
    break;
  }
}

static void key(out_obj *o, const char *k) {
  fputs(o->first ? "{" : ",", o->f);
  o->first = false;
  out_json_string(o->f, k, strlen(k));
  fputc(':', o->f);
}

void out_obj_begin(out_obj *o, FILE *f) {
  o->f = f;
  o->first = true;
}

void out_obj_str(out_obj *o, const char *k, const char *val) {
  key(o, k);
  if (val)
    out_json_string(o->f, val, strlen(val));
  else
    fputs("null", o->f);
}

void out_obj_strn(out_obj *o, const char *k, const char *val, size_t len) {
  key(o, k);
  out_json_string(o->f, val, len);
}

void out_obj_int(out_obj *o, const char *k, long long val) {
  key(o, k);
  fprintf(o->f, "%lld", val);
}

void out_obj_bool(out_obj *o, const char *k, bool val) {
  key(o, k);
  fputs(val ? "true" : "false", o->f);
}

void out_obj_values(out_obj *o, const char *k, const gtask_value *vals, size_t n) {
  key(o, k);
  fputc('[', o->f);
  for (size_t i = 0; i < n; i++) {
    if (i) fputc(',', o->f);
    json_value(o->f, &vals[i]);
  }
  fputc(']', o->f);
}

void out_obj_key(out_obj *o, const char *k) { key(o, k); }

void out_obj_strs(out_obj *o, const char *k, char *const *vals, size_t n) {
  key(o, k);
  fputc('[', o->f);
  for (size_t i = 0; i < n; i++) {
    if (i) fputc(',', o->f);
    out_json_string(o->f, vals[i], strlen(vals[i]));
  }
  fputc(']', o->f);
}

void out_obj_end(out_obj *o) {
  fputs(o->first ? "{}\n" : "}\n", o->f);
  fflush(o->f);
}

void out_cancelled_json(FILE *f, const char *id, bool running) {
  out_obj o;
  out_obj_begin(&o, f);
  out_obj_str(&o, "task_id", id);
  out_obj_str(&o, "status", gtask_status_name(GTASK_CANCELLED));
  out_obj_bool(&o, "running", running);
  out_obj_end(&o);
}

/* ---------------------------------------------------------------- results */

int out_result(const cli *c, const gtask_result *r) {
  bool final = r->status == GTASK_SUCCESS || r->status == GTASK_FAILURE ||
               r->status == GTASK_CANCELLED;
  int code = r->status == GTASK_SUCCESS ? CLI_OK : final ? CLI_FAILED : CLI_TIMEOUT;
  if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_str(&o, "task_id", r->id);
    out_obj_str(&o, "status", gtask_status_name(r->status));
    out_obj_values(&o, "values", r->values, r->nvalues);
    out_obj_str(&o, "error", r->error);
    out_obj_int(&o, "attempts", r->attempts);
    out_obj_end(&o);
    return code;
  }
  if (r->status == GTASK_SUCCESS) {
    for (size_t i = 0; i < r->nvalues; i++) {
      out_value_text(stdout, &r->values[i]);
      fputc('\n', stdout);
    }
    fflush(stdout);
  } else if (r->status == GTASK_FAILURE) {
    cli_error("task %s failed after %u attempt%s: %s", r->id, r->attempts,
              r->attempts == 1 ? "" : "s", r->error ? r->error : "(no error message)");
  } else if (r->status == GTASK_CANCELLED) {
    cli_error("task %s was cancelled", r->id);
  } else if (!final) {
    cli_error("task %s has not finished: %s%s%s", r->id, gtask_status_name(r->status),
              r->error ? ", last error: " : "", r->error ? r->error : "");
  }
  return code;
}
