/* test_metrics_server.c -- Prometheus metrics of a worker (issue 20), checked
 * with the real tools: a known workload on a worker against a real
 * redis-server, its /metrics read over HTTP and linted by `promtool check
 * metrics`, every counter and histogram count compared with the workload,
 * label values with quotes and backslashes escaped; then a real `prometheus`
 * server, started here on loopback with a 1 s scrape interval, scrapes the
 * worker and `gtask dashboard` (the queue gauges) and its HTTP API must
 * return the same values.  Also the address checks and
 * gtask_server_metrics_text. */
#include "http_client.h"
#include "proc.h"
#include "redis_fixture.h"
#include "test.h"
#include "worker_fixture.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int boom(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  return gtask_ctx_fail(ctx, "boom");
}

/* Runs until cancelled (or 20 s). */
static int hold(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  gtask_ctx_sleep(ctx, 20000);
  return 0;
}

static int nap(gtask_ctx *ctx, const gtask_value *args, size_t n, void *ud) {
  (void)args, (void)n, (void)ud;
  gtask_ctx_sleep(ctx, 5000);
  return 0;
}

typedef struct env {
  gt_redis *redis;
  gtask_broker *broker;
  gtask_backend *backend;
  gtask_server *server;
  gtask_client *client;
  gt_worker worker;
} env;

static void env_open(env *e) {
  memset(e, 0, sizeof(*e));
  gtask_set_log(NULL, NULL, GTASK_LOG_ERROR);
  e->redis = gt_redis_start(NULL);
  ASSERT_NOT_NULL(e->redis);
  gt_redis_pair(gt_redis_url(e->redis), &e->broker, &e->backend);
  e->server = gtask_server_new(e->broker, e->backend);
  ASSERT_NOT_NULL(e->server);
  ASSERT_OK(GTASK_REG(e->server, add));
  ASSERT_OK(gtask_server_reg(e->server, "boom", boom, NULL));
  ASSERT_OK(gtask_server_reg(e->server, "nap", nap, NULL));
  ASSERT_OK(gtask_server_reg(e->server, "hold", hold, NULL));
  e->client = gtask_client_from_server(e->server);
}

static void env_close(env *e) {
  ASSERT_OK(gt_worker_stop(&e->worker));
  gtask_client_free(e->client);
  gtask_server_free(e->server);
  gtask_broker_free(e->broker);
  gtask_backend_free(e->backend);
  gt_redis_stop(e->redis);
}

static void send_wait(env *e, const char *name, int64_t timeout_ms, int retries) {
  gtask_send_conf *c = gtask_send_conf_new(name);
  ASSERT_NOT_NULL(c);
  if (timeout_ms) ASSERT_OK(gtask_send_conf_set_timeout(c, timeout_ms));
  if (retries) {
    ASSERT_OK(gtask_send_conf_set_retry_num(c, retries));
    ASSERT_OK(gtask_send_conf_set_backoff(c, 10, 10));
  }
  char id[GTASK_ID_SIZE];
  ASSERT_OK(GTASK_SEND(e->client, c, id, gtask_int64(1), gtask_int64(2)));
  gtask_result *r = NULL;
  ASSERT_OK(gtask_client_wait(e->client, id, test_timeout_ms(10000), &r));
  gtask_result_free(r);
  gtask_send_conf_free(c);
}

/* The value of the sample line that starts with `series ` in text, or -1. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
  return -1;
}

/* The same, for a counter: an integer (-1 if absent). */
static long long count(const char *text, const char *series) {
  return (long long)sample(text, series);
}

/* The weird task name: a quote and a backslash, escaped in labels. */
#define WEIRD "we\"ird\\name"
#define WEIRD_LABEL "we\\\"ird\\\\name"

/* Runs the known workload: 5 add, 2 boom, 1 nap timing out twice (one
 * retry), 1 unknown task with the weird name; waits until the last outcome's
 * event is counted. */
