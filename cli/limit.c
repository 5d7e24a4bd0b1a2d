/* limit.c -- `gtask limit ...`: rate and concurrency limits across all
 * workers (issue 19).
 *
 *   gtask limit rate TASK N/PERIOD         at most N runs of TASK per PERIOD
 *   gtask limit concurrency TASK K         at most K running at once
 *   (the same with --queue Q and no TASK: the whole queue)
 *   gtask limit list [QUEUE...]            the limits and their use
 *   gtask limit remove TASK | --queue Q    both limits of TASK / the queue
 * A limit on TASK is TASK's in --queue (default: default). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_limit[] =
    "usage: gtask limit rate [TASK] N/PERIOD\n"
    "       gtask limit concurrency [TASK] K\n"
    "       gtask limit list [QUEUE...]\n"
    "       gtask limit remove [TASK]\n"
    "\n"
    "Limits across all workers of --queue (default: default), on TASK in it, or\n"
    "without TASK on the whole queue.  A task over a limit waits (it is neither\n"
    "failed nor lost) and workers run other tasks meanwhile; workers pick up a\n"
    "change within a third of their lease (about 3 s).\n"
    "  rate         at most N runs start in any PERIOD: 10/s, 100/m, 5/h, 1000/d,\n"
    "               or N/DUR (20/500ms, 3/2s)\n"
    "  concurrency  at most K run at once; a slot of a worker that died comes\n"
    "               back when its lease expires\n"
    "  list         one line per limit, tab-separated: queue, task (* for the\n"
    "               whole queue), rate (N/PERIOD, - for none), concurrency (-\n"
    "               for none), runs started in the current window, running,\n"
    "               waiting for a slot\n"
    "  remove       removes both limits (exit 4 if there were none)\n";

/* "N/PERIOD": N >= 1; PERIOD s, m, h, d (one of them) or a DUR. */
static int parse_rate(const char *s, long long *n, int64_t *period_ms) {
  const char *slash = strchr(s, '/');
  if (!slash || slash == s) return -1;
  char num[32];
  size_t len = (size_t)(slash - s);
  if (len >= sizeof(num)) return -1;
  memcpy(num, s, len);
  num[len] = '\0';
  if (cli_parse_int(num, 1, 1000000000, n) != 0) return -1;
  const char *p = slash + 1;
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++)
    if (strcmp(p, units[k].unit) == 0) {
      *period_ms = units[k].ms;
      return 0;
    }
  return cli_parse_duration(p, period_ms) == 0 && *period_ms > 0 ? 0 : -1;
}

static int scan(cli *c, int argc, char **argv, const char **pos, int maxpos, int *npos) {
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  *npos = 0;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, NULL, &v);
    if (r == -1) return CLI_OK;
    if (r == -2) return CLI_USAGE;
    if (r == OPT_HELP) {
      fputs(usage_limit, stdout);
      return -1;
    }
    if (*npos == maxpos) return cli_usage_error(c, "unexpected argument \"%s\"", v);
    pos[(*npos)++] = v;
  }
}

static int connected(cli *c, gtask_client **cl) {
  int code = cli_connect(c);
  return code ? code : cli_client(c, cl);
}

static int limit_set(cli *c, bool rate, int argc, char **argv) {
  const char *pos[2];
  int npos, code = scan(c, argc, argv, pos, 2, &npos);
  if (code) return code < 0 ? CLI_OK : code;
  if (npos < 1)
    return cli_usage_error(c, rate ? "limit rate needs [TASK] N/PERIOD" : "limit concurrency needs [TASK] K");
  const char *task = npos == 2 ? pos[0] : NULL, *val = pos[npos - 1];
  long long n = 0;
  int64_t period = 0;
  if (rate && parse_rate(val, &n, &period) != 0)
    return cli_usage_error(c, "bad rate \"%s\" (N/PERIOD with N >= 1: 10/s, 100/m, 5/h, 20/500ms)", val);
  if (!rate && cli_parse_int(val, 1, 1000000, &n) != 0)
    return cli_usage_error(c, "bad concurrency \"%s\" (an integer from 1 to 1000000)", val);
  gtask_client *cl = NULL;
  if ((code = connected(c, &cl)) != CLI_OK) return code;
  int rc = rate ? gtask_client_limit_rate(cl, NULL, task, n, period)
                : gtask_client_limit_concurrency(cl, NULL, task, n);
  code = rc ? cli_fail(c, cl, rc) : CLI_OK;
  gtask_client_free(cl);
  return code;
}

