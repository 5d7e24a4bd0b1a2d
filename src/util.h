/* util.h -- the utilities every file of libgtask uses (allocation with a
 * failure seam, errors, logging, clocks, ids), never installed.
 *
 * Split from internal.h so that an implementation built on the public
 * <gtask/extend.h> alone (src/memory/) can use the allocation seam -- which the
 * out-of-memory tests drive -- without seeing the core's private types. */
#ifndef GTASK_UTIL_H
#define GTASK_UTIL_H

#include "gtask/gtask.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GTASK__HIDDEN __attribute__((visibility("hidden")))

/* ---------------------------------------------------------------- allocation
 * Every allocation of the library goes through these, so that a test can make
 * the N-th one fail (gtask__alloc_fail_at) and check that the failure is
 * reported, not crashed on or leaked.  jansson is routed here too. */
void *gtask__malloc(size_t n);
void *gtask__calloc(size_t count, size_t size);
void *gtask__realloc(void *p, size_t n);
char *gtask__strdup(const char *s);
char *gtask__strndup(const char *s, size_t n);
void gtask__free(void *p);
/* Test hook: the n-th allocation from now fails (1 = the next), 0 disables.
 * Returns how many allocations were made since the last call. */
long gtask__alloc_fail_at(long n);

/* ---------------------------------------------------------------- errors, logs */

/* Sets the calling thread's detail message (read by gtask_last_error()). */
void gtask__set_error(const char *fmt, ...) GTASK__PRINTF(1, 2);
void gtask__log(gtask_log_level level, const char *fmt, ...) GTASK__PRINTF(2, 3);
/* True for a failure that may pass if the same call is made again later: a
 * connection that failed or timed out (ECONN, ETIMEDOUT), a reply that was
 * lost (EINDOUBT: only for calls that are safe to repeat), out of memory. */
bool gtask__rc_transient(int rc);
/* Bounded, always-terminated formatting into a fixed buffer. */
void gtask__fmt(char *buf, size_t size, const char *fmt, ...) GTASK__PRINTF(3, 4);

/* ---------------------------------------------------------------- Redis health
 * Process-wide counters for the metrics (metrics.c), kept by src/redis/pool.c:
 * errors = connects that failed and connections dropped broken (an I/O or
 * protocol error); reconnects = connections opened in a pool after one of its
 * connections was lost that way. */
extern _Atomic uint64_t gtask__redis_errors;
extern _Atomic uint64_t gtask__redis_reconnects;

/* ---------------------------------------------------------------- SIGPIPE
 * A write to a socket or pipe whose peer is gone raises SIGPIPE, whose default
 * action kills the process; hiredis 0.14 writes with write(2).  The library
 * never lets that happen:
 *  - threads it creates block SIGPIPE for their whole life (a write then fails
 *    with EPIPE, and the blocked signal stays pending, harmlessly);
 *  - on the application's threads, every borrow of a Redis connection blocks
 *    SIGPIPE until the connection is returned, then consumes a SIGPIPE that
 *    the library raised and restores the mask.  Nested borrows are counted.
 *    io_error: the connection saw an I/O error (only then can a SIGPIPE of
 *    ours be pending: a write that raises it fails with EPIPE). */
void gtask__block_sigpipe(void);
void gtask__sigpipe_enter(void);
void gtask__sigpipe_leave(bool io_error);

/* ---------------------------------------------------------------- clocks, ids */

int64_t gtask__now_ms(void);  /* CLOCK_REALTIME, ms since the epoch */
int64_t gtask__mono_ms(void); /* CLOCK_MONOTONIC, ms */
int64_t gtask__mono_ns(void); /* CLOCK_MONOTONIC, ns */
/* A random (version 4) UUID in its 36-character text form. */
void gtask__uuid(char out[GTASK_ID_SIZE]);
/* True if s is a well-formed task id (a UUID in text form). */
bool gtask__id_valid(const char *s);
/* True if s is a usable queue name: 1..128 bytes of [A-Za-z0-9_.:-]. */
bool gtask__queue_valid(const char *s);
/* NULL if s is a usable task name: 1..256 bytes, none of them a control
 * character (below 0x20, or 0x7f), which would break line-based output such
 * as `gtask dead list` (issue 14).  Else why not, as a constant string. */
const char *gtask__task_name_check(const char *s);

#endif /* GTASK_UTIL_H */
