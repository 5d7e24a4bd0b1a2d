/* test_conf.c -- gtask_redis_conf (src/redis/conf.c): every accepted address
 * form, every rejected one with its reason, overrides, setters, describe (never
 * the password), copies and endpoint comparison, and allocation failures. */
#include "test.h"

#include "redis/conf.h"

#include <string.h>

/* Parses url and checks the endpoint; returns the conf (caller frees). */
static gtask_redis_conf *parse(const char *url, const char *password, int db) {
  gtask_redis_conf *c = (void *)1;
  int rc = gtask_redis_conf_new(&c, url, password, db);
  if (rc != 0)
    TEST_FAIL("\"%s\": %s: %s", url ? url : "(null)", gtask_err_name(rc), gtask_last_error());
  ASSERT_NOT_NULL(c);
  return c;
}

/* rediss:// and its parameters land in the conf; the setter does the same
 * for any TCP conf, and refuses unix sockets and half a client identity. */
TEST(conf_tls) {
  gtask_redis_conf *c = parse("rediss://u:p@h:7/1?cacert=/ca%2B.pem&capath=/d&cert=/c&key=/k"
                              "&sni=name.example&insecure=1",
                              NULL, -1);
  ASSERT_TRUE(c->tls);
  ASSERT_STR_EQ(c->tls_ca, "/ca+.pem");
  ASSERT_STR_EQ(c->tls_capath, "/d");
  ASSERT_STR_EQ(c->tls_cert, "/c");
  ASSERT_STR_EQ(c->tls_key, "/k");
  ASSERT_STR_EQ(c->tls_sni, "name.example");
  ASSERT_TRUE(c->tls_insecure);
  gtask_redis_conf *d;
  ASSERT_OK(gtask__redis_conf_copy(c, &d));
  ASSERT_STR_EQ(d->tls_ca, "/ca+.pem");
  ASSERT_STR_EQ(d->tls_sni, "name.example");
  gtask_redis_conf_free(d);
  gtask_redis_conf_free(c);

  c = parse("redis://h:7/1", NULL, -1);
  ASSERT_FALSE(c->tls);
  ASSERT_ERR(gtask_redis_conf_set_tls(c, NULL, "/c", NULL), GTASK_EINVAL);
  ASSERT_FALSE(c->tls);
  ASSERT_OK(gtask_redis_conf_set_tls(c, "/ca", NULL, NULL));
  ASSERT_TRUE(c->tls);
  ASSERT_STR_EQ(c->tls_ca, "/ca");
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "rediss://h:7/1");
  ASSERT_OK(gtask_redis_conf_set_tls_insecure(c, true));
  ASSERT_TRUE(c->tls_insecure);
  gtask_redis_conf_free(c);

  c = parse("unix:/tmp/s", NULL, -1);
  ASSERT_ERR(gtask_redis_conf_set_tls(c, "/ca", NULL, NULL), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "unix");
  gtask_redis_conf_free(c);
}

TEST(conf_defaults) {
  gtask_redis_conf *c = parse(NULL, NULL, -1);
  ASSERT_STR_EQ(c->host, "127.0.0.1");
  ASSERT_EQ(c->port, 6379);
  ASSERT_NULL(c->unix_path);
  ASSERT_NULL(c->user);
  ASSERT_NULL(c->password);
  ASSERT_EQ(c->db, 0);
  ASSERT_EQ(c->pool_size, 16);
  ASSERT_EQ(c->expire_ms, 86400000);
  ASSERT_EQ(c->timeout_ms, 2000);
  ASSERT_STR_EQ(c->prefix, "gtask");
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "redis://127.0.0.1:6379/0");
  gtask_redis_conf_free(c);
  gtask_redis_conf_free(NULL);
  ASSERT_STR_EQ(gtask_redis_conf_describe(NULL), "");
}

typedef struct good_case {
  const char *url;
  const char *host; /* NULL for unix */
  int port;
  const char *unix_path;
  const char *user;
  const char *password;
  int db;
  const char *describe;
} good_case;

