/* test_values.c -- typed values (value.c) and the utilities of util.c: copies,
 * range checks, the typed-handler argument checks and their messages, names,
 * ids, errors, logging, backoff, messages and the allocation failure seam. */
#include "test.h"

#include "internal.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

/* ---------------------------------------------------------------- copies */

TEST(values_copy_empty) {
  gtask_value *out = (void *)1;
  ASSERT_OK(gtask__values_copy(NULL, 0, &out));
  ASSERT_NULL(out);
}

TEST(values_copy_one_block) {
  char a[] = {'x', '\0', 'y'};
  gtask_value in[] = {gtask_int8(-3), gtask_strn(a, sizeof(a)), gtask_str("héllo"),
                      gtask_str(""), gtask_uint64(UINT64_MAX), gtask_float64(0.1)};
  size_t n = sizeof(in) / sizeof(in[0]);
  gtask_value *out;
  ASSERT_OK(gtask__values_copy(in, n, &out));
  ASSERT_NOT_NULL(out);
  const char *lo = (const char *)out, *hi = (const char *)(out + n) + 3 + 1 + 6 + 1 + 0 + 1;
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(out[i].type, in[i].type);
    if (in[i].type == GTASK_STRING) {
      ASSERT_EQ(out[i].v.s.len, in[i].v.s.len);
      ASSERT_MEM_EQ(out[i].v.s.ptr, in[i].v.s.ptr, in[i].v.s.len);
      ASSERT_EQ(out[i].v.s.ptr[out[i].v.s.len], '\0');
      ASSERT_PTR_NE(out[i].v.s.ptr, in[i].v.s.ptr);
      /* The bytes live in the same allocation, after the array. */
      ASSERT_TRUE(out[i].v.s.ptr >= (const char *)(out + n) && out[i].v.s.ptr < hi);
      ASSERT_TRUE(out[i].v.s.ptr > lo);
    }
  }
  ASSERT_EQ(out[0].v.i, -3);
  ASSERT_EQ(out[4].v.u, UINT64_MAX);
  ASSERT_DBL_EQ(out[5].v.f, 0.1);
  gtask__free(out);
}

TEST(values_copy_null_string) {
  gtask_value in[] = {gtask_int64(1), gtask_strn(NULL, 0)};
  gtask_value *out = (void *)1;
  ASSERT_ERR(gtask__values_copy(in, 2, &out), GTASK_EINVAL);
  ASSERT_NULL(out);
}

TEST(values_copy_alloc_failure) {
  gtask_value in[] = {gtask_str("abc"), gtask_int64(2)};
  gtask_value *out;
  gtask__alloc_fail_at(1);
  ASSERT_ERR(gtask__values_copy(in, 2, &out), GTASK_ENOMEM);
  ASSERT_NULL(out);
  ASSERT_OK(gtask__values_copy(in, 2, &out));
  gtask__free(out);
  gtask__alloc_fail_at(0);
}

/* ---------------------------------------------------------------- ranges */

TEST(value_check_integer_ranges) {
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_INT8, {.i = 127}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_INT8, {.i = -128}}));
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_INT8, {.i = 128}}), GTASK_ERANGE);
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_INT8, {.i = -129}}), GTASK_ERANGE);
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_INT16, {.i = INT16_MIN}}));
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_INT16, {.i = INT16_MAX + 1}}),
             GTASK_ERANGE);
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_INT32, {.i = INT32_MAX}}));
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_INT32, {.i = (int64_t)INT32_MIN - 1}}),
             GTASK_ERANGE);
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_INT64, {.i = INT64_MIN}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_INT, {.i = INT64_MAX}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_UINT8, {.u = 255}}));
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_UINT8, {.u = 256}}), GTASK_ERANGE);
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_UINT16, {.u = 65536}}), GTASK_ERANGE);
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_UINT32, {.u = UINT32_MAX}}));
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_UINT32, {.u = (uint64_t)UINT32_MAX + 1}}),
             GTASK_ERANGE);
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_UINT64, {.u = UINT64_MAX}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_UINT, {.u = UINT64_MAX}}));
}

