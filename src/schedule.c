/* schedule.c -- periodic task definitions (issue 19): what an entry is, how
 * it is stored in Redis (P:cron, JSON), the deterministic task id of each
 * tick, and the client calls behind `gtask cron add|list|remove`.
 *
 * A definition carries the task as a *template*: the message a send with the
 * entry's send conf would queue, encoded once when the entry is made.  At each
 * tick the scheduler stamps it (creation time, expiry) and queues it under
 * the tick's id.  So a stored entry needs no knowledge of send options: any
 * field the message format gains travels in the template. */
#include "schedule.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Definitions: version 1, or 2 with the send options d (delay) and u
 * (unique).  An entry without them is stored as version 1, which schedulers
 * of every version read; one with them as version 2, which schedulers that
 * predate those options refuse (they log it and fire it not) rather than fire
 * it without them (docs/PROTOCOL.md, "Periodic tasks"). */
#define DEF_VERSION 1
#define DEF_VERSION_OPTIONS 2

void gtask__sched_def_clear(gtask__sched_def *d) {
  if (!d) return;
  gtask__free(d->name);
  gtask__free(d->spec);
  gtask__free(d->zone);
  gtask__free(d->queue);
  gtask__free(d->task);
  gtask__free(d->tmpl);
  gtask_cron_free(d->cron);
  memset(d, 0, sizeof(*d));
}

static int check_name(const char *name) {
  if (gtask__queue_valid(name)) return 0;
  gtask__set_error("invalid periodic task name \"%s\" (1..128 of A-Z a-z 0-9 _ . : -)",
                   name ? name : "(null)");
  return GTASK_EINVAL;
}

/* Copies the strings that the definition keeps besides the template. */
static int def_strings(gtask__sched_def *d, const char *name, const char *queue,
                       const char *task) {
  d->name = gtask__strdup(name);
  d->spec = gtask__strdup(gtask_cron_spec(d->cron));
  d->zone = gtask__strdup(gtask_cron_zone(d->cron));
  d->queue = gtask__strdup(queue);
  d->task = gtask__strdup(task);
  return d->name && d->spec && d->zone && d->queue && d->task ? 0 : GTASK_ENOMEM;
}

int gtask__sched_def_make(gtask__sched_def *d, const char *name, const char *spec,
                          const char *zone, gtask_missed missed, const gtask_send_conf *conf,
                          const char *default_queue, const gtask_value *args, size_t nargs,
                          int64_t now_ms) {
  memset(d, 0, sizeof(*d));
  int rc = check_name(name);
  if (rc) return rc;
  if (!conf || (nargs && !args)) {
    gtask__set_error("periodic task %s: a send conf (and its arguments) is required", name);
    return GTASK_EINVAL;
  }
  if (gtask__send_conf_has_id(conf)) {
    gtask__set_error("periodic task %s: a send conf with an id (each tick has its own id)", name);
    return GTASK_EINVAL;
  }
  if (missed != GTASK_MISSED_SKIP && missed != GTASK_MISSED_LATEST) {
    gtask__set_error("periodic task %s: missed policy %d (GTASK_MISSED_SKIP or _LATEST)", name,
                     (int)missed);
    return GTASK_EINVAL;
  }
  if ((rc = gtask_cron_new(&d->cron, spec, zone)) != 0) return rc;
  const char *queue = gtask__send_conf_queue(conf) ? gtask__send_conf_queue(conf) : default_queue;
  d->missed = missed;
  d->created_ms = now_ms;
  d->delay_ms = gtask__send_conf_delay(conf);
  d->unique_ms = gtask__send_conf_unique(conf);
  rc = gtask__send_conf_encode(conf, args, nargs, now_ms, &d->tmpl, &d->tmpl_len);
  if (rc == GTASK_EINVAL || rc == GTASK_ERANGE) {
    char why[256];
    gtask__fmt(why, sizeof(why), "%s", gtask_last_error());
    gtask__set_error("periodic task %s: %s", name, why);
  }
  if (rc == 0) rc = def_strings(d, name, queue, gtask__send_conf_name(conf));
  if (rc) gtask__sched_def_clear(d);
  return rc;
}

