/*
 * Loaded (LD_PRELOAD) into a SIMULATION federation's processes: every socket bound to "any"
 * address or to a host address is bound to loopback instead. Ray 2.55's gRPC servers (GCS,
 * raylet, workers) listen on 0.0.0.0/[::] and its agents on the host's address, with no setting
 * to change it; a job's Ray must not be reachable from the network. A dual-stack [::] socket gets
 * ::ffff:127.0.0.1, so IPv4 clients on 127.0.0.1 still reach it. Built by scripts/build-native.sh.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static bind_fn real_bind;
  if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
  if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    // Every IPv4 address but loopback's 127/8 (any, or the address Ray picked for the node).
    struct sockaddr_in copy;
    memcpy(&copy, addr, sizeof copy);
    if ((ntohl(copy.sin_addr.s_addr) >> 24) == 127) return real_bind(fd, addr, len);
    copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
  }
  if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 copy;
    memcpy(&copy, addr, sizeof copy);
    if (memcmp(&copy.sin6_addr, &in6addr_any, sizeof copy.sin6_addr) != 0) return real_bind(fd, addr, len);
    static const unsigned char mapped_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    memcpy(&copy.sin6_addr, mapped_loopback, sizeof mapped_loopback);
    return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
  }
  return real_bind(fd, addr, len);
}
