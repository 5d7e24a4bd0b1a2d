/* chaos_driver.c -- chaos_run(): the chaos test itself (what it does and what
 * it checks is in chaos.h).
 *
 * Threads and processes:
 *  - the main thread owns the redis fixture (which is not thread-safe) and the
 *    worker processes: it starts, kills, reaps and restarts them, and it is the
 *    only one to call waitpid, always for a pid it started;
 *  - the sender thread and the waiter thread each own a gtask_client (a client
 *    is not thread-safe); they share one broker and one backend (which are);
 *  - worker processes are started with fork + exec (nothing but
 *    async-signal-safe calls in between, as the process has threads) and die
 *    with the driver (PR_SET_PDEATHSIG), so a driver killed with SIGKILL
 *    leaves no worker behind; pool children die with their worker the same way.
 * Shared state: the task table.  The sender fills entry i, then publishes
 * `sent` = i + 1 (release); the waiter reads entries below `sent` (acquire)
 * and writes only the result fields, which the main thread reads after joining.
 */
#define _GNU_SOURCE
#include "chaos.h"

#include "internal.h"
#include "cluster_fixture.h"
#include "redis_fixture.h"
#include "tls_fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QUEUE "chaos"
#define KEY(buf, kind, id) snprintf((buf), sizeof(buf), "gtask:{" QUEUE "}:%s:%s", (kind), (id))
#define MAX_WORKERS 64
#define MAX_DUMPS 10

enum kind { K_ADD, K_SLOW, K_FLAKY_TIMEOUT, K_FLAKY_RETRY };
static const char *const kind_names[] = {"add", "slowadd", "flakyadd(timeout)", "flakyadd(retry)"};

/* One task that a send returned. */
typedef struct task_rec {
  char id[GTASK_ID_SIZE];
  uint8_t kind;      /* enum kind */
  int64_t a, b;      /* the arguments; the right sum is a + b */
  int64_t arg3;      /* slowadd: ms; flakyadd: mode */
  /* Written by the waiter: the result it got. */
  bool got;          /* a final result arrived */
  uint8_t status;    /* gtask_status */
  uint8_t nvalues;
  int64_t value;     /* values[0] */
  uint64_t token;    /* values[1] */
  uint32_t attempts;
  int error_code;
  char error[120];
  /* Filled while checking. */
  uint16_t executions; /* completed executions in the worker logs */
  bool token_logged;   /* the final token is one of them */
  const char *problem; /* why the id failed a check, or NULL */
} task_rec;

typedef struct worker_slot {
  pid_t pid;   /* 0: not running */
  bool procs;  /* uses the process pool */
  int gen;     /* how many processes this slot has had */
} worker_slot;

typedef struct run {
  const chaos_opts *o;
  chaos_report *r;
  gt_redis *redis;               /* the server; with a cluster, the master of QUEUE's slot */
  gt_cluster *cluster;           /* or NULL */
  char url[1024];                /* what the driver and the workers connect to */
  gtask_broker *broker;
  gtask_backend *backend;
  task_rec *tasks;
  _Atomic uint32_t sent;         /* entries of tasks[] published by the sender */
  _Atomic bool sender_done;
  _Atomic uint32_t waited;       /* entries the waiter is done with */
  _Atomic bool waiter_done;
  _Atomic int64_t wait_deadline; /* mono ms after which the waiter gives up */
  _Atomic uint64_t send_errors;
  int64_t start_ms;
  uint64_t rng;                  /* main thread's generator (chaos schedule) */
  uint64_t send_rng;             /* sender's generator (task mix) */
  worker_slot slots[MAX_WORKERS];
  FILE *log;                     /* <dir>/driver.log: library and driver notes */
  pthread_mutex_t log_mu;
} run;

static volatile sig_atomic_t interrupted;
void chaos_interrupt(void) { interrupted = 1; }

/* ---------------------------------------------------------------- small helpers */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !interrupted) {
  }
}

/* splitmix64: small, seedable, good enough for a schedule. */
static uint64_t rnd(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* A time uniform in [0.5, 1.5] x mean. */
static int64_t jitter(uint64_t *s, int64_t mean) {
  return mean / 2 + (int64_t)(rnd(s) % (uint64_t)(mean > 0 ? mean : 1));
}

static void note(run *x, const char *fmt, ...) GTASK__PRINTF(2, 3);
static void note(run *x, const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&x->log_mu);
  fprintf(x->log, "[%7.3f] ", (double)(mono_ms() - x->start_ms) / 1000.0);
  va_start(ap, fmt);
  vfprintf(x->log, fmt, ap);
  va_end(ap);
  fputc('\n', x->log);
  fflush(x->log);
  pthread_mutex_unlock(&x->log_mu);
}

static run *log_run; /* for the library's log callback */
static void library_log(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (log_run) note(log_run, "gtask %s: %s", level >= GTASK_LOG_ERROR ? "ERROR" : "WARN", line);
}

static void progress(run *x, const char *fmt, ...) GTASK__PRINTF(2, 3);
static void progress(run *x, const char *fmt, ...) {
  if (!x->o->verbose) return;
  va_list ap;
  printf("chaos [%6.1fs] ", (double)(mono_ms() - x->start_ms) / 1000.0);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

bool chaos_default_worker_path(char *buf, size_t size) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return false;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (!slash) return false;
  *slash = '\0';
  int w = snprintf(buf, size, "%s/chaos_worker", self);
  return w > 0 && (size_t)w < size && access(buf, X_OK) == 0;
}

