/* gtask.c -- the `gtask` program: run a worker, send tasks, wait for results
 * and look into queues without writing C (issue 4).
 *
 * This file holds main(): it reads the global options that come before the
 * command, picks the command from the table below, and owns the two things
 * every command shares -- connecting (with the exit code 5 contract: a
 * message naming the address, never a hang: the library's connect timeout
 * bounds it) and turning a library error into an exit code.  Commands live in
 * commands.c and worker.c.  Only the public API is used. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_REDIS_URL "redis://127.0.0.1:6379/0"

static const char usage_main[] =
    "usage: gtask [--redis URL] [--backend URL] [--queue NAME] [--json] COMMAND [ARGS]\n"
    "       gtask --version\n"
    "\n"
    "Asynchronous task queues on Redis.\n"
    "\n"
    "commands:\n"
    "  worker   run a worker until SIGINT/SIGTERM\n"
    "  send     send a task (and optionally wait for its result)\n"
    "  status   print a task's state\n"
    "  result   print a task's result (optionally waiting for it)\n"
    "  stats    counts per queue\n"
    "  dead     list, requeue or purge dead-lettered tasks\n"
    "  cron     periodic tasks: next fire times, add, list, remove\n"
    "  scheduler  queue the ticks of the periodic tasks until SIGINT/SIGTERM\n"
    "  limit    rate and concurrency limits across all workers\n"
    "  failed   list the tasks that ended FAILURE (kept for a while)\n"
    "  rerun    run a failed task again (same id, fresh attempts)\n"
    "  cancel   cancel a task: removed if queued, told to stop if running\n"
    "  queue    pause or resume a queue\n"
    "  workers  list the live workers: host, pid, queues, what they run\n"
    "  inspect  list a queue's tasks (inspect queue NAME) or show one (inspect task ID)\n"
    "  dashboard  serve the web dashboard (default http://127.0.0.1:8080/)\n"
    "  version  print the version of gtask (as --version does)\n"
    "\n"
    "global options (before or after the command):\n"
    "  --redis URL     broker address (default: $GTASK_REDIS_URL, else " DEFAULT_REDIS_URL ")\n"
    "                  host:port, redis://[user:pass@]host[:port][/db], unix:/path?db=N\n"
    "  --backend URL   where states and results live (default: the --redis address)\n"
    "                  rediss://... for TLS (?cacert=F&cert=F&key=F&sni=NAME)\n"
    "  --tls-ca FILE   TLS: check the server against this CA (default: system CAs)\n"
    "  --tls-cert FILE, --tls-key FILE  TLS client certificate and key (mutual TLS)\n"
    "  --tls-insecure  TLS without checking the server's certificate\n"
    "  --password-file FILE  the Redis password (else $GTASK_REDIS_PASSWORD, or the URL)\n"
    "  --wait-replicas N  sends, finishes and requeues wait (1 s at most) until N\n"
    "                  replicas have them (Sentinel: survive a failover)\n"
    "                  redis-sentinel://[user:pass@]h1:p1,h2:p2/MASTER[/db] finds the master\n"
    "                  redis-cluster://[user:pass@]h1:p1,h2:p2 for Redis Cluster\n"
    "                  (rediss-cluster://... with TLS)\n"
    "  --queue NAME    queue to use (default: default)\n"
    "  --json          print one JSON object per line\n"
    "  -h, --help      this text; `gtask COMMAND --help` for a command\n"
    "  --version       print \"gtask VERSION\" and exit\n"
    "\n"
    "exit codes: 0 ok, 1 task FAILURE (or another error), 2 usage error,\n"
    "            3 wait timed out, 4 unknown task id, 5 cannot reach redis,\n"
    "            6 sent but the reply was lost: the printed ids may or may not be\n"
    "              queued (check them with `gtask status ID` before sending again),\n"
    "            7 send --id/--unique: the task exists already (its id is printed)\n";

/* ---------------------------------------------------------------- messages */

