/* redis/reply.c -- checks of what gtask's scripts reply, shared by the Redis
 * broker and backend.
 *
 * A reply that is not of the shape its script returns is GTASK_EPROTO, and
 * every such error carries a message naming the script and what came back.
 * Issue 14: reclaim.lua put a nil in its reply table when the fence key held
 * garbage, Redis cut the reply short at the nil, and the broker failed with
 * GTASK_EPROTO and no message at all.  A caller that read a short reply as
 * "fenced" or "lost" for the missing items would also act on outcomes the
 * script never gave. */
#include "internal.h"

#include <stdio.h>

/* "an integer", "nil", "an array of 3 elements", ... for an error message. */
static void reply_what(const redisReply *rep, char *buf, size_t size) {
  switch (rep->type) {
  case REDIS_REPLY_ARRAY:
    gtask__fmt(buf, size, "an array of %zu elements", rep->elements);
    break;
  case REDIS_REPLY_INTEGER:
    gtask__fmt(buf, size, "the integer %lld", rep->integer);
    break;
  case REDIS_REPLY_NIL:
    gtask__fmt(buf, size, "nil");
    break;
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_ERROR:
    gtask__fmt(buf, size, "%s \"%.60s\"", rep->type == REDIS_REPLY_STRING ? "the string"
                                          : rep->type == REDIS_REPLY_STATUS ? "the status"
                                                                             : "the error",
               rep->str);
    break;
  default:
    gtask__fmt(buf, size, "a reply of type %d", rep->type);
  }
}

int gtask__redis_proto_error(const gtask__redis *r, const char *script, const redisReply *rep,
                             const char *want) {
  char what[128];
  reply_what(rep, what, sizeof(what));
  gtask__set_error("redis %s: %s replied %s, not %s", r->conf->describe, script, what, want);
  return GTASK_EPROTO;
}

int gtask__redis_int_array(const gtask__redis *r, const char *script, const redisReply *rep,
                           size_t n) {
  char want[64];
  gtask__fmt(want, sizeof(want), "an array of %zu integers", n);
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n)
    return gtask__redis_proto_error(r, script, rep, want);
  for (size_t k = 0; k < n; k++)
    if (rep->element[k]->type != REDIS_REPLY_INTEGER) {
      char what[128];
      reply_what(rep->element[k], what, sizeof(what));
      gtask__set_error("redis %s: %s replied an array whose element %zu is %s, not %s",
                       r->conf->describe, script, k + 1, what, want);
      return GTASK_EPROTO;
    }
  return 0;
}
