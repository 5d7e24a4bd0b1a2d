/* runner.c -- the runner of every test binary: runs the tests that TEST() (or
 * test__register_arg, for the contract suite: tests/contract/) registered.
 * main.c holds the main() of the in-tree test binaries, which calls
 * test__main(); the contract suite's gtask_contract_run() calls it too.
 *
 * Each test runs in a forked child that is the leader of its own process group,
 * inside a fresh mkdtemp() directory, with its stdout and stderr captured to an
 * unlinked temp file.  The parent waits with a timeout; when the child exits
 * (or times out) the parent kills the whole process group before reaping the
 * child, so nothing the test started survives it and the group id cannot be
 * reused in between.  The runner is also a child subreaper (Linux): the test's
 * orphans are re-parented to it rather than to init, so after each test it kills
 * and reaps every remaining child, including processes that left the group
 * (setsid), and no zombie is left behind.  The verdict travels through a small MAP_SHARED page that
 * every process of the test can write: the first failure (or the skip) wins.
 *
 * Output, one line per test, then a summary line:
 *     ok 3 - name (12 ms)
 *     FAIL name: file.c:42: ASSERT_EQ(n, 3) failed: 2 vs 3
 *     skip name: redis-server not found
 *     4 passed, 1 failed, 1 skipped
 * The captured output of a failed or timed-out test is replayed on
 * stderr, each line prefixed with "# ".  Exit status 0 iff nothing failed.
 *
 * See test.h for the environment variables.
 */
#define _GNU_SOURCE
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* ---------------------------------------------------------------- registry */

typedef struct test_entry {
  const char *name;
  test__fn fn;           /* or: */
  test__fn_arg fn_arg;   /* called with arg when fn is NULL */
  void *arg;
  const char *file;
  int line;
  double timeout_s;
  size_t seq; /* registration order, the tie-breaker of the sort */
} test_entry;

static test_entry *tests;
static size_t ntests, tests_cap;

static void add_entry(const char *name, test__fn fn, test__fn_arg fn_arg, void *arg,
                      const char *file, int line, double timeout_s) {
  if (ntests == tests_cap) {
    size_t cap = tests_cap ? tests_cap * 2 : 64;
    test_entry *t = realloc(tests, cap * sizeof(*t));
    if (t == NULL) {
      fprintf(stderr, "test runner: out of memory registering %s\n", name);
      exit(2);
    }
    tests = t;
    tests_cap = cap;
  }
  tests[ntests] = (test_entry){name, fn, fn_arg, arg, file, line, timeout_s, ntests};
  ntests++;
}

void test__register(const char *name, test__fn fn, const char *file, int line,
                    double timeout_s) {
  add_entry(name, fn, NULL, NULL, file, line, timeout_s);
}

void test__register_arg(const char *name, test__fn_arg fn, void *arg, const char *file,
                        int line, double timeout_s) {
  add_entry(name, NULL, fn, arg, file, line, timeout_s);
}

static void call(const test_entry *t) {
  if (t->fn != NULL)
    t->fn();
  else
    t->fn_arg(t->arg);
}