static const good_case good[] = {
    {"localhost:6390", "localhost", 6390, NULL, NULL, NULL, 0, "redis://localhost:6390/0"},
    {"redis-host", "redis-host", 6379, NULL, NULL, NULL, 0, "redis://redis-host:6379/0"},
    {"10.0.0.5:1", "10.0.0.5", 1, NULL, NULL, NULL, 0, "redis://10.0.0.5:1/0"},
    {"h:65535", "h", 65535, NULL, NULL, NULL, 0, "redis://h:65535/0"},
    {"redis://h:1/2", "h", 1, NULL, NULL, NULL, 2, "redis://h:1/2"},
    {"redis://h", "h", 6379, NULL, NULL, NULL, 0, "redis://h:6379/0"},
    {"redis://h/", "h", 6379, NULL, NULL, NULL, 0, "redis://h:6379/0"},
    {"redis://h:7/100000", "h", 7, NULL, NULL, NULL, 100000, "redis://h:7/100000"},
    {"REDIS://H:7", "H", 7, NULL, NULL, NULL, 0, "redis://H:7/0"},
    {"redis://:secret@h:1/2", "h", 1, NULL, NULL, "secret", 2, "redis://h:1/2"},
    {"redis://alice:secret@h", "h", 6379, NULL, "alice", "secret", 0, "redis://h:6379/0"},
    {"rediss://alice:secret@h:7/3", "h", 7, NULL, "alice", "secret", 3, "rediss://h:7/3"},
    {"rediss://h?cacert=/a%20b.pem", "h", 6379, NULL, NULL, NULL, 0, "rediss://h:6379/0"},
    {"redis://secret@h:5", "h", 5, NULL, NULL, "secret", 0, "redis://h:5/0"},
    {"redis://:p%40ss%2F%3a@h:1", "h", 1, NULL, NULL, "p@ss/:", 0, "redis://h:1/0"},
    {"redis://:p@ss@h:1", "h", 1, NULL, NULL, "p@ss", 0, "redis://h:1/0"},
    {"redis://@h:1", "h", 1, NULL, NULL, NULL, 0, "redis://h:1/0"},
    {"[::1]:6390", "::1", 6390, NULL, NULL, NULL, 0, "redis://[::1]:6390/0"},
    {"[::1]", "::1", 6379, NULL, NULL, NULL, 0, "redis://[::1]:6379/0"},
    {"redis://[::1]:6390/0", "::1", 6390, NULL, NULL, NULL, 0, "redis://[::1]:6390/0"},
    {"redis://:pw@[fe80::1%eth0]:6390/3", "fe80::1%eth0", 6390, NULL, NULL, "pw", 3,
     "redis://[fe80::1%eth0]:6390/3"},
    {"unix:/tmp/r.sock", NULL, 0, "/tmp/r.sock", NULL, NULL, 0, "unix:/tmp/r.sock?db=0"},
    {"unix:/tmp/r.sock?db=3", NULL, 0, "/tmp/r.sock", NULL, NULL, 3, "unix:/tmp/r.sock?db=3"},
    {"unix:///tmp/r.sock", NULL, 0, "/tmp/r.sock", NULL, NULL, 0, "unix:/tmp/r.sock?db=0"},
    {"unix:///tmp/r.sock?db=12", NULL, 0, "/tmp/r.sock", NULL, NULL, 12,
     "unix:/tmp/r.sock?db=12"},
    {"unix:relative.sock", NULL, 0, "relative.sock", NULL, NULL, 0, "unix:relative.sock?db=0"},
};

