/* test.h -- the test framework of gtask: test definitions and assertions.
 *
 * A test file is a list of tests; there is no second list to edit:
 *
 *     #include "test.h"
 *
 *     TEST(values_copy_empty) {
 *       gtask_value *out = (void *)1;
 *       ASSERT_OK(gtask__values_copy(NULL, 0, &out));
 *       ASSERT_NULL(out);
 *     }
 *
 *     TEST_TIMEOUT(lease_expires, 120) {   // seconds, before the multiplier
 *       ...
 *     }
 *
 * TEST(name) defines a test with the default timeout (60 s); TEST_TIMEOUT(name,
 * seconds) defines one with its own.  Each registers itself at load time
 * (a constructor), and tests run in the order they appear in the file.  The
 * runner (runner.c; main.c holds the main() that calls it) runs each test:
 *  - in its own forked process, in its own process group;
 *  - in its own fresh temporary directory, which is also its working directory
 *    (test_tmpdir()) and is removed afterwards;
 *  - under a timeout scaled by GTASK_TEST_TIMEOUT_MULTIPLIER (a float, default
 *    1); on timeout the whole process group is killed and the test fails with
 *    "TIMEOUT".  After each test the process group is killed anyway, so
 *    leftovers (a redis-server the test started, a forked worker) die too.
 *
 * Usage of a test binary:  test_foo [--list] [substring...]
 * runs the tests whose names contain one of the substrings (all without one).
 * Environment:
 *   GTASK_TEST_TIMEOUT_MULTIPLIER  scales every timeout (and test_timeout_ms()).
 *   GTASK_TEST_VERBOSE=1           shows every test's output as it runs (by
 *                                  default the output is captured and shown
 *                                  only when the test fails or times out).
 *   GTASK_TEST_KEEP=1              keeps the temp dir of a failed test.
 *   GTASK_TEST_NOFORK=1            runs the selected tests in the runner process
 *                                  itself (for gdb): no timeout, no isolation; a
 *                                  failed assertion abort()s, a SKIP ends the run.
 *
 * Assertions print both values with file:line and end the test process at once
 * with a failure (exit, so atexit handlers such as the redis fixture's cleanup
 * run).  An assertion failing in any process of the test (a forked worker, say)
 * fails the test, even if the main test process then exits normally.
 * Integers compare by value whatever their signedness (-1 is not equal to
 * UINT64_MAX); floating point needs ASSERT_DBL_EQ; pointers ASSERT_PTR_EQ.
 *
 *   ASSERT_TRUE(x)  ASSERT_FALSE(x)
 *   ASSERT_EQ(a, b) ASSERT_NE(a, b) ASSERT_LT(a, b) ASSERT_LE(a, b)
 *   ASSERT_GT(a, b) ASSERT_GE(a, b)                  integers, enums, bool, char
 *   ASSERT_DBL_EQ(a, b)                              exact ==, printed with %.17g
 *   ASSERT_PTR_EQ(a, b) ASSERT_PTR_NE(a, b) ASSERT_NULL(p) ASSERT_NOT_NULL(p)
 *   ASSERT_STR_EQ(a, b) ASSERT_STR_NE(a, b)          NULL-safe (NULL == NULL)
 *   ASSERT_STR_CONTAINS(hay, needle)
 *   ASSERT_MEM_EQ(a, b, n)
 *   ASSERT_OK(rc)                                    rc == 0, else prints
 *                                                    gtask_err_name/strerror
 *   ASSERT_ERR(rc, GTASK_ETIMEDOUT)                  prints both names
 *   TEST_FAIL("fmt", ...)                            fails unconditionally
 *   WAIT_UNTIL(cond, ms)                             polls cond until true; fails
 *   WAIT_UNTIL_MSG(cond, ms, "fmt", ...)             after test_timeout_ms(ms)
 *                                                    (see "waiting" below)
 *   SKIP("fmt", ...)                                 ends the test as skipped
 *   TEST_LOG("fmt", ...)                             a note in the test output
 */
