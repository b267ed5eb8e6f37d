#!/usr/bin/env python3
"""Fills a tale SQLite database (schema created by `tale serve`) with RUNS
runs of bench/ui/stories/ui-bench.yaml: 10 events and 6 traces each, 1 % of
the runs failed, started over the last 48 hours. Deterministic (seeded)."""
import json, os, random, sqlite3, sys, time, uuid

db, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
rng = random.Random(42)
now = int(time.time() * 1000)
span = 48 * 3600 * 1000

def uuid7(ms):
    r = rng.getrandbits(74)
    b = bytearray(ms.to_bytes(6, "big") + r.to_bytes(10, "big"))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)

con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=OFF")
cur = con.cursor()
alert = lambda i, sev: {"id": f"da6375{i:010d}", "title": "Suspicious PowerShell command line",
                        "severity": sev, "status": "new", "category": "Execution",
                        "evidence": [{"@odata.type": "#microsoft.graph.security.userEvidence",
                                      "userAccount": {"userPrincipalName": "nathan@contoso.com"}}]}
runs_rows, events, traces = [], [], []
t0 = time.time()
for n in range(runs):
    start = now - span + (span * n) // runs
    run = uuid7(start)
    failed = n % 100 == 99
    sev = ["high", "high", "medium", "low"]
    alerts = [alert(n * 4 + k, sev[k]) for k in range(4)]
    at = start
    hook = uuid7(at)
    events.append((hook, run, "ui-bench", "hook", b"", None,
                   json.dumps({"method": "post", "path": "ui-bench", "query": {}, "headers": {"content-type": "application/json"},
                               "body": {"alerts": alerts}}), at))
    count = 1
    traces.append((run, "split", hook, at + 1, 180, "succeeded", None, 4, None, None))
    for k, a in enumerate(alerts):
        e = uuid7(at + 1)
        events.append((e, run, "ui-bench", "split", hook, None, json.dumps({"alert": a, "index": k, "size": 4}), at + 1))
        c = uuid7(at + 2)
        matched = a["severity"] == "high"
        events.append((c, run, "ui-bench", "check", e, None if matched else "no_match",
                       json.dumps({"alert": a, "index": k, "size": 4, "rule_matched": matched}), at + 2))
        traces.append((run, "check", e, at + 2, 90, "succeeded", None if matched else "no_match", 1, None,
                       json.dumps([{"rules": [{"rule": "field==value", "path": a["severity"], "value": "high", "matched": matched}]}])))
        count += 2
        if k == 0:
            status = 500 if failed else 200
            f = uuid7(at + 5)
            events.append((f, run, "ui-bench", "forward", c, "failure" if failed else None,
                           json.dumps({"status": status, "headers": {"content-type": "application/json"}, "body": {"ok": not failed}}), at + 5))
            traces.append((run, "forward", c, at + 3, 2100, "failed" if failed else "succeeded", "failure" if failed else None, 1,
                           "POST http://127.0.0.1:9/sink answered 500" if failed else None,
                           json.dumps([{"method": "POST", "url": "http://127.0.0.1:9/sink", "headers": {"content-type": "application/json"},
                                        "body": json.dumps(a)[:2048], "body_bytes": len(json.dumps(a)), "attempt": 1, "status": status, "duration_ms": 2}])))
            count += 1
            if not failed:
                s = uuid7(at + 6)
                events.append((s, run, "ui-bench", "summary", f, None, json.dumps({"status": "200"}), at + 6))
                traces.append((run, "summary", f, at + 6, 70, "succeeded", None, 1, None, None))
                count += 1
    errors = json.dumps(["forward: POST http://127.0.0.1:9/sink answered 500 (the `failure` branch, which no action follows)"]) if failed else "[]"
    runs_rows.append((run, "ui-bench", "failed" if failed else "succeeded", errors, count, start, at + 7))
    if len(runs_rows) >= 5000:
        cur.executemany("INSERT INTO runs (id, story, status, errors, events, started_at, finished_at) VALUES (?,?,?,?,?,?,?)", runs_rows)
        cur.executemany("INSERT INTO events (id, run_id, story, action, parents, branch, output, created_at) VALUES (?,?,?,?,?,?,?,?)", events)
        cur.executemany("INSERT INTO traces (run_id, action, input, at, duration_us, status, branch, emitted, error, detail) VALUES (?,?,?,?,?,?,?,?,?,?)", traces)
        con.commit()
        runs_rows, events, traces = [], [], []
if runs_rows:
    cur.executemany("INSERT INTO runs (id, story, status, errors, events, started_at, finished_at) VALUES (?,?,?,?,?,?,?)", runs_rows)
    cur.executemany("INSERT INTO events (id, run_id, story, action, parents, branch, output, created_at) VALUES (?,?,?,?,?,?,?,?)", events)
    cur.executemany("INSERT INTO traces (run_id, action, input, at, duration_us, status, branch, emitted, error, detail) VALUES (?,?,?,?,?,?,?,?,?,?)", traces)
    con.commit()
n_runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
n_traces = con.execute("SELECT count(*) FROM traces").fetchone()[0]
print(f"filled {db}: {n_runs} runs, {n_events} events, {n_traces} traces in {time.time() - t0:.0f} s", file=sys.stderr)
