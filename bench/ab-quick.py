#!/usr/bin/env python3
"""Quick paired A/B of W1 on tale builds or settings.

    bench/ab-quick.py ROUNDS SECONDS "NAME:ENV=VALUE ENV=VALUE" "NAME:..." ...

Every variant runs as its own `tale serve` (bench/engines/tale/adapter.sh,
own port and database) beside one sink, all started once; then rounds of
short wrk runs (the harness's loadgen/w1.lua, 32 connections) alternate
between them. Short alternating runs pair each variant with the same
machine state, which drifts by ±15-25 % over minutes on these shared VMs;
read the median of the per-round ratios against the first variant.
Per run: accepted webhooks/s (wrk) and tale's CPU per event (/proc).
Two servers of one build differ by up to ±10 % for as long as they run
(their database files, where their threads land), so every variant runs
as AB_INSTANCES servers (default 2), each with its own database, and a
round's figure for a variant is the mean of its servers'.
Env: PEERS_DIR (/opt/peers), SHARED_BENCH (../shared/bench), AB_INSTANCES;
in a variant, AB_RUN_ROOT=DIR puts its database under DIR (e.g. /dev/shm).
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.environ.get("SHARED_BENCH", os.path.join(ROOT, "..", "shared", "bench"))
PEERS = os.environ.get("PEERS_DIR", "/opt/peers")
ADAPTER = os.path.join(ROOT, "bench", "engines", "tale", "adapter.sh")
SINK_PORT = 9911
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system time of `pid` and its children threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_ready(url, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"not ready: {url}")


def wrk(url, seconds):
    lua = os.path.join(BENCH, "loadgen", "w1.lua")
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds:g}s", "--timeout", "10s", "-s", lua, url],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[8:])
            return r["requests"] - r["errors"]["status"]
    sys.exit(f"wrk printed no summary: {out[-500:]}")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, seconds = int(sys.argv[1]), float(sys.argv[2])
    instances = int(os.environ.get("AB_INSTANCES", "2"))
    variants = []
    for i, spec in enumerate(sys.argv[3:]):
        name, _, envs = spec.partition(":")
        servers = []
        for k in range(instances):
            env = dict(os.environ)
            env.update(kv.split("=", 1) for kv in envs.split())
            servers.append({"name": f"{name}-{k + 1}", "env": env, "port": 8191 + i * instances + k})
        variants.append({"name": name, "servers": servers})
    servers = [srv for v in variants for srv in v["servers"]]
    scratch = tempfile.mkdtemp(prefix="tale-abq-")
    procs = []
    sink_bin = os.path.join(PEERS, "sink-target", "release", "bench-sink")
    sink = subprocess.Popen([sink_bin, "--addr", f"127.0.0.1:{SINK_PORT}", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs.append(sink)
    try:
        for srv in servers:
            env = srv["env"]
            # AB_RUN_ROOT in a variant puts its database elsewhere (a tmpfs, another disk).
            root = env.get("AB_RUN_ROOT") and tempfile.mkdtemp(prefix="tale-abq-", dir=env["AB_RUN_ROOT"])
            env.update(RUN_DIR=os.path.join(root or scratch, srv["name"]), TALE_PORT=str(srv["port"]),
                       SINK_URL=f"http://127.0.0.1:{SINK_PORT}", BENCH_DIR=BENCH, PEERS_DIR=PEERS)
            os.makedirs(env["RUN_DIR"])
            subprocess.run([ADAPTER, "prepare"], env=env, check=True, stdout=subprocess.DEVNULL)
            info = dict(line.split("=", 1) for line in
                        subprocess.run([ADAPTER, "info"], env=env, check=True, capture_output=True,
                                       text=True).stdout.splitlines() if "=" in line)
            p = subprocess.Popen([ADAPTER, "start"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(env["RUN_DIR"], "engine.log"), "w"),
                                 start_new_session=True)
            procs.append(p)
            srv["proc"], srv["url"] = p, info["W1_URL"]
            wait_ready(info["READY_URL"])
            wrk(srv["url"], 2)  # warm-up: connections, caches, the WAL's first pages
        rates = {v["name"]: [] for v in variants}
        costs = {v["name"]: [] for v in variants}
        for r in range(rounds):
            # Alternate the order too: the first of a round is not favoured.
            order = variants if r % 2 == 0 else list(reversed(variants))
            for v in order:
                rate, cost = [], []
                for srv in v["servers"]:
                    before = cpu_seconds(srv["proc"].pid)
                    n = wrk(srv["url"], seconds)
                    used = cpu_seconds(srv["proc"].pid) - before
                    rate.append(n / seconds)
                    cost.append(used * 1e6 / max(n, 1))
                rates[v["name"]].append(statistics.mean(rate))
                costs[v["name"]].append(statistics.mean(cost))
            line = "  ".join(f"{v['name']} {rates[v['name']][-1]:7.0f}/s {costs[v['name']][-1]:4.0f}us"
                             for v in variants)
            print(f"round {r + 1}: {line}", flush=True)
        base = variants[0]["name"]
        print(f"\nmedians over {rounds} rounds of {seconds:g} s (ratio: median of per-round ratios to {base})")
        for v in variants:
            n = v["name"]
            ratios = [a / b for a, b in zip(rates[n], rates[base])]
            cost_ratios = [a / b for a, b in zip(costs[n], costs[base])]
            print(f"{n:12} {statistics.median(rates[n]):8.0f} events/s  x{statistics.median(ratios):.3f}"
                  f"  cpu {statistics.median(costs[n]):4.0f} us/event  x{statistics.median(cost_ratios):.3f}")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)
        for srv in servers:
            if srv["env"].get("AB_RUN_ROOT"):
                shutil.rmtree(os.path.dirname(srv["env"]["RUN_DIR"]), ignore_errors=True)


if __name__ == "__main__":
    main()
