"""A loopback HTTP server for git (smart HTTP, through `git http-backend`) and Mercurial
(hgweb) that answers only requests with the right Basic credentials.

Usage: python3 auth_vcs_server.py ROOT USER PASSWORD PORTFILE
Serves ROOT/git/<name> at /git/<name> and ROOT/hg/<name> at /hg/<name>. Run it with the
interpreter of `hg` (its modules are needed for hgweb). The port lands in PORTFILE once
the socket listens.
"""

import base64
import os
import subprocess
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from mercurial.hgweb import hgweb

ROOT, USER, PASSWORD, PORTFILE = sys.argv[1:5]
EXPECTED = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
HG_APPS = {}


def git(environ, start_response, path):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    env = {
        "PATH": os.environ["PATH"],
        "GIT_PROJECT_ROOT": os.path.join(ROOT, "git"),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path,
        "REQUEST_METHOD": environ["REQUEST_METHOD"],
        "QUERY_STRING": environ.get("QUERY_STRING", ""),
        "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
        "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
        "REMOTE_USER": USER,
        "REMOTE_ADDR": "127.0.0.1",
    }
    out = subprocess.run(
        ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
    ).stdout
    sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
    head, _, payload = out.partition(sep)
    status, headers = "200 OK", []
    for line in head.decode().splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = value.strip()
        elif name:
            headers.append((name.strip(), value.strip()))
    start_response(status, headers)
    return [payload]


def hg(environ, start_response, path):
    name, _, rest = path.lstrip("/").partition("/")
    if name not in HG_APPS:
        HG_APPS[name] = hgweb(os.path.join(ROOT, "hg", name).encode())
    environ["SCRIPT_NAME"] = "/hg/" + name
    environ["PATH_INFO"] = "/" + rest
    return HG_APPS[name](environ, start_response)


def app(environ, start_response):
    if environ.get("HTTP_AUTHORIZATION") != EXPECTED:
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="test"')])
        return [b"credentials required\n"]
    path = environ.get("PATH_INFO", "")
    if path.startswith("/git/"):
        return git(environ, start_response, path[len("/git") :])
    if path.startswith("/hg/"):
        return hg(environ, start_response, path[len("/hg") :])
    start_response("404 Not Found", [])
    return [b""]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(PORTFILE + ".tmp", PORTFILE)
server.serve_forever()
