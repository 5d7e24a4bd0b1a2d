/* proc.h -- clocks, program lookup, child processes and temp-dir removal for
 * the test fixtures.
 *
 * The fixtures (redis_fixture, tls_fixture, sentinel_fixture) are linked into
 * programs that have no test runner (tests/chaos/chaos.c), so they cannot use
 * test.h's helpers; these are their own, with the same scaling rule:
 * gt_scaled_ms() multiplies by GTASK_TEST_TIMEOUT_MULTIPLIER exactly as
 * test_timeout_ms() does.
 *
 * gt_run() runs a short command (openssl, redis-cli) to completion and returns
 * its output, for making certificates and for checks from a second, independent
 * client:
 *
 *     char out[4096];
 *     const char *argv[] = {"openssl", "verify", "-CAfile", ca, cert, NULL};
 *     int st = gt_run(argv, out, sizeof(out));   // exit status, or -1
 *
 * Thread safety: gt_run() forks; call it from the test's main thread (or make
 * sure no other thread holds a lock the child might need: the child only calls
 * async-signal-safe functions before exec).
 */
#ifndef GTASK_TEST_PROC_H
#define GTASK_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Monotonic clock, in ms. */
int64_t gt_mono_ms(void);
/* Sleeps ms (not scaled), resuming after signals. */
void gt_sleep_ms(int64_t ms);
/* ms times GTASK_TEST_TIMEOUT_MULTIPLIER (a float, default 1). */
int64_t gt_scaled_ms(int64_t ms);

/* Finds the executable `name` in $PATH, then in /usr/bin, /usr/local/bin and
 * /usr/sbin, and writes its path to out.  A name with a '/' is taken as a
 * path.  false if there is none (out is then undefined). */
bool gt_find_program(const char *name, char *out, size_t size);

/* Removes dir and everything below it (links are removed, not followed);
 * errors are ignored: for temp dirs at clean-up. */
void gt_rm_tree(const char *dir);

/* For a freshly forked child about to exec: closes every descriptor above
 * stderr, empties the signal mask and sets every signal back to its default
 * disposition (ignored and blocked signals survive exec).  Async-signal-safe. */
void gt_child_reset(void);

/* Runs argv (argv[0] looked up with gt_find_program, argv NULL-terminated) with
 * stdin from /dev/null and stdout + stderr captured into out (NUL-terminated,
 * cut to outsize - 1 bytes; the rest is read and dropped).  The command is
 * killed if it has not finished within gt_scaled_ms(20000).
 * Returns its exit status (0-255), or -1 if it could not be run, was killed by
 * a signal or timed out; out then says why. */
int gt_run(const char *const argv[], char *out, size_t outsize);

#endif /* GTASK_TEST_PROC_H */
