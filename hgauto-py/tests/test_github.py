"""hgauto.GithubPrSource against a small GitHub-shaped server on loopback: jobs from open
pull requests, a pending then a final status, an unchanged round that costs one 304, and a
token that is sent but never shown."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import hgauto

TOKEN = "ghp_pythonTestToken0123456789abcdefXYZ"


class FakeGithub:
    """Open pull requests, statuses and ETags for one repository, acme/widget."""

    def __init__(self) -> None:
        self.pulls: List[Dict[str, Any]] = []
        self.statuses: Dict[str, List[Dict[str, Any]]] = {}
        self.requests: List[Tuple[str, str, Dict[str, str]]] = []
        self.lock = threading.Lock()

    def open(self, n: int, sha: str) -> None:
        user = {"login": "octocat", "id": 1, "type": "User"}
        self.pulls.append({
            "number": n, "title": f"Change {n}", "draft": False, "user": user,
            "author_association": "MEMBER", "labels": [], "state": "open",
            "head": {"sha": sha, "ref": f"topic-{n}", "label": f"octocat:topic-{n}"},
            "base": {"sha": "0" * 40, "ref": "main", "label": "acme:main"},
            "created_at": f"2026-01-0{n}T00:00:00Z", "updated_at": f"2026-01-0{n}T00:00:00Z",
            "html_url": f"https://github.com/acme/widget/pull/{n}",
        })

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests.append((h.command, h.path, {k.lower(): v for k, v in h.headers.items()}))
            if h.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self.send(h, 401, {"message": "Bad credentials"})
            path = h.path.split("?")[0].strip("/").split("/")
            if h.command == "GET" and path[-1] == "pulls":
                return self.send(h, 200, self.pulls)
            if h.command == "GET" and path[-1] == "status":
                latest: Dict[str, Any] = {}
                for s in self.statuses.get(path[-2], []):
                    latest[s["context"]] = s
                return self.send(h, 200, {"state": "pending", "statuses": list(latest.values())})
            if h.command == "POST" and path[-2] == "statuses":
                body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
                self.statuses.setdefault(path[-1], []).append(body)
                return self.send(h, 201, body)
            return self.send(h, 404, {"message": "Not Found"})

    def send(self, h: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        etag = 'W/"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if code == 200 and h.headers.get("If-None-Match") == etag:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.end_headers()
            return
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if code == 200:
            h.send_header("ETag", etag)
        h.end_headers()
        h.wfile.write(data)


@pytest.fixture
def github() -> Iterator[Tuple[FakeGithub, str]]:
    fake = FakeGithub()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.answer(self)

        def do_POST(self) -> None:
            fake.answer(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_pull_requests_become_jobs_and_statuses(
    tmp_path: Path, github: Tuple[FakeGithub, str]
) -> None:
    fake, url = github
    a, b = "a" * 40, "b" * 40
    fake.open(1, a)
    fake.open(2, b)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    source = hgauto.GithubPrSource(
        tmp_path / "state",
        {"acme/widget": ["build/linux"]},
        api_url=url,
        token_file=token_file,
        details_url="https://ci.example.org/{number}/{check}",
        poll_interval=0,
    )
    assert TOKEN not in repr(source)
    assert source.poll() == 2
    seen = []
    while (job := source.next()) is not None:
        seen.append(job.revision)
        assert job.attributes["repository"] == "acme/widget"
        source.started(job)
        source.report(job, "failed" if job.revision == b else "succeeded", "3 tests failed")
    assert seen == [a, b], "oldest pull request first"
    assert [s["state"] for s in fake.statuses[a]] == ["pending", "success"]
    assert fake.statuses[b][-1] == {
        "state": "failure", "description": "3 tests failed", "context": "build/linux",
        "target_url": "https://ci.example.org/2/build/linux",
    }
    assert all(r[2].get("authorization") == f"Bearer {TOKEN}" for r in fake.requests)

    fake.requests.clear()
    writes = source.stats()["status_writes"]
    assert source.poll() == 0
    assert len(fake.requests) == 1 and "if-none-match" in fake.requests[0][2]
    stats = source.stats()
    assert stats["not_modified"] >= 1 and stats["status_writes"] == writes


def test_bad_tokens_and_repositories_are_named(tmp_path: Path, github: Tuple[FakeGithub, str]) -> None:
    _, url = github
    wrong = hgauto.GithubPrSource(
        tmp_path / "s", {"acme/widget": ["build"]}, api_url=url, token="ghp_not_the_right_one"
    )
    with pytest.raises(hgauto.AuthError) as denied:
        wrong.poll()
    assert "ghp_not_the_right_one" not in str(denied.value)
    with pytest.raises(hgauto.InvalidInput, match="owner/name"):
        hgauto.GithubPrSource(tmp_path / "t", {"widget": ["build"]}, api_url=url)
    with pytest.raises(hgauto.InvalidInput, match="https"):
        hgauto.GithubPrSource(tmp_path / "u", {"acme/widget": ["b"]}, api_url="http://example.com")
