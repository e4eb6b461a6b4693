"""Labels through the real Label Studio and back, outside the fast suite.

    python -m venv /tmp/lsenv && /tmp/lsenv/bin/pip install label-studio 'sentry-sdk<3'
    python benchmarks/label_studio_roundtrip.py --label-studio /tmp/lsenv/bin/label-studio [--budget 12]

1. pretrains a tiny SimCLR run on the digits (1 epoch) and picks ``--budget`` items with
   ``selfsup select`` (its CSV, Label Studio task file and labelling interface);
2. starts the ``label-studio`` package on 127.0.0.1 with a fresh data folder, a user and an API
   token, creates a project with selfsup's interface, and imports selfsup's task file through
   the API;
3. annotates every task through the API with the digit's true class (the labeller simulated),
   the last task's annotation cancelled (it stays unlabelled);
4. exports the project through the API (``exportType=JSON``, and ``JSON_MIN``) and reads both
   exports back with selfsup (``read_labels``, what ``--labelled`` reads), then runs
   ``selfsup evaluate --labelled`` on the full export.

Checks that every annotated task came back as its own item with its own label, and writes
``benchmarks/results/label_studio_roundtrip.json`` (Label Studio's version, what was checked).
(sentry-sdk 3 does not start Label Studio 1.23.2: "Unknown option 'send_default_pii'".)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def request(url: str, token: str, method: str = "GET", body=None) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(
        urllib.request.Request(url, data, headers, method=method), timeout=120
    ) as reply:
        return reply.read()


def wait_for(url: str, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"label-studio exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            time.sleep(2)
    raise SystemExit(f"label-studio did not answer at {url} in {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label-studio", default="label-studio", help="the label-studio command")
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--port", type=int, default=18089)
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    from machine import machine_info
    from selfsup import api
    from selfsup.data import load_data
    from selfsup.labelling.labels import read_labels

    work = Path(tempfile.mkdtemp(prefix="selfsup-label-studio-"))
    run = work / "run"
    api.pretrain(
        "simclr", "digits", out=run, epochs=1, overrides=["model.width=8"], progress=False, report=False
    )
    picked = api.select(run, budget=args.budget, out=work / "picks.csv", progress=False)
    truth = load_digits().target

    token, url = secrets.token_hex(20), f"http://127.0.0.1:{args.port}"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(work / "ls-data"),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    command = [
        args.label_studio,
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--username",
        "selfsup@example.org",
        "--password",
        secrets.token_hex(8),
        "--user-token",
        token,
        "--enable-legacy-api-token",
        "--data-dir",
        str(work / "ls-data"),
    ]
    log = open(work / "label-studio.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"{url}/health", server)
        version = json.loads(request(f"{url}/api/version", token)).get("release", "?")
        interface = Path(picked["interface"]).read_text()
        project = json.loads(
            request(
                f"{url}/api/projects", token, "POST", {"title": "selfsup picks", "label_config": interface}
            )
        )
        tasks = json.loads(Path(picked["tasks"]).read_text())
        request(f"{url}/api/projects/{project['id']}/import", token, "POST", tasks)
        listed = json.loads(request(f"{url}/api/tasks?project={project['id']}&page_size=1000", token))
        listed = listed["tasks"] if isinstance(listed, dict) else listed
        expected = {}
        for i, task in enumerate(sorted(listed, key=lambda t: t["id"])):
            index = int(task["data"]["index"])
            result = [
                {
                    "from_name": "label",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": [str(truth[index])]},
                }
            ]
            cancelled = i == len(listed) - 1
            request(
                f"{url}/api/tasks/{task['id']}/annotations/",
                token,
                "POST",
                {"result": [] if cancelled else result, "was_cancelled": cancelled},
            )
            if not cancelled:
                expected[index] = str(truth[index])
        checks = {}
        splits = load_data("digits")
        for kind in ("JSON", "JSON_MIN"):
            exported = request(f"{url}/api/projects/{project['id']}/export?exportType={kind}", token)
            path = work / f"export-{kind}.json"
            path.write_bytes(exported)
            labels = read_labels(path, splits)
            found = {int(splits.train.indices()[r]): name for r, name in zip(labels.rows, labels.names)}
            checks[kind] = {
                "tasks": len(json.loads(exported)),
                "labels_read": len(found),
                "match": found == expected,
            }
            print(
                f"{kind}: {len(found)} labels read back; {'all match' if found == expected else 'MISMATCH'}"
            )
        evaluation = api.evaluate(
            run, labelled=work / "export-JSON.json", protocols=["knn", "linear"], progress=False, report=False
        )
        checks["evaluate"] = {r["protocol"]: round(r["mean"], 4) for r in evaluation["results"]}
        print(f"selfsup evaluate --labelled on the export: {checks['evaluate']}")
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    result = {
        "machine": machine_info(),
        "label_studio": version,
        "budget": args.budget,
        "annotated": len(expected),
        "cancelled": 1,
        "checks": checks,
        "passed": all(c["match"] for k, c in checks.items() if k != "evaluate"),
    }
    out = ROOT / "benchmarks" / "results" / "label_studio_roundtrip.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
