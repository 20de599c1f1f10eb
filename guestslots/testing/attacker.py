"""An attacker's guest for the containment of guest programs: a static busybox (from
Debian's ``busybox-static``, downloaded and unpacked, never installed) and small
static C programs compiled here, in an ext4 image.

The programs (in ``/bin`` of the image):

- ``linger``: holds an exclusive lock on ``/lock`` (and says so in a file,
  ``/locked``), clears its parent-death signal,
  becomes ``nobody`` and waits forever: the lock is held as long as anything of it
  runs (``lockcheck`` tells whether it is).
- ``lockcheck``: prints ``free`` or ``held`` (a non-blocking try of the same lock).
- ``probe``: tries what a contained program may not do and prints one line each,
  ``NAME allowed`` or ``NAME refused``: OOM protection, real-time priority, memory
  locking, raw and packet sockets, vsock, AF_ALG, SCTP (a module to load), kernel
  uevents, keyrings, user namespaces, io_uring; and, as ``nobody``, writing to
  ``/dev/null``.
- ``forkcount``: forks children that wait forever until a fork fails, and prints
  how many it made.
- ``hog``: protects itself from the OOM killer where it can, becomes ``nobody``
  and fills memory.
- ``tcpget HOST PORT``: connects and prints what it reads.

Used by the integration tests and by ``tools/acceptance/guest_programs.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from . import testimages

LINGER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(void) {
    int fd = open("/lock", O_RDWR | O_CREAT, 0666);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) { perror("lock"); return 1; }
    close(open("/locked", O_WRONLY | O_CREAT, 0644));
    prctl(PR_SET_PDEATHSIG, 0);
    if (setuid(65534) != 0) perror("setuid");   /* also clears the parent-death signal */
    puts("locked");
    fflush(stdout);
    for (;;) pause();
}
"""

LOCKCHECK_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
int main(void) {
    int fd = open("/lock", O_RDWR);
    if (fd < 0) { perror("/lock"); return 1; }
    puts(flock(fd, LOCK_EX | LOCK_NB) == 0 ? "free" : "held");
    return 0;
}
"""

PROBE_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(const char *name, int ok) { printf("%s %s\n", name, ok ? "allowed" : "refused"); }

static int sock(int family, int type, int protocol) {
    int fd = socket(family, type, protocol);
    if (fd >= 0) close(fd);
    return fd >= 0;
}

int main(void) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY);
    say("oom_score_adj", fd >= 0 && write(fd, "-1000", 5) == 5);
    struct sched_param sp = { .sched_priority = 99 };
    say("sched_fifo", sched_setscheduler(0, SCHED_FIFO, &sp) == 0);
    size_t big = 64 << 20;
    void *p = malloc(big);
    say("mlock", p && mlock(p, big) == 0);
    say("raw_socket", sock(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    say("af_packet", sock(AF_PACKET, SOCK_RAW, htons(3)));
    say("af_vsock", sock(40, SOCK_STREAM, 0));
    say("af_alg", sock(38, SOCK_SEQPACKET, 0));
    say("sctp", sock(AF_INET, SOCK_STREAM, 132));
    say("uevents", sock(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT));
    say("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -4) >= 0);  /* @u */
    say("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* @s */, 1) >= 0);
    say("user_namespace", unshare(CLONE_NEWUSER) == 0);
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    say("io_uring", syscall(SYS_io_uring_setup, 1, &params) >= 0);
    if (setuid(65534) == 0) {
        fd = open("/dev/null", O_WRONLY);
        say("dev_null_as_nobody", fd >= 0 && write(fd, "x", 1) == 1);
    }
    return 0;
}
"""

HOG_C = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY);
    if (fd >= 0) { write(fd, "-1000", 5); close(fd); }
    setuid(65534);  /* as su nobody: also clears the parent-death signal */
    for (;;) {
        char *p = malloc(16 << 20);
        if (p) memset(p, 0x5a, 16 << 20);
    }
}
"""

TCPGET_C = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
"""

FORKCOUNT_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    int n = 0;
    while (n < 100000) {
        pid_t pid = fork();
        if (pid < 0) break;
        if (pid == 0) { pause(); _exit(0); }
        n++;
    }
    printf("%d\n", n);
    return 0;
}
"""

PROGRAMS = {"linger": LINGER_C, "forkcount": FORKCOUNT_C, "lockcheck": LOCKCHECK_C,
            "probe": PROBE_C, "hog": HOG_C, "tcpget": TCPGET_C}


def busybox(directory: Path) -> Path:
    """Debian's static busybox, downloaded with apt's own tools into *directory* and
    unpacked there (kept: a second call finds it)."""
    found = directory / "bin" / "busybox"
    if found.exists():
        return found
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        subprocess.run(["apt-get", "download", "-q", "busybox-static"], cwd=tmp, check=True,
                       capture_output=True)
        deb = next(Path(tmp).glob("busybox-static_*.deb"))
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        found.parent.mkdir(exist_ok=True)
        shutil.copy(unpacked / "bin" / "busybox", found)
    return found


def compile_static(name: str, source: str, directory: Path) -> bytes:
    """The static x86-64 program compiled from C *source*."""
    src = directory / f"{name}.c"
    src.write_text(source)
    out = directory / name
    subprocess.run(["gcc", "-static", "-O", "-o", str(out), str(src)], check=True,
                   capture_output=True, text=True)
    return out.read_bytes()


def image(path: Path, work: Path) -> Path:
    """The attacker's ext4 image at *path* (*work*: a scratch directory, where the
    busybox download is kept too).  Its programs need ``chmod 0755`` once mounted:
    the image builder keeps no modes."""
    files: dict[str, bytes | str] = {"bin/busybox": busybox(work / "busybox").read_bytes()}
    files["bin/sh"] = files["bin/busybox"]  # busybox runs the applet named by argv[0]
    for name, source in PROGRAMS.items():
        files[f"bin/{name}"] = compile_static(name, source, work)
    files["etc/passwd"] = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
    files["etc/group"] = "root:x:0:\nnogroup:x:65534:\n"
    for d in ("proc", "sys", "dev", "tmp", "root"):
        files[f"{d}/.keep"] = ""
    return testimages.ext4(path, files, size_mib=48)


#: The programs to make executable after mounting the image at /.
EXECUTABLES = ("/bin/busybox", "/bin/sh", *(f"/bin/{name}" for name in PROGRAMS))
