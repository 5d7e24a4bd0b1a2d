/* test_cluster_slot.c -- the key slots of Redis Cluster (src/redis/cluster.c,
 * issue 17): CRC16/XMODEM and the hash tag rule, against the slots a real
 * Redis 7.0.15 computed (`redis-cli CLUSTER KEYSLOT KEY` on a cluster-enabled
 * server, recorded below), and the one-slot rule for gtask's own keys. */
#include "test.h"

#include "redis/internal.h"

#include <stdio.h>
#include <string.h>

TEST(crc16_check_value) {
  /* The XMODEM check value (the cluster spec's reference implementation). */
  ASSERT_EQ(gtask__crc16("123456789", 9), 0x31C3);
  ASSERT_EQ(gtask__crc16("", 0), 0);
}

TEST(key_slot_matches_redis) {
  static const struct {
    const char *key;
    unsigned slot;
  } known[] = {
      /* recorded from redis-cli CLUSTER KEYSLOT (Redis 7.0.15) */
      {"123456789", 12739},
      {"foo", 12182},
      {"{user1000}.following", 3443},
      {"gtask:{default}:stream", 5718},
      {"gtask:{q1}:t:abc", 7450},
      {"a{}b", 13694},  /* empty tag: the whole key */
      {"{}", 15257},
      {"x{a}y{b}", 15495}, /* the first tag only */
      {"{a", 10276},       /* no closing brace: the whole key */
      {"a}{b}", 3300},     /* a '}' before the first '{' does not count */
      {"", 0},
      {"gtask:{emails}:n:0a6f1c1e-8d7b-4a0e-9a3e-2f5b1c9d7e11", 3728},
  };
  for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
    unsigned got = gtask__key_slot(known[k].key, strlen(known[k].key));
    if (got != known[k].slot) TEST_FAIL("slot of \"%s\": %u, Redis says %u", known[k].key, got, known[k].slot);
  }
}

/* Every key gtask makes for a queue carries the queue as its hash tag: all in
 * the slot of the queue's stream (docs/PROTOCOL.md, "Redis Cluster"), also
 * the per-task keys t:ID and n:ID and with a prefix of its own. */
TEST(every_key_of_a_queue_shares_its_slot) {
  static const char *const suffixes[] = {"stream", "sched", "dead", "stats", "pending", "fence", "workers"};
  static const char *const queues[] = {"default", "emails", "q-1.high", "a:b:c", "x"};
  static const char *const prefixes[] = {"gtask", "app:prod", "p.q-r"};
  gtask_redis_conf *cf;
  ASSERT_OK(gtask_redis_conf_new(&cf, "127.0.0.1:6379", NULL, -1));
  for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
    ASSERT_OK(gtask_redis_conf_set_prefix(cf, prefixes[p]));
    gtask__redis r;
    memset(&r, 0, sizeof(r));
    r.conf = cf;
    for (size_t q = 0; q < sizeof(queues) / sizeof(queues[0]); q++) {
      char key[GTASK__KEY_MAX];
      size_t len = gtask__redis_key(&r, key, sizeof(key), queues[q], "stream", NULL);
      unsigned want = gtask__key_slot(queues[q], strlen(queues[q]));
      ASSERT_EQ(gtask__key_slot(key, len), want);
      for (size_t s = 0; s < sizeof(suffixes) / sizeof(suffixes[0]); s++) {
        len = gtask__redis_key(&r, key, sizeof(key), queues[q], suffixes[s], NULL);
        ASSERT_EQ(gtask__key_slot(key, len), want);
      }
      len = gtask__redis_key(&r, key, sizeof(key), queues[q], "t", "0a6f1c1e-8d7b-4a0e-9a3e-2f5b1c9d7e11");
      ASSERT_EQ(gtask__key_slot(key, len), want);
      len = gtask__redis_key(&r, key, sizeof(key), queues[q], "n", "0a6f1c1e-8d7b-4a0e-9a3e-2f5b1c9d7e11");
      ASSERT_EQ(gtask__key_slot(key, len), want);
    }
  }
  gtask_redis_conf_free(cf);
}

/* Queue names cannot hold '{' or '}' (gtask__queue_valid), so no name can end
 * the hash tag early or start a second one. */
TEST(queue_names_cannot_break_the_hash_tag) {
  ASSERT_FALSE(gtask__queue_valid("a}b"));
  ASSERT_FALSE(gtask__queue_valid("{a}"));
  ASSERT_TRUE(gtask__queue_valid("a.b-c_d:e"));
}

TEST(cluster_url_parses_nodes_and_refuses_other_dbs) {
  gtask_redis_conf *c;
  ASSERT_OK(gtask_redis_conf_new(&c, "redis-cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001,node3", NULL, -1));
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "redis-cluster://10.0.0.1:7000,10.0.0.2:7001,node3:6379");
  ASSERT_TRUE(c->cluster);
  ASSERT_EQ(c->nseeds, 3);
  ASSERT_STR_EQ(c->user, "u");
  ASSERT_STR_EQ(c->password, "p@ss");
  ASSERT_EQ(c->db, 0);
  gtask_redis_conf *d;
  ASSERT_OK(gtask__redis_conf_copy(c, &d));
  ASSERT_TRUE(gtask__redis_conf_same_db(c, d));
  ASSERT_STR_EQ(d->seed_host[2], "node3");
  gtask_redis_conf_free(d);
  gtask_redis_conf_free(c);

  ASSERT_OK(gtask_redis_conf_new(&c, "rediss-cluster://[::1]:7000/0?cacert=/ca.pem&sni=redis.example", NULL, 0));
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "rediss-cluster://[::1]:7000");
  ASSERT_TRUE(c->tls);
  ASSERT_STR_EQ(c->tls_ca, "/ca.pem");
  gtask_redis_conf_free(c);

  ASSERT_ERR(gtask_redis_conf_new(&c, "redis-cluster://h:7000/1", NULL, -1), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "db 0 only");
  ASSERT_ERR(gtask_redis_conf_new(&c, "redis-cluster://h:7000", NULL, 2), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_new(&c, "redis-cluster://", NULL, -1), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_new(&c, "redis-cluster://h:7000?cacert=x", NULL, -1), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_new(&c, "redis-cluster://h:70000", NULL, -1), GTASK_EINVAL);

  /* The setter: host:port becomes the one seed. */
  ASSERT_OK(gtask_redis_conf_new(&c, "127.0.0.1:7005", NULL, -1));
  ASSERT_OK(gtask_redis_conf_set_cluster(c, true));
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "redis-cluster://127.0.0.1:7005");
  ASSERT_OK(gtask_redis_conf_set_cluster(c, false));
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "redis://127.0.0.1:7005/0");
  gtask_redis_conf_free(c);
  ASSERT_OK(gtask_redis_conf_new(&c, "redis://127.0.0.1:7005/3", NULL, -1));
  ASSERT_ERR(gtask_redis_conf_set_cluster(c, true), GTASK_EINVAL);
  gtask_redis_conf_free(c);
  ASSERT_OK(gtask_redis_conf_new(&c, "unix:/tmp/x.sock", NULL, -1));
  ASSERT_ERR(gtask_redis_conf_set_cluster(c, true), GTASK_EINVAL);
  gtask_redis_conf_free(c);
}