int gtask__sched_def_encode(const gtask__sched_def *d, char **json, size_t *len) {
  gtask__json_init();
  json_t *o = json_object();
  if (!o) return GTASK_ENOMEM;
  bool options = d->delay_ms > 0 || d->unique_ms >= 0;
  int bad = json_object_set_new(o, "v", json_integer(options ? DEF_VERSION_OPTIONS : DEF_VERSION));
  if (d->delay_ms > 0) bad |= json_object_set_new(o, "d", json_integer(d->delay_ms));
  if (d->unique_ms == GTASK_UNIQUE_UNTIL_DONE) bad |= json_object_set_new(o, "u", json_string("done"));
  else if (d->unique_ms > 0) bad |= json_object_set_new(o, "u", json_integer(d->unique_ms));
  bad |= json_object_set_new(o, "spec", json_string(d->spec));
  bad |= json_object_set_new(o, "tz", json_string(d->zone));
  bad |= json_object_set_new(o, "q", json_string(d->queue));
  bad |= json_object_set_new(o, "n", json_string(d->task));
  bad |= json_object_set_new(o, "missed",
                             json_string(d->missed == GTASK_MISSED_LATEST ? "latest" : "skip"));
  bad |= json_object_set_new(o, "c", json_integer(d->created_ms));
  bad |= json_object_set_new(o, "m", json_stringn(d->tmpl, d->tmpl_len));
  char *s = bad ? NULL : json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (!s) return GTASK_ENOMEM;
  *json = s;
  *len = strlen(s);
  return 0;
}

static const char *obj_str(json_t *o, const char *key, size_t *len) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v)) return NULL;
  if (len) *len = json_string_length(v);
  return json_string_value(v);
}

int gtask__sched_def_decode(const char *name, const char *json, size_t len, gtask__sched_def *d) {
  memset(d, 0, sizeof(*d));
  gtask__json_init();
  json_error_t err;
  json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
  const char *why = NULL;
  json_int_t v = json_is_object(o) ? json_integer_value(json_object_get(o, "v")) : 0;
  if (!json_is_object(o)) why = "not a JSON object";
  else if (v != DEF_VERSION && v != DEF_VERSION_OPTIONS) why = "not version 1 or 2";
  /* Version 2: d (delay ms, >= 0) and u (unique: TTL ms > 0, or "done"). */
  json_t *dj = json_is_object(o) ? json_object_get(o, "d") : NULL;
  json_t *uj = json_is_object(o) ? json_object_get(o, "u") : NULL;
  int64_t delay_ms = 0, unique_ms = -1;
  if (!why && v == DEF_VERSION_OPTIONS) {
    if (dj && (!json_is_integer(dj) || json_integer_value(dj) < 0)) why = "has a bad delay (d)";
    else if (dj) delay_ms = json_integer_value(dj);
    if (uj && json_is_string(uj) && strcmp(json_string_value(uj), "done") == 0)
      unique_ms = GTASK_UNIQUE_UNTIL_DONE;
    else if (uj && json_is_integer(uj) && json_integer_value(uj) > 0)
      unique_ms = json_integer_value(uj);
    else if (uj)
      why = "has a bad unique option (u)";
  }
  const char *spec = NULL, *zone = NULL, *queue = NULL, *task = NULL, *missed = NULL, *tmpl = NULL;
  size_t tmpl_len = 0;
  if (!why) {
    spec = obj_str(o, "spec", NULL);
    zone = obj_str(o, "tz", NULL);
    queue = obj_str(o, "q", NULL);
    task = obj_str(o, "n", NULL);
    missed = obj_str(o, "missed", NULL);
    tmpl = obj_str(o, "m", &tmpl_len);
    if (!spec || !zone || !queue || !task || !missed || !tmpl ||
        !json_is_integer(json_object_get(o, "c")))
      why = "a field is missing or of the wrong type";
    else if (!gtask__queue_valid(queue))
      why = "its queue name is invalid";
    else if (strcmp(missed, "skip") != 0 && strcmp(missed, "latest") != 0)
      why = "missed is neither skip nor latest";
  }
  if (why) {
    json_decref(o);
    gtask__set_error("periodic task %s: stored definition %s", name, why);
    return GTASK_EPROTO;
  }
  int rc = gtask_cron_new(&d->cron, spec, zone);
  if (rc == 0) {
    d->missed = strcmp(missed, "latest") == 0 ? GTASK_MISSED_LATEST : GTASK_MISSED_SKIP;
    d->created_ms = json_integer_value(json_object_get(o, "c"));
    d->delay_ms = delay_ms;
    d->unique_ms = unique_ms;
    d->tmpl = gtask__strndup(tmpl, tmpl_len);
    d->tmpl_len = tmpl_len;
    rc = d->tmpl ? def_strings(d, name, queue, task) : GTASK_ENOMEM;
  }
  json_decref(o);
  if (rc) gtask__sched_def_clear(d);
  return rc;
}

