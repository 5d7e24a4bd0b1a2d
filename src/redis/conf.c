/* conf.c -- gtask_redis_conf: where a Redis broker or backend connects, and
 * how (g_task's NewRedisConf and its setters).
 *
 * Accepted addresses (gtask_redis_conf_new):
 *   host:port                          g_task's form; "host" alone means port 6379
 *   [v6addr]:port, [v6addr]            IPv6 literals in brackets
 *   redis://[[user]:password@]host[:port][/db]
 *                                      user and password are percent-decoded;
 *                                      "redis://secret@h" means password "secret"
 *                                      (as redis-cli reads it: a user name
 *                                      without a password cannot AUTH anyway)
 *   unix:/path/to/sock[?db=N]          unix:///path[?db=N] too
 * Everything else, including trailing characters, is GTASK_EINVAL with the
 * reason in gtask_last_error().  The URL is quoted in that message with any
 * user:password part replaced by "***", and describe never shows it either.
 */
#include "conf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_URL "127.0.0.1:6379"
#define DEFAULT_PORT 6379
#define DEFAULT_POOL_SIZE 16
#define DEFAULT_EXPIRE_MS 86400000 /* 24 h */
#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_PREFIX "gtask"
#define MAX_DB 100000
#define MAX_HOST 255      /* longer than any DNS name */
#define MAX_UNIX_PATH 107 /* sizeof(sockaddr_un.sun_path) - 1 on Linux */

/* Sets the thread's error to `invalid redis url "<url>": <reason>`, with the
 * URL's user:password part hidden, and returns GTASK_EINVAL. */
static int bad_url(const char *url, const char *fmt, ...) GTASK__PRINTF(2, 3);
static int bad_url(const char *url, const char *fmt, ...) {
  char reason[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  const char *at = strrchr(url, '@');
  if (at == NULL) {
    gtask__set_error("invalid redis url \"%.120s\": %s", url, reason);
  } else {
    const char *scheme = strstr(url, "://");
    int keep = scheme != NULL && scheme < at ? (int)(scheme + 3 - url) : 0;
    if (keep > 16)
      keep = 0;
    gtask__set_error("invalid redis url \"%.*s***%.100s\": %s", keep, url, at, reason);
  }
  return GTASK_EINVAL;
}

/* Parses s[0..len) as a decimal number in [0, max]: digits only (no sign, no
 * spaces), at least one. */
static bool parse_uint(const char *s, size_t len, long max, long *out) {
  if (len == 0)
    return false;
  long x = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    x = x * 10 + (s[i] - '0');
    if (x > max)
      return false; /* also stops before any overflow */
  }
  *out = x;
  return true;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..len) into a new string *out (NULL when len is 0).
 * 0, GTASK_ENOMEM, or GTASK_EINVAL for a bad escape or an escaped NUL. */
static int pct_decode(const char *url, const char *what, const char *s, size_t len,
                      char **out) {
  *out = NULL;
  if (len == 0)
    return 0;
  char *d = gtask__malloc(len + 1);
  if (d == NULL)
    return GTASK_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') {
      d[n++] = s[i];
      continue;
    }
    int hi = i + 2 < len ? hex_digit(s[i + 1]) : -1;
    int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
    if (lo < 0 || (hi == 0 && lo == 0)) {
      gtask__free(d);
      return bad_url(url, "bad percent escape in %s", what);
    }
    d[n++] = (char)(hi * 16 + lo);
    i += 2;
  }
  d[n] = '\0';
  *out = d;
  return 0;
}

static bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_';
}

/* Characters of a bracketed IPv6 literal, zone id ("%eth0") included. */
static bool ipv6_char(char c) { return host_char(c) || c == ':' || c == '%'; }