#ifndef GTASK_TEST_H
#define GTASK_TEST_H

#include <gtask/gtask.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

/* The test's own temporary directory (absolute path; also the current working
 * directory when the test starts).  Valid for the whole test. */
const char *test_tmpdir(void);
/* ms scaled by GTASK_TEST_TIMEOUT_MULTIPLIER: use it for every wait, deadline
 * or sleep whose length depends on the machine's speed. */
int64_t test_timeout_ms(int64_t ms);
/* The multiplier itself (1.0 unless set). */
double test_timeout_multiplier(void);
/* Monotonic clock in ms, for measuring durations in tests. */
int64_t test_now_ms(void);
/* Sleeps ms milliseconds (not scaled).  To wait for something to happen, use
 * WAIT_UNTIL instead (see "waiting" below). */
void test_sleep_ms(int64_t ms);

/* ---------------------------------------------------------------- definitions */

typedef void (*test__fn)(void);
typedef void (*test__fn_arg)(void *arg);
void test__register(const char *name, test__fn fn, const char *file, int line,
                    double timeout_s);
/* The same for a test that is called with arg (the contract suite registers
 * one per case and target).  name must live until test__main returns. */
void test__register_arg(const char *name, test__fn_arg fn, void *arg, const char *file,
                        int line, double timeout_s);
/* Runs the registered tests as described above; returns the exit status
 * (main.c: the main() of the in-tree test binaries). */
int test__main(int argc, char **argv);

#define TEST_DEFAULT_TIMEOUT_S 60.0

#define TEST(name) TEST_TIMEOUT(name, TEST_DEFAULT_TIMEOUT_S)
#define TEST_TIMEOUT(name, seconds)                                            \
  static void test_body_##name(void);                                          \
  __attribute__((constructor)) static void test_reg_##name(void) {             \
    test__register(#name, test_body_##name, __FILE__, __LINE__, (seconds));    \
  }                                                                            \
  static void test_body_##name(void)

/* A fixture shared by the tests whose names start with `prefix` (issue 17:
 * a Redis Cluster takes a second to start; one per test would be most of the
 * suite's time).  setup() runs in the runner process itself, once, just
 * before the first selected test with that prefix is forked: the processes
 * it starts are children of the runner, which spares them when it kills a
 * test's leftovers, and every test inherits the state it made (fork).  It
 * returns NULL, or a reason, and then each such test fails with it.
 * teardown() runs when the runner exits.  Tests sharing a fixture must not
 * depend on each other: unique names (queues) for whatever they store.
 *     TEST_SHARED(cluster, "cluster_", cluster_setup, cluster_teardown) */
typedef const char *(*test__setup_fn)(void);
void test__register_shared(const char *prefix, test__setup_fn setup, void (*teardown)(void));
#define TEST_SHARED(name, prefix, setup, teardown)                             \
  __attribute__((constructor)) static void test_shared_##name(void) {          \
    test__register_shared((prefix), (setup), (teardown));                      \
  }

/* ---------------------------------------------------------------- failure paths */

#if defined(__GNUC__)
#define TEST__NORETURN __attribute__((noreturn))
#define TEST__FMT(f, a) __attribute__((format(printf, f, a)))
#else
#define TEST__NORETURN
#define TEST__FMT(f, a)
#endif

TEST__NORETURN void test__fail(const char *file, int line, const char *fmt, ...)
    TEST__FMT(3, 4);
TEST__NORETURN void test__skip(const char *file, int line, const char *fmt, ...)
    TEST__FMT(3, 4);
void test__log(const char *file, int line, const char *fmt, ...) TEST__FMT(3, 4);

#define TEST_FAIL(...) test__fail(__FILE__, __LINE__, __VA_ARGS__)
#define SKIP(...) test__skip(__FILE__, __LINE__, __VA_ARGS__)
#define TEST_LOG(...) test__log(__FILE__, __LINE__, __VA_ARGS__)