void gtask__cron_task_id(const char *name, int64_t tick_ms, char out[GTASK_ID_SIZE]) {
  char in[200];
  int n = snprintf(in, sizeof(in), "gtask cron\n%s\n%lld", name, (long long)tick_ms);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (n < 0 || !EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha1(), NULL) || mdlen < 16)
    memset(md, 0, sizeof(md)); /* cannot happen with OpenSSL's SHA-1 */
  md[6] = (unsigned char)((md[6] & 0x0f) | 0x50); /* version 5: name-based, SHA-1 */
  md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[md[i] >> 4];
    out[o++] = hex[md[i] & 15];
  }
  out[o] = '\0';
}

int gtask__sched_body(const gtask__sched_def *d, const char *id, int64_t now_ms, int64_t ttl_ms,
                      char **body, size_t *len, char ukey[65]) {
  ukey[0] = '\0';
  gtask_task *t;
  char why[200];
  int rc = gtask__task_decode_in(d->tmpl, d->tmpl_len, id, d->queue, &t, why, sizeof(why));
  if (rc) {
    if (rc != GTASK_ENOMEM) gtask__set_error("periodic task %s: its task message: %s", d->name, why);
    return rc;
  }
  t->created_ms = now_ms;
  t->expires_ms = ttl_ms ? now_ms + d->delay_ms + ttl_ms : 0; /* as a delayed send's */
  rc = gtask__task_encode(t, body, len);
  if (rc == 0 && d->unique_ms >= 0) rc = gtask__unique_digest(t->name, t->args, t->nargs, ukey);
  if (rc && *body) {
    gtask__free(*body);
    *body = NULL;
  }
  gtask__task_free(t);
  return rc;
}

/* ---------------------------------------------------------------- client calls */

static int lib_err(gtask_client *c, int rc, const char *what) {
  char detail[256];
  gtask__fmt(detail, sizeof(detail), "%s", gtask_last_error());
  if (rc == GTASK_EINVAL || rc == GTASK_ENOTFOUND || rc == GTASK_EPROTO)
    return gtask__client_err(c, rc, "%s", detail);
  return gtask__client_err(c, rc, "%s: %s (%s)", what, gtask_strerror(rc), detail);
}

GTASK_EXTERN int gtask_client_cron_add(gtask_client *c, const char *name, const char *spec,
                                       const char *zone, gtask_missed missed,
                                       const gtask_send_conf *conf, const gtask_value *args,
                                       size_t nargs) {
  if (!c) return GTASK_EINVAL;
  gtask__sched_def d;
  int rc = gtask__sched_def_make(&d, name, spec, zone, missed, conf, gtask__client_queue(c), args,
                                 nargs, gtask__now_ms());
  if (rc) return lib_err(c, rc, "cron add");
  char *json = NULL;
  size_t len = 0;
  rc = gtask__sched_def_encode(&d, &json, &len);
  if (rc == 0) rc = gtask__cron_put(gtask__client_broker(c), d.name, json, len);
  gtask__free(json);
  gtask__sched_def_clear(&d);
  return rc ? lib_err(c, rc, "cron add") : 0;
}

