#!/usr/bin/env python3
"""Side by side: Microsoft's Agent Governance Toolkit (AGT) and this kernel.

What it measures, in one run on one machine:

- AGT's policy check alone: ``agent_os.policies.PolicyEvaluator.evaluate``,
  in process, against our policy evaluation alone (``policy_eval``);
- AGT's full path: ``agentmesh.governance.govern(fn, policy=...)`` with its
  audit trail going to ``FileAuditSink`` (HMAC-chained JSON lines, written
  to the OS, never fsynced), against our separate-process, signed decision
  whose evidence is written to the OS before the reply
  (``authorize_os_buffered``); our fully durable decision
  (``authorize_durable``, fdatasync before the reply) is reported beside
  both.

The policy is the same small one on both sides: allow reading files under
the workspace, deny anything under ``~/.ssh``, deny running ``rm``, allow
GET to one host, deny everything else. Each side decides the same mix of
four requests (a workspace read, an ssh key read, ``rm``, a GET), in turn.

AGT's ``govern()`` condition language has only equality, membership and
numeric comparison (no prefix or pattern test), so on that path the caller
passes the path tests as precomputed fields; that does the peer's work for
it and flatters it.

Installing the peer happens here and only here: the script makes a virtual
environment (default ``target/peers-venv``), installs
``agent-governance-toolkit-core`` 5.x into it with pip, and re-runs itself
inside it. Our figures come from ``cargo bench --bench kernel_bench -- --json``
in the same run.

Usage: python3 benches/peers/agt_compare.py [--iterations N] [--venv DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEER = "agent-governance-toolkit-core>=5,<6"
INSIDE = "AGT_COMPARE_INSIDE_VENV"


def ensure_venv(venv: Path) -> None:
    """Re-runs this script inside a venv that has the peer installed."""
    if os.environ.get(INSIDE):
        return
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import agent_os, agentmesh"], capture_output=True
    )
    if probe.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PEER], check=True
        )
    env = dict(os.environ, **{INSIDE: "1"})
    os.execve(str(python), [str(python), __file__, *sys.argv[1:]], env)


def requests():
    """The request mix: (kind, path or command, url) per request."""
    return [
        {"kind": "file_read", "path": "/ws/README.md"},
        {"kind": "file_read", "path": "/home/agent/.ssh/id_ed25519"},
        {"kind": "exec", "program": "/bin/rm", "args": ["-rf", "/ws"]},
        {"kind": "http", "method": "GET", "url": "https://api.example.com/v1/items"},
    ]


EXPECTED = [True, False, False, True]


def median_ns(fn, contexts, iterations: int) -> float:
    """Median of per-call times over `iterations` calls, cycling the mix."""
    samples = []
    n = len(contexts)
    for i in range(iterations):
        ctx = contexts[i % n]
        start = time.perf_counter_ns()
        fn(ctx)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


def agt_policy_check(iterations: int) -> float:
    from agent_os.policies import PolicyEvaluator
    from agent_os.policies.schema import PolicyDocument

    doc = PolicyDocument.model_validate(
        {
            "name": "agent",
            "rules": [
                {"name": "deny-ssh", "priority": 100, "action": "deny",
                 "condition": {"field": "path", "operator": "matches",
                               "value": r"^/home/[^/]+/\.ssh(/|$)"}},
                {"name": "deny-rm", "priority": 100, "action": "deny",
                 "condition": {"field": "program", "operator": "matches",
                               "value": r"(^|/)rm$"}},
                {"name": "read-workspace", "priority": 10, "action": "allow",
                 "condition": {"field": "target", "operator": "matches",
                               "value": r"^file_read /ws/"}},
                {"name": "get-api", "priority": 10, "action": "allow",
                 "condition": {"field": "target", "operator": "matches",
                               "value": r"^http GET https://api\.example\.com/"}},
            ],
            "defaults": {"action": "deny"},
        }
    )
    evaluator = PolicyEvaluator(policies=[doc])
    contexts = []
    for r in requests():
        ctx = dict(r)
        if r["kind"] == "file_read":
            ctx["target"] = f"file_read {r['path']}"
        elif r["kind"] == "http":
            ctx["target"] = f"http {r['method']} {r['url']}"
        else:
            ctx["target"] = f"exec {r['program']}"
        contexts.append(ctx)
    got = [evaluator.evaluate(c).allowed for c in contexts]
    assert got == EXPECTED, f"AGT policy check decided {got}, expected {EXPECTED}"
    return median_ns(evaluator.evaluate, contexts, iterations)


GOVERN_POLICY = """
name: agent
version: "1.0"
default_action: deny
rules:
  - name: deny-ssh
    condition: "resource.under_ssh == 'yes'"
    action: deny
    priority: 100
  - name: deny-rm
    condition: "action.type == 'exec' and resource.program == 'rm'"
    action: deny
    priority: 100
  - name: read-workspace
    condition: "action.type == 'file_read' and resource.in_workspace == 'yes'"
    action: allow
    priority: 10
  - name: get-api
    condition: "action.type == 'http' and resource.method == 'GET' and resource.host == 'api.example.com'"
    action: allow
    priority: 10
