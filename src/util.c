/* util.c -- the small services every file of libgtask uses.
 *
 *  - Allocation: every allocation of the library (and of jansson, see
 *    gtask__json_init in decode.c) goes through gtask__malloc and friends.
 *    They are plain malloc/free underneath (no header), so memory from one may
 *    be released with free() and vice versa, but they count calls and carry a
 *    failure seam, gtask__alloc_fail_at(), for the allocation-torture tests.
 *  - Errors and logs: the GTASK_ERRNO_MAP tables, the thread-local detail
 *    buffer behind gtask_last_error(), and the process-wide log callback.  The
 *    default log callback is the one place where the library writes to stderr.
 *  - Clocks, ids and names: wall and monotonic milliseconds, UUIDs, the
 *    validity rules of task ids and queue names, type and status names.
 *  - Retry backoff and broker messages (gtask_msg).
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <uuid/uuid.h>

/* ---------------------------------------------------------------- allocation */

/* Allocations attempted since the last gtask__alloc_fail_at() call. */
static atomic_long alloc_count;
/* Countdown to the allocation that must fail: 1 means the next one; 0 means
 * none.  Decremented only while positive, so exactly one allocation fails. */
static atomic_long alloc_fail_countdown;

/* True if this allocation attempt must fail.  Thread-safe: the countdown is
 * decremented with a compare-and-swap, so concurrent callers see distinct
 * values and exactly one of them sees 1. */
static bool alloc_should_fail(void) {
  atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
  long left = atomic_load_explicit(&alloc_fail_countdown, memory_order_relaxed);
  while (left > 0) {
    if (atomic_compare_exchange_weak_explicit(&alloc_fail_countdown, &left, left - 1,
                                              memory_order_relaxed, memory_order_relaxed))
      return left == 1;
  }
  return false;
}

long gtask__alloc_fail_at(long n) {
  atomic_store(&alloc_fail_countdown, n > 0 ? n : 0);
  return atomic_exchange(&alloc_count, 0);
}

/* Zero-size requests allocate one byte, so that a size of 0 gives a valid,
 * distinct pointer (or NULL on failure) on every libc. */
void *gtask__malloc(size_t n) {
  if (alloc_should_fail())
    return NULL;
  return malloc(n ? n : 1);
}

void *gtask__calloc(size_t count, size_t size) {
  if (alloc_should_fail())
    return NULL;
  if (count == 0 || size == 0)
    return calloc(1, 1);
  return calloc(count, size); /* calloc checks count * size for overflow */
}

/* Like realloc: on failure p is left untouched and still owned by the caller. */
void *gtask__realloc(void *p, size_t n) {
  if (alloc_should_fail())
    return NULL;
  return realloc(p, n ? n : 1);
}

char *gtask__strdup(const char *s) {
  if (s == NULL)
    return NULL;
  return gtask__strndup(s, strlen(s));
}

/* Copies at most n bytes of s, stopping at a NUL, and terminates the copy. */
char *gtask__strndup(const char *s, size_t n) {
  if (s == NULL)
    return NULL;
  size_t len = strnlen(s, n);
  char *p = gtask__malloc(len + 1);
  if (p == NULL)
    return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

void gtask__free(void *p) { free(p); }

/* ---------------------------------------------------------------- version */

/* The header's version, compiled into the library: what gtask_version()
 * returns is the version of the libgtask.so that was loaded. */
const char *gtask_version(void) { return GTASK_VERSION_STRING; }

/* ---------------------------------------------------------------- errors */

const char *gtask_strerror(int err) {
  switch (err) {
  case 0:
    return "ok";
#define GTASK__ERR_MSG(name, value, msg)                                      \
  case value:                                                                 \
    return msg;
    GTASK_ERRNO_MAP(GTASK__ERR_MSG)
#undef GTASK__ERR_MSG
  default:
    return "unknown error";
  }
}

const char *gtask_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define GTASK__ERR_NAME(name, value, msg)                                     \
  case value:                                                                 \
    return #name;
    GTASK_ERRNO_MAP(GTASK__ERR_NAME)
#undef GTASK__ERR_NAME
  default:
    return "EUNKNOWN";
  }
}

