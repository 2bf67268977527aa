#!/usr/bin/env python3
"""Checks `examples/login.rs` in a real browser, through the Chrome DevTools
Protocol; `scripts/browser-check.sh` starts the app and Chromium and runs it.

    python3 scripts/browser_check.py --app http://127.0.0.1:PORT \
        --devtools-port-file PROFILE/DevToolsActivePort

Serves another site's pages (forms that post to the app by themselves) on
127.0.0.2, a different site than the app's 127.0.0.1, and checks:

1. the login form, filled and submitted, logs the user in;
2. another site's form posting to /logout leaves the user logged in;
3. the sessions page lists this browser by its label;
4. after logging out with the page's button, Back shows the logged-out
   front page, not the logged-in one from the browser's cache;
5. another site's form posting its own credentials to /login logs nobody
   in.

Prints a line per check and exits 1 at the first that fails. Only the
standard library: the WebSocket client below is the least CDP needs.
"""

import argparse
import base64
import http.server
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request

TIMEOUT = 20.0


class CheckFailed(Exception):
    pass


class WebSocket:
    """A client WebSocket (RFC 6455) over a plain TCP socket: text frames,
    masked as a client must, fragments joined, pings answered."""

    def __init__(self, url):
        parts = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CheckFailed("the DevTools WebSocket closed during the handshake")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise CheckFailed(f"DevTools refused the WebSocket: {head[:200]!r}")

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CheckFailed("the DevTools WebSocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send_frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text):
        self._send_frame(0x1, text.encode())

    def recv(self):
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise CheckFailed("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode()


class Page:
    """One browser tab, driven by CDP commands."""

    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise CheckFailed(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page, or None while
        the page is navigating."""
        try:
            result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        except CheckFailed:
            return None
        if "exceptionDetails" in result:
            return None
        return result.get("result", {}).get("value")

    def wait_for(self, expression, what):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                # Let the load finish before the next step.
                self.wait_loaded()
                return
            time.sleep(0.1)
        raise CheckFailed(f"timed out waiting for {what}; the page shows: {self.text()!r}")

    def wait_loaded(self):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.evaluate("document.readyState") == "complete":
                return
            time.sleep(0.05)

    def text(self):
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def navigate(self, url):
        """Starts loading `url`, without waiting (a page that goes on
        elsewhere by itself)."""
        self.call("Page.navigate", url=url)

    def goto(self, url):
        self.navigate(url)
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            f"{url} to load",
        )

    def responses(self, url):
        """The responses to document requests of `url` seen so far."""
        return [
            e["params"]["response"]
            for e in self.events
            if e["method"] == "Network.responseReceived"
            and e["params"].get("type") == "Document"
            and e["params"]["response"]["url"] == url
        ]

    def drain(self):
        """Reads the events the browser sent meanwhile."""
        self.call("Runtime.evaluate", expression="0")


def attacker_pages(app):
    """The pages of another site: each posts a form to the app as soon as
    it loads, without a CSRF token it cannot know."""

    def autosubmit(action, fields):
        inputs = "".join(
            f'<input type="hidden" name="{name}" value="{value}">' for name, value in fields
        )
        return (
            "<!doctype html><title>Win a prize</title>"
            f'<form id="f" method="post" action="{app}{action}">{inputs}</form>'
            '<script>document.getElementById("f").submit()</script>'
        ).encode()

    return {
        "/logout.html": autosubmit("/logout", [("csrf_token", "forged")]),
        "/login.html": autosubmit(
            "/login", [("user", "mallory"), ("password", "rocket"), ("remember", "true")]
        ),
    }


def serve_attacker(app):
    """Serves the other site's pages on 127.0.0.2; returns its origin."""
    pages = attacker_pages(app)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.2:{server.server_address[1]}"


def devtools_page(port_file):
    """The WebSocket URL of the browser's first tab."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with open(port_file) as f:
                port = int(f.readline())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as res:
                targets = json.load(res)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise CheckFailed(f"no DevTools page target (port file {port_file})")
        time.sleep(0.2)


def check(ok, message):
    if not ok:
        raise CheckFailed(message)
    print(f"ok: {message}", flush=True)


def run(app, port_file):
    attacker = serve_attacker(app)
    page = Page(devtools_page(port_file))
    page.call("Page.enable")
    page.call("Network.enable")
    page.call("Network.clearBrowserCookies")
    home = f"{app}/"

    # 1. Log in through the form.
    page.goto(home)
    check("Not logged in" in page.text(), "the front page shows the login form")
    page.evaluate(
        """(() => {
            document.getElementById("user").value = "alice";
            document.getElementById("password").value = "rocket";
            document.querySelector('form[action="/login"]').requestSubmit();
            return true;
        })()"""
    )
    page.wait_for(
        "document.body && document.body.innerText.includes('Logged in as alice')",
        "the logged-in page",
    )
    check("Welcome, alice!" in page.text(), "the filled and submitted login form logs alice in")

    # 2. Another site's form posts to /logout.
    page.navigate(f"{attacker}/logout.html")
    page.wait_for(
        f"location.href === {json.dumps(app + '/logout')} && document.title === 'Form refused'",
        "the app's answer to the other site's POST /logout",
    )
    check(True, "another site's POST /logout is refused (403, 'Form refused')")
    page.goto(home)
    check(
        "Logged in as alice" in page.text(),
        "after the cross-site POST /logout, alice is still logged in",
    )

    # 3. The sessions page: this browser, by its label.
    page.goto(f"{app}/sessions")
    text = page.text()
    check(
        "this browser" in text and "Chrome on Linux" in text,
        "the sessions page lists this browser by its label: "
        + next((line for line in text.splitlines() if "this browser" in line), "?"),
    )

    # 4. Log out, then Back.
    marked = f"{app}/?before-logout"
    page.goto(marked)
    check("Logged in as alice" in page.text(), "a logged-in page to come back to")
    page.drain()
    sent = page.responses(marked)
    headers = {k.lower(): v for k, v in sent[-1]["headers"].items()} if sent else {}
    check(
        headers.get("cache-control") == "no-store",
        "the logged-in page was sent with Cache-Control: no-store",
    )
    page.evaluate(
        """(() => {
            document.querySelector('form[action="/logout"]').requestSubmit();
            return true;
        })()"""
    )
    page.wait_for(
        "document.body && document.body.innerText.includes('You are logged out.')",
        "the logged-out page",
    )
    check(True, "the logout button logs out")
    loads_before = len(page.responses(marked))
    page.evaluate("history.back(), true")
    page.wait_for(
        "location.search === '?before-logout' && document.readyState === 'complete'",
        "Back to the page before the logout",
    )
    text = page.text()
    check(
        "Not logged in" in text and "Logged in as" not in text,
        "Back after the logout shows the logged-out page, not the cached logged-in one",
    )
    page.drain()
    reloads = page.responses(marked)[loads_before:]
    check(
        bool(reloads) and not any(r.get("fromDiskCache") for r in reloads),
        "Back fetched the page from the app again (not from the browser's cache)",
    )

    # 5. Another site's form posts its own credentials to /login.
    page.navigate(f"{attacker}/login.html")
    page.wait_for(
        f"location.href === {json.dumps(app + '/login')} && document.title === 'Form refused'",
        "the app's answer to the other site's POST /login",
    )
    check(True, "another site's POST /login is refused (403, 'Form refused')")
    page.goto(home)
    text = page.text()
    check(
        "Not logged in" in text and "mallory" not in text,
        "after the cross-site POST /login, nobody is logged in",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True, help="the app's origin, http://127.0.0.1:PORT")
    parser.add_argument(
        "--devtools-port-file",
        required=True,
        help="Chromium's DevToolsActivePort file (in its --user-data-dir)",
    )
    args = parser.parse_args()
    try:
        run(args.app.rstrip("/"), args.devtools_port_file)
    except CheckFailed as e:
        print(f"FAILED: {e}", flush=True)
        return 1
    print("browser check passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
