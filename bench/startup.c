/*
 * Probes of what starting a process costs on this machine (bench/startup.py; figures in the
 * "Where the time goes" table of bench/RESULTS.md). One source, three builds:
 *
 *   -DNOLIBC  -static -nostdlib: _start exits at once. execve, the kernel's part, nothing else.
 *   (none)    -static: main returns 0. Adds the C library's start-up, which on x86 probes the
 *             CPU's features and caches with the cpuid instruction.
 *   -DCPUID   times the cpuid instruction itself and prints nanoseconds per instruction. In a
 *             virtual machine every cpuid traps to the hypervisor.
 */
#ifdef NOLIBC
void _start(void)
{
    __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall");
}
#elif defined(CPUID)
#include <cpuid.h>
#include <stdio.h>
#include <time.h>

int main(void)
{
    enum { N = 1000 };
    unsigned a, b, c, d, sink = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        __cpuid_count(4, i & 3, a, b, c, d); /* leaf 4: the cache parameters glibc reads */
        sink += a ^ b ^ c ^ d;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("%.1f\n", ns / N + (sink & 0) * 1.0);
    return 0;
}
#else
int main(void)
{
    return 0;
}
#endif
