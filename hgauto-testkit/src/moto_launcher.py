"""moto_server, with SQS receives made atomic as SQS's are.

moto's threaded server runs each request on its own thread, and its ReceiveMessage checks
that a message is visible and then marks it received with no lock in between: two
concurrent receives can both take one message. SQS hides a received message from every
other receive (its rare redundant deliveries aside), and tests of several agents on one
queue rely on that. Each receive here takes a lock for one sweep of the queue; a long poll
sleeps between sweeps without holding it.
"""

import functools
import inspect
import sys
import threading
import time

from moto.server import main
from moto.sqs.models import SQSBackend

_lock = threading.Lock()
_receive = SQSBackend.receive_message
_signature = inspect.signature(_receive)


@functools.wraps(_receive)
def _atomic_receive(*args, **kwargs):
    call = _signature.bind(*args, **kwargs)
    end = time.monotonic() + float(call.arguments.get("wait_seconds_timeout") or 0)
    call.arguments["wait_seconds_timeout"] = 0
    while True:
        with _lock:
            got = _receive(*call.args, **call.kwargs)
        if got or time.monotonic() >= end:
            return got
        time.sleep(0.05)


SQSBackend.receive_message = _atomic_receive

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
