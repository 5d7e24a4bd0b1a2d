/* commands.c -- the client commands of `gtask`: send, status, result, stats and
 * dead (list, requeue, purge).
 *
 * Each command parses its whole command line before it connects, so that a
 * usage error is reported as one (exit 2) even when Redis is down.  Output
 * goes to stdout (text, or one JSON object per line with --json); messages go
 * to stderr.  Exit codes: cli.h. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A --wait value: absent means for ever (-1). */
static int parse_wait(cli *c, const char *v, int64_t *ms) {
  if (!v) {
    *ms = -1;
    return CLI_OK;
  }
  if (cli_parse_duration(v, ms) != 0)
    return cli_usage_error(c, "bad duration \"%s\" for --wait (a number with ms, s, m or h: 1500ms, 2s)", v);
  return CLI_OK;
}

static void print_help(const char *text) { fputs(text, stdout); }

static int need_help_or_usage(int r) { return r == OPT_HELP || r == -2; }

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "3/10 (30%) message", "3 message" when the total is unknown. */
static void progress_text(const gtask_progress *p, char *buf, size_t size) {
  if (p->total > 0)
    snprintf(buf, size, "%lld/%lld (%d%%)%s%s", (long long)p->done, (long long)p->total,
             (int)(p->done * 100 / p->total), p->message[0] ? " " : "", p->message);
  else
    snprintf(buf, size, "%lld%s%s", (long long)p->done, p->message[0] ? " " : "", p->message);
}

/* The live progress of a wait (issue 18): on a terminal one line on stdout,
 * redrawn (a bar, done/total, percent, message); otherwise a plain line on
 * stderr per change ("gtask: progress 3/10 (30%) message"), so that stdout
 * keeps only the result.  Returns whether a bar is on the screen. */
static bool progress_show(const gtask_progress *p, bool tty, char *last, size_t lastsize) {
  char text[64 + GTASK_PROGRESS_MESSAGE_MAX];
  progress_text(p, text, sizeof(text));
  if (strcmp(text, last) == 0) return tty && last[0];
  snprintf(last, lastsize, "%s", text);
  if (!tty) {
    fprintf(stderr, "gtask: progress %s\n", text);
    return false;
  }
  enum { WIDTH = 20 };
  char bar[WIDTH + 1];
  int fill = p->total > 0 ? (int)(p->done * WIDTH / p->total) : 0;
  for (int k = 0; k < WIDTH; k++) bar[k] = k < fill ? '#' : '.';
  bar[WIDTH] = '\0';
  printf("\r[%s] %s\033[K", bar, text);
  fflush(stdout);
  return true;
}

/* gtask_client_wait in slices of 500 ms, showing the task's progress between
 * them (not with --json).  As gtask_client_wait. */
static int wait_showing_progress(cli *c, gtask_client *cl, const char *id, int64_t timeout_ms,
                                 gtask_result **r) {
  if (c->json) return gtask_client_wait(cl, id, timeout_ms, r);
  bool tty = isatty(STDOUT_FILENO), drawn = false;
  char last[64 + GTASK_PROGRESS_MESSAGE_MAX] = "";
  int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
  int rc;
  for (;;) {
    int64_t slice = 500;
    if (deadline >= 0) {
      int64_t left = deadline - mono_ms();
      if (left < slice) slice = left > 0 ? left : 0;
    }
    rc = gtask_client_wait(cl, id, slice, r);
    if (rc != GTASK_ETIMEDOUT || (deadline >= 0 && mono_ms() >= deadline)) break;
    gtask_progress p;
    if (gtask_client_progress(cl, id, &p) == 0) drawn = progress_show(&p, tty, last, sizeof(last));
  }
  if (drawn) {
    printf("\r\033[K"); /* the result replaces the bar */
    fflush(stdout);
  }
  return rc;
}

/* Waits for id (timeout_ms < 0: for ever) and prints its result; on a timeout
 * prints what is known and returns CLI_TIMEOUT. */
static int wait_and_print(cli *c, gtask_client *cl, const char *id, int64_t timeout_ms,
                          const char *dur_text) {
  gtask_result *r = NULL;
  int rc = wait_showing_progress(c, cl, id, timeout_ms, &r);
  if (rc == GTASK_ETIMEDOUT) {
    rc = gtask_client_result(cl, id, &r);
    if (rc) return cli_fail(c, cl, rc);
    if (c->json) {
      out_result(c, r);
    } else {
      cli_error("task %s did not finish within %s (status %s)", id, dur_text ? dur_text : "the wait",
                gtask_status_name(r->status));
    }
    gtask_result_free(r);
    return CLI_TIMEOUT;
  }
  if (rc) return cli_fail(c, cl, rc);
  int code = out_result(c, r);
  gtask_result_free(r);
  return code;
}

/* ---------------------------------------------------------------- send */

