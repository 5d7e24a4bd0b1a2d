/* cli.h -- what the files of the `gtask` program share (cli/ only).
 *
 * The program is built on the public API (include/gtask/gtask.h) and nothing
 * else: it never includes src/ headers.  Its files:
 *   gtask.c    main: global options, the command table, connecting, exit codes
 *   args.c     the command line: option scanning, ARG (TYPE:VALUE) and DUR
 *   output.c   printing values, results and JSON objects
 *   commands.c send, status, result, stats, dead, failed, rerun, cancel, queue
 *   inspect.c  workers, inspect queue|task (issue 20)
 *   dashboard.c the web dashboard and its JSON API (issue 20; web/ holds its
 *              HTML, CSS and JS, embedded at build time)
 *   worker.c   the worker command: signals, --tasks FILE.so, the pool
 *   builtin.c  the --builtin test tasks
 *   cron.c     cron: periodic tasks
 *   limit.c    limit: rate and concurrency limits
 *
 * Exit codes are part of the contract (README "Command line"); keep them here. */
#ifndef GTASK_CLI_H
#define GTASK_CLI_H

#include <gtask/gtask.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

enum {
  CLI_OK = 0,        /* done; the task (if any) succeeded */
  CLI_FAILED = 1,    /* the task ended FAILURE, or another error */
  CLI_USAGE = 2,     /* bad command line: unknown command or option, bad ARG/DUR */
  CLI_TIMEOUT = 3,   /* --wait ran out before the task finished (or not finished yet) */
  CLI_NOTFOUND = 4,  /* unknown (or expired) task id */
  CLI_NOREDIS = 5,   /* Redis cannot be reached */
  CLI_INDOUBT = 6,   /* sent, but the reply was lost: the ids printed may or may not be queued */
  CLI_EXISTS = 7     /* send --id / --unique: that task exists already (its id is printed) */
};

/* The global options and the connection, shared by every command. */
typedef struct cli {
  const char *redis_url;   /* --redis, else $GTASK_REDIS_URL, else the default */
  const char *backend_url; /* --backend, else redis_url */
  const char *queue;       /* --queue, default "default" */
  bool json;               /* --json: one JSON object per line */
  const char *tls_ca;      /* --tls-ca FILE: TLS, the server checked against this CA */
  const char *tls_cert;    /* --tls-cert FILE and --tls-key FILE: mutual TLS */
  const char *tls_key;
  bool tls_insecure;       /* --tls-insecure: TLS without certificate checks */
  const char *password_file; /* --password-file FILE: the password, its first line */
  const char *wait_replicas; /* --wait-replicas N: writes wait for N replicas (1 s at most) */
  const char *command;     /* the command name, for messages */
  gtask_broker *broker;    /* set by cli_connect */
  gtask_backend *backend;
  char redis_desc[160];    /* printable addresses (no password), for messages */
  char backend_desc[160];
} cli;

/* ---------------------------------------------------------------- gtask.c */

/* Checks the --queue name (a usage error, before any connection), then
 * connects broker and backend.  Returns CLI_OK, or an exit code after printing
 * the reason (CLI_NOREDIS: "gtask: cannot reach redis at ADDR: REASON"). */
int cli_connect(cli *c);
/* CLI_OK if name is a valid queue name, else CLI_USAGE after printing why.
 * Needs no connection: commands check their queues before connecting. */
int cli_check_queue(const cli *c, const char *name);
/* A new client on the connection in *out, set to c->queue.  Returns CLI_OK, or
 * an exit code after printing the reason (CLI_USAGE for a bad queue name). */
int cli_client(cli *c, gtask_client **out);
/* Maps a failed library call to an exit code and prints its message (detail
 * from the client if given; "cannot reach redis at ADDR: ..." names the
 * address that failed, once): ECONN -> CLI_NOREDIS, ENOTFOUND -> CLI_NOTFOUND,
 * EINVAL -> CLI_USAGE, ETIMEDOUT -> CLI_TIMEOUT, EINDOUBT -> CLI_INDOUBT,
 * EEXIST -> CLI_EXISTS, else CLI_FAILED. */
int cli_fail(cli *c, gtask_client *client, int rc);
/* Prints "gtask: <message>" on stderr and returns CLI_USAGE; with a hint to
 * run `gtask COMMAND --help`.  Always one line: the message usually quotes
 * the command line, whose control characters are escaped (out_text_escaped). */
int cli_usage_error(const cli *c, const char *fmt, ...) CLI_PRINTF(2, 3);
/* Prints "gtask: <message>" on stderr. */
void cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);

/* ---------------------------------------------------------------- args.c */

/* One command-line option a command accepts. */
typedef enum opt_arg {
  OPT_NONE,     /* a flag */
  OPT_REQUIRED, /* takes the next argument (or --opt=value) */
  OPT_DURATION  /* --wait [DUR]: takes the next argument only if it looks like
                   a DUR (a signed number with a unit), for the command to
                   parse: "-1s" is then a bad duration, not an argument */
} opt_arg;

typedef struct cli_opt {
  const char *name; /* without the leading "--" */
  opt_arg arg;
  int id;           /* returned by the scanner */
} cli_opt;

/* The state of a scan over argv[first..argc). */
typedef struct cli_scan {
  int argc;
  char **argv;
  int i;              /* next argument */
  bool only_positional; /* after "--" */
} cli_scan;

/* Scans the next argument.  Returns an option's id (> 0) with *value set (NULL
 * for a flag or an absent optional DUR), OPT_HELP for --help/-h, 0 for a
 * positional argument in *value, -1 at the end, or -2 after printing a usage
 * error (unknown option, missing value).  The global options (--redis,
 * --backend, --queue, --json) are accepted anywhere and stored in c.  "-5" or
 * "-1.5" is positional (a negative number); "--" ends the options. */