static void workload(env *e, int port) {
  for (int i = 0; i < 5; i++) send_wait(e, "add", 0, 0);
  for (int i = 0; i < 2; i++) send_wait(e, "boom", 0, 0);
  send_wait(e, "nap", 100, 1);
  send_wait(e, WEIRD, 0, 0);
  char body[65536];
  WAIT_UNTIL(gt_http(port, "GET", "/metrics", NULL, body, sizeof(body)) == 200 &&
                 count(body, "gtask_tasks_failed_total{queue=\"default\",task=\"" WEIRD_LABEL "\"}") == 1,
             5000);
}

TEST_TIMEOUT(metrics_endpoint_and_promtool, 60) {
  env e;
  env_open(&e);
  ASSERT_OK(gtask_server_serve_metrics(e.server, "127.0.0.1:0"));
  int port = gtask_server_metrics_port(e.server);
  ASSERT_GT(port, 0);
  gt_worker_start(&e.worker, e.server, 2);
  workload(&e, port);

  static char body[1 << 17];
  ASSERT_EQ(gt_http(port, "GET", "/metrics", NULL, body, sizeof(body)), 200);
#define Q "{queue=\"default\",task=\""
  ASSERT_EQ(count(body, "gtask_tasks_started_total" Q "add\"}"), 5);
  ASSERT_EQ(count(body, "gtask_tasks_succeeded_total" Q "add\"}"), 5);
  ASSERT_EQ(count(body, "gtask_tasks_failed_total" Q "boom\"}"), 2);
  ASSERT_EQ(count(body, "gtask_tasks_started_total" Q "nap\"}"), 2);
  ASSERT_EQ(count(body, "gtask_tasks_timed_out_total" Q "nap\"}"), 2);
  ASSERT_EQ(count(body, "gtask_tasks_retried_total" Q "nap\"}"), 1);
  ASSERT_EQ(count(body, "gtask_tasks_failed_total" Q "nap\"}"), 1);
  ASSERT_EQ(count(body, "gtask_tasks_started_total" Q WEIRD_LABEL "\"}"), 0);
  ASSERT_EQ(count(body, "gtask_task_run_seconds_count" Q "add\"}"), 5);
  ASSERT_EQ(count(body, "gtask_task_run_seconds_count" Q "nap\"}"), 2);
  ASSERT_TRUE(sample(body, "gtask_task_run_seconds_sum" Q "nap\"}") >= 0.19);
  /* Both nap runs took 100 ms: none in the 0.05 s bucket, both in 0.5 s. */
  ASSERT_EQ(count(body, "gtask_task_run_seconds_bucket" Q "nap\",le=\"0.05\"}"), 0);
  ASSERT_EQ(count(body, "gtask_task_run_seconds_bucket" Q "nap\",le=\"0.5\"}"), 2);
  ASSERT_EQ(count(body, "gtask_task_run_seconds_bucket" Q "nap\",le=\"+Inf\"}"), 2);
  ASSERT_EQ(count(body, "gtask_task_queue_wait_seconds_count" Q "add\"}"), 5);
  ASSERT_EQ(count(body, "gtask_executors"), 2);
  /* (The timed-out nap's handler may take a few ms to see its cancellation.) */
  WAIT_UNTIL(gt_http(port, "GET", "/metrics", NULL, body, sizeof(body)) == 200 &&
                 count(body, "gtask_executors_busy") == 0,
             5000);
  ASSERT_GE(count(body, "gtask_redis_errors_total"), 0);
  ASSERT_GE(count(body, "gtask_redis_reconnects_total"), 0);

  /* A running task cancelled: counted as cancelled (with its run time), not
   * failed. */
  gtask_send_conf *hc = gtask_send_conf_new("hold");
  ASSERT_NOT_NULL(hc);
  char hid[GTASK_ID_SIZE];
  ASSERT_OK(gtask_client_send(e.client, hc, NULL, 0, hid));
  gtask_send_conf_free(hc);
  WAIT_UNTIL(gt_http(port, "GET", "/metrics", NULL, body, sizeof(body)) == 200 &&
                 count(body, "gtask_tasks_started_total" Q "hold\"}") == 1,
             5000);
  ASSERT_OK(gtask_client_cancel(e.client, hid, NULL));
  WAIT_UNTIL(gt_http(port, "GET", "/metrics", NULL, body, sizeof(body)) == 200 &&
                 count(body, "gtask_tasks_cancelled_total" Q "hold\"}") == 1,
             5000);
  ASSERT_EQ(count(body, "gtask_tasks_failed_total" Q "hold\"}"), 0);
  ASSERT_EQ(count(body, "gtask_tasks_lease_lost_total" Q "hold\"}"), 0);
  ASSERT_EQ(count(body, "gtask_task_run_seconds_count" Q "hold\"}"), 1);
  ASSERT_EQ(count(body, "gtask_tasks_cancelled_total" Q "add\"}"), 0);

  /* promtool lints the exposition strictly. */
  FILE *f = fopen("metrics.txt", "w");
  ASSERT_NOT_NULL(f);
  fputs(body, f);
  fclose(f);
  char promtool[512], out[8192];
  if (!gt_find_program("promtool", promtool, sizeof(promtool)))
    TEST_FAIL("promtool not found: scripts/deps installs the Debian package prometheus");
  const char *argv[] = {"sh", "-c", "promtool check metrics < metrics.txt", NULL};
  int st = gt_run(argv, out, sizeof(out));
  if (st != 0) TEST_FAIL("promtool check metrics: exit %d: %s", st, out);

  /* The same text without HTTP; and other paths and methods refused. */
  char *text = NULL;
  size_t len = 0;
  ASSERT_OK(gtask_server_metrics_text(e.server, &text, &len));
  ASSERT_EQ(strlen(text), len);
  ASSERT_STR_CONTAINS(text, "gtask_tasks_succeeded_total" Q "add\"} 5\n");
  free(text);
  ASSERT_EQ(gt_http(port, "GET", "/other", NULL, out, sizeof(out)), 404);
  ASSERT_EQ(gt_http(port, "POST", "/metrics", NULL, out, sizeof(out)), 405);
  env_close(&e);
}