/* Constructors run in an order the toolchain chooses; sort by source position. */
static int entry_cmp(const void *pa, const void *pb) {
  const test_entry *a = pa, *b = pb;
  int c = strcmp(a->file, b->file);
  if (c != 0)
    return c;
  if (a->line != b->line)
    return a->line < b->line ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* ---------------------------------------------------------------- shared verdict */

enum { VERDICT_NONE = 0, VERDICT_FAIL = 1, VERDICT_SKIP = 2 };

typedef struct verdict {
  int state;      /* VERDICT_*; set once with a compare-and-swap */
  char msg[1024]; /* the failure or skip message */
} verdict;

static verdict *shared;         /* MAP_SHARED page, inherited by the test's processes */
static char cur_tmpdir[PATH_MAX];
static double multiplier = 1.0;
static bool nofork;

const char *test_tmpdir(void) { return cur_tmpdir; }
double test_timeout_multiplier(void) { return multiplier; }

int64_t test_timeout_ms(int64_t ms) {
  double v = (double)ms * multiplier;
  return v > (double)INT64_MAX ? INT64_MAX : (int64_t)v;
}

int64_t test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void test_sleep_ms(int64_t ms) {
  if (ms <= 0)
    return;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void record(int state, const char *msg) {
  if (shared == NULL)
    return;
  int expected = VERDICT_NONE;
  if (__atomic_compare_exchange_n(&shared->state, &expected, -1, false, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE)) {
    snprintf(shared->msg, sizeof(shared->msg), "%s", msg);
    __atomic_store_n(&shared->state, state, __ATOMIC_RELEASE);
  }
}

TEST__NORETURN TEST__FMT(4, 0) static void vfinish(int state, const char *file, int line,
                                                   const char *fmt, va_list ap) {
  char msg[1024];
  int n = snprintf(msg, sizeof(msg), "%s:%d: ", file, line);
  if (n < 0 || (size_t)n >= sizeof(msg))
    n = 0;
  vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
  fprintf(stderr, "%s%s\n", state == VERDICT_SKIP ? "skipped: " : "", msg);
  fflush(stdout);
  fflush(stderr);
  record(state, state == VERDICT_SKIP ? msg + n : msg);
  if (nofork && state == VERDICT_FAIL)
    abort(); /* stop in the debugger */
  exit(state == VERDICT_SKIP ? 0 : 1);
}

void test__fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfinish(VERDICT_FAIL, file, line, fmt, ap);
  va_end(ap);
}

void test__skip(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfinish(VERDICT_SKIP, file, line, fmt, ap);
  va_end(ap);
}

/* WAIT_UNTIL: what was waited for, how long (scaled) and the multiplier, so
 * that a failure under a sanitizer says whether the deadline was scaled. */
void test__wait_fail(const char *file, int line, const char *cond, int64_t ms) {
  test__fail(file, line, "WAIT_UNTIL(%s) failed: still false after %lld ms (multiplier %g)", cond,
             (long long)ms, multiplier);
}

void test__wait_fail_msg(const char *file, int line, const char *cond, int64_t ms,
                         const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  test__fail(file, line, "%s: WAIT_UNTIL(%s) still false after %lld ms (multiplier %g)", what,
             cond, (long long)ms, multiplier);
}

void test__log(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void num_str(char *buf, size_t size, test__num v) {
  if (v.neg)
    snprintf(buf, size, "%jd", (intmax_t)v.u);
  else
    snprintf(buf, size, "%ju", v.u);
}

void test__num_fail(const char *file, int line, const char *op, const char *ea,
                    const char *eb, test__num a, test__num b) {
  char sa[32], sb[32];
  num_str(sa, sizeof(sa), a);
  num_str(sb, sizeof(sb), b);
  test__fail(file, line, "%s(%s, %s) failed: %s vs %s", op, ea, eb, sa, sb);
}

/* Quotes s into buf, escaping control bytes, and shortens it to fit. */
static void quote(char *buf, size_t size, const char *s) {
  if (s == NULL) {
    snprintf(buf, size, "NULL");
    return;
  }
  size_t o = 0;
  buf[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (o + 8 >= size) {
      o += (size_t)snprintf(buf + o, size - o, "...");
      break;
    }
    if (*p == '"' || *p == '\\')
      o += (size_t)snprintf(buf + o, size - o, "\\%c", *p);
    else if (*p == '\n')
      o += (size_t)snprintf(buf + o, size - o, "\\n");
    else if (*p < 0x20 || *p == 0x7f)
      o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *p);
    else
      buf[o++] = (char)*p;
  }
  if (o + 2 <= size) {
    buf[o++] = '"';
    buf[o] = '\0';
  } else {
    buf[size - 1] = '\0';
  }
}

void test__str_fail(const char *file, int line, const char *what, const char *ea,
                    const char *eb, const char *a, const char *b) {
  char qa[400], qb[400];
  quote(qa, sizeof(qa), a);
  quote(qb, sizeof(qb), b);
  test__fail(file, line, "%s(%s, %s) failed: %s %s %s", what, ea, eb, qa,
             strcmp(what, "ASSERT_STR_CONTAINS") == 0 ? "does not contain" : "vs", qb);
}

void test__mem_fail(const char *file, int line, const char *ea, const char *eb,
                    const void *a, const void *b, size_t n) {
  if (a == NULL || b == NULL)
    test__fail(file, line, "ASSERT_MEM_EQ(%s, %s, %zu) failed: %s is NULL", ea, eb, n,
               a == NULL ? ea : eb);
  const unsigned char *pa = a, *pb = b;
  size_t i = 0;
  while (i < n && pa[i] == pb[i])
    i++;
  test__fail(file, line,
             "ASSERT_MEM_EQ(%s, %s, %zu) failed: first difference at byte %zu: "
             "0x%02x vs 0x%02x",
             ea, eb, n, i, pa[i], pb[i]);
}

/* ---------------------------------------------------------------- temp dirs */

static const char *tmp_base(void) {
  const char *t = getenv("TMPDIR");
  return (t != NULL && *t != '\0') ? t : "/tmp";
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D || flag == FTW_DNR)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

static void rm_tree(const char *dir) {
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---------------------------------------------------------------- shared fixtures */

typedef struct shared_fixture {
  const char *prefix;
  test__setup_fn setup;
  void (*teardown)(void);
  bool done;         /* setup has run */
  const char *error; /* what setup returned */
} shared_fixture;

static shared_fixture fixtures[8];
static size_t nfixtures;
static pid_t kept[64]; /* the children the fixtures started: spared between tests */
static size_t nkept;

void test__register_shared(const char *prefix, test__setup_fn setup, void (*teardown)(void)) {
  if (nfixtures < sizeof(fixtures) / sizeof(fixtures[0]))
    fixtures[nfixtures++] = (shared_fixture){.prefix = prefix, .setup = setup, .teardown = teardown};
}

static bool is_kept(pid_t pid) {
  for (size_t k = 0; k < nkept; k++)
    if (kept[k] == pid)
      return true;
  return false;
}

static size_t children(pid_t *out, size_t max);

/* Runs the setup of the fixture test t needs, if not yet: NULL, or the
 * reason it failed. */
static const char *shared_setup(const test_entry *t) {
  for (size_t k = 0; k < nfixtures; k++) {
    shared_fixture *f = &fixtures[k];
    if (strncmp(t->name, f->prefix, strlen(f->prefix)) != 0)
      continue;
    if (!f->done) {
      f->done = true;
      f->error = f->setup();
      nkept = children(kept, sizeof(kept) / sizeof(kept[0]));
    }
    return f->error;
  }
  return NULL;
}

static void shared_teardown(void) {
  for (size_t k = 0; k < nfixtures; k++)
    if (fixtures[k].done && fixtures[k].teardown != NULL)
      fixtures[k].teardown();
  nkept = 0;
}

/* ---------------------------------------------------------------- leftovers */

/* The runner's children now (at most max of them into out): how many. */
static size_t children(pid_t *out, size_t max) {
  size_t found = 0;
#ifdef __linux__
  DIR *d = opendir("/proc");
  if (d == NULL)
    return 0;
  pid_t self = getpid();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
      continue;
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
    char *rp = strrchr(buf, ')');
    char state;
    long ppid;
    if (rp != NULL && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == (long)self &&
        found < max)
      out[found++] = (pid_t)pid;
  }
  closedir(d);
#else
  (void)out, (void)max;
#endif
  return found;
}

/* SIGKILLs every child of the runner but a shared fixture's: between tests,
 * any other child is an orphan of the last test that we adopted as
 * subreaper.  Returns how many it killed. */
static size_t kill_adopted(void) {
  pid_t pids[256];
  size_t n = children(pids, sizeof(pids) / sizeof(pids[0])), killed = 0;
  for (size_t k = 0; k < n; k++)
    if (!is_kept(pids[k])) {
      kill(pids[k], SIGKILL);
      killed++;
    }
  return killed;
}

/* Kills and reaps whatever the last test left behind. */
static void reap_leftovers(void) {
  for (int round = 0; round < 500; round++) {
    size_t left = kill_adopted();
    for (;;) {
      pid_t w = waitpid(-1, NULL, WNOHANG);
      if (w > 0 || (w < 0 && errno == EINTR))
        continue;
      if (w < 0 && errno == ECHILD)
        return;
      break; /* children remain, not yet dead (or kept) */
    }
    if (left == 0 && round > 0)
      return; /* only a shared fixture's are left */
    test_sleep_ms(10);
  }
  fprintf(stderr, "test runner: could not reap every leftover process\n");
}

/* ---------------------------------------------------------------- running one test */

static volatile sig_atomic_t interrupted; /* SIGINT / SIGTERM / SIGHUP received */

static void on_interrupt(int sig) { interrupted = sig; }

typedef enum outcome { PASSED, FAILED, SKIPPED } outcome;

static bool env_true(const char *name) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/* Copies the captured output to stderr, each line prefixed with "# ". */
static void replay(int fd) {
  if (fd < 0 || lseek(fd, 0, SEEK_SET) < 0)
    return;
  char buf[8192];
  bool bol = true;
  ssize_t n;
  fflush(stdout);
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    for (ssize_t i = 0; i < n; i++) {
      if (bol)
        fputs("# ", stderr);
      fputc(buf[i], stderr);
      bol = buf[i] == '\n';
    }
  }
  if (!bol)
    fputc('\n', stderr);
  fflush(stderr);
}

