"""Escape tries against the local backend's sandbox, on a real network: a `suanli server` and a
`suanli agent` as subprocesses on 127.0.0.1 (bench/faults.py's Network). Tenant A's job holds a
secret and keeps running; a member of tenant B submits one job per try in bench/escape_tries.py
(../ walks, the server's home, /proc of the agent and of A's job, other attempts' folders,
`find / -name admin.token`, writes outside its folders). Prints a table, and with --json
`{"tries": N, "escaped": E}`; exits 1 when anything escaped.

    python bench/escape.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from escape_tries import VICTIM_RUN, VICTIM_SECRET, Where, escaped, pwned, tries
from faults import network, wait_for
from suanli.core.spec import job_spec_from_data
from suanli.sdk import Client

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    with network(lease_s=10) as net:
        net.start_server()
        net.start_agent("site-a", sandboxed=True)
        net.wait_online("site-a")
        home = net.root / "home"
        admin = Client(net.url, token=(home / "admin.token").read_text().strip())
        victim = admin.submit(
            job_spec_from_data({"name": "victim", "run": VICTIM_RUN, "secrets": {"VICTIM_KEY": VICTIM_SECRET}})
        )
        wait_for(lambda: "ready" in "".join(admin.logs(victim.id)), 60, "tenant A's job to run")
        admin.create_tenant("rival")
        admin.create_user("eve", role="member", tenant="rival")
        eve = Client(net.url, token=admin.create_token(user="eve", name="escape").token)
        agent = net.agents["site-a"].proc
        assert agent is not None
        where = Where(server_home=home, site_dir=net.root / "agents" / "site-a", agent_pid=agent.pid)
        forbidden = [VICTIM_SECRET, (home / "admin.token").read_text().strip()]
        forbidden += [p.read_text().strip() for p in (home / "tokens").glob("*.token")]
        jobs = {
            name: eve.submit(job_spec_from_data({"name": "try", "run": run})).id for name, run in tries(where).items()
        }
        wait_for(lambda: all(eve.job(j).state.value in TERMINAL for j in jobs.values()), 120, "the tries to end")
        rows = []
        for name, job_id in jobs.items():
            found = escaped("".join(eve.logs(job_id)), forbidden)
            rows.append((name, eve.job(job_id).state.value, found or "held"))
        left = pwned([net.root])
        if left:
            rows.append(("files written outside", "-", ", ".join(map(str, left))))
        for path in left:  # counted: now they go (one may sit at the host's /)
            path.unlink(missing_ok=True)
        victim_state = admin.job(victim.id).state.value
        admin.cancel(victim.id)
    result = {"tries": len(jobs), "escaped": sum(1 for r in rows if r[2] != "held"), "victim": victim_state}
    result["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(r[0]) for r in rows)
        print(f"{'TRY':<{width}}  {'JOB':<10} RESULT")
        for name, state, found in rows:
            print(f"{name:<{width}}  {state:<10} {found}")
        print(f"\n{result['tries']} tries, {result['escaped']} escaped ({result['seconds']} s)")
    sys.exit(1 if result["escaped"] else 0)


if __name__ == "__main__":
    main()
