"""Helpers of the serve tests: HTTP over loopback and bounded waits."""
import http.client
import json
import time


def http_request(port, method, path, body=None, headers=None, timeout=30):
    """-> (status, headers dict, body bytes) over a fresh keep-alive-less connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"content-type": "application/json"})
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def wait_for(pred, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
