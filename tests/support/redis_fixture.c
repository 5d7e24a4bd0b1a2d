/* redis_fixture.c -- starts, restarts and stops a private redis-server for tests.
 *
 * See redis_fixture.h for the contract.  How it avoids the classic harness bugs:
 *  - no fixed port: a port is probed by binding 127.0.0.1:0 and reading it back
 *    with getsockname(); since another process may take it before redis binds it,
 *    a start whose log says "Address already in use" is retried on a new port;
 *  - no sleeping for readiness: PING in a loop (10 ms apart) until PONG, and the
 *    answer must come from *our* server (INFO process_id), not from whatever else
 *    might listen on that port;
 *  - no leftovers: each server is a child of the test process, in its process
 *    group (the runner kills that group after each test), and an atexit handler
 *    stops the servers of a test that ends early.
 */
#define _GNU_SOURCE
#include "redis_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define GT_FORBIDDEN_PORT 6379
#define GT_START_ATTEMPTS 5

struct gt_redis {
  pid_t pid;             /* the redis-server, 0 while down */
  pid_t owner;           /* the process that started it; only it stops it */
  int port;              /* fixed after the first successful start */
  bool persistent;       /* extra_conf enables AOF or RDB save points */
  char *extra_conf;      /* copy of the caller's lines, or NULL */
  char bin[PATH_MAX];    /* redis-server executable */
  char dir[96];          /* temp dir holding everything (short: see sock) */
  char conf[128];        /* <dir>/redis.conf */
  char log[128];         /* <dir>/redis.log */
  char sock[128];        /* <dir>/redis.sock, must fit sockaddr_un.sun_path */
  char url[64];          /* redis://127.0.0.1:PORT/0 */
  char unix_url[160];    /* unix:<sock>?db=0 */
  struct gt_redis *next; /* list of live servers, for the atexit handler */
};

static gt_redis *live;
static bool atexit_done;

/* ---------------------------------------------------------------- small helpers */

static double multiplier(void) {
  const char *m = getenv("GTASK_TEST_TIMEOUT_MULTIPLIER");
  if (m == NULL || *m == '\0')
    return 1.0;
  char *end;
  double v = strtod(m, &end);
  return (end != m && *end == '\0' && v > 0 && v < 1e6) ? v : 1.0;
}

static int64_t scaled(int64_t ms) { return (int64_t)((double)ms * multiplier()); }

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
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

static bool is_executable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* $GTASK_REDIS_SERVER, else redis-server in PATH, else the usual places. */
static bool find_server(char *out, size_t size) {
  const char *env = getenv("GTASK_REDIS_SERVER");
  if (env != NULL && *env != '\0') {
    if (is_executable(env)) {
      snprintf(out, size, "%s", env);
      return true;
    }
    fprintf(stderr, "gt_redis: GTASK_REDIS_SERVER=%s is not an executable file\n", env);
    return false;
  }
  const char *path = getenv("PATH");
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s:/usr/bin:/usr/local/bin:/usr/sbin",
           path != NULL ? path : "");
  char *save = NULL;
  for (char *d = strtok_r(buf, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
    if (*d == '\0')
      continue;
    snprintf(out, size, "%s/redis-server", d);
    if (is_executable(out))
      return true;
  }
  fprintf(stderr, "gt_redis: redis-server not found in PATH; install it (scripts/deps) "
                  "or set GTASK_REDIS_SERVER=/path/to/redis-server\n");
  return false;
}

/* A port that was free a moment ago: bind 127.0.0.1:0 and read it back. */
static int probe_port(void) {
  for (int tries = 0; tries < 10; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t len = sizeof(sa);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
      port = ntohs(sa.sin_port);
    close(fd);
    if (port > 0 && port != GT_FORBIDDEN_PORT)
      return port;
  }
  return -1;
}

/* True if extra_conf turns persistence on, so SHUTDOWN must not say NOSAVE. */
static bool conf_persists(const char *extra) {
  bool aof = false, save = false;
  const char *p = extra;
  while (p != NULL && *p != '\0') {
    const char *eol = strchr(p, '\n');
    size_t n = eol ? (size_t)(eol - p) : strlen(p);
    char line[512];
    snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 1 ? n : sizeof(line) - 1),
             p);
    char *s = line;
    while (*s == ' ' || *s == '\t')
      s++;
    if (strncmp(s, "appendonly", 10) == 0)
      aof = strstr(s + 10, "yes") != NULL;
    else if (strncmp(s, "save", 4) == 0 && (s[4] == ' ' || s[4] == '\t'))
      save = strstr(s + 4, "\"\"") == NULL && strstr(s + 4, "''") == NULL;
    p = eol ? eol + 1 : NULL;
  }
  return aof || save;
}