void chaos_opts_default(chaos_opts *o) {
  memset(o, 0, sizeof(*o));
  o->tasks = 3000;
  o->workers = 2;
  o->concurrency = 4;
  o->duration_ms = 20000;
  o->settle_ms = 60000;
  o->worker_kill_ms = 1500;
  o->child_kill_ms = 1000;
  o->redis_restart_ms = 5000;
  o->lease_ms = 1000;
  o->procs = true;
  o->seed = 1;
  o->dir = ".";
}

/* ---------------------------------------------------------------- workers */

/* Starts the worker of slot k.  fork + exec: the child makes only
 * async-signal-safe calls (this process has threads). */
static int spawn_worker(run *x, int k) {
  worker_slot *w = &x->slots[k];
  char logpath[PATH_MAX], name[64], conc[16], lease[16];
  snprintf(logpath, sizeof(logpath), "%s/worker-%d.log", x->o->dir, k);
  snprintf(name, sizeof(name), "chaos-%d-%d", k, w->gen);
  snprintf(conc, sizeof(conc), "%d", x->o->concurrency);
  snprintf(lease, sizeof(lease), "%lld", (long long)x->o->lease_ms);
  const char *argv[] = {x->o->worker_path, "--url", x->url, "--queue", QUEUE,
                        "--logdir", x->o->dir, "--concurrency", conc, "--lease", lease,
                        "--name", name, NULL, NULL, NULL};
  size_t argc = 13;
  if (w->procs) argv[argc++] = "--procs";
  if (x->o->ignore_sigpipe) argv[argc++] = "--ignore-sigpipe";
  int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "chaos: cannot open %s: %s\n", logpath, strerror(errno));
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "chaos: fork: %s\n", strerror(errno));
    close(fd);
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127); /* the driver died already */
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], (char *const *)argv);
    static const char msg[] = "chaos: cannot exec the worker\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    _exit(127);
  }
  close(fd);
  w->pid = pid;
  w->gen++;
  note(x, "worker %d started: pid %ld%s", k, (long)pid, w->procs ? " (process pool)" : "");
  return 0;
}

static void describe_status(char *buf, size_t size, int st) {
  if (WIFEXITED(st))
    snprintf(buf, size, "exit status %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st))
    snprintf(buf, size, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
  else
    snprintf(buf, size, "status 0x%x", st);
}

/* Reaps workers that exited on their own (a finding) and restarts them. */
static int check_workers(run *x) {
  for (int k = 0; k < x->o->workers; k++) {
    worker_slot *w = &x->slots[k];
    if (!w->pid) continue;
    int st;
    pid_t p = waitpid(w->pid, &st, WNOHANG);
    if (p != w->pid) continue;
    char why[96];
    describe_status(why, sizeof(why), st);
    x->r->worker_deaths++;
    note(x, "FINDING: worker %d (pid %ld) died on its own: %s", k, (long)p, why);
    printf("chaos: FINDING: worker %d (pid %ld) died on its own: %s (see %s/worker-%d.log)\n", k,
           (long)p, why, x->o->dir, k);
    w->pid = 0;
    if (spawn_worker(x, k) != 0) return -1;
  }
  return 0;
}

static int kill_worker(run *x) {
  int k = (int)(rnd(&x->rng) % (uint64_t)x->o->workers);
  worker_slot *w = &x->slots[k];
  if (!w->pid) return spawn_worker(x, k);
  pid_t pid = w->pid;
  kill(pid, SIGKILL);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  w->pid = 0;
  x->r->worker_kills++;
  note(x, "killed worker %d (pid %ld)", k, (long)pid);
  return spawn_worker(x, k);
}

/* The live children of process-pool workers, from /proc. */
static size_t pool_children(run *x, pid_t *out, size_t cap) {
  size_t n = 0;
  DIR *d = opendir("/proc");
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < cap) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char path[300], buf[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0) continue;
    buf[len] = '\0';
    /* "pid (comm) state ppid ...": comm may hold anything, so from the last ')'. */
    char *rp = strrchr(buf, ')');
    char state;
    long ppid;
    if (!rp || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2 || state == 'Z') continue;
    for (int k = 0; k < x->o->workers; k++)
      if (x->slots[k].procs && x->slots[k].pid == (pid_t)ppid) {
        out[n++] = (pid_t)strtol(e->d_name, NULL, 10);
        break;
      }
  }
  closedir(d);
  return n;
}

static void kill_child(run *x) {
  pid_t kids[MAX_WORKERS * 16];
  size_t n = pool_children(x, kids, sizeof(kids) / sizeof(kids[0]));
  if (n == 0) return;
  pid_t victim = kids[rnd(&x->rng) % n];
  if (kill(victim, SIGKILL) == 0) {
    x->r->child_kills++;
    note(x, "killed pool child pid %ld", (long)victim);
  }
}

/* With a cluster: the master of QUEUE's slot now (x->redis becomes it). */
static void find_master(run *x) {
  if (!x->cluster) return;
  int slot = gt_cluster_keyslot(x->cluster, "gtask:{" QUEUE "}:stream");
  gt_redis *m = gt_cluster_master_of(x->cluster, slot);
  if (m) x->redis = m;
}