static void describe_status(char *buf, size_t size, int status) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  else
    snprintf(buf, size, "wait status 0x%x", status);
}

static outcome run_in_process(const test_entry *t, char *reason, size_t rsize) {
  shared->state = VERDICT_NONE;
  shared->msg[0] = '\0';
  call(t);
  if (shared->state == VERDICT_SKIP) {
    snprintf(reason, rsize, "%s", shared->msg);
    return SKIPPED;
  }
  return PASSED;
}

/* Runs t in a child; returns its outcome and a reason for FAILED / SKIPPED. */
static outcome run_forked(const test_entry *t, const sigset_t *oldmask, char *reason,
                          size_t rsize, bool *show_output, int *outfd) {
  bool verbose = env_true("GTASK_TEST_VERBOSE");
  shared->state = VERDICT_NONE;
  shared->msg[0] = '\0';
  *outfd = -1;
  if (!verbose) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/gtask-test-out-XXXXXX", tmp_base());
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
      unlink(path);
    *outfd = fd;
  }

  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(reason, rsize, "fork: %s", strerror(errno));
    return FAILED;
  }
  if (pid == 0) {
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigprocmask(SIG_SETMASK, oldmask, NULL);
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    if (*outfd >= 0) {
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
      }
      dup2(*outfd, STDOUT_FILENO);
      dup2(*outfd, STDERR_FILENO);
      close(*outfd);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);
    setenv("GTASK_TEST_TMPDIR", cur_tmpdir, 1); /* the redis fixture puts its dir here */
    if (chdir(cur_tmpdir) != 0) {
      fprintf(stderr, "chdir %s: %s\n", cur_tmpdir, strerror(errno));
      _exit(3);
    }
    call(t);
    fflush(stdout);
    exit(0);
  }
  setpgid(pid, pid); /* also here, so that killpg works whoever runs first */

  double limit_s = t->timeout_s * multiplier;
  int64_t limit_ms = limit_s > 1e12 ? (int64_t)1e15 : (int64_t)(limit_s * 1000.0);
  if (limit_ms < 1)
    limit_ms = 1;
  int64_t deadline = test_now_ms() + limit_ms;
  bool timed_out = false;
  bool intr = false;
  siginfo_t si;
  for (;;) {
    /* Observe the exit without reaping, so that the pid (the group id) stays
     * reserved until the group is killed. */
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
      break;
    if (interrupted) {
      intr = true;
      break;
    }
    int64_t left = deadline - test_now_ms();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    if (left > 100)
      left = 100; /* re-check at least every 100 ms */
    struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigtimedwait(&chld, NULL, &ts); /* SIGCHLD is blocked in the runner */
  }
  killpg(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  reap_leftovers();

  if (intr) {
    snprintf(reason, rsize, "interrupted by signal %d", (int)interrupted);
    *show_output = true;
    return FAILED;
  }
  if (timed_out) {
    snprintf(reason, rsize, "TIMEOUT after %.1f s", limit_s);
    *show_output = true;
    return FAILED;
  }
  int state = __atomic_load_n(&shared->state, __ATOMIC_ACQUIRE);
  if (state == VERDICT_FAIL || state == -1) { /* -1: killed while recording */
    snprintf(reason, rsize, "%s", shared->msg);
    *show_output = true;
    return FAILED;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    describe_status(reason, rsize, status);
    *show_output = true;
    return FAILED;
  }
  if (state == VERDICT_SKIP) {
    snprintf(reason, rsize, "%s", shared->msg);
    return SKIPPED;
  }
  return PASSED;
}

