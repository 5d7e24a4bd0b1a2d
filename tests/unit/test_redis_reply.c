/* test_redis_reply.c -- the checks of script replies (src/redis/reply.c): a
 * reply that is not of its script's shape is GTASK_EPROTO, always with a
 * message that names the script and what came back (issue 14: a nil in
 * reclaim.lua's reply cut it short, and the broker failed with EPROTO and no
 * message). */
#include "test.h"

#include "redis/internal.h"

#include <stdio.h>
#include <string.h>

static redisReply integer(long long v) {
  redisReply r;
  memset(&r, 0, sizeof(r));
  r.type = REDIS_REPLY_INTEGER;
  r.integer = v;
  return r;
}

static redisReply array(redisReply **elements, size_t n) {
  redisReply r;
  memset(&r, 0, sizeof(r));
  r.type = REDIS_REPLY_ARRAY;
  r.element = elements;
  r.elements = n;
  return r;
}

TEST(int_array_reply) {
  gtask_redis_conf conf;
  memset(&conf, 0, sizeof(conf));
  snprintf(conf.describe, sizeof(conf.describe), "redis://127.0.0.1:1/0");
  gtask__redis r;
  memset(&r, 0, sizeof(r));
  r.conf = &conf;

  redisReply one = integer(1), two = integer(2), nil, str;
  memset(&nil, 0, sizeof(nil));
  nil.type = REDIS_REPLY_NIL;
  memset(&str, 0, sizeof(str));
  str.type = REDIS_REPLY_STRING;
  str.str = (char *)"0-0";
  str.len = 3;
  redisReply *good[2] = {&one, &two}, *holed[2] = {&one, &nil}, *mixed[3] = {&str, &one, &two};
  redisReply a2 = array(good, 2), h2 = array(holed, 2), m3 = array(mixed, 3);

  ASSERT_OK(gtask__redis_int_array(&r, "finish.lua", &a2, 2));
  ASSERT_ERR(gtask__redis_int_array(&r, "finish.lua", &a2, 0), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(gtask_last_error(), "finish.lua replied an array of 2 elements, not an array of 0");

  gtask__set_error("%s", "");
  ASSERT_ERR(gtask__redis_int_array(&r, "extend.lua", &a2, 3), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(gtask_last_error(), "redis://127.0.0.1:1/0: extend.lua replied an array of 2");
  gtask__set_error("%s", "");
  ASSERT_ERR(gtask__redis_int_array(&r, "store.lua", &h2, 2), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(gtask_last_error(), "store.lua replied an array whose element 2 is nil");
  gtask__set_error("%s", "");
  ASSERT_ERR(gtask__redis_int_array(&r, "promote.lua", &one, 2), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(gtask_last_error(), "promote.lua replied the integer 1, not an array of 2");
  gtask__set_error("%s", "");
  ASSERT_ERR(gtask__redis_proto_error(&r, "reclaim.lua", &m3, "[cursor, entries, fence]"), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(gtask_last_error(),
                      "reclaim.lua replied an array of 3 elements, not [cursor, entries, fence]");
  gtask__set_error("%s", "");
  ASSERT_ERR(gtask__redis_int_array(&r, "dead_requeue.lua", &str, 1), GTASK_EPROTO);
  ASSERT_STR_CONTAINS(gtask_last_error(), "the string \"0-0\"");
}
