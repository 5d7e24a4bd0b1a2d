/* test_codec.c -- the task message and result record codec (src/codec.h):
 * exact round trips of every type and field, the omitted defaults, the
 * rejection of every kind of malformed input with a reason, and allocation
 * failures at every step. */
#include "test.h"

#include "codec.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID "0f8fad5b-d9cb-469f-a165-70867728950e"

static gtask_task make_task(gtask_value *args, size_t nargs) {
  gtask_task t;
  memset(&t, 0, sizeof(t));
  memcpy(t.id, ID, GTASK_ID_SIZE);
  t.name = (char *)"add";
  t.queue = (char *)"default";
  t.args = args;
  t.nargs = nargs;
  t.created_ms = 1700000000123;
  return t;
}

/* Encodes t, decodes the result and returns it (the caller frees). */
static gtask_task *round_trip(const gtask_task *t, char **text) {
  char *buf;
  size_t len;
  ASSERT_OK(gtask__task_encode(t, &buf, &len));
  ASSERT_EQ(strlen(buf), len);
  gtask_task *d;
  char err[256];
  /* The message does not carry id and queue: its holder does. */
  ASSERT_NULL(strstr(buf, "\"id\""));
  ASSERT_NULL(strstr(buf, "\"q\""));
  int rc = gtask__task_decode_in(buf, len, t->id, t->queue, &d, err, sizeof(err));
  if (rc != 0)
    TEST_FAIL("decode of %s: %s: %s", buf, gtask_err_name(rc), err);
  ASSERT_STR_EQ(d->id, t->id);
  ASSERT_STR_EQ(d->queue, t->queue);
  if (text != NULL)
    *text = buf;
  else
    gtask__free(buf);
  return d;
}

/* Decodes text (NUL-terminated) as a task; returns the code, err the reason. */
static int decode_task(const char *text, char *err, size_t errlen) {
  gtask_task *t = (void *)1;
  int rc = gtask__task_decode(text, strlen(text), &t, err, errlen);
  if (rc == 0)
    gtask__task_free(t);
  else
    ASSERT_NULL(t);
  return rc;
}

static bool same_bits(double a, double b) { return memcmp(&a, &b, sizeof(a)) == 0; }

/* ---------------------------------------------------------------- round trips */

TEST(task_round_trip_integers) {
  gtask_value args[] = {
      gtask_int64(INT64_MIN), gtask_int64(INT64_MAX), gtask_int(-1),      gtask_int8(-128),
      gtask_int8(127),        gtask_int16(-32768),    gtask_int32(INT32_MAX),
      gtask_uint64(UINT64_MAX), gtask_uint((uint64_t)INT64_MAX + 1), gtask_uint8(255),
      gtask_uint16(65535),    gtask_uint32(UINT32_MAX), gtask_uint64(0), gtask_bool(true),
      gtask_bool(false),
  };
  size_t n = sizeof(args) / sizeof(args[0]);
  gtask_task t = make_task(args, n);
  char *text;
  gtask_task *d = round_trip(&t, &text);
  /* Above INT64_MAX, unsigned values are decimal strings. */
  ASSERT_STR_CONTAINS(text, "[\"uint64\",\"18446744073709551615\"]");
  ASSERT_STR_CONTAINS(text, "[\"uint\",\"9223372036854775808\"]");
  ASSERT_STR_CONTAINS(text, "[\"int64\",-9223372036854775808]");
  gtask__free(text);
  ASSERT_EQ(d->nargs, n);
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(d->args[i].type, args[i].type);
    if (args[i].type == GTASK_BOOL)
      ASSERT_EQ(d->args[i].v.b, args[i].v.b);
    else if (args[i].type >= GTASK_UINT && args[i].type <= GTASK_UINT64)
      ASSERT_EQ(d->args[i].v.u, args[i].v.u);
    else
      ASSERT_EQ(d->args[i].v.i, args[i].v.i);
  }
  gtask__task_free(d);
}

TEST(task_round_trip_floats) {
  double ds[] = {0.1, 1e308, -1e308, DBL_MAX, DBL_MIN, 5e-324, 2.2250738585072009e-308,
                 1.0 / 3.0, -0.0, 0.0, 123456789012345678.0, 1.0, -2.5};
  float fs[] = {0.1f, FLT_MAX, FLT_MIN, 1e-45f, -3.4028234e38f, 16777217.0f, 1.0f / 3.0f};
  gtask_value args[32];
  size_t n = 0;
  for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++)
    args[n++] = gtask_float64(ds[i]);
  for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
    args[n++] = gtask_float32(fs[i]);
  gtask_task t = make_task(args, n);
  gtask_task *d = round_trip(&t, NULL);
  ASSERT_EQ(d->nargs, n);
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(d->args[i].type, args[i].type);
    if (!same_bits(d->args[i].v.f, args[i].v.f))
      TEST_FAIL("arg %zu: %.17g (%a) came back as %.17g (%a)", i, args[i].v.f, args[i].v.f,
                d->args[i].v.f, d->args[i].v.f);
  }
  gtask__task_free(d);
}

TEST(task_round_trip_non_finite) {
  gtask_value args[] = {gtask_float64(NAN), gtask_float64(INFINITY), gtask_float64(-INFINITY),
                        gtask_float32(NAN), gtask_float32(INFINITY), gtask_float32(-INFINITY)};
  gtask_task t = make_task(args, 6);
  char *text;
  gtask_task *d = round_trip(&t, &text);
  ASSERT_STR_CONTAINS(text, "[\"float64\",\"NaN\"],[\"float64\",\"Infinity\"],"
                            "[\"float64\",\"-Infinity\"]");
  gtask__free(text);
  ASSERT_TRUE(isnan(d->args[0].v.f));
  ASSERT_TRUE(isinf(d->args[1].v.f) && d->args[1].v.f > 0);
  ASSERT_TRUE(isinf(d->args[2].v.f) && d->args[2].v.f < 0);
  ASSERT_TRUE(isnan(d->args[3].v.f));
  ASSERT_EQ(d->args[3].type, GTASK_FLOAT32);
  ASSERT_TRUE(isinf(d->args[4].v.f) && d->args[4].v.f > 0);
  ASSERT_TRUE(isinf(d->args[5].v.f) && d->args[5].v.f < 0);
  gtask__task_free(d);
}

TEST(task_round_trip_strings) {
  static const char nul[] = {'a', '\0', 'b', '\0'};
  const char *utf8 = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80 \"quoted\" \\ / \n\t\x01";
  gtask_value args[] = {gtask_strn(nul, sizeof(nul)), gtask_str(utf8), gtask_str(""),
                        gtask_strn("\0", 1)};
  gtask_task t = make_task(args, 4);
  gtask_task *d = round_trip(&t, NULL);
  ASSERT_EQ(d->nargs, 4);
  for (size_t i = 0; i < 4; i++) {
    ASSERT_EQ(d->args[i].type, GTASK_STRING);
    ASSERT_EQ(d->args[i].v.s.len, args[i].v.s.len);
    ASSERT_MEM_EQ(d->args[i].v.s.ptr, args[i].v.s.ptr, args[i].v.s.len);
    ASSERT_EQ(d->args[i].v.s.ptr[d->args[i].v.s.len], '\0');
  }
  gtask__task_free(d);
}

TEST(task_round_trip_fields) {
  gtask_task t = make_task(NULL, 0);
  t.timeout_ms = 5000;
  t.retry_max = 3;
  t.attempts = UINT32_MAX;
  t.lost = 2;
  t.backoff_first_ms = 250;
  t.backoff_max_ms = INT64_MAX;
  t.created_ms = INT64_MAX;
  t.expires_ms = 1800000000000;
  t.retry_on = 6;
  t.priority = GTASK_PRIORITY_URGENT;
  t.last_error = (char *)"boom: \xc3\xa9";
  char *text;
  gtask_task *d = round_trip(&t, &text);
  ASSERT_STR_CONTAINS(text, "\"bf\":250");
  ASSERT_STR_CONTAINS(text, "\"ro\":6");
  ASSERT_STR_CONTAINS(text, "\"pr\":2");
  gtask__free(text);
  ASSERT_STR_EQ(d->id, ID);
  ASSERT_STR_EQ(d->name, "add");
  ASSERT_STR_EQ(d->queue, "default");
  ASSERT_EQ(d->nargs, 0);
  ASSERT_NULL(d->args);
  ASSERT_EQ(d->timeout_ms, 5000);
  ASSERT_EQ(d->retry_max, 3);
  ASSERT_EQ(d->attempts, UINT32_MAX);
  ASSERT_EQ(d->lost, 2);
  ASSERT_EQ(d->backoff_first_ms, 250);
  ASSERT_EQ(d->backoff_max_ms, INT64_MAX);
  ASSERT_EQ(d->created_ms, INT64_MAX);
  ASSERT_EQ(d->expires_ms, 1800000000000);
  ASSERT_EQ(d->retry_on, 6);
  ASSERT_EQ(d->priority, GTASK_PRIORITY_URGENT);
  ASSERT_STR_EQ(d->last_error, "boom: \xc3\xa9");
  gtask__task_free(d);
}