"""


def agt_govern(iterations: int, audit_path: Path) -> float:
    from agentmesh.governance import govern
    from agentmesh.governance.audit import AuditLog
    from agentmesh.governance.audit_backends import FileAuditSink
    from agentmesh.governance.govern import GovernanceDenied

    def tool(**_kwargs):
        return True

    governed = govern(tool, policy=GOVERN_POLICY)
    # govern() keeps its audit log in memory; give it the file sink its
    # audit module offers (HMAC-chained JSON lines, no fsync).
    governed._audit = AuditLog(sink=FileAuditSink(audit_path, secret_key=os.urandom(32)))

    def kwargs_of(r):
        if r["kind"] == "file_read":
            resource = {
                "path": r["path"],
                "in_workspace": "yes" if r["path"].startswith("/ws/") else "no",
                "under_ssh": "yes" if "/.ssh/" in r["path"] else "no",
            }
        elif r["kind"] == "exec":
            resource = {"program": r["program"].rsplit("/", 1)[-1], "under_ssh": "no"}
        else:
            host = r["url"].split("/")[2]
            resource = {"method": r["method"], "host": host, "under_ssh": "no"}
        return {"action": {"type": r["kind"]}, "resource": resource}

    contexts = [kwargs_of(r) for r in requests()]

    def call(kwargs):
        try:
            return governed(**kwargs)
        except GovernanceDenied:
            return False

    got = [bool(call(c)) for c in contexts]
    assert got == EXPECTED, f"AGT govern() decided {got}, expected {EXPECTED}"
    median = median_ns(call, contexts, iterations)
    lines = sum(1 for _ in open(audit_path, encoding="utf-8"))
    assert lines >= iterations, f"audit file has {lines} lines for {iterations} calls"
    return median


def ours(quick: bool) -> dict:
    command = [
        "cargo", "bench", "--quiet", "-p", "kernel-enforcer",
        "--no-default-features", "--bench", "kernel_bench", "--", "--json",
    ]
    if quick:
        command.append("--quick")
    out = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--venv", type=Path, default=REPO / "target" / "peers-venv")
    parser.add_argument("--quick", action="store_true", help="shorter runs of ours")
    args = parser.parse_args()
    ensure_venv(args.venv)

    import importlib.metadata as md

    version = md.version("agent-governance-toolkit-core")
    with tempfile.TemporaryDirectory(dir=REPO / "target") as tmp:
        check = agt_policy_check(args.iterations)
        full = agt_govern(args.iterations, Path(tmp) / "agt-audit.jsonl")
    us = ours(args.quick)
    rows = [
        ("policy check alone", "AGT PolicyEvaluator.evaluate", check,
         "ours: Cedar evaluation, 10 policies", us["policy_eval_10"]),
        ("decision + audit written, not synced", "AGT govern() + FileAuditSink", full,
         "ours: separate process, signed, evidence written", us["authorize_os_buffered"]),
        ("decision + audit durable", "AGT: no durable mode", None,
         "ours: separate process, signed, fdatasync", us["authorize_durable"]),
    ]
    print(f"agent-governance-toolkit-core {version}, Python {sys.version.split()[0]}, "
          f"{args.iterations} calls per AGT figure; medians")
    print(f"{'comparison':<38} {'AGT (us)':>10} {'ours (us)':>10} {'ours/AGT':>9}")
    for what, _peer, peer_ns, _ours, our_ns in rows:
        peer = f"{peer_ns / 1000:.1f}" if peer_ns else "-"
        ratio = f"{our_ns / peer_ns:.2f}" if peer_ns else "-"
        print(f"{what:<38} {peer:>10} {our_ns / 1000:>10.1f} {ratio:>9}")


if __name__ == "__main__":
    main()