void cli_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("gtask: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cli_usage_error(const cli *c, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fputs("gtask: ", stderr);
  out_text_escaped(stderr, msg, n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
  if (c && c->command)
    fprintf(stderr, " (see `gtask %s --help`)\n", c->command);
  else
    fputs(" (see `gtask --help`)\n", stderr);
  return CLI_USAGE;
}

/* ---------------------------------------------------------------- connecting */

/* The library's messages name the address ("redis ADDR: reason", or "what:
 * error (redis ADDR: reason)" from a client call); ours name it first, so
 * copy detail into buf without "redis ADDR: " (either address; *addr is set
 * to the one found) and, if given, without ": also" (the error's own name
 * when our message already says it).  Issue 14: the address printed twice. */
static const char *strip_detail(const cli *c, const char *detail, const char **addr,
                                const char *also, char *buf, size_t size) {
  snprintf(buf, size, "%s", detail);
  const char *descs[] = {c->backend_desc, c->redis_desc};
  for (size_t k = 0; k < 2; k++) {
    char needle[200];
    snprintf(needle, sizeof(needle), "redis %s: ", descs[k]);
    char *at = descs[k][0] ? strstr(buf, needle) : NULL;
    if (!at) continue;
    memmove(at, at + strlen(needle), strlen(at + strlen(needle)) + 1);
    if (addr) *addr = descs[k];
    break;
  }
  if (also) {
    char needle[200];
    snprintf(needle, sizeof(needle), ": %s", also);
    char *at = strstr(buf, needle);
    if (at) memmove(at, at + strlen(needle), strlen(at + strlen(needle)) + 1);
  }
  return buf;
}

/* The password, when not in the URL: --password-file (its first line), else
 * $GTASK_REDIS_PASSWORD; so that it need not appear in argv. */
static int read_password(cli *c, char *buf, size_t size) {
  buf[0] = '\0';
  if (c->password_file) {
    FILE *f = fopen(c->password_file, "r");
    if (!f) return cli_usage_error(c, "--password-file %s: %s", c->password_file, strerror(errno));
    if (!fgets(buf, (int)size, f)) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0]) return cli_usage_error(c, "--password-file %s: empty", c->password_file);
    return CLI_OK;
  }
  const char *env = getenv("GTASK_REDIS_PASSWORD");
  if (env) snprintf(buf, size, "%s", env);
  return CLI_OK;
}

static int open_conf(cli *c, const char *url, const char *what, gtask_redis_conf **conf) {
  char pw[512];
  int code = read_password(c, pw, sizeof(pw));
  if (code) return code;
  /* A password in the URL wins; the library takes ours only when given. */
  bool url_has_pw = strchr(url, '@') != NULL;
  int rc = gtask_redis_conf_new(conf, url, url_has_pw || !pw[0] ? NULL : pw, -1);
  explicit_bzero(pw, sizeof(pw));
  if (rc != 0)
    return cli_usage_error(c, "bad %s address \"%s\": %s", what, url, gtask_last_error());
  if (c->tls_ca || c->tls_cert || c->tls_key) {
    if (gtask_redis_conf_set_tls(*conf, c->tls_ca, c->tls_cert, c->tls_key) != 0) {
      code = cli_usage_error(c, "%s: %s", what, gtask_last_error());
      gtask_redis_conf_free(*conf);
      *conf = NULL;
      return code;
    }
  }
  if (c->tls_insecure) gtask_redis_conf_set_tls_insecure(*conf, true);
  if (c->wait_replicas) {
    long long n;
    if (cli_parse_int(c->wait_replicas, 0, 100, &n) != 0) {
      gtask_redis_conf_free(*conf);
      *conf = NULL;
      return cli_usage_error(c, "bad --wait-replicas \"%s\" (an integer from 0 to 100)",
                             c->wait_replicas);
    }
    gtask_redis_conf_set_wait_replicas(*conf, (int)n, 1000);
  }
  /* The library logs this as a warning, which the CLI's log level hides. */
  static bool warned;
  if (!warned && (c->tls_insecure || strstr(url, "insecure=1") || strstr(url, "insecure=true") ||
                  strstr(url, "insecure=yes"))) {
    cli_error("warning: %s: TLS without certificate checks: the server is not authenticated",
              what);
    warned = true;
  }
  return CLI_OK;
}