static int restart_redis(run *x) {
  find_master(x);
  if (gt_redis_kill9(x->redis) != 0) {
    fprintf(stderr, "chaos: redis-server was not running when it was to be killed\n");
    return -1;
  }
  int64_t down = 100 + (int64_t)(rnd(&x->rng) % 700);
  note(x, "killed redis-server; down for %lld ms", (long long)down);
  sleep_ms(down); /* the outage itself: what the workers and clients must ride out */
  if (gt_redis_start_again(x->redis) != 0) {
    fprintf(stderr, "chaos: redis-server did not come back (see %s/redis.log)\n",
            gt_redis_dir(x->redis));
    return -1;
  }
  x->r->redis_restarts++;
  note(x, "redis-server is back: pid %ld", (long)gt_redis_pid(x->redis));
  /* A cluster master back from a restart refuses writes (CLUSTERDOWN) for
   * 2 s (Redis's CLUSTER_WRITABLE_DELAY), after its restart and the
   * handshakes; a failover, its replica's resync (wait-replicas 1 needs it)
   * take longer.  The next kill is scheduled from when the cluster is whole
   * again, not from the restart: else, on a loaded machine, the outages
   * overlap and nothing can be sent for a minute (a CI run sent 321 of 1500
   * tasks, every send refused with CLUSTERDOWN until the next kill). */
  if (x->cluster) {
    int64_t t0 = mono_ms();
    if (gt_cluster_wait_ok(x->cluster, 30000) != 0)
      note(x, "the cluster is not whole again %lld ms after the restart", (long long)(mono_ms() - t0));
    else
      note(x, "the cluster is whole again after %lld ms", (long long)(mono_ms() - t0));
  }
  return 0;
}

/* SIGTERM to every worker; each must exit with status 0 within 30 s. */
static void stop_workers(run *x) {
  for (int k = 0; k < x->o->workers; k++)
    if (x->slots[k].pid) kill(x->slots[k].pid, SIGTERM);
  int64_t deadline = mono_ms() + 30000;
  for (;;) {
    bool any = false;
    for (int k = 0; k < x->o->workers; k++) {
      worker_slot *w = &x->slots[k];
      if (!w->pid) continue;
      int st;
      pid_t p = waitpid(w->pid, &st, WNOHANG);
      if (p == w->pid) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
          char why[96];
          describe_status(why, sizeof(why), st);
          x->r->unclean_exits++;
          printf("chaos: FINDING: worker %d (pid %ld) did not shut down cleanly: %s\n", k,
                 (long)p, why);
        }
        w->pid = 0;
      } else {
        any = true;
      }
    }
    if (!any) return;
    if (mono_ms() > deadline) break;
    sleep_ms(20);
  }
  for (int k = 0; k < x->o->workers; k++) {
    worker_slot *w = &x->slots[k];
    if (!w->pid) continue;
    printf("chaos: FINDING: worker %d (pid %ld) still running 30 s after SIGTERM; killed\n", k,
           (long)w->pid);
    x->r->unclean_exits++;
    kill(w->pid, SIGKILL);
    while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    w->pid = 0;
  }
}

/* ---------------------------------------------------------------- sender */

static gtask_client *new_client(run *x) {
  gtask_client *c = gtask_client_new(x->broker, x->backend);
  if (c && gtask_client_set_queue(c, QUEUE) != 0) {
    gtask_client_free(c);
    c = NULL;
  }
  return c;
}

static void *sender_main(void *arg) {
  run *x = arg;
  const chaos_opts *o = x->o;
  gtask_client *c = new_client(x);
  gtask_send_conf *c_add = gtask_send_conf_new("add");
  gtask_send_conf *c_slow = gtask_send_conf_new("slowadd");
  gtask_send_conf *c_flaky = gtask_send_conf_new("flakyadd");
  if (!c || !c_add || !c_slow || !c_flaky || gtask_send_conf_set_timeout(c_flaky, 300) ||
      gtask_send_conf_set_retry_num(c_flaky, 3) || gtask_send_conf_set_backoff(c_flaky, 50, 200)) {
    fprintf(stderr, "chaos: cannot set up the sender\n");
    goto out;
  }
  gtask_value args[2 * 20];
  char ids[20][GTASK_ID_SIZE];
  int64_t give_up = x->start_ms + o->duration_ms + o->settle_ms;
  uint32_t i = 0;
  while (i < o->tasks && !interrupted) {
    int64_t now = mono_ms();
    if (now > give_up) {
      note(x, "sender: gave up with %u of %u tasks sent", i, o->tasks);
      break;
    }
    /* Pace: task i is due at start + duration * i / tasks. */
    int64_t due = x->start_ms + (int64_t)((double)o->duration_ms * i / o->tasks);
    if (now < due) {
      sleep_ms(due - now < 20 ? due - now : 20);
      continue;
    }
    uint64_t pick = rnd(&x->send_rng) % 100;
    size_t n = 1;
    enum kind k;
    const gtask_send_conf *conf;
    if (pick < 30) {
      k = K_ADD;
      conf = c_add;
      n = 1 + (size_t)(rnd(&x->send_rng) % 20);
      if (n > o->tasks - i) n = o->tasks - i;
    } else if (pick < 90) {
      k = K_SLOW;
      conf = c_slow;
    } else {
      k = pick < 95 ? K_FLAKY_TIMEOUT : K_FLAKY_RETRY;
      conf = c_flaky;
    }
    task_rec *t = &x->tasks[i];
    for (size_t j = 0; j < n; j++) {
      t[j].kind = (uint8_t)k;
      t[j].a = (int64_t)(i + j);
      t[j].b = (int64_t)(rnd(&x->send_rng) % (1ULL << 50)) - (1LL << 49);
      t[j].arg3 = k == K_SLOW ? 1 + (int64_t)(rnd(&x->send_rng) % 8) : k == K_FLAKY_RETRY;
    }
    int rc;
    if (k == K_ADD) {
      for (size_t j = 0; j < n; j++) {
        args[2 * j] = gtask_int64(t[j].a);
        args[2 * j + 1] = gtask_int64(t[j].b);
      }
      rc = gtask_client_send_many(c, conf, n, args, 2, ids);
    } else {
      gtask_value a3[3] = {gtask_int64(t->a), gtask_int64(t->b), gtask_int64(t->arg3)};
      rc = gtask_client_send(c, conf, a3, 3, ids[0]);
    }
    if (rc != 0) {
      atomic_fetch_add(&x->send_errors, 1);
      note(x, "send of %zu %s failed: %s: %s (retrying)", n, kind_names[k], gtask_err_name(rc),
           gtask_client_errmsg(c));
      sleep_ms(50);
      continue;
    }
    for (size_t j = 0; j < n; j++) memcpy(t[j].id, ids[j], GTASK_ID_SIZE);
    i += (uint32_t)n;
    atomic_store_explicit(&x->sent, i, memory_order_release);
  }
out:
  atomic_store(&x->sender_done, true);
  gtask_send_conf_free(c_add);
  gtask_send_conf_free(c_slow);
  gtask_send_conf_free(c_flaky);
  gtask_client_free(c);
  return NULL;
}

