/* procpool.c -- the process executor mode: each executor thread owns one
 * prefork child process and hands it one task at a time, so that a task that
 * loops for ever, leaks, calls exit() or segfaults takes down only its child.
 *
 * Design (why "handed", not "children fetch"): the supervisor keeps the only
 * Redis connections, the leases and the heartbeats; a child sees task bytes in
 * and result bytes out over two pipes.  A child that dies therefore cannot
 * leave a Redis conversation half done, and the supervisor, which outlives it,
 * always writes the task's outcome.
 *
 * The executor thread blocks SIGPIPE (like every library thread), so writing to
 * a child that died while idle fails with EPIPE -- a crash of the child, not of
 * the worker.
 *
 * Wire format on both pipes: a 4-byte length (host order) then that many bytes.
 * Request: the task id (36 bytes), its queue and a NUL, then the encoded task
 * message (which carries neither: see write_request).  Reply: a result record
 * (codec.h) whose status is SUCCESS, FAILURE (error_code = the handler's
 * return value) or RETRY (the handler called gtask_ctx_retry).
 *
 * Deadlines: at the task's deadline the executor sends SIGTERM (the child's
 * gtask_ctx_cancelled() turns true), waits the grace period, then SIGKILLs and
 * replaces the child.  A child that dies on its own (a signal, exit()) fails
 * its task with an error naming the signal or status, and is replaced. */
#define _GNU_SOURCE /* sigabbrev_np */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define FRAME_MAX (64u << 20)
#define CHILD_REQ_FD 3
#define CHILD_RES_FD 4

/* ---------------------------------------------------------------- framing */

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    ssize_t r = read(fd, p, len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    len -= (size_t)r;
  }
  return 0;
}

static int write_frame(int fd, const char *buf, size_t len) {
  uint32_t n = (uint32_t)len;
  if (len > FRAME_MAX) return -1;
  if (write_all(fd, &n, sizeof(n)) != 0) return -1;
  return write_all(fd, buf, len);
}

/* A request: one frame holding the task id (36 bytes), the queue and a NUL,
 * then the message (which does not carry id and queue itself), written with
 * one write. */
static int write_request(int fd, const gtask_msg *m) {
  size_t idlen = GTASK_ID_SIZE - 1, qlen = strlen(m->queue ? m->queue : "") + 1;
  size_t len = idlen + qlen + m->len;
  if (len > FRAME_MAX) return -1;
  char *buf = gtask__malloc(sizeof(uint32_t) + len);
  if (!buf) return -1;
  uint32_t n = (uint32_t)len;
  memcpy(buf, &n, sizeof(n));
  memcpy(buf + sizeof(n), m->id, idlen);
  memcpy(buf + sizeof(n) + idlen, m->queue ? m->queue : "", qlen);
  memcpy(buf + sizeof(n) + idlen + qlen, m->body, m->len);
  int rc = write_all(fd, buf, sizeof(n) + len);
  gtask__free(buf);
  return rc;
}