static const char usage_send[] =
    "usage: gtask send NAME [ARG...] [--timeout DUR] [--retry N] [--retry-on LIST]\n"
    "                  [--delay DUR] [--priority N]\n"
    "                  [--id ID] [--unique DUR|done] [--wait [DUR] | --count N]\n"
    "\n"
    "Sends task NAME with the given arguments and prints its id; with --wait,\n"
    "waits for it and prints its result instead (as `gtask result`).\n"
    "\n"
    "  ARG            TYPE:VALUE, TYPE one of bool int int8 int16 int32 int64 uint\n"
    "                 uint8 uint16 uint32 uint64 float32 float64 string; or a bare\n"
    "                 value: an integer is int64, a decimal float64, else a string\n"
    "  --timeout DUR  a run longer than this fails (or is retried) as timed out\n"
    "  --retry N      retries after a timeout or a handler's retry request\n"
    "  --retry-on LIST  which outcomes --retry covers: a comma-separated list of\n"
    "                 timeout (the default), error (the handler failed), crash\n"
    "                 (its process-pool child died); never a missing handler,\n"
    "                 wrong argument types or a malformed message\n"
    "  --delay DUR    do not run it before DUR from now\n"
    "  --priority N   0 (normal, the default), 1 (high) or 2 (urgent): workers\n"
    "                 take a queue's higher levels first, in order within one\n"
    "                 level; it keeps its level through delays and retries\n"
    "  --id ID        send it under this task id (a lower-case UUID); refused with\n"
    "                 exit 7 while a task with that id is queued, running or its\n"
    "                 result is kept\n"
    "  --unique DUR   refused with exit 7 while a task of the same name, queue and\n"
    "                 arguments sent with --unique is held: for DUR after it was\n"
    "                 sent, or with `done`, until that task has finished\n"
    "  --wait [DUR]   wait for the result, at most DUR (without DUR: no limit)\n"
    "  --count N      send N identical tasks in a few round trips; prints N ids\n"
    "  DUR            a number with ms, s, m or h: 1500ms, 2s, 1.5m\n"
    "\n"
    "exit: 0 sent (with --wait: SUCCESS), 1 FAILURE, 2 usage error, 3 the wait\n"
    "timed out, 5 cannot reach redis, 6 sent but the reply was lost: the ids\n"
    "printed may or may not be queued (check with `gtask status ID`), 7 a\n"
    "duplicate (--id, --unique): nothing was sent; the existing task's id is\n"
    "printed (with --count: some were duplicates, the others were sent)\n";

/* A task id on its line (or as {"task_id": ...} with --json, and
 * "duplicate": true for the id of an existing task a send duplicated). */
static void print_id_dup(const cli *c, const char *id, bool dup) {
  if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_str(&o, "task_id", id);
    if (dup) out_obj_bool(&o, "duplicate", true);
    out_obj_end(&o);
  } else {
    printf("%s\n", id);
  }
}

static void print_id(const cli *c, const char *id) { print_id_dup(c, id, false); }

/* Sends count copies of the task in chunks (each one round trip) and prints
 * their ids as it goes. */
static int send_count(cli *c, gtask_client *cl, const gtask_send_conf *sc,
                      const gtask_value *args, size_t nargs, size_t count) {
  enum { CHUNK = 1000 };
  gtask_value *many = nargs ? calloc(CHUNK * nargs, sizeof(*many)) : NULL;
  char(*ids)[GTASK_ID_SIZE] = calloc(CHUNK, sizeof(*ids));
  int *rcs = calloc(CHUNK, sizeof(*rcs));
  if ((nargs && !many) || !ids || !rcs) {
    free(many);
    free(ids);
    free(rcs);
    return GTASK_ENOMEM;
  }
  for (size_t k = 0; k < CHUNK; k++)
    if (nargs) memcpy(many + k * nargs, args, nargs * sizeof(*args));
  int rc = 0;
  size_t dups = 0;
  for (size_t done = 0; done < count && rc == 0;) {
    size_t m = count - done < CHUNK ? count - done : CHUNK;
    rc = gtask_client_send_batch(cl, sc, m, many, nargs, ids, rcs);
    /* On an error, the ids left set are of tasks queued (or, on EINDOUBT,
     * perhaps queued): print them too, so that nothing queued goes unnamed.
     * A duplicate (--unique) prints the id of the task it duplicates. */
    for (size_t k = 0; k < m; k++) {
      if (ids[k][0]) print_id_dup(c, ids[k], rcs[k] == GTASK_EEXIST);
      if (rcs[k] == GTASK_EEXIST) dups++;
    }
    done += m;
  }
  fflush(stdout);
  free(many);
  free(ids);
  free(rcs);
  if (rc == 0 && dups) {
    cli_error("%zu of %zu tasks were duplicates of existing ones (their ids printed); the others were sent",
              dups, count);
    return GTASK_EEXIST;
  }
  return rc;
}