/* ---------------------------------------------------------------- test__main */

static bool selected(const test_entry *t, int argc, char **argv) {
  int nfilters = 0;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-')
      continue;
    nfilters++;
    if (strstr(t->name, argv[i]) != NULL)
      return true;
  }
  return nfilters == 0;
}

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [--list] [substring...]\n"
          "Runs the tests whose names contain one of the substrings (all by default).\n"
          "Environment: GTASK_TEST_TIMEOUT_MULTIPLIER, GTASK_TEST_VERBOSE=1,\n"
          "             GTASK_TEST_KEEP=1, GTASK_TEST_NOFORK=1 (see tests/support/test.h)\n",
          prog);
}

int test__main(int argc, char **argv) {
  const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  bool list = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--list") == 0 || strcmp(argv[i], "-l") == 0) {
      list = true;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(prog);
      return 0;
    } else if (argv[i][0] == '-') {
      usage(prog);
      return 2;
    }
  }

  if (ntests > 1)
    qsort(tests, ntests, sizeof(*tests), entry_cmp);
  if (list) {
    for (size_t i = 0; i < ntests; i++)
      if (selected(&tests[i], argc, argv))
        printf("%s\n", tests[i].name);
    return 0;
  }

  const char *m = getenv("GTASK_TEST_TIMEOUT_MULTIPLIER");
  if (m != NULL && *m != '\0') {
    char *end;
    double v = strtod(m, &end);
    if (end == m || *end != '\0' || !(v > 0) || v > 1e6)
      fprintf(stderr, "%s: ignoring bad GTASK_TEST_TIMEOUT_MULTIPLIER=%s\n", prog, m);
    else
      multiplier = v;
  }
  nofork = env_true("GTASK_TEST_NOFORK");
  bool keep = env_true("GTASK_TEST_KEEP");

  shared = mmap(NULL, sizeof(verdict), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                -1, 0);
  if (shared == MAP_FAILED) {
    perror("mmap");
    return 2;
  }

  setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef __linux__
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
#endif
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  /* SIGCHLD must not be ignored (waitid) and is waited for with sigtimedwait. */
  signal(SIGCHLD, SIG_DFL);
  sigset_t chld, oldmask;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &oldmask);

  size_t nsel = 0;
  for (size_t i = 0; i < ntests; i++)
    nsel += selected(&tests[i], argc, argv);
  if (nsel == 0 && argc > 1) {
    fprintf(stderr, "%s: no test matches the given names\n", prog);
    return 1;
  }
  printf("# %s: %zu test%s%s\n", prog, nsel, nsel == 1 ? "" : "s",
         multiplier != 1.0 ? " (timeouts scaled)" : "");

  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) == NULL)
    snprintf(cwd, sizeof(cwd), "/");

  int passed = 0, failed = 0, skipped = 0;
  size_t idx = 0;
  for (size_t i = 0; i < ntests && !interrupted; i++) {
    const test_entry *t = &tests[i];
    if (!selected(t, argc, argv))
      continue;
    idx++;
    char reason[1100] = "";
    const char *shared_error;
    bool show_output = false;
    int outfd = -1;
    outcome oc;

    snprintf(cur_tmpdir, sizeof(cur_tmpdir), "%s/gtask-test-XXXXXX", tmp_base());
    int64_t t0 = test_now_ms();
    if (mkdtemp(cur_tmpdir) == NULL) {
      snprintf(reason, sizeof(reason), "mkdtemp in %s: %s", tmp_base(), strerror(errno));
      oc = FAILED;
    } else if ((shared_error = shared_setup(t)) != NULL) {
      snprintf(reason, sizeof(reason), "shared fixture: %s", shared_error);
      oc = FAILED;
    } else if (nofork) {
      if (chdir(cur_tmpdir) != 0)
        fprintf(stderr, "chdir %s: %s\n", cur_tmpdir, strerror(errno));
      oc = run_in_process(t, reason, sizeof(reason));
      if (chdir(cwd) != 0)
        fprintf(stderr, "chdir %s: %s\n", cwd, strerror(errno));
    } else {
      oc = run_forked(t, &oldmask, reason, sizeof(reason), &show_output, &outfd);
    }
    int64_t ms = test_now_ms() - t0;

    if (show_output)
      replay(outfd);
    if (outfd >= 0)
      close(outfd);
    if (cur_tmpdir[0] != '\0' && strstr(cur_tmpdir, "XXXXXX") == NULL) {
      if (keep && oc == FAILED)
        fprintf(stderr, "# kept %s\n", cur_tmpdir);
      else
        rm_tree(cur_tmpdir);
    }

    switch (oc) {
    case PASSED:
      passed++;
      printf("ok %zu - %s (%lld ms)\n", idx, t->name, (long long)ms);
      break;
    case FAILED:
      failed++;
      printf("FAIL %s: %s\n", t->name, reason);
      break;
    case SKIPPED:
      skipped++;
      printf("skip %s: %s\n", t->name, reason);
      break;
    }
    fflush(stdout);
  }
  shared_teardown();
  reap_leftovers();
  if (interrupted)
    printf("# interrupted by signal %d\n", (int)interrupted);
  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  fflush(stdout);
  free(tests);
  return (failed == 0 && !interrupted) ? 0 : 1;
}