TEST(conf_accepts_every_form) {
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    const good_case *g = &good[i];
    gtask_redis_conf *c = parse(g->url, NULL, -1);
    TEST_LOG("case %s", g->url);
    ASSERT_STR_EQ(c->host, g->host);
    ASSERT_EQ(c->port, g->port);
    ASSERT_STR_EQ(c->unix_path, g->unix_path);
    ASSERT_STR_EQ(c->user, g->user);
    ASSERT_STR_EQ(c->password, g->password);
    ASSERT_EQ(c->db, g->db);
    ASSERT_STR_EQ(gtask_redis_conf_describe(c), g->describe);
    gtask_redis_conf_free(c);
  }
}

TEST(conf_overrides) {
  /* The password argument overrides the URL's; the db argument fills in a db
   * the URL does not name, and must agree with one it names. */
  gtask_redis_conf *c = parse("redis://:urlpw@h:1", "argpw", 5);
  ASSERT_STR_EQ(c->password, "argpw");
  ASSERT_EQ(c->db, 5);
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "redis://h:1/5");
  gtask_redis_conf_free(c);
  c = parse("redis://:urlpw@h:1/2", "", -1); /* empty password and -1 keep the URL's */
  ASSERT_STR_EQ(c->password, "urlpw");
  ASSERT_EQ(c->db, 2);
  gtask_redis_conf_free(c);
  c = parse("redis://:urlpw@h:1/2", "argpw", 2); /* the URL's db again: no conflict */
  ASSERT_STR_EQ(c->password, "argpw");
  ASSERT_EQ(c->db, 2);
  gtask_redis_conf_free(c);
  c = parse("unix:/s?db=4", "pw", 4);
  ASSERT_STR_EQ(c->password, "pw");
  ASSERT_EQ(c->db, 4);
  gtask_redis_conf_free(c);
  c = parse("unix:/s", NULL, 7);
  ASSERT_EQ(c->db, 7);
  gtask_redis_conf_free(c);
  c = parse("h:1", NULL, 3); /* g_task's NewRedisConf("host:port", pw, db) */
  ASSERT_EQ(c->db, 3);
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "redis://h:1/3");
  gtask_redis_conf_free(c);
  c = parse("redis://h:1/", NULL, 3); /* an empty /db names none */
  ASSERT_EQ(c->db, 3);
  gtask_redis_conf_free(c);
  c = parse("redis://h:1", NULL, -1); /* neither: db 0 */
  ASSERT_EQ(c->db, 0);
  gtask_redis_conf_free(c);
  c = parse("redis-sentinel://s1:26379/mymaster", NULL, 6);
  ASSERT_EQ(c->db, 6);
  gtask_redis_conf_free(c);
  c = parse("redis-sentinel://s1:26379/mymaster/6", NULL, 6);
  ASSERT_EQ(c->db, 6);
  gtask_redis_conf_free(c);

  gtask_redis_conf *bad = (void *)1;
  ASSERT_ERR(gtask_redis_conf_new(&bad, "h:1", NULL, -2), GTASK_EINVAL);
  ASSERT_NULL(bad);
  ASSERT_STR_CONTAINS(gtask_last_error(), "invalid redis db -2");
  ASSERT_ERR(gtask_redis_conf_new(&bad, "h:1", NULL, 100001), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_new(NULL, "h:1", NULL, 0), GTASK_EINVAL);
}

/* A db argument that contradicts the URL's db is an error that names both
 * (issue 21: it used to win silently), for every URL form that carries a db,
 * and the message never shows the password. */
