/* scheduler.c -- the scheduler: queues each tick of each periodic task
 * exactly once, however many schedulers run (issue 19).
 *
 * A scheduler keeps, per entry, the last tick it knows to be done, and sleeps
 * until the earliest next tick of all its entries (at most a second: the
 * Redis entries are re-read every second).  When a tick is due it runs
 * cron_fire.lua, which checks the entry's last tick in Redis and, if the
 * tick is not done yet, queues the task under the tick's id and records the
 * tick -- one atomic script.  Whoever runs it first for a tick queues it; the
 * others learn the entry's new last tick from the reply.  So:
 *  - two or more schedulers never queue a tick twice (the script is the only
 *    writer of the state, and checks before it writes);
 *  - a scheduler killed anywhere loses nothing: before the script the tick
 *    is not done, and any live scheduler (or this one, restarted) fires it;
 *    after it the tick is done and queued, durably as Redis is;
 *  - ticks are computed from the entry's state in Redis, not from when a
 *    scheduler started, so a restart resumes at the next tick not done.
 * Ticks more than GTASK__CRON_GRACE_MS late are missed (nobody was running):
 * the entry's policy skips them, recording the latest as done without
 * queueing it, or queues the latest of them once.
 *
 * Invariant: only the thread in gtask_scheduler_run touches the entries;
 * gtask_scheduler_shutdown only sets a flag and writes a byte to a pipe. */
#define _GNU_SOURCE /* pipe2 */
#include "schedule.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* How often the Redis entries are re-read, and the longest sleep. */
#define RELOAD_MS 1000
/* Most ticks stepped over in one go when finding the latest missed one. */
#define MISSED_SCAN_MAX 1000000

typedef struct sched_entry {
  gtask__sched_def def;
  bool from_code;
  bool bad;          /* a stored definition that does not parse: logged once, not run */
  char *raw;         /* the stored definition (registry entries), to see changes */
  size_t raw_len;
  bool last_known;   /* last_ms read from Redis */
  int64_t last_ms;   /* the last tick done; -1: none */
  int64_t next_ms;   /* the next tick, 0 if none */
  bool mark;         /* reload: still in Redis */
} sched_entry;

struct gtask_scheduler {
  gtask_broker *broker;
  gtask_backend *backend;
  bool with_state; /* broker and backend colocated: cron_fire.lua records PENDING */
  bool registry;   /* fire the entries stored in Redis too */
  sched_entry **v;
  size_t n, cap;
  int64_t started_ms;
  atomic_bool stop;
  atomic_bool running;
  int wake[2]; /* shutdown writes a byte to wake[1] */
  bool outage; /* the last Redis call failed: log the recovery once */
  char errmsg[256];
};

static int set_err(gtask_scheduler *s, int rc, const char *fmt, ...) GTASK__PRINTF(3, 4);
static int set_err(gtask_scheduler *s, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
  va_end(ap);
  return rc;
}

GTASK_EXTERN const char *gtask_scheduler_errmsg(const gtask_scheduler *s) {
  return s ? s->errmsg : "";
}

static void entry_free(sched_entry *e) {
  if (!e) return;
  gtask__sched_def_clear(&e->def);
  gtask__free(e->raw);
  gtask__free(e);
}

GTASK_EXTERN gtask_scheduler *gtask_scheduler_new(gtask_broker *broker, gtask_backend *backend) {
  if (!broker || !backend) return NULL;
  gtask_scheduler *s = gtask__calloc(1, sizeof(*s));
  if (!s) return NULL;
  if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    gtask__set_error("gtask_scheduler_new: pipe: %s", strerror(errno));
    gtask__free(s);
    return NULL;
  }
  s->broker = gtask__broker_ref(broker);
  s->backend = gtask__backend_ref(backend);
  s->with_state = broker->ops->colocated && broker->ops->colocated(broker->impl, backend) != NULL;
  s->registry = true;
  return s;
}

GTASK_EXTERN void gtask_scheduler_free(gtask_scheduler *s) {
  if (!s) return;
  for (size_t k = 0; k < s->n; k++) entry_free(s->v[k]);
  gtask__free(s->v);
  close(s->wake[0]);
  close(s->wake[1]);
  gtask_broker_free(s->broker);
  gtask_backend_free(s->backend);
  gtask__free(s);
}