TEST(value_check_floats_strings_types) {
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_FLOAT32, {.f = 0.1f}}));
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_FLOAT32, {.f = 0.1}}), GTASK_ERANGE);
  ASSERT_ERR(gtask__value_check(&(gtask_value){GTASK_FLOAT32, {.f = 1e300}}), GTASK_ERANGE);
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_FLOAT32, {.f = FLT_MAX}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_FLOAT32, {.f = 1e-45f}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_FLOAT32, {.f = NAN}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_FLOAT32, {.f = -INFINITY}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_FLOAT64, {.f = 0.1}}));
  ASSERT_OK(gtask__value_check(&(gtask_value){GTASK_BOOL, {.b = true}}));
  gtask_value s = gtask_str("x");
  ASSERT_OK(gtask__value_check(&s));
  s.v.s.ptr = NULL;
  ASSERT_ERR(gtask__value_check(&s), GTASK_EINVAL);
  ASSERT_ERR(gtask__value_check(&(gtask_value){(gtask_type)0, {.i = 0}}), GTASK_EINVAL);
  ASSERT_ERR(gtask__value_check(&(gtask_value){(gtask_type)99, {.i = 0}}), GTASK_EINVAL);
  ASSERT_ERR(gtask__value_check(NULL), GTASK_EINVAL);
}

/* ---------------------------------------------------------------- typed handlers */

static const gtask_type want_ii[] = {GTASK_INT64, GTASK_INT64};

TEST(check_args_count) {
  gtask_value args[] = {gtask_int64(1), gtask_int64(2), gtask_int64(3)};
  ASSERT_ERR(gtask__check_args(NULL, "add", want_ii, 2, args, 3), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "add: expected 2 arguments, got 3");
  ASSERT_ERR(gtask__check_args(NULL, "one", want_ii, 1, args, 0), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "one: expected 1 argument, got 0");
  ASSERT_OK(gtask__check_args(NULL, "none", NULL, 0, NULL, 0));
}

TEST(check_args_type_mismatch) {
  gtask_value args[] = {gtask_int64(1), gtask_str("2")};
  ASSERT_ERR(gtask__check_args(NULL, "add", want_ii, 2, args, 2), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "add: argument 2: expected int64, got string");

  gtask_type want_b[] = {GTASK_BOOL};
  gtask_value one[] = {gtask_int64(1)};
  ASSERT_ERR(gtask__check_args(NULL, "f", want_b, 1, one, 1), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "f: argument 1: expected bool, got int64");

  gtask_type want_s[] = {GTASK_STRING};
  gtask_value flt[] = {gtask_float64(1)};
  ASSERT_ERR(gtask__check_args(NULL, "f", want_s, 1, flt, 1), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "f: argument 1: expected string, got float64");

  gtask_type want_f[] = {GTASK_FLOAT64};
  ASSERT_ERR(gtask__check_args(NULL, "f", want_f, 1, one, 1), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "f: argument 1: expected float64, got int64");
}

TEST(check_args_integer_conversions) {
  gtask_type want8[] = {GTASK_INT8};
  gtask_value big[] = {gtask_int64(300)};
  ASSERT_ERR(gtask__check_args(NULL, "add", want8, 1, big, 1), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "add: argument 1: int8 value 300 out of range");

  /* Any integer kind to any integer parameter, when it fits. */
  gtask_value ok[] = {gtask_uint64(5)};
  ASSERT_OK(gtask__check_args(NULL, "f", want8, 1, ok, 1));
  ASSERT_EQ(gtask__arg_i(&ok[0]), 5);
  gtask_value neg[] = {gtask_int(-1)};
  gtask_type wantu8[] = {GTASK_UINT8};
  ASSERT_ERR(gtask__check_args(NULL, "f", wantu8, 1, neg, 1), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "f: argument 1: uint8 value -1 out of range");
  gtask_value umax[] = {gtask_uint(UINT64_MAX)};
  gtask_type want64[] = {GTASK_INT64};
  ASSERT_ERR(gtask__check_args(NULL, "f", want64, 1, umax, 1), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "f: argument 1: int64 value 18446744073709551615 out of range");
  gtask_type wantu64[] = {GTASK_UINT64};
  ASSERT_OK(gtask__check_args(NULL, "f", wantu64, 1, umax, 1));
  ASSERT_EQ(gtask__arg_u(&umax[0]), UINT64_MAX);

  /* GTASK_INT / GTASK_UINT arguments (Go's int and uint) fit int64/uint64. */
  gtask_value goint[] = {gtask_int(INT64_MIN), gtask_uint(7)};
  gtask_type want2[] = {GTASK_INT64, GTASK_UINT16};
  ASSERT_OK(gtask__check_args(NULL, "f", want2, 2, goint, 2));
  ASSERT_EQ(gtask__arg_i(&goint[0]), INT64_MIN);
  ASSERT_EQ(gtask__arg_u(&goint[1]), 7);
  gtask_value small[] = {gtask_int8(-128)};
  ASSERT_OK(gtask__check_args(NULL, "f", want64, 1, small, 1));
  ASSERT_EQ(gtask__arg_i(&small[0]), -128);
  gtask_value pos[] = {gtask_int32(65535)};
  gtask_type wantu16[] = {GTASK_UINT16};
  ASSERT_OK(gtask__check_args(NULL, "f", wantu16, 1, pos, 1));
  ASSERT_EQ(gtask__arg_u(&pos[0]), 65535);
  gtask_value over[] = {gtask_int32(65536)};
  ASSERT_ERR(gtask__check_args(NULL, "f", wantu16, 1, over, 1), GTASK_ETYPE);
}

