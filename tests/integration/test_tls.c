/* test_tls.c -- gtask over TLS against a real redis-server --tls-port with
 * certificates made at test time: a worker and a client over mutual TLS, and
 * each certificate problem failing fast with its reason.  (The broker and
 * backend contracts run over TLS in test_contract.c, as tls_<case>.) */
#include "internal.h"
#include "redis_fixture.h"
#include "test.h"
#include "tls_fixture.h"
#include "worker_fixture.h"

#include <stdio.h>

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static char warnings[4096];
static void capture_log(gtask_log_level level, const char *line, void *ud) {
  (void)ud;
  if (level < GTASK_LOG_WARN) return;
  fprintf(stderr, "[gtask] %s\n", line);
  size_t used = strlen(warnings);
  snprintf(warnings + used, sizeof(warnings) - used, "%s\n", line);
}

static const gt_certs *certs_or_skip(void) {
  const char *why = gt_certs_missing_tool();
  if (why) SKIP("%s", why);
  const gt_certs *c = gt_certs_make();
  ASSERT_NOT_NULL(c);
  gtask_set_log(capture_log, NULL, GTASK_LOG_WARN);
  return c;
}

TEST(a_worker_and_a_client_over_mutual_tls) {
  const gt_certs *certs = certs_or_skip();
  gt_redis *r = gt_redis_start_tls(certs, NULL, NULL, "yes", NULL);
  ASSERT_NOT_NULL(r);
  char url[512];
  snprintf(url, sizeof(url), "%s?cacert=%s&cert=%s&key=%s", gt_redis_tls_url(r), certs->ca,
           certs->client_cert, certs->client_key);
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, url, NULL, -1));
  ASSERT_STR_EQ(gtask_redis_conf_describe(conf), gt_redis_tls_url(r));
  gtask_broker *b;
  gtask_backend *k;
  ASSERT_OK(gtask_broker_redis_new(&b, conf));
  ASSERT_OK(gtask_backend_redis_new(&k, conf));
  gtask_redis_conf_free(conf);
  gtask_server *server = gtask_server_new(b, k);
  ASSERT_OK(GTASK_REG(server, add));
  gt_worker w;
  gt_worker_start(&w, server, 4);
  gtask_client *cli = gtask_client_new(b, k);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  enum { N = 2000 };
  gtask_value *args = calloc(2 * N, sizeof(*args));
  char(*ids)[GTASK_ID_SIZE] = calloc(N, GTASK_ID_SIZE);
  for (int i = 0; i < N; i++) args[2 * i] = gtask_int64(i), args[2 * i + 1] = gtask_int64(1);
  ASSERT_OK(gtask_client_send_many(cli, sc, N, args, 2, ids));
  for (int i = 0; i < N; i++) {
    gtask_result *res;
    int rc = gtask_client_wait(cli, ids[i], test_timeout_ms(10000), &res);
    if (rc) TEST_FAIL("task %d: %s", i, gtask_client_errmsg(cli));
    ASSERT_EQ(res->status, GTASK_SUCCESS);
    ASSERT_EQ(res->values[0].v.i, i + 1);
    gtask_result_free(res);
  }
  ASSERT_OK(gt_worker_stop(&w));
  free(args);
  free(ids);
  gtask_send_conf_free(sc);
  gtask_client_free(cli);
  gtask_server_free(server);
  gtask_broker_free(b);
  gtask_backend_free(k);
  gt_redis_stop(r);
}

/* Connects to r with the given CA, client identity and options; returns the
 * code and, in why, the error; checks that it came back at once. */
static int try_connect(gt_redis *r, const char *ca, const char *cert, const char *key,
                       const char *query, char *why, size_t size) {
  char url[512];
  snprintf(url, sizeof(url), "%s%s", gt_redis_tls_url(r), query ? query : "");
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, url, NULL, -1));
  ASSERT_OK(gtask_redis_conf_set_tls(conf, ca, cert, key));
  gtask_broker *b = NULL;
  int64_t t0 = test_now_ms();
  int rc = gtask_broker_redis_new(&b, conf);
  ASSERT_LT(test_now_ms() - t0, test_timeout_ms(2500)); /* fails fast, never hangs */
  snprintf(why, size, "%s", rc ? gtask_last_error() : "");
  gtask_broker_free(b);
  gtask_redis_conf_free(conf);
  return rc;
}

TEST(certificate_problems_fail_fast_with_the_reason) {
  const gt_certs *certs = certs_or_skip();
  char why[512];

  gt_redis *good = gt_redis_start_tls(certs, NULL, NULL, "yes", NULL);
  ASSERT_NOT_NULL(good);
  /* A CA that did not sign the server's certificate. */
  ASSERT_ERR(try_connect(good, certs->other_ca, certs->client_cert, certs->client_key, NULL, why,
                         sizeof(why)),
             GTASK_ECONN);
  ASSERT_STR_CONTAINS(why, "server certificate rejected");
  /* No client certificate where the server requires one. */
  ASSERT_ERR(try_connect(good, certs->ca, NULL, NULL, NULL, why, sizeof(why)), GTASK_ECONN);
  ASSERT_STR_CONTAINS(why, "client certificate");
  /* A client certificate the server's CA did not sign. */
  ASSERT_ERR(try_connect(good, certs->ca, certs->other_client_cert, certs->other_client_key, NULL,
                         why, sizeof(why)),
             GTASK_ECONN);
  /* A name the certificate does not carry. */
  ASSERT_ERR(try_connect(good, certs->ca, certs->client_cert, certs->client_key,
                         "?sni=other.example", why, sizeof(why)),
             GTASK_ECONN);
  ASSERT_STR_CONTAINS(why, "hostname mismatch");
  /* The right one. */
  ASSERT_OK(try_connect(good, certs->ca, certs->client_cert, certs->client_key, NULL, why,
                        sizeof(why)));
  /* Files that cannot be read are named at creation. */
  ASSERT_ERR(try_connect(good, "/nonexistent/ca.pem", NULL, NULL, NULL, why, sizeof(why)),
             GTASK_EINVAL);
  ASSERT_STR_CONTAINS(why, "the CA file");
  ASSERT_ERR(try_connect(good, certs->ca, certs->client_cert, certs->other_client_key, NULL, why,
                         sizeof(why)),
             GTASK_EINVAL);
  ASSERT_STR_CONTAINS(why, "the client key");
  gt_redis_stop(good);

  gt_redis *expired = gt_redis_start_tls(certs, certs->expired_cert, certs->expired_key, "no", NULL);
  ASSERT_NOT_NULL(expired);
  ASSERT_ERR(try_connect(expired, certs->ca, NULL, NULL, NULL, why, sizeof(why)), GTASK_ECONN);
  ASSERT_STR_CONTAINS(why, "certificate has expired");
  gt_redis_stop(expired);

  gt_redis *wrong = gt_redis_start_tls(certs, certs->wrong_name_cert, certs->wrong_name_key, "no",
                                       NULL);
  ASSERT_NOT_NULL(wrong);
  ASSERT_ERR(try_connect(wrong, certs->ca, NULL, NULL, NULL, why, sizeof(why)), GTASK_ECONN);
  ASSERT_STR_CONTAINS(why, "mismatch");
  /* insecure: connects, and says what it gave up. */
  warnings[0] = '\0';
  ASSERT_OK(try_connect(wrong, certs->ca, NULL, NULL, "?insecure=1", why, sizeof(why)));
  ASSERT_STR_CONTAINS(warnings, "without certificate checks");
  gt_redis_stop(wrong);
}
