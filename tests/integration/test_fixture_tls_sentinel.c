/* test_fixture_tls_sentinel.c -- the harness of issue 16 checks itself: the
 * certificates verify (or not) as their names say, a TLS redis-server answers
 * only the clients it should, and a Sentinel set reports its master, fails over
 * on request and after a kill -9 of the master.
 *
 * Two independent clients judge the TLS servers: the harness's own (gt_tls, on
 * OpenSSL) and redis-cli --tls (hiredis's TLS), so that a bug in one cannot
 * make the fixture look right.  The library is not involved. */
#include "proc.h"
#include "redis_fixture.h"
#include "sentinel_fixture.h"
#include "test.h"
#include "tls_fixture.h"

#include <stdio.h>

static const gt_certs *certs_or_skip(void) {
  const char *why = gt_certs_missing_tool();
  if (why != NULL)
    SKIP("%s", why);
  int64_t t0 = test_now_ms();
  const gt_certs *c = gt_certs_make();
  ASSERT_NOT_NULL(c);
  TEST_LOG("certificates made in %lld ms", (long long)(test_now_ms() - t0));
  return c;
}

/* `openssl verify -CAfile ca [opt val] cert`: its exit status, output in out. */
static int verify(const char *ca, const char *opt, const char *val, const char *cert,
                  char *out, size_t size) {
  const char *with[] = {"openssl", "verify", "-CAfile", ca, opt, val, cert, NULL};
  const char *without[] = {"openssl", "verify", "-CAfile", ca, cert, NULL};
  return gt_run(opt != NULL ? with : without, out, size);
}

/* `redis-cli --tls --cacert ca [--cert cert --key key] -p port PING`. */
static int cli_ping(int port, const char *ca, const char *cert, const char *key, char *out,
                    size_t size) {
  char p[16];
  snprintf(p, sizeof(p), "%d", port);
  const char *with[] = {"redis-cli", "--tls", "--cacert", ca, "--cert", cert, "--key", key,
                        "-h", "127.0.0.1", "-p", p, "PING", NULL};
  const char *without[] = {"redis-cli", "--tls", "--cacert", ca, "-h", "127.0.0.1",
                           "-p", p, "PING", NULL};
  return gt_run(cert != NULL ? with : without, out, size);
}

/* ---------------------------------------------------------------- certificates */

