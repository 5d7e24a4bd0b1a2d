/* redis_fixture.c -- starts, restarts and stops a private redis-server for tests.
 *
 * See redis_fixture.h for the contract.  How it avoids the classic harness bugs:
 *  - no fixed port: a port is probed by binding 127.0.0.1:0 and reading it back
 *    with getsockname(); since another process may take it before redis binds it,
 *    a start whose log says "Address already in use" is retried on a new port;
 *  - no sleeping for readiness: PING in a loop (10 ms apart) until PONG, and the
 *    answer must come from *our* server (INFO process_id), not from whatever else
 *    might listen on that port; a TLS server is asked on its TLS port, through
 *    tls_fixture's OpenSSL client (hiredis 0.14 has no TLS);
 *  - no leftovers: each server is a child of the test process, in its process
 *    group (the runner kills that group after each test), and an atexit handler
 *    stops the servers of a test that ends early.
 */
#define _GNU_SOURCE
#include "redis_fixture.h"

#include "proc.h"
#include "tls_fixture.h"

#include <errno.h>
#include <fcntl.h>
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
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#define GT_FORBIDDEN_PORT 6379
#define GT_START_ATTEMPTS 5

struct gt_redis {
  pid_t pid;             /* the redis-server, 0 while down */
  pid_t owner;           /* the process that started it; only it stops it */
  int port;              /* fixed after the first successful start; 0 with TLS */
  int tls_port;          /* the TLS port, fixed likewise; 0 without TLS */
  bool sentinel;         /* runs as `redis-server CONF --sentinel` */
  bool cluster;          /* cluster-enabled: port <= 55535, bus port + 10000 free */
  bool conf_kept;        /* a sentinel's conf exists: keep what it rewrote */
  bool persistent;       /* extra_conf enables AOF or RDB save points */
  char *extra_conf;      /* copy of the caller's lines, or NULL */
  char *tls_conf;        /* the tls-* lines, or NULL without TLS */
  char *tls_client_cert; /* what the readiness check presents (tls-auth-clients) */
  char *tls_client_key;
  char bin[PATH_MAX];    /* redis-server executable */
  char dir[96];          /* temp dir holding everything (short: see sock) */
  char conf[128];        /* <dir>/redis.conf */
  char log[128];         /* <dir>/redis.log */
  char sock[128];        /* <dir>/redis.sock, must fit sockaddr_un.sun_path */
  char url[64];          /* redis://127.0.0.1:PORT/0, or "" with TLS */
  char tls_url[64];      /* rediss://127.0.0.1:TLS_PORT/0, or "" without TLS */
  char unix_url[160];    /* unix:<sock>?db=0 */
  struct gt_redis *next; /* list of live servers, for the atexit handler */
};

static gt_redis *live;
static bool atexit_done;

/* ---------------------------------------------------------------- small helpers */

/* $GTASK_REDIS_SERVER, else redis-server in PATH, else the usual places. */
static bool find_server(char *out, size_t size) {
  const char *env = getenv("GTASK_REDIS_SERVER");
  if (env != NULL && *env != '\0') {
    if (gt_find_program(env, out, size))
      return true;
    fprintf(stderr, "gt_redis: GTASK_REDIS_SERVER=%s is not an executable file\n", env);
    return false;
  }
  if (gt_find_program("redis-server", out, size))
    return true;
  fprintf(stderr, "gt_redis: redis-server not found in PATH; install it (scripts/deps) "
                  "or set GTASK_REDIS_SERVER=/path/to/redis-server\n");
  return false;
}

/* True if 127.0.0.1:port can be bound now. */
static bool port_free(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)port);
  bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return ok;
}

/* A port that was free a moment ago: bind 127.0.0.1:0 and read it back.  A
 * cluster node's must be at most 55535 with port + 10000 (its bus) free. */