/* ---------------------------------------------------------------- waiter */

static void keep_result(task_rec *t, const gtask_result *res) {
  t->got = true;
  t->status = (uint8_t)res->status;
  t->nvalues = (uint8_t)(res->nvalues > 255 ? 255 : res->nvalues);
  t->attempts = res->attempts;
  t->error_code = res->error_code;
  snprintf(t->error, sizeof(t->error), "%s", res->error ? res->error : "");
  if (res->nvalues >= 1 && res->values[0].type == GTASK_INT64) t->value = res->values[0].v.i;
  if (res->nvalues >= 2 && res->values[1].type == GTASK_UINT64) t->token = res->values[1].v.u;
}

static void *waiter_main(void *arg) {
  run *x = arg;
  gtask_client *c = new_client(x);
  if (!c) {
    fprintf(stderr, "chaos: cannot make the waiter's client\n");
    atomic_store(&x->waiter_done, true);
    return NULL;
  }
  uint32_t i = 0;
  int last_rc = 0;
  while (!interrupted) {
    uint32_t avail = atomic_load_explicit(&x->sent, memory_order_acquire);
    if (i >= avail) {
      if (atomic_load(&x->sender_done) && i >= atomic_load(&x->sent)) break;
      sleep_ms(5);
      continue;
    }
    if (mono_ms() > atomic_load(&x->wait_deadline)) {
      note(x, "waiter: gave up at task %u (%s)", i, x->tasks[i].id);
      break;
    }
    gtask_result *res = NULL;
    int rc = gtask_client_wait(c, x->tasks[i].id, 1000, &res);
    if (rc == 0) {
      keep_result(&x->tasks[i], res);
      gtask_result_free(res);
      i++;
      atomic_store(&x->waited, i);
      last_rc = 0;
      continue;
    }
    if (rc != GTASK_ETIMEDOUT) {
      if (rc != last_rc)
        note(x, "wait %s: %s: %s (retrying)", x->tasks[i].id, gtask_err_name(rc),
             gtask_client_errmsg(c));
      last_rc = rc;
      sleep_ms(50);
    }
  }
  gtask_client_free(c);
  atomic_store(&x->waiter_done, true);
  return NULL;
}

/* ---------------------------------------------------------------- checks */

static uint64_t id_hash(const char *id) {
  uint64_t h = 1469598103934665603ULL;
  for (int k = 0; k < GTASK_ID_SIZE - 1 && id[k]; k++) h = (h ^ (uint8_t)id[k]) * 1099511628211ULL;
  return h;
}

typedef struct id_index {
  uint32_t *slot; /* task index + 1; 0 empty */
  size_t mask;
} id_index;

static int index_build(id_index *ix, const task_rec *t, uint32_t n) {
  size_t cap = 16;
  while (cap < (size_t)n * 2) cap *= 2;
  ix->slot = calloc(cap, sizeof(uint32_t));
  if (!ix->slot) return -1;
  ix->mask = cap - 1;
  for (uint32_t i = 0; i < n; i++) {
    size_t h = (size_t)id_hash(t[i].id) & ix->mask;
    while (ix->slot[h]) h = (h + 1) & ix->mask;
    ix->slot[h] = i + 1;
  }
  return 0;
}

static task_rec *index_find(const id_index *ix, task_rec *t, const char *id) {
  size_t h = (size_t)id_hash(id) & ix->mask;
  while (ix->slot[h]) {
    task_rec *c = &t[ix->slot[h] - 1];
    if (strncmp(c->id, id, GTASK_ID_SIZE - 1) == 0) return c;
    h = (h + 1) & ix->mask;
  }
  return NULL;
}

/* Reads every exec-<pid>.log: executions per id, and whether the final token
 * is among them. */
