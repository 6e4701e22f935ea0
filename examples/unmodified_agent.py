# An agent that knows nothing of the kernel: plain Python file and socket
# calls. Run it under `kernel-enforcer run --govern-syscalls` and each call
# below is decided by policy at the system-call boundary and recorded.
import os
import socket
import subprocess


def attempt(what, action):
    try:
        print(f"  {what:<40} done: {action()}")
    except OSError as error:
        print(f"  {what:<40} refused: {error.strerror}")


def write(path, text):
    with open(path, "w") as handle:
        handle.write(text)
    return f"wrote {len(text)} bytes"


def read(path):
    with open(path) as handle:
        return repr(handle.read().strip())


print("an unmodified Python agent, governed at the system-call boundary:")
attempt("write notes.md", lambda: write("notes.md", "- governed run\n"))
attempt("read notes.md", lambda: read("notes.md"))
attempt("list the workspace", lambda: sorted(os.listdir(".")))
attempt("write .env", lambda: write(".env", "TOKEN=stolen\n"))
attempt("read ~/.ssh/id_ed25519", lambda: read(os.path.expanduser("~/.ssh/id_ed25519")))
attempt("delete notes.md", lambda: os.remove("notes.md") or "deleted")
attempt("connect to 203.0.113.7:22", lambda: socket.create_connection(("203.0.113.7", 22), timeout=2))
attempt("run ls", lambda: subprocess.run(["ls"], capture_output=True, check=True).stdout.split())
attempt("run rm -rf .", lambda: subprocess.run(["rm", "-rf", "."], check=True))