enum { O_TIMEOUT = 1, O_RETRY, O_WAIT, O_ALL, O_COUNT, O_DELAY, O_ID, O_UNIQUE, O_RETRY_ON,
       O_PRIORITY };

int cmd_send(cli *c, int argc, char **argv) {
  static const cli_opt opts[] = {{"timeout", OPT_REQUIRED, O_TIMEOUT},
                                 {"retry", OPT_REQUIRED, O_RETRY},
                                 {"wait", OPT_DURATION, O_WAIT},
                                 {"count", OPT_REQUIRED, O_COUNT},
                                 {"delay", OPT_REQUIRED, O_DELAY},
                                 {"id", OPT_REQUIRED, O_ID},
                                 {"unique", OPT_REQUIRED, O_UNIQUE},
                                 {"retry-on", OPT_REQUIRED, O_RETRY_ON},
                                 {"priority", OPT_REQUIRED, O_PRIORITY},
                                 {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  const char *name = NULL, *wait_text = NULL, *task_id = NULL;
  int64_t delay_ms = 0, unique_ms = -1; /* -1: no --unique */
  unsigned retry_on = 0;                 /* 0: the library's default */
  long long count = 0; /* 0: one task, printed as one id */
  bool wait = false;
  int64_t timeout_ms = 0, wait_ms = -1;
  long long retry = 0, priority = 0;
  gtask_value *args = calloc((size_t)argc + 1, sizeof(*args));
  size_t nargs = 0;
  if (!args) {
    cli_error("out of memory");
    return CLI_FAILED;
  }
  int code = CLI_OK;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (need_help_or_usage(r)) {
      if (r == OPT_HELP) print_help(usage_send);
      code = r == OPT_HELP ? CLI_OK : CLI_USAGE;
      goto out;
    }
    if (r == O_TIMEOUT) {
      if (cli_parse_duration(v, &timeout_ms) != 0) {
        code = cli_usage_error(c, "bad duration \"%s\" for --timeout (a number with ms, s, m or h: 1500ms, 2s)", v);
        goto out;
      }
    } else if (r == O_RETRY) {
      if (cli_parse_int(v, 0, 1000000, &retry) != 0) {
        code = cli_usage_error(c, "bad --retry \"%s\" (an integer from 0 to 1000000)", v);
        goto out;
      }
    } else if (r == O_COUNT) {
      if (cli_parse_int(v, 1, 10000000, &count) != 0) {
        code = cli_usage_error(c, "bad --count \"%s\" (an integer from 1 to 10000000)", v);
        goto out;
      }
    } else if (r == O_WAIT) {
      wait = true;
      wait_text = v;
      if ((code = parse_wait(c, v, &wait_ms)) != CLI_OK) goto out;
    } else if (r == O_DELAY) {
      if (cli_parse_duration(v, &delay_ms) != 0) {
        code = cli_usage_error(c, "bad duration \"%s\" for --delay (a number with ms, s, m or h: 1500ms, 2s)", v);
        goto out;
      }
    } else if (r == O_UNIQUE) {
      if (strcmp(v, "done") == 0) {
        unique_ms = GTASK_UNIQUE_UNTIL_DONE;
      } else if (cli_parse_duration(v, &unique_ms) != 0 || unique_ms == 0) {
        code = cli_usage_error(c, "bad --unique \"%s\" (a positive duration such as 10m, or done)", v);
        goto out;
      }
    } else if (r == O_ID) {
      task_id = v;
    } else if (r == O_RETRY_ON) {
      if (cli_parse_retry_on(v, &retry_on) != 0) {
        code = cli_usage_error(c, "bad --retry-on \"%s\" (a comma-separated list of timeout, error, crash)", v);
        goto out;
      }
    } else if (r == O_PRIORITY) {
      if (cli_parse_int(v, 0, GTASK_PRIORITY_MAX, &priority) != 0) {
        code = cli_usage_error(c, "bad --priority \"%s\" (0 normal, 1 high or 2 urgent)", v);
        goto out;
      }
    } else if (!name) {
      name = v;
    } else {
      char why[200];
      if (cli_parse_arg(v, &args[nargs], why, sizeof(why)) != 0) {
        code = cli_usage_error(c, "bad argument %zu: %s", nargs + 1, why);
        goto out;
      }
      nargs++;
    }
  }
  if (!name) {
    code = cli_usage_error(c, "send needs a task NAME");
    goto out;
  }
  if (count && wait) {
    code = cli_usage_error(c, "--count and --wait do not go together");
    goto out;
  }
  if (count && task_id) {
    code = cli_usage_error(c, "--count and --id do not go together (one id, one task)");
    goto out;
  }
  gtask_send_conf *sc = gtask_send_conf_new(name);
  if (!sc) {
    /* The library says why ("...: a task name must not contain a control
     * character"); the CLI's user never called gtask_send_conf_new. */
    static const char fn[] = "gtask_send_conf_new: ";
    const char *why = gtask_last_error();
    if (strncmp(why, fn, sizeof(fn) - 1) == 0) why += sizeof(fn) - 1;
    code = cli_usage_error(c, "bad task name \"%s\": %s", name, why);
    goto out;
  }
  gtask_send_conf_set_timeout(sc, timeout_ms);
  gtask_send_conf_set_retry_num(sc, (int)retry);
  gtask_send_conf_set_delay(sc, delay_ms);
  if (retry_on) gtask_send_conf_set_retry_on(sc, retry_on);
  gtask_send_conf_set_priority(sc, (int)priority);
  if (unique_ms >= 0) gtask_send_conf_set_unique(sc, unique_ms);
  if (task_id && gtask_send_conf_set_id(sc, task_id) != 0) {
    code = cli_usage_error(c, "bad --id \"%s\" (a task id: a lower-case UUID such as "
                              "0f8fad5b-d9cb-469f-a165-70867728950e)", task_id);
    gtask_send_conf_free(sc);
    goto out;
  }
  gtask_client *cl = NULL;
  if ((code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
  if (code == CLI_OK) {
    char id[GTASK_ID_SIZE];
    int rc = count ? send_count(c, cl, sc, args, nargs, (size_t)count)
                   : gtask_client_send(cl, sc, args, nargs, id);
    /* The id to check, or the existing task's (send_count printed its own). */
    if ((rc == GTASK_EINDOUBT || rc == GTASK_EEXIST) && !count)
      print_id_dup(c, id, rc == GTASK_EEXIST);
    if (rc) {
      fflush(stdout);
      code = cli_fail(c, cl, rc);
    } else if (count) {
      /* send_count printed the ids */
    } else if (wait) {
      code = wait_and_print(c, cl, id, wait_ms, wait_text);
    } else {
      print_id(c, id);
    }
  }
  gtask_client_free(cl);
  gtask_send_conf_free(sc);
out:
  free(args);
  return code;
}

/* ---------------------------------------------------------------- status, result */

/* Scans a command that takes exactly one task id (and the given options). */
static int scan_id(cli *c, int argc, char **argv, const cli_opt *opts, const char *usage,
                   const char **id, const char **wait_text, bool *wait) {
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  *id = NULL;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == OPT_HELP) {
      print_help(usage);
      return -1;
    }
    if (r == -2) return CLI_USAGE;
    if (r == O_WAIT) {
      *wait = true;
      *wait_text = v;
    } else if (!*id) {
      *id = v;
    } else {
      return cli_usage_error(c, "unexpected argument \"%s\"", v);
    }
  }
  if (!*id) return cli_usage_error(c, "%s needs a task ID", c->command);
  return CLI_OK;
}

static const char usage_status[] =
    "usage: gtask status ID\n"
    "\n"
    "Prints the task's state: PENDING, STARTED, RETRY, SUCCESS, FAILURE or\n"
    "CANCELLED.  A running task that reported progress gets a second line,\n"
    "\"progress DONE/TOTAL (P%) MESSAGE\" (--json: progress_done,\n"
    "progress_total, progress_message).\n"
    "Read from --queue (the queue the task was sent to).\n"
    "\n"
    "exit: 0, 2 usage error (ID is not a task id), 4 unknown or expired id,\n"
    "5 cannot reach redis\n";

int cmd_status(cli *c, int argc, char **argv) {
  const char *id, *wt;
  bool wait = false;
  int code = scan_id(c, argc, argv, NULL, usage_status, &id, &wt, &wait);
  if (code) return code < 0 ? CLI_OK : code;
  if ((code = cli_connect(c)) != CLI_OK) return code;
  gtask_client *cl = NULL;
  if ((code = cli_client(c, &cl)) != CLI_OK) return code;
  gtask_status st;
  int rc = gtask_client_status(cl, id, &st);
  if (rc) {
    code = cli_fail(c, cl, rc);
  } else {
    /* A running task's progress (issue 18), if it reported any. */
    gtask_progress p;
    bool has = (st == GTASK_STARTED || st == GTASK_RETRY || st == GTASK_PENDING) &&
               gtask_client_progress(cl, id, &p) == 0;
    if (c->json) {
      out_obj o;
      out_obj_begin(&o, stdout);
      out_obj_str(&o, "task_id", id);
      out_obj_str(&o, "status", gtask_status_name(st));
      if (has) {
        out_obj_int(&o, "progress_done", p.done);
        out_obj_int(&o, "progress_total", p.total);
        out_obj_str(&o, "progress_message", p.message);
      }
      out_obj_end(&o);
    } else {
      printf("%s\n", gtask_status_name(st));
      if (has) {
        char text[64 + GTASK_PROGRESS_MESSAGE_MAX];
        progress_text(&p, text, sizeof(text));
        printf("progress %s\n", text);
      }
    }
  }
  gtask_client_free(cl);
  return code;
}

static const char usage_result[] =
    "usage: gtask result ID [--wait [DUR]]\n"
    "\n"
    "Prints the task's result values, one per line (--json: one object with\n"
    "task_id, status, values, error, attempts).  With --wait, waits for the task\n"
    "to finish first, at most DUR (without DUR: no limit), showing the progress\n"
    "it reports: on a terminal a bar on one line, redrawn; otherwise a line\n"
    "\"gtask: progress DONE/TOTAL (P%) MESSAGE\" on stderr per change (none with\n"
    "--json).  send --wait does the same.\n"
    "\n"
    "exit: 0 SUCCESS, 1 FAILURE, 2 usage error, 3 not finished (the wait timed\n"
    "out, or no --wait), 4 unknown or expired id, 5 cannot reach redis\n";

int cmd_result(cli *c, int argc, char **argv) {
  static const cli_opt opts[] = {{"wait", OPT_DURATION, O_WAIT}, {NULL, OPT_NONE, 0}};
  const char *id, *wait_text = NULL;
  bool wait = false;
  int code = scan_id(c, argc, argv, opts, usage_result, &id, &wait_text, &wait);
  if (code) return code < 0 ? CLI_OK : code;
  int64_t wait_ms = -1;
  if (wait && (code = parse_wait(c, wait_text, &wait_ms)) != CLI_OK) return code;
  if ((code = cli_connect(c)) != CLI_OK) return code;
  gtask_client *cl = NULL;
  if ((code = cli_client(c, &cl)) != CLI_OK) return code;
  if (wait) {
    code = wait_and_print(c, cl, id, wait_ms, wait_text);
  } else {
    gtask_result *r = NULL;
    int rc = gtask_client_result(cl, id, &r);
    code = rc ? cli_fail(c, cl, rc) : out_result(c, r);
    gtask_result_free(r);
  }
  gtask_client_free(cl);
  return code;
}

/* ---------------------------------------------------------------- stats */

static const char usage_stats[] =
    "usage: gtask stats [QUEUE...]\n"
    "       gtask stats --all\n"
    "\n"
    "Counts per queue (default: --queue): pending (queued), active (leased by a\n"
    "worker), scheduled (delayed or waiting to retry), dead (dead-lettered), and\n"
    "the tasks finished: succeeded, failed; whether it is paused (`gtask queue\n"
    "pause`: yes or no; \"paused\": true or false with --json); and the tasks\n"
    "cancelled (`gtask cancel`; the last column, so that the others keep their\n"
    "places).  A queue with limits (`gtask limit`) gets a line per limit under\n"
    "its counts (--json: one object per limit).\n"
    "  --all   every queue that holds anything, sorted (on a Redis Cluster, found\n"
    "          on every master; a SCAN of all keys)\n";

static void print_stats(const cli *c, const char *queue, const gtask_queue_stats *st, bool paused) {
  if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_str(&o, "queue", queue);
    out_obj_int(&o, "pending", st->pending);
    out_obj_int(&o, "active", st->active);
    out_obj_int(&o, "scheduled", st->scheduled);
    out_obj_int(&o, "dead", st->dead);
    out_obj_int(&o, "succeeded", st->succeeded);
    out_obj_int(&o, "failed", st->failed);
    out_obj_bool(&o, "paused", paused);
    out_obj_int(&o, "cancelled", st->cancelled);
    out_obj_end(&o);
  } else {
    printf("%-20s %10lld %10lld %10lld %10lld %10lld %10lld %6s %10lld\n", queue,
           (long long)st->pending, (long long)st->active, (long long)st->scheduled,
           (long long)st->dead, (long long)st->succeeded, (long long)st->failed,
           paused ? "yes" : "no", (long long)st->cancelled);
  }
}

