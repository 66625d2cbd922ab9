/*
 * Benchmarks only: a preload that makes every fsync, fdatasync and msync of
 * the process it is loaded into take ECP_SYNC_DELAY_US microseconds longer,
 * as on a network-attached disk (a cloud VM's volume syncs in milliseconds,
 * this machine's local disk in a few hundred microseconds).
 *
 *   cc -shared -fPIC -O2 -o slow-sync.so slow-sync.c -ldl
 *   LD_PRELOAD=./slow-sync.so ECP_SYNC_DELAY_US=5000 node ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void delay(void) {
  const char *text = getenv("ECP_SYNC_DELAY_US");
  if (text != NULL) usleep((useconds_t)atol(text));
}

int fsync(int fd) {
  static int (*real)(int) = NULL;
  if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  delay();
  return real(fd);
}

int fdatasync(int fd) {
  static int (*real)(int) = NULL;
  if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  delay();
  return real(fd);
}

int msync(void *addr, size_t length, int flags) {
  static int (*real)(void *, size_t, int) = NULL;
  if (real == NULL) real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
  delay();
  return real(addr, length, flags);
}