TEST(task_defaults_are_omitted) {
  gtask_task t = make_task(NULL, 0);
  t.backoff_first_ms = 1000;
  t.backoff_max_ms = 60000;
  char *buf;
  size_t len;
  ASSERT_OK(gtask__task_encode(&t, &buf, &len));
  ASSERT_STR_EQ(buf, "{\"v\":2,\"n\":\"add\",\"a\":[],\"c\":1700000000123}");
  gtask_task *d;
  char err[128];
  ASSERT_OK(gtask__task_decode_in(buf, len, ID, "default", &d, err, sizeof(err)));
  ASSERT_EQ(d->backoff_first_ms, 1000);
  ASSERT_EQ(d->backoff_max_ms, 60000);
  ASSERT_EQ(d->timeout_ms, 0);
  ASSERT_EQ(d->retry_on, GTASK_RETRY_ON_TIMEOUT); /* "ro" absent: timeouts only */
  ASSERT_EQ(d->priority, 0);                        /* "pr" absent: level 0 */
  ASSERT_NULL(d->last_error);
  gtask__task_free(d);
  gtask__free(buf);

  /* Zero backoff at encode means the default too. */
  t.backoff_first_ms = 0;
  t.backoff_max_ms = 0;
  ASSERT_OK(gtask__task_encode(&t, &buf, &len));
  ASSERT_TRUE(strstr(buf, "\"bf\"") == NULL && strstr(buf, "\"bm\"") == NULL);
  gtask__free(buf);
}

TEST(task_last_error_invalid_utf8_is_replaced) {
  gtask_task t = make_task(NULL, 0);
  t.last_error = (char *)"bad \xff\xfe bytes \xc3";
  gtask_task *d = round_trip(&t, NULL);
  ASSERT_STR_EQ(d->last_error, "bad ?? bytes ?");
  gtask__task_free(d);
}