TEST(check_args_floats) {
  gtask_type want32[] = {GTASK_FLOAT32};
  gtask_type want64[] = {GTASK_FLOAT64};
  gtask_value d[] = {gtask_float64(0.1)};
  ASSERT_OK(gtask__check_args(NULL, "f", want32, 1, d, 1)); /* precision: sender's choice */
  gtask_value huge[] = {gtask_float64(1e300)};
  ASSERT_ERR(gtask__check_args(NULL, "f", want32, 1, huge, 1), GTASK_ETYPE);
  ASSERT_STR_CONTAINS(gtask_last_error(), "f: argument 1: float32 value 1e+300 out of range");
  gtask_value inf[] = {gtask_float64(INFINITY)};
  ASSERT_OK(gtask__check_args(NULL, "f", want32, 1, inf, 1));
  gtask_value f[] = {gtask_float32(0.5f)};
  ASSERT_OK(gtask__check_args(NULL, "f", want64, 1, f, 1));
  ASSERT_DBL_EQ(gtask__arg_f(&f[0]), 0.5);
}

TEST(arg_getters) {
  gtask_value b = gtask_bool(true), s = gtask_strn("a\0b", 3);
  ASSERT_TRUE(gtask__arg_b(&b));
  ASSERT_MEM_EQ(gtask__arg_s(&s), "a\0b", 4);
}

/* The macro machinery: the parameter types come from _Generic. */
static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int shout(const char *s, uint8_t n, bool loud, double x) { return 0; }
GTASK_HANDLER(shout, (const char *, uint8_t, bool, double), ())

TEST(typed_handler_checks) {
  gtask_value three[] = {gtask_int64(1), gtask_int64(2), gtask_int64(3)};
  ASSERT_ERR(add__gtask(NULL, three, 3, NULL), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "add: expected 2 arguments, got 3");
  gtask_value mixed[] = {gtask_int64(1), gtask_str("x")};
  ASSERT_ERR(add__gtask(NULL, mixed, 2, NULL), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "add: argument 2: expected int64, got string");
  gtask_value sh[] = {gtask_str("x"), gtask_int64(256), gtask_bool(1), gtask_float64(1)};
  ASSERT_ERR(shout__gtask(NULL, sh, 4, NULL), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "shout: argument 2: uint8 value 256 out of range");
  sh[1] = gtask_int64(255);
  sh[2] = gtask_int64(1);
  ASSERT_ERR(shout__gtask(NULL, sh, 4, NULL), GTASK_ETYPE);
  ASSERT_STR_EQ(gtask_last_error(), "shout: argument 3: expected bool, got int64");
}

/* ---------------------------------------------------------------- names */

TEST(type_names) {
  static const char *const names[] = {"bool",   "int",    "int8",    "int16",   "int32",
                                      "int64",  "uint",   "uint8",   "uint16",  "uint32",
                                      "uint64", "float32", "float64", "string"};
  for (int t = GTASK_BOOL; t <= GTASK_STRING; t++) {
    ASSERT_STR_EQ(gtask_type_name((gtask_type)t), names[t - 1]);
    gtask_type p;
    ASSERT_OK(gtask_type_parse(names[t - 1], &p));
    ASSERT_EQ(p, t);
  }
  gtask_type p;
  ASSERT_ERR(gtask_type_parse("int128", &p), GTASK_EINVAL);
  ASSERT_ERR(gtask_type_parse("", &p), GTASK_EINVAL);
  ASSERT_ERR(gtask_type_parse(NULL, &p), GTASK_EINVAL);
  ASSERT_STR_EQ(gtask_type_name((gtask_type)0), "?");
  ASSERT_STR_EQ(gtask_type_name((gtask_type)15), "?");
}

