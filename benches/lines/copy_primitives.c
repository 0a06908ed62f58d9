/*
 * The two copy primitives pvnet's SharedRegion has used, timed alone: `rep movsb` (until
 * fae2608) and the C library's memcpy (glibc aliases it to its memmove on x86-64, which
 * SharedRegion now calls). Each copies SIZE bytes from page i of 256 source pages to page i
 * of 256 destination pages (2 MiB in all), at destination page offsets 0..4032; the best
 * of 7 passes in which the two alternate, ns per copy. x86-64 only. Run it alone: it times
 * one core, and anything else on the machine moves it.
 *
 *   cc -O2 benches/lines/copy_primitives.c -o /tmp/copy_primitives
 *   /tmp/copy_primitives 1500        # SIZE in bytes
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void rep_movsb(void *d, const void *s, size_t n)
{
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    size_t len = argc > 1 ? strtoul(argv[1], 0, 10) : 1500;
    if (len == 0 || len > 4096) {
        fprintf(stderr, "SIZE: 1..4096 bytes\n");
        return 2;
    }
    char *src = aligned_alloc(4096, 4096 * 256);
    char *dst = aligned_alloc(4096, 4096 * 257);
    if (!src || !dst)
        return 1;
    memset(src, 1, 4096 * 256);
    memset(dst, 2, 4096 * 257);
    static const int offsets[] = {0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4032};
    long iters = 20000000 / (long)(len / 64 + 1);
    printf("%zu B copies, ns each (best of 7 interleaved passes)\n", len);
    printf("destination offset  rep movsb  memcpy\n");
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
        double best[2] = {1e9, 1e9};
        /* The two kinds alternate within each pass, so drift touches both alike. */
        for (int pass = 0; pass < 7; pass++) {
            for (int kind = 0; kind < 2; kind++) {
                double t0 = now();
                for (long i = 0; i < iters; i++) {
                    size_t page = (size_t)(i & 255) * 4096;
                    if (kind == 0)
                        rep_movsb(dst + page + offsets[o], src + page, len);
                    else
                        memcpy(dst + page + offsets[o], src + page, len);
                }
                double t = (now() - t0) / iters * 1e9;
                if (t < best[kind])
                    best[kind] = t;
            }
        }
        printf("%18d %10.1f %7.1f\n", offsets[o], best[0], best[1]);
    }
    return 0;
}