GTASK_EXTERN int gtask_client_cron_remove(gtask_client *c, const char *name) {
  if (!c) return GTASK_EINVAL;
  int rc = check_name(name);
  if (rc == 0) rc = gtask__cron_del(gtask__client_broker(c), name);
  return rc ? lib_err(c, rc, "cron remove") : 0;
}

GTASK_EXTERN void gtask_cron_list_free(gtask_cron_entry *entries, size_t n) {
  for (size_t k = 0; entries && k < n; k++) {
    gtask__free(entries[k].name);
    gtask__free(entries[k].spec);
    gtask__free(entries[k].zone);
    gtask__free(entries[k].queue);
    gtask__free(entries[k].task);
  }
  gtask__free(entries);
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const gtask_cron_entry *)a)->name, ((const gtask_cron_entry *)b)->name);
}

/* Fills e from a stored definition and its fire state.  A definition that
 * does not parse is listed with the reason as its spec, so that it can be
 * seen and removed. */
static int entry_fill(gtask_client *c, const gtask__cron_raw *raw, int64_t now,
                      gtask_cron_entry *e) {
  gtask__sched_def d;
  int rc = gtask__sched_def_decode(raw->name, raw->def, raw->len, &d);
  if (rc == GTASK_ENOMEM) return rc;
  if (rc) {
    e->name = gtask__strdup(raw->name);
    e->spec = gtask__strdup(gtask_last_error());
    e->zone = gtask__strdup("");
    e->queue = gtask__strdup("");
    e->task = gtask__strdup("");
    return e->name && e->spec && e->zone && e->queue && e->task ? 0 : GTASK_ENOMEM;
  }
  gtask__cron_fired st;
  rc = gtask__cron_state(gtask__client_broker(c), d.queue, d.name, &st);
  if (rc == 0) {
    e->missed = d.missed;
    e->created_ms = d.created_ms;
    e->last_ms = st.last_ms;
    memcpy(e->last_id, st.id, GTASK_ID_SIZE);
    e->last_at_ms = st.at_ms;
    e->skipped = st.skipped;
    int64_t base = st.last_ms > d.created_ms ? st.last_ms : d.created_ms;
    if (gtask_cron_next(d.cron, base > now ? base : now, &e->next_ms) != 0) e->next_ms = 0;
    /* Take the strings over. */
    e->name = d.name, e->spec = d.spec, e->zone = d.zone, e->queue = d.queue, e->task = d.task;
    d.name = d.spec = d.zone = d.queue = d.task = NULL;
  }
  gtask__sched_def_clear(&d);
  return rc;
}

GTASK_EXTERN int gtask_client_cron_list(gtask_client *c, const char *name,
                                        gtask_cron_entry **out, size_t *n) {
  if (!c || !out || !n) return GTASK_EINVAL;
  *out = NULL;
  *n = 0;
  int rc = name ? check_name(name) : 0;
  if (rc) return lib_err(c, rc, "cron list");
  gtask__cron_raw *raw;
  size_t nraw;
  rc = gtask__cron_all(gtask__client_broker(c), name, &raw, &nraw);
  if (rc) return lib_err(c, rc, "cron list");
  gtask_cron_entry *v = nraw ? gtask__calloc(nraw, sizeof(*v)) : NULL;
  if (nraw && !v) rc = GTASK_ENOMEM;
  int64_t now = gtask__now_ms();
  for (size_t k = 0; k < nraw && rc == 0; k++) rc = entry_fill(c, &raw[k], now, &v[k]);
  gtask__cron_defs_free(raw, nraw);
  if (rc) {
    gtask_cron_list_free(v, nraw);
    return lib_err(c, rc, "cron list");
  }
  if (nraw > 1) qsort(v, nraw, sizeof(*v), entry_cmp);
  *out = v;
  *n = nraw;
  return 0;
}
