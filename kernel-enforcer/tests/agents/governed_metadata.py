# Metadata changes and Unix-socket connections of an agent governed at the
# system-call boundary, outside its workspace (refused) and inside it
# (allowed). Run by tests/governed_work.rs under the coding-agent profile;
# each line says what the attempt got, the test judges the world.
import ctypes, errno, fcntl, os, socket, struct, threading, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
AT_FDCWD, AT_SYMLINK_NOFOLLOW = -100, 0x100


def raw(*args):
    r = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def t(name, f):
    try:
        r = f()
        print(f"{name}: GOT {r!r}")
    except OSError as e:
        print(f"{name}: refused {errno.errorcode.get(e.errno, e.errno)}")


SECRET = os.environ["PROBE_SECRET"]
S = SECRET.encode()
GITCONFIG = os.environ["PROBE_GITCONFIG"]
DAEMON = os.environ["PROBE_SOCKET"]
DGRAM = os.environ["PROBE_DGRAM"]
ABSTRACT = os.environ["PROBE_ABSTRACT"]
T = os.environ["TMPDIR"]
owner = (1234, 1234) if os.getuid() == 0 else (os.getuid(), os.getgid())
tv = struct.pack("<qqqq", 1, 0, 1, 0)
acl_entry = lambda tag, perm: struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
acl = struct.pack("<I", 2) + acl_entry(1, 7) + acl_entry(4, 7) + acl_entry(0x20, 7)
xattr_args = ctypes.create_string_buffer(struct.pack("<QII", 0, 0, 0))
value = ctypes.create_string_buffer(b"v")
struct.pack_into("<QII", xattr_args, 0, ctypes.addressof(value), 1, 0)
os.symlink(SECRET, "secret-link")

# --- metadata of a file outside the workspace, by path ---------------------
t("chmod", lambda: os.chmod(SECRET, 0o644))
t("chmod through a workspace link", lambda: os.chmod("secret-link", 0o644))
t("fchmodat2", lambda: raw(452, AT_FDCWD, ctypes.c_char_p(S), 0o644, 0))
t("chown", lambda: os.chown(SECRET, *owner))
t("lchown", lambda: os.lchown(SECRET, *owner))
t("utimensat", lambda: os.utime(SECRET, (1, 1)))
t("utimes", lambda: raw(235, ctypes.c_char_p(S), ctypes.c_char_p(tv)))
t("utime", lambda: raw(132, ctypes.c_char_p(S), 0))
t("futimesat", lambda: raw(261, AT_FDCWD, ctypes.c_char_p(S), ctypes.c_char_p(tv)))
t("setxattr", lambda: os.setxattr(SECRET, "user.planted", b"1"))
t("setxattr acl", lambda: os.setxattr(SECRET, "system.posix_acl_access", acl))
t("lsetxattr", lambda: os.setxattr(SECRET, "user.planted", b"1", follow_symlinks=False))
t("removexattr", lambda: os.removexattr(SECRET, "user.keep"))
t("setxattrat", lambda: raw(463, AT_FDCWD, ctypes.c_char_p(S), 0,
                            ctypes.c_char_p(b"user.planted"), xattr_args, 16))
t("removexattrat", lambda: raw(466, AT_FDCWD, ctypes.c_char_p(S), 0,
                               ctypes.c_char_p(b"user.keep")))
t("file_setattr", lambda: raw(469, AT_FDCWD, ctypes.c_char_p(S),
                              ctypes.create_string_buffer(32), 32, 0))

# --- by descriptor: a file the policy lets the agent read -------------------
fd = os.open(GITCONFIG, os.O_RDONLY)
t("fchmod", lambda: os.chmod(fd, 0o600))
t("fchown", lambda: os.chown(fd, *owner))
t("futimens", lambda: os.utime(fd, (1, 1)))
t("fsetxattr", lambda: os.setxattr(fd, "user.planted", b"1"))
t("fremovexattr", lambda: os.removexattr(fd, "user.keep"))
t("chmod /proc/self/fd", lambda: os.chmod(f"/proc/self/fd/{fd}", 0o600))
t("FS_IOC_SETFLAGS", lambda: fcntl.ioctl(fd, 0x40086602, struct.pack("l", 0x80040)))