static int probe_port(bool cluster) {
  for (int tries = 0; tries < (cluster ? 200 : 10); tries++) {
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
    if (cluster && (port > 55535 || !port_free(port + 10000)))
      continue;
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
  if (r->tls_conf != NULL)
    fprintf(f, "tls-port %d\n%s", r->tls_port, r->tls_conf);
  if (r->cluster)
    fprintf(f, "cluster-enabled yes\ncluster-config-file %s/nodes.conf\n", r->dir);
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
  gt_child_reset();
  if (r->sentinel)
    execl(r->bin, r->bin, r->conf, "--sentinel", (char *)NULL);
  else
    execl(r->bin, r->bin, r->conf, (char *)NULL);
  fprintf(stderr, "gt_redis: exec %s: %s\n", r->bin, strerror(errno));
  _exit(127);
}

/* Waits up to ms for pid to exit; true once it has been reaped (or is not ours). */
static bool wait_exit(pid_t pid, int64_t ms) {
  int64_t deadline = gt_mono_ms() + ms;
  for (;;) {
    int status;
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno == ECHILD))
      return true;
    if (gt_mono_ms() >= deadline)
      return false;
    gt_sleep_ms(10);
  }
}

static void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
}

/* Connects within timeout_ms, over TCP, or over the unix socket when the
 * server has no plain TCP port (TLS only).  With bound_cmds the timeout also
 * bounds every later command, so that a silent peer cannot hang the harness. */
static redisContext *connect_plain(const gt_redis *r, int64_t timeout_ms, bool bound_cmds) {
  struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
  redisContext *c = r->port > 0 ? redisConnectWithTimeout("127.0.0.1", r->port, tv)
                                : redisConnectUnixWithTimeout(r->sock, tv);
  if (c != NULL && c->err == 0 && bound_cmds)
    redisSetTimeout(c, tv);
  return c;
}

/* Where the server is reached by connect_plain(), for messages. */
static void plain_addr(const gt_redis *r, char *buf, size_t size) {
  if (r->port > 0)
    snprintf(buf, size, "127.0.0.1:%d", r->port);
  else
    snprintf(buf, size, "%s", r->sock);
}

typedef enum ready { READY, DIED, NOT_READY } ready;

/* True if an INFO server reply names pid as the server's process. */
static bool info_names_pid(const redisReply *rep, pid_t pid) {
  if (rep == NULL || rep->type != REDIS_REPLY_STRING)
    return false;
  const char *p = strstr(rep->str, "process_id:");
  return p != NULL && strtol(p + 11, NULL, 10) == (long)pid;
}

/* One readiness probe over TLS, on the TLS port: the handshake, PING, and INFO
 * naming our pid.  The server's certificate is not verified (a test may start
 * a server with an expired or unknown certificate on purpose); the client
 * certificate is presented, as tls-auth-clients yes requires. */
static bool answers_tls(const gt_redis *r) {
  gt_tls_opts o = {.cert = r->tls_client_cert, .key = r->tls_client_key, .timeout_ms = 200};
  gt_tls *t = gt_tls_connect(r->tls_port, &o, NULL, 0);
  if (t == NULL)
    return false;
  redisReply *rep = gt_tls_command(t, "PING");
  bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
  freeReplyObject(rep);
  if (ok) {
    rep = gt_tls_command(t, "INFO server");
    ok = info_names_pid(rep, r->pid);
    freeReplyObject(rep);
  }
  gt_tls_close(t);
  return ok;
}

/* One readiness probe on the plain TCP port: PING, and INFO naming our pid
 * (another process could own this port). */
static bool answers_plain(const gt_redis *r) {
  redisContext *c = connect_plain(r, 200, true);
  bool ok = false;
  if (c != NULL && c->err == 0) {
    redisReply *rep = redisCommand(c, "PING");
    ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    freeReplyObject(rep);
    if (ok) {
      rep = redisCommand(c, "INFO server");
      ok = info_names_pid(rep, r->pid);
      freeReplyObject(rep);
    }
  }
  if (c != NULL)
    redisFree(c);
  return ok;
}

/* PINGs until our server answers, it dies, or ms pass. */
static ready wait_ready(gt_redis *r, int64_t ms) {
  int64_t deadline = gt_mono_ms() + ms;
  for (;;) {
    int status;
    pid_t w = waitpid(r->pid, &status, WNOHANG);
    if (w == r->pid || (w < 0 && errno == ECHILD)) {
      r->pid = 0;
      return DIED;
    }
    if (r->tls_port > 0 ? answers_tls(r) : answers_plain(r))
      return READY;
    if (gt_mono_ms() >= deadline)
      return NOT_READY;
    gt_sleep_ms(10);
  }
}

/* The port the server listens on for clients: the TLS port with TLS. */
static int listen_port(const gt_redis *r) { return r->tls_port > 0 ? r->tls_port : r->port; }