TEST(task_id_and_queue_come_from_the_holder) {
  char err[256];
  gtask_task *d;
  /* Version 2: the holder gives both. */
  const char *v2 = "{\"v\":2,\"n\":\"add\",\"a\":[]}";
  ASSERT_OK(gtask__task_decode_in(v2, strlen(v2), ID, "q1", &d, err, sizeof(err)));
  ASSERT_STR_EQ(d->id, ID);
  ASSERT_STR_EQ(d->queue, "q1");
  gtask__task_free(d);
  ASSERT_ERR(gtask__task_decode_in(v2, strlen(v2), ID, NULL, &d, err, sizeof(err)), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(err, "missing field \"q\"");
  ASSERT_ERR(gtask__task_decode_in(v2, strlen(v2), "not-an-id", "q1", &d, err, sizeof(err)),
             GTASK_EPROTO);
  ASSERT_STR_CONTAINS(err, "is not a task id");
  /* Version 1 carried them: still read, and they must agree with a holder. */
  const char *v1 = "{\"v\":1,\"id\":\"" ID "\",\"n\":\"add\",\"q\":\"q1\",\"a\":[]}";
  ASSERT_OK(gtask__task_decode_in(v1, strlen(v1), NULL, NULL, &d, err, sizeof(err)));
  ASSERT_STR_EQ(d->id, ID);
  ASSERT_STR_EQ(d->queue, "q1");
  gtask__task_free(d);
  ASSERT_OK(gtask__task_decode_in(v1, strlen(v1), ID, "q1", &d, err, sizeof(err)));
  gtask__task_free(d);
  ASSERT_ERR(gtask__task_decode_in(v1, strlen(v1), ID, "q2", &d, err, sizeof(err)), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(err, "field \"q\": \"q1\" differs from its holder's \"q2\"");
  ASSERT_ERR(gtask__task_decode_in(v1, strlen(v1), "00000000-0000-4000-8000-000000000001", "q1", &d,
                                   err, sizeof(err)),
             GTASK_EPROTO);
  ASSERT_STR_CONTAINS(err, "field \"id\"");
}

TEST(task_decode_lenient_forms) {
  char err[256];
  /* Other key order, unknown keys, integers as strings, floats from integers,
   * an exponent (a float32 must still be exact: see issue 14 below). */
  const char *text = "{\"zz\":[1,{}],\"a\":[[\"uint64\",5],[\"int8\",\"-7\"],[\"float64\",3],"
                     "[\"float32\",1.25e-1],[\"uint\",\"0\"]],\"q\":\"q\",\"n\":\"x\",\"id\":\"" ID
                     "\",\"v\":1}";
  gtask_task *d;
  ASSERT_OK(gtask__task_decode(text, strlen(text), &d, err, sizeof(err)));
  ASSERT_EQ(d->args[0].v.u, 5);
  ASSERT_EQ(d->args[1].v.i, -7);
  ASSERT_DBL_EQ(d->args[2].v.f, 3.0);
  ASSERT_DBL_EQ(d->args[3].v.f, 0.125);
  ASSERT_EQ(d->args[4].v.u, 0);
  ASSERT_EQ(d->created_ms, 0);
  gtask__task_free(d);
}

/* ---------------------------------------------------------------- typed values, exactly (issue 14)
 *
 * docs/PROTOCOL.md: a decoder range-checks each value against its declared
 * type, and a float32 holds a value exactly representable in binary32.  Each
 * pair below goes through every decoder as the one argument of a task and the
 * one value of a result record, and they must agree. */

/* Decodes the pair text (["type", value]) through the whole task decoder, the
 * reference and the fast path alone, and the same three for results.  They
 * agree or the test fails: all accept it with the same value (the fast paths
 * may decline instead), or all refuse it with GTASK_EPROTO (the fast paths
 * decline).  Returns 0 with *out the value (strings are not kept), or
 * GTASK_EPROTO with the reference's reason for the task in err. */
static int decode_pair(const char *pair, gtask_value *out, char *err, size_t errlen) {
  char task[256], result[256], rerr[256];
  snprintf(task, sizeof(task), "{\"v\":2,\"n\":\"add\",\"a\":[%s]}", pair);
  snprintf(result, sizeof(result), "{\"v\":1,\"s\":\"SUCCESS\",\"vals\":[%s]}", pair);
  gtask_task *whole = NULL, *ref = NULL, *fast = NULL;
  int rc = gtask__task_decode_in(task, strlen(task), ID, "default", &whole, rerr, sizeof(rerr));
  int ref_rc = gtask__task_decode_ref(task, strlen(task), ID, "default", &ref, err, errlen);
  int fast_rc = gtask__task_decode_fast(task, strlen(task), ID, "default", &fast);
  gtask_result *rwhole = NULL, *rref = NULL, *rfast = NULL;
  int r_rc = gtask__result_decode(result, strlen(result), ID, &rwhole, rerr, sizeof(rerr));
  int rref_rc = gtask__result_decode_ref(result, strlen(result), ID, &rref, rerr, sizeof(rerr));
  int rfast_rc = gtask__result_decode_fast(result, strlen(result), ID, &rfast);
  if (ref_rc != 0) {
    ASSERT_ERR(ref_rc, GTASK_EPROTO);
    if (rc != ref_rc || r_rc != ref_rc || rref_rc != ref_rc || fast_rc != 1 || rfast_rc != 1)
      TEST_FAIL("%s: the reference refuses it (%s) but task %d, fast %d, result %d, result "
                "reference %d, result fast %d",
                pair, err, rc, fast_rc, r_rc, rref_rc, rfast_rc);
    /* The same reason, naming a value instead of an argument (or both say the
     * JSON is invalid, at their own byte offsets). */
    if (strncmp(err, "argument 1: ", 12) == 0) {
      ASSERT_STR_CONTAINS(rerr, "value 1: ");
      ASSERT_STR_CONTAINS(rerr, err + 12);
    } else {
      ASSERT_STR_CONTAINS(err, "invalid JSON");
      ASSERT_STR_CONTAINS(rerr, "invalid JSON");
    }
    return ref_rc;
  }
  if (rc != 0 || r_rc != 0 || rref_rc != 0)
    TEST_FAIL("%s: the reference reads it but task %d, result %d, result reference %d (%s)", pair,
              rc, r_rc, rref_rc, rerr);
  const gtask_value *want = &ref->args[0];
  const gtask_value *got[] = {&whole->args[0], fast_rc == 0 ? &fast->args[0] : NULL,
                              &rwhole->values[0], &rref->values[0],
                              rfast_rc == 0 ? &rfast->values[0] : NULL};
  for (size_t k = 0; k < sizeof(got) / sizeof(got[0]); k++) {
    if (got[k] == NULL) continue;
    bool same = got[k]->type == want->type &&
                (want->type == GTASK_STRING
                     ? got[k]->v.s.len == want->v.s.len &&
                           memcmp(got[k]->v.s.ptr, want->v.s.ptr, want->v.s.len) == 0
                 : want->type == GTASK_BOOL ? got[k]->v.b == want->v.b
                                            : memcmp(&got[k]->v, &want->v, sizeof(want->v.u)) == 0);
    if (!same) TEST_FAIL("%s: decoder %zu reads another value than the reference", pair, k);
  }
  *out = *want;
  if (want->type == GTASK_STRING) out->v.s.ptr = NULL; /* freed below */
  gtask__task_free(whole);
  gtask__task_free(ref);
  gtask__task_free(fast);
  gtask_result_free(rwhole);
  gtask_result_free(rref);
  gtask_result_free(rfast);
  return 0;
}

/* Issue 14: the decoders rounded a float32 to the nearest float, so
 * ["float32", 0.1] read as 0.1f.  The number, read as the double it denotes
 * (as every JSON number is), must itself be a binary32 value. */
TEST(float32_values_must_be_exact_in_binary32) {
  static const struct {
    const char *text;
    const char *reason;
  } bad[] = {
      {"0.1", "float32 value 0.10000000000000001 is not representable in binary32"},
      {"-0.1", "not representable in binary32"},
      {"1.0000001", "not representable in binary32"},  /* between 1 and the next float */
      {"16777217", "not representable in binary32"},   /* an integer: 2^24 + 1 */
      {"16777217.0", "not representable in binary32"},
      {"1e-50", "not representable in binary32"},      /* would round to 0 */
      {"7e-46", "not representable in binary32"},      /* half the least denormal */
      {"2.1e-45", "not representable in binary32"},    /* between two denormals */
      {"3.4028235e38", "out of range"},                /* above FLT_MAX */
      {"-1e39", "out of range"},
      {"9223372036854774784", "not representable"}, /* 2^63 - 1024: 53 bits */
  };
  char err[256];
  gtask_value v;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char pair[96];
    snprintf(pair, sizeof(pair), "[\"float32\",%s]", bad[i].text);
    if (decode_pair(pair, &v, err, sizeof(err)) != GTASK_EPROTO)
      TEST_FAIL("%s was read as %.17g", pair, v.v.f);
    ASSERT_STR_CONTAINS(err, bad[i].reason);
    /* The same number is a fine float64. */
    snprintf(pair, sizeof(pair), "[\"float64\",%s]", bad[i].text);
    ASSERT_OK(decode_pair(pair, &v, err, sizeof(err)));
  }
  static const struct {
    const char *text;
    double want;
  } good[] = {
      {"0.5", 0.5},
      {"-0.0", -0.0},
      {"0", 0.0},
      {"16777216", 16777216.0},
      {"0.10000000149011612", (double)0.1f}, /* 0.1f as the encoder writes it */
      {"1.4012984643248171e-45", (double)FLT_TRUE_MIN},
      {"-1.4012984643248171e-45", -(double)FLT_TRUE_MIN},
      {"1.1754942106924411e-38", (double)(FLT_MIN - FLT_TRUE_MIN)}, /* largest denormal */
      {"1.1754943508222875e-38", (double)FLT_MIN},
      {"3.4028234663852886e+38", (double)FLT_MAX},
      {"-3.4028234663852886e38", -(double)FLT_MAX},
      {"9.2233720368547758e+18", 9223372036854775808.0}, /* 2^63 as the encoder writes it */
      {"\"Infinity\"", INFINITY},
      {"\"-Infinity\"", -INFINITY},
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    char pair[96];
    snprintf(pair, sizeof(pair), "[\"float32\",%s]", good[i].text);
    if (decode_pair(pair, &v, err, sizeof(err)) != 0) TEST_FAIL("%s refused: %s", pair, err);
    ASSERT_EQ(v.type, GTASK_FLOAT32);
    if (!same_bits(v.v.f, good[i].want))
      TEST_FAIL("%s read as %a, want %a", pair, v.v.f, good[i].want);
  }
  ASSERT_OK(decode_pair("[\"float32\",\"NaN\"]", &v, err, sizeof(err)));
  ASSERT_TRUE(isnan(v.v.f));
}

/* A float32 the encoder writes decodes to the same float, whatever its bits:
 * every exponent (denormals, the largest finite, the infinities, NaNs) with
 * edge and random mantissas, both signs, in a task and in a result. */
TEST(float32_encoded_values_round_trip_exactly) {
  enum { BATCH = 1024 };
  static gtask_value vals[BATCH];
  size_t n = 0, total = 0;
  static const uint32_t mantissas[] = {0, 1, 2, 3, 0x3fffff, 0x400000, 0x400001, 0x7ffffe, 0x7fffff};
  srand(14);
  for (uint32_t e = 0; e <= 0xff; e++) {
    for (size_t m = 0; m < sizeof(mantissas) / sizeof(mantissas[0]) + 4; m++) {
      uint32_t mant = m < sizeof(mantissas) / sizeof(mantissas[0])
                          ? mantissas[m]
                          : ((uint32_t)rand() << 8 ^ (uint32_t)rand()) & 0x7fffff;
      for (uint32_t sign = 0; sign <= 1; sign++) {
        uint32_t bits = sign << 31 | e << 23 | mant;
        float f;
        memcpy(&f, &bits, sizeof(f));
        vals[n++] = gtask_float32(f);
        if (n < BATCH && !(e == 0xff && m + 1 == sizeof(mantissas) / sizeof(mantissas[0]) + 4 &&
                           sign == 1))
          continue;
        /* A full batch (or the last): a task, then a result. */
        gtask_task t = make_task(vals, n);
        gtask_task *d = round_trip(&t, NULL);
        gtask_result r = {.status = GTASK_SUCCESS, .values = vals, .nvalues = n};
        char *buf;
        size_t len;
        char rerr[256];
        ASSERT_OK(gtask__result_encode(&r, &buf, &len));
        gtask_result *dr;
        if (gtask__result_decode(buf, len, ID, &dr, rerr, sizeof(rerr)) != 0)
          TEST_FAIL("result decode: %s", rerr);
        gtask__free(buf);
        ASSERT_EQ(d->nargs, n);
        ASSERT_EQ(dr->nvalues, n);
        for (size_t i = 0; i < n; i++) {
          double want = vals[i].v.f;
          for (int which = 0; which < 2; which++) {
            const gtask_value *got = which ? &dr->values[i] : &d->args[i];
            ASSERT_EQ(got->type, GTASK_FLOAT32);
            if (isnan(want) ? !isnan(got->v.f) : !same_bits(got->v.f, want))
              TEST_FAIL("float32 %a (%s) came back as %a", want, which ? "result" : "task",
                        got->v.f);
          }
        }
        gtask__task_free(d);
        gtask_result_free(dr);
        total += n;
        n = 0;
      }
    }
  }
  ASSERT_EQ(total, 256 * 13 * 2);
}

/* Every integer type's bounds, in both forms (a JSON integer, a decimal
 * string), and one past them; a uint/uint64 above INT64_MAX only as a
 * string (a JSON integer that large is invalid JSON to jansson). */
TEST(integer_values_are_range_checked_by_type) {
  static const struct {
    const char *type, *min, *max, *below, *above;
  } types[] = {
      {"int8", "-128", "127", "-129", "128"},
      {"int16", "-32768", "32767", "-32769", "32768"},
      {"int32", "-2147483648", "2147483647", "-2147483649", "2147483648"},
      {"int64", "-9223372036854775808", "9223372036854775807", "-9223372036854775809",
       "9223372036854775808"},
      {"int", "-9223372036854775808", "9223372036854775807", "-9223372036854775809",
       "9223372036854775808"},
      {"uint8", "0", "255", "-1", "256"},
      {"uint16", "0", "65535", "-1", "65536"},
      {"uint32", "0", "4294967295", "-1", "4294967296"},
      {"uint64", "0", "18446744073709551615", "-1", "18446744073709551616"},
      {"uint", "0", "18446744073709551615", "-1", "18446744073709551616"},
  };
  char err[256], pair[96];
  gtask_value v;
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    const char *tn = types[i].type;
    bool is_unsigned = tn[0] == 'u';
    const char *in[] = {types[i].min, types[i].max};
    for (int k = 0; k < 2; k++) {
      for (int quoted = 0; quoted < 2; quoted++) {
        snprintf(pair, sizeof(pair), quoted ? "[\"%s\",\"%s\"]" : "[\"%s\",%s]", tn, in[k]);
        int rc = decode_pair(pair, &v, err, sizeof(err));
        bool too_big_for_json = !quoted && is_unsigned && strlen(in[k]) > 19;
        if (too_big_for_json) {
          ASSERT_ERR(rc, GTASK_EPROTO);
          ASSERT_STR_CONTAINS(err, "invalid JSON");
          continue;
        }
        if (rc != 0) TEST_FAIL("%s refused: %s", pair, err);
        char back[32];
        if (is_unsigned)
          snprintf(back, sizeof(back), "%llu", (unsigned long long)v.v.u);
        else
          snprintf(back, sizeof(back), "%lld", (long long)v.v.i);
        ASSERT_STR_EQ(back, in[k]);
      }
    }
    const char *out[] = {types[i].below, types[i].above};
    for (int k = 0; k < 2; k++) {
      for (int quoted = 0; quoted < 2; quoted++) {
        snprintf(pair, sizeof(pair), quoted ? "[\"%s\",\"%s\"]" : "[\"%s\",%s]", tn, out[k]);
        if (decode_pair(pair, &v, err, sizeof(err)) != GTASK_EPROTO)
          TEST_FAIL("%s was read", pair);
        if (strstr(err, "out of range") == NULL && strstr(err, "invalid JSON") == NULL)
          TEST_FAIL("%s: reason \"%s\"", pair, err);
      }
    }
    /* Zero with a minus sign is zero; anything but an integer is refused. */
    snprintf(pair, sizeof(pair), "[\"%s\",-0]", tn);
    ASSERT_OK(decode_pair(pair, &v, err, sizeof(err)));
    ASSERT_EQ(v.v.u, 0);
    static const char *const not_int[] = {"1.0", "1e2", "true", "null", "\"1.0\"", "\"+1\"",
                                          "\" 1\"", "\"0x10\"", "\"\"", "\"-\"", "[1]"};
    for (size_t j = 0; j < sizeof(not_int) / sizeof(not_int[0]); j++) {
      snprintf(pair, sizeof(pair), "[\"%s\",%s]", tn, not_int[j]);
      ASSERT_ERR(decode_pair(pair, &v, err, sizeof(err)), GTASK_EPROTO);
      ASSERT_STR_CONTAINS(err, "not an integer");
    }
  }
}