static int write_conf(gt_redis *r) {
  FILE *f = fopen(r->conf, "w");
  if (f == NULL) {
    fprintf(stderr, "gt_redis: %s: %s\n", r->conf, strerror(errno));
    return -1;
  }
  fprintf(f,
          "# generated by tests/support/redis_fixture.c\n"
          "bind 127.0.0.1\n"
          "port %d\n"
          "unixsocket %s\n"
          "unixsocketperm 700\n"
          "save \"\"\n"
          "appendonly no\n"
          "dir %s\n"
          "pidfile %s/redis.pid\n"
          "logfile %s\n"
          "daemonize no\n"
          "supervised no\n"
          "protected-mode no\n"
          "always-show-logo no\n",
          r->port, r->sock, r->dir, r->dir, r->log);
  if (r->extra_conf != NULL) {
    fprintf(f, "# extra_conf\n%s\n", r->extra_conf);
  }
  if (fclose(f) != 0) {
    fprintf(stderr, "gt_redis: %s: %s\n", r->conf, strerror(errno));
    return -1;
  }
  return 0;
}

static off_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Reads path from offset (at most the last 4 KiB of it) into buf. */
static void read_tail(const char *path, off_t from, char *buf, size_t size) {
  buf[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  off_t end = lseek(fd, 0, SEEK_END);
  if (end - from > (off_t)size - 1)
    from = end - (off_t)size + 1;
  if (from < 0)
    from = 0;
  ssize_t n = pread(fd, buf, size - 1, from);
  buf[n > 0 ? n : 0] = '\0';
  close(fd);
}

/* Closes every descriptor above stderr in a freshly forked child. */
static void close_from(int lowfd) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
    return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536)
    max = 65536;
  for (int fd = lowfd; fd < max; fd++)
    close(fd);
}

/* Forks and execs redis-server; its stdout/stderr go to <dir>/redis.stdout
 * (config errors are printed before the logfile is opened). */
static pid_t spawn(const gt_redis *r) {
  char out[128];
  snprintf(out, sizeof(out), "%s/redis.stdout", r->dir);
  pid_t pid = fork();
  if (pid != 0)
    return pid; /* parent, or -1 */
  int in = open("/dev/null", O_RDONLY);
  int o = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (in >= 0)
    dup2(in, STDIN_FILENO);
  if (o >= 0) {
    dup2(o, STDOUT_FILENO);
    dup2(o, STDERR_FILENO);
  }
  close_from(3);
  /* Dispositions set to ignore and blocked signals survive exec: reset them. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      signal(s, SIG_DFL);
  execl(r->bin, r->bin, r->conf, (char *)NULL);
  fprintf(stderr, "gt_redis: exec %s: %s\n", r->bin, strerror(errno));
  _exit(127);
}

/* Waits up to ms for pid to exit; true once it has been reaped (or is not ours). */
static bool wait_exit(pid_t pid, int64_t ms) {
  int64_t deadline = mono_ms() + ms;
  for (;;) {
    int status;
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno == ECHILD))
      return true;
    if (mono_ms() >= deadline)
      return false;
    sleep_ms(10);
  }
}

static void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
}

/* Connects within timeout_ms.  With bound_cmds the timeout also bounds every
 * later command, so that a silent peer on the port cannot hang the harness. */
static redisContext *connect_tcp(int port, int64_t timeout_ms, bool bound_cmds) {
  struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c != NULL && c->err == 0 && bound_cmds)
    redisSetTimeout(c, tv);
  return c;
}

typedef enum ready { READY, DIED, NOT_READY } ready;