TEST(metrics_arguments) {
  env e;
  env_open(&e);
  char *text;
  size_t len;
  ASSERT_EQ(gtask_server_metrics_text(e.server, &text, &len), GTASK_ESTATE);
  ASSERT_EQ(gtask_server_serve_metrics(e.server, "nonsense"), GTASK_EINVAL);
  ASSERT_EQ(gtask_server_serve_metrics(e.server, "127.0.0.1:70000"), GTASK_EINVAL);
  ASSERT_EQ(gtask_server_serve_metrics(e.server, "example.org:80"), GTASK_EINVAL);
  ASSERT_STR_CONTAINS(gtask_server_errmsg(e.server), "bad address");
  /* A port in use: the redis fixture's. */
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", gt_redis_port(e.redis));
  ASSERT_EQ(gtask_server_serve_metrics(e.server, addr), GTASK_ECONN);
  ASSERT_EQ(gtask_server_metrics_port(e.server), 0);
  /* Collect only: text, no port. */
  ASSERT_OK(gtask_server_serve_metrics(e.server, NULL));
  ASSERT_EQ(gtask_server_serve_metrics(e.server, NULL), GTASK_ESTATE);
  ASSERT_EQ(gtask_server_metrics_port(e.server), 0);
  ASSERT_OK(gtask_server_metrics_text(e.server, &text, &len));
  ASSERT_STR_CONTAINS(text, "gtask_executors 0\n");
  free(text);
  gt_worker_start(&e.worker, e.server, 2);
  env_close(&e);
}

/* ---------------------------------------------------------------- prometheus */

typedef struct prom {
  pid_t pid;
  int port;
} prom;