TEST(conf_db_conflict) {
  static const struct {
    const char *url;
    int db;
    const char *reason;
  } cases[] = {
      {"redis://:urlpw@h:1/2", 5, "it names db 2 but the db argument is 5"},
      {"redis://h:1/0", 1, "it names db 0 but the db argument is 1"},
      {"rediss://h:1/2?insecure=1", 0, "it names db 2 but the db argument is 0"},
      {"unix:/s?db=4", 0, "it names db 4 but the db argument is 0"},
      {"unix:///s?db=4", 9, "it names db 4 but the db argument is 9"},
      {"redis-sentinel://u:pw@s1:26379,s2/mymaster/3", 1, "it names db 3 but the db argument is 1"},
      {"rediss-sentinel://s1:26379/mymaster/3", 0, "it names db 3 but the db argument is 0"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    gtask_redis_conf *c = (void *)1;
    int rc = gtask_redis_conf_new(&c, cases[i].url, "argpw", cases[i].db);
    if (rc != GTASK_EINVAL)
      TEST_FAIL("\"%s\" with db %d: %s, expected EINVAL", cases[i].url, cases[i].db,
                gtask_err_name(rc));
    ASSERT_NULL(c);
    ASSERT_STR_CONTAINS(gtask_last_error(), cases[i].reason);
    ASSERT_STR_CONTAINS(gtask_last_error(), "pass -1 to use the URL's");
    ASSERT_TRUE(strstr(gtask_last_error(), "urlpw") == NULL);
    ASSERT_TRUE(strstr(gtask_last_error(), "argpw") == NULL);
    /* -1 and the URL's own db are both fine. */
    c = parse(cases[i].url, NULL, -1);
    gtask_redis_conf_free(c);
  }
}

typedef struct bad_case {
  const char *url;
  const char *reason;
} bad_case;

static const bad_case bad[] = {
    {"", "empty"},
    {"h:0", "port 0"},
    {"h:65536", "invalid port \"65536\""},
    {"h:abc", "invalid port \"abc\""},
    {"h:", "invalid port \"\""},
    {"h:-1", "invalid port"},
    {"h:+1", "invalid port"},
    {"h:1 ", "invalid port"},
    {":6379", "empty host"},
    {"h 1", "invalid character ' ' in host"},
    {"h/1", "invalid character '/' in host"},
    {"::1:6379", "must be written in brackets"},
    {"[::1", "missing ']'"},
    {"[::1]x", "unexpected characters after ']'"},
    {"[::1]:", "invalid port"},
    {"[]:1", "empty host"},
    {"[abc]:1", "not an IPv6 address"},
    {"[::1 ]:1", "invalid character in IPv6"},
    {"redis://", "empty host"},
    {"redis://:1", "empty host"},
    {"redis://h:1/x", "invalid db \"x\""},
    {"redis://h:1/100001", "invalid db \"100001\""},
    {"redis://h:1/-1", "invalid db"},
    {"redis://h:1/1/2", "invalid db \"1/2\""},
    {"redis://h:1/ 1", "invalid db"},
    {"redis://h:1?db=2", "redis:// takes no parameters"},
    {"redis://h:99999", "invalid port"},
    {"redis://:p%zz@h", "bad percent escape in password"},
    {"redis://:p%4@h", "bad percent escape in password"},
    {"redis://u%00:p@h", "bad percent escape in user name"},
    {"redis://u:p@", "empty host"},
    {"http://h:1", "unknown scheme"},
    {"rediss://h:1?bogus=1", "unknown parameter \"bogus\""},
    {"rediss://h:1?cert=/c.pem", "cert and key go together"},
    {"rediss://h:1?cacert=", "parameter cacert is empty"},
    {"rediss://h:1?insecure=maybe", "insecure must be 1 or 0"},
    {"rediss://h:1?cacert", "has no value"},
    {"rediss://h:x?cacert=/a", "invalid port"},
    {"unix:", "empty socket path"},
    {"unix:?db=1", "empty socket path"},
    {"unix://host/path", "absolute path"},
    {"unix:/p?x=1", "unknown parameter"},
    {"unix:/p?db=x", "invalid db \"x\""},
    {"unix:/p?db=", "invalid db"},
    {"unix:/p?db=1&x=2", "invalid db"},
};

TEST(conf_rejects_with_reason) {
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    gtask_redis_conf *c = (void *)1;
    int rc = gtask_redis_conf_new(&c, bad[i].url, NULL, -1);
    if (rc != GTASK_EINVAL)
      TEST_FAIL("\"%s\": got %s, want EINVAL", bad[i].url, gtask_err_name(rc));
    ASSERT_NULL(c);
    const char *e = gtask_last_error();
    if (strncmp(e, "invalid redis url \"", 19) != 0 || strstr(e, bad[i].reason) == NULL)
      TEST_FAIL("\"%s\": error \"%s\" lacks \"%s\"", bad[i].url, e, bad[i].reason);
  }
}