/* Reads one frame into a new buffer (NUL-terminated). */
static int read_frame(int fd, char **out, size_t *len) {
  uint32_t n;
  if (read_all(fd, &n, sizeof(n)) != 0 || n > FRAME_MAX) return -1;
  char *buf = gtask__malloc((size_t)n + 1);
  if (!buf) return -1;
  if (read_all(fd, buf, n) != 0) {
    gtask__free(buf);
    return -1;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

/* ---------------------------------------------------------------- the child */

static gtask_ctx *child_ctx; /* the task running in this child, for SIGTERM */

static void on_sigterm(int sig) {
  (void)sig;
  gtask_ctx *ctx = child_ctx;
  if (ctx) atomic_store(&ctx->cancelled, true); /* lock-free: signal-safe */
}

static const gtask_handler *child_find(const gtask_server *s, const char *name) {
  for (size_t k = 0; k < s->nhandlers; k++)
    if (strcmp(s->handlers[k].name, name) == 0) return &s->handlers[k];
  return NULL;
}

/* Runs one task in the child and encodes its reply.  Never returns NULL
 * buffers on success. */
static int child_run_one(gtask_server *s, const char *req, size_t reqlen, char **reply,
                         size_t *reply_len) {
  gtask_job job;
  memset(&job, 0, sizeof(job));
  char err[256] = "";
  gtask_result r;
  memset(&r, 0, sizeof(r));
  /* The request: id, queue, NUL, message (write_request). */
  char id[GTASK_ID_SIZE] = "";
  const char *queue = "", *body = "";
  size_t len = 0;
  const char *nul = reqlen > GTASK_ID_SIZE - 1 ? memchr(req + GTASK_ID_SIZE - 1, '\0', reqlen - (GTASK_ID_SIZE - 1)) : NULL;
  if (nul) {
    memcpy(id, req, GTASK_ID_SIZE - 1);
    queue = req + GTASK_ID_SIZE - 1;
    body = nul + 1;
    len = reqlen - (size_t)(body - req);
  }
  int rc = gtask__task_decode_in(body, len, id, queue, &job.task, err, sizeof(err));
  gtask_msg msg;
  memset(&msg, 0, sizeof(msg));
  const gtask_handler *h = NULL;
  if (rc == 0) {
    memcpy(msg.id, job.task->id, GTASK_ID_SIZE);
    job.msg = &msg;
    h = child_find(s, job.task->name);
  }
  if (rc != 0 || !h) {
    r.status = GTASK_FAILURE;
    r.error = rc ? err : (char *)"no handler registered in the child";
    r.error_code = rc ? rc : GTASK_ENOHANDLER;
  } else {
    job.ctx.job = &job;
    if (job.task->timeout_ms > 0) {
      job.ctx.deadline_ms = gtask__now_ms() + job.task->timeout_ms;
      job.deadline_mono = gtask__mono_ms() + job.task->timeout_ms;
    }
    child_ctx = &job.ctx;
    gtask__set_current_ctx(&job.ctx);
    int hrc = h->fn(&job.ctx, job.task->args, job.task->nargs, h->udata);
    gtask__set_current_ctx(NULL);
    child_ctx = NULL;
    if (hrc == 0 && !job.ctx.error) {
      r.status = GTASK_SUCCESS;
      r.values = job.ctx.values;
      r.nvalues = job.ctx.nvalues;
    } else {
      r.status = job.ctx.want_retry ? GTASK_RETRY : GTASK_FAILURE;
      r.error = job.ctx.error;
      r.error_code = hrc ? hrc : GTASK_EHANDLER;
    }
  }
  rc = gtask__result_encode(&r, reply, reply_len);
  if (rc != 0) {
    gtask_result fail;
    memset(&fail, 0, sizeof(fail));
    fail.status = GTASK_FAILURE;
    fail.error = (char *)"the task's result could not be encoded";
    fail.error_code = GTASK_EPROTO;
    rc = gtask__result_encode(&fail, reply, reply_len);
  }
  gtask__free(job.ctx.values);
  gtask__free(job.ctx.error);
  gtask__task_free(job.task);
  return rc;
}

/* Progress from the child's task (issue 18): a frame of 'P' and the report,
 * between the request and the reply; at most one every 100 ms (reports in
 * between are dropped: the supervisor writes one every 500 ms anyway). */
#define CHILD_PROGRESS_MS 100
static int64_t child_progress_mono;

bool gtask__child_progress(gtask_ctx *ctx, const char *value) {
  if (!child_ctx || ctx != child_ctx) return false;
  int64_t now = gtask__mono_ms();
  if (now < child_progress_mono + CHILD_PROGRESS_MS) return true;
  child_progress_mono = now;
  size_t len = strlen(value);
  char frame[1 + 64 + GTASK_PROGRESS_MESSAGE_MAX];
  if (len + 1 > sizeof(frame)) len = sizeof(frame) - 1;
  frame[0] = 'P';
  memcpy(frame + 1, value, len);
  if (write_frame(CHILD_RES_FD, frame, len + 1) != 0) _exit(3); /* supervisor gone */
  return true;
}

/* The child's main loop: one request, one reply, until the pipe closes. */
static void child_main(gtask_server *s) {
  for (;;) {
    char *body = NULL, *reply = NULL;
    size_t len = 0, rlen = 0;
    if (read_frame(CHILD_REQ_FD, &body, &len) != 0) _exit(0); /* supervisor gone or done */
    int rc = child_run_one(s, body, len, &reply, &rlen);
    gtask__free(body);
    if (rc != 0 || write_frame(CHILD_RES_FD, reply, rlen) != 0) _exit(3);
    gtask__free(reply);
  }
}

/* ---------------------------------------------------------------- supervisor side */

static int spawn(gtask_server *s, gtask__child *c) {
  int req[2], res[2];
  if (pipe(req) != 0) return GTASK_ENOMEM;
  if (pipe(res) != 0) {
    close(req[0]), close(req[1]);
    return GTASK_ENOMEM;
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(req[0]), close(req[1]), close(res[0]), close(res[1]);
    return GTASK_ENOMEM;
  }
  if (pid == 0) {
    /* The child: only its two pipes survive (no Redis sockets, no other
     * children's pipes, whose copies would hide EOF from them). */
    if (dup2(req[0], CHILD_REQ_FD) < 0 || dup2(res[1], CHILD_RES_FD) < 0) _exit(4);
    syscall(SYS_close_range, CHILD_RES_FD + 1, ~0U, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the executor thread is gone: die */
    signal(SIGINT, SIG_IGN);          /* Ctrl-C is for the supervisor to handle */
    signal(SIGPIPE, SIG_DFL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);
    sigset_t all;
    sigemptyset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    if (s->child_mem_mb) {
      struct rlimit rl = {(rlim_t)s->child_mem_mb << 20, (rlim_t)s->child_mem_mb << 20};
      setrlimit(RLIMIT_AS, &rl);
    }
    child_main(s);
    _exit(0);
  }
  close(req[0]);
  close(res[1]);
  fcntl(req[1], F_SETFD, FD_CLOEXEC);
  fcntl(res[0], F_SETFD, FD_CLOEXEC);
  c->pid = pid;
  c->req = req[1];
  c->res = res[0];
  c->ntasks = 0;
  return 0;
}

/* Reaps c (killing it first if asked) and describes how it ended. */
static void reap(gtask__child *c, bool kill_it, char *why, size_t whylen) {
  if (c->pid <= 0) return;
  if (c->req >= 0) close(c->req);
  if (c->res >= 0) close(c->res);
  c->req = c->res = -1;
  if (kill_it) kill(c->pid, SIGKILL);
  int status = 0;
  while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (why) {
    if (WIFSIGNALED(status)) {
      int sig = WTERMSIG(status);
      gtask__fmt(why, whylen, "crashed: the task's process was killed by signal %d (SIG%s)", sig,
                 sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    } else if (WIFEXITED(status)) {
      gtask__fmt(why, whylen, "crashed: the task ended its process with exit status %d",
                 WEXITSTATUS(status));
    } else {
      gtask__fmt(why, whylen, "crashed: the task's process ended");
    }
  }
  c->pid = 0;
}

void gtask__child_stop(gtask__child *c) {
  if (c->pid <= 0) return;
  /* Closing its request pipe ends its loop; a child stuck in a task is killed. */
  close(c->req);
  c->req = -1;
  struct pollfd p = {.fd = c->res, .events = POLLIN};
  if (poll(&p, 1, 1000) <= 0) kill(c->pid, SIGKILL);
  reap(c, false, NULL, 0);
}

/* Reads the child's resident set size in MB, or 0. */
static size_t child_rss_mb(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  if (n != 2) return 0;
  return (size_t)((resident * (unsigned long)sysconf(_SC_PAGESIZE)) >> 20);
}

/* Runs job in c (spawning c if needed).  Sets job->ctx (values, error,
 * want_retry) and *rc like a direct handler call would; returns 0, or
 *   GTASK_ECRASH       the child died (why: the signal or exit status),
 *   GTASK_ETASKTIMEOUT the deadline passed and the child was stopped,
 *   GTASK_ELEASE       the task was cancelled (lease lost) and the child stopped. */
int gtask__child_run(gtask_server *s, gtask__child *c, gtask_job *job, int *rc, char *why,
                     size_t whylen) {
  *rc = 0;
  if (c->pid <= 0 && spawn(s, c) != 0) {
    gtask__fmt(why, whylen, "crashed: cannot start a child process: %s", strerror(errno));
    return GTASK_ECRASH;
  }
  if (write_request(c->req, job->msg) != 0) {
    /* The child died while idle (killed, OOM): this task never reached it.
     * Replace the child and hand the task over again. */
    reap(c, true, NULL, 0);
    if (spawn(s, c) != 0) {
      gtask__fmt(why, whylen, "crashed: cannot start a child process: %s", strerror(errno));
      return GTASK_ECRASH;
    }
    if (write_request(c->req, job->msg) != 0) {
      reap(c, true, why, whylen);
      return GTASK_ECRASH;
    }
  }
  bool terminated = false;
  int64_t kill_at = 0;
  int result = 0;
  for (;;) {
    int64_t now = gtask__mono_ms();
    int timeout = 250; /* a cancellation (lease lost, cancel) is noticed within 250 ms */
    if (!terminated && job->deadline_mono) {
      int64_t left = job->deadline_mono - now;
      if (left <= 0 || atomic_load(&job->ctx.cancelled)) {
        /* Soft stop first: the handler's gtask_ctx_cancelled() turns true. */
        kill(c->pid, SIGTERM);
        terminated = true;
        kill_at = now + s->kill_grace_ms;
        result = left <= 0 ? GTASK_ETASKTIMEOUT : GTASK_ELEASE;
        continue;
      }
      if (left < timeout) timeout = (int)left;
    } else if (!terminated && atomic_load(&job->ctx.cancelled)) {
      kill(c->pid, SIGTERM);
      terminated = true;
      kill_at = now + s->kill_grace_ms;
      result = GTASK_ELEASE;
      continue;
    }
    if (terminated) {
      int64_t left = kill_at - now;
      if (left <= 0) {
        reap(c, true, NULL, 0); /* hard deadline */
        return result;
      }
      if (left < timeout) timeout = (int)left;
    }
    struct pollfd p = {.fd = c->res, .events = POLLIN};
    int pr = poll(&p, 1, timeout);
    if (pr < 0 && errno != EINTR) {
      reap(c, true, why, whylen);
      return GTASK_ECRASH;
    }
    if (pr <= 0) continue;
    char *reply = NULL;
    size_t rlen = 0;
    if (read_frame(c->res, &reply, &rlen) != 0) {
      /* EOF: the child died mid-task. */
      reap(c, false, why, whylen);
      return terminated ? result : GTASK_ECRASH;
    }
    if (rlen > 0 && reply[0] == 'P') { /* a progress report: for the finisher */
      memmove(reply, reply + 1, rlen); /* (with its NUL) */
      gtask__free(atomic_exchange(&job->ctx.progress, reply));
      continue;
    }
    gtask_result *r = NULL;
    char err[200];
    int drc = gtask__result_decode(reply, rlen, job->msg->id, &r, err, sizeof(err));
    gtask__free(reply);
    if (drc != 0) {
      gtask__fmt(why, whylen, "crashed: unreadable reply from the child: %s", err);
      reap(c, true, NULL, 0);
      return GTASK_ECRASH;
    }
    if (terminated) { /* it answered within the grace period: late, discarded */
      gtask_result_free(r);
      return result;
    }
    if (r->status == GTASK_SUCCESS) {
      *rc = 0;
      if (r->nvalues) gtask_ctx_return(&job->ctx, r->values, r->nvalues);
    } else {
      *rc = r->error_code ? r->error_code : GTASK_EHANDLER;
      if (r->error) job->ctx.error = gtask__strdup(r->error);
      job->ctx.want_retry = r->status == GTASK_RETRY;
    }
    gtask_result_free(r);
    c->ntasks++;
    /* Recycling: a leaky task's memory goes away with its process. */
    if ((s->child_max_tasks && c->ntasks >= s->child_max_tasks) ||
        (s->child_max_rss_mb && child_rss_mb(c->pid) >= s->child_max_rss_mb))
      gtask__child_stop(c);
    return 0;
  }
}
