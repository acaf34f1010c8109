/*
 * Flood sender in C: the Python sender tops out below what the server may absorb, and the
 * question is what the server absorbs, so the sender must not be the bottleneck.
 *
 * Sources: by default one UDP socket bound per source address 127.<octet>.x.y, round-robin
 * over them (as bench/flood.py); with "pktinfo" one unbound socket sends every datagram from
 * the next source in turn, named in its IP_PKTINFO control data (any number of spoofed
 * sources, up to 64,000, at the cost of one control message per datagram).
 * Payloads come from a pool drawn up front from the kernel RNG, by shape:
 *   random     94 random bytes
 *   known      the given (public) key id + 86 random bytes
 *   oversized  1,000-65,000 random bytes (sizes uniform)
 *   small      0-199 random bytes, never 94 (sizes uniform): wrong-size small datagrams
 *   mix        the four above in turn
 * Sends with sendmmsg in batches of BATCH. Prints one JSON line.
 *
 * usage: flood-c HOST PORT SOURCES OCTET SECONDS RATE SHAPE [KEYID_HEX|-] [pktinfo]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 94
#define POOL 8192
#define BATCH 32
#define BIG_MIN 1000
#define BIG_MAX 65000
#define SMALL_MAX 199

enum shape { RANDOM, KNOWN, OVERSIZED, SMALL, MIX };
static const char *const SHAPES[] = {"random", "known", "oversized", "small", "mix"};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fill_random(unsigned char *buf, size_t len) {
    while (len > 0) {
        ssize_t got = getrandom(buf, len, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += got;
        len -= (size_t)got;
    }
    return 0;
}

/* A uniform value in [lo, hi] from the random bytes at *r (4 used). */
static size_t pick(const unsigned char *r, size_t lo, size_t hi) {
    unsigned int v;
    memcpy(&v, r, sizeof v);
    return lo + v % (unsigned int)(hi - lo + 1);
}