/* PINGs until our server answers, it dies, or ms pass. */
static ready wait_ready(gt_redis *r, int64_t ms) {
  int64_t deadline = mono_ms() + ms;
  for (;;) {
    int status;
    pid_t w = waitpid(r->pid, &status, WNOHANG);
    if (w == r->pid || (w < 0 && errno == ECHILD)) {
      r->pid = 0;
      return DIED;
    }
    redisContext *c = connect_tcp(r->port, 200, true);
    if (c != NULL && c->err == 0) {
      redisReply *rep = redisCommand(c, "PING");
      bool pong = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
      freeReplyObject(rep);
      if (pong) {
        /* Is it ours?  Another process could own this port. */
        rep = redisCommand(c, "INFO server");
        bool ours = false;
        if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
          const char *p = strstr(rep->str, "process_id:");
          ours = p != NULL && strtol(p + 11, NULL, 10) == (long)r->pid;
        }
        freeReplyObject(rep);
        if (ours) {
          redisFree(c);
          return READY;
        }
      }
    }
    if (c != NULL)
      redisFree(c);
    if (mono_ms() >= deadline)
      return NOT_READY;
    sleep_ms(10);
  }
}

/* Starts the server; with same_port the port is kept, else probed afresh. */
static int start(gt_redis *r, bool same_port) {
  for (int attempt = 1; attempt <= GT_START_ATTEMPTS; attempt++) {
    if (!same_port) {
      r->port = probe_port();
      if (r->port < 0) {
        fprintf(stderr, "gt_redis: cannot find a free port: %s\n", strerror(errno));
        return -1;
      }
    }
    if (write_conf(r) != 0)
      return -1;
    off_t log_off = file_size(r->log);
    r->pid = spawn(r);
    if (r->pid < 0) {
      r->pid = 0;
      fprintf(stderr, "gt_redis: fork: %s\n", strerror(errno));
      return -1;
    }
    ready st = wait_ready(r, scaled(5000));
    if (st == READY) {
      snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
      return 0;
    }
    if (st == NOT_READY) {
      kill_and_reap(r->pid);
      r->pid = 0;
    }
    char tail[4096];
    read_tail(r->log, log_off, tail, sizeof(tail));
    if (strstr(tail, "Address already in use") != NULL) {
      fprintf(stderr, "gt_redis: port %d is in use (attempt %d of %d)%s\n", r->port,
              attempt, GT_START_ATTEMPTS, same_port ? ", waiting" : ", trying another");
      if (same_port)
        sleep_ms(scaled(200) * attempt);
      continue;
    }
    char out[128], stdout_tail[2048];
    snprintf(out, sizeof(out), "%s/redis.stdout", r->dir);
    read_tail(out, 0, stdout_tail, sizeof(stdout_tail));
    fprintf(stderr,
            "gt_redis: %s %s %s on port %d\n"
            "--- %s (tail)\n%s\n--- %s\n%s\n---\n",
            r->bin, r->conf, st == DIED ? "exited" : "did not answer within 5 s",
            r->port, r->log, tail, out, stdout_tail);
    return -1;
  }
  fprintf(stderr, "gt_redis: giving up after %d attempts (address in use)\n",
          GT_START_ATTEMPTS);
  return -1;
}

static void unlink_live(gt_redis *r) {
  for (gt_redis **p = &live; *p != NULL; p = &(*p)->next) {
    if (*p == r) {
      *p = r->next;
      return;
    }
  }
}

static void stop_all_at_exit(void) {
  while (live != NULL) {
    gt_redis *r = live;
    if (r->owner != getpid()) {
      /* A forked child of the test: the servers belong to its parent. */
      live = r->next;
      continue;
    }
    gt_redis_stop(r); /* unlinks r */
  }
}

/* ---------------------------------------------------------------- public */

