/* limit.c -- the client calls that set, remove and list rate and concurrency
 * limits (issue 19; `gtask limit ...`).  The limits live in the queue's
 * P:{q}:limits hash (redis/limits.c, which also enforces them in the worker);
 * here only the checks of what the caller gives, so that bad input stores
 * nothing. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static int limit_err(gtask_client *c, int rc, const char *what) {
  char detail[256];
  gtask__fmt(detail, sizeof(detail), "%s", gtask_last_error());
  if (rc == GTASK_EINVAL || rc == GTASK_ENOTFOUND) return gtask__client_err(c, rc, "%s", detail);
  return gtask__client_err(c, rc, "%s: %s (%s)", what, gtask_strerror(rc), detail);
}

/* The queue and the target ("q" or "t:<task>") of a limit call. */
static int target(gtask_client *c, const char **queue, const char *task, char *field, size_t size) {
  if (!*queue) *queue = gtask__client_queue(c);
  if (!gtask__queue_valid(*queue))
    return gtask__client_err(c, GTASK_EINVAL, "invalid queue name \"%s\"", *queue);
  if (!task) {
    gtask__fmt(field, size, "q");
    return 0;
  }
  const char *why = gtask__task_name_check(task);
  if (why) return gtask__client_err(c, GTASK_EINVAL, "bad task name: %s", why);
  gtask__fmt(field, size, "t:%s", task);
  return 0;
}

GTASK_EXTERN int gtask_client_limit_rate(gtask_client *c, const char *queue, const char *task,
                                         int64_t n, int64_t period_ms) {
  if (!c) return GTASK_EINVAL;
  if (n < 1 || n > 1000000000 || period_ms < 1 || period_ms > (int64_t)366 * 86400 * 1000)
    return gtask__client_err(c, GTASK_EINVAL,
                             "bad rate %lld per %lld ms (at least 1 per at least 1 ms)",
                             (long long)n, (long long)period_ms);
  char t[300], field[320], value[64];
  int rc = target(c, &queue, task, t, sizeof(t));
  if (rc) return rc;
  snprintf(field, sizeof(field), "rate:%s", t);
  snprintf(value, sizeof(value), "%lld %lld", (long long)n, (long long)period_ms);
  rc = gtask__limit_set(gtask__client_broker(c), queue, field, value);
  return rc ? limit_err(c, rc, "limit rate") : 0;
}

GTASK_EXTERN int gtask_client_limit_concurrency(gtask_client *c, const char *queue,
                                                const char *task, int64_t k) {
  if (!c) return GTASK_EINVAL;
  if (k < 1 || k > 1000000)
    return gtask__client_err(c, GTASK_EINVAL, "bad concurrency %lld (1 to 1000000)", (long long)k);
  char t[300], field[320], value[32];
  int rc = target(c, &queue, task, t, sizeof(t));
  if (rc) return rc;
  snprintf(field, sizeof(field), "conc:%s", t);
  snprintf(value, sizeof(value), "%lld", (long long)k);
  rc = gtask__limit_set(gtask__client_broker(c), queue, field, value);
  return rc ? limit_err(c, rc, "limit concurrency") : 0;
}

GTASK_EXTERN int gtask_client_limit_remove(gtask_client *c, const char *queue, const char *task) {
  if (!c) return GTASK_EINVAL;
  char t[300];
  int rc = target(c, &queue, task, t, sizeof(t));
  if (rc) return rc;
  rc = gtask__limit_set(gtask__client_broker(c), queue, t, NULL);
  return rc ? limit_err(c, rc, "limit remove") : 0;
}

GTASK_EXTERN int gtask_client_limit_list(gtask_client *c, const char *queue, gtask_limit **out,
                                         size_t *n) {
  if (!c || !out || !n) return GTASK_EINVAL;
  *out = NULL;
  *n = 0;
  char t[300];
  int rc = target(c, &queue, NULL, t, sizeof(t));
  if (rc) return rc;
  rc = gtask__limit_list(gtask__client_broker(c), queue, out, n);
  return rc ? limit_err(c, rc, "limit list") : 0;
}

GTASK_EXTERN void gtask_limit_list_free(gtask_limit *limits, size_t n) {
  for (size_t k = 0; limits && k < n; k++) {
    gtask__free(limits[k].queue);
    gtask__free(limits[k].task);
  }
  gtask__free(limits);
}