static void read_exec_logs(run *x, const id_index *ix, uint32_t n) {
  DIR *d = opendir(x->o->dir);
  if (!d) return;
  struct dirent *e;
  uint64_t lines = 0, foreign = 0;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "exec-", 5) != 0) continue;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", x->o->dir, e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    char line[256], id[64];
    unsigned long long token;
    while (fgets(line, sizeof(line), f)) {
      if (sscanf(line, "%63s %llu", id, &token) != 2) continue;
      lines++;
      task_rec *t = index_find(ix, x->tasks, id);
      if (!t) { /* a task from a send that reported failure but was applied */
        foreign++;
        continue;
      }
      if (t->executions < UINT16_MAX) t->executions++;
      if (t->got && token == t->token) t->token_logged = true;
    }
    fclose(f);
  }
  closedir(d);
  (void)n;
  note(x, "execution logs: %" PRIu64 " completed executions, %" PRIu64
          " of tasks whose send reported an error", lines, foreign);
}

static redisReply *cmd(redisContext *rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(rc, fmt, ap);
  va_end(ap);
  return rep;
}

static long long int_reply(redisContext *rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(rc, fmt, ap);
  va_end(ap);
  long long v = -1;
  if (rep && rep->type == REDIS_REPLY_INTEGER) v = rep->integer;
  if (rep) freeReplyObject(rep);
  return v;
}

/* Compares what Redis holds for task t with what the waiter got.  A final
 * task is its notify list, one element (the result record); its state hash
 * is gone (docs/PROTOCOL.md).  Replies: HMGET t: s a r, LRANGE n: 0 9. */
static void check_stored(run *x, task_rec *t, redisReply *h, redisReply *lst) {
  if (!t->got) {
    t->problem = "lost: no final result arrived";
    x->r->lost++;
    return;
  }
  if (!h || h->type != REDIS_REPLY_ARRAY || h->elements != 3 || !lst ||
      lst->type != REDIS_REPLY_ARRAY) {
    t->problem = "could not read its keys";
    x->r->wrong++;
    return;
  }
  if (lst->elements == 0) {
    t->problem = "lost: its final record vanished from Redis after it finished (n: list empty)";
    x->r->lost++;
    return;
  }
  if (lst->elements != 1) {
    t->problem = "duplicated-final: the notification list holds several results";
    x->r->duplicated++;
    return;
  }
  if (h->element[0]->type != REDIS_REPLY_NIL) {
    t->problem = "wrong: a state hash was written after the final record (or not deleted with it)";
    x->r->wrong++;
    return;
  }
  redisReply *rec = lst->element[0];
  if (rec->type != REDIS_REPLY_STRING) {
    t->problem = "wrong: the notification is not a string";
    x->r->wrong++;
    return;
  }
  gtask_result *res = NULL;
  char err[200];
  if (gtask__result_decode(rec->str, rec->len, t->id, &res, err, sizeof(err)) != 0) {
    t->problem = "wrong: the stored record does not decode";
    x->r->wrong++;
    return;
  }
  uint64_t token = res->nvalues >= 2 && res->values[1].type == GTASK_UINT64 ? res->values[1].v.u : 0;
  bool same = res->status == (gtask_status)t->status && token == t->token &&
              res->attempts == t->attempts && res->error_code == t->error_code;
  gtask_result_free(res);
  if (!same) {
    t->problem = "duplicated-final: the stored record differs from the result the waiter got";
    x->r->duplicated++;
    return;
  }

  /* The result itself. */
  if (t->status == GTASK_SUCCESS) {
    if (t->nvalues != 2 || t->value != t->a + t->b) {
      t->problem = "wrong: SUCCESS with a wrong value";
    } else if (!t->token_logged) {
      t->problem = "wrong: SUCCESS whose token no execution of this task logged";
    } else if ((t->kind == K_FLAKY_TIMEOUT || t->kind == K_FLAKY_RETRY) && t->attempts < 2) {
      t->problem = "wrong: flakyadd succeeded on its first attempt";
    }
    if (t->problem) {
      x->r->wrong++;
      return;
    }
    x->r->succeeded++;
  } else if (t->error_code == GTASK_ECRASH && strstr(t->error, "signal 9")) {
    x->r->crashed++;
  } else {
    t->problem = "wrong: unexpected FAILURE";
    x->r->wrong++;
    return;
  }
  x->r->finished++;
  if (t->attempts > 1) x->r->retried++;
}

static void print_reply(const char *what, redisReply *rep) {
  printf("    %s:", what);
  if (!rep) {
    printf(" (no reply)\n");
    return;
  }
  if (rep->type == REDIS_REPLY_ARRAY) {
    if (rep->elements == 0) printf(" (empty)");
    for (size_t k = 0; k < rep->elements; k++) {
      redisReply *e = rep->element[k];
      if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
        printf(" [%.*s]", (int)e->len, e->str);
      else if (e->type == REDIS_REPLY_INTEGER)
        printf(" [%lld]", e->integer);
      else if (e->type == REDIS_REPLY_ARRAY)
        printf(" [array of %zu]", e->elements);
      else
        printf(" [nil]");
    }
  } else if (rep->type == REDIS_REPLY_INTEGER) {
    printf(" %lld", rep->integer);
  } else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS ||
             rep->type == REDIS_REPLY_ERROR) {
    printf(" %.*s", (int)rep->len, rep->str);
  } else {
    printf(" (nil)");
  }
  putchar('\n');
}

