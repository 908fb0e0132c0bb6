#define _GNU_SOURCE
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>
#define R(name, expr) do { errno = 0; long r = (long)(expr); printf("%-40s -> %s (%lx)\n", name, r == -1 ? strerror(errno) : "ok", r); } while (0)
/* Checks outcomes of tests/syscalls/ on the host kernel: cc -o host_check host_check.c && ./host_check
 * (x86_64 or i386; prints each call and what it returned). Addresses are chosen free on a fresh process. */
int main(void) {
  R("mmap len 0", mmap(0, 0, 3, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0));
  R("mmap no type", mmap(0, 4096, 1, MAP_ANONYMOUS, -1, 0));
  R("mmap shared|private anon", mmap(0, 4096, 1, MAP_SHARED|MAP_PRIVATE|MAP_ANONYMOUS, -1, 0));
  R("mmap offset 1 anon", mmap(0, 4096, 1, MAP_PRIVATE|MAP_ANONYMOUS, -1, 1));
  R("mmap not anon fd -1", mmap(0, 4096, 1, MAP_PRIVATE, -1, 0));
  R("mmap prot 0x8", mmap(0, 4096, 8, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0));
  R("mmap fixed unaligned", mmap((void*)0x50000001, 4096, 1, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0));
  R("mmap fixed at 0", mmap((void*)0, 4096, 1, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0));
  R("mmap fixed past TASK_SIZE", mmap((void*)(sizeof(long) == 8 ? 0x7ffffffff000UL : 0xbffff000UL), 8192, 1, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0));
  R("mmap hint unaligned", mmap((void*)0x51000001, 4096, 1, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0));
  char *b = mmap((void*)0x50000000, 16384, 3, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0);
  R("munmap len 0", munmap(b, 0));
  R("munmap unmapped", munmap((void*)0x60000000, 4096));
  R("mprotect unmapped", mprotect((void*)0x60000000, 4096, 1));
  R("mprotect len 0", mprotect(b, 0, 1));
  R("mprotect prot 0x10", mprotect(b, 4096, 0x10));
  munmap(b + 4096, 4096);
  R("mprotect over hole", mprotect(b, 16384, 1));
  R("mremap equal len over end", mremap(b, 65536, 65536, 0));
  R("mremap new_len 0", mremap(b + 8192, 8192, 0, 0));
  R("mremap unmapped", mremap((void*)0x60000000, 4096, 8192, 0));
  R("mremap FIXED without MAYMOVE", mremap(b + 8192, 8192, 16384, MREMAP_FIXED, (void*)0x58000000));
  R("mremap flags 4", mremap(b + 8192, 8192, 16384, 4));
  R("shmget size 0", shmget(7777, 0, IPC_CREAT|0600));
  int id = shmget(7777, 65536, IPC_CREAT|0600);
  R("shmget excl", shmget(7777, 65536, IPC_CREAT|IPC_EXCL|0600));
  R("shmget bigger", shmget(7777, 131072, 0));
  R("shmat unaligned", shmat(id, (void*)0x70000100, 0));
  R("shmat SHM_RND", shmat(id, (void*)0x70000100, SHM_RND));
  R("shmdt not attached", shmdt((void*)0x72000000));
  R("shmctl rmid", shmctl(id, IPC_RMID, 0));
  R("shmget after rmid", shmget(7777, 4096, 0));
  shmdt((void*)0x70000000);
  R("shmctl rmid again", shmctl(id, IPC_RMID, 0));
  void *cur = sbrk(0);
  R("brk unaligned (returns)", syscall(12, (char*)cur + 4097));
  R("brk(0)", syscall(12, 0));
  return 0;
}