/* Starts the server; with same_port the port is kept, else probed afresh. */
static int start(gt_redis *r, bool same_port) {
  for (int attempt = 1; attempt <= GT_START_ATTEMPTS; attempt++) {
    if (!same_port) {
      int port = probe_port(r->cluster);
      if (port < 0) {
        fprintf(stderr, "gt_redis: cannot find a free port: %s\n", strerror(errno));
        return -1;
      }
      if (r->tls_conf != NULL)
        r->tls_port = port; /* and r->port stays 0: no plain TCP */
      else
        r->port = port;
    }
    /* A sentinel rewrites its own conf (its state: replicas, other sentinels,
     * epochs): once it has run, start it again from what it wrote. */
    if (!r->conf_kept && write_conf(r) != 0)
      return -1;
    off_t log_off = file_size(r->log);
    r->pid = spawn(r);
    if (r->pid < 0) {
      r->pid = 0;
      fprintf(stderr, "gt_redis: fork: %s\n", strerror(errno));
      return -1;
    }
    ready st = wait_ready(r, gt_scaled_ms(5000));
    if (st == READY) {
      if (r->port > 0)
        snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
      if (r->tls_port > 0)
        snprintf(r->tls_url, sizeof(r->tls_url), "rediss://127.0.0.1:%d/0", r->tls_port);
      r->conf_kept = r->sentinel;
      return 0;
    }
    if (st == NOT_READY) {
      kill_and_reap(r->pid);
      r->pid = 0;
    }
    char tail[4096];
    read_tail(r->log, log_off, tail, sizeof(tail));
    if (strstr(tail, "Address already in use") != NULL) {
      fprintf(stderr, "gt_redis: port %d is in use (attempt %d of %d)%s\n", listen_port(r),
              attempt, GT_START_ATTEMPTS, same_port ? ", waiting" : ", trying another");
      if (same_port)
        gt_sleep_ms(gt_scaled_ms(200) * attempt);
      continue;
    }
    char out[128], stdout_tail[2048];
    snprintf(out, sizeof(out), "%s/redis.stdout", r->dir);
    read_tail(out, 0, stdout_tail, sizeof(stdout_tail));
    fprintf(stderr,
            "gt_redis: %s %s%s %s on %sport %d\n"
            "--- %s (tail)\n%s\n--- %s\n%s\n---\n",
            r->bin, r->conf, r->sentinel ? " --sentinel" : "",
            st == DIED ? "exited" : "did not answer within 5 s",
            r->tls_port > 0 ? "TLS " : "", listen_port(r), r->log, tail, out, stdout_tail);
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

/* Copies the tls-* lines and the readiness client's certificate into r. */
static int set_tls(gt_redis *r, const gt_redis_opts *o) {
  const gt_certs *c = o->certs;
  const char *cert = o->tls_cert != NULL ? o->tls_cert : c->server_cert;
  const char *key = o->tls_key != NULL ? o->tls_key : c->server_key;
  const char *auth = o->tls_auth_clients != NULL ? o->tls_auth_clients : "yes";
  if (strcmp(auth, "no") != 0 && strcmp(auth, "optional") != 0 && strcmp(auth, "yes") != 0) {
    fprintf(stderr, "gt_redis: tls-auth-clients must be no, optional or yes, not \"%s\"\n",
            auth);
    return -1;
  }
  size_t n = strlen(cert) + strlen(key) + strlen(c->ca) + strlen(auth) + 128;
  r->tls_conf = malloc(n);
  r->tls_client_cert = strdup(c->client_cert);
  r->tls_client_key = strdup(c->client_key);
  if (r->tls_conf == NULL || r->tls_client_cert == NULL || r->tls_client_key == NULL) {
    fprintf(stderr, "gt_redis: out of memory\n");
    return -1;
  }
  snprintf(r->tls_conf, n,
           "tls-cert-file %s\n"
           "tls-key-file %s\n"
           "tls-ca-cert-file %s\n"
           "tls-auth-clients %s\n",
           cert, key, c->ca, auth);
  return 0;
}

static void free_redis(gt_redis *r) {
  free(r->extra_conf);
  free(r->tls_conf);
  free(r->tls_client_cert);
  free(r->tls_client_key);
  free(r);
}

gt_redis *gt_redis_start_opts(const gt_redis_opts *o) {
  static const gt_redis_opts defaults = {0};
  if (o == NULL)
    o = &defaults;
  gt_redis *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    fprintf(stderr, "gt_redis: out of memory\n");
    return NULL;
  }
  r->sentinel = o->sentinel;
  r->cluster = o->cluster;
  if (!find_server(r->bin, sizeof(r->bin)) ||
      (o->certs != NULL && set_tls(r, o) != 0) ||
      gt_redis_set_extra_conf(r, o->extra_conf) != 0) {
    free_redis(r);
    return NULL;
  }

  /* Inside the test's own temp dir when run by the test runner, so that even a
   * test killed on timeout leaves nothing behind; else $TMPDIR or /tmp.  The
   * unix socket path must fit in sun_path (108 bytes): long bases are skipped. */
  const char *base = getenv("GTASK_TEST_TMPDIR");
  if (base == NULL || *base == '\0' || strlen(base) > 60)
    base = getenv("TMPDIR");
  if (base == NULL || *base == '\0' || strlen(base) > 60)
    base = "/tmp";
  snprintf(r->dir, sizeof(r->dir), "%s/gtask-%s-XXXXXX", base,
           r->sentinel ? "sentinel" : "redis");
  if (mkdtemp(r->dir) == NULL) {
    fprintf(stderr, "gt_redis: mkdtemp %s: %s\n", r->dir, strerror(errno));
    free_redis(r);
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

gt_redis *gt_redis_start(const char *extra_conf) {
  gt_redis_opts o = {.extra_conf = extra_conf};
  return gt_redis_start_opts(&o);
}

gt_redis *gt_redis_start_tls(const gt_certs *certs, const char *server_cert,
                             const char *server_key, const char *auth_clients,
                             const char *extra_conf) {
  if (certs == NULL) {
    fprintf(stderr, "gt_redis: start_tls needs certificates (gt_certs_make())\n");
    return NULL;
  }
  gt_redis_opts o = {.extra_conf = extra_conf,
                     .certs = certs,
                     .tls_cert = server_cert,
                     .tls_key = server_key,
                     .tls_auth_clients = auth_clients};
  return gt_redis_start_opts(&o);
}

int gt_redis_set_extra_conf(gt_redis *r, const char *extra_conf) {
  char *copy = NULL;
  if (extra_conf != NULL && (copy = strdup(extra_conf)) == NULL) {
    fprintf(stderr, "gt_redis: out of memory\n");
    return -1;
  }
  free(r->extra_conf);
  r->extra_conf = copy;
  r->persistent = conf_persists(extra_conf);
  return 0;
}

const char *gt_redis_url(const gt_redis *r) { return r->port > 0 ? r->url : NULL; }
const char *gt_redis_tls_url(const gt_redis *r) { return r->tls_port > 0 ? r->tls_url : NULL; }
const char *gt_redis_unix_url(const gt_redis *r) { return r->unix_url; }
int gt_redis_port(const gt_redis *r) { return r->port; }
int gt_redis_tls_port(const gt_redis *r) { return r->tls_port; }
const char *gt_redis_dir(const gt_redis *r) { return r->dir; }
pid_t gt_redis_pid(const gt_redis *r) { return r->pid; }

int gt_redis_restart(gt_redis *r) {
  if (r->pid > 0) {
    redisContext *c = connect_plain(r, 1000, true);
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
    if (!wait_exit(r->pid, gt_scaled_ms(5000))) {
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
    gt_rm_tree(r->dir);
  }
  free_redis(r);
}

redisContext *gt_redis_connect(const gt_redis *r) {
  redisContext *c = connect_plain(r, 2000, false);
  char addr[160];
  plain_addr(r, addr, sizeof(addr));
  if (c == NULL) {
    fprintf(stderr, "gt_redis: connect %s: out of memory\n", addr);
    return NULL;
  }
  if (c->err != 0) {
    fprintf(stderr, "gt_redis: connect %s: %s\n", addr, c->errstr);
    redisFree(c);
    return NULL;
  }
  return c;
}

redisContext *gt_redis_connect_timeout(const gt_redis *r, int64_t ms) {
  redisContext *c = connect_plain(r, ms, true);
  if (c != NULL && c->err != 0) {
    redisFree(c);
    c = NULL;
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
