#!/usr/bin/env python3
"""The peer of benches/job_queue.rs: a consumer of hgauto's directory queue protocol
written as a Python CI script would write it (flock on DIR/lock, the queue listed and
sorted, claims and outcomes written to a temporary name and renamed into place).

    python3 benches/job_queue.py DIR      # takes and reports jobs until the queue is empty
"""

import fcntl
import hashlib
import json
import os
import secrets
import sys
import time


def write(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), ".tmp-" + secrets.token_hex(8))
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def read(path: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def take(root: str, ttl_ms: int):
    with open(os.path.join(root, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = int(time.time() * 1000)
        names = sorted(n for n in os.listdir(os.path.join(root, "queue"))
                       if n.endswith(".json") and not n.startswith("."))
        for name in names:
            fid = name[:-5].rsplit("~", 1)[-1]
            claim_path = os.path.join(root, "claims", fid + ".json")
            claim = read(claim_path)
            if claim and claim["deadline_ms"] > now:
                continue
            job = read(os.path.join(root, "queue", name))
            if job is None:
                continue
            token = secrets.token_hex(16)
            attempt = (claim["attempt"] if claim else 0) + 1
            write(claim_path, json.dumps(
                {"token": token, "deadline_ms": now + ttl_ms, "attempt": attempt}).encode())
            return name, fid, job, token
    return None


def report(root: str, name: str, fid: str, job: dict, token: str) -> None:
    with open(os.path.join(root, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        claim = read(os.path.join(root, "claims", fid + ".json"))
        if not claim or claim["token"] != token:
            raise RuntimeError(f"lease on {fid} lost")
        outcome = {"status": "succeeded", "summary": "ok"}
        write(os.path.join(root, "done", fid + ".json"),
              json.dumps({"job": job, "token": token, "outcome": outcome}).encode())
        key = f"{job['check']}@{job.get('revision') or ''}"
        write(os.path.join(root, "history", hashlib.sha256(key.encode()).hexdigest() + ".json"),
              json.dumps(outcome).encode())
        os.remove(os.path.join(root, "queue", name))
        os.remove(os.path.join(root, "claims", fid + ".json"))


def main() -> None:
    root = sys.argv[1]
    done = 0
    while (taken := take(root, 300_000)) is not None:
        report(root, *taken)
        done += 1
    print(done)


if __name__ == "__main__":
    main()