int cmd_stats(cli *c, int argc, char **argv) {
  static const cli_opt opts[] = {{"all", OPT_NONE, O_ALL}, {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  bool all = false;
  char **names = NULL;
  size_t nnames = 0;
  const char **queues = calloc((size_t)argc + 1, sizeof(*queues));
  gtask_queue_stats *st = calloc((size_t)argc + 1, sizeof(*st));
  bool *paused = calloc((size_t)argc + 1, sizeof(*paused));
  if (!queues || !st || !paused) {
    free(queues);
    free(st);
    free(paused);
    cli_error("out of memory");
    return CLI_FAILED;
  }
  size_t nq = 0;
  int code = CLI_OK;
  gtask_client *cl = NULL;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == O_ALL) {
      all = true;
      continue;
    }
    if (need_help_or_usage(r)) {
      if (r == OPT_HELP) print_help(usage_stats);
      code = r == OPT_HELP ? CLI_OK : CLI_USAGE;
      goto out;
    }
    queues[nq++] = v;
  }
  if (all && nq > 0) {
    code = cli_usage_error(c, "stats takes queue names or --all, not both");
    goto out;
  }
  if (all) {
    if ((code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
    if (code == CLI_OK) {
      int rc = gtask_client_queues(cl, &names, &nnames);
      if (rc) code = cli_fail(c, cl, rc);
    }
    if (code != CLI_OK) {
      gtask_client_free(cl);
      goto out;
    }
    const char **q2 = realloc(queues, (nnames + 1) * sizeof(*q2));
    gtask_queue_stats *st2 = realloc(st, (nnames + 1) * sizeof(*st2));
    bool *p2 = realloc(paused, (nnames + 1) * sizeof(*p2));
    if (q2) queues = q2;
    if (st2) st = st2;
    if (p2) paused = p2;
    if (!q2 || !st2 || !p2) {
      gtask_client_free(cl);
      cli_error("out of memory");
      code = CLI_FAILED;
      goto out;
    }
    for (size_t k = 0; k < nnames; k++) queues[nq++] = names[k];
  } else if (nq == 0) {
    queues[nq++] = c->queue;
  }
  /* Every name is checked, and every count read, before anything is printed:
   * a bad name is a usage error alone, with no table header before it. */
  for (size_t k = 0; k < nq && !all; k++)
    if ((code = cli_check_queue(c, queues[k])) != CLI_OK) goto out;
  if (!cl && (code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
  for (size_t k = 0; k < nq && code == CLI_OK; k++) {
    int rc = gtask_client_stats(cl, queues[k], &st[k]);
    if (rc == 0) rc = gtask_client_queue_paused(cl, queues[k], &paused[k]);
    if (rc) code = cli_fail(c, cl, rc);
  }
  if (code != CLI_OK) {
    gtask_client_free(cl);
    goto out;
  }
  if (!c->json)
    printf("%-20s %10s %10s %10s %10s %10s %10s %6s %10s\n", "queue", "pending", "active",
           "scheduled", "dead", "succeeded", "failed", "paused", "cancelled");
  for (size_t k = 0; k < nq; k++) {
    print_stats(c, queues[k], &st[k], paused[k]);
    gtask_limit *lv = NULL;
    size_t nl = 0;
    if (gtask_client_limit_list(cl, queues[k], &lv, &nl) == 0) cli_print_limits(c, lv, nl, true);
    gtask_limit_list_free(lv, nl);
  }
  gtask_client_free(cl);
  fflush(stdout);
out:
  gtask_queues_free(names, nnames);
  free(paused);
  free(st);
  free(queues);
  return code;
}

/* ---------------------------------------------------------------- queue */

static const char usage_queue[] =
    "usage: gtask queue pause NAME\n"
    "       gtask queue resume NAME\n"
    "\n"
    "pause: workers stop leasing from queue NAME within a second; tasks they\n"
    "hold finish normally, sends still queue, delayed tasks and retries still\n"
    "come due.  It stays paused (across worker restarts) until resume, which\n"
    "workers see within half a second.  `gtask stats` shows it.\n"
    "\n"
    "exit: 0, 2 usage error (or a broker that cannot pause), 5 cannot reach redis\n";

int cmd_queue(cli *c, int argc, char **argv) {
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  const char *sub = NULL, *name = NULL;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, NULL, &v);
    if (r == -1) break;
    if (r == OPT_HELP) {
      print_help(usage_queue);
      return CLI_OK;
    }
    if (r == -2) return CLI_USAGE;
    if (!sub)
      sub = v;
    else if (!name)
      name = v;
    else
      return cli_usage_error(c, "unexpected argument \"%s\"", v);
  }
  if (!sub) return cli_usage_error(c, "queue needs a subcommand: pause or resume");
  bool pause = strcmp(sub, "pause") == 0;
  if (!pause && strcmp(sub, "resume") != 0)
    return cli_usage_error(c, "unknown queue subcommand \"%s\" (pause or resume)", sub);
  if (!name) return cli_usage_error(c, "queue %s needs a queue NAME", sub);
  int code = cli_check_queue(c, name);
  if (code != CLI_OK) return code;
  if ((code = cli_connect(c)) != CLI_OK) return code;
  gtask_client *cl = NULL;
  if ((code = cli_client(c, &cl)) != CLI_OK) return code;
  int rc = pause ? gtask_client_queue_pause(cl, name) : gtask_client_queue_resume(cl, name);
  if (rc) {
    code = cli_fail(c, cl, rc);
  } else if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_str(&o, "queue", name);
    out_obj_bool(&o, "paused", pause);
    out_obj_end(&o);
  } else {
    printf("%s %s\n", pause ? "paused" : "resumed", name);
    fflush(stdout);
  }
  gtask_client_free(cl);
  return code;
}

/* ---------------------------------------------------------------- dead */

static const char usage_dead[] =
    "usage: gtask dead list\n"
    "       gtask dead requeue ID | --all\n"
    "       gtask dead purge\n"
    "\n"
    "The dead set of --queue: tasks lost too many times (their worker died or\n"
    "hung each time) and messages no worker could decode.\n"
    "  list      one line per task: id, name, last error (tab-separated; control\n"
    "            characters and backslashes escaped: \\n, \\t, \\\\, \\xNN)\n"
    "  requeue   moves the task (or all) back to the queue to run again, with a\n"
    "            fresh delivery count and its state reset to PENDING; a message\n"
    "            that does not decode stays (no worker could run it)\n"
    "  purge     removes them all\n"
    "\n"
    "exit: 0, 1 ID's message does not decode, 2 usage error, 4 ID is not in the\n"
    "dead set, 5 cannot reach redis\n";

/* `dead list`, or with failed `failed list`. */
static int entry_list(cli *c, gtask_client *cl, bool failed) {
  gtask_dead_entry *e = NULL;
  size_t n = 0;
  int rc = failed ? gtask_client_failed_list(cl, &e, &n) : gtask_client_dead_list(cl, &e, &n);
  if (rc) return cli_fail(c, cl, rc);
  for (size_t k = 0; k < n; k++) {
    if (c->json) {
      out_obj o;
      out_obj_begin(&o, stdout);
      out_obj_str(&o, "task_id", e[k].id);
      out_obj_str(&o, "name", e[k].name);
      out_obj_str(&o, "error", e[k].error);
      out_obj_end(&o);
    } else {
      /* One entry, one line, three columns, whatever a name or an error
       * holds (a name from before issue 14, a handler's multi-line error). */
      const char *cols[3] = {e[k].id[0] ? e[k].id : "-", e[k].name ? e[k].name : "-",
                             e[k].error[0] ? e[k].error : "-"};
      for (size_t i = 0; i < 3; i++) {
        out_text_escaped(stdout, cols[i], strlen(cols[i]));
        fputc(i < 2 ? '\t' : '\n', stdout);
      }
    }
  }
  fflush(stdout);
  gtask_dead_list_free(e, n);
  return CLI_OK;
}

static void print_count(const cli *c, const char *key, size_t n) {
  if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_int(&o, key, (long long)n);
    out_obj_end(&o);
  } else {
    printf("%s %zu\n", key, n);
    fflush(stdout);
  }
}

