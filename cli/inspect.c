/* inspect.c -- `gtask workers` and `gtask inspect queue|task` (issue 20):
 * which workers are alive and what they run, a queue's tasks page by page,
 * and one task's whole record.  Built on gtask_client_workers,
 * gtask_client_list and gtask_client_inspect.
 *
 * Text output is one line per item with tab-separated columns (control
 * characters and backslashes escaped, so an argument or error never breaks
 * a line); --json prints one object per line. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "850ms", "12s", "5m", "3h", "2d": how long ago since_ms was. */
static void age_text(char *buf, size_t size, int64_t since_ms) {
  int64_t d = since_ms > 0 ? now_ms() - since_ms : 0;
  if (d < 0) d = 0;
  if (d < 1000)
    snprintf(buf, size, "%lldms", (long long)d);
  else if (d < 120000)
    snprintf(buf, size, "%llds", (long long)(d / 1000));
  else if (d < 7200000)
    snprintf(buf, size, "%lldm", (long long)(d / 60000));
  else if (d < 172800000)
    snprintf(buf, size, "%lldh", (long long)(d / 3600000));
  else
    snprintf(buf, size, "%lldd", (long long)(d / 86400000));
}

static void col(const char *s, char end) {
  out_text_escaped(stdout, s, strlen(s));
  fputc(end, stdout);
}

/* ---------------------------------------------------------------- workers */

static const char usage_workers[] =
    "usage: gtask workers\n"
    "\n"
    "Lists the live workers of every queue, one line each, tab-separated:\n"
    "  name, host, pid, queues (comma-separated), concurrency, pool (threads or\n"
    "  procs), tasks running now, succeeded, failed, up since (age)\n"
    "With --json, one object per worker with the tasks each executor runs now\n"
    "(\"busy\": id, name, queue, since) and the times in unix ms.  A worker that\n"
    "died is gone a lease time (10 s by default) after its last heartbeat.\n"
    "\n"
    "exit: 0, 2 usage error, 5 cannot reach redis\n";

static void worker_json(const gtask_worker_info *w) {
  out_obj o;
  out_obj_begin(&o, stdout);
  out_obj_str(&o, "name", w->name);
  out_obj_str(&o, "host", w->host);
  out_obj_int(&o, "pid", (long long)w->pid);
  out_obj_strs(&o, "queues", w->queues, w->nqueues);
  out_obj_int(&o, "concurrency", w->concurrency);
  out_obj_str(&o, "pool", w->pool);
  out_obj_str(&o, "version", w->version);
  out_obj_int(&o, "started_ms", (long long)w->started_ms);
  out_obj_int(&o, "heartbeat_ms", (long long)w->heartbeat_ms);
  out_obj_int(&o, "lease_ms", (long long)w->lease_ms);
  out_obj_int(&o, "succeeded", (long long)w->succeeded);
  out_obj_int(&o, "failed", (long long)w->failed);
  out_obj_int(&o, "retried", (long long)w->retried);
  out_obj_key(&o, "busy");
  fputc('[', stdout);
  for (size_t k = 0; k < w->nbusy; k++) {
    const gtask_worker_task *t = &w->busy[k];
    fputs(k ? ",{\"id\":" : "{\"id\":", stdout);
    out_json_string(stdout, t->id, strlen(t->id));
    fputs(",\"name\":", stdout);
    out_json_string(stdout, t->name, strlen(t->name));
    fputs(",\"queue\":", stdout);
    out_json_string(stdout, t->queue, strlen(t->queue));
    printf(",\"since_ms\":%lld}", (long long)t->since_ms);
  }
  fputc(']', stdout);
  out_obj_end(&o);
}