static in_addr_t source(int octet, int i) {
    return htonl((127u << 24) | ((unsigned)octet << 16) | ((unsigned)(i / 250) << 8) |
                 (unsigned)(i % 250 + 1));
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr,
                "usage: %s HOST PORT SOURCES OCTET SECONDS RATE "
                "random|known|oversized|small|mix [KEYID|-] [pktinfo]\n",
                argv[0]);
        return 2;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
        fprintf(stderr, "bad host %s\n", argv[1]);
        return 2;
    }
    int nsrc = atoi(argv[3]), octet = atoi(argv[4]);
    double seconds = atof(argv[5]), rate = atof(argv[6]);
    int shape = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(argv[7], SHAPES[i]) == 0) shape = i;
    int pktinfo = argc > 9 && strcmp(argv[9], "pktinfo") == 0;
    if (shape < 0 || nsrc < 1 || nsrc > 64000 || octet < 1 || octet > 254 || seconds <= 0 ||
        seconds > 120) {
        fprintf(stderr, "argument out of range\n");
        return 2;
    }
    unsigned char keyid[8] = {0};
    if (shape == KNOWN || shape == MIX) {
        if (argc < 9 || strlen(argv[8]) != 16) {
            fprintf(stderr, "%s needs a 16-hex-digit key id\n", SHAPES[shape]);
            return 2;
        }
        for (int i = 0; i < 8; i++) {
            unsigned int b;
            if (sscanf(argv[8] + 2 * i, "%2x", &b) != 1) {
                fprintf(stderr, "bad key id\n");
                return 2;
            }
            keyid[i] = (unsigned char)b;
        }
    }
    /* Every payload is a slice of one random buffer: (offset, length) per pool entry. */
    size_t bufsize = (size_t)POOL * MSG + BIG_MAX;
    unsigned char *buf = malloc(bufsize), *rnd = malloc((size_t)POOL * 8);
    struct iovec *pool = calloc(POOL, sizeof *pool);
    if (!buf || !rnd || !pool) return 1;
    if (fill_random(buf, bufsize) != 0 || fill_random(rnd, (size_t)POOL * 8) != 0) {
        perror("getrandom");
        return 1;
    }
    long long bytes_in_pool = 0;
    for (int i = 0; i < POOL; i++) {
        int s = shape == MIX ? i % 4 : shape;
        size_t len = MSG, off = (size_t)i * MSG;
        if (s == OVERSIZED) {
            len = pick(rnd + 8 * i, BIG_MIN, BIG_MAX);
            off = pick(rnd + 8 * i + 4, 0, bufsize - len);
        } else if (s == SMALL) {
            len = pick(rnd + 8 * i, 0, SMALL_MAX - 1);
            if (len >= MSG) len++; /* 0..93, 95..199 */
        } else if (s == KNOWN) {
            memcpy(buf + off, keyid, 8);
        }
        pool[i].iov_base = buf + off;
        pool[i].iov_len = len;
        bytes_in_pool += (long long)len;
    }

    int nsock = pktinfo ? 1 : nsrc;
    int *socks = calloc((size_t)nsock, sizeof(int));
    if (!socks) return 1;
    for (int i = 0; i < nsock; i++) {
        socks[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (socks[i] < 0) {
            perror("socket");
            return 1;
        }
        int big = 4 << 20;
        setsockopt(socks[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        if (pktinfo) continue;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = source(octet, i);
        if (bind(socks[i], (struct sockaddr *)&src, sizeof src) != 0 ||
            connect(socks[i], (struct sockaddr *)&dst, sizeof dst) != 0) {
            perror("bind/connect");
            return 1;
        }
    }

    struct mmsghdr msgs[BATCH];
    static union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } ctrl[BATCH];
    memset(msgs, 0, sizeof msgs);
    memset(ctrl, 0, sizeof ctrl);
    for (int k = 0; k < BATCH; k++) {
        msgs[k].msg_hdr.msg_iovlen = 1;
        if (!pktinfo) continue;
        msgs[k].msg_hdr.msg_name = &dst;
        msgs[k].msg_hdr.msg_namelen = sizeof dst;
        msgs[k].msg_hdr.msg_control = ctrl[k].buf;
        msgs[k].msg_hdr.msg_controllen = sizeof ctrl[k].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[k].msg_hdr);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    }
    long long sent = 0, errors = 0, bytes = 0, p = 0;
    double start = now(), end = start + seconds, t = start;
    int s = 0, next_src = 0;
    while (t < end) {
        for (int k = 0; k < BATCH; k++) {
            msgs[k].msg_hdr.msg_iov = &pool[p];
            p = (p + 1) % POOL;
            if (pktinfo) {
                struct in_pktinfo info = {0};
                info.ipi_spec_dst.s_addr = source(octet, next_src);
                next_src = (next_src + 1) % nsrc;
                memcpy(CMSG_DATA(CMSG_FIRSTHDR(&msgs[k].msg_hdr)), &info, sizeof info);
            }
        }
        int r = sendmmsg(socks[s], msgs, BATCH, 0);
        if (r < 0) {
            errors += BATCH;
        } else {
            sent += r;
            errors += BATCH - r;
            for (int k = 0; k < r; k++) bytes += (long long)msgs[k].msg_len;
        }
        s = (s + 1) % nsock;
        t = now();
        if (rate > 0) {
            double ahead = (double)(sent + errors) / rate - (t - start);
            if (ahead > 0) {
                if (ahead > end - t) ahead = end - t;
                struct timespec ts = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
                nanosleep(&ts, NULL);
                t = now();
            }
        }
    }
    double elapsed = t - start;
    printf("{\"sent\": %lld, \"errors\": %lld, \"bytes\": %lld, \"seconds\": %.6f, "
           "\"rate\": %.1f, \"sources\": %d, \"shape\": \"%s\", \"pktinfo\": %s, "
           "\"mean_size\": %.1f, \"engine\": \"c-sendmmsg\"}\n",
           sent, errors, bytes, elapsed, sent / elapsed, nsrc, SHAPES[shape],
           pktinfo ? "true" : "false", (double)bytes_in_pool / POOL);
    for (int i = 0; i < nsock; i++) close(socks[i]);
    free(socks);
    free(pool);
    free(rnd);
    free(buf);
    return 0;
}