TEST(conf_rejects_long_names) {
  char url[400];
  memset(url, 'h', 256);
  url[256] = '\0';
  gtask_redis_conf *c;
  ASSERT_ERR(gtask_redis_conf_new(&c, url, NULL, -1), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "longer than 255");
  url[255] = '\0'; /* 255 is fine, and describe still fits */
  c = parse(url, NULL, 100000);
  ASSERT_EQ(strlen(gtask_redis_conf_describe(c)), strlen("redis://:6379/100000") + 255);
  gtask_redis_conf_free(c);

  memcpy(url, "unix:/", 6);
  memset(url + 6, 'p', 107);
  url[6 + 107] = '\0';
  ASSERT_ERR(gtask_redis_conf_new(&c, url, NULL, -1), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "socket path longer than 107");
  url[5 + 107] = '\0';
  c = parse(url, NULL, -1);
  gtask_redis_conf_free(c);
}

TEST(conf_errors_hide_password) {
  gtask_redis_conf *c;
  ASSERT_ERR(gtask_redis_conf_new(&c, "redis://alice:s3cret@h:0", NULL, -1), GTASK_EINVAL);
  const char *e = gtask_last_error();
  ASSERT_TRUE(strstr(e, "s3cret") == NULL);
  ASSERT_TRUE(strstr(e, "alice") == NULL);
  ASSERT_STR_CONTAINS(e, "\"redis://***@h:0\"");
  ASSERT_ERR(gtask_redis_conf_new(&c, "s3cret@h", NULL, -1), GTASK_EINVAL);
  ASSERT_TRUE(strstr(gtask_last_error(), "s3cret") == NULL);
}

TEST(conf_describe_never_shows_password) {
  gtask_redis_conf *c = parse("redis://bob:hunter2@db.example:6380/1", "override", -1);
  ASSERT_STR_EQ(gtask_redis_conf_describe(c), "redis://db.example:6380/1");
  ASSERT_STR_EQ(c->user, "bob");
  ASSERT_STR_EQ(c->password, "override");
  gtask_redis_conf_free(c);
}

TEST(conf_setters) {
  gtask_redis_conf *c = parse("h:1", NULL, -1);
  ASSERT_ERR(gtask_redis_conf_set_pool_size(c, 0), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "pool size");
  ASSERT_OK(gtask_redis_conf_set_pool_size(c, 1));
  ASSERT_EQ(c->pool_size, 1);
  ASSERT_ERR(gtask_redis_conf_set_expire_time(c, 999), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_last_error(), "expire time");
  ASSERT_OK(gtask_redis_conf_set_expire_time(c, 1000));
  ASSERT_EQ(c->expire_ms, 1000);
  ASSERT_ERR(gtask_redis_conf_set_timeout(c, 0), GTASK_EINVAL);
  ASSERT_OK(gtask_redis_conf_set_timeout(c, 1));
  ASSERT_EQ(c->timeout_ms, 1);
  ASSERT_ERR(gtask_redis_conf_set_prefix(c, ""), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_set_prefix(c, "a b"), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_set_prefix(c, "{x}"), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_set_prefix(c, NULL), GTASK_EINVAL);
  ASSERT_STR_EQ(c->prefix, "gtask");
  ASSERT_OK(gtask_redis_conf_set_prefix(c, "my-app:v1.2_x"));
  ASSERT_STR_EQ(c->prefix, "my-app:v1.2_x");
  gtask_redis_conf_free(c);
  ASSERT_ERR(gtask_redis_conf_set_pool_size(NULL, 4), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_set_expire_time(NULL, 4000), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_set_timeout(NULL, 4), GTASK_EINVAL);
  ASSERT_ERR(gtask_redis_conf_set_prefix(NULL, "x"), GTASK_EINVAL);
}