GTASK_EXTERN void gtask_scheduler_shutdown(gtask_scheduler *s) {
  if (!s) return;
  atomic_store(&s->stop, true);
  ssize_t w = write(s->wake[1], "x", 1); /* async-signal-safe; a full pipe wakes anyway */
  (void)w;
}

GTASK_EXTERN int gtask_scheduler_set_registry(gtask_scheduler *s, bool on) {
  if (!s) return GTASK_EINVAL;
  if (atomic_load(&s->running)) return set_err(s, GTASK_ESTATE, "the scheduler is running");
  s->registry = on;
  return 0;
}

static sched_entry *find(gtask_scheduler *s, const char *name, bool from_code) {
  for (size_t k = 0; k < s->n; k++)
    if (s->v[k]->from_code == from_code && strcmp(s->v[k]->def.name, name) == 0) return s->v[k];
  return NULL;
}

static int append(gtask_scheduler *s, sched_entry *e) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    sched_entry **v = gtask__realloc(s->v, cap * sizeof(*v));
    if (!v) return GTASK_ENOMEM;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = e;
  return 0;
}

GTASK_EXTERN int gtask_scheduler_add(gtask_scheduler *s, const char *name, const char *spec,
                                     const char *zone, gtask_missed missed,
                                     const gtask_send_conf *conf, const gtask_value *args,
                                     size_t nargs) {
  if (!s) return GTASK_EINVAL;
  if (atomic_load(&s->running)) return set_err(s, GTASK_ESTATE, "the scheduler is running");
  if (name && find(s, name, true))
    return set_err(s, GTASK_EEXIST, "periodic task \"%s\" is added already", name);
  sched_entry *e = gtask__calloc(1, sizeof(*e));
  if (!e) return set_err(s, GTASK_ENOMEM, "out of memory");
  int rc = gtask__sched_def_make(&e->def, name, spec, zone, missed, conf, "default", args, nargs,
                                 gtask__now_ms());
  if (rc) {
    gtask__free(e);
    return set_err(s, rc, "%s", gtask_last_error());
  }
  e->from_code = true;
  e->last_ms = -1;
  if ((rc = append(s, e)) != 0) {
    entry_free(e);
    return set_err(s, rc, "out of memory");
  }
  return 0;
}

/* ---------------------------------------------------------------- the Redis entries */

/* Re-reads P:cron: new entries join, changed ones are re-parsed, removed
 * ones leave.  An entry in code shadows a stored one of the same name. */