#define OPT_HELP 1000
int cli_scan_next(cli *c, cli_scan *s, const cli_opt *opts, const char **value);
/* Scans the arguments of a command that takes none (the global options
 * only).  Returns CLI_OK, -1 after printing usage on stdout (--help/-h: the
 * command is done), or CLI_USAGE after printing a usage error (an unknown
 * option, any positional argument). */
int cli_scan_none(cli *c, int argc, char **argv, const char *usage);

/* Parses a duration "1500ms", "2s", "1.5m", "1h" into *ms (rounded; a
 * positive one below 1 ms is 1 ms, not 0).  0 or -1 (not a duration: no unit,
 * a bad number, negative, too large). */
int cli_parse_duration(const char *s, int64_t *ms);
/* Parses a task argument: "TYPE:VALUE" (g_task's types) or a bare value
 * (integer -> int64, decimal -> float64, else string).  The value's string
 * points into s.  0, or -1 with the reason in why. */
int cli_parse_arg(const char *s, gtask_value *out, char *why, size_t whylen);
/* --retry-on timeout,error,crash: a non-empty comma-separated list of those
 * words, each at most once, into GTASK_RETRY_ON_* flags.  0 or -1. */
int cli_parse_retry_on(const char *v, unsigned *out);
/* Parses a decimal integer in [min, max].  0 or -1. */
int cli_parse_int(const char *s, long long min, long long max, long long *out);

/* ---------------------------------------------------------------- output.c */

/* Writes v as one text line's content (no newline): integers in decimal,
 * floats in the shortest form that reads back to the same value, bools as
 * true/false, strings as they are. */
void out_value_text(FILE *f, const gtask_value *v);
/* Writes len bytes of s with each control character escaped (\n, \r, \t,
 * else \xNN; 0x7f too) and each backslash doubled, so that text from a user
 * or from Redis stays on one line and within its tab-separated column. */
void out_text_escaped(FILE *f, const char *s, size_t len);
/* Shortest "%.*g" form of x that strtod (or strtof when is_float32) reads back
 * to the same value; "NaN", "Infinity", "-Infinity" for the others. */
void out_format_double(char *buf, size_t size, double x, bool is_float32);

/* A JSON object printed as one line: out_obj_begin, fields, out_obj_end. */
typedef struct out_obj {
  FILE *f;
  bool first;
} out_obj;
void out_obj_begin(out_obj *o, FILE *f);
void out_obj_str(out_obj *o, const char *key, const char *val); /* NULL -> null */
void out_obj_strn(out_obj *o, const char *key, const char *val, size_t len);
void out_obj_int(out_obj *o, const char *key, long long val);
void out_obj_bool(out_obj *o, const char *key, bool val);
/* "values": [...] -- each value as a JSON number, bool or string (non-finite
 * floats as the strings "NaN", "Infinity", "-Infinity"). */
void out_obj_values(out_obj *o, const char *key, const gtask_value *vals, size_t n);
/* "key": [strings...] */
void out_obj_strs(out_obj *o, const char *key, char *const *vals, size_t n);
/* Only "key": -- the caller writes the value (raw JSON) to o->f. */
void out_obj_key(out_obj *o, const char *key);
void out_obj_end(out_obj *o); /* "}\n" and a flush */
/* A JSON string literal (quotes included) for len bytes of s. */
void out_json_string(FILE *f, const char *s, size_t len);
/* {"task_id": id, "status": "CANCELLED", "running": running} and a newline:
 * what `gtask --json cancel` and the dashboard's POST /api/cancel answer. */
void out_cancelled_json(FILE *f, const char *id, bool running);

/* Prints a task's result: --json: {"task_id","status","values","error","attempts"};
 * text: the values one per line on stdout, an error on stderr.  Returns the
 * exit code for it: CLI_OK (SUCCESS), CLI_FAILED (FAILURE), CLI_TIMEOUT (not
 * final). */
int out_result(const cli *c, const gtask_result *r);

/* ---------------------------------------------------------------- commands.c, worker.c */

int cmd_send(cli *c, int argc, char **argv);
int cmd_status(cli *c, int argc, char **argv);
int cmd_result(cli *c, int argc, char **argv);
int cmd_stats(cli *c, int argc, char **argv);
int cmd_dead(cli *c, int argc, char **argv);
int cmd_failed(cli *c, int argc, char **argv);
int cmd_queue(cli *c, int argc, char **argv);
int cmd_rerun(cli *c, int argc, char **argv);
int cmd_cancel(cli *c, int argc, char **argv);
int cmd_worker(cli *c, int argc, char **argv);
int cmd_cron(cli *c, int argc, char **argv);      /* cron.c */
int cmd_scheduler(cli *c, int argc, char **argv); /* cron.c */
int cmd_limit(cli *c, int argc, char **argv);     /* limit.c */
/* Prints limits: `limit list` lines, or (stats) indented lines under a
 * queue's counts; --json: one object each (limit.c). */
void cli_print_limits(const cli *c, const gtask_limit *v, size_t n, bool stats);
/* The worker's and the scheduler's log lines on stderr, with a timestamp
 * (worker.c; thread-safe: a gtask_log_fn). */
void cli_log_line(gtask_log_level level, const char *line, void *udata);
int cmd_workers(cli *c, int argc, char **argv);
int cmd_inspect(cli *c, int argc, char **argv);
int cmd_dashboard(cli *c, int argc, char **argv);

/* ---------------------------------------------------------------- builtin.c */

/* Registers add, echo, sleep, fail and crash on s.  0 or a GTASK_E* code. */
int builtin_register(gtask_server *s);

#endif /* GTASK_CLI_H */