/* Everything we know about a failing id: the reproduction. */
static void dump_task(run *x, redisContext *rc, const task_rec *t) {
  printf("  id %s: %s\n", t->id, t->problem);
  printf("    sent: %s(%" PRId64 ", %" PRId64 ", %" PRId64 "), expected sum %" PRId64 "\n",
         kind_names[t->kind], t->a, t->b, t->arg3, t->a + t->b);
  if (t->got)
    printf("    waiter got: %s value %" PRId64 " token %" PRIu64 " attempts %u ec %d \"%s\"\n",
           gtask_status_name((gtask_status)t->status), t->value, t->token, t->attempts,
           t->error_code, t->error);
  printf("    completed executions logged: %u (final token among them: %s)\n", t->executions,
         t->token_logged ? "yes" : "no");
  char key[128];
  KEY(key, "t", t->id);
  redisReply *rep = cmd(rc, "HGETALL %s", key);
  print_reply(key, rep);
  if (rep) freeReplyObject(rep);
  KEY(key, "n", t->id);
  rep = cmd(rc, "LRANGE %s 0 -1", key);
  print_reply(key, rep);
  if (rep) freeReplyObject(rep);
  rep = cmd(rc, "HGET gtask:{" QUEUE "}:dead %s", t->id);
  print_reply("in dead set", rep);
  if (rep) freeReplyObject(rep);
  /* The stream and the schedule, searched for the id (small once drained). */
  rep = cmd(rc, "XRANGE gtask:{" QUEUE "}:stream - + COUNT 100000");
  int in_stream = 0;
  if (rep && rep->type == REDIS_REPLY_ARRAY)
    for (size_t k = 0; k < rep->elements; k++) {
      redisReply *ent = rep->element[k];
      if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2) continue;
      redisReply *f = ent->element[1];
      for (size_t j = 0; j + 1 < f->elements; j += 2)
        if (f->element[j + 1]->type == REDIS_REPLY_STRING && strstr(f->element[j + 1]->str, t->id)) {
          printf("    in stream: entry %s\n", ent->element[0]->str);
          in_stream = 1;
          break;
        }
    }
  if (rep) freeReplyObject(rep);
  if (!in_stream) printf("    in stream: no\n");
  rep = cmd(rc, "ZSCAN gtask:{" QUEUE "}:sched 0 MATCH %s* COUNT 100000", t->id);
  print_reply("in schedule (zscan)", rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2
                                         ? rep->element[1]
                                         : rep);
  if (rep) freeReplyObject(rep);
  /* The execution log lines of the id. */
  DIR *d = opendir(x->o->dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strncmp(e->d_name, "exec-", 5) != 0) continue;
      char path[PATH_MAX], line[256];
      snprintf(path, sizeof(path), "%s/%s", x->o->dir, e->d_name);
      FILE *f = fopen(path, "r");
      if (!f) continue;
      while (fgets(line, sizeof(line), f))
        if (strncmp(line, t->id, GTASK_ID_SIZE - 1) == 0) printf("    executed: %s", line);
      fclose(f);
    }
    closedir(d);
  }
}

static int verify(run *x) {
  uint32_t n = atomic_load(&x->sent);
  id_index ix;
  if (index_build(&ix, x->tasks, n) != 0) return -1;
  read_exec_logs(x, &ix, n);
  free(ix.slot);

  if (x->cluster) gt_cluster_wait_ok(x->cluster, 20000);
  find_master(x);
  redisContext *rc = gt_redis_connect(x->redis);
  if (!rc) return -1;
  const uint32_t batch = 256;
  for (uint32_t i = 0; i < n; i += batch) {
    uint32_t end = i + batch < n ? i + batch : n;
    char key[128];
    for (uint32_t j = i; j < end; j++) {
      KEY(key, "t", x->tasks[j].id);
      redisAppendCommand(rc, "HMGET %s s a r", key);
      KEY(key, "n", x->tasks[j].id);
      redisAppendCommand(rc, "LRANGE %s 0 9", key);
    }
    for (uint32_t j = i; j < end; j++) {
      redisReply *h = NULL, *l = NULL;
      if (redisGetReply(rc, (void **)&h) != REDIS_OK) h = NULL;
      if (redisGetReply(rc, (void **)&l) != REDIS_OK) l = NULL;
      check_stored(x, &x->tasks[j], h, l);
      if (h) freeReplyObject(h);
      if (l) freeReplyObject(l);
    }
  }

  long long xlen = int_reply(rc, "XLEN gtask:{" QUEUE "}:stream");
  long long sched = int_reply(rc, "ZCARD gtask:{" QUEUE "}:sched");
  long long dead = int_reply(rc, "HLEN gtask:{" QUEUE "}:dead");
  long long pending = 0;
  redisReply *rep = cmd(rc, "XPENDING gtask:{" QUEUE "}:stream workers");
  if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
      rep->element[0]->type == REDIS_REPLY_INTEGER)
    pending = rep->element[0]->integer;
  if (rep) freeReplyObject(rep);
  x->r->leftovers = (uint64_t)(xlen > 0 ? xlen : 0) + (uint64_t)(sched > 0 ? sched : 0) +
                    (uint64_t)(dead > 0 ? dead : 0) + (uint64_t)(pending > 0 ? pending : 0);
  if (x->r->leftovers)
    printf("chaos: FINDING: left in Redis after every task finished: stream %lld, pending %lld, "
           "schedule %lld, dead %lld\n",
           xlen, pending, sched, dead);

  int dumped = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (!x->tasks[i].problem) continue;
    if (dumped == 0) printf("chaos: failing ids (at most %d shown):\n", MAX_DUMPS);
    if (dumped++ < MAX_DUMPS) dump_task(x, rc, &x->tasks[i]);
  }
  for (uint32_t i = 0; i < n; i++)
    if (x->tasks[i].executions >= 2) x->r->reran++;
  redisFree(rc);
  return 0;
}