static int reload(gtask_scheduler *s) {
  gtask__cron_raw *raw;
  size_t nraw;
  int rc = gtask__cron_all(s->broker, NULL, &raw, &nraw);
  if (rc) return rc;
  for (size_t k = 0; k < s->n; k++) s->v[k]->mark = false;
  for (size_t i = 0; i < nraw && rc == 0; i++) {
    if (find(s, raw[i].name, true)) continue;
    sched_entry *e = find(s, raw[i].name, false);
    if (e && e->raw_len == raw[i].len && memcmp(e->raw, raw[i].def, raw[i].len) == 0) {
      e->mark = true;
      continue;
    }
    sched_entry *n = gtask__calloc(1, sizeof(*n));
    if (!n) {
      rc = GTASK_ENOMEM;
      break;
    }
    n->raw = raw[i].def;
    n->raw_len = raw[i].len;
    raw[i].def = NULL;
    n->last_ms = -1;
    n->mark = true;
    int drc = gtask__sched_def_decode(raw[i].name, n->raw, n->raw_len, &n->def);
    if (drc == GTASK_ENOMEM) {
      entry_free(n);
      rc = drc;
      break;
    }
    if (drc) {
      gtask__log(GTASK_LOG_WARN, "scheduler: %s; not run (`gtask cron remove %s` removes it)",
                 gtask_last_error(), raw[i].name);
      n->bad = true;
      n->def.name = gtask__strdup(raw[i].name);
      if (!n->def.name) {
        entry_free(n);
        rc = GTASK_ENOMEM;
        break;
      }
    }
    /* A changed entry keeps what it knows of its state if its queue (where
     * the state lives) is the same. */
    if (e && !e->bad && !n->bad && strcmp(e->def.queue, n->def.queue) == 0) {
      n->last_known = e->last_known;
      n->last_ms = e->last_ms;
    }
    if (e) {
      e->mark = false; /* replaced: dropped below */
      gtask__log(GTASK_LOG_INFO, "scheduler: periodic task %s changed: %s", raw[i].name,
                 n->bad ? "(malformed)" : n->def.spec);
    } else if (!n->bad) {
      gtask__log(GTASK_LOG_INFO, "scheduler: periodic task %s: \"%s\" in %s, task %s on queue %s",
                 n->def.name, n->def.spec, n->def.zone, n->def.task, n->def.queue);
    }
    if ((rc = append(s, n)) != 0) entry_free(n);
  }
  gtask__cron_defs_free(raw, nraw);
  /* Drop the stored entries no longer there (or replaced), keeping order. */
  size_t j = 0;
  for (size_t k = 0; k < s->n; k++) {
    if (s->v[k]->from_code || s->v[k]->mark) {
      s->v[j++] = s->v[k];
    } else {
      if (!find(s, s->v[k]->def.name, false) || s->v[k]->bad)
        gtask__log(GTASK_LOG_DEBUG, "scheduler: periodic task %s dropped", s->v[k]->def.name);
      entry_free(s->v[k]);
    }
  }
  s->n = j;
  return rc;
}

/* ---------------------------------------------------------------- firing */

/* The tick after which e's next ticks are: its last tick done; before any,
 * when it was stored (a stored entry) or when this scheduler started (an
 * entry in code).  A stored entry re-added under an old name starts at its
 * new creation, not at the old entry's last tick. */
static int64_t base_of(const gtask_scheduler *s, const sched_entry *e) {
  if (e->from_code) return e->last_ms >= 0 ? e->last_ms : s->started_ms;
  return e->last_ms > e->def.created_ms ? e->last_ms : e->def.created_ms;
}

/* Runs cron_fire.lua for tick t of e: queues it (enqueue) or marks it done.
 * Returns 1 (this call did it), 0 (done before), or a negative code; updates
 * e->last_ms from the reply. */
static int fire(gtask_scheduler *s, sched_entry *e, int64_t t, bool enqueue, int64_t now) {
  char id[GTASK_ID_SIZE] = "";
  char ukey[65] = "";
  char *body = NULL;
  size_t len = 0;
  gtask__cron_task task = {.id = id, .unique_ms = e->def.unique_ms};
  if (enqueue) {
    gtask__cron_task_id(e->def.name, t, id);
    int rc = gtask__sched_body(&e->def, id, now, s->broker->msg_ttl_ms, &body, &len, ukey);
    if (rc) return rc;
    task.body = body;
    task.len = len;
    task.due_ms = e->def.delay_ms > 0 ? now + e->def.delay_ms : 0; /* as a delayed send */
    task.ukey = ukey[0] ? ukey : NULL;
  }
  int64_t last = 0;
  int rc = gtask__cron_fire(s->broker, s->with_state, e->def.queue, e->def.name, t,
                            enqueue ? &task : NULL, &last);
  gtask__free(body);
  if (rc < 0) return rc;
  if (last > e->last_ms) e->last_ms = last;
  if (rc == 2) {
    char when[GTASK_TIME_SIZE] = "";
    gtask_cron_format(e->def.cron, t, when, sizeof(when));
    gtask__log(GTASK_LOG_INFO,
               "scheduler: %s: tick %s not queued: an earlier task of it holds its unique key",
               e->def.name, when);
    return 1;
  }
  if (rc == 1) {
    char when[GTASK_TIME_SIZE] = "";
    gtask_cron_format(e->def.cron, t, when, sizeof(when));
    if (enqueue)
      gtask__log(GTASK_LOG_INFO, "scheduler: %s: tick %s queued as %s %s on %s%s", e->def.name,
                 when, e->def.task, id, e->def.queue,
                 now - t > GTASK__CRON_GRACE_MS ? " (the latest missed tick)" : "");
    else
      gtask__log(GTASK_LOG_INFO, "scheduler: %s: missed ticks up to %s skipped", e->def.name, when);
  }
  return rc;
}

