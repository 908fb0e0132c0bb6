/* A tiny program of highpte's own, recorded under valgrind lackey as the amd64 test trace
   tiny-amd64.pgt.zst (gcc -O1 -static; valgrind --tool=lackey --trace-mem=yes
   --trace-syscalls=yes). crates/highpte/tests/cli_replay.rs records it again when valgrind
   and gcc are installed. It uses the heap, an anonymous mapping that it writes, reads,
   write-protects and unmaps, and a stack array. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(void) {
    enum { PAGES = 16, PAGE = 4096 };
    char *heap = malloc(8 * PAGE);
    char *map = mmap(0, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    volatile char stack[2 * PAGE];
    long sum = 0;
    if (!heap || map == MAP_FAILED)
        return 1;
    memset(heap, 1, 8 * PAGE);
    for (int i = 0; i < PAGES; i++)
        map[i * PAGE] = (char)i;
    for (int i = 0; i < PAGES; i += 2)
        sum += map[i * PAGE] + heap[i * 512];
    mprotect(map, PAGES * PAGE, PROT_READ);
    for (int i = 0; i < (int)sizeof stack; i += 512)
        stack[i] = (char)sum;
    sum += stack[PAGE];
    munmap(map, PAGES * PAGE);
    free(heap);
    printf("%ld\n", sum);
    return 0;
}