/* bool takes only true and false; a string is UTF-8 (a NUL may be escaped
 * in it, a surrogate pair is one character, a lone surrogate or invalid
 * bytes are malformed). */
TEST(bool_and_string_values_are_strict) {
  char err[256];
  gtask_value v;
  ASSERT_OK(decode_pair("[\"bool\",true]", &v, err, sizeof(err)));
  ASSERT_TRUE(v.v.b);
  ASSERT_OK(decode_pair("[\"bool\",false]", &v, err, sizeof(err)));
  ASSERT_FALSE(v.v.b);
  static const char *const not_bool[] = {"1", "0", "\"true\"", "null", "[]", "\"\""};
  for (size_t j = 0; j < sizeof(not_bool) / sizeof(not_bool[0]); j++) {
    char pair[64];
    snprintf(pair, sizeof(pair), "[\"bool\",%s]", not_bool[j]);
    ASSERT_ERR(decode_pair(pair, &v, err, sizeof(err)), GTASK_EPROTO);
    ASSERT_STR_CONTAINS(err, "bool value is not true or false");
  }
  ASSERT_OK(decode_pair("[\"string\",\"a\\u0000b\"]", &v, err, sizeof(err)));
  ASSERT_EQ(v.v.s.len, 3);
  ASSERT_OK(decode_pair("[\"string\",\"\\ud83d\\ude00\"]", &v, err, sizeof(err)));
  ASSERT_EQ(v.v.s.len, 4);
  static const char *const bad[] = {
      "[\"string\",\"\\ud800\"]",           /* a lone high surrogate */
      "[\"string\",\"\\udc00x\"]",          /* a lone low surrogate */
      "[\"string\",\"\xc0\x80\"]",          /* an overlong NUL */
      "[\"string\",\"\xed\xa0\x80\"]",      /* a surrogate in UTF-8 */
      "[\"string\",\"\xf4\x90\x80\x80\"]",  /* above U+10FFFF */
      "[\"string\",\"\xff\"]",
      "[\"string\",\"\xe2\x9c\"]",          /* a truncated sequence */
      "[\"string\",5]",
      "[\"string\",null]",
  };
  for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++)
    ASSERT_ERR(decode_pair(bad[j], &v, err, sizeof(err)), GTASK_EPROTO);
}

/* ---------------------------------------------------------------- encode errors */

TEST(task_encode_rejects) {
  char *buf = (void *)1;
  size_t len;
  gtask_task t = make_task(NULL, 0);
  memcpy(t.id, "not-an-id", 10);
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  ASSERT_NULL(buf);

  t = make_task(NULL, 0);
  t.name = (char *)"";
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  t.name = (char *)"\xff";
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  t.name = NULL;
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);

  t = make_task(NULL, 0);
  t.queue = (char *)"bad queue";
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  t.queue = NULL;
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);

  t = make_task(NULL, 0);
  t.timeout_ms = -1;
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  t = make_task(NULL, 0);
  t.backoff_first_ms = 5000;
  t.backoff_max_ms = 4000;
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);

  gtask_value bad8[] = {{GTASK_INT8, {.i = 300}}};
  t = make_task(bad8, 1);
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_ERANGE);
  ASSERT_STR_CONTAINS(gtask_last_error(), "argument 1");

  gtask_value badf[] = {gtask_int64(1), {GTASK_FLOAT32, {.f = 0.1}}};
  t = make_task(badf, 2);
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_ERANGE);
  ASSERT_STR_CONTAINS(gtask_last_error(), "argument 2");

  gtask_value utf[] = {gtask_str("ok"), gtask_str("\xc0\x80")}; /* overlong NUL */
  t = make_task(utf, 2);
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "argument 2: string is not valid UTF-8");
  utf[1] = gtask_str("\xed\xa0\x80"); /* a surrogate */
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  utf[1] = gtask_str("\xf4\x90\x80\x80"); /* above U+10FFFF */
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  utf[1] = gtask_strn("\xe2\x9c\x93", 2); /* truncated sequence */
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);

  gtask_value nullstr[] = {gtask_strn(NULL, 0)};
  t = make_task(nullstr, 1);
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);

  gtask_value *many = calloc(1025, sizeof(gtask_value));
  for (size_t i = 0; i < 1025; i++)
    many[i] = gtask_bool(true);
  t = make_task(many, 1025);
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_EINVAL);
  t.nargs = 1024;
  ASSERT_OK(gtask__task_encode(&t, &buf, &len));
  gtask__free(buf);
  free(many);

  ASSERT_ERR(gtask__task_encode(NULL, &buf, &len), GTASK_EINVAL);
}

TEST(task_encode_too_big) {
  size_t n = ((size_t)16 << 20) + 10;
  char *s = malloc(n);
  memset(s, 'a', n);
  gtask_value big[] = {gtask_strn(s, n)};
  gtask_task t = make_task(big, 1);
  char *buf = (void *)1;
  size_t len;
  ASSERT_ERR(gtask__task_encode(&t, &buf, &len), GTASK_ETOOBIG);
  ASSERT_NULL(buf);
  free(s);
}

/* ---------------------------------------------------------------- decode errors */

typedef struct bad_case {
  const char *text;
  const char *reason; /* a substring of err */
} bad_case;

#define HEAD "{\"v\":1,\"id\":\"" ID "\",\"n\":\"add\",\"q\":\"default\","