static void prom_start(prom *p, int target_port, int dashboard_port) {
  char path[512];
  if (!gt_find_program("prometheus", path, sizeof(path)))
    TEST_FAIL("prometheus not found: scripts/deps installs the Debian package prometheus");
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/prom", test_tmpdir());
  ASSERT_EQ(mkdir(dir, 0700), 0);
  char conf[600], data[600], flag_conf[700], flag_data[700], flag_listen[100], log[600];
  snprintf(conf, sizeof(conf), "%s/prometheus.yml", dir);
  snprintf(data, sizeof(data), "%s/data", dir);
  snprintf(log, sizeof(log), "%s/prometheus.log", dir);
  FILE *f = fopen(conf, "w");
  ASSERT_NOT_NULL(f);
  fprintf(f,
          "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
          "scrape_configs:\n  - job_name: gtask_worker\n    static_configs:\n"
          "      - targets: ['127.0.0.1:%d']\n"
          "  - job_name: gtask_dashboard\n    static_configs:\n"
          "      - targets: ['127.0.0.1:%d']\n",
          target_port, dashboard_port);
  fclose(f);
  p->port = gt_free_port();
  ASSERT_GT(p->port, 0);
  snprintf(flag_conf, sizeof(flag_conf), "--config.file=%s", conf);
  snprintf(flag_data, sizeof(flag_data), "--storage.tsdb.path=%s", data);
  snprintf(flag_listen, sizeof(flag_listen), "--web.listen-address=127.0.0.1:%d", p->port);
  fflush(NULL);
  p->pid = fork();
  ASSERT_GE(p->pid, 0);
  if (p->pid == 0) {
    gt_child_reset();
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    execl(path, "prometheus", flag_conf, flag_data, flag_listen, (char *)NULL);
    _exit(127);
  }
  char body[4096];
  WAIT_UNTIL_MSG(gt_http(p->port, "GET", "/-/ready", NULL, body, sizeof(body)) == 200, 30000,
                 "prometheus did not become ready on port %d (log: %s)", p->port, log);
}

static void prom_stop(prom *p) {
  if (p->pid <= 0) return;
  kill(p->pid, SIGTERM);
  int64_t end = test_now_ms() + test_timeout_ms(15000);
  while (waitpid(p->pid, NULL, WNOHANG) == 0) {
    if (test_now_ms() > end) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, NULL, 0);
      break;
    }
    test_sleep_ms(50);
  }
  p->pid = 0;
}

/* The value of an instant query's single result, or -1 if none yet. */
static double prom_query(prom *p, const char *query) {
  char path[1024] = "/api/v1/query?query=", body[65536];
  size_t k = strlen(path);
  for (const unsigned char *q = (const unsigned char *)query; *q && k + 4 < sizeof(path); q++) {
    if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_')
      path[k++] = (char)*q;
    else
      k += (size_t)snprintf(path + k, sizeof(path) - k, "%%%02X", *q);
  }
  path[k] = '\0';
  if (gt_http(p->port, "GET", path, NULL, body, sizeof(body)) != 200) return -1;
  json_error_t err;
  json_t *j = json_loads(body, 0, &err);
  json_t *res = json_object_get(json_object_get(j, "data"), "result");
  double v = -1;
  if (json_array_size(res) == 1) {
    const char *s = json_string_value(json_array_get(json_object_get(json_array_get(res, 0), "value"), 1));
    if (s) v = strtod(s, NULL);
  }
  json_decref(j);
  return v;
}

/* `gtask dashboard` (the CLI) on port, for queues default and idle. */
static pid_t dashboard_start(env *e, int port) {
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    gt_child_reset();
    int fd = open("dashboard.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    execl(GTASK_CLI_PATH, "gtask", "--redis", gt_redis_url(e->redis), "dashboard", "--listen",
          listen, "--queues", "idle", (char *)NULL);
    _exit(127);
  }
  char body[4096];
  WAIT_UNTIL(gt_http(port, "GET", "/api/session", NULL, body, sizeof(body)) == 200, 10000);
  return pid;
}

