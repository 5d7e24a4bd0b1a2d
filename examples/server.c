/* examples/server.c -- g_task's QuickStart server in C: register `add` and run
 * 10 workers until SIGINT/SIGTERM.
 *
 *   ./server [redis-url]      (default: $GTASK_REDIS_URL, else 127.0.0.1:6379/0)
 */
#include <gtask/gtask.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static gtask_server *svr;
static void on_signal(int sig) {
  (void)sig;
  gtask_server_shutdown(svr); /* async-signal-safe */
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : getenv("GTASK_REDIS_URL");
  gtask_set_log(NULL, NULL, GTASK_LOG_INFO);

  gtask_redis_conf *conf;
  if (gtask_redis_conf_new(&conf, url, NULL, -1) != 0) {
    fprintf(stderr, "server: %s\n", gtask_last_error());
    return 2;
  }
  gtask_redis_conf_set_pool_size(conf, 50);
  gtask_redis_conf_set_expire_time(conf, 3600 * 1000);

  gtask_broker *broker;
  gtask_backend *backend;
  if (gtask_broker_redis_new(&broker, conf) != 0 || gtask_backend_redis_new(&backend, conf) != 0) {
    fprintf(stderr, "server: %s\n", gtask_last_error());
    return 5;
  }
  gtask_redis_conf_free(conf);

  svr = gtask_server_new(broker, backend);
  gtask_broker_free(broker); /* the server holds its own references */
  gtask_backend_free(backend);
  GTASK_REG(svr, add);

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int rc = gtask_server_run(svr, 10);
  if (rc != 0) fprintf(stderr, "server: %s\n", gtask_server_errmsg(svr));
  gtask_server_free(svr);
  return rc == 0 ? 0 : 1;
}