static const bad_case bad_tasks[] = {
    {"", "empty message"},
    {"not json", "invalid JSON"},
    {"{\"v\":1", "invalid JSON"},
    {HEAD "\"a\":[]} trailing", "invalid JSON"},
    {"[1,2]", "not a JSON object"},
    {"{}", "missing field \"v\""},
    {"{\"v\":\"1\"}", "field \"v\": not an integer"},
    {"{\"v\":1.0}", "field \"v\": not an integer"},
    {"{\"v\":3,\"id\":\"" ID "\"}", "unsupported message version 3"},
    {"{\"v\":2,\"n\":\"add\",\"a\":[]}", "missing field \"id\""}, /* no holder */
    {"{\"v\":0}", "invalid message version 0"},
    {"{\"v\":-5}", "invalid message version -5"},
    {"{\"v\":1,\"v\":1}", "invalid JSON"}, /* duplicate key */
    {"{\"v\":1,\"n\":\"add\",\"q\":\"default\",\"a\":[]}", "missing field \"id\""},
    {"{\"v\":1,\"id\":5,\"n\":\"add\",\"q\":\"default\",\"a\":[]}", "field \"id\": not a string"},
    {"{\"v\":1,\"id\":\"xyz\",\"n\":\"add\",\"q\":\"default\",\"a\":[]}",
     "field \"id\": \"xyz\" is not a task id"},
    {"{\"v\":1,\"id\":\"" ID "\\u0000\",\"n\":\"a\",\"q\":\"q\",\"a\":[]}",
     "field \"id\": contains a NUL character"},
    {"{\"v\":1,\"id\":\"" ID "\",\"q\":\"default\",\"a\":[]}", "missing field \"n\""},
    {"{\"v\":1,\"id\":\"" ID "\",\"n\":\"\",\"q\":\"default\",\"a\":[]}", "empty task name"},
    {"{\"v\":1,\"id\":\"" ID "\",\"n\":\"a\\u0000b\",\"q\":\"default\",\"a\":[]}",
     "field \"n\": contains a NUL"},
    {"{\"v\":1,\"id\":\"" ID "\",\"n\":\"add\",\"a\":[]}", "missing field \"q\""},
    {"{\"v\":1,\"id\":\"" ID "\",\"n\":\"add\",\"q\":\"a b\",\"a\":[]}",
     "field \"q\": \"a b\" is not a valid queue name"},
    {"{\"v\":1,\"id\":\"" ID "\",\"n\":\"add\",\"q\":\"default\"}", "missing field \"a\""},
    {HEAD "\"a\":{}}", "field \"a\": not an array"},
    {HEAD "\"a\":[1]}", "argument 1: not a [type, value] pair"},
    {HEAD "\"a\":[[\"int64\",1],[\"int64\"]]}", "argument 2: not a [type, value] pair"},
    {HEAD "\"a\":[[\"int64\",1,2]]}", "argument 1: not a [type, value] pair"},
    {HEAD "\"a\":[[1,2]]}", "argument 1: type name is not a string"},
    {HEAD "\"a\":[[\"int128\",1]]}", "argument 1: unknown type \"int128\""},
    {HEAD "\"a\":[[\"string\\u0000\",\"x\"]]}", "argument 1: unknown type"},
    {HEAD "\"a\":[[\"int8\",300]]}", "argument 1: int8 value 300 out of range"},
    {HEAD "\"a\":[[\"int8\",-129]]}", "argument 1: int8 value -129 out of range"},
    {HEAD "\"a\":[[\"uint8\",-1]]}", "argument 1: uint8 value -1 out of range"},
    {HEAD "\"a\":[[\"uint64\",\"-1\"]]}", "argument 1: uint64 value -1 out of range"},
    {HEAD "\"a\":[[\"uint32\",4294967296]]}", "argument 1: uint32 value 4294967296 out of range"},
    {HEAD "\"a\":[[\"int64\",\"9223372036854775808\"]]}",
     "argument 1: int64 value 9223372036854775808 out of range"},
    {HEAD "\"a\":[[\"uint64\",\"18446744073709551616\"]]}",
     "argument 1: uint64 value 18446744073709551616 out of range"},
    {HEAD "\"a\":[[\"int64\",\"12x\"]]}", "argument 1: int64 value \"12x\" is not an integer"},
    {HEAD "\"a\":[[\"int64\",\"\"]]}", "is not an integer"},
    {HEAD "\"a\":[[\"int64\",\"+5\"]]}", "is not an integer"},
    {HEAD "\"a\":[[\"int64\",\" 5\"]]}", "is not an integer"},
    {HEAD "\"a\":[[\"int64\",1.5]]}", "argument 1: int64 value is not an integer"},
    {HEAD "\"a\":[[\"int64\",true]]}", "argument 1: int64 value is not an integer"},
    {HEAD "\"a\":[[\"int64\",99999999999999999999]]}", "invalid JSON"},
    {HEAD "\"a\":[[\"bool\",1]]}", "argument 1: bool value is not true or false"},
    {HEAD "\"a\":[[\"string\",5]]}", "argument 1: string value is not a string"},
    {HEAD "\"a\":[[\"float64\",\"abc\"]]}", "argument 1: float64 value \"abc\" is not a number"},
    {HEAD "\"a\":[[\"float64\",\"nan\"]]}", "is not a number"},
    {HEAD "\"a\":[[\"float64\",null]]}", "argument 1: float64 value is not a number"},
    {HEAD "\"a\":[[\"float32\",1e300]]}", "argument 1: float32 value 1e+300 out of range"},
    {HEAD "\"a\":[[\"float64\",1e400]]}", "invalid JSON"},
    {HEAD "\"a\":[],\"t\":-1}", "field \"t\": -1 out of range"},
    {HEAD "\"a\":[],\"t\":\"5\"}", "field \"t\": not an integer"},
    {HEAD "\"a\":[],\"r\":2147483648}", "field \"r\": 2147483648 out of range"},
    {HEAD "\"a\":[],\"at\":4294967296}", "field \"at\": 4294967296 out of range"},
    {HEAD "\"a\":[],\"l\":-1}", "field \"l\": -1 out of range"},
    {HEAD "\"a\":[],\"bf\":0}", "field \"bf\": 0 out of range"},
    {HEAD "\"a\":[],\"bf\":70000}", "backoff max 60000 is below backoff first 70000"},
    {HEAD "\"a\":[],\"c\":-1}", "field \"c\": -1 out of range"},
    {HEAD "\"a\":[],\"x\":1.5}", "field \"x\": not an integer"},
    {HEAD "\"a\":[],\"pr\":3}", "field \"pr\": 3 out of range"},
    {HEAD "\"a\":[],\"pr\":-1}", "field \"pr\": -1 out of range"},
    {HEAD "\"a\":[],\"e\":7}", "field \"e\": not a string"},
};

TEST(task_decode_rejects_with_reason) {
  for (size_t i = 0; i < sizeof(bad_tasks) / sizeof(bad_tasks[0]); i++) {
    char err[256] = "untouched";
    int rc = decode_task(bad_tasks[i].text, err, sizeof(err));
    if (rc != GTASK_EPROTO)
      TEST_FAIL("case %zu (%s): got %s, want EPROTO", i, bad_tasks[i].text, gtask_err_name(rc));
    if (strstr(err, bad_tasks[i].reason) == NULL)
      TEST_FAIL("case %zu (%s): reason \"%s\" lacks \"%s\"", i, bad_tasks[i].text, err,
                bad_tasks[i].reason);
  }
}