int cli_check_queue(const cli *c, const char *name) {
  /* The API has no call of its own for the library's rule; a send conf's
   * setter applies it, and needs no connection.  Out of memory here leaves
   * the check to the library's calls. */
  gtask_send_conf *sc = gtask_send_conf_new("q");
  bool ok = !sc || gtask_send_conf_set_queue(sc, name) == 0;
  gtask_send_conf_free(sc);
  if (ok) return CLI_OK;
  return cli_usage_error(c, "invalid queue name \"%s\" (1..128 of A-Z a-z 0-9 _ . : -)", name);
}

int cli_connect(cli *c) {
  if (cli_check_queue(c, c->queue) != CLI_OK) return CLI_USAGE;
  if (!c->redis_url) c->redis_url = DEFAULT_REDIS_URL;
  if (!c->backend_url) c->backend_url = c->redis_url;
  gtask_redis_conf *bconf = NULL, *kconf = NULL;
  int code = open_conf(c, c->redis_url, "--redis", &bconf);
  if (code) return code;
  code = open_conf(c, c->backend_url, "--backend", &kconf);
  if (code) {
    gtask_redis_conf_free(bconf);
    return code;
  }
  snprintf(c->redis_desc, sizeof(c->redis_desc), "%s", gtask_redis_conf_describe(bconf));
  snprintf(c->backend_desc, sizeof(c->backend_desc), "%s", gtask_redis_conf_describe(kconf));
  int rc = gtask_broker_redis_new(&c->broker, bconf);
  const char *desc = c->redis_desc;
  if (rc == 0) {
    rc = gtask_backend_redis_new(&c->backend, kconf);
    desc = c->backend_desc;
  }
  gtask_redis_conf_free(bconf);
  gtask_redis_conf_free(kconf);
  if (rc == 0) return CLI_OK;
  char buf[512];
  const char *reason = strip_detail(c, gtask_last_error(), &desc, NULL, buf, sizeof(buf));
  if (rc == GTASK_ECONN) {
    cli_error("cannot reach redis at %s: %s", desc, reason);
    return CLI_NOREDIS;
  }
  cli_error("redis at %s: %s (%s)", desc, gtask_strerror(rc), reason);
  return CLI_FAILED;
}

int cli_client(cli *c, gtask_client **out) {
  *out = gtask_client_new(c->broker, c->backend);
  if (!*out) {
    cli_error("cannot create a client: %s", gtask_last_error());
    return CLI_FAILED;
  }
  if (gtask_client_set_queue(*out, c->queue) != 0) {
    cli_usage_error(c, "%s", gtask_client_errmsg(*out));
    gtask_client_free(*out);
    *out = NULL;
    return CLI_USAGE;
  }
  return CLI_OK;
}

int cli_fail(cli *c, gtask_client *client, int rc) {
  const char *detail = client ? gtask_client_errmsg(client) : gtask_last_error();
  if (!detail || !detail[0]) detail = gtask_strerror(rc);
  switch (rc) {
  case GTASK_ECONN: {
    const char *addr = c->redis_desc;
    char buf[512];
    detail = strip_detail(c, detail, &addr, gtask_strerror(rc), buf, sizeof(buf));
    cli_error("cannot reach redis at %s: %s", addr, detail);
    return CLI_NOREDIS;
  }
  case GTASK_ENOTFOUND:
    cli_error("%s", detail);
    return CLI_NOTFOUND;
  case GTASK_EINVAL:
    return cli_usage_error(c, "%s", detail);
  case GTASK_ETIMEDOUT:
    cli_error("%s", detail);
    return CLI_TIMEOUT;
  case GTASK_EINDOUBT:
    cli_error("%s", detail);
    return CLI_INDOUBT;
  case GTASK_EEXIST:
    cli_error("%s", detail);
    return CLI_EXISTS;
  default:
    cli_error("%s", detail);
    return CLI_FAILED;
  }
}

