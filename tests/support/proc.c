/* proc.c -- clocks, program lookup, child processes and temp-dir removal for
 * the test fixtures.
 *
 * See proc.h.  gt_run() reads the child's output through a pipe while it waits,
 * so that a chatty command cannot block on a full pipe, and bounds the whole
 * run with one deadline so that a command stuck on a network peer cannot hang
 * the test (the test runner's timeout would catch it, but later and without
 * saying which command it was).
 */
#define _GNU_SOURCE
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GT_RUN_TIMEOUT_MS 20000

int64_t gt_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gt_sleep_ms(int64_t ms) {
  if (ms <= 0)
    return;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static double multiplier(void) {
  const char *m = getenv("GTASK_TEST_TIMEOUT_MULTIPLIER");
  if (m == NULL || *m == '\0')
    return 1.0;
  char *end;
  double v = strtod(m, &end);
  return (end != m && *end == '\0' && v > 0 && v < 1e6) ? v : 1.0;
}

int64_t gt_scaled_ms(int64_t ms) { return (int64_t)((double)ms * multiplier()); }

static bool is_executable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

bool gt_find_program(const char *name, char *out, size_t size) {
  if (strchr(name, '/') != NULL) {
    snprintf(out, size, "%s", name);
    return is_executable(out);
  }
  const char *path = getenv("PATH");
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s:/usr/bin:/usr/local/bin:/usr/sbin", path != NULL ? path : "");
  char *save = NULL;
  for (char *d = strtok_r(buf, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
    if (*d == '\0')
      continue;
    int n = snprintf(out, size, "%s/%s", d, name);
    if (n > 0 && (size_t)n < size && is_executable(out))
      return true;
  }
  return false;
}

void gt_child_reset(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, ~0U, 0) != 0)
#endif
  {
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
      max = 65536;
    for (int fd = 3; fd < max; fd++)
      close(fd);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      signal(s, SIG_DFL);
}

int gt_run(const char *const argv[], char *out, size_t outsize) {
  if (outsize == 0)
    return -1;
  out[0] = '\0';
  char path[PATH_MAX];
  if (!gt_find_program(argv[0], path, sizeof(path))) {
    snprintf(out, outsize, "%s: command not found in PATH", argv[0]);
    return -1;
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    snprintf(out, outsize, "pipe: %s", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(out, outsize, "fork: %s", strerror(errno));
    close(pipefd[0]);
    close(pipefd[1]);
    return -1;
  }
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0)
      dup2(in, STDIN_FILENO);
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    gt_child_reset();
    execv(path, (char *const *)argv);
    static const char msg[] = "gt_run: exec failed\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    _exit(127);
  }
  close(pipefd[1]);

  int64_t deadline = gt_mono_ms() + gt_scaled_ms(GT_RUN_TIMEOUT_MS);
  size_t used = 0;
  bool timed_out = false;
  for (;;) {
    int64_t left = deadline - gt_mono_ms();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
    int n = poll(&pfd, 1, (int)(left > INT_MAX ? INT_MAX : left));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      continue; /* the deadline check ends the loop */
    char buf[4096];
    ssize_t got = read(pipefd[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break; /* EOF: the command (and whatever it forked) closed its output */
    size_t keep = (size_t)got;
    if (keep > outsize - 1 - used)
      keep = outsize - 1 - used;
    memcpy(out + used, buf, keep);
    used += keep;
    out[used] = '\0';
  }
  close(pipefd[0]);

  int status = 0;
  bool killed = false;
  for (;;) {
    pid_t w = waitpid(pid, &status, timed_out && !killed ? WNOHANG : 0);
    if (w == pid)
      break;
    if (w < 0 && errno == EINTR)
      continue;
    if (w == 0) { /* timed out and still running */
      kill(pid, SIGKILL);
      killed = true;
      continue;
    }
    snprintf(out, outsize, "%s: waitpid: %s", argv[0], strerror(errno));
    return -1;
  }
  if (killed) {
    snprintf(out, outsize, "%s: killed after %lld ms without finishing", argv[0],
             (long long)gt_scaled_ms(GT_RUN_TIMEOUT_MS));
    return -1;
  }
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 127 && strstr(out, "gt_run: exec failed") != NULL) {
      snprintf(out, outsize, "%s: cannot execute %s", argv[0], path);
      return -1;
    }
    return WEXITSTATUS(status);
  }
  char tail[256];
  snprintf(tail, sizeof(tail), "\n[%s killed by signal %d]", argv[0], WTERMSIG(status));
  size_t tl = strlen(tail);
  if (used + tl >= outsize)
    used = outsize > tl + 1 ? outsize - tl - 1 : 0;
  snprintf(out + used, outsize - used, "%s", tail);
  return -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)ftw;
  if (flag == FTW_DP || flag == FTW_D || flag == FTW_DNR)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

void gt_rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }
