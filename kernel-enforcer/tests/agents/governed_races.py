# Races and escape hatches of an agent governed at the system-call
# boundary, found in review. Run by tests/governed_work.rs under the
# coding-agent profile; each line says what the attempt got.
import ctypes, errno, os, stat, struct, threading, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def raw(*args):
    r = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r, ctypes.get_errno()


# 1. Reopen through /proc/self/fd/N while another thread swaps N between a
#    read-only descriptor of a file the policy lets it only read and a
#    writable one of its own: never a writable descriptor of the first.
target = os.environ["PROBE_READ_ONLY"]
ro = os.open(target, os.O_RDONLY)
rw = os.open(os.environ["TMPDIR"] + "/mine", os.O_RDWR | os.O_CREAT, 0o600)
want = os.fstat(ro).st_ino
stop = time.monotonic() + 2
def swap():
    while time.monotonic() < stop:
        os.dup2(rw, 200)
        os.dup2(ro, 200)
threading.Thread(target=swap).start()
tries = hits = 0
while time.monotonic() < stop:
    tries += 1
    try:
        fd = os.open("/proc/self/fd/200", os.O_RDWR)
    except OSError:
        continue
    if os.fstat(fd).st_ino == want:
        hits += 1
        os.write(fd, b"OWNED")
    os.close(fd)
print(f"reopen race: {hits} writable of {tries}")

# 2. A process the tracer would never see.
CLONE_UNTRACED, SIGCHLD = 0x00800000, 17
r, e = raw(56, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0)
if r == 0:
    os._exit(0)
print(f"clone untraced: {'refused ' + errno.errorcode[e] if r < 0 else 'STARTED'}")
if r > 0:
    os.waitpid(r, 0)

# 3. An access control list is a chmod by another name.
entry = lambda tag, perm: struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
acl = struct.pack("<I", 2) + entry(1, 7) + entry(4, 7) + entry(0x20, 7)
try:
    os.setxattr(".env", "system.posix_acl_access", acl)
    print("setxattr acl: APPLIED")
except OSError as e:
    print(f"setxattr acl: refused {errno.errorcode[e.errno]}")

# 4. openat2 with RESOLVE_BENEATH must not be taken for a plain open.
how = struct.pack("<QQQ", os.O_RDONLY, 0, 0x08)
buf = ctypes.create_string_buffer(how)
r, e = raw(437, -100, ctypes.c_char_p(b"/etc/hostname"), buf, 24)
print(f"openat2 beneath: {'refused ' + errno.errorcode[e] if r < 0 else 'OPENED'}")

# 5. Signals while a creation is being decided: the creation happens once.
failures = 0
for i in range(200):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        fd = os.open("lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        os.unlink("lock")
    except OSError as e:
        failures += 1
        try:
            os.unlink("lock")
        except OSError:
            pass
    os.waitpid(pid, 0)
print(f"exclusive creations interrupted by SIGCHLD: {failures} failed of 200")

# 6. Other ways around a decision: an SCTP stream socket (it connects
#    through a socket option), and uselib (maps a file by path).
import socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close()
    print("sctp socket: CREATED")
except OSError as e:
    print(f"sctp socket: refused {errno.errorcode[e.errno]}")
r, e = raw(134, ctypes.c_char_p(b"/etc/hostname"))
print(f"uselib: {'refused ' + errno.errorcode[e] if r < 0 else 'LOADED'}")

# 7. open_tree_attr (Linux 6.15) hands out an O_PATH descriptor of any path
#    without an open being decided, like open_tree.
r, e = raw(467, -100, ctypes.c_char_p(b"/etc/hostname"), 0o2000000, None, 0)
print(f"open_tree_attr: {'refused ' + errno.errorcode[e] if r < 0 else 'GOT A DESCRIPTOR'}")

# 8. Device nodes in the scratch directory, where opens need no decision:
#    a character device would give access to whatever device it names.
scratch = os.environ["TMPDIR"]
for kind, name in ((stat.S_IFCHR, "char"), (stat.S_IFBLK, "block")):
    node = os.path.join(scratch, f"device-{name}")
    try:
        os.mknod(node, kind | 0o600, os.makedev(1, 3))
        print(f"mknod {name}: CREATED")
    except OSError as e:
        print(f"mknod {name}: refused {errno.errorcode[e.errno]}")
    print(f"mknod {name} exists: {os.path.lexists(node)}")

# 9. The scratch directory is private to the agent's user.
print(f"scratch mode: {stat.S_IMODE(os.stat(scratch).st_mode):o}")