/* ---------------------------------------------------------------- integers
 * Each operand is evaluated once and converted to a sign + magnitude pair so
 * that signed and unsigned values compare by their mathematical value. */

typedef struct test__num {
  bool neg;    /* the value is negative */
  uintmax_t u; /* the value modulo 2^N (two's complement when neg) */
} test__num;

static inline test__num test__num_s(intmax_t v) {
  test__num n = {v < 0, (uintmax_t)v};
  return n;
}
static inline test__num test__num_u(uintmax_t v) {
  test__num n = {false, v};
  return n;
}
/* Chosen for float operands of ASSERT_EQ & co.; never defined, so a misuse fails
 * at compile time (gcc, clang >= 14) or at link time. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((error("use ASSERT_DBL_EQ for floating point")))
#endif
test__num test__num_float_use_ASSERT_DBL_EQ(long double v);

#define TEST__NUM(x)                                                           \
  _Generic((x),                                                                \
      bool: test__num_u,                                                       \
      unsigned char: test__num_u,                                              \
      unsigned short: test__num_u,                                             \
      unsigned int: test__num_u,                                               \
      unsigned long: test__num_u,                                              \
      unsigned long long: test__num_u,                                         \
      float: test__num_float_use_ASSERT_DBL_EQ,                                \
      double: test__num_float_use_ASSERT_DBL_EQ,                               \
      long double: test__num_float_use_ASSERT_DBL_EQ,                          \
      default: test__num_s)(x)

/* <0, 0, >0 as a is less than, equal to, greater than b. */
static inline int test__num_cmp(test__num a, test__num b) {
  if (a.neg != b.neg)
    return a.neg ? -1 : 1;
  return a.u < b.u ? -1 : a.u > b.u ? 1 : 0;
}

void test__num_fail(const char *file, int line, const char *op, const char *ea,
                    const char *eb, test__num a, test__num b) TEST__NORETURN;

/* Operands are stringified here, by the public macros, before they expand. */
#define TEST__CMP(op, cond, a, b, ea, eb)                                      \
  do {                                                                         \
    test__num test_a__ = TEST__NUM(a);                                         \
    test__num test_b__ = TEST__NUM(b);                                         \
    int test_c__ = test__num_cmp(test_a__, test_b__);                          \
    if (!(test_c__ cond 0))                                                    \
      test__num_fail(__FILE__, __LINE__, op, ea, eb, test_a__, test_b__);      \
  } while (0)

#define ASSERT_EQ(a, b) TEST__CMP("ASSERT_EQ", ==, a, b, #a, #b)
#define ASSERT_NE(a, b) TEST__CMP("ASSERT_NE", !=, a, b, #a, #b)
#define ASSERT_LT(a, b) TEST__CMP("ASSERT_LT", <, a, b, #a, #b)
#define ASSERT_LE(a, b) TEST__CMP("ASSERT_LE", <=, a, b, #a, #b)
#define ASSERT_GT(a, b) TEST__CMP("ASSERT_GT", >, a, b, #a, #b)
#define ASSERT_GE(a, b) TEST__CMP("ASSERT_GE", >=, a, b, #a, #b)

/* ---------------------------------------------------------------- booleans */