TEST(certs_verify_as_named) {
  const gt_certs *c = certs_or_skip();
  ASSERT_PTR_EQ(gt_certs_make(), c); /* made once per process */
  char out[4096];

  ASSERT_EQ(verify(c->ca, NULL, NULL, c->server_cert, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, ": OK");
  ASSERT_EQ(verify(c->ca, "-verify_ip", "127.0.0.1", c->server_cert, out, sizeof(out)), 0);
  ASSERT_EQ(verify(c->ca, "-verify_hostname", "localhost", c->server_cert, out, sizeof(out)),
            0);
  ASSERT_EQ(verify(c->ca, "-purpose", "sslclient", c->client_cert, out, sizeof(out)), 0);
  ASSERT_EQ(verify(c->other_ca, NULL, NULL, c->other_server_cert, out, sizeof(out)), 0);
  ASSERT_EQ(verify(c->other_ca, NULL, NULL, c->other_client_cert, out, sizeof(out)), 0);

  /* Signed by a CA the client does not trust. */
  ASSERT_NE(verify(c->ca, NULL, NULL, c->other_server_cert, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "unable to get local issuer certificate");
  ASSERT_NE(verify(c->ca, NULL, NULL, c->other_client_cert, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "unable to get local issuer certificate");
  /* Right CA, right name, but its validity ended in 2020. */
  ASSERT_NE(verify(c->ca, "-verify_ip", "127.0.0.1", c->expired_cert, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "certificate has expired");
  /* Right CA, valid, but for another name only. */
  ASSERT_EQ(verify(c->ca, NULL, NULL, c->wrong_name_cert, out, sizeof(out)), 0);
  ASSERT_NE(verify(c->ca, "-verify_ip", "127.0.0.1", c->wrong_name_cert, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "IP address mismatch");
  ASSERT_NE(verify(c->ca, "-verify_hostname", "localhost", c->wrong_name_cert, out,
                   sizeof(out)),
            0);
  ASSERT_STR_CONTAINS(out, "hostname mismatch");
}

/* ---------------------------------------------------------------- TLS servers */

TEST(tls_server_requires_client_cert) {
  const gt_certs *c = certs_or_skip();
  int64_t t0 = test_now_ms();
  gt_redis *r = gt_redis_start_tls(c, NULL, NULL, "yes", NULL);
  ASSERT_NOT_NULL(r);
  TEST_LOG("TLS redis-server ready in %lld ms", (long long)(test_now_ms() - t0));
  int port = gt_redis_tls_port(r);
  ASSERT_GT(port, 0);
  ASSERT_EQ(gt_redis_port(r), 0); /* no plain TCP */
  ASSERT_NULL(gt_redis_url(r));
  char want[64];
  snprintf(want, sizeof(want), "rediss://127.0.0.1:%d/0", port);
  ASSERT_STR_EQ(gt_redis_tls_url(r), want);

  char out[4096], err[256];
  ASSERT_EQ(cli_ping(port, c->ca, c->client_cert, c->client_key, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "PONG");
  gt_tls_opts good = {.ca = c->ca, .cert = c->client_cert, .key = c->client_key};
  if (gt_tls_ping(port, &good, err, sizeof(err)) != 0)
    TEST_FAIL("TLS PING with the right CA and client certificate: %s", err);
  gt_tls_opts by_name = good;
  by_name.host = "localhost";
  if (gt_tls_ping(port, &by_name, err, sizeof(err)) != 0)
    TEST_FAIL("TLS PING checking the name localhost: %s", err);

  /* No client certificate: refused (after the handshake, with TLS 1.3). */
  cli_ping(port, c->ca, NULL, NULL, out, sizeof(out));
  if (strstr(out, "PONG") != NULL)
    TEST_FAIL("redis-cli without a client certificate got: %s", out);
  gt_tls_opts nocert = {.ca = c->ca};
  ASSERT_NE(gt_tls_ping(port, &nocert, err, sizeof(err)), 0);
  TEST_LOG("without a client certificate: %s", err);
  /* A client certificate from a CA the server does not trust: refused. */
  cli_ping(port, c->ca, c->other_client_cert, c->other_client_key, out, sizeof(out));
  if (strstr(out, "PONG") != NULL)
    TEST_FAIL("redis-cli with an untrusted client certificate got: %s", out);
  gt_tls_opts other = {.ca = c->ca, .cert = c->other_client_cert, .key = c->other_client_key};
  ASSERT_NE(gt_tls_ping(port, &other, err, sizeof(err)), 0);
  TEST_LOG("with an untrusted client certificate: %s", err);

  /* The harness still reaches it in plain text, over the unix socket. */
  redisContext *k = gt_redis_connect(r);
  ASSERT_NOT_NULL(k);
  redisReply *rep = redisCommand(k, "SET %s %s", "k", "v");
  ASSERT_NOT_NULL(rep);
  freeReplyObject(rep);
  redisFree(k);
  gt_tls *t = gt_tls_connect(port, &good, err, sizeof(err));
  if (t == NULL)
    TEST_FAIL("gt_tls_connect: %s", err);
  rep = gt_tls_command(t, "GET %s", "k");
  ASSERT_NOT_NULL(rep);
  ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
  ASSERT_STR_EQ(rep->str, "v");
  freeReplyObject(rep);
  gt_tls_close(t);

  /* A restart keeps the TLS port and is ready over TLS again. */
  ASSERT_EQ(gt_redis_restart(r), 0);
  ASSERT_EQ(gt_redis_tls_port(r), port);
  ASSERT_EQ(gt_tls_ping(port, &good, err, sizeof(err)), 0);
  gt_redis_stop(r);
}

TEST(tls_server_optional_client_cert) {
  const gt_certs *c = certs_or_skip();
  gt_redis *r = gt_redis_start_tls(c, c->server_cert, c->server_key, "optional", NULL);
  ASSERT_NOT_NULL(r);
  int port = gt_redis_tls_port(r);
  char out[4096], err[256];
  ASSERT_EQ(cli_ping(port, c->ca, NULL, NULL, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "PONG");
  gt_tls_opts nocert = {.ca = c->ca};
  if (gt_tls_ping(port, &nocert, err, sizeof(err)) != 0)
    TEST_FAIL("TLS PING without a client certificate (optional): %s", err);
  /* "optional" still checks a certificate that is presented. */
  gt_tls_opts other = {.ca = c->ca, .cert = c->other_client_cert, .key = c->other_client_key};
  ASSERT_NE(gt_tls_ping(port, &other, err, sizeof(err)), 0);
  gt_redis_stop(r);
}

/* A server with a bad certificate starts (the fixture does not verify it), and
 * a client that verifies refuses it, saying why.  redis-cli 7.0 (hiredis's TLS)
 * checks the chain and the dates but not the name: with cli_checks false it
 * must connect, which also shows the server itself is fine. */
static void check_refused(const gt_certs *c, const char *cert, const char *key,
                          const char *reason, bool cli_checks) {
  gt_redis *r = gt_redis_start_tls(c, cert, key, "no", NULL);
  ASSERT_NOT_NULL(r);
  int port = gt_redis_tls_port(r);
  char err[256], out[4096];
  gt_tls_opts noverify = {0};
  if (gt_tls_ping(port, &noverify, err, sizeof(err)) != 0)
    TEST_FAIL("TLS PING without verification: %s", err);
  gt_tls_opts verified = {.ca = c->ca};
  gt_tls *t = gt_tls_connect(port, &verified, err, sizeof(err));
  ASSERT_NULL(t);
  ASSERT_STR_CONTAINS(err, reason);
  TEST_LOG("%s: %s", cert, err);
  int st = cli_ping(port, c->ca, NULL, NULL, out, sizeof(out));
  if (cli_checks && (st == 0 || strstr(out, "PONG") != NULL))
    TEST_FAIL("redis-cli trusting the CA got (exit status %d): %s", st, out);
  if (!cli_checks && (st != 0 || strstr(out, "PONG") == NULL))
    TEST_FAIL("redis-cli, which does not check names, got (exit status %d): %s", st, out);
  gt_redis_stop(r);
}

TEST(tls_bad_server_certs_refused) {
  const gt_certs *c = certs_or_skip();
  check_refused(c, c->other_server_cert, c->other_server_key,
                "unable to get local issuer certificate", true);
  check_refused(c, c->expired_cert, c->expired_key, "certificate has expired", true);
  check_refused(c, c->wrong_name_cert, c->wrong_name_key, "IP address mismatch", false);
}

/* ---------------------------------------------------------------- Sentinel */

static gt_sentinel *sentinel_or_fail(int nreplicas, int nsentinels, const char *name) {
  int64_t t0 = test_now_ms();
  gt_sentinel *s = gt_sentinel_start(nreplicas, nsentinels, name);
  ASSERT_NOT_NULL(s);
  TEST_LOG("sentinel set (%d replicas, %d sentinels) ready in %lld ms", nreplicas, nsentinels,
           (long long)(test_now_ms() - t0));
  return s;
}

/* The value of key: in INFO replication of r, into buf. */
static const char *repl_field(gt_redis *r, const char *key, char *buf, size_t size) {
  buf[0] = '\0';
  redisContext *k = gt_redis_connect(r);
  ASSERT_NOT_NULL(k);
  redisReply *rep = redisCommand(k, "INFO replication");
  ASSERT_NOT_NULL(rep);
  const char *at = strstr(rep->str, key);
  if (at != NULL && at[strlen(key)] == ':') {
    at += strlen(key) + 1;
    snprintf(buf, size, "%.*s", (int)strcspn(at, "\r\n"), at);
  }
  freeReplyObject(rep);
  redisFree(k);
  return buf;
}

static bool has_value(gt_redis *r, const char *key, const char *want) {
  redisContext *k = gt_redis_connect(r);
  if (k == NULL)
    return false;
  redisReply *rep = redisCommand(k, "GET %s", key);
  bool ok = rep != NULL && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, want) == 0;
  if (rep != NULL)
    freeReplyObject(rep);
  redisFree(k);
  return ok;
}

TEST(sentinel_reports_master) {
  gt_sentinel *s = sentinel_or_fail(1, 3, "gtmaster");
  ASSERT_EQ(gt_sentinel_count(s), 3);
  ASSERT_EQ(gt_sentinel_node_count(s), 2);
  ASSERT_STR_EQ(gt_sentinel_master_name(s), "gtmaster");
  gt_redis *m = gt_sentinel_node(s, 0), *rep = gt_sentinel_node(s, 1);
  ASSERT_EQ(gt_sentinel_master_port(s), gt_redis_port(m));
  ASSERT_EQ(gt_sentinel_master_node(s), 0);

  char want[256];
  snprintf(want, sizeof(want),
           "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/gtmaster/0",
           gt_sentinel_port(s, 0), gt_sentinel_port(s, 1), gt_sentinel_port(s, 2));
  ASSERT_STR_EQ(gt_sentinel_url(s), want);

  /* Each sentinel, asked directly, names the master. */
  for (int i = 0; i < 3; i++) {
    redisContext *k = gt_redis_connect(gt_sentinel_instance(s, i));
    ASSERT_NOT_NULL(k);
    redisReply *r = redisCommand(k, "SENTINEL get-master-addr-by-name gtmaster");
    ASSERT_NOT_NULL(r);
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->elements, 2);
    ASSERT_STR_EQ(r->element[0]->str, "127.0.0.1");
    ASSERT_EQ(strtol(r->element[1]->str, NULL, 10), gt_redis_port(m));
    freeReplyObject(r);
    redisFree(k);
  }
  char buf[64];
  ASSERT_STR_EQ(repl_field(rep, "role", buf, sizeof(buf)), "slave");
  ASSERT_STR_EQ(repl_field(rep, "master_link_status", buf, sizeof(buf)), "up");

  /* Data flows from the master to the replica. */
  redisContext *k = gt_redis_connect(m);
  ASSERT_NOT_NULL(k);
  freeReplyObject(redisCommand(k, "SET %s %s", "flows", "yes"));
  redisFree(k);
  WAIT_UNTIL(has_value(rep, "flows", "yes"), 5000);
  gt_sentinel_stop(s);
}

TEST(sentinel_failover_promotes_replica) {
  gt_sentinel *s = sentinel_or_fail(1, 3, "mymaster");
  int old = gt_sentinel_master_port(s);
  ASSERT_EQ(old, gt_redis_port(gt_sentinel_node(s, 0)));

  int64_t t0 = test_now_ms();
  ASSERT_EQ(gt_sentinel_failover(s), 0);
  int64_t took = test_now_ms() - t0;
  TEST_LOG("SENTINEL FAILOVER switched in %lld ms", (long long)took);
  ASSERT_LE(took, test_timeout_ms(10000));
  ASSERT_EQ(gt_sentinel_master_node(s), 1);
  char buf[64];
  ASSERT_STR_EQ(repl_field(gt_sentinel_node(s, 1), "role", buf, sizeof(buf)), "master");

  /* The old master is still a master until converted; demote it now. */
  t0 = test_now_ms();
  ASSERT_EQ(gt_sentinel_demote_old_masters(s), 0);
  TEST_LOG("old master demoted and the set ready in %lld ms", (long long)(test_now_ms() - t0));
  ASSERT_STR_EQ(repl_field(gt_sentinel_node(s, 0), "role", buf, sizeof(buf)), "slave");
  snprintf(buf, sizeof(buf), "%d", gt_redis_port(gt_sentinel_node(s, 1)));
  char port[16];
  ASSERT_STR_EQ(repl_field(gt_sentinel_node(s, 0), "master_port", port, sizeof(port)), buf);
  gt_sentinel_stop(s);
}

TEST(sentinel_kill9_master_elects_new_one) {
  gt_sentinel *s = sentinel_or_fail(1, 3, "mymaster");
  int64_t t0 = test_now_ms();
  int dead = gt_sentinel_kill_master(s);
  ASSERT_EQ(dead, 0);
  ASSERT_EQ(gt_redis_pid(gt_sentinel_node(s, 0)), 0);
  ASSERT_EQ(gt_sentinel_wait_new_master(s, gt_redis_port(gt_sentinel_node(s, 0))), 0);
  int64_t took = test_now_ms() - t0;
  TEST_LOG("new master elected %lld ms after kill -9", (long long)took);
  ASSERT_LE(took, test_timeout_ms(15000));
  ASSERT_EQ(gt_sentinel_master_node(s), 1);

  /* The killed node comes back as a replica of the new master. */
  t0 = test_now_ms();
  ASSERT_EQ(gt_sentinel_rejoin(s, dead), 0);
  TEST_LOG("old master rejoined as a replica in %lld ms", (long long)(test_now_ms() - t0));
  char buf[64];
  ASSERT_STR_EQ(repl_field(gt_sentinel_node(s, 0), "role", buf, sizeof(buf)), "slave");
  ASSERT_STR_EQ(repl_field(gt_sentinel_node(s, 0), "master_link_status", buf, sizeof(buf)),
                "up");
  gt_sentinel_stop(s);
}

TEST(sentinel_over_tls) {
  const gt_certs *c = certs_or_skip();
  int64_t t0 = test_now_ms();
  gt_sentinel *s = gt_sentinel_start_tls(c, 1, 3, "tlsmaster");
  ASSERT_NOT_NULL(s);
  TEST_LOG("TLS sentinel set ready in %lld ms", (long long)(test_now_ms() - t0));
  ASSERT_EQ(strncmp(gt_sentinel_url(s), "rediss-sentinel://127.0.0.1:", 28), 0);
  gt_redis *m = gt_sentinel_node(s, 0);
  ASSERT_EQ(gt_sentinel_master_port(s), gt_redis_tls_port(m));

  /* Sentinels and nodes speak TLS only, and want a client certificate. */
  gt_tls_opts good = {.ca = c->ca, .cert = c->client_cert, .key = c->client_key};
  char err[256];
  gt_tls *t = gt_tls_connect(gt_sentinel_port(s, 1), &good, err, sizeof(err));
  if (t == NULL)
    TEST_FAIL("TLS connect to sentinel 1: %s", err);
  redisReply *r = gt_tls_command(t, "SENTINEL get-master-addr-by-name %s", "tlsmaster");
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(r->elements, 2);
  ASSERT_EQ(strtol(r->element[1]->str, NULL, 10), gt_redis_tls_port(m));
  freeReplyObject(r);
  gt_tls_close(t);
  gt_tls_opts nocert = {.ca = c->ca};
  ASSERT_NE(gt_tls_ping(gt_sentinel_port(s, 0), &nocert, err, sizeof(err)), 0);

  ASSERT_EQ(gt_sentinel_failover(s), 0);
  ASSERT_EQ(gt_sentinel_master_node(s), 1);
  gt_sentinel_stop(s);
}
