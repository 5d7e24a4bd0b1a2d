/* tz.h -- time zones for cron schedules (tz.c), never installed.
 *
 * A zone is read from its TZif file (RFC 8536) under /usr/share/zoneinfo
 * (Debian's tzdata) into memory once, and is then an immutable value: every
 * query is a pure function of the zone and an instant, so any number of
 * threads may share one.  This is why the library does not use
 * setenv("TZ") + localtime_r(): TZ is process-global state, and changing it
 * while another thread reads it is a data race (issue 19).
 *
 * Times are seconds: instants are Unix seconds (UTC); "civil" seconds are a
 * wall-clock reading counted the same way (days since 1970-01-01 * 86400 +
 * seconds of the day), i.e. instant + UTC offset. */
#ifndef GTASK_TZ_H
#define GTASK_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gtask__tz gtask__tz;

/* Loads zone name ("UTC", "Europe/Berlin", ...).  "UTC" needs no file.
 * Returns 0 and *out (free with gtask__tz_free), or GTASK_EINVAL (a bad or
 * unknown name, an unreadable or malformed file) or GTASK_ENOMEM, with the
 * reason in gtask_last_error(). */
int gtask__tz_load(const char *name, gtask__tz **out);
/* Parses a TZif file's bytes (RFC 8536) into a zone named name: what
 * gtask__tz_load does after reading the file.  GTASK_EINVAL with the reason
 * in gtask_last_error() for anything malformed -- never a read outside buf. */
int gtask__tz_parse(const char *name, const unsigned char *buf, size_t len, gtask__tz **out);
void gtask__tz_free(gtask__tz *z);
const char *gtask__tz_name(const gtask__tz *z);
/* True for UTC itself (the offset is 0 at every instant). */
bool gtask__tz_is_utc(const gtask__tz *z);

/* The stretch of time around instant t during which the zone's UTC offset is
 * constant: *start <= t < *end (INT64_MIN / INT64_MAX when unbounded), with
 * the offset in seconds east of UTC as the return value.  Adjacent stretches
 * may have the same offset (only the abbreviation changed). */
int32_t gtask__tz_lookup(const gtask__tz *z, int64_t t, int64_t *start, int64_t *end);

/* Calendar arithmetic on days since 1970-01-01 (proleptic Gregorian). */
int64_t gtask__days_from_civil(int64_t y, int m, int d);
void gtask__civil_from_days(int64_t days, int64_t *y, int *m, int *d);
int gtask__days_in_month(int64_t y, int m);

#endif /* GTASK_TZ_H */
