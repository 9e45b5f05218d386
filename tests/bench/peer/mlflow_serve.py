"""Peer: `mlflow models serve` on the same fitted model (model.joblib, fitted by the benchmark with the same
scikit-learn), driven by a bounded local load generator over keep-alive HTTP.
Prints {"single": {...}, "batch100": {...}, "single4": {...}}: rows/s, p50 and p99 latency in ms."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import joblib
import mlflow.sklearn
import numpy as np

folder, seconds = sys.argv[1], float(sys.argv[2])
model = joblib.load(f"{folder}/model.joblib")
features = json.loads(open(f"{folder}/features.json").read())
rows = np.load(f"{folder}/rows.npy")
target = f"{folder}/mlflow-model"
shutil.rmtree(target, ignore_errors=True)
mlflow.sklearn.save_model(model, target, serialization_format="skops",
                          skops_trusted_types=["sklearn.tree._tree.Tree", "numpy.dtype"])

with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
server = subprocess.Popen(["mlflow", "models", "serve", "-m", target, "-p", str(port), "--env-manager", "local",
                           "-w", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
try:
    deadline = time.monotonic() + 120
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("mlflow models serve did not come up")
        time.sleep(0.2)

    def body(start: int, count: int) -> bytes:
        chunk = rows[start % (len(rows) - count): start % (len(rows) - count) + count]
        return json.dumps({"dataframe_split": {"columns": features, "data": chunk.tolist()}}).encode()

    def load(rows_per_request: int, duration: float, latencies: list, counter: list) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        end, i = time.monotonic() + duration, 0
        while time.monotonic() < end:
            started = time.perf_counter()
            connection.request("POST", "/invocations", body(i, rows_per_request),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"mlflow answered {response.status}")
            latencies.append((time.perf_counter() - started) * 1000)
            counter[0] += rows_per_request
            i += rows_per_request

    def scenario(rows_per_request: int, connections: int) -> dict:
        load(rows_per_request, 2.0, [], [0])                   # warm-up
        latencies, counter = [], [0]
        threads = [threading.Thread(target=load, args=(rows_per_request, seconds, latencies, counter))
                   for _ in range(connections)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        return {"rows_per_s": counter[0] / elapsed, "p50_ms": float(np.percentile(latencies, 50)),
                "p99_ms": float(np.percentile(latencies, 99)), "requests": len(latencies)}

    result = {"single": scenario(1, 1), "batch100": scenario(100, 1), "single4": scenario(1, 4)}
finally:
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
print(json.dumps(result))