/* The calling thread's detail message; see gtask_last_error(). */
static _Thread_local char last_error[256];

const char *gtask_last_error(void) { return last_error; }

void gtask__set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof(last_error), fmt, ap);
  va_end(ap);
}

bool gtask__rc_transient(int rc) {
  return rc == GTASK_ECONN || rc == GTASK_ETIMEDOUT || rc == GTASK_EINDOUBT || rc == GTASK_ENOMEM;
}

void gtask__fmt(char *buf, size_t size, const char *fmt, ...) {
  if (buf == NULL || size == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, size, fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------- logging */

static const char *level_name(gtask_log_level level) {
  switch (level) {
  case GTASK_LOG_DEBUG:
    return "DEBUG";
  case GTASK_LOG_INFO:
    return "INFO";
  case GTASK_LOG_WARN:
    return "WARN";
  case GTASK_LOG_ERROR:
    return "ERROR";
  }
  return "?";
}

/* The default logger: one write() per line, so that lines of several threads
 * do not interleave. */
static void log_stderr(gtask_log_level level, const char *line, void *udata) {
  char buf[1200];
  int n = snprintf(buf, sizeof(buf), "gtask %s: %s\n", level_name(level), line);
  if (n < 0)
    return;
  size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
  if (len > 0 && buf[len - 1] != '\n')
    buf[len - 1] = '\n'; /* truncated: keep the line ending */
  ssize_t w = write(STDERR_FILENO, buf, len);
  (void)w; /* nowhere to report a failure to log */
}

/* The process-wide logger.  Atomics only so that a late gtask_set_log() is not
 * a data race; the three fields are not updated together (see gtask.h). */
static _Atomic(gtask_log_fn) log_fn = log_stderr;
static _Atomic(void *) log_udata;
static atomic_int log_min = GTASK_LOG_WARN;

void gtask_set_log(gtask_log_fn fn, void *udata, gtask_log_level min_level) {
  atomic_store(&log_udata, fn != NULL ? udata : NULL);
  atomic_store(&log_fn, fn != NULL ? fn : log_stderr);
  atomic_store(&log_min, (int)min_level);
}

void gtask__log(gtask_log_level level, const char *fmt, ...) {
  if ((int)level < atomic_load_explicit(&log_min, memory_order_relaxed))
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  gtask_log_fn fn = atomic_load(&log_fn);
  fn(level, line, atomic_load(&log_udata));
}

/* ---------------------------------------------------------------- clocks, ids */

static int64_t clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gtask__now_ms(void) { return clock_ms(CLOCK_REALTIME); }
int64_t gtask__mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

_Atomic uint64_t gtask__redis_errors;
_Atomic uint64_t gtask__redis_reconnects;

int64_t gtask__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Random bits come from the kernel's CSPRNG (getrandom) 4 KB at a time, per
 * thread: libuuid's uuid_generate_random costs ~2 us and six syscalls per id,
 * which was a tenth of a send.  A forked child must not hand out its parent's
 * remaining bytes again: every fork bumps a generation that invalidates them. */
enum { UUID_POOL = 4096 };
static _Thread_local unsigned char uuid_pool[UUID_POOL];
static _Thread_local size_t uuid_used = UUID_POOL;
static _Thread_local unsigned uuid_gen;
static atomic_uint fork_gen = 1;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void uuid_after_fork(void) { atomic_fetch_add(&fork_gen, 1); }
static void uuid_init(void) { pthread_atfork(NULL, NULL, uuid_after_fork); }

static void uuid_bytes(unsigned char out[16]) {
  pthread_once(&uuid_once, uuid_init);
  unsigned gen = atomic_load(&fork_gen);
  if (uuid_gen != gen || uuid_used + 16 > UUID_POOL) {
    size_t got = 0;
    while (got < UUID_POOL) {
      ssize_t r = getrandom(uuid_pool + got, UUID_POOL - got, 0);
      if (r > 0) got += (size_t)r;
      else if (r < 0 && errno != EINTR) break;
    }
    if (got < UUID_POOL) { /* no getrandom (old kernel, seccomp): libuuid's own sources */
      uuid_generate_random(out);
      return;
    }
    uuid_used = 0;
    uuid_gen = gen;
  }
  memcpy(out, uuid_pool + uuid_used, 16);
  memset(uuid_pool + uuid_used, 0, 16); /* an id's bits are not kept around */
  uuid_used += 16;
}

void gtask__uuid(char out[GTASK_ID_SIZE]) {
  uuid_t u;
  uuid_bytes(u);
  u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
  u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  uuid_unparse_lower(u, out);
}

static bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* 8-4-4-4-12 hex digits.  Upper-case digits are accepted, though gtask__uuid
 * writes lower case. */
bool gtask__id_valid(const char *s) {
  if (s == NULL)
    return false;
  for (size_t i = 0; i < GTASK_ID_SIZE - 1; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return false;
    } else if (!is_hex(s[i])) {
      return false; /* also stops at an early NUL */
    }
  }
  return s[GTASK_ID_SIZE - 1] == '\0';
}

static bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == ':' || c == '-';
}