/* ---------------------------------------------------------------- failed, rerun */

static const char usage_failed[] =
    "usage: gtask failed list\n"
    "\n"
    "The failed set of --queue: tasks that ended FAILURE (their retries used\n"
    "up, or an error that is never retried) within the workers'\n"
    "--failed-retention (default 7 days; at most 10000 per queue).  One line\n"
    "per task, as `gtask dead list`: id, name, last error.  Run one again with\n"
    "`gtask rerun ID`.  Tasks lost too often are in the dead set instead.\n"
    "\n"
    "exit: 0, 2 usage error, 5 cannot reach redis\n";

static const char usage_rerun[] =
    "usage: gtask rerun ID\n"
    "\n"
    "Runs failed task ID of --queue again, on purpose: same id, fresh attempts\n"
    "(with all its retries), state PENDING; its old result is dropped.  It is\n"
    "taken from the failed set (`gtask failed list`), else from the dead set.\n"
    "Prints the id.\n"
    "\n"
    "exit: 0, 1 the task has not failed (it is PENDING, STARTED, RETRY or\n"
    "SUCCESS), 2 usage error, 4 unknown task, or failed but no longer kept,\n"
    "5 cannot reach redis\n";

int cmd_failed(cli *c, int argc, char **argv) {
  static const cli_opt opts[] = {{NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  const char *sub = NULL;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == OPT_HELP) {
      print_help(usage_failed);
      return CLI_OK;
    }
    if (r == -2) return CLI_USAGE;
    if (sub) return cli_usage_error(c, "unexpected argument \"%s\"", v);
    sub = v;
  }
  if (!sub) return cli_usage_error(c, "failed needs a subcommand: list");
  if (strcmp(sub, "list") != 0) return cli_usage_error(c, "unknown failed subcommand \"%s\" (list)", sub);
  int code = cli_connect(c);
  if (code != CLI_OK) return code;
  gtask_client *cl = NULL;
  if ((code = cli_client(c, &cl)) != CLI_OK) return code;
  code = entry_list(c, cl, true);
  gtask_client_free(cl);
  return code;
}