/* Parses "host", "host:port", "[v6]" or "[v6]:port" from s[0..len) into c. */
static int parse_hostport(const char *url, const char *s, size_t len, gtask_redis_conf *c) {
  const char *host, *port = NULL;
  size_t hlen, plen = 0;
  bool has_port = false;
  if (len > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', len);
    if (close == NULL)
      return bad_url(url, "missing ']' after IPv6 address");
    host = s + 1;
    hlen = (size_t)(close - host);
    if (hlen == 0)
      return bad_url(url, "empty host");
    for (size_t i = 0; i < hlen; i++)
      if (!ipv6_char(host[i]))
        return bad_url(url, "invalid character in IPv6 address");
    if (memchr(host, ':', hlen) == NULL)
      return bad_url(url, "brackets around something that is not an IPv6 address");
    size_t rest = len - (size_t)(close + 1 - s);
    if (rest > 0) {
      if (close[1] != ':')
        return bad_url(url, "unexpected characters after ']'");
      has_port = true;
      port = close + 2;
      plen = rest - 1;
    }
  } else {
    const char *colon = memchr(s, ':', len);
    host = s;
    hlen = colon != NULL ? (size_t)(colon - s) : len;
    if (colon != NULL) {
      has_port = true;
      port = colon + 1;
      plen = len - hlen - 1;
      if (memchr(port, ':', plen) != NULL)
        return bad_url(url, "an IPv6 address must be written in brackets, as [::1]:6379");
    }
    if (hlen == 0)
      return bad_url(url, "empty host");
    for (size_t i = 0; i < hlen; i++)
      if (!host_char(host[i]))
        return bad_url(url, "invalid character '%c' in host", host[i]);
  }
  if (hlen > MAX_HOST)
    return bad_url(url, "host name longer than %d bytes", MAX_HOST);
  long p = DEFAULT_PORT;
  if (has_port && !parse_uint(port, plen, 65535, &p))
    return bad_url(url, "invalid port \"%.*s\"", (int)(plen < 20 ? plen : 20), port);
  if (p == 0)
    return bad_url(url, "port 0");
  c->port = (int)p;
  c->host = gtask__strndup(host, hlen);
  return c->host != NULL ? 0 : GTASK_ENOMEM;
}

/* "redis://[[user]:password@]host[:port][/db]" after the scheme (s). */
static int parse_redis_url(const char *url, const char *s, gtask_redis_conf *c) {
  const char *slash = strchr(s, '/');
  size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);

  /* The user information ends at the last '@' of the authority, so that an
   * unescaped '@' in a password still works. */
  const char *at = NULL;
  for (size_t i = 0; i < alen; i++)
    if (s[i] == '@')
      at = s + i;
  if (at != NULL) {
    size_t ulen = (size_t)(at - s);
    const char *colon = memchr(s, ':', ulen);
    int rc;
    if (colon != NULL) {
      if ((rc = pct_decode(url, "user name", s, (size_t)(colon - s), &c->user)) != 0 ||
          (rc = pct_decode(url, "password", colon + 1, ulen - (size_t)(colon - s) - 1,
                           &c->password)) != 0)
        return rc;
    } else if ((rc = pct_decode(url, "password", s, ulen, &c->password)) != 0) {
      return rc;
    }
    alen -= ulen + 1;
    s = at + 1;
  }
  int rc = parse_hostport(url, s, alen, c);
  if (rc != 0)
    return rc;
  if (slash != NULL && slash[1] != '\0') {
    long db;
    if (!parse_uint(slash + 1, strlen(slash + 1), MAX_DB, &db))
      return bad_url(url, "invalid db \"%.20s\" (expected 0..%d)", slash + 1, MAX_DB);
    c->db = (int)db;
  }
  return 0;
}