/* ---------------------------------------------------------------- main */

/* `gtask version` and `gtask --version`: "gtask 0.1.0", or {"version":"0.1.0"}
 * with --json.  The version is the library's (gtask_version()): the CLI is
 * built with it, and a mismatch with an older installed libgtask shows here. */
static int print_version(const cli *c) {
  if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_str(&o, "version", gtask_version());
    out_obj_end(&o);
  } else {
    printf("gtask %s\n", gtask_version());
  }
  return fflush(stdout) == 0 && !ferror(stdout) ? CLI_OK : CLI_FAILED;
}

static const char usage_version[] =
    "usage: gtask version\n"
    "\n"
    "Prints \"gtask VERSION\" (with --json: {\"version\":\"VERSION\"}).\n";

static int cmd_version(cli *c, int argc, char **argv) {
  int code = cli_scan_none(c, argc, argv, usage_version);
  if (code) return code < 0 ? CLI_OK : code;
  return print_version(c);
}

typedef struct command {
  const char *name;
  int (*run)(cli *c, int argc, char **argv);
} command;

static const command commands[] = {
    {"worker", cmd_worker}, {"send", cmd_send},   {"status", cmd_status},
    {"result", cmd_result}, {"stats", cmd_stats}, {"dead", cmd_dead},
    {"cron", cmd_cron},     {"scheduler", cmd_scheduler}, {"limit", cmd_limit},
    {"failed", cmd_failed}, {"rerun", cmd_rerun}, {"cancel", cmd_cancel}, {"queue", cmd_queue},
    {"version", cmd_version}, {"workers", cmd_workers}, {"inspect", cmd_inspect},
    {"dashboard", cmd_dashboard},
};

/* Options of main() itself, before the command. */
#define OPT_VERSION 1
static const cli_opt main_opts[] = {{"version", OPT_NONE, OPT_VERSION}, {NULL, OPT_NONE, 0}};

int main(int argc, char **argv) {
  /* A closed pipe (`gtask dead list | head`, a dropped Redis connection) is an
   * error to report, not a reason to die silently. */
  signal(SIGPIPE, SIG_IGN);
  cli c;
  memset(&c, 0, sizeof(c));
  c.queue = "default";

  /* Global options before the command; the command scans the rest (and takes
   * global options after it too). */
  cli_scan s = {.argc = argc, .argv = argv, .i = 1};
  const char *cmdname = NULL;
  bool version = false;
  for (;;) {
    const char *v;
    int r = cli_scan_next(&c, &s, main_opts, &v);
    if (r == -2) return CLI_USAGE;
    if (r == OPT_HELP) {
      fputs(usage_main, stdout);
      return CLI_OK;
    }
    if (r == OPT_VERSION) {
      version = true; /* after the loop: `gtask --version --json` prints JSON */
      continue;
    }
    if (r == -1) break;
    cmdname = v; /* r == 0: the first positional argument */
    break;
  }
  if (version) {
    if (cmdname) return cli_usage_error(&c, "--version takes no command (got \"%s\")", cmdname);
    return print_version(&c);
  }
  if (!cmdname) {
    fputs(usage_main, stderr);
    return CLI_USAGE;
  }
  const command *cmd = NULL;
  for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
    if (strcmp(commands[k].name, cmdname) == 0) cmd = &commands[k];
  if (!cmd) return cli_usage_error(&c, "unknown command \"%s\"", cmdname);
  c.command = cmd->name;

  /* --redis (before or after the command) wins over the environment; the
   * default and the --backend default are applied by cli_connect. */
  const char *env = getenv("GTASK_REDIS_URL");
  if (!c.redis_url && env && env[0]) c.redis_url = env;
  /* The commands print their own one-line errors; the library's warnings
   * (such as a refused connection) would only repeat them.  The worker sets
   * its own logger. */
  gtask_set_log(NULL, NULL, GTASK_LOG_ERROR);
  int code = cmd->run(&c, argc - s.i, argv + s.i);
  gtask_backend_free(c.backend);
  gtask_broker_free(c.broker);
  return code;
}
