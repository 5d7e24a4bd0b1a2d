/* cron.c -- `gtask cron ...` and `gtask scheduler`: periodic tasks from the
 * command line (issue 19).
 *
 *   gtask cron next SPEC|ENTRY [-n N] [--tz ZONE]   the next N fire times
 *   gtask cron add|list|remove                       entries stored in Redis
 *   gtask scheduler                                  fires them until SIGTERM
 *
 * Fire times are printed one per line as ISO 8601 wall-clock times with the
 * zone's UTC offset ("2028-02-29T00:00:00Z"), as gtask_cron_format writes
 * them: scripts rely on that form. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_cron[] =
    "usage: gtask cron next SPEC|ENTRY [-n N] [--tz ZONE]\n"
    "       gtask cron add NAME SPEC TASK [ARG...] [--tz ZONE] [--queue Q]\n"
    "                      [--timeout DUR] [--retry N] [--retry-on LIST]\n"
    "                      [--delay DUR] [--unique DUR|done] [--missed skip|latest]\n"
    "       gtask cron list\n"
    "       gtask cron remove NAME\n"
    "\n"
    "Periodic tasks.\n"
    "  next      prints the next N (default 5) fire times of SPEC (or of the stored\n"
    "            entry ENTRY), one per line, in ISO 8601 with the zone's offset\n"
    "            (2028-02-29T00:00:00Z)\n"
    "  add       stores entry NAME (1..128 of A-Z a-z 0-9 _ . : -; an entry of that\n"
    "            name is replaced): task TASK with its ARGs (as `gtask send`) sent\n"
    "            to --queue at every tick of SPEC after now, by any `gtask\n"
    "            scheduler` or `gtask worker --scheduler`, each tick exactly once\n"
    "  list      the stored entries, one per line, tab-separated: name, spec,\n"
    "            zone, queue, task, missed policy, last tick, next tick, the last\n"
    "            tick's task id (\"-\" when none)\n"
    "  remove    removes entry NAME (exit 4 if there is none)\n"
    "\n"
    "SPEC (one argument: quote it):\n"
    "  MIN HOUR DOM MONTH DOW       5 fields, e.g. \"*/5 * * * *\", \"0 9 * * MON-FRI\"\n"
    "  SEC MIN HOUR DOM MONTH DOW   6 fields, seconds first\n"
    "  @yearly @monthly @weekly @daily @hourly, \"@every 90s\" (5m, 1h30m, 2d)\n"
    "  fields: *, N, N-M, lists with commas, /STEP; JAN..DEC, SUN..SAT\n"
    "options:\n"
    "  --tz ZONE        IANA time zone of the spec's times (default UTC), e.g.\n"
    "                   Europe/Berlin; daylight saving as cron(8) does it (gtask(1))\n"
    "  -n N             how many fire times (1..1000, default 5)\n"
    "  --timeout DUR, --retry N, --retry-on LIST   the task's send options (as\n"
    "                   `gtask send`)\n"
    "  --delay DUR      each tick's task is due DUR after the tick queues it (it\n"
    "                   waits in the schedule, as `gtask send --delay`)\n"
    "  --unique DUR|done  a tick is not queued while an earlier tick's task (same\n"
    "                   task and arguments) holds the unique key: for DUR after it\n"
    "                   was queued, or until it is final (done); such a tick counts\n"
    "                   as skipped (as `gtask send --unique`)\n"
    "  --missed POLICY  ticks more than 10 s late (no scheduler ran): skip them\n"
    "                   (default), or run the latest of them once (latest)\n";

enum { OPT_TZ = 1, OPT_COUNT, OPT_TIMEOUT, OPT_RETRY, OPT_MISSED, OPT_RETRY_ON, OPT_DELAY, OPT_UNIQUE };

/* What the cron subcommands' options set. */
typedef struct cron_opts {
  const char *tz, *count, *timeout, *retry, *missed, *retry_on, *delay, *unique;
} cron_opts;

/* Scans the arguments of a cron subcommand: --tz and -n/--count, and
 * positionals into pos[0..*npos).  Returns CLI_OK, or an exit code (help
 * printed, or a usage error). */