static void worker_text(const gtask_worker_info *w) {
  char buf[64];
  col(w->name, '\t');
  col(w->host, '\t');
  printf("%lld\t", (long long)w->pid);
  for (size_t k = 0; k < w->nqueues; k++) {
    if (k) fputc(',', stdout);
    out_text_escaped(stdout, w->queues[k], strlen(w->queues[k]));
  }
  printf("\t%d\t", w->concurrency);
  col(w->pool, '\t');
  age_text(buf, sizeof(buf), w->started_ms);
  printf("%zu\t%llu\t%llu\t%s\n", w->nbusy, (unsigned long long)w->succeeded,
         (unsigned long long)w->failed, buf);
}

int cmd_workers(cli *c, int argc, char **argv) {
  int code = cli_scan_none(c, argc, argv, usage_workers);
  if (code) return code < 0 ? CLI_OK : code;
  code = cli_connect(c);
  gtask_client *cl = NULL;
  if (code == CLI_OK) code = cli_client(c, &cl);
  if (code != CLI_OK) return code;
  gtask_worker_info *w = NULL;
  size_t n = 0;
  int rc = gtask_client_workers(cl, &w, &n);
  if (rc) code = cli_fail(c, cl, rc);
  for (size_t k = 0; k < n; k++) c->json ? worker_json(&w[k]) : worker_text(&w[k]);
  fflush(stdout);
  gtask_workers_free(w, n);
  gtask_client_free(cl);
  return code;
}

/* ---------------------------------------------------------------- inspect */

static const char usage_inspect[] =
    "usage: gtask inspect queue NAME [--state STATE] [--limit N] [--after CURSOR]\n"
    "       gtask inspect task ID\n"
    "\n"
    "queue  lists the tasks of queue NAME in STATE (pending, active, scheduled,\n"
    "       dead or failed; default pending), at most N (1..1000, default 50),\n"
    "       one line each, tab-separated: id, name, arguments (space-separated),\n"
    "       attempts, age, last error (\"-\" if none); active adds the worker,\n"
    "       scheduled the time until due, failed how long it is still kept, and\n"
    "       a task of priority 1 or 2 ends its line with \"priority N\".  Pending\n"
    "       lists the highest level first, as workers take them.\n"
    "       When more follow, the last line is\n"
    "       \"next\\tCURSOR\": pass it as --after CURSOR for the next page.  With\n"
    "       --json, one object per task and a last {\"next\": CURSOR or null}.\n"
    "task   prints task ID of --queue: its state and result record (status,\n"
    "       attempts, values or error) and, while a queue holds its message,\n"
    "       where (pending, active, scheduled, dead, failed) with name, arguments,\n"
    "       attempts, age and last error.  Finding a pending task scans the queue.\n"
    "\n"
    "exit: 0, 2 usage error, 4 no such task, 5 cannot reach redis\n";

enum { O_STATE = 1, O_LIMIT, O_AFTER };

static void args_text(const gtask_task_info *t) {
  if (!t->nargs) fputc('-', stdout);
  for (size_t k = 0; k < t->nargs; k++) {
    if (k) fputc(' ', stdout);
    char buf[512];
    FILE *m = fmemopen(buf, sizeof(buf), "w");
    if (!m) continue;
    out_value_text(m, &t->args[k]);
    long len = ftell(m);
    fclose(m);
    out_text_escaped(stdout, buf, len > 0 && (size_t)len < sizeof(buf) ? (size_t)len : 0);
  }
}

static void info_json_fields(out_obj *o, const gtask_task_info *t) {
  out_obj_str(o, "state", gtask_list_state_name(t->state));
  out_obj_str(o, "name", t->name);
  out_obj_values(o, "args", t->args, t->nargs);
  out_obj_int(o, "attempts", t->attempts);
  out_obj_int(o, "lost", t->lost);
  out_obj_int(o, "retry_max", t->retry_max);
  out_obj_int(o, "timeout_ms", (long long)t->timeout_ms);
  out_obj_int(o, "created_ms", (long long)t->created_ms);
  if (t->due_ms) out_obj_int(o, "due_ms", (long long)t->due_ms);
  out_obj_int(o, "priority", t->priority);
  out_obj_str(o, "last_error", t->last_error);
  if (t->worker) out_obj_str(o, "worker", t->worker);
}

