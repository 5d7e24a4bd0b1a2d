/* plugin.c -- the handles around broker and backend implementations.
 *
 * A gtask_broker or gtask_backend is a const table of functions, the
 * implementation's void *impl and a reference count (internal.h).  Servers and
 * clients each take their own reference, so the user may free theirs at once;
 * the implementation is destroyed when the last reference goes.
 *
 * Invariant: ops->destroy runs exactly once, in the thread that drops the last
 * reference, after every other holder has let go -- so no other call into the
 * implementation can be in progress.  atomic_fetch_sub is sequentially
 * consistent, which orders every holder's last use before the destroy. */
#include "internal.h"

gtask_broker *gtask__broker_new(const gtask_broker_ops *ops, void *impl) {
  gtask_broker *b = gtask__calloc(1, sizeof(*b));
  if (b == NULL) {
    ops->destroy(impl);
    return NULL;
  }
  b->msg_ttl_ms = 0;
  b->ops = ops;
  b->impl = impl;
  atomic_init(&b->refs, 1);
  return b;
}

gtask_backend *gtask__backend_new(const gtask_backend_ops *ops, void *impl) {
  gtask_backend *b = gtask__calloc(1, sizeof(*b));
  if (b == NULL) {
    ops->destroy(impl);
    return NULL;
  }
  b->ops = ops;
  b->impl = impl;
  atomic_init(&b->refs, 1);
  return b;
}

gtask_broker *gtask__broker_ref(gtask_broker *b) {
  if (b != NULL)
    atomic_fetch_add(&b->refs, 1);
  return b;
}

gtask_backend *gtask__backend_ref(gtask_backend *b) {
  if (b != NULL)
    atomic_fetch_add(&b->refs, 1);
  return b;
}

GTASK_EXTERN void gtask_broker_free(gtask_broker *b) {
  if (b == NULL || atomic_fetch_sub(&b->refs, 1) != 1)
    return;
  b->ops->destroy(b->impl);
  gtask__free(b);
}

GTASK_EXTERN void gtask_backend_free(gtask_backend *b) {
  if (b == NULL || atomic_fetch_sub(&b->refs, 1) != 1)
    return;
  b->ops->destroy(b->impl);
  gtask__free(b);
}
