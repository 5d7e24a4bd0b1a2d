/* progress.c -- reading the progress a running task reports (issue 18:
 * gtask_client_progress; the handler side is gtask_ctx_progress in
 * executor.c, written by the finisher in finisher.c).
 *
 * The stored form is one string, "DONE TOTAL MESSAGE" (docs/PROTOCOL.md,
 * the `p` field of the task's state hash). */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Parses "DONE TOTAL MESSAGE" into *out: 0 or GTASK_EPROTO. */
static int progress_parse(const char *v, gtask_progress *out) {
  char *end = NULL;
  errno = 0;
  long long done = strtoll(v, &end, 10);
  if (errno || end == v || *end != ' ' || done < 0) return GTASK_EPROTO;
  const char *p = end + 1;
  long long total = strtoll(p, &end, 10);
  if (errno || end == p || (*end != ' ' && *end != '\0') || total < 0) return GTASK_EPROTO;
  out->done = done;
  out->total = total;
  gtask__fmt(out->message, sizeof(out->message), "%s", *end ? end + 1 : "");
  return 0;
}

GTASK_EXTERN int gtask_client_progress(gtask_client *c, const char *id, gtask_progress *out) {
  if (!c || !out) return GTASK_EINVAL;
  memset(out, 0, sizeof(*out));
  if (!id || !gtask__id_valid(id))
    return gtask__client_err(c, GTASK_EINVAL, "\"%s\" is not a task id (a UUID)", id ? id : "(null)");
  gtask_backend *be = gtask__client_backend(c);
  if (!be->ops->progress_get)
    return gtask__client_err(c, GTASK_EINVAL, "progress: not kept by this backend");
  char *v = NULL;
  int rc = be->ops->progress_get(be->impl, gtask__client_queue(c), id, &v);
  if (rc == GTASK_ENOTFOUND)
    return gtask__client_err(c, rc, "no progress of task %s in queue %s", id, gtask__client_queue(c));
  if (rc) return gtask__client_err(c, rc, "progress: %s (%s)", gtask_strerror(rc), gtask_last_error());
  rc = progress_parse(v, out);
  free(v);
  if (rc) {
    memset(out, 0, sizeof(*out));
    return gtask__client_err(c, rc, "task %s: stored progress is malformed", id);
  }
  return 0;
}