static void info_line(const cli *c, const gtask_task_info *t) {
  if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_str(&o, "task_id", t->id);
    info_json_fields(&o, t);
    out_obj_end(&o);
    return;
  }
  char age[32];
  age_text(age, sizeof(age), t->created_ms);
  col(t->id, '\t');
  col(t->name ? t->name : "-", '\t');
  args_text(t);
  printf("\t%u\t%s\t", t->attempts, age);
  col(t->last_error ? t->last_error : "-", t->worker || t->due_ms || t->priority ? '\t' : '\n');
  if (t->worker) col(t->worker, t->due_ms || t->priority ? '\t' : '\n');
  if (t->due_ms) {
    int64_t in = t->due_ms - now_ms();
    printf("%s %lldms%c", t->state == GTASK_LIST_FAILED ? "kept for" : "due in",
           (long long)(in > 0 ? in : 0), t->priority ? '\t' : '\n');
  }
  if (t->priority) printf("priority %d\n", t->priority);
}

static int inspect_queue(cli *c, const char *queue, const char *state_name, const char *limit_text,
                         const char *after) {
  gtask_list_state state = GTASK_LIST_PENDING;
  if (state_name && gtask_list_state_parse(state_name, &state) != 0)
    return cli_usage_error(c, "bad --state \"%s\" (pending, active, scheduled, dead or failed)",
                           state_name);
  long long limit = 50;
  if (limit_text && cli_parse_int(limit_text, 1, 1000, &limit) != 0)
    return cli_usage_error(c, "bad --limit \"%s\" (an integer from 1 to 1000)", limit_text);
  int code = cli_check_queue(c, queue);
  if (code != CLI_OK) return code;
  c->queue = queue;
  gtask_client *cl = NULL;
  if ((code = cli_connect(c)) == CLI_OK) code = cli_client(c, &cl);
  if (code != CLI_OK) return code;
  gtask_task_info *v = NULL;
  size_t n = 0;
  char *next = NULL;
  int rc = gtask_client_list(cl, state, after, (size_t)limit, &v, &n, &next);
  if (rc) {
    code = cli_fail(c, cl, rc);
  } else {
    for (size_t k = 0; k < n; k++) info_line(c, &v[k]);
    if (c->json) {
      out_obj o;
      out_obj_begin(&o, stdout);
      out_obj_str(&o, "next", next);
      out_obj_end(&o);
    } else if (next) {
      printf("next\t%s\n", next);
    }
    fflush(stdout);
  }
  free(next);
  gtask_task_info_free(v, n);
  gtask_client_free(cl);
  return code;
}

