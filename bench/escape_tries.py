"""Escape tries for the local backend's sandbox, shared by bench/escape.py and
tests/integration/test_sandbox.py.

Each try is the ``run`` of a job a member of tenant B submits, while tenant A has a job running
at the same site that holds a secret (in its environment and in a file of its workdir). A try
got through when its output holds a value it must never see (the admin token, a site token,
tenant A's secret) or a line starting with ``ESCAPE`` (what it found or wrote where it must
not). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Tenant A's secret (an environment variable and a file in its workdir).
VICTIM_SECRET = "victim-S3CRET-4f9a1c"
VICTIM_RUN = 'printf "%s" "$VICTIM_KEY" > secret.txt; cp secret.txt "$SUANLI_CHECKPOINT_DIR/"; echo ready; sleep 300'


@dataclass(frozen=True)
class Where:
    """The paths and pids a try aims at (an attacker could guess them; the tries are told)."""

    server_home: Path
    site_dir: Path
    agent_pid: int


def tries(where: Where) -> dict[str, str]:
    """Try name → the job's ``run``."""
    home, site, pid = where.server_home, where.site_dir, where.agent_pid
    return {
        "relative ../ walk": (
            "d=.; for i in 1 2 3 4 5 6 7 8 9 10; do d=$d/..; cat $d/admin.token $d/home/admin.token "
            "$d/tokens/* $d/home/tokens/* 2>/dev/null; ls $d/attempts 2>/dev/null | grep -q . && "
            "[ $(ls $d/attempts | wc -l) -gt 1 ] && echo ESCAPE other attempts via $d; done; true"
        ),
        "absolute paths into SUANLI_HOME": (
            f"cat {home}/admin.token {home}/server.key {home}/tokens/* {home}/credentials* 2>/dev/null; "
            f'for f in {home}/*; do [ -e "$f" ] && echo ESCAPE sees $f; done; true'
        ),
        "the database": f'for f in {home}/*.db {home}/*.sqlite*; do [ -r "$f" ] && echo ESCAPE reads $f; done; true',
        "/proc/<agent pid>/environ": (
            f"cat /proc/{pid}/environ 2>/dev/null | tr '\\0' '\\n'; "
            f"grep -qa 'suan[l]i' /proc/{pid}/cmdline 2>/dev/null && echo ESCAPE agent pid {pid} visible; true"
        ),
        "/proc/*/cwd and other jobs' environ": (
            "for p in /proc/[0-9]*; do cat $p/environ 2>/dev/null | tr '\\0' '\\n' | grep -a VICTIM; "
            "cat $p/cwd/secret.txt 2>/dev/null; "
            "grep -qa -e 'supervisor[.]py' -e 'slee[p] 300' -e 'suan[l]i agent' $p/cmdline 2>/dev/null "
            "&& echo ESCAPE sees process $p; done; true"
        ),
        "other attempts' folders": (
            f"cat {site}/attempts/*/attempt.json {site}/attempts/*/rank-*.log {site}/attempts/*/workdir/* "
            f"{site}/checkpoints/*/* 2>/dev/null; n=$(ls {site}/attempts 2>/dev/null | wc -l); "
            f"[ $n -gt 1 ] && echo ESCAPE lists $n attempts; m=$(ls {site}/checkpoints 2>/dev/null | wc -l); "
            f"[ $m -gt 1 ] && echo ESCAPE lists $m checkpoint folders; true"
        ),
        "find / -name admin.token": (
            "find / \\( -name admin.token -o -name 'site-*.token' -o -name attempt.json \\) 2>/dev/null "
            "| sed 's/^/ESCAPE found /'; true"
        ),
        "system secrets": "cat /etc/shadow >/dev/null 2>&1 && [ -s /etc/shadow ] && echo ESCAPE reads shadow; true",
        "writing outside its folders": (
            f"for d in / /etc /usr /var /root {home} {site} {site}/attempts {site}/checkpoints; do "
            'touch "$d/pwned-$$" 2>/dev/null && echo ESCAPE wrote in $d; done; true'
        ),
    }


def escaped(output: str, forbidden: list[str]) -> str:
    """What the output shows got through ("" when nothing did)."""
    for line in output.splitlines():
        if line.startswith("ESCAPE"):
            return line
    for value in forbidden:
        if value and value in output:
            return f"printed a secret ({value[:4]}…)"
    return ""


def pwned(roots: list[Path]) -> list[Path]:
    """Files a write try left on the host under ``roots`` (and at /)."""
    found = [p for root in roots if root.is_dir() for p in root.rglob("pwned-*")]
    return found + list(Path("/").glob("pwned-*"))