/* "/path[?db=N]" after "unix:" (or "unix://"). */
static int parse_unix_url(const char *url, const char *s, gtask_redis_conf *c) {
  if (strncmp(s, "//", 2) == 0) {
    s += 2;
    if (s[0] != '/')
      return bad_url(url, "unix:// must be followed by an absolute path (unix:///path)");
  }
  const char *q = strchr(s, '?');
  size_t plen = q != NULL ? (size_t)(q - s) : strlen(s);
  if (plen == 0)
    return bad_url(url, "empty socket path");
  if (plen > MAX_UNIX_PATH)
    return bad_url(url, "socket path longer than %d bytes", MAX_UNIX_PATH);
  if (q != NULL) {
    long db;
    if (strncmp(q + 1, "db=", 3) != 0)
      return bad_url(url, "unknown parameter (only ?db=N is accepted)");
    if (!parse_uint(q + 4, strlen(q + 4), MAX_DB, &db))
      return bad_url(url, "invalid db \"%.20s\" (expected 0..%d)", q + 4, MAX_DB);
    c->db = (int)db;
  }
  c->unix_path = gtask__strndup(s, plen);
  return c->unix_path != NULL ? 0 : GTASK_ENOMEM;
}

static void describe(gtask_redis_conf *c) {
  if (c->unix_path != NULL)
    /* "unix:/p" reads back as /p; a path starting "//" needs the "unix://"
     * form, or "unix://x" would read as the path "x". */
    gtask__fmt(c->describe, sizeof(c->describe), "unix:%s%s?db=%d",
               strncmp(c->unix_path, "//", 2) == 0 ? "//" : "", c->unix_path, c->db);
  else if (strchr(c->host, ':') != NULL)
    gtask__fmt(c->describe, sizeof(c->describe), "redis://[%s]:%d/%d", c->host, c->port, c->db);
  else
    gtask__fmt(c->describe, sizeof(c->describe), "redis://%s:%d/%d", c->host, c->port, c->db);
}

int gtask_redis_conf_new(gtask_redis_conf **out, const char *url, const char *password,
                         int db) {
  if (out == NULL) {
    gtask__set_error("gtask_redis_conf_new: out is NULL");
    return GTASK_EINVAL;
  }
  *out = NULL;
  if (db < -1 || db > MAX_DB) {
    gtask__set_error("invalid redis db %d (expected 0..%d, or -1 to keep the URL's)", db,
                     MAX_DB);
    return GTASK_EINVAL;
  }
  if (url == NULL)
    url = DEFAULT_URL;

  gtask_redis_conf *c = gtask__calloc(1, sizeof(*c));
  if (c == NULL)
    goto oom;
  c->pool_size = DEFAULT_POOL_SIZE;
  c->expire_ms = DEFAULT_EXPIRE_MS;
  c->timeout_ms = DEFAULT_TIMEOUT_MS;
  if ((c->prefix = gtask__strdup(DEFAULT_PREFIX)) == NULL)
    goto oom;

  int rc;
  const char *scheme_end = strstr(url, "://");
  if (url[0] == '\0') {
    rc = bad_url(url, "empty");
  } else if (strncasecmp(url, "unix:", 5) == 0) {
    rc = parse_unix_url(url, url + 5, c);
  } else if (strncasecmp(url, "redis://", 8) == 0) {
    rc = parse_redis_url(url, url + 8, c);
  } else if (strncasecmp(url, "rediss://", 9) == 0) {
    rc = bad_url(url, "TLS (rediss://) is not supported");
  } else if (scheme_end != NULL) {
    rc = bad_url(url, "unknown scheme (expected redis:// or unix:)");
  } else {
    rc = parse_hostport(url, url, strlen(url), c);
  }
  if (rc == GTASK_ENOMEM)
    goto oom;
  if (rc != 0) {
    gtask_redis_conf_free(c);
    return rc;
  }

  if (password != NULL && password[0] != '\0') {
    gtask__free(c->password);
    if ((c->password = gtask__strdup(password)) == NULL)
      goto oom;
  }
  if (db >= 0)
    c->db = db;
  describe(c);
  *out = c;
  return 0;
oom:
  gtask_redis_conf_free(c);
  gtask__set_error("out of memory");
  return GTASK_ENOMEM;
}

