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
 * consistent, which orders every holder's last use before the destroy.
 *
 * gtask_broker_new and gtask_backend_new (<gtask/extend.h>) are the public way
 * in: they check the table (abi version, required operations) and, unlike the
 * internal gtask__*_new used by the built-in implementations, leave impl to
 * the caller when they fail.  A table of an older ABI is shorter than today's:
 * the handle then keeps a full-size copy with the newer operations NULL, so
 * that the core never reads past the end of the caller's table. */
#include "internal.h"

#include <stddef.h>
#include <string.h>

/* Which operations a table must fill: name and offset.  Checked by
 * gtask_broker_new / gtask_backend_new so that a missing one is a clear error
 * at construction, not a NULL call in a worker thread. */
typedef struct required_op {
  const char *name;
  size_t offset;
} required_op;

#define REQ(type, field) {#field, offsetof(type, field)}
static const required_op broker_required[] = {
    REQ(gtask_broker_ops, push),      REQ(gtask_broker_ops, lease),
    REQ(gtask_broker_ops, interrupt), REQ(gtask_broker_ops, extend),
    REQ(gtask_broker_ops, finish),    REQ(gtask_broker_ops, reclaim),
    REQ(gtask_broker_ops, promote),   REQ(gtask_broker_ops, stats),
    REQ(gtask_broker_ops, dead_list), REQ(gtask_broker_ops, dead_requeue),
    REQ(gtask_broker_ops, dead_purge), REQ(gtask_broker_ops, destroy),
};
static const required_op backend_required[] = {
    REQ(gtask_backend_ops, pending), REQ(gtask_backend_ops, started),
    REQ(gtask_backend_ops, store),   REQ(gtask_backend_ops, get),
    REQ(gtask_backend_ops, wait),    REQ(gtask_backend_ops, reset),
    REQ(gtask_backend_ops, destroy),
};
#undef REQ

/* 0 if the table at ops (abi and name at their usual places) is usable, else
 * GTASK_EINVAL with the reason set for gtask_last_error(). */
static int table_check(const char *what, const void *ops, int abi, const char *name,
                       const required_op *req, size_t nreq) {
  if (abi < 1 || abi > GTASK_EXTEND_ABI) {
    gtask__set_error("gtask_%s_new: table \"%s\" has abi %d; this library accepts 1..%d "
                     "(GTASK_EXTEND_ABI)",
                     what, name ? name : "(unnamed)", abi, GTASK_EXTEND_ABI);
    return GTASK_EINVAL;
  }
  if (name == NULL || name[0] == '\0') {
    gtask__set_error("gtask_%s_new: the table has no name", what);
    return GTASK_EINVAL;
  }
  for (size_t i = 0; i < nreq; i++) {
    void (*fn)(void);
    memcpy(&fn, (const char *)ops + req[i].offset, sizeof(fn));
    if (fn == NULL) {
      gtask__set_error("gtask_%s_new: table \"%s\" lacks the required operation %s", what,
                       name, req[i].name);
      return GTASK_EINVAL;
    }
  }
  return 0;
}

/* The message lifetime a broker table gives (extend.h, abi 2), 0 if it has
 * none.  A table of abi 1 ends before the field: it is not read. */
static int64_t msg_ttl(const gtask_broker_ops *ops, void *impl) {
  return ops->abi >= 2 && ops->msg_ttl_ms != NULL ? ops->msg_ttl_ms(impl) : 0;
}

GTASK_EXTERN int gtask_broker_new(gtask_broker **out, const gtask_broker_ops *ops, void *impl) {
  if (out != NULL)
    *out = NULL;
  if (out == NULL || ops == NULL) {
    gtask__set_error("gtask_broker_new: NULL argument");
    return GTASK_EINVAL;
  }
  int rc = table_check("broker", ops, ops->abi, ops->name, broker_required,
                       sizeof(broker_required) / sizeof(broker_required[0]));
  if (rc != 0)
    return rc;
  int64_t ttl = msg_ttl(ops, impl);
  if (ttl < 0) {
    gtask__set_error("gtask_broker_new: table \"%s\": msg_ttl_ms returned %lld, not >= 0",
                     ops->name, (long long)ttl);
    return GTASK_EINVAL;
  }
  gtask_broker *b = gtask__calloc(1, sizeof(*b));
  if (b == NULL)
    return GTASK_ENOMEM;
  b->msg_ttl_ms = ttl;
  b->ops = ops;
  if (ops->abi < GTASK_EXTEND_ABI) { /* an older table ends before the newer operations */
    memcpy(&b->ops_copy, ops,
           ops->abi < 2   ? offsetof(gtask_broker_ops, msg_ttl_ms)
           : ops->abi < 3 ? offsetof(gtask_broker_ops, push_unique)
           : ops->abi < 4 ? offsetof(gtask_broker_ops, worker_put)
                          : offsetof(gtask_broker_ops, cancel));
    b->ops = &b->ops_copy;
  }
  b->impl = impl;
  atomic_init(&b->refs, 1);
  *out = b;
  return 0;
}

GTASK_EXTERN int gtask_backend_new(gtask_backend **out, const gtask_backend_ops *ops,
                                   void *impl) {
  if (out != NULL)
    *out = NULL;
  if (out == NULL || ops == NULL) {
    gtask__set_error("gtask_backend_new: NULL argument");
    return GTASK_EINVAL;
  }
  int rc = table_check("backend", ops, ops->abi, ops->name, backend_required,
                       sizeof(backend_required) / sizeof(backend_required[0]));
  if (rc != 0)
    return rc;
  gtask_backend *b = gtask__calloc(1, sizeof(*b));
  if (b == NULL)
    return GTASK_ENOMEM;
  b->ops = b->table = ops;
  if (ops->abi < GTASK_EXTEND_ABI) { /* an older table ends before the newer operations */
    memcpy(&b->ops_copy, ops,
           ops->abi < 3 ? offsetof(gtask_backend_ops, claim) : offsetof(gtask_backend_ops, finals));
    b->ops = &b->ops_copy;
  }
  b->impl = impl;
  atomic_init(&b->refs, 1);
  *out = b;
  return 0;
}

GTASK_EXTERN void *gtask_backend_impl(const gtask_backend *backend, const gtask_backend_ops *ops) {
  return backend != NULL && ops != NULL && backend->table == ops ? backend->impl : NULL;
}

GTASK_EXTERN const gtask_broker_ops *gtask_broker_ops_get(const gtask_broker *broker,
                                                         void **impl) {
  if (impl != NULL)
    *impl = broker != NULL ? broker->impl : NULL;
  return broker != NULL ? broker->ops : NULL;
}

GTASK_EXTERN const gtask_backend_ops *gtask_backend_ops_get(const gtask_backend *backend,
                                                           void **impl) {
  if (impl != NULL)
    *impl = backend != NULL ? backend->impl : NULL;
  return backend != NULL ? backend->ops : NULL;
}

gtask_broker *gtask__broker_new(const gtask_broker_ops *ops, void *impl) {
  gtask_broker *b = gtask__calloc(1, sizeof(*b));
  if (b == NULL) {
    ops->destroy(impl);
    return NULL;
  }
  b->msg_ttl_ms = msg_ttl(ops, impl);
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
  b->ops = b->table = ops;
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
