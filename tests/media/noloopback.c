/*
 * noloopback.c — LD_PRELOAD shim for tests only: Janus 1.1.2 skips every
 * interface flagged IFF_LOOPBACK when it gathers ICE candidates (ice.c),
 * so on a host where only 127.0.0.1 is reachable it offers no candidate.
 * This wraps getifaddrs() and clears IFF_LOOPBACK in what it returns, so
 * Janus gathers 127.0.0.1 as a host candidate. Used only inside the
 * private network namespace of tests/media/run.sh (which has only `lo`).
 *
 *   cc -shared -fPIC -O2 -o noloopback.so noloopback.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap)
{
    static int (*real)(struct ifaddrs **);
    if (!real) {
        real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
        if (!real)
            return -1;
    }
    int rc = real(ifap);
    if (rc == 0 && ifap) {
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next)
            i->ifa_flags &= ~(unsigned)IFF_LOOPBACK;
    }
    return rc;
}
