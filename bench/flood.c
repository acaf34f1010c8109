/*
 * Flood sender in C: the Python sender tops out below what the server may absorb, and the
 * question is what the server absorbs, so the sender must not be the bottleneck.
 *
 * Same behaviour as bench/flood.py: one UDP socket bound per source address
 * 127.<octet>.x.y, round-robin over them, payloads from a pool of random 94-byte datagrams
 * drawn up front; in "known" mode every payload starts with the given (public) key id.
 * Sends with sendmmsg in batches of BATCH per socket. Prints one JSON line.
 *
 * usage: flood-c HOST PORT SOURCES OCTET SECONDS RATE random|known [KEYID_HEX]
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

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s HOST PORT SOURCES OCTET SECONDS RATE random|known [KEYID]\n",
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
    int known = strcmp(argv[7], "known") == 0;
    if (nsrc < 1 || nsrc > 64000 || octet < 1 || octet > 254 || seconds <= 0 || seconds > 120) {
        fprintf(stderr, "argument out of range\n");
        return 2;
    }
    unsigned char keyid[8] = {0};
    if (known) {
        if (argc < 9 || strlen(argv[8]) != 16) {
            fprintf(stderr, "known mode needs a 16-hex-digit key id\n");
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
    static unsigned char pool[POOL][MSG];
    if (fill_random(&pool[0][0], sizeof pool) != 0) {
        perror("getrandom");
        return 1;
    }
    if (known)
        for (int i = 0; i < POOL; i++) memcpy(pool[i], keyid, 8);

    int *socks = calloc((size_t)nsrc, sizeof(int));
    if (!socks) return 1;
    for (int i = 0; i < nsrc; i++) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | ((unsigned)octet << 16) |
                                    ((unsigned)(i / 250) << 8) | (unsigned)(i % 250 + 1));
        socks[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (socks[i] < 0 || bind(socks[i], (struct sockaddr *)&src, sizeof src) != 0 ||
            connect(socks[i], (struct sockaddr *)&dst, sizeof dst) != 0) {
            perror("socket/bind/connect");
            return 1;
        }
    }

    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    long long sent = 0, errors = 0, p = 0;
    double start = now(), end = start + seconds, t = start;
    int s = 0;
    while (t < end) {
        for (int k = 0; k < BATCH; k++) {
            iov[k].iov_base = pool[p];
            iov[k].iov_len = MSG;
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            p = (p + 1) % POOL;
        }
        int r = sendmmsg(socks[s], msgs, BATCH, 0);
        if (r < 0) {
            errors += BATCH;
        } else {
            sent += r;
            errors += BATCH - r;
        }
        s = (s + 1) % nsrc;
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
    printf("{\"sent\": %lld, \"errors\": %lld, \"seconds\": %.6f, \"rate\": %.1f, "
           "\"sources\": %d, \"engine\": \"c-sendmmsg\"}\n",
           sent, errors, elapsed, sent / elapsed, nsrc);
    for (int i = 0; i < nsrc; i++) close(socks[i]);
    free(socks);
    return 0;
}