/* "20/1s"-style text of a rate. */
static void rate_text(const gtask_limit *l, char *buf, size_t size) {
  if (!l->rate) {
    snprintf(buf, size, "-");
  } else if (l->period_ms % 1000 == 0) {
    snprintf(buf, size, "%lld/%llds", (long long)l->rate, (long long)(l->period_ms / 1000));
  } else {
    snprintf(buf, size, "%lld/%lldms", (long long)l->rate, (long long)l->period_ms);
  }
}

void cli_print_limits(const cli *c, const gtask_limit *v, size_t n, bool stats) {
  for (size_t k = 0; k < n; k++) {
    const gtask_limit *l = &v[k];
    char rate[64], conc[32];
    rate_text(l, rate, sizeof(rate));
    if (l->concurrency) snprintf(conc, sizeof(conc), "%lld", (long long)l->concurrency);
    else snprintf(conc, sizeof(conc), "-");
    if (c->json) {
      out_obj o;
      out_obj_begin(&o, stdout);
      out_obj_str(&o, "queue", l->queue);
      out_obj_str(&o, "task", l->task);
      out_obj_int(&o, "rate", l->rate);
      out_obj_int(&o, "period_ms", l->period_ms);
      out_obj_int(&o, "concurrency", l->concurrency);
      out_obj_int(&o, "in_window", l->in_window);
      out_obj_int(&o, "running", l->running);
      out_obj_int(&o, "waiting", l->waiting);
      out_obj_end(&o);
    } else if (stats) {
      printf("  limit %s%s: rate %s (%lld in window), concurrency %s (%lld running, %lld waiting)\n",
             l->task ? "task " : "queue", l->task ? l->task : "", rate, (long long)l->in_window,
             conc, (long long)l->running, (long long)l->waiting);
    } else {
      fputs(l->queue, stdout);
      fputc('\t', stdout);
      if (l->task) out_text_escaped(stdout, l->task, strlen(l->task));
      else fputc('*', stdout);
      printf("\t%s\t%s\t%lld\t%lld\t%lld\n", rate, conc, (long long)l->in_window,
             (long long)l->running, (long long)l->waiting);
    }
  }
}

static int limit_list(cli *c, int argc, char **argv) {
  const char **pos = calloc((size_t)argc + 1, sizeof(*pos));
  if (!pos) return CLI_FAILED;
  int npos, code = scan(c, argc, argv, pos, argc, &npos);
  if (code) {
    free(pos);
    return code < 0 ? CLI_OK : code;
  }
  if (npos == 0) pos[npos++] = c->queue;
  for (int k = 0; k < npos && code == CLI_OK; k++) code = cli_check_queue(c, pos[k]);
  gtask_client *cl = NULL;
  if (code == CLI_OK) code = connected(c, &cl);
  for (int k = 0; k < npos && code == CLI_OK; k++) {
    gtask_limit *v;
    size_t n;
    int rc = gtask_client_limit_list(cl, pos[k], &v, &n);
    if (rc) {
      code = cli_fail(c, cl, rc);
      break;
    }
    cli_print_limits(c, v, n, false);
    gtask_limit_list_free(v, n);
  }
  gtask_client_free(cl);
  free(pos);
  if (code == CLI_OK && (fflush(stdout) != 0 || ferror(stdout))) code = CLI_FAILED;
  return code;
}

static int limit_remove(cli *c, int argc, char **argv) {
  const char *pos[1];
  int npos, code = scan(c, argc, argv, pos, 1, &npos);
  if (code) return code < 0 ? CLI_OK : code;
  gtask_client *cl = NULL;
  if ((code = connected(c, &cl)) != CLI_OK) return code;
  int rc = gtask_client_limit_remove(cl, NULL, npos ? pos[0] : NULL);
  code = rc ? cli_fail(c, cl, rc) : CLI_OK;
  gtask_client_free(cl);
  return code;
}

int cmd_limit(cli *c, int argc, char **argv) {
  if (argc < 1) {
    fputs(usage_limit, stderr);
    return CLI_USAGE;
  }
  if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
    fputs(usage_limit, stdout);
    return CLI_OK;
  }
  if (strcmp(argv[0], "rate") == 0) return limit_set(c, true, argc - 1, argv + 1);
  if (strcmp(argv[0], "concurrency") == 0) return limit_set(c, false, argc - 1, argv + 1);
  if (strcmp(argv[0], "list") == 0) return limit_list(c, argc - 1, argv + 1);
  if (strcmp(argv[0], "remove") == 0) return limit_remove(c, argc - 1, argv + 1);
  return cli_usage_error(c, "unknown limit command \"%s\" (rate, concurrency, list, remove)",
                         argv[0]);
}