TEST(status_and_error_names) {
  ASSERT_STR_EQ(gtask_status_name(GTASK_PENDING), "PENDING");
  ASSERT_STR_EQ(gtask_status_name(GTASK_STARTED), "STARTED");
  ASSERT_STR_EQ(gtask_status_name(GTASK_RETRY), "RETRY");
  ASSERT_STR_EQ(gtask_status_name(GTASK_SUCCESS), "SUCCESS");
  ASSERT_STR_EQ(gtask_status_name(GTASK_FAILURE), "FAILURE");
  ASSERT_STR_EQ(gtask_status_name((gtask_status)0), "?");
  ASSERT_STR_EQ(gtask_err_name(0), "OK");
  ASSERT_STR_EQ(gtask_strerror(0), "ok");
  ASSERT_STR_EQ(gtask_err_name(GTASK_ETIMEDOUT), "ETIMEDOUT");
  ASSERT_STR_EQ(gtask_strerror(GTASK_ETIMEDOUT), "timed out");
  ASSERT_STR_EQ(gtask_err_name(GTASK_ECRASH), "ECRASH");
  ASSERT_STR_EQ(gtask_err_name(12345), "EUNKNOWN");
  ASSERT_STR_EQ(gtask_strerror(-12345), "unknown error");
}

TEST(str_constructor) {
  gtask_value v = gtask_str(NULL);
  ASSERT_EQ(v.type, GTASK_STRING);
  ASSERT_STR_EQ(v.v.s.ptr, "");
  ASSERT_EQ(v.v.s.len, 0);
  v = gtask_str("abc");
  ASSERT_EQ(v.v.s.len, 3);
}

/* ---------------------------------------------------------------- ids */

TEST(uuid_and_id_valid) {
  char a[GTASK_ID_SIZE], b[GTASK_ID_SIZE];
  gtask__uuid(a);
  gtask__uuid(b);
  ASSERT_EQ(strlen(a), 36);
  ASSERT_TRUE(gtask__id_valid(a));
  ASSERT_STR_NE(a, b);
  ASSERT_EQ(a[14], '4'); /* version 4 */
  for (size_t i = 0; i < 36; i++)
    ASSERT_FALSE(a[i] >= 'A' && a[i] <= 'F');
  ASSERT_TRUE(gtask__id_valid("123e4567-E89B-12d3-a456-426614174000"));
  ASSERT_FALSE(gtask__id_valid("123e4567-e89b-12d3-a456-42661417400"));
  ASSERT_FALSE(gtask__id_valid("123e4567-e89b-12d3-a456-4266141740000"));
  ASSERT_FALSE(gtask__id_valid("123e4567+e89b-12d3-a456-426614174000"));
  ASSERT_FALSE(gtask__id_valid("123e4567-e89b-12d3-a456-42661417400g"));
  ASSERT_FALSE(gtask__id_valid("123e4567e89b-12d3-a456-4266141740000"));
  ASSERT_FALSE(gtask__id_valid(""));
  ASSERT_FALSE(gtask__id_valid(NULL));
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

TEST(uuids_are_distinct_v4_across_refills) {
  enum { N = 3000 }; /* more than one 4 KB batch of random bytes */
  char(*ids)[GTASK_ID_SIZE] = malloc(sizeof(*ids) * N);
  ASSERT_NOT_NULL(ids);
  for (int k = 0; k < N; k++) {
    gtask__uuid(ids[k]);
    ASSERT_TRUE(gtask__id_valid(ids[k]));
    ASSERT_EQ(ids[k][14], '4');                        /* version 4 */
    ASSERT_TRUE(strchr("89ab", ids[k][19]) != NULL); /* RFC 4122 variant */
  }
  qsort(ids, N, sizeof(*ids), cmp_id);
  for (int k = 1; k < N; k++) ASSERT_STR_NE(ids[k - 1], ids[k]);
  free(ids);
}

TEST(uuids_differ_between_parent_and_forked_child) {
  char warm[GTASK_ID_SIZE], parent[GTASK_ID_SIZE], child[GTASK_ID_SIZE] = "";
  gtask__uuid(warm); /* the parent's batch of random bytes is filled */
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) {
    char id[GTASK_ID_SIZE];
    gtask__uuid(id);
    _exit(write(fds[1], id, GTASK_ID_SIZE) == GTASK_ID_SIZE ? 0 : 1);
  }
  gtask__uuid(parent);
  ASSERT_EQ(read(fds[0], child, GTASK_ID_SIZE), GTASK_ID_SIZE);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fds[0]);
  close(fds[1]);
  ASSERT_TRUE(gtask__id_valid(child));
  ASSERT_STR_NE(parent, child); /* not the next bytes of the same batch */
}

