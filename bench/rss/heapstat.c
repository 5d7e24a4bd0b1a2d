/* heapstat.c -- an LD_PRELOAD helper for bench/rss/probe: a thread of its own
 * in the worker process reads one-letter commands from the FIFO
 * $HEAPSTAT_FIFO and appends one line per command to $HEAPSTAT_OUT:
 *
 *   s   VmRSS, VmHWM and glibc's mallinfo2() (bytes in use, free in the arenas)
 *   t   malloc_trim(0), its duration, then the same line
 *
 * It allocates nothing itself after start-up, and runs on its own thread, so
 * that it never interrupts an allocation (a signal handler could).  Built by
 * the probe: cc -O2 -shared -fPIC heapstat.c -o heapstat.so -lpthread */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *fifo_path, *out_path;

static long status_kb(const char *buf, const char *key) {
  const char *p = strstr(buf, key);
  return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static void report(const char *what, long trim_us) {
  char st[4096];
  long rss = -1, hwm = -1;
  int fd = open("/proc/self/status", O_RDONLY);
  if (fd >= 0) {
    ssize_t n = read(fd, st, sizeof(st) - 1);
    close(fd);
    if (n > 0) {
      st[n] = '\0';
      rss = status_kb(st, "VmRSS:");
      hwm = status_kb(st, "VmHWM:");
    }
  }
  struct mallinfo2 m = mallinfo2();
  char line[512];
  int len = snprintf(line, sizeof(line),
                     "%s trim_us=%ld rss_kb=%ld hwm_kb=%ld arena=%zu hblkhd=%zu uordblks=%zu "
                     "fordblks=%zu ordblks=%zu\n",
                     what, trim_us, rss, hwm, m.arena, m.hblkhd, m.uordblks, m.fordblks, m.ordblks);
  int out = open(out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (out < 0) return;
  ssize_t w = write(out, line, (size_t)len);
  (void)w;
  close(out);
}

static long elapsed_us(const struct timespec *a, const struct timespec *b) {
  return (long)(b->tv_sec - a->tv_sec) * 1000000L + (b->tv_nsec - a->tv_nsec) / 1000;
}

static void *serve(void *arg) {
  (void)arg;
  for (;;) {
    int in = open(fifo_path, O_RDONLY | O_CLOEXEC); /* blocks until the probe writes */
    if (in < 0) return NULL;
    char cmd[64];
    ssize_t n;
    while ((n = read(in, cmd, sizeof(cmd))) > 0) {
      for (ssize_t k = 0; k < n; k++) {
        if (cmd[k] == 's') {
          report("stat", -1);
        } else if (cmd[k] == 't') {
          struct timespec a, b;
          clock_gettime(CLOCK_MONOTONIC, &a);
          malloc_trim(0);
          clock_gettime(CLOCK_MONOTONIC, &b);
          report("trim", elapsed_us(&a, &b));
        }
      }
    }
    close(in);
  }
}

__attribute__((constructor)) static void heapstat_start(void) {
  fifo_path = getenv("HEAPSTAT_FIFO");
  out_path = getenv("HEAPSTAT_OUT");
  if (!fifo_path || !out_path) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  if (pthread_create(&t, &attr, serve, NULL) == 0) pthread_detach(t);
  pthread_attr_destroy(&attr);
}
