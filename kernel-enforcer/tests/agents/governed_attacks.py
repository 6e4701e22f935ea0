# Attacks of an agent governed at the system-call boundary on secrets it
# may not read or change, through links, /proc and metadata calls. Run by
# tests/governed_work.rs under the coding-agent profile; each line says
# what the attempt got.
import os
def t(name, f):
    try:
        r = f(); print(f"{name}: GOT {r!r}")
    except OSError as e:
        print(f"{name}: refused ({e.strerror})")
H = os.environ["PROBE_HOME"]
T = os.environ["TMPDIR"]
t("read via workspace symlink to ~/.ssh", lambda: (os.symlink(H + "/.ssh/id_ed25519", "k"), open("k").read())[1])
t("read via /proc/self/root", lambda: open("/proc/self/root" + H + "/.ssh/id_ed25519").read())
t("hard link .env", lambda: (os.link(".env", "copy"), open("copy").read())[1])
t("symlink in scratch to .env", lambda: (os.symlink(os.getcwd() + "/.env", T + "/l"), open(T + "/l").read())[1])
fd = os.open("readme.txt", os.O_RDONLY)
t("reopen read-only fd for writing", lambda: os.open(f"/proc/self/fd/{fd}", os.O_WRONLY))
t("O_PATH of .env", lambda: os.open(".env", os.O_PATH))
t("chmod .env", lambda: os.chmod(".env", 0o777))
t("another process /proc/1/environ", lambda: open("/proc/1/environ").read()[:20])
t("own /proc/self/mem", lambda: open("/proc/self/mem", "rb").read(1))
t("truncate .env", lambda: os.truncate(".env", 0))
t("rename .env over readme", lambda: os.rename(".env", "readme.txt"))
t("utime .env", lambda: os.utime(".env", (0, 0)))
t("read readme (allowed)", lambda: open("readme.txt").read())
