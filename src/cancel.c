/* cancel.c -- cancelling a task (issue 18: gtask_client_cancel, `gtask cancel`).
 *
 * The client encodes the final record (status CANCELLED) and hands it to the
 * broker's cancel(), which writes it -- unless the task is final already --
 * and removes the task's message from the queue or the schedule in the same
 * atomic step (a colocated broker: cancel.lua on Redis, one mutex in memory).
 * A task a worker holds keeps its message until that worker's finish, which
 * finds the task final and records nothing: whichever of cancel and finish
 * comes first is the one final state.  The worker learns of the cancel by
 * asking the backend's finals() for the tasks it holds (finisher.c). */
#include "internal.h"

#include <string.h>

GTASK_EXTERN int gtask_client_cancel(gtask_client *c, const char *id, bool *running) {
  if (running) *running = false;
  if (!c) return GTASK_EINVAL;
  if (!id || !gtask__id_valid(id))
    return gtask__client_err(c, GTASK_EINVAL, "\"%s\" is not a task id (a UUID)", id ? id : "(null)");
  gtask_broker *b = gtask__client_broker(c);
  void *state = gtask__client_state(c);
  const char *queue = gtask__client_queue(c);
  if (!b->ops->cancel || !state)
    return gtask__client_err(c, GTASK_EINVAL,
                             "cancel: not supported by this broker (it needs the broker and the "
                             "backend in one store)");
  gtask_result r;
  memset(&r, 0, sizeof(r));
  r.status = GTASK_CANCELLED;
  r.error = (char *)"cancelled";
  r.error_code = GTASK_ECANCELED;
  char *rec = NULL;
  size_t len = 0;
  int rc = gtask__result_encode(&r, &rec, &len);
  if (rc) return gtask__client_err(c, rc, "cancel: encoding the record: %s", gtask_strerror(rc));
  bool held = false;
  rc = b->ops->cancel(b->impl, queue, id, rec, len, &held, state);
  gtask__free(rec);
  if (rc == GTASK_ENOTFOUND)
    return gtask__client_err(c, rc, "no task %s in queue %s (unknown or expired)", id, queue);
  if (rc == GTASK_ESTATE) {
    gtask_status st = 0;
    const char *name = gtask_client_status(c, id, &st) == 0 ? gtask_status_name(st) : "final";
    return gtask__client_err(c, rc, "task %s has finished already (%s): nothing to cancel", id, name);
  }
  if (rc)
    return gtask__client_err(c, rc, "cancel: %s (%s)", gtask_strerror(rc), gtask_last_error());
  if (running) *running = held;
  return 0;
}