TEST(queue_valid) {
  ASSERT_TRUE(gtask__queue_valid("default"));
  ASSERT_TRUE(gtask__queue_valid("a:b.c-d_E9"));
  ASSERT_FALSE(gtask__queue_valid(""));
  ASSERT_FALSE(gtask__queue_valid(NULL));
  ASSERT_FALSE(gtask__queue_valid("a b"));
  ASSERT_FALSE(gtask__queue_valid("a{b}"));
  ASSERT_FALSE(gtask__queue_valid("é"));
  char q[130];
  memset(q, 'q', sizeof(q));
  q[128] = '\0';
  ASSERT_TRUE(gtask__queue_valid(q));
  q[128] = 'q';
  q[129] = '\0';
  ASSERT_FALSE(gtask__queue_valid(q));
}

/* ---------------------------------------------------------------- errors, logs, clocks */

static void *set_error_thread(void *arg) {
  gtask__set_error("other thread %d", 7);
  return NULL;
}

TEST(last_error_is_per_thread) {
  gtask__set_error("main %s", "thread");
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, set_error_thread, NULL));
  ASSERT_OK(pthread_join(th, NULL));
  ASSERT_STR_EQ(gtask_last_error(), "main thread");
  char big[600];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  gtask__set_error("%s", big);
  ASSERT_EQ(strlen(gtask_last_error()), 255);
}

TEST(fmt_bounds) {
  char buf[8];
  gtask__fmt(buf, sizeof(buf), "%s", "0123456789");
  ASSERT_STR_EQ(buf, "0123456");
  gtask__fmt(NULL, 0, "%d", 1); /* no crash */
}

static char log_seen[2048];
static int log_calls;
static gtask_log_level log_level_seen;

static void capture(gtask_log_level level, const char *line, void *udata) {
  log_calls++;
  log_level_seen = level;
  snprintf(log_seen, sizeof(log_seen), "%s|%s", (const char *)udata, line);
}

