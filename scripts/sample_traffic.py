#!/usr/bin/env python3
"""Sends the bundled model's held-out rows to a running inference service and prints what it flagged.

Standard library only. Usage: sample_traffic.py [--url http://127.0.0.1:8080] [--batch 16] [--rounds 1]
"""
import argparse
import csv
import json
import pathlib
import sys
import time
import urllib.error
import urllib.request

HOLDOUT = pathlib.Path(__file__).resolve().parent.parent / "inference-image/model/wbc-autoencoder/holdout.csv"


def post(url: str, rows: list) -> dict:
    req = urllib.request.Request(
        url + "/v1/predict",
        data=json.dumps({"rows": rows}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    with HOLDOUT.open() as f:
        reader = csv.reader(f)
        header = next(reader)
        data = [[float(v) for v in row] for row in reader]
    label_at = header.index("label")
    rows = [[v for j, v in enumerate(r) if j != label_at] for r in data]
    labels = [int(r[label_at]) for r in data]

    counts = {(1, 1): 0, (1, 0): 0, (0, 1): 0, (0, 0): 0}
    started = time.perf_counter()
    requests = 0
    for _ in range(args.rounds):
        for i in range(0, len(rows), args.batch):
            answer = post(args.url, rows[i : i + args.batch])
            requests += 1
            if "results" not in answer:
                print(f"request refused: {answer.get('error')}", file=sys.stderr)
                return 1
            for r in answer["results"]:
                counts[(labels[i + r["row"]], int(r["is_anomaly"]))] += 1
    elapsed = time.perf_counter() - started

    # One deliberately bad request, to show what a client is told.
    bad = post(args.url, [rows[0][:29]])
    print(f"sent {requests} requests ({len(rows) * args.rounds} rows) in {elapsed:.2f} s")
    print(f"malignant rows flagged: {counts[(1, 1)]} of {counts[(1, 1)] + counts[(1, 0)]}")
    print(f"benign rows flagged:    {counts[(0, 1)]} of {counts[(0, 1)] + counts[(0, 0)]}")
    print(f"a 29-value row is refused with: {bad.get('error_type')}: {bad.get('error', '')[:100]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
