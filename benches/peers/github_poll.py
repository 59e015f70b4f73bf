"""The hand-rolled peer of GithubPrSource's round: what a CI script built on `requests`
does each loop (list open pull requests, following pages, then read each head's combined
status to see what is untested), without conditional requests.

    python3 github_poll.py API_URL REPO ROUNDS

Prints one JSON line: requests, bytes (response bodies) and seconds for the rounds.
"""

import json
import sys
import time
import urllib.request


def get(url, counters):
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.github+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
        counters["requests"] += 1
        counters["bytes"] += len(body)
        link = resp.headers.get("Link", "")
    nxt = None
    for part in link.split(","):
        if 'rel="next"' in part:
            nxt = part.split(";")[0].strip()[1:-1]
    return json.loads(body), nxt


def round_(api, repo, counters):
    url = f"{api}/repos/{repo}/pulls?state=open&per_page=100&sort=created&direction=asc"
    pulls = []
    while url:
        page, url = get(url, counters)
        pulls.extend(page)
    untested = 0
    for pr in pulls:
        status, _ = get(f"{api}/repos/{repo}/commits/{pr['head']['sha']}/status?per_page=100", counters)
        if not status["statuses"]:
            untested += 1
    return untested


def main():
    api, repo, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    counters = {"requests": 0, "bytes": 0}
    start = time.monotonic()
    for _ in range(rounds):
        round_(api, repo, counters)
    counters["seconds"] = time.monotonic() - start
    print(json.dumps(counters))


if __name__ == "__main__":
    main()