bool gtask__queue_valid(const char *s) {
  if (s == NULL)
    return false;
  size_t i = 0;
  for (; s[i] != '\0'; i++) {
    if (i >= 128 || !is_name_char(s[i]))
      return false;
  }
  return i > 0;
}

const char *gtask__task_name_check(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 256)
    return "a task name of 1..256 bytes is required";
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7f)
      return "a task name must not contain a control character";
  }
  return NULL;
}

/* ---------------------------------------------------------------- names */

const char *gtask_status_name(gtask_status s) {
  switch (s) {
  case GTASK_PENDING:
    return "PENDING";
  case GTASK_STARTED:
    return "STARTED";
  case GTASK_RETRY:
    return "RETRY";
  case GTASK_SUCCESS:
    return "SUCCESS";
  case GTASK_FAILURE:
    return "FAILURE";
  case GTASK_CANCELLED:
    return "CANCELLED";
  }
  return "?";
}

/* Indexed by gtask_type; these are g_task's (Go's) names. */
static const char *const type_names[] = {
    [GTASK_BOOL] = "bool",       [GTASK_INT] = "int",         [GTASK_INT8] = "int8",
    [GTASK_INT16] = "int16",     [GTASK_INT32] = "int32",     [GTASK_INT64] = "int64",
    [GTASK_UINT] = "uint",       [GTASK_UINT8] = "uint8",     [GTASK_UINT16] = "uint16",
    [GTASK_UINT32] = "uint32",   [GTASK_UINT64] = "uint64",   [GTASK_FLOAT32] = "float32",
    [GTASK_FLOAT64] = "float64", [GTASK_STRING] = "string",
};

const char *gtask_type_name(gtask_type t) {
  if ((int)t < GTASK_BOOL || (int)t > GTASK_STRING)
    return "?";
  return type_names[t];
}

int gtask_type_parse(const char *name, gtask_type *out) {
  if (name == NULL || out == NULL)
    return GTASK_EINVAL;
  for (int t = GTASK_BOOL; t <= GTASK_STRING; t++) {
    if (strcmp(name, type_names[t]) == 0) {
      *out = (gtask_type)t;
      return 0;
    }
  }
  return GTASK_EINVAL;
}

gtask_value gtask_str(const char *s) {
  if (s == NULL)
    s = "";
  return gtask_strn(s, strlen(s));
}

/* ---------------------------------------------------------------- backoff */

/* xorshift64*, one state per thread, seeded lazily from the clock and the
 * state's own address (which differs between threads).  Only for jitter.
 * The multiplications wrap around on purpose (unsigned, well defined). */
static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void) {
  if (rng_state == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rng_state = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                ((uint64_t)(uintptr_t)&rng_state * 0x9E3779B97F4A7C15u);
    if (rng_state == 0)
      rng_state = 0x9E3779B97F4A7C15u;
  }
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1Du;
}

/* Never overflows: the doubling stops at max, and the jitter saturates at
 * INT64_MAX.  Out-of-range settings are clamped (first >= 1, max >= first). */