static int inspect_task(cli *c, const char *id) {
  int code = cli_connect(c);
  gtask_client *cl = NULL;
  if (code == CLI_OK) code = cli_client(c, &cl);
  if (code != CLI_OK) return code;
  gtask_result *r = NULL;
  gtask_task_info *t = NULL;
  int rc = gtask_client_inspect(cl, id, &r, &t);
  if (rc) {
    code = cli_fail(c, cl, rc);
  } else if (c->json) {
    out_obj o;
    out_obj_begin(&o, stdout);
    out_obj_str(&o, "task_id", id);
    out_obj_str(&o, "queue", c->queue);
    out_obj_str(&o, "status", r ? gtask_status_name(r->status) : NULL);
    if (r) {
      out_obj_int(&o, "result_attempts", r->attempts);
      out_obj_values(&o, "values", r->values, r->nvalues);
      out_obj_str(&o, "error", r->error);
      if (r->error_code) out_obj_str(&o, "error_code", gtask_err_name(r->error_code));
    }
    if (t) {
      out_obj_key(&o, "message");
      out_obj m;
      out_obj_begin(&m, stdout);
      info_json_fields(&m, t);
      fputc('}', stdout);
    } else {
      out_obj_key(&o, "message");
      fputs("null", stdout);
    }
    out_obj_end(&o);
  } else {
    printf("id\t%s\nqueue\t", id);
    col(c->queue, '\n');
    printf("status\t%s\n", r ? gtask_status_name(r->status) : "-");
    if (r) {
      printf("attempts\t%u\n", r->attempts);
      for (size_t k = 0; k < r->nvalues; k++) {
        fputs("value\t", stdout);
        char buf[512];
        FILE *m = fmemopen(buf, sizeof(buf), "w");
        if (m) {
          out_value_text(m, &r->values[k]);
          long len = ftell(m);
          fclose(m);
          out_text_escaped(stdout, buf, len > 0 && (size_t)len < sizeof(buf) ? (size_t)len : 0);
        }
        fputc('\n', stdout);
      }
      if (r->error) {
        fputs("error\t", stdout);
        col(r->error, '\n');
        printf("error_code\t%s\n", gtask_err_name(r->error_code));
      }
    }
    if (t) {
      char age[32];
      age_text(age, sizeof(age), t->created_ms);
      printf("where\t%s\nname\t", gtask_list_state_name(t->state));
      col(t->name ? t->name : "-", '\n');
      fputs("args\t", stdout);
      args_text(t);
      printf("\nruns_before\t%u\nlost\t%u\nretry_max\t%d\ntimeout_ms\t%lld\nage\t%s\n", t->attempts,
             t->lost, t->retry_max, (long long)t->timeout_ms, age);
      if (t->last_error) {
        fputs("last_error\t", stdout);
        col(t->last_error, '\n');
      }
      if (t->worker) {
        fputs("worker\t", stdout);
        col(t->worker, '\n');
      }
      if (t->due_ms) printf("due_ms\t%lld\n", (long long)t->due_ms);
      if (t->priority) printf("priority\t%d\n", t->priority);
    }
    fflush(stdout);
  }
  gtask_result_free(r);
  gtask_task_info_free(t, t ? 1 : 0);
  gtask_client_free(cl);
  return code;
}

int cmd_inspect(cli *c, int argc, char **argv) {
  static const cli_opt opts[] = {{"state", OPT_REQUIRED, O_STATE},
                                 {"limit", OPT_REQUIRED, O_LIMIT},
                                 {"after", OPT_REQUIRED, O_AFTER},
                                 {NULL, OPT_NONE, 0}};
  cli_scan s = {.argc = argc, .argv = argv, .i = 0};
  const char *sub = NULL, *arg = NULL, *state = NULL, *limit = NULL, *after = NULL;
  for (;;) {
    const char *v;
    int r = cli_scan_next(c, &s, opts, &v);
    if (r == -1) break;
    if (r == OPT_HELP) {
      fputs(usage_inspect, stdout);
      return CLI_OK;
    }
    if (r == -2) return CLI_USAGE;
    if (r == O_STATE) state = v;
    else if (r == O_LIMIT) limit = v;
    else if (r == O_AFTER) after = v;
    else if (!sub) sub = v;
    else if (!arg) arg = v;
    else return cli_usage_error(c, "unexpected argument \"%s\"", v);
  }
  if (!sub) return cli_usage_error(c, "inspect needs queue NAME or task ID");
  if (strcmp(sub, "queue") == 0) {
    if (!arg) return cli_usage_error(c, "inspect queue needs a queue NAME");
    return inspect_queue(c, arg, state, limit, after);
  }
  if (strcmp(sub, "task") == 0) {
    if (!arg) return cli_usage_error(c, "inspect task needs a task ID");
    if (state || limit || after)
      return cli_usage_error(c, "inspect task takes no --state, --limit or --after");
    return inspect_task(c, arg);
  }
  return cli_usage_error(c, "unknown inspect subcommand \"%s\" (queue or task)", sub);
}