/* Frees a secret after wiping it, so that it does not linger in freed memory. */
static void free_secret(char *s) {
  if (s != NULL) {
    explicit_bzero(s, strlen(s));
    gtask__free(s);
  }
}

void gtask_redis_conf_free(gtask_redis_conf *c) {
  if (c == NULL)
    return;
  gtask__free(c->host);
  gtask__free(c->unix_path);
  gtask__free(c->user);
  free_secret(c->password);
  gtask__free(c->prefix);
  gtask__free(c);
}

int gtask_redis_conf_set_pool_size(gtask_redis_conf *c, int n) {
  if (c == NULL || n < 1) {
    gtask__set_error("redis pool size must be >= 1 (got %d)", n);
    return GTASK_EINVAL;
  }
  c->pool_size = n;
  return 0;
}

int gtask_redis_conf_set_expire_time(gtask_redis_conf *c, int64_t ms) {
  if (c == NULL || ms < 1000) {
    gtask__set_error("redis expire time must be >= 1000 ms (got %lld)", (long long)ms);
    return GTASK_EINVAL;
  }
  c->expire_ms = ms;
  return 0;
}

int gtask_redis_conf_set_timeout(gtask_redis_conf *c, int64_t ms) {
  if (c == NULL || ms < 1) {
    gtask__set_error("redis timeout must be >= 1 ms (got %lld)", (long long)ms);
    return GTASK_EINVAL;
  }
  c->timeout_ms = ms;
  return 0;
}

/* Same alphabet and length limit (1..128) as queue names. */
int gtask_redis_conf_set_prefix(gtask_redis_conf *c, const char *prefix) {
  if (c == NULL || !gtask__queue_valid(prefix)) {
    gtask__set_error("redis key prefix must be 1..128 of [A-Za-z0-9_.:-] (got \"%.40s\")",
                     prefix != NULL ? prefix : "(null)");
    return GTASK_EINVAL;
  }
  char *p = gtask__strdup(prefix);
  if (p == NULL) {
    gtask__set_error("out of memory");
    return GTASK_ENOMEM;
  }
  gtask__free(c->prefix);
  c->prefix = p;
  return 0;
}

const char *gtask_redis_conf_describe(const gtask_redis_conf *c) {
  return c != NULL ? c->describe : "";
}

int gtask__redis_conf_copy(const gtask_redis_conf *c, gtask_redis_conf **out) {
  *out = NULL;
  if (c == NULL)
    return GTASK_EINVAL;
  gtask_redis_conf *d = gtask__calloc(1, sizeof(*d));
  if (d == NULL)
    return GTASK_ENOMEM;
  *d = *c;
  d->host = gtask__strdup(c->host);
  d->unix_path = gtask__strdup(c->unix_path);
  d->user = gtask__strdup(c->user);
  d->password = gtask__strdup(c->password);
  d->prefix = gtask__strdup(c->prefix);
  if ((c->host != NULL && d->host == NULL) || (c->unix_path != NULL && d->unix_path == NULL) ||
      (c->user != NULL && d->user == NULL) || (c->password != NULL && d->password == NULL) ||
      (c->prefix != NULL && d->prefix == NULL)) {
    gtask_redis_conf_free(d);
    return GTASK_ENOMEM;
  }
  *out = d;
  return 0;
}

bool gtask__redis_conf_same_db(const gtask_redis_conf *a, const gtask_redis_conf *b) {
  if (a == NULL || b == NULL || a->db != b->db)
    return false;
  if (a->unix_path != NULL || b->unix_path != NULL)
    return a->unix_path != NULL && b->unix_path != NULL &&
           strcmp(a->unix_path, b->unix_path) == 0;
  return a->port == b->port && a->host != NULL && b->host != NULL &&
         strcasecmp(a->host, b->host) == 0;
}
