"""The command a federated job runs: ``python -m suanli.federation client|aggregator``.

    python -m suanli.federation client --run RUN --dataset NAME --app mypkg.model [--data PATH]
    python -m suanli.federation aggregator --run RUN [--wait-s 30]

The front desk's URL and a token come from ``$SUANLI_SERVER`` and ``$SUANLI_TOKEN`` (put the
token in the job spec's ``secrets:``); the run from ``--run`` or ``$SUANLI_FEDERATION``. The
client's data file defaults to ``$SUANLI_DATASET_<NAME>``, which the agent sets when the job
mounts the dataset. ``--app`` names a module with ``load(path) -> data``,
``fit(params, data[, mu]) -> (params, n)`` and optionally ``evaluate(params, data) -> dict``:
the client prints the final model's metrics on its own data (they stay in the job's log at the
site) and, like the aggregator, prints the final global parameters, the run's only output.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence

from suanli.federation.rounds import FederatedAggregator, FederatedClient, run
from suanli.sdk import Client


def _dataset_env(name: str) -> str:
    """Where the agent says a mounted dataset is (the rule of ``suanli.agent.inputs.dataset_env``,
    which this package may not import)."""
    return "SUANLI_DATASET_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def _need(value: str | None, what: str) -> str:
    if not value:
        raise SystemExit(f"suanli.federation: {what}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suanli.federation", description=__doc__.split("\n\n")[0])
    ap.add_argument("role", choices=["client", "aggregator"])
    ap.add_argument("--run", default=os.environ.get("SUANLI_FEDERATION"), help="the federated run's id")
    ap.add_argument("--dataset", help="(client) the dataset this client trains on")
    ap.add_argument("--app", help="(client) module with load, fit and evaluate")
    ap.add_argument("--data", help="(client) the data file (default: $SUANLI_DATASET_<NAME>)")
    ap.add_argument("--wait-s", type=float, default=30.0, help="(aggregator) wait this long for silent clients")
    ap.add_argument("--poll-s", type=float, default=0.5)
    args = ap.parse_args(argv)
    server = _need(os.environ.get("SUANLI_SERVER"), "set SUANLI_SERVER to the front desk's URL")
    run_id = _need(args.run, "give --run or set SUANLI_FEDERATION")
    sdk = Client(server, token=os.environ.get("SUANLI_TOKEN"))
    try:
        if args.role == "aggregator":
            agg = FederatedAggregator(sdk, run_id)
            finished = lambda: agg.final is not None and agg.final.phase == "done"  # noqa: E731
            run(agg.step, finished, wait_s=args.wait_s, poll_s=args.poll_s)
            assert agg.final is not None
            print(json.dumps({"run": run_id, "params": agg.final.params}))
            return 0
        dataset = _need(args.dataset, "a client needs --dataset")
        app = importlib.import_module(_need(args.app, "a client needs --app MODULE"))
        path = _need(args.data or os.environ.get(_dataset_env(dataset)), f"no data: mount {dataset} or give --data")
        data = app.load(path)
        client = FederatedClient(sdk, run_id, dataset, app.fit, data)
        run(lambda _deadline: client.step(), lambda: client.final is not None, wait_s=args.wait_s, poll_s=args.poll_s)
        assert client.final is not None
        metrics = app.evaluate(client.final.params, data) if hasattr(app, "evaluate") else {}
        print(json.dumps({"run": run_id, "dataset": dataset, "metrics": metrics, "params": client.final.params}))
        return 0
    finally:
        sdk.close()


if __name__ == "__main__":
    sys.exit(main())