int64_t gtask__backoff_ms(const gtask_task *t, uint32_t k) {
  int64_t first = t->backoff_first_ms >= 1 ? t->backoff_first_ms : 1;
  int64_t max = t->backoff_max_ms >= first ? t->backoff_max_ms : first;
  uint32_t shift = k > 1 ? k - 1 : 0;
  int64_t delay;
  if (shift >= 62 || first > (max >> shift))
    delay = max;
  else
    delay = first << shift; /* <= max, so no overflow */
  if (delay > max)
    delay = max;

  int64_t spread = delay / 4; /* jitter in [-spread, +spread] */
  if (spread == 0)
    return delay;
  int64_t offset = (int64_t)(rng_next() % ((uint64_t)spread * 2 + 1)) - spread;
  if (offset > 0 && delay > INT64_MAX - offset)
    return INT64_MAX;
  return delay + offset;
}

/* ---------------------------------------------------------------- messages */

GTASK_EXTERN gtask_msg *gtask_msg_new(const char *id, const char *queue, const char *body, size_t len) {
  if (body == NULL)
    len = 0;
  gtask_msg *m = gtask__calloc(1, sizeof(*m));
  if (m == NULL)
    return NULL;
  m->epoch = -1;
  if (id != NULL) {
    size_t n = strnlen(id, GTASK_ID_SIZE - 1);
    memcpy(m->id, id, n);
    m->id[n] = '\0';
  }
  if (queue != NULL && (m->queue = gtask__strdup(queue)) == NULL)
    goto oom;
  if (len == SIZE_MAX || (m->body = gtask__malloc(len + 1)) == NULL)
    goto oom;
  if (len > 0)
    memcpy(m->body, body, len);
  m->body[len] = '\0';
  m->len = len;
  return m;
oom:
  gtask_msg_free(m);
  return NULL;
}

GTASK_EXTERN int gtask_msg_set_lease(gtask_msg *m, const char *lease) {
  if (m == NULL)
    return GTASK_EINVAL;
  char *copy = NULL;
  if (lease != NULL && (copy = gtask__strdup(lease)) == NULL)
    return GTASK_ENOMEM;
  gtask__free(m->lease);
  m->lease = copy;
  return 0;
}

GTASK_EXTERN void gtask_msg_free(gtask_msg *m) {
  if (m == NULL)
    return;
  gtask__free(m->queue);
  gtask__free(m->body);
  gtask__free(m->lease);
  gtask__free(m);
}

/* ---------------------------------------------------------------- SIGPIPE */

static _Thread_local bool sigpipe_blocked_for_good; /* a library thread */
static _Thread_local int sigpipe_depth;
static _Thread_local bool sigpipe_restore; /* we blocked it: unblock at the end */
static _Thread_local bool sigpipe_io_error; /* a nested borrow saw an I/O error */

void gtask__block_sigpipe(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  sigpipe_blocked_for_good = true;
}

/* One syscall in, one out (two after an I/O error) on an application thread;
 * none on the library's own threads, which block SIGPIPE for good.  SIGPIPE
 * was not blocked on entry when we restore it, so nothing of it was pending
 * then (it would have been delivered): one pending at the end is ours. */
void gtask__sigpipe_enter(void) {
  if (sigpipe_blocked_for_good || sigpipe_depth++ > 0) return;
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  sigpipe_restore = !sigismember(&old, SIGPIPE);
  sigpipe_io_error = false;
}

void gtask__sigpipe_leave(bool io_error) {
  if (sigpipe_blocked_for_good || sigpipe_depth == 0) return;
  sigpipe_io_error |= io_error;
  if (--sigpipe_depth > 0 || !sigpipe_restore) return;
  io_error = sigpipe_io_error;
  sigset_t set, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  /* A write that raised SIGPIPE failed with EPIPE: without an I/O error there
   * is nothing of ours to consume. */
  if (io_error && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
    /* Ours: consume it before unblocking, or it would be delivered now. */
    struct timespec zero = {0, 0};
    sigtimedwait(&set, NULL, &zero);
  }
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