TEST(conf_copy_and_same_db) {
  gtask_redis_conf *a = parse("redis://u:p@LocalHost:6390/2", NULL, -1);
  ASSERT_OK(gtask_redis_conf_set_prefix(a, "pfx"));
  gtask_redis_conf *b;
  ASSERT_OK(gtask__redis_conf_copy(a, &b));
  ASSERT_PTR_NE(a->host, b->host);
  ASSERT_PTR_NE(a->password, b->password);
  ASSERT_STR_EQ(b->host, "LocalHost");
  ASSERT_STR_EQ(b->user, "u");
  ASSERT_STR_EQ(b->password, "p");
  ASSERT_STR_EQ(b->prefix, "pfx");
  ASSERT_STR_EQ(gtask_redis_conf_describe(b), gtask_redis_conf_describe(a));
  ASSERT_TRUE(gtask__redis_conf_same_db(a, b));

  gtask_redis_conf *c = parse("localhost:6390", NULL, 2);
  ASSERT_TRUE(gtask__redis_conf_same_db(a, c)); /* host names compare without case */
  gtask_redis_conf *d = parse("localhost:6390", NULL, 3);
  ASSERT_FALSE(gtask__redis_conf_same_db(a, d));
  gtask_redis_conf *e = parse("localhost:6391", NULL, 2);
  ASSERT_FALSE(gtask__redis_conf_same_db(a, e));
  gtask_redis_conf *u1 = parse("unix:/tmp/s?db=2", NULL, -1);
  gtask_redis_conf *u2 = parse("unix:///tmp/s", NULL, 2);
  gtask_redis_conf *u3 = parse("unix:/tmp/t", NULL, 2);
  ASSERT_TRUE(gtask__redis_conf_same_db(u1, u2));
  ASSERT_FALSE(gtask__redis_conf_same_db(u1, u3));
  ASSERT_FALSE(gtask__redis_conf_same_db(u1, c));
  ASSERT_FALSE(gtask__redis_conf_same_db(c, u1));
  ASSERT_FALSE(gtask__redis_conf_same_db(NULL, c));

  gtask_redis_conf *uc;
  ASSERT_OK(gtask__redis_conf_copy(u1, &uc));
  ASSERT_NULL(uc->host);
  ASSERT_STR_EQ(uc->unix_path, "/tmp/s");
  ASSERT_TRUE(gtask__redis_conf_same_db(uc, u1));

  gtask_redis_conf *list[] = {a, b, c, d, e, u1, u2, u3, uc};
  for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)
    gtask_redis_conf_free(list[i]);
}

TEST(conf_alloc_failures) {
  const char *urls[] = {"redis://u:p%40@h:1/2", "unix:/tmp/x?db=1", "[::1]:5", NULL};
  for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
    long n;
    for (n = 1; n < 1000; n++) {
      gtask__alloc_fail_at(n);
      gtask_redis_conf *c = (void *)1;
      int rc = gtask_redis_conf_new(&c, urls[i], "override", -1);
      long made = gtask__alloc_fail_at(0);
      if (made >= n)
        ASSERT_ERR(rc, GTASK_ENOMEM); /* a failure is never swallowed */
      if (rc == 0) {
        gtask_redis_conf *copy = NULL;
        gtask__alloc_fail_at(n);
        int rc2 = gtask__redis_conf_copy(c, &copy);
        gtask__alloc_fail_at(0);
        if (rc2 == 0)
          gtask_redis_conf_free(copy);
        else
          ASSERT_ERR(rc2, GTASK_ENOMEM);
        gtask_redis_conf_free(c);
      } else {
        ASSERT_ERR(rc, GTASK_ENOMEM);
        ASSERT_NULL(c);
      }
      if (made < n)
        break;
    }
    ASSERT_LT(n, 1000);
  }
}