/* Fires every tick of e that is due at now; sets e->next_ms. */
static int step(gtask_scheduler *s, sched_entry *e, int64_t now) {
  e->next_ms = 0;
  if (e->bad) return 0;
  if (!e->last_known) {
    gtask__cron_fired st;
    int rc = gtask__cron_state(s->broker, e->def.queue, e->def.name, &st);
    if (rc) return rc;
    e->last_ms = st.known ? st.last_ms : -1;
    e->last_known = true;
  }
  for (int guard = 0; guard < 10000; guard++) {
    int64_t t;
    if (gtask_cron_next(e->def.cron, base_of(s, e), &t) != 0) return 0; /* never again */
    if (t > now) {
      e->next_ms = t;
      return 0;
    }
    int rc;
    if (now - t <= GTASK__CRON_GRACE_MS) {
      rc = fire(s, e, t, true, now);
    } else {
      /* Missed: find the latest missed tick, and skip or queue it. */
      int64_t m = t, n2;
      for (int k = 0; k < MISSED_SCAN_MAX; k++) {
        if (gtask_cron_next(e->def.cron, m, &n2) != 0 || n2 > now - GTASK__CRON_GRACE_MS) break;
        m = n2;
      }
      rc = fire(s, e, m, e->def.missed == GTASK_MISSED_LATEST, now);
    }
    if (rc < 0) return rc;
  }
  return 0;
}

GTASK_EXTERN int gtask_scheduler_run(gtask_scheduler *s) {
  if (!s) return GTASK_EINVAL;
  if (!gtask__cron_supported(s->broker))
    return set_err(s, GTASK_EINVAL, "periodic tasks need a Redis broker (gtask_broker_redis_new)");
  if (atomic_exchange(&s->running, true))
    return set_err(s, GTASK_ESTATE, "the scheduler is running already");
  s->started_ms = gtask__now_ms();
  for (size_t k = 0; k < s->n; k++) s->v[k]->last_known = false;
  gtask__log(GTASK_LOG_INFO, "scheduler: started with %zu periodic task%s in code%s", s->n,
             s->n == 1 ? "" : "s", s->registry ? " and those stored in Redis" : "");
  int64_t reload_at = 0;
  while (!atomic_load(&s->stop)) {
    int64_t now = gtask__now_ms();
    int rc = 0;
    if (s->registry && gtask__mono_ms() >= reload_at) {
      rc = reload(s);
      reload_at = gtask__mono_ms() + RELOAD_MS;
    }
    int64_t wake = now + RELOAD_MS;
    for (size_t k = 0; k < s->n && rc == 0; k++) {
      rc = step(s, s->v[k], now);
      if (s->v[k]->next_ms && s->v[k]->next_ms < wake) wake = s->v[k]->next_ms;
    }
    if (rc && !s->outage) {
      gtask__log(GTASK_LOG_WARN, "scheduler: %s (%s); retrying every second", gtask_strerror(rc),
                 gtask_last_error());
      s->outage = true;
      for (size_t k = 0; k < s->n; k++) s->v[k]->last_known = false;
    } else if (rc == 0 && s->outage) {
      gtask__log(GTASK_LOG_INFO, "scheduler: Redis is back");
      s->outage = false;
    }
    if (rc) wake = now + RELOAD_MS, reload_at = 0;
    int64_t ms = wake - gtask__now_ms();
    if (ms > 0) {
      struct pollfd p = {.fd = s->wake[0], .events = POLLIN};
      if (poll(&p, 1, (int)(ms > RELOAD_MS ? RELOAD_MS : ms)) > 0) {
        char buf[16];
        while (read(s->wake[0], buf, sizeof(buf)) > 0) {
        }
      }
    }
  }
  gtask__log(GTASK_LOG_INFO, "scheduler: stopped");
  atomic_store(&s->running, false);
  atomic_store(&s->stop, false);
  return 0;
}