static int scan_args(cli *c, int argc, char **argv, cron_opts *o, const char **pos, int maxpos,
                     int *npos) {
  static const cli_opt opts[] = {{"tz", OPT_REQUIRED, OPT_TZ},
                                 {"count", OPT_REQUIRED, OPT_COUNT},
                                 {"timeout", OPT_REQUIRED, OPT_TIMEOUT},
                                 {"retry", OPT_REQUIRED, OPT_RETRY},
                                 {"missed", OPT_REQUIRED, OPT_MISSED},
                                 {"retry-on", OPT_REQUIRED, OPT_RETRY_ON},
                                 {"delay", OPT_REQUIRED, OPT_DELAY},
                                 {"unique", OPT_REQUIRED, OPT_UNIQUE},
                                 {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  *npos = 0;
  for (;;) {
    /* -n N: the one short option (the scanner knows only long ones). */
    if (s.i < argc && !s.only_positional && strcmp(argv[s.i], "-n") == 0) {
      if (s.i + 1 >= argc) return cli_usage_error(c, "-n needs a value");
      o->count = argv[s.i + 1];
      s.i += 2;
      continue;
    }
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == -2) return CLI_USAGE;
    if (r == OPT_HELP) {
      fputs(usage_cron, stdout);
      return -1;
    }
    if (r == OPT_TZ) o->tz = v;
    else if (r == OPT_COUNT) o->count = v;
    else if (r == OPT_TIMEOUT) o->timeout = v;
    else if (r == OPT_RETRY) o->retry = v;
    else if (r == OPT_MISSED) o->missed = v;
    else if (r == OPT_RETRY_ON) o->retry_on = v;
    else if (r == OPT_DELAY) o->delay = v;
    else if (r == OPT_UNIQUE) o->unique = v;
    else if (*npos < maxpos) pos[(*npos)++] = v;
    else return cli_usage_error(c, "unexpected argument \"%s\"", v);
  }
  return CLI_OK;
}

/* An entry name rather than a spec: one word, not a macro. */
static bool is_entry_name(const char *s) { return s[0] != '@' && !strpbrk(s, " \t"); }

static int cron_next(cli *c, int argc, char **argv) {
  cron_opts o = {0};
  const char *pos[1];
  int npos;
  int code = scan_args(c, argc, argv, &o, pos, 1, &npos);
  if (code) return code < 0 ? CLI_OK : code;
  if (npos != 1) return cli_usage_error(c, "cron next needs a SPEC (or the name of an entry)");
  if (o.timeout || o.retry || o.missed || o.retry_on || o.delay || o.unique)
    return cli_usage_error(c, "cron next takes only -n and --tz");
  long long n = 5;
  if (o.count && cli_parse_int(o.count, 1, 1000, &n) != 0)
    return cli_usage_error(c, "bad -n \"%s\" (an integer from 1 to 1000)", o.count);
  const char *spec = pos[0], *tz = o.tz;
  gtask_cron_entry *e = NULL;
  size_t ne = 0;
  if (is_entry_name(spec)) {
    /* `gtask cron next ENTRY`: the stored entry's spec, in its zone. */
    gtask_client *cl = NULL;
    if ((code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
    if (code) return code;
    int rc = gtask_client_cron_list(cl, spec, &e, &ne);
    if (rc) {
      code = rc == GTASK_EINVAL ? cli_usage_error(c, "bad cron spec \"%s\" (or no entry of that "
                                                     "name)", spec)
                                : cli_fail(c, cl, rc);
      gtask_client_free(cl);
      return code;
    }
    gtask_client_free(cl);
    spec = e[0].spec;
    if (!tz) tz = e[0].zone;
  }
  gtask_cron *cr;
  if (gtask_cron_new(&cr, spec, tz) != 0) {
    code = cli_usage_error(c, "%s", gtask_last_error());
    gtask_cron_list_free(e, ne);
    return code;
  }
  gtask_cron_list_free(e, ne);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t t = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  for (long long k = 0; k < n; k++) {
    int rc = gtask_cron_next(cr, t, &t);
    char buf[GTASK_TIME_SIZE];
    if (rc == 0) rc = gtask_cron_format(cr, t, buf, sizeof(buf));
    if (rc != 0) {
      if (k == 0) {
        cli_error("%s", gtask_last_error());
        code = CLI_FAILED;
      }
      break;
    }
    if (c->json) {
      out_obj ob;
      out_obj_begin(&ob, stdout);
      out_obj_str(&ob, "time", buf);
      out_obj_int(&ob, "ms", t);
      out_obj_end(&ob);
    } else {
      printf("%s\n", buf);
    }
  }
  gtask_cron_free(cr);
  return fflush(stdout) == 0 && !ferror(stdout) ? code : CLI_FAILED;
}

static int cron_add(cli *c, int argc, char **argv) {
  cron_opts o = {0};
  const char **pos = calloc((size_t)argc + 1, sizeof(*pos));
  gtask_value *args = calloc((size_t)argc + 1, sizeof(*args));
  if (!pos || !args) {
    free(pos);
    free(args);
    cli_error("out of memory");
    return CLI_FAILED;
  }
  int npos, code = scan_args(c, argc, argv, &o, pos, argc, &npos);
  gtask_send_conf *sc = NULL;
  gtask_client *cl = NULL;
  if (code) {
    if (code < 0) code = CLI_OK;
    goto out;
  }
  if (npos < 3) {
    code = cli_usage_error(c, "cron add needs NAME SPEC TASK [ARG...]");
    goto out;
  }
  if (o.count) {
    code = cli_usage_error(c, "cron add does not take -n");
    goto out;
  }
  for (int k = 3; k < npos; k++) {
    char why[200];
    if (cli_parse_arg(pos[k], &args[k - 3], why, sizeof(why)) != 0) {
      code = cli_usage_error(c, "bad argument %d: %s", k - 2, why);
      goto out;
    }
  }
  int64_t timeout_ms = 0;
  long long retry = 0;
  if (o.timeout && cli_parse_duration(o.timeout, &timeout_ms) != 0) {
    code = cli_usage_error(c, "bad duration \"%s\" for --timeout (a number with ms, s, m or h)",
                           o.timeout);
    goto out;
  }
  if (o.retry && cli_parse_int(o.retry, 0, 1000000, &retry) != 0) {
    code = cli_usage_error(c, "bad --retry \"%s\" (an integer from 0 to 1000000)", o.retry);
    goto out;
  }
  unsigned retry_on = 0;
  if (o.retry_on && cli_parse_retry_on(o.retry_on, &retry_on) != 0) {
    code = cli_usage_error(c, "bad --retry-on \"%s\" (a comma-separated list of timeout, error, crash)",
                           o.retry_on);
    goto out;
  }
  int64_t delay_ms = 0, unique_ms = -1;
  if (o.delay && cli_parse_duration(o.delay, &delay_ms) != 0) {
    code = cli_usage_error(c, "bad duration \"%s\" for --delay (a number with ms, s, m or h: 1500ms, 2s)",
                           o.delay);
    goto out;
  }
  if (o.unique && strcmp(o.unique, "done") == 0) {
    unique_ms = GTASK_UNIQUE_UNTIL_DONE;
  } else if (o.unique && (cli_parse_duration(o.unique, &unique_ms) != 0 || unique_ms == 0)) {
    code = cli_usage_error(c, "bad --unique \"%s\" (a positive duration such as 10m, or done)", o.unique);
    goto out;
  }
  gtask_missed missed = GTASK_MISSED_SKIP;
  if (o.missed && strcmp(o.missed, "latest") == 0) {
    missed = GTASK_MISSED_LATEST;
  } else if (o.missed && strcmp(o.missed, "skip") != 0) {
    code = cli_usage_error(c, "bad --missed \"%s\" (skip or latest)", o.missed);
    goto out;
  }
  /* Everything that needs no Redis is checked before connecting: the spec
   * and zone, the task name. */
  gtask_cron *cr;
  if (gtask_cron_new(&cr, pos[1], o.tz) != 0) {
    code = cli_usage_error(c, "%s", gtask_last_error());
    goto out;
  }
  gtask_cron_free(cr);
  if (!(sc = gtask_send_conf_new(pos[2]))) {
    code = cli_usage_error(c, "bad task name \"%s\": %s", pos[2], gtask_last_error());
    goto out;
  }
  gtask_send_conf_set_timeout(sc, timeout_ms);
  gtask_send_conf_set_retry_num(sc, (int)retry);
  if (retry_on) gtask_send_conf_set_retry_on(sc, retry_on);
  if (delay_ms) gtask_send_conf_set_delay(sc, delay_ms);
  if (unique_ms >= 0) gtask_send_conf_set_unique(sc, unique_ms);
  if ((code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
  if (code) goto out;
  int rc = gtask_client_cron_add(cl, pos[0], pos[1], o.tz, missed, sc, args, (size_t)npos - 3);
  if (rc) {
    code = cli_fail(c, cl, rc);
    goto out;
  }
  gtask_cron_entry *e = NULL;
  size_t ne = 0;
  if (gtask_client_cron_list(cl, pos[0], &e, &ne) == 0 && ne == 1) {
    char next[GTASK_TIME_SIZE] = "-";
    gtask_cron *ecr;
    if (e[0].next_ms && gtask_cron_new(&ecr, e[0].spec, e[0].zone) == 0) {
      gtask_cron_format(ecr, e[0].next_ms, next, sizeof(next));
      gtask_cron_free(ecr);
    }
    if (c->json) {
      out_obj ob;
      out_obj_begin(&ob, stdout);
      out_obj_str(&ob, "name", pos[0]);
      out_obj_str(&ob, "next", next);
      out_obj_end(&ob);
    } else {
      printf("%s: next tick %s\n", pos[0], next);
    }
  }
  gtask_cron_list_free(e, ne);
out:
  gtask_client_free(cl);
  gtask_send_conf_free(sc);
  free(pos);
  free(args);
  return code;
}

/* A time in zone (of the entry's spec) or "-" for 0. */
static void fmt_time(const gtask_cron *cr, int64_t ms, char buf[GTASK_TIME_SIZE]) {
  if (!ms || gtask_cron_format(cr, ms, buf, GTASK_TIME_SIZE) != 0) snprintf(buf, GTASK_TIME_SIZE, "-");
}

static int cron_list(cli *c, int argc, char **argv) {
  cron_opts o = {0};
  const char *pos[1];
  int npos, code = scan_args(c, argc, argv, &o, pos, 1, &npos);
  if (code) return code < 0 ? CLI_OK : code;
  if (npos || o.tz || o.count || o.timeout || o.retry || o.missed || o.retry_on)
    return cli_usage_error(c, "cron list takes no arguments");
  gtask_client *cl = NULL;
  if ((code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
  if (code) return code;
  gtask_cron_entry *e = NULL;
  size_t n = 0;
  int rc = gtask_client_cron_list(cl, NULL, &e, &n);
  if (rc) {
    code = cli_fail(c, cl, rc);
    gtask_client_free(cl);
    return code;
  }
  for (size_t k = 0; k < n; k++) {
    gtask_cron *cr = NULL;
    if (gtask_cron_new(&cr, e[k].spec, e[k].zone) != 0) cr = NULL;
    char last[GTASK_TIME_SIZE], next[GTASK_TIME_SIZE];
    fmt_time(cr, e[k].last_ms, last);
    fmt_time(cr, e[k].next_ms, next);
    const char *missed = e[k].missed == GTASK_MISSED_LATEST ? "latest" : "skip";
    if (c->json) {
      out_obj ob;
      out_obj_begin(&ob, stdout);
      out_obj_str(&ob, "name", e[k].name);
      out_obj_str(&ob, "spec", e[k].spec);
      out_obj_str(&ob, "zone", e[k].zone);
      out_obj_str(&ob, "queue", e[k].queue);
      out_obj_str(&ob, "task", e[k].task);
      out_obj_str(&ob, "missed", missed);
      out_obj_str(&ob, "last", e[k].last_ms ? last : NULL);
      out_obj_int(&ob, "last_ms", e[k].last_ms);
      out_obj_str(&ob, "last_id", e[k].last_id[0] ? e[k].last_id : NULL);
      out_obj_str(&ob, "next", e[k].next_ms ? next : NULL);
      out_obj_int(&ob, "next_ms", e[k].next_ms);
      out_obj_int(&ob, "skipped", e[k].skipped);
      out_obj_end(&ob);
    } else {
      const char *cols[] = {e[k].name, e[k].spec,  e[k].zone, e[k].queue, e[k].task,
                            missed,    last,       next,      e[k].last_id[0] ? e[k].last_id : "-"};
      for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        if (i) fputc('\t', stdout);
        out_text_escaped(stdout, cols[i], strlen(cols[i]));
      }
      fputc('\n', stdout);
    }
    gtask_cron_free(cr);
  }
  gtask_cron_list_free(e, n);
  gtask_client_free(cl);
  return fflush(stdout) == 0 && !ferror(stdout) ? CLI_OK : CLI_FAILED;
}

static int cron_remove(cli *c, int argc, char **argv) {
  cron_opts o = {0};
  const char *pos[2];
  int npos, code = scan_args(c, argc, argv, &o, pos, 2, &npos);
  if (code) return code < 0 ? CLI_OK : code;
  if (npos != 1 || o.tz || o.count || o.timeout || o.retry || o.missed || o.retry_on)
    return cli_usage_error(c, "cron remove takes one NAME");
  gtask_client *cl = NULL;
  if ((code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
  if (code) return code;
  int rc = gtask_client_cron_remove(cl, pos[0]);
  code = rc ? cli_fail(c, cl, rc) : CLI_OK;
  if (rc == 0 && !c->json) printf("removed %s\n", pos[0]);
  if (rc == 0 && c->json) {
    out_obj ob;
    out_obj_begin(&ob, stdout);
    out_obj_str(&ob, "removed", pos[0]);
    out_obj_end(&ob);
  }
  gtask_client_free(cl);
  return code;
}

int cmd_cron(cli *c, int argc, char **argv) {
  if (argc < 1) {
    fputs(usage_cron, stderr);
    return CLI_USAGE;
  }
  if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
    fputs(usage_cron, stdout);
    return CLI_OK;
  }
  static const struct {
    const char *name;
    int (*run)(cli *c, int argc, char **argv);
  } subs[] = {{"next", cron_next}, {"add", cron_add}, {"list", cron_list}, {"remove", cron_remove}};
  for (size_t k = 0; k < sizeof(subs) / sizeof(subs[0]); k++)
    if (strcmp(argv[0], subs[k].name) == 0) return subs[k].run(c, argc - 1, argv + 1);
  return cli_usage_error(c, "unknown cron command \"%s\" (next, add, list, remove)", argv[0]);
}

/* ---------------------------------------------------------------- scheduler */

static const char usage_scheduler[] =
    "usage: gtask scheduler\n"
    "\n"
    "Queues the ticks of the periodic tasks stored in Redis (`gtask cron add`)\n"
    "until SIGINT or SIGTERM (exit 0).  Any number of schedulers (and `gtask\n"
    "worker --scheduler`) may run: each tick is queued exactly once, with a task\n"
    "id derived from the entry and the tick.  Entries added or removed take\n"
    "effect within a second.  Log lines go to stderr.\n";

static gtask_scheduler *volatile the_scheduler;
static volatile sig_atomic_t scheduler_signals;

static void on_scheduler_signal(int sig) {
  (void)sig;
  if (scheduler_signals++ == 0) {
    gtask_scheduler_shutdown(the_scheduler); /* async-signal-safe */
    return;
  }
  _exit(130);
}

int cmd_scheduler(cli *c, int argc, char **argv) {
  int code = cli_scan_none(c, argc, argv, usage_scheduler);
  if (code) return code < 0 ? CLI_OK : code;
  code = cli_connect(c);
  if (code) return code;
  gtask_set_log(cli_log_line, NULL, GTASK_LOG_INFO);
  gtask_scheduler *sch = gtask_scheduler_new(c->broker, c->backend);
  if (!sch) {
    cli_error("cannot create the scheduler: %s", gtask_last_error());
    return CLI_FAILED;
  }
  the_scheduler = sch;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_scheduler_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  char line[256];
  snprintf(line, sizeof(line), "gtask scheduler: periodic tasks stored on %s", c->redis_desc);
  cli_log_line(GTASK_LOG_INFO, line, NULL);
  int rc = gtask_scheduler_run(sch);
  if (rc) {
    cli_error("scheduler: %s (%s)", gtask_strerror(rc), gtask_scheduler_errmsg(sch));
    code = rc == GTASK_EINVAL ? CLI_USAGE : CLI_FAILED;
  }
  the_scheduler = NULL;
  gtask_scheduler_free(sch);
  return code;
}