#define ASSERT_TRUE(x)                                                         \
  do {                                                                         \
    if (!(x))                                                                  \
      test__fail(__FILE__, __LINE__, "ASSERT_TRUE(%s) failed: it is false", #x); \
  } while (0)
#define ASSERT_FALSE(x)                                                        \
  do {                                                                         \
    if (x)                                                                     \
      test__fail(__FILE__, __LINE__, "ASSERT_FALSE(%s) failed: it is true", #x); \
  } while (0)

/* ---------------------------------------------------------------- floating point */

#define ASSERT_DBL_EQ(a, b)                                                    \
  do {                                                                         \
    double test_a__ = (a), test_b__ = (b);                                     \
    if (!(test_a__ == test_b__))                                               \
      test__fail(__FILE__, __LINE__,                                           \
                 "ASSERT_DBL_EQ(%s, %s) failed: %.17g vs %.17g", #a, #b,        \
                 test_a__, test_b__);                                          \
  } while (0)

/* ---------------------------------------------------------------- pointers */

#define TEST__PTR(name, cond, a, b, ea, eb)                                    \
  do {                                                                         \
    const void *test_a__ = (const void *)(a);                                  \
    const void *test_b__ = (const void *)(b);                                  \
    if (!(test_a__ cond test_b__))                                             \
      test__fail(__FILE__, __LINE__, "%s(%s, %s) failed: %p vs %p", name, ea,  \
                 eb, test_a__, test_b__);                                      \
  } while (0)

#define ASSERT_PTR_EQ(a, b) TEST__PTR("ASSERT_PTR_EQ", ==, a, b, #a, #b)
#define ASSERT_PTR_NE(a, b) TEST__PTR("ASSERT_PTR_NE", !=, a, b, #a, #b)
#define ASSERT_NULL(p)                                                         \
  do {                                                                         \
    const void *test_p__ = (const void *)(p);                                  \
    if (test_p__ != NULL)                                                      \
      test__fail(__FILE__, __LINE__, "ASSERT_NULL(%s) failed: it is %p", #p,   \
                 test_p__);                                                    \
  } while (0)
#define ASSERT_NOT_NULL(p)                                                     \
  do {                                                                         \
    if ((const void *)(p) == NULL)                                             \
      test__fail(__FILE__, __LINE__, "ASSERT_NOT_NULL(%s) failed: it is NULL", \
                 #p);                                                          \
  } while (0)

/* ---------------------------------------------------------------- strings, memory */

void test__str_fail(const char *file, int line, const char *what, const char *ea,
                    const char *eb, const char *a, const char *b) TEST__NORETURN;
void test__mem_fail(const char *file, int line, const char *ea, const char *eb,
                    const void *a, const void *b, size_t n) TEST__NORETURN;

static inline bool test__str_eq(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

#define ASSERT_STR_EQ(a, b)                                                    \
  do {                                                                         \
    const char *test_a__ = (a), *test_b__ = (b);                               \
    if (!test__str_eq(test_a__, test_b__))                                     \
      test__str_fail(__FILE__, __LINE__, "ASSERT_STR_EQ", #a, #b, test_a__,    \
                     test_b__);                                                \
  } while (0)
#define ASSERT_STR_NE(a, b)                                                    \
  do {                                                                         \
    const char *test_a__ = (a), *test_b__ = (b);                               \
    if (test__str_eq(test_a__, test_b__))                                      \
      test__str_fail(__FILE__, __LINE__, "ASSERT_STR_NE", #a, #b, test_a__,    \
                     test_b__);                                                \
  } while (0)
#define ASSERT_STR_CONTAINS(hay, needle)                                       \
  do {                                                                         \
    const char *test_a__ = (hay), *test_b__ = (needle);                        \
    if (test_a__ == NULL || test_b__ == NULL ||                                \
        strstr(test_a__, test_b__) == NULL)                                    \
      test__str_fail(__FILE__, __LINE__, "ASSERT_STR_CONTAINS", #hay, #needle, \
                     test_a__, test_b__);                                      \
  } while (0)
#define ASSERT_MEM_EQ(a, b, n)                                                 \
  do {                                                                         \
    const void *test_a__ = (a), *test_b__ = (b);                               \
    size_t test_n__ = (n);                                                     \
    if (test_n__ > 0 && (test_a__ == NULL || test_b__ == NULL ||               \
                         memcmp(test_a__, test_b__, test_n__) != 0))           \
      test__mem_fail(__FILE__, __LINE__, #a, #b, test_a__, test_b__, test_n__); \
  } while (0)

/* ---------------------------------------------------------------- waiting
 * WAIT_UNTIL(cond, ms) evaluates cond every TEST_WAIT_POLL_MS until it is
 * true, and fails the test if it is still false once test_timeout_ms(ms) have
 * passed (ms is before the multiplier, like every deadline here).  The last
 * evaluation starts after the deadline, so a wait never fails on a condition
 * that came true during the last poll interval.  WAIT_UNTIL_MSG adds a message
 * saying what did not happen.  cond may call helpers that assert.
 *
 *     WAIT_UNTIL(status_of(c, id) == GTASK_STARTED, 5000);
 *     WAIT_UNTIL_MSG(all_done(w, 4), 10000, "waits on a %d ms task still blocked", ms);
 *
 * Use it instead of a fixed sleep followed by an assertion: on a busy machine
 * (other builds, a sanitizer) a wait only takes longer, where a sleep turns
 * into a failure.  A sleep is still right to give something the chance to
 * happen that must not (a fifth task starting on four executors): say so in a
 * comment, and first wait until it could happen (the worker holds the fifth
 * task), so that the assertion after the sleep cannot pass vacuously. */

#define TEST_WAIT_POLL_MS 5

TEST__NORETURN void test__wait_fail(const char *file, int line, const char *cond, int64_t ms);
TEST__NORETURN void test__wait_fail_msg(const char *file, int line, const char *cond, int64_t ms,
                                        const char *fmt, ...) TEST__FMT(5, 6);

/* fail: the call that ends the test, with cond stringified by the public
 * macros before it expands. */
#define TEST__WAIT_UNTIL(cond, ms, fail)                                       \
  do {                                                                         \
    int64_t test_ms__ = test_timeout_ms(ms);                                   \
    int64_t test_until__ = test_now_ms() + test_ms__;                          \
    for (;;) {                                                                 \
      bool test_late__ = test_now_ms() > test_until__;                         \
      if (cond)                                                                \
        break;                                                                 \
      if (test_late__)                                                         \
        fail;                                                                  \
      test_sleep_ms(TEST_WAIT_POLL_MS);                                        \
    }                                                                          \
  } while (0)

#define WAIT_UNTIL(cond, ms)                                                   \
  TEST__WAIT_UNTIL(cond, ms,                                                   \
                   test__wait_fail(__FILE__, __LINE__, #cond, test_ms__))
#define WAIT_UNTIL_MSG(cond, ms, ...)                                          \
  TEST__WAIT_UNTIL(cond, ms,                                                   \
                   test__wait_fail_msg(__FILE__, __LINE__, #cond, test_ms__,   \
                                       __VA_ARGS__))

/* ---------------------------------------------------------------- gtask error codes */

#define ASSERT_OK(rc)                                                          \
  do {                                                                         \
    int test_rc__ = (int)(rc);                                                 \
    if (test_rc__ != 0)                                                        \
      test__fail(__FILE__, __LINE__,                                           \
                 "ASSERT_OK(%s) failed: %d %s (%s)", #rc, test_rc__,           \
                 gtask_err_name(test_rc__), gtask_strerror(test_rc__));        \
  } while (0)
#define ASSERT_ERR(rc, expected)                                               \
  do {                                                                         \
    int test_rc__ = (int)(rc), test_want__ = (int)(expected);                  \
    if (test_rc__ != test_want__)                                              \
      test__fail(__FILE__, __LINE__,                                           \
                 "ASSERT_ERR(%s, %s) failed: got %d %s (%s), want %d %s",      \
                 #rc, #expected, test_rc__,                                    \
                 test_rc__ == 0 ? "OK" : gtask_err_name(test_rc__),            \
                 test_rc__ == 0 ? "success" : gtask_strerror(test_rc__),       \
                 test_want__,                                                  \
                 test_want__ == 0 ? "OK" : gtask_err_name(test_want__));       \
  } while (0)

#endif /* GTASK_TEST_H */