int cmd_rerun(cli *c, int argc, char **argv) {
  const char *id = NULL, *wait_text = NULL;
  bool wait = false;
  static const cli_opt opts[] = {{NULL, OPT_NONE, 0}};
  int code = scan_id(c, argc, argv, opts, usage_rerun, &id, &wait_text, &wait);
  if (code) return code < 0 ? CLI_OK : code;
  if ((code = cli_connect(c)) != CLI_OK) return code;
  gtask_client *cl = NULL;
  if ((code = cli_client(c, &cl)) != CLI_OK) return code;
  int rc = gtask_client_rerun(cl, id);
  if (rc)
    code = cli_fail(c, cl, rc);
  else
    print_id(c, id);
  gtask_client_free(cl);
  return code;
}

/* ---------------------------------------------------------------- cancel */

static const char usage_cancel[] =
    "usage: gtask cancel ID\n"
    "\n"
    "Cancels task ID of --queue (issue 18): it ends CANCELLED at once.  A queued\n"
    "or delayed task (also one waiting for a retry) is removed: prints\n"
    "\"ID cancelled\".  A task a worker holds is told to stop -- its handler's\n"
    "gtask_ctx_cancelled() turns true within about a second, and whatever it\n"
    "returns is dropped: prints \"ID cancelled (running: its worker is told to\n"
    "stop)\".  --json: {\"task_id\", \"status\": \"CANCELLED\", \"running\"}.\n"
    "\n"
    "exit: 0 cancelled (either way), 1 the task has finished already (SUCCESS,\n"
    "FAILURE or CANCELLED: nothing changed), 2 usage error (ID is not a task\n"
    "id), 4 unknown or expired task, 5 cannot reach redis\n";