# --- Unix sockets outside the workspace -------------------------------------
def connect(address, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, kind)
    s.settimeout(5)
    s.connect(address)
    s.sendall(b"reached")
    return "connected"

t("connect", lambda: connect(DAEMON))
os.symlink(DAEMON, "daemon-link")
t("connect through a workspace link", lambda: connect("daemon-link"))
t("connect seqpacket", lambda: connect(DAEMON, socket.SOCK_SEQPACKET))
t("connect abstract", lambda: connect("\0" + ABSTRACT))
t("datagram socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"reached", DGRAM))
t("datagram pair", lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)[0].sendto(b"reached", DGRAM))
t("stream sendto an address", lambda: socket.socketpair()[0].sendto(b"reached", DGRAM))

# The address rewritten while the connection is decided: one thread flips
# it between an address that needs no decision and the outside socket's,
# the other connects through it. First a socket of the scratch directory
# (the agent's own), then an abstract address of the agent's own
# listener (Landlock's scope lets it through).
listener = socket.socket(socket.AF_UNIX)
listener.bind(T + "/race.sock")
listener.listen(1024)
abstract = socket.socket(socket.AF_UNIX)
abstract.bind("\0" + ABSTRACT + "-own")
abstract.listen(1024)
for l in (listener, abstract):
    threading.Thread(target=lambda l=l: [l.accept()[0].close() for _ in iter(int, 1)],
                     daemon=True).start()
def address(path):
    return struct.pack("<H", socket.AF_UNIX) + path.encode().ljust(108, b"\0")
theirs = address(DAEMON)
for name, mine in [("scratch", address(T + "/race.sock")),
                   ("abstract", address("\0" + ABSTRACT + "-own"))]:
    sun = ctypes.create_string_buffer(mine, 110)
    stop = time.monotonic() + 1.5
    def flip():
        while time.monotonic() < stop:
            ctypes.memmove(sun, theirs, 110)
            ctypes.memmove(sun, mine, 110)
    flipper = threading.Thread(target=flip)
    flipper.start()
    outcomes = {}
    while time.monotonic() < stop:
        # Non-blocking: a full backlog fails the call instead of holding it.
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        r = libc.connect(s.fileno(), sun, 110)
        key = "ok" if r == 0 else errno.errorcode.get(ctypes.get_errno(), "?")
        outcomes[key] = outcomes.get(key, 0) + 1
        s.close()
    flipper.join()
    print(f"connect race ({name}): {outcomes}")

# --- inside the workspace and the scratch directory: allowed ---------------
with open("script.sh", "w") as f:
    f.write("#!/bin/sh\necho script-ran\n")
t("chmod +x in the workspace", lambda: os.chmod("script.sh", 0o755))
os.system("./script.sh")
t("utime in the workspace", lambda: os.utime("script.sh", (1000, 1000)))
t("utimes in the workspace", lambda: raw(235, ctypes.c_char_p(b"script.sh"), 0))
t("utime (syscall) in the workspace", lambda: raw(132, ctypes.c_char_p(b"script.sh"),
                                                  ctypes.c_char_p(struct.pack("<qq", 1000, 1000))))
t("setxattr in the workspace", lambda: os.setxattr("script.sh", "user.note", b"ok"))
t("connect in the workspace", lambda: connect("ws.sock"))
own = socket.socket(socket.AF_UNIX)
own.bind(T + "/own.sock")
own.listen(1)
mine = socket.socket(socket.AF_UNIX)
t("connect in the scratch directory", lambda: mine.connect(T + "/own.sock"))
mine.sendall(b"reached")
print(f"scratch listener got: {own.accept()[0].recv(16)!r}")
t("close-on-exec kept", lambda: not os.get_inheritable(mine.fileno()))