/* ---------------------------------------------------------------- the run */

bool chaos_passed(const chaos_report *r, const chaos_opts *o) {
  return !r->aborted && r->sent == o->tasks && r->finished == r->sent && r->lost == 0 &&
         r->duplicated == 0 && r->wrong == 0 && r->crashed <= r->child_kills &&
         r->leftovers == 0 && r->worker_deaths == 0 && r->unclean_exits == 0;
}

void chaos_report_print(FILE *f, const chaos_report *r, const chaos_opts *o) {
  fprintf(f,
          "sent=%" PRIu64 " finished=%" PRIu64 " retried=%" PRIu64 " lost=%" PRIu64
          " duplicated-final=%" PRIu64 " wrong=%" PRIu64 " succeeded=%" PRIu64 " crashed=%" PRIu64
          " reran=%" PRIu64 " leftovers=%" PRIu64 " worker-kills=%" PRIu64 " child-kills=%" PRIu64
          " redis-restarts=%" PRIu64 " worker-deaths=%" PRIu64 " unclean-exits=%" PRIu64
          " send-errors=%" PRIu64 " elapsed=%.1fs seed=%" PRIu64 "%s\n",
          r->sent, r->finished, r->retried, r->lost, r->duplicated, r->wrong, r->succeeded,
          r->crashed, r->reran, r->leftovers, r->worker_kills, r->child_kills, r->redis_restarts,
          r->worker_deaths, r->unclean_exits, r->send_errors, (double)r->elapsed_ms / 1000.0,
          o->seed, r->aborted ? " ABORTED" : "");
}

static int setup(run *x) {
  const gt_certs *certs = NULL;
  if (x->o->tls && (gt_certs_missing_tool() != NULL || (certs = gt_certs_make()) == NULL)) {
    fprintf(stderr, "chaos: cannot make TLS certificates: %s\n",
            gt_certs_missing_tool() ? gt_certs_missing_tool() : "openssl failed");
    return -1;
  }
  gt_redis_opts ro = {.extra_conf = "appendonly yes\nappendfsync always\n", .certs = certs,
                      .tls_auth_clients = "yes"};
  if (x->o->cluster) {
    x->cluster = gt_cluster_start_conf(3, 1, "appendonly yes\nappendfsync always\n");
    if (!x->cluster) return -1;
    find_master(x);
    snprintf(x->url, sizeof(x->url), "%s", gt_cluster_url(x->cluster));
  } else if (!(x->redis = gt_redis_start_opts(&ro))) {
    return -1;
  }
  if (x->cluster)
    ;
  else if (certs)
    snprintf(x->url, sizeof(x->url), "%s?cacert=%s&cert=%s&key=%s", gt_redis_tls_url(x->redis),
             certs->ca, certs->client_cert, certs->client_key);
  else
    snprintf(x->url, sizeof(x->url), "%s", gt_redis_url(x->redis));
  gtask_redis_conf *conf;
  if (gtask_redis_conf_new(&conf, x->url, NULL, -1) != 0) return -1;
  gtask_redis_conf_set_timeout(conf, 1000);
  if (x->cluster) gtask_redis_conf_set_wait_replicas(conf, 1, 1000);
  int rc = gtask_broker_redis_new(&x->broker, conf);
  if (!rc) rc = gtask_backend_redis_new(&x->backend, conf);
  gtask_redis_conf_free(conf);
  if (rc) {
    fprintf(stderr, "chaos: cannot connect: %s\n", gtask_last_error());
    return -1;
  }
  for (int k = 0; k < x->o->workers; k++) {
    x->slots[k].procs = x->o->procs && (k % 2 == 1);
    if (spawn_worker(x, k) != 0) return -1;
  }
  return 0;
}

