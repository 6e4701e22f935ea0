# System calls as runtimes that bypass libc make them (Bun, Go), under the
# coding-agent profile: a mode left in the register of an `openat` without
# O_CREAT, and names under the agent's own directory descriptors
# (`/proc/self/fd/N/name`). Prints one line per probe.
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
SYS_openat = 257
outside = os.environ["PROBE_OUTSIDE"]


def t(name, f):
    try:
        r = f()
        print(f"{name}: GOT {r!r}")
    except OSError as e:
        print(f"{name}: refused ({e.strerror})")


def raw_open_with_mode():
    fd = libc.syscall(SYS_openat, AT_FDCWD, b"readme.txt", os.O_RDONLY, 0o644)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


def create_under_descriptor():
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(f"/proc/self/fd/{here}/made.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"made")
    os.close(fd)
    return "made"


def mkdir_under_descriptor():
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir(f"/proc/self/fd/{here}/made-dir")
    return "made-dir"


def secret_through_descriptor():
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    rel = os.path.relpath(os.path.join(outside, "home/.ssh/id_ed25519"), os.getcwd())
    with open(f"/proc/self/fd/{here}/{rel}") as f:
        return f.read()


def write_outside_through_descriptor():
    usr = os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)
    rel = os.path.relpath(os.path.join(outside, "planted.txt"), "/usr")
    fd = os.open(f"/proc/self/fd/{usr}/{rel}", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    return "planted"


t("raw openat with a mode (allowed)", raw_open_with_mode)
t("create under own descriptor (allowed)", create_under_descriptor)
t("mkdir under own descriptor (allowed)", mkdir_under_descriptor)
t("secret through own descriptor", secret_through_descriptor)
t("write outside through own descriptor", write_outside_through_descriptor)