TEST(log_callback_and_filter) {
  static char ud[] = "ud";
  gtask_set_log(capture, ud, GTASK_LOG_INFO);
  gtask__log(GTASK_LOG_DEBUG, "hidden %d", 1);
  ASSERT_EQ(log_calls, 0);
  gtask__log(GTASK_LOG_INFO, "shown %d", 2);
  ASSERT_EQ(log_calls, 1);
  ASSERT_EQ(log_level_seen, GTASK_LOG_INFO);
  ASSERT_STR_EQ(log_seen, "ud|shown 2");
  char big[2000];
  memset(big, 'y', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  gtask__log(GTASK_LOG_ERROR, "%s", big); /* truncated to the 1024-byte buffer */
  ASSERT_EQ(strlen(log_seen), 3 + 1023);
  gtask_set_log(NULL, NULL, GTASK_LOG_WARN);
  gtask__log(GTASK_LOG_WARN, "to stderr (expected in test output)");
  ASSERT_EQ(log_calls, 2);
}

TEST(clocks) {
  int64_t now = gtask__now_ms();
  ASSERT_GT(now, (int64_t)1600000000000); /* after 2020 */
  int64_t m1 = gtask__mono_ms(), m2 = gtask__mono_ms();
  ASSERT_LE(m1, m2);
}

/* ---------------------------------------------------------------- backoff */

TEST(backoff_ranges) {
  gtask_task t = {.backoff_first_ms = 1000, .backoff_max_ms = 60000};
  for (int rep = 0; rep < 200; rep++) {
    int64_t d1 = gtask__backoff_ms(&t, 1);
    ASSERT_GE(d1, 750);
    ASSERT_LE(d1, 1250);
    int64_t d3 = gtask__backoff_ms(&t, 3);
    ASSERT_GE(d3, 3000);
    ASSERT_LE(d3, 5000);
    int64_t d10 = gtask__backoff_ms(&t, 10); /* capped at 60000 */
    ASSERT_GE(d10, 45000);
    ASSERT_LE(d10, 75000);
    int64_t d0 = gtask__backoff_ms(&t, 0); /* treated as the first retry */
    ASSERT_LE(d0, 1250);
  }
}

TEST(backoff_overflow) {
  gtask_task t = {.backoff_first_ms = INT64_MAX / 2, .backoff_max_ms = INT64_MAX};
  for (uint32_t k = 1; k < 200; k += 7) {
    int64_t d = gtask__backoff_ms(&t, k);
    ASSERT_GT(d, 0);
  }
  ASSERT_GT(gtask__backoff_ms(&t, UINT32_MAX), 0);
  gtask_task z = {0}; /* clamped to 1 ms */
  ASSERT_EQ(gtask__backoff_ms(&z, 5), 1);
  gtask_task one = {.backoff_first_ms = 1, .backoff_max_ms = 1};
  ASSERT_EQ(gtask__backoff_ms(&one, 40), 1);
}

/* ---------------------------------------------------------------- messages */

TEST(msg_new_copies) {
  char body[] = {'{', '\0', '}'};
  gtask_msg *m = gtask_msg_new("0123456789012345678901234567890123456789", "q1", body, 3);
  ASSERT_NOT_NULL(m);
  ASSERT_EQ(strlen(m->id), 36);
  ASSERT_STR_EQ(m->queue, "q1");
  ASSERT_EQ(m->len, 3);
  ASSERT_MEM_EQ(m->body, body, 3);
  ASSERT_EQ(m->body[3], '\0');
  ASSERT_NULL(m->lease);
  ASSERT_EQ(m->due_ms, 0);
  gtask_msg_free(m);
  m = gtask_msg_new(NULL, NULL, NULL, 0);
  ASSERT_NOT_NULL(m);
  ASSERT_STR_EQ(m->body, "");
  gtask_msg_free(m);
  gtask_msg_free(NULL);
}

TEST(msg_new_alloc_failures) {
  for (long n = 1; n < 100; n++) {
    gtask__alloc_fail_at(n);
    gtask_msg *m = gtask_msg_new("x", "q", "body", 4);
    long made = gtask__alloc_fail_at(0);
    if (made < n) {
      ASSERT_NOT_NULL(m);
      gtask_msg_free(m);
      return;
    }
    ASSERT_NULL(m);
  }
  TEST_FAIL("msg_new never succeeded");
}

/* ---------------------------------------------------------------- allocation seam */

TEST(alloc_fail_at) {
  gtask__alloc_fail_at(0);
  void *p = gtask__malloc(0);
  ASSERT_NOT_NULL(p);
  gtask__free(p);
  ASSERT_EQ(gtask__alloc_fail_at(2), 1);
  p = gtask__malloc(1);
  ASSERT_NOT_NULL(p);
  ASSERT_NULL(gtask__calloc(1, 1)); /* the 2nd fails */
  void *q = gtask__realloc(p, 100); /* and only that one */
  ASSERT_NOT_NULL(q);
  ASSERT_EQ(gtask__alloc_fail_at(1), 3);
  ASSERT_NULL(gtask__strdup("x"));
  char *s = gtask__strndup("abcdef", 3);
  ASSERT_STR_EQ(s, "abc");
  gtask__free(s);
  gtask__free(q);
  gtask__free(NULL);
  ASSERT_NULL(gtask__strdup(NULL));
  gtask__alloc_fail_at(0);
}

static void *alloc_many(void *arg) {
  int *failures = arg;
  for (int i = 0; i < 10000; i++) {
    void *p = gtask__malloc(16);
    if (p == NULL)
      (*failures)++;
    gtask__free(p);
  }
  return NULL;
}

TEST(alloc_fail_at_threads) {
  gtask__alloc_fail_at(5000);
  pthread_t th[4];
  int failures[4] = {0};
  for (int i = 0; i < 4; i++)
    ASSERT_OK(pthread_create(&th[i], NULL, alloc_many, &failures[i]));
  for (int i = 0; i < 4; i++)
    ASSERT_OK(pthread_join(th[i], NULL));
  ASSERT_EQ(failures[0] + failures[1] + failures[2] + failures[3], 1);
  ASSERT_EQ(gtask__alloc_fail_at(0), 40000);
}