int chaos_run(const chaos_opts *o, chaos_report *r) {
  memset(r, 0, sizeof(*r));
  if (o->tasks < 1 || o->workers < 2 || o->workers > MAX_WORKERS || o->concurrency < 1 ||
      o->lease_ms < 300 || o->duration_ms < 0 || o->settle_ms < 1000 || !o->worker_path ||
      !o->dir) {
    fprintf(stderr, "chaos: invalid options\n");
    r->aborted = true;
    return -1;
  }
  run *x = calloc(1, sizeof(*x));
  if (!x) return -1;
  x->o = o;
  x->r = r;
  x->start_ms = mono_ms();
  x->rng = o->seed ^ 0x5deece66dULL;
  x->send_rng = o->seed;
  atomic_store(&x->wait_deadline, INT64_MAX);
  pthread_mutex_init(&x->log_mu, NULL);
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/driver.log", o->dir);
  x->log = fopen(path, "a");
  x->tasks = calloc(o->tasks, sizeof(task_rec));
  int ret = -1;
  pthread_t sender, waiter;
  bool threads = false;
  if (!x->log || !x->tasks) {
    fprintf(stderr, "chaos: cannot open %s or allocate the task table\n", path);
    r->aborted = true;
    goto out;
  }
  log_run = x;
  gtask_set_log(library_log, NULL, GTASK_LOG_WARN);

  if (setup(x) != 0) {
    r->aborted = true;
    goto out;
  }
  progress(x, "redis %s, %d workers (%s), %u tasks over %.1f s, seed %" PRIu64,
           x->cluster ? x->url : x->o->tls ? gt_redis_tls_url(x->redis) : gt_redis_url(x->redis), o->workers, o->procs ? "odd ones in the process pool" : "threads",
           o->tasks, (double)o->duration_ms / 1000.0, o->seed);
  if (pthread_create(&sender, NULL, sender_main, x) != 0) {
    r->aborted = true;
    goto out;
  }
  if (pthread_create(&waiter, NULL, waiter_main, x) != 0) {
    interrupted = 1;
    pthread_join(sender, NULL);
    r->aborted = true;
    goto out;
  }
  threads = true;

  /* The chaos loop. */
  int64_t now = mono_ms();
  int64_t next_wk = now + jitter(&x->rng, o->worker_kill_ms);
  int64_t next_ck = now + jitter(&x->rng, o->child_kill_ms);
  int64_t next_rr = now + jitter(&x->rng, o->redis_restart_ms);
  int64_t chaos_end = x->start_ms + o->duration_ms + o->settle_ms;
  int64_t next_progress = now + 5000;
  for (;;) {
    if (interrupted) {
      r->aborted = true;
      break;
    }
    now = mono_ms();
    bool all_in = atomic_load(&x->sender_done) &&
                  atomic_load(&x->waited) >= atomic_load(&x->sent);
    if (atomic_load(&x->waiter_done) || all_in || now >= chaos_end) break;
    if (check_workers(x) != 0) {
      r->aborted = true;
      break;
    }
    if (o->worker_kill_ms > 0 && now >= next_wk) {
      if (kill_worker(x) != 0) {
        r->aborted = true;
        break;
      }
      next_wk = mono_ms() + jitter(&x->rng, o->worker_kill_ms);
    }
    if (o->child_kill_ms > 0 && o->procs && now >= next_ck) {
      kill_child(x);
      next_ck = mono_ms() + jitter(&x->rng, o->child_kill_ms);
    }
    if (o->redis_restart_ms > 0 && now >= next_rr) {
      if (restart_redis(x) != 0) {
        r->aborted = true;
        break;
      }
      next_rr = mono_ms() + jitter(&x->rng, o->redis_restart_ms);
    }
    if (now >= next_progress) {
      progress(x, "sent %u, results %u, worker kills %" PRIu64 ", child kills %" PRIu64
                  ", redis restarts %" PRIu64,
               atomic_load(&x->sent), atomic_load(&x->waited), r->worker_kills, r->child_kills,
               r->redis_restarts);
      next_progress = now + 5000;
    }
    sleep_ms(10);
  }
  /* Calm: the remaining results have settle_ms; dead workers are still replaced. */
  atomic_store(&x->wait_deadline, mono_ms() + o->settle_ms);
  progress(x, "chaos over; waiting for the last results (sent %u, results %u)",
           atomic_load(&x->sent), atomic_load(&x->waited));
  while (!atomic_load(&x->waiter_done)) {
    if (interrupted) {
      r->aborted = true;
      break;
    }
    if (check_workers(x) != 0) {
      r->aborted = true;
      interrupted = 1;
      break;
    }
    sleep_ms(20);
  }
  pthread_join(sender, NULL);
  pthread_join(waiter, NULL);
  threads = false;
  if (r->aborted) goto out;

  /* A quiet time in which a stale worker could still write (it must be
   * fenced), then a clean shutdown of every worker.  A sleep, not a wait:
   * there is nothing to wait for, only a late write that must not land.
   * Whether a run has such a writer is up to the chaos; verify() then sees
   * any second final write (duplicated-final), and test_chaos asserts that
   * workers and redis-server were killed, without which none could exist. */
  sleep_ms(2 * o->lease_ms);
  if (check_workers(x) != 0) {
    r->aborted = true;
    goto out;
  }
  stop_workers(x);
  r->sent = atomic_load(&x->sent);
  r->send_errors = atomic_load(&x->send_errors);
  if (verify(x) != 0) {
    fprintf(stderr, "chaos: could not check the results\n");
    r->aborted = true;
    goto out;
  }
  ret = chaos_passed(r, o) ? 0 : 1;

out:
  if (threads) {
    interrupted = 1;
    pthread_join(sender, NULL);
    pthread_join(waiter, NULL);
  }
  for (int k = 0; k < MAX_WORKERS; k++)
    if (x->slots[k].pid) {
      kill(x->slots[k].pid, SIGKILL);
      while (waitpid(x->slots[k].pid, NULL, 0) < 0 && errno == EINTR) {
      }
    }
  r->sent = atomic_load(&x->sent);
  r->send_errors = atomic_load(&x->send_errors);
  gtask_broker_free(x->broker);
  gtask_backend_free(x->backend);
  gtask_set_log(NULL, NULL, GTASK_LOG_WARN);
  log_run = NULL;
  if (x->cluster)
    gt_cluster_stop(x->cluster);
  else
    gt_redis_stop(x->redis);
  if (x->log) fclose(x->log);
  pthread_mutex_destroy(&x->log_mu);
  free(x->tasks);
  r->elapsed_ms = mono_ms() - x->start_ms;
  free(x);
  return ret;
}