TEST(task_decode_too_many_args) {
  size_t cap = 20 * 1025 + 200;
  char *text = malloc(cap);
  size_t n = (size_t)snprintf(text, cap, "%s\"a\":[", HEAD);
  for (int i = 0; i < 1025; i++)
    n += (size_t)snprintf(text + n, cap - n, "%s[\"bool\",true]", i ? "," : "");
  snprintf(text + n, cap - n, "]}");
  char err[256];
  ASSERT_ERR(decode_task(text, err, sizeof(err)), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(err, "too many arguments (1025, at most 1024)");
  free(text);
}

TEST(task_decode_too_big) {
  size_t n = ((size_t)16 << 20) + 1;
  char *text = malloc(n);
  memset(text, ' ', n);
  gtask_task *t = (void *)1;
  char err[256];
  ASSERT_ERR(gtask__task_decode(text, n, &t, err, sizeof(err)), GTASK_ETOOBIG);
  ASSERT_NULL(t);
  ASSERT_STR_CONTAINS(err, "exceeds the limit");
  free(text);
}

TEST(task_decode_deep_nesting) {
  size_t depth = 100000;
  char *text = malloc(2 * depth + sizeof(HEAD) + 16);
  size_t n = (size_t)snprintf(text, sizeof(HEAD) + 8, "%s\"a\":", HEAD);
  memset(text + n, '[', depth);
  memset(text + n + depth, ']', depth);
  text[n + 2 * depth] = '}';
  text[n + 2 * depth + 1] = '\0';
  char err[256];
  ASSERT_ERR(decode_task(text, err, sizeof(err)), GTASK_EPROTO);
  free(text);
}

TEST(task_decode_errlen_zero_and_null_out) {
  gtask_task *t;
  ASSERT_ERR(gtask__task_decode("{}", 2, &t, NULL, 0), GTASK_EPROTO);
  ASSERT_ERR(gtask__task_decode("{}", 2, NULL, NULL, 0), GTASK_EINVAL);
  ASSERT_ERR(gtask__task_decode(NULL, 0, &t, NULL, 0), GTASK_EPROTO);
  gtask__task_free(NULL);
}

/* ---------------------------------------------------------------- results */

TEST(result_round_trip_success) {
  static const char nul[] = {'x', '\0', 'y'};
  gtask_value vals[] = {gtask_int64(INT64_MIN), gtask_uint64(UINT64_MAX), gtask_float64(0.1),
                        gtask_float32(1e-45f), gtask_strn(nul, 3), gtask_bool(true),
                        gtask_float64(NAN)};
  gtask_result r = {.status = GTASK_SUCCESS, .values = vals, .nvalues = 7, .attempts = 1};
  char *buf;
  size_t len;
  ASSERT_OK(gtask__result_encode(&r, &buf, &len));
  ASSERT_TRUE(strstr(buf, "\"err\"") == NULL && strstr(buf, "\"ec\"") == NULL);
  gtask_result *d;
  char err[256];
  ASSERT_OK(gtask__result_decode(buf, len, ID, &d, err, sizeof(err)));
  gtask__free(buf);
  ASSERT_STR_EQ(d->id, ID);
  ASSERT_EQ(d->status, GTASK_SUCCESS);
  ASSERT_EQ(d->nvalues, 7);
  ASSERT_EQ(d->values[0].v.i, INT64_MIN);
  ASSERT_EQ(d->values[1].v.u, UINT64_MAX);
  ASSERT_DBL_EQ(d->values[2].v.f, 0.1);
  ASSERT_DBL_EQ(d->values[3].v.f, (double)1e-45f);
  ASSERT_EQ(d->values[3].type, GTASK_FLOAT32);
  ASSERT_EQ(d->values[4].v.s.len, 3);
  ASSERT_MEM_EQ(d->values[4].v.s.ptr, nul, 3);
  ASSERT_TRUE(d->values[5].v.b);
  ASSERT_TRUE(isnan(d->values[6].v.f));
  ASSERT_NULL(d->error);
  ASSERT_EQ(d->error_code, 0);
  ASSERT_EQ(d->attempts, 1);
  gtask_result_free(d);
}

TEST(result_round_trip_failure) {
  gtask_result r = {.status = GTASK_FAILURE, .error = (char *)"timed out after 5 s \xff",
                    .error_code = GTASK_ETASKTIMEOUT, .attempts = 4};
  char *buf;
  size_t len;
  ASSERT_OK(gtask__result_encode(&r, &buf, &len));
  ASSERT_STR_EQ(buf, "{\"v\":1,\"s\":\"FAILURE\",\"err\":\"timed out after 5 s ?\","
                     "\"ec\":-17,\"at\":4}");
  gtask_result *d;
  char err[256];
  ASSERT_OK(gtask__result_decode(buf, len, NULL, &d, err, sizeof(err)));
  gtask__free(buf);
  ASSERT_STR_EQ(d->id, "");
  ASSERT_EQ(d->status, GTASK_FAILURE);
  ASSERT_EQ(d->nvalues, 0);
  ASSERT_NULL(d->values);
  ASSERT_STR_EQ(d->error, "timed out after 5 s ?");
  ASSERT_EQ(d->error_code, GTASK_ETASKTIMEOUT);
  ASSERT_EQ(d->attempts, 4);
  gtask_result_free(d);
  gtask_result_free(NULL);
}

TEST(result_minimal_and_statuses) {
  for (int s = GTASK_PENDING; s <= GTASK_FAILURE; s++) {
    gtask_result r = {.status = (gtask_status)s};
    char *buf;
    size_t len;
    ASSERT_OK(gtask__result_encode(&r, &buf, &len));
    gtask_result *d;
    char err[64];
    ASSERT_OK(gtask__result_decode(buf, len, ID, &d, err, sizeof(err)));
    ASSERT_EQ(d->status, s);
    gtask_result_free(d);
    gtask__free(buf);
  }
  gtask_result r = {.status = (gtask_status)9};
  char *buf;
  size_t len;
  ASSERT_ERR(gtask__result_encode(&r, &buf, &len), GTASK_EINVAL);
  gtask_value bad[] = {{GTASK_UINT16, {.u = 70000}}};
  gtask_result r2 = {.status = GTASK_SUCCESS, .values = bad, .nvalues = 1};
  ASSERT_ERR(gtask__result_encode(&r2, &buf, &len), GTASK_ERANGE);
  ASSERT_STR_CONTAINS(gtask_last_error(), "value 1");
}

static const bad_case bad_results[] = {
    {"{\"s\":\"SUCCESS\"}", "missing field \"v\""},
    {"{\"v\":2,\"s\":\"SUCCESS\"}", "unsupported message version 2"},
    {"{\"v\":1}", "missing field \"s\""},
    {"{\"v\":1,\"s\":\"DONE\"}", "field \"s\": unknown status \"DONE\""},
    {"{\"v\":1,\"s\":4}", "field \"s\": not a string"},
    {"{\"v\":1,\"s\":\"SUCCESS\",\"vals\":5}", "field \"vals\": not an array"},
    {"{\"v\":1,\"s\":\"SUCCESS\",\"vals\":[[\"int16\",40000]]}",
     "value 1: int16 value 40000 out of range"},
    {"{\"v\":1,\"s\":\"SUCCESS\",\"vals\":[[\"string\",\"a\"],[\"bool\",\"x\"]]}",
     "value 2: bool value is not true or false"},
    {"{\"v\":1,\"s\":\"FAILURE\",\"err\":[]}", "field \"err\": not a string"},
    {"{\"v\":1,\"s\":\"FAILURE\",\"ec\":2147483648}", "field \"ec\": 2147483648 out of range"},
    {"{\"v\":1,\"s\":\"FAILURE\",\"at\":-1}", "field \"at\": -1 out of range"},
    {"[]", "not a JSON object"},
};

TEST(result_decode_rejects_with_reason) {
  for (size_t i = 0; i < sizeof(bad_results) / sizeof(bad_results[0]); i++) {
    char err[256] = "untouched";
    gtask_result *r = (void *)1;
    const char *text = bad_results[i].text;
    int rc = gtask__result_decode(text, strlen(text), ID, &r, err, sizeof(err));
    if (rc != GTASK_EPROTO)
      TEST_FAIL("case %zu (%s): got %s, want EPROTO", i, text, gtask_err_name(rc));
    ASSERT_NULL(r);
    if (strstr(err, bad_results[i].reason) == NULL)
      TEST_FAIL("case %zu (%s): reason \"%s\" lacks \"%s\"", i, text, err, bad_results[i].reason);
  }
}

/* ---------------------------------------------------------------- the encoder against jansson */

/* The encoders write JSON directly; the format is what jansson's json_dump
 * (compact, 17 significant digits) writes for the same object.  jansson is the
 * oracle here: the object is built with it and dumped, and the bytes must be
 * equal. */
static json_t *oracle_value(const gtask_value *v) {
  json_t *val = NULL;
  switch (v->type) {
  case GTASK_BOOL: val = json_boolean(v->v.b); break;
  case GTASK_INT: case GTASK_INT8: case GTASK_INT16: case GTASK_INT32: case GTASK_INT64:
    val = json_integer(v->v.i);
    break;
  case GTASK_UINT: case GTASK_UINT8: case GTASK_UINT16: case GTASK_UINT32: case GTASK_UINT64:
    if (v->v.u <= INT64_MAX) {
      val = json_integer((json_int_t)v->v.u);
    } else {
      char dec[24];
      snprintf(dec, sizeof(dec), "%llu", (unsigned long long)v->v.u);
      val = json_string(dec);
    }
    break;
  case GTASK_FLOAT32: case GTASK_FLOAT64:
    val = isfinite(v->v.f) ? json_real(v->v.f)
                           : json_string(isnan(v->v.f) ? "NaN" : v->v.f > 0 ? "Infinity" : "-Infinity");
    break;
  case GTASK_STRING: val = json_stringn(v->v.s.ptr, v->v.s.len); break;
  }
  ASSERT_NOT_NULL(val);
  return json_pack("[so]", gtask_type_name(v->type), val);
}

static json_t *oracle_values(const gtask_value *vals, size_t n) {
  json_t *arr = json_array();
  for (size_t k = 0; k < n; k++) json_array_append_new(arr, oracle_value(&vals[k]));
  return arr;
}

static void assert_same_bytes(const char *what, const char *ours, size_t len, json_t *want_obj) {
  char *want = json_dumps(want_obj, JSON_COMPACT | JSON_REAL_PRECISION(17));
  ASSERT_NOT_NULL(want);
  if (strlen(want) != len || memcmp(want, ours, len) != 0)
    TEST_FAIL("%s:\n  ours    %.*s\n  jansson %s", what, (int)len, ours, want);
  free(want);
  json_decref(want_obj);
}

TEST(encoders_write_what_jansson_writes) {
  static const char nasty[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80 \0end";
  gtask_value vals[] = {
      gtask_int64(0), gtask_int64(-1), gtask_int64(INT64_MIN), gtask_int64(INT64_MAX),
      gtask_uint64(0), gtask_uint64((uint64_t)INT64_MAX), gtask_uint64((uint64_t)INT64_MAX + 1),
      gtask_uint64(UINT64_MAX), gtask_int8(-128), gtask_uint32(UINT32_MAX), gtask_bool(true),
      gtask_bool(false), gtask_float64(0.0), gtask_float64(-0.0), gtask_float64(1.0),
      gtask_float64(0.1), gtask_float64(-2.5), gtask_float64(1e21), gtask_float64(1e-5),
      gtask_float64(1e-10), gtask_float64(123456789012345678.0), gtask_float64(DBL_MAX),
      gtask_float64(DBL_MIN), gtask_float64(5e-324), gtask_float64(NAN), gtask_float64(INFINITY),
      gtask_float64(-INFINITY), gtask_float32(0.1f), gtask_float32(3.0f), gtask_str(""),
      gtask_strn(nasty, sizeof(nasty) - 1), gtask_str("plain"),
  };
  size_t n = sizeof(vals) / sizeof(vals[0]);
  /* Random doubles and integers as well: the formatting rules have corners. */
  srand(7);
  for (int rep = 0; rep < 2000; rep++) {
    uint64_t bits = 0;
    for (int k = 0; k < 4; k++) bits = bits << 16 | (uint64_t)(rand() & 0xffff);
    double d;
    memcpy(&d, &bits, sizeof(d));
    gtask_value r[2] = {gtask_float64(d), gtask_int64((int64_t)bits)};
    gtask_result res = {.status = GTASK_SUCCESS, .values = r, .nvalues = 2, .attempts = 1};
    char *buf;
    size_t len;
    ASSERT_OK(gtask__result_encode(&res, &buf, &len));
    assert_same_bytes("random result", buf, len,
                      json_pack("{s:i,s:s,s:o,s:i}", "v", GTASK_RESULT_VERSION, "s", "SUCCESS", "vals",
                                oracle_values(r, 2), "at", 1));
    gtask__free(buf);
  }

  /* A task with every field. */
  gtask_task t = make_task(vals, n);
  t.name = (char *)"n\"ame \xc3\xa9";
  t.timeout_ms = 5000, t.retry_max = 3, t.attempts = 2, t.lost = 1;
  t.backoff_first_ms = 10, t.backoff_max_ms = 20, t.expires_ms = 1800000000000;
  t.last_error = (char *)"bad \xff byte\n";
  char *buf;
  size_t len;
  ASSERT_OK(gtask__task_encode(&t, &buf, &len));
  ASSERT_EQ(strlen(buf), len);
  assert_same_bytes("task", buf, len,
                    json_pack("{s:i,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "v", GTASK_MSG_VERSION,
                              "n", t.name, "a", oracle_values(vals, n), "t", (json_int_t)5000, "r",
                              (json_int_t)3, "at", (json_int_t)2, "l", (json_int_t)1, "bf", (json_int_t)10,
                              "bm", (json_int_t)20, "c", (json_int_t)t.created_ms, "x",
                              (json_int_t)t.expires_ms, "e", "bad ? byte\n"));
  gtask__free(buf);

  /* A failure result with every field, and a minimal one. */
  gtask_result res = {.status = GTASK_FAILURE, .values = vals, .nvalues = n,
                      .error = (char *)"timeout: \"x\" \x80", .error_code = -17, .attempts = 3};
  ASSERT_OK(gtask__result_encode(&res, &buf, &len));
  assert_same_bytes("failure", buf, len,
                    json_pack("{s:i,s:s,s:o,s:s,s:i,s:i}", "v", GTASK_RESULT_VERSION, "s", "FAILURE",
                              "vals", oracle_values(vals, n), "err", "timeout: \"x\" ?", "ec", -17, "at", 3));
  gtask__free(buf);
  gtask_result min = {.status = GTASK_PENDING};
  ASSERT_OK(gtask__result_encode(&min, &buf, &len));
  assert_same_bytes("minimal", buf, len, json_pack("{s:i,s:s}", "v", GTASK_RESULT_VERSION, "s", "PENDING"));
  gtask__free(buf);
}

/* ---------------------------------------------------------------- the decoder's fast path */

/* Checks the fast path on text: it reads what the jansson decoder reads, or
 * declines.  Returns whether it read it. */
static bool fast_agrees(const char *text, size_t len) {
  gtask_task *f = NULL, *r = NULL;
  char err[256];
  int frc = gtask__task_decode_fast(text, len, ID, "default", &f);
  int rrc = gtask__task_decode_ref(text, len, ID, "default", &r, err, sizeof(err));
  if (frc != 0) {
    ASSERT_EQ(frc, 1); /* declined */
    ASSERT_NULL(f);
    gtask__task_free(r);
    return false;
  }
  if (rrc != 0) TEST_FAIL("fast path read %.*s, which jansson refuses: %s", (int)len, text, err);
  char *a, *b;
  size_t al, bl;
  ASSERT_OK(gtask__task_encode(f, &a, &al));
  ASSERT_OK(gtask__task_encode(r, &b, &bl));
  if (al != bl || memcmp(a, b, al) != 0)
    TEST_FAIL("%.*s read differently:\n  fast    %s\n  jansson %s", (int)len, text, a, b);
  ASSERT_STR_EQ(f->id, r->id);
  ASSERT_STR_EQ(f->queue, r->queue);
  gtask__free(a);
  gtask__free(b);
  gtask__task_free(f);
  gtask__task_free(r);
  return true;
}

TEST(task_decoder_fast_path_reads_what_jansson_reads_or_declines) {
  static const char bytes[] = "x\0y \xc3\xa9";
  gtask_value ints[] = {gtask_int64(1), gtask_int64(-2), gtask_int64(INT64_MIN), gtask_int64(INT64_MAX),
                        gtask_uint64((uint64_t)INT64_MAX), gtask_int8(-128), gtask_uint8(255),
                        gtask_int32(INT32_MIN), gtask_uint16(0), gtask_bool(true), gtask_bool(false),
                        gtask_str("hello"), gtask_str(""), gtask_strn(bytes, sizeof(bytes) - 1)};
  gtask_value floats[] = {gtask_int64(1), gtask_float64(0.5)};
  gtask_value big[] = {gtask_uint64(UINT64_MAX)};
  struct {
    gtask_value *args;
    size_t n;
    bool fast; /* the fast path must read it */
  } cases[] = {{ints, sizeof(ints) / sizeof(ints[0]), false}, /* "x\0y": an escape */
               {ints, 12, true},
               {ints, 0, true},
               {floats, 2, false},
               {big, 1, false}}; /* a decimal string */
  int read = 0, declined = 0;
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    gtask_task t = make_task(cases[k].args, cases[k].n);
    if (k == 1) {
      t.timeout_ms = 5000, t.retry_max = 3, t.attempts = 2, t.lost = 1;
      t.backoff_first_ms = 10, t.backoff_max_ms = 20, t.expires_ms = 1800000000000;
      t.last_error = (char *)"previous run failed";
    }
    char *text;
    size_t len;
    ASSERT_OK(gtask__task_encode(&t, &text, &len));
    bool fast = fast_agrees(text, len);
    if (cases[k].fast && !fast) TEST_FAIL("fast path declined %s", text);
    if (!cases[k].fast && fast) TEST_FAIL("fast path read %s", text);
    /* Every one-byte change of it, to poke at each rule. */
    static const char subst[] = "\"\\ 09-,:[]{}e.aAtx\x80\xff";
    for (size_t i = 0; i < len; i++) {
      char save = text[i];
      for (size_t j = 0; j < sizeof(subst); j++) { /* the last: a NUL byte */
        text[i] = subst[j];
        if (fast_agrees(text, len)) read++; else declined++;
      }
      text[i] = save;
      /* And the message cut here. */
      if (fast_agrees(text, i)) read++; else declined++;
    }
    gtask__free(text);
  }
  /* Hand-written forms: other producers' JSON goes through jansson. */
  static const char *const forms[] = {
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",1]],\"c\":0}",
      "{ \"v\":2,\"n\":\"add\",\"a\":[]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[],\"zz\":1}",
      "{\"v\":2,\"n\":\"add\",\"a\":[],\"v\":2}",
      "{\"v\":2,\"n\":\"a\\u0041\",\"a\":[]}",
      "{\"v\":1,\"id\":\"" ID "\",\"q\":\"default\",\"n\":\"add\",\"a\":[]}",
      "{\"v\":3,\"n\":\"add\",\"a\":[]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int8\",128]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"uint8\",-0]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",-0]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",01]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",9223372036854775808]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",-9223372036854775808]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",1e3]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",1,2]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"int64\",\"]\"]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[[\"string\",\"]\"]]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[],\"bf\":5000}",
      "{\"v\":2,\"n\":\"add\",\"a\":[],\"bf\":5000,\"bm\":5000}",
      "{\"v\":2,\"n\":\"\",\"a\":[]}",
      "{\"v\":2,\"n\":\"add\",\"a\":[]} ",
      "{\"v\":2,\"n\":\"add\",\"a\":[],\"e\":\"\"}",
  };
  for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++)
    if (fast_agrees(forms[k], strlen(forms[k]))) read++; else declined++;
  TEST_LOG("variants: %d read by the fast path, %d declined", read, declined);
  ASSERT_GT(read, 20);
  ASSERT_GT(declined, 100);
}

