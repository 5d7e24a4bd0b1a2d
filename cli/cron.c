/* cron.c -- `gtask cron ...`: periodic tasks from the command line (issue 19).
 *
 *   gtask cron next SPEC [-n N] [--tz ZONE]   the next N fire times of a spec
 *
 * Fire times are printed one per line as ISO 8601 wall-clock times with the
 * zone's UTC offset ("2028-02-29T00:00:00Z"), as gtask_cron_format writes
 * them: scripts rely on that form. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage_cron[] =
    "usage: gtask cron next SPEC [-n N] [--tz ZONE]\n"
    "\n"
    "Periodic tasks.\n"
    "  next      prints the next N (default 5) fire times of SPEC, one per line,\n"
    "            in ISO 8601 with the zone's offset (2028-02-29T00:00:00Z)\n"
    "\n"
    "SPEC (one argument: quote it):\n"
    "  MIN HOUR DOM MONTH DOW       5 fields, e.g. \"*/5 * * * *\", \"0 9 * * MON-FRI\"\n"
    "  SEC MIN HOUR DOM MONTH DOW   6 fields, seconds first\n"
    "  @yearly @monthly @weekly @daily @hourly, \"@every 90s\" (5m, 1h30m, 2d)\n"
    "  fields: *, N, N-M, lists with commas, /STEP; JAN..DEC, SUN..SAT\n"
    "options:\n"
    "  --tz ZONE   IANA time zone of the spec's times (default UTC), e.g.\n"
    "              Europe/Berlin; daylight saving as cron(8) does it (see gtask(1))\n"
    "  -n N        how many fire times (1..1000, default 5)\n";

#define OPT_TZ 1
#define OPT_COUNT 2

/* Scans the arguments of a cron subcommand: --tz and -n/--count, and
 * positionals into pos[0..*npos).  Returns CLI_OK, or an exit code (help
 * printed, or a usage error). */
static int scan_args(cli *c, int argc, char **argv, const char **tz, const char **count,
                     const char **pos, int maxpos, int *npos) {
  static const cli_opt opts[] = {
      {"tz", OPT_REQUIRED, OPT_TZ}, {"count", OPT_REQUIRED, OPT_COUNT}, {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  *npos = 0;
  for (;;) {
    /* -n N: the one short option (the scanner knows only long ones). */
    if (s.i < argc && !s.only_positional && strcmp(argv[s.i], "-n") == 0) {
      if (s.i + 1 >= argc) return cli_usage_error(c, "-n needs a value");
      *count = argv[s.i + 1];
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
    if (r == OPT_TZ) *tz = v;
    else if (r == OPT_COUNT) *count = v;
    else if (*npos < maxpos) pos[(*npos)++] = v;
    else return cli_usage_error(c, "unexpected argument \"%s\"", v);
  }
  return CLI_OK;
}

static int cron_next(cli *c, int argc, char **argv) {
  const char *tz = NULL, *count = NULL, *pos[1];
  int npos;
  int code = scan_args(c, argc, argv, &tz, &count, pos, 1, &npos);
  if (code) return code < 0 ? CLI_OK : code;
  if (npos != 1) return cli_usage_error(c, "cron next needs a SPEC");
  long long n = 5;
  if (count && cli_parse_int(count, 1, 1000, &n) != 0)
    return cli_usage_error(c, "bad -n \"%s\" (an integer from 1 to 1000)", count);
  gtask_cron *cr;
  if (gtask_cron_new(&cr, pos[0], tz) != 0) return cli_usage_error(c, "%s", gtask_last_error());
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
      out_obj o;
      out_obj_begin(&o, stdout);
      out_obj_str(&o, "time", buf);
      out_obj_int(&o, "ms", t);
      out_obj_end(&o);
    } else {
      printf("%s\n", buf);
    }
  }
  gtask_cron_free(cr);
  return fflush(stdout) == 0 && !ferror(stdout) ? code : CLI_FAILED;
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
  if (strcmp(argv[0], "next") == 0) return cron_next(c, argc - 1, argv + 1);
  return cli_usage_error(c, "unknown cron command \"%s\" (next)", argv[0]);
}