TEST_TIMEOUT(prometheus_scrapes_the_worker_and_dashboard, 120) {
  env e;
  env_open(&e);
  ASSERT_OK(gtask_server_serve_metrics(e.server, "127.0.0.1:0"));
  int port = gtask_server_metrics_port(e.server);
  gt_worker_start(&e.worker, e.server, 2);
  workload(&e, port);
  /* Three tasks wait in a queue no worker serves. */
  gtask_send_conf *idle = gtask_send_conf_new("add");
  ASSERT_OK(gtask_send_conf_set_queue(idle, "idle"));
  char id[GTASK_ID_SIZE];
  for (int i = 0; i < 3; i++) ASSERT_OK(GTASK_SEND(e.client, idle, id, gtask_int64(i), gtask_int64(1)));
  gtask_send_conf_free(idle);
  int dport = gt_free_port();
  pid_t dash = dashboard_start(&e, dport);
  /* The dashboard's exposition passes promtool too. */
  static char body[1 << 16];
  ASSERT_EQ(gt_http(dport, "GET", "/metrics", NULL, body, sizeof(body)), 200);
  ASSERT_EQ(count(body, "gtask_queue_pending{queue=\"idle\"}"), 3);
  FILE *f = fopen("dashboard_metrics.txt", "w");
  ASSERT_NOT_NULL(f);
  fputs(body, f);
  fclose(f);
  char out[8192];
  const char *argv[] = {"sh", "-c", "promtool check metrics < dashboard_metrics.txt", NULL};
  int st = gt_run(argv, out, sizeof(out));
  if (st != 0) TEST_FAIL("promtool check metrics (dashboard): exit %d: %s", st, out);

  prom p = {0};
  prom_start(&p, port, dport);
  WAIT_UNTIL_MSG(prom_query(&p, "gtask_tasks_succeeded_total{task=\"add\"}") == 5, 30000,
                 "prometheus has no gtask_tasks_succeeded_total{task=\"add\"} == 5");
  ASSERT_EQ((long long)prom_query(&p, "gtask_tasks_failed_total{task=\"boom\"}"), 2);
  ASSERT_EQ((long long)prom_query(&p, "gtask_tasks_timed_out_total{task=\"nap\"}"), 2);
  ASSERT_EQ((long long)prom_query(&p, "gtask_tasks_failed_total{task=\"" WEIRD_LABEL "\"}"), 1);
  ASSERT_EQ((long long)prom_query(&p, "gtask_task_run_seconds_count{task=\"add\",queue=\"default\"}"), 5);
  ASSERT_EQ((long long)prom_query(&p, "sum(gtask_tasks_started_total)"), 9);
  ASSERT_EQ((long long)prom_query(&p, "up{job=\"gtask_worker\"}"), 1);
  /* More work shows up in a later scrape. */
  for (int i = 0; i < 3; i++) send_wait(&e, "add", 0, 0);
  WAIT_UNTIL(prom_query(&p, "gtask_tasks_succeeded_total{task=\"add\"}") == 8, 30000);
  /* The queue gauges come from the dashboard. */
  WAIT_UNTIL(prom_query(&p, "gtask_queue_pending{queue=\"idle\",job=\"gtask_dashboard\"}") == 3, 30000);
  WAIT_UNTIL(prom_query(&p, "gtask_queue_succeeded_total{queue=\"default\"}") == 8, 30000);
  ASSERT_EQ((long long)prom_query(&p, "gtask_queue_failed_total{queue=\"default\"}"), 4);
  ASSERT_EQ((long long)prom_query(&p, "gtask_queue_dead{queue=\"default\"}"), 0);
  ASSERT_TRUE(prom_query(&p, "gtask_queue_oldest_pending_age_seconds{queue=\"idle\"}") > 0);
  ASSERT_EQ((long long)prom_query(&p, "up{job=\"gtask_dashboard\"}"), 1);
  prom_stop(&p);
  kill(dash, SIGTERM);
  ASSERT_EQ(waitpid(dash, &st, 0), dash);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  env_close(&e);
}