gt_redis *gt_redis_start(const char *extra_conf) {
  gt_redis *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    fprintf(stderr, "gt_redis: out of memory\n");
    return NULL;
  }
  if (!find_server(r->bin, sizeof(r->bin))) {
    free(r);
    return NULL;
  }
  if (extra_conf != NULL) {
    r->extra_conf = strdup(extra_conf);
    if (r->extra_conf == NULL) {
      free(r);
      return NULL;
    }
    r->persistent = conf_persists(extra_conf);
  }

  /* Inside the test's own temp dir when run by the test runner, so that even a
   * test killed on timeout leaves nothing behind; else $TMPDIR or /tmp.  The
   * unix socket path must fit in sun_path (108 bytes): long bases are skipped. */
  const char *base = getenv("GTASK_TEST_TMPDIR");
  if (base == NULL || *base == '\0' || strlen(base) > 60)
    base = getenv("TMPDIR");
  if (base == NULL || *base == '\0' || strlen(base) > 60)
    base = "/tmp";
  snprintf(r->dir, sizeof(r->dir), "%s/gtask-redis-XXXXXX", base);
  if (mkdtemp(r->dir) == NULL) {
    fprintf(stderr, "gt_redis: mkdtemp %s: %s\n", r->dir, strerror(errno));
    free(r->extra_conf);
    free(r);
    return NULL;
  }
  snprintf(r->conf, sizeof(r->conf), "%s/redis.conf", r->dir);
  snprintf(r->log, sizeof(r->log), "%s/redis.log", r->dir);
  snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
  snprintf(r->unix_url, sizeof(r->unix_url), "unix:%s?db=0", r->sock);
  r->owner = getpid();

  if (!atexit_done) {
    atexit(stop_all_at_exit);
    atexit_done = true;
  }
  r->next = live;
  live = r;

  if (start(r, false) != 0) {
    gt_redis_stop(r);
    return NULL;
  }
  return r;
}

const char *gt_redis_url(const gt_redis *r) { return r->url; }
const char *gt_redis_unix_url(const gt_redis *r) { return r->unix_url; }
int gt_redis_port(const gt_redis *r) { return r->port; }
const char *gt_redis_dir(const gt_redis *r) { return r->dir; }
pid_t gt_redis_pid(const gt_redis *r) { return r->pid; }

int gt_redis_restart(gt_redis *r) {
  if (r->pid > 0) {
    redisContext *c = connect_tcp(r->port, 1000, true);
    bool sent = false;
    if (c != NULL && c->err == 0) {
      /* On success redis closes the connection without a reply. */
      redisReply *rep = redisCommand(c, r->persistent ? "SHUTDOWN" : "SHUTDOWN NOSAVE");
      if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "gt_redis: SHUTDOWN: %s\n", rep->str);
      else
        sent = true;
      freeReplyObject(rep);
    }
    if (c != NULL)
      redisFree(c);
    if (!sent)
      kill(r->pid, SIGTERM);
    if (!wait_exit(r->pid, scaled(5000))) {
      fprintf(stderr, "gt_redis: redis-server %d did not shut down; killing it\n",
              (int)r->pid);
      kill_and_reap(r->pid);
    }
    r->pid = 0;
  }
  return start(r, true);
}

int gt_redis_kill9(gt_redis *r) {
  if (r->pid <= 0)
    return -1;
  kill_and_reap(r->pid);
  r->pid = 0;
  return 0;
}

int gt_redis_start_again(gt_redis *r) {
  if (r->pid > 0) {
    fprintf(stderr, "gt_redis: start_again: redis-server %d is still running\n",
            (int)r->pid);
    return -1;
  }
  return start(r, true);
}

void gt_redis_stop(gt_redis *r) {
  if (r == NULL)
    return;
  unlink_live(r);
  if (r->owner == getpid()) {
    if (r->pid > 0) {
      kill(r->pid, SIGTERM);
      if (!wait_exit(r->pid, 3000))
        kill_and_reap(r->pid);
      r->pid = 0;
    }
    nftw(r->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
  free(r->extra_conf);
  free(r);
}

redisContext *gt_redis_connect(const gt_redis *r) {
  redisContext *c = connect_tcp(r->port, 2000, false);
  if (c == NULL) {
    fprintf(stderr, "gt_redis: connect 127.0.0.1:%d: out of memory\n", r->port);
    return NULL;
  }
  if (c->err != 0) {
    fprintf(stderr, "gt_redis: connect 127.0.0.1:%d: %s\n", r->port, c->errstr);
    redisFree(c);
    return NULL;
  }
  return c;
}

int gt_redis_blocked_clients(const gt_redis *r) {
  redisContext *c = gt_redis_connect(r);
  if (c == NULL)
    return -1;
  int n = -1;
  redisReply *rep = redisCommand(c, "INFO clients");
  if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
    const char *at = strstr(rep->str, "blocked_clients:");
    if (at != NULL)
      n = (int)strtol(at + strlen("blocked_clients:"), NULL, 10);
  }
  if (rep != NULL)
    freeReplyObject(rep);
  redisFree(c);
  return n;
}