int cmd_cancel(cli *c, int argc, char **argv) {
  const char *id = NULL, *wait_text = NULL;
  bool wait = false;
  static const cli_opt opts[] = {{NULL, OPT_NONE, 0}};
  int code = scan_id(c, argc, argv, opts, usage_cancel, &id, &wait_text, &wait);
  if (code) return code < 0 ? CLI_OK : code;
  if ((code = cli_connect(c)) != CLI_OK) return code;
  gtask_client *cl = NULL;
  if ((code = cli_client(c, &cl)) != CLI_OK) return code;
  bool running = false;
  int rc = gtask_client_cancel(cl, id, &running);
  if (rc) {
    code = cli_fail(c, cl, rc);
  } else if (c->json) {
    out_cancelled_json(stdout, id, running);
  } else {
    printf("%s cancelled%s\n", id, running ? " (running: its worker is told to stop)" : "");
  }
  gtask_client_free(cl);
  return code;
}

int cmd_dead(cli *c, int argc, char **argv) {
  static const cli_opt opts[] = {{"all", OPT_NONE, O_ALL}, {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  const char *sub = NULL, *id = NULL;
  bool all = false;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == OPT_HELP) {
      print_help(usage_dead);
      return CLI_OK;
    }
    if (r == -2) return CLI_USAGE;
    if (r == O_ALL) {
      all = true;
    } else if (!sub) {
      sub = v;
    } else if (!id) {
      id = v;
    } else {
      return cli_usage_error(c, "unexpected argument \"%s\"", v);
    }
  }
  if (!sub) return cli_usage_error(c, "dead needs a subcommand: list, requeue or purge");
  bool is_list = strcmp(sub, "list") == 0, is_requeue = strcmp(sub, "requeue") == 0,
       is_purge = strcmp(sub, "purge") == 0;
  if (!is_list && !is_requeue && !is_purge)
    return cli_usage_error(c, "unknown dead subcommand \"%s\" (list, requeue or purge)", sub);
  if (is_requeue && !id && !all) return cli_usage_error(c, "dead requeue needs an ID or --all");
  if (is_requeue && id && all) return cli_usage_error(c, "dead requeue takes an ID or --all, not both");
  if (!is_requeue && (id || all))
    return cli_usage_error(c, "dead %s takes no %s", sub, all ? "--all" : "argument");

  int code = cli_connect(c);
  if (code != CLI_OK) return code;
  gtask_client *cl = NULL;
  if ((code = cli_client(c, &cl)) != CLI_OK) return code;
  if (is_list) {
    code = entry_list(c, cl, false);
  } else if (is_requeue) {
    size_t moved = 0;
    int rc = gtask_client_dead_requeue(cl, id, &moved);
    code = rc ? cli_fail(c, cl, rc) : CLI_OK;
    if (rc == 0) print_count(c, "requeued", moved);
  } else {
    size_t removed = 0;
    int rc = gtask_client_dead_purge(cl, &removed);
    code = rc ? cli_fail(c, cl, rc) : CLI_OK;
    if (rc == 0) print_count(c, "purged", removed);
  }
  gtask_client_free(cl);
  return code;
}