/* The same for result records (gtask_client_wait reads one per task). */
static bool result_fast_agrees(const char *text, size_t len) {
  gtask_result *f = NULL, *r = NULL;
  char err[256];
  int frc = gtask__result_decode_fast(text, len, ID, &f);
  int rrc = gtask__result_decode_ref(text, len, ID, &r, err, sizeof(err));
  if (frc != 0) {
    ASSERT_EQ(frc, 1); /* declined */
    ASSERT_NULL(f);
    gtask_result_free(r);
    return false;
  }
  if (rrc != 0) TEST_FAIL("fast path read %.*s, which jansson refuses: %s", (int)len, text, err);
  char *a, *b;
  size_t al, bl;
  ASSERT_OK(gtask__result_encode(f, &a, &al));
  ASSERT_OK(gtask__result_encode(r, &b, &bl));
  if (al != bl || memcmp(a, b, al) != 0)
    TEST_FAIL("%.*s read differently:\n  fast    %s\n  jansson %s", (int)len, text, a, b);
  ASSERT_STR_EQ(f->id, r->id);
  gtask__free(a);
  gtask__free(b);
  gtask_result_free(f);
  gtask_result_free(r);
  return true;
}

TEST(result_decoder_fast_path_reads_what_jansson_reads_or_declines) {
  gtask_value vals[] = {gtask_int64(3), gtask_int64(INT64_MIN), gtask_uint64((uint64_t)INT64_MAX),
                        gtask_bool(true), gtask_str("sum"), gtask_str(""), gtask_int8(-1)};
  gtask_value floats[] = {gtask_float64(0.25)};
  struct {
    gtask_result r;
    bool fast; /* the fast path must read it */
  } cases[] = {
      {{.status = GTASK_SUCCESS, .values = vals, .nvalues = 7, .attempts = 1}, true},
      {{.status = GTASK_SUCCESS, .values = vals, .nvalues = 1, .attempts = 1}, true},
      {{.status = GTASK_SUCCESS, .attempts = 1}, true},
      {{.status = GTASK_FAILURE, .error = (char *)"lost: delivered 5 times", .error_code = -18,
        .attempts = 4294967295u},
       true},
      {{.status = GTASK_FAILURE, .error = (char *)"bad \"quote\"", .error_code = -7}, false},
      {{.status = GTASK_RETRY, .error = (char *)"not yet", .attempts = 2}, true},
      {{.status = GTASK_SUCCESS, .values = floats, .nvalues = 1}, false},
  };
  int read = 0, declined = 0;
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    char *text;
    size_t len;
    ASSERT_OK(gtask__result_encode(&cases[k].r, &text, &len));
    bool fast = result_fast_agrees(text, len);
    if (cases[k].fast && !fast) TEST_FAIL("fast path declined %s", text);
    if (!cases[k].fast && fast) TEST_FAIL("fast path read %s", text);
    static const char subst[] = "\"\\ 09-,:[]{}e.aAtsx\x80\xff";
    for (size_t i = 0; i < len; i++) {
      char save = text[i];
      for (size_t j = 0; j < sizeof(subst); j++) { /* the last: a NUL byte */
        text[i] = subst[j];
        if (result_fast_agrees(text, len)) read++; else declined++;
      }
      text[i] = save;
      if (result_fast_agrees(text, i)) read++; else declined++;
    }
    gtask__free(text);
  }
  static const char *const forms[] = {
      "{\"v\":1,\"s\":\"SUCCESS\"}",
      "{\"s\":\"SUCCESS\",\"v\":1}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"zz\":1}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"s\":\"FAILURE\"}",
      "{\"v\":1,\"s\":\"DONE\"}",
      "{\"v\":1}",
      "{\"v\":2,\"s\":\"SUCCESS\"}",
      "{\"v\":0,\"s\":\"SUCCESS\"}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"ec\":-2147483648}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"ec\":-2147483649}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"ec\":-0}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"at\":-1}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"at\":4294967296}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"vals\":[]}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"vals\":5,\"x\":[1]}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"vals\":[[\"int64\",1]],\"vals\":[]}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"err\":\"\"}",
      "{\"v\":1,\"s\":\"SUCCESS\",\"err\":5}",
      "{\"v\":1,\"s\":\"SUCCESS\"} ",
  };
  for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++)
    if (result_fast_agrees(forms[k], strlen(forms[k]))) read++; else declined++;
  TEST_LOG("variants: %d read by the fast path, %d declined", read, declined);
  ASSERT_GT(read, 20);
  ASSERT_GT(declined, 100);
}

