/* schedule.h -- periodic task definitions, shared by schedule.c (their
 * encoding, ids, and the client calls that store them in Redis) and
 * scheduler.c (which fires them); never installed. */
#ifndef GTASK_SCHEDULE_H
#define GTASK_SCHEDULE_H

#include "internal.h"

/* After this long a tick counts as missed: the entry's gtask_missed policy
 * decides (skip it, or run the latest missed one once).  A tick less late
 * than this is on time and always fires: a scheduler that stalled a few
 * seconds, or whose clock is a little behind, still fires every tick. */
#define GTASK__CRON_GRACE_MS 10000

/* One periodic task, as stored in P:cron (JSON, docs/PROTOCOL.md) or added
 * in code. */
typedef struct gtask__sched_def {
  char *name;       /* entry name: 1..128 of [A-Za-z0-9_.:-] */
  char *spec;       /* cron spec */
  char *zone;       /* IANA zone */
  char *queue;      /* the queue its tasks go to */
  char *task;       /* task name (also in tmpl; kept for listing) */
  gtask_missed missed;
  int64_t created_ms; /* when it was stored; ticks after it fire */
  char *tmpl;       /* the task message, without expiry (gtask__send_conf_encode) */
  size_t tmpl_len;
  int64_t delay_ms;  /* each tick's task is due this long after it is queued (0: now) */
  int64_t unique_ms; /* -1: no unique key; GTASK_UNIQUE_UNTIL_DONE (0): a tick is not
                        queued while the task of an earlier one (same name and
                        arguments) is not final; > 0: nor within this long of it */
  gtask_cron *cron; /* spec parsed in zone */
} gtask__sched_def;

/* Builds a definition from a send conf (queue: conf's, else default_queue)
 * and arguments.  GTASK_EINVAL with the reason in gtask_last_error(). */
int gtask__sched_def_make(gtask__sched_def *d, const char *name, const char *spec,
                          const char *zone, gtask_missed missed, const gtask_send_conf *conf,
                          const char *default_queue, const gtask_value *args, size_t nargs,
                          int64_t now_ms);
/* JSON for P:cron; *json to free with gtask__free. */
int gtask__sched_def_encode(const gtask__sched_def *d, char **json, size_t *len);
/* Parses a stored definition of entry name (parsing its spec too).
 * GTASK_EPROTO / EINVAL with the reason in gtask_last_error(). */
int gtask__sched_def_decode(const char *name, const char *json, size_t len, gtask__sched_def *d);
void gtask__sched_def_clear(gtask__sched_def *d);

/* The task id of entry name's tick: a name-based (version 5) UUID of both,
 * so every scheduler derives the same id for the same tick. */
void gtask__cron_task_id(const char *name, int64_t tick_ms, char out[GTASK_ID_SIZE]);
/* The message to queue for a tick: the template with c = now and, if ttl_ms,
 * x = now + the delay + ttl_ms.  *body to free with gtask__free.  With a
 * unique key (d->unique_ms >= 0), its content digest into ukey (else ""). */
int gtask__sched_body(const gtask__sched_def *d, const char *id, int64_t now_ms, int64_t ttl_ms,
                      char **body, size_t *len, char ukey[65]);

#endif /* GTASK_SCHEDULE_H */
