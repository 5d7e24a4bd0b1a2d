/* inspect.c -- a queue's tasks, page by page, and one task's whole record
 * (issue 20: `gtask inspect queue|task`, the dashboard's task lists).
 *
 * Client calls on the broker's list() and find() (<gtask/extend.h>, abi 3)
 * and the backend's get (through gtask_client_result).  The broker gives
 * messages; here each is decoded into a gtask_task_info, a message that does
 * not decode keeping its id and the reason as last_error.  Reads only. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define LIST_MAX 1000

static const char *const state_names[] = {
    [GTASK_LIST_PENDING] = "pending",
    [GTASK_LIST_ACTIVE] = "active",
    [GTASK_LIST_SCHEDULED] = "scheduled",
    [GTASK_LIST_DEAD] = "dead",
    [GTASK_LIST_FAILED] = "failed",
};

GTASK_EXTERN const char *gtask_list_state_name(gtask_list_state s) {
  return s >= GTASK_LIST_PENDING && s <= GTASK_LIST_FAILED ? state_names[s] : "?";
}

GTASK_EXTERN int gtask_list_state_parse(const char *name, gtask_list_state *out) {
  for (int s = GTASK_LIST_PENDING; name && out && s <= GTASK_LIST_FAILED; s++)
    if (strcmp(name, state_names[s]) == 0) {
      *out = (gtask_list_state)s;
      return 0;
    }
  return GTASK_EINVAL;
}

static void info_clear(gtask_task_info *t) {
  gtask__free(t->name);
  gtask__free(t->args);
  gtask__free(t->last_error);
  gtask__free(t->worker);
}

GTASK_EXTERN void gtask_task_info_free(gtask_task_info *v, size_t n) {
  if (!v) return;
  for (size_t k = 0; k < n; k++) info_clear(&v[k]);
  gtask__free(v);
}

/* Fills t from the message m found in state. */
static int info_fill(const gtask_msg *m, int state, gtask_task_info *t) {
  memset(t, 0, sizeof(*t));
  gtask__fmt(t->id, sizeof(t->id), "%s", m->id);
  t->state = (gtask_list_state)state;
  t->due_ms = state == GTASK_LIST_SCHEDULED || state == GTASK_LIST_FAILED ? m->due_ms : 0;
  if (state == GTASK_LIST_ACTIVE && m->lease && !(t->worker = gtask__strdup(m->lease)))
    return GTASK_ENOMEM;
  gtask_task *task = NULL;
  char why[200] = "";
  int rc = gtask__task_decode_in(m->body, m->len, m->id, m->queue, &task, why, sizeof(why));
  if (rc == GTASK_ENOMEM) return rc;
  if (rc) {
    char msg[260];
    gtask__fmt(msg, sizeof(msg), "malformed message: %s", why);
    return (t->last_error = gtask__strdup(msg)) ? 0 : GTASK_ENOMEM;
  }
  /* The task's allocations move over: name, args (one block), last error. */
  t->name = task->name;
  t->args = task->args;
  t->nargs = task->nargs;
  t->last_error = task->last_error;
  task->name = NULL;
  task->args = NULL;
  task->last_error = NULL;
  t->attempts = task->attempts;
  t->lost = task->lost;
  t->priority = (int)task->priority;
  t->retry_max = task->retry_max;
  t->timeout_ms = task->timeout_ms;
  t->created_ms = task->created_ms;
  gtask__task_free(task);
  return 0;
}

static int unsupported(gtask_client *c, const char *what) {
  return gtask__client_err(c, GTASK_EINVAL, "%s: the %s broker cannot list tasks", what,
                           gtask__client_broker(c)->ops->name);
}

GTASK_EXTERN int gtask_client_list(gtask_client *c, gtask_list_state state, const char *after,
                                   size_t limit, gtask_task_info **out, size_t *n, char **next) {
  if (!c || !out || !n || !next) return GTASK_EINVAL;
  *out = NULL;
  *n = 0;
  *next = NULL;
  if (state < GTASK_LIST_PENDING || state > GTASK_LIST_FAILED)
    return gtask__client_err(c, GTASK_EINVAL, "list: no such state %d", (int)state);
  if (limit < 1 || limit > LIST_MAX)
    return gtask__client_err(c, GTASK_EINVAL, "list: limit %zu out of range 1..%d", limit, LIST_MAX);
  if (after && strlen(after) > 64)
    return gtask__client_err(c, GTASK_EINVAL, "list: bad cursor (longer than 64 bytes)");
  gtask_broker *b = gtask__client_broker(c);
  if (b->ops->abi < 4 || !b->ops->list) return unsupported(c, "list");
  gtask_msg **msgs = NULL;
  size_t nm = 0;
  char *cur = NULL;
  int rc = b->ops->list(b->impl, gtask__client_queue(c), (int)state, after, limit, &msgs, &nm, &cur);
  if (rc) return gtask__client_err(c, rc, "list: %s (%s)", gtask_strerror(rc), gtask_last_error());
  gtask_task_info *v = nm ? gtask__calloc(nm, sizeof(*v)) : NULL;
  size_t nv = 0;
  if (nm && !v) rc = GTASK_ENOMEM;
  for (size_t k = 0; k < nm; k++) {
    if (rc == 0) {
      rc = info_fill(msgs[k], (int)state, &v[nv]);
      nv++;
    }
    gtask_msg_free(msgs[k]);
  }
  free(msgs);
  if (rc) {
    gtask_task_info_free(v, nv);
    free(cur);
    return rc;
  }
  *out = v;
  *n = nv;
  *next = cur;
  return 0;
}

GTASK_EXTERN int gtask_client_inspect(gtask_client *c, const char *id, gtask_result **result,
                                      gtask_task_info **info) {
  if (result) *result = NULL;
  if (info) *info = NULL;
  if (!c) return GTASK_EINVAL;
  if (!id || !gtask__id_valid(id))
    return gtask__client_err(c, GTASK_EINVAL, "\"%s\" is not a task id (a UUID)", id ? id : "(null)");
  gtask_broker *b = gtask__client_broker(c);
  if (b->ops->abi < 4 || !b->ops->find) return unsupported(c, "inspect");
  gtask_result *r = NULL;
  int rc = gtask_client_result(c, id, &r);
  if (rc && rc != GTASK_ENOTFOUND) return rc;
  gtask_msg *m = NULL;
  int state = 0;
  int frc = b->ops->find(b->impl, gtask__client_queue(c), id, &state, &m);
  if (frc && frc != GTASK_ENOTFOUND) {
    gtask_result_free(r);
    return gtask__client_err(c, frc, "inspect: %s (%s)", gtask_strerror(frc), gtask_last_error());
  }
  if (!r && !m)
    return gtask__client_err(c, GTASK_ENOTFOUND, "no task %s in queue %s (unknown or expired)", id,
                             gtask__client_queue(c));
  gtask_task_info *t = NULL;
  if (m) {
    t = gtask__calloc(1, sizeof(*t));
    int irc = t ? info_fill(m, state, t) : GTASK_ENOMEM;
    gtask_msg_free(m);
    if (irc) {
      gtask_task_info_free(t, t ? 1 : 0);
      gtask_result_free(r);
      return irc;
    }
  }
  if (result) *result = r;
  else gtask_result_free(r);
  if (info) *info = t;
  else gtask_task_info_free(t, t ? 1 : 0);
  return 0;
}