/* ---------------------------------------------------------------- allocation failures */

/* Runs op with the n-th allocation failing, for n = 1, 2, ... until op no
 * longer reaches a failing allocation.  A run that reached the failing
 * allocation must return ENOMEM: never a success (jansson hides some failures
 * and would then return silently truncated data) nor another code.  ASan
 * checks that nothing leaks. */
#define TORTURE(op_call, cleanup)                                              \
  do {                                                                         \
    long n__;                                                                  \
    for (n__ = 1; n__ < 10000; n__++) {                                        \
      gtask__alloc_fail_at(n__);                                               \
      int rc__ = (op_call);                                                    \
      long made__ = gtask__alloc_fail_at(0);                                   \
      if (made__ >= n__ && rc__ != GTASK_ENOMEM)                               \
        TEST_FAIL("allocation %ld failing: got %s, want ENOMEM", n__,          \
                  rc__ == 0 ? "success" : gtask_err_name(rc__));               \
      if (rc__ == 0) {                                                         \
        cleanup;                                                               \
      }                                                                        \
      if (made__ < n__) {                                                      \
        ASSERT_OK(rc__);                                                       \
        break;                                                                 \
      }                                                                        \
    }                                                                          \
    ASSERT_LT(n__, 10000);                                                     \
    ASSERT_GT(n__, 1);                                                         \
  } while (0)

static const gtask_value torture_args[] = {
    {GTASK_INT64, {.i = 1}},
    {GTASK_STRING, {.s = {"hello", 5}}},
    {GTASK_FLOAT64, {.f = 0.5}},
    {GTASK_UINT64, {.u = UINT64_MAX}},
    {GTASK_BOOL, {.b = false}},
};

TEST(task_encode_alloc_failures) {
  gtask_task t = make_task((gtask_value *)torture_args, 5);
  t.last_error = (char *)"prev \xff";
  t.timeout_ms = 10;
  char *buf = NULL;
  size_t len;
  TORTURE(gtask__task_encode(&t, &buf, &len), gtask__free(buf));
}

TEST(task_decode_alloc_failures) {
  gtask_task t = make_task((gtask_value *)torture_args, 5);
  t.last_error = (char *)"prev";
  char *text;
  size_t len;
  ASSERT_OK(gtask__task_encode(&t, &text, &len));
  gtask_task *d = NULL;
  char err[256];
  TORTURE(gtask__task_decode_in(text, len, t.id, t.queue, &d, err, sizeof(err)), gtask__task_free(d));
  gtask__free(text);
}

TEST(result_alloc_failures) {
  gtask_result r = {.status = GTASK_SUCCESS, .values = (gtask_value *)torture_args, .nvalues = 5,
                    .error = (char *)"e", .error_code = -4, .attempts = 2};
  char *buf = NULL;
  size_t len;
  TORTURE(gtask__result_encode(&r, &buf, &len), gtask__free(buf));
  ASSERT_OK(gtask__result_encode(&r, &buf, &len));
  gtask_result *d = NULL;
  char err[256];
  TORTURE(gtask__result_decode(buf, len, ID, &d, err, sizeof(err)), gtask_result_free(d));
  gtask__free(buf);
}
