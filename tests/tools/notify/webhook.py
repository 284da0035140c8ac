"""A webhook receiver for the notification tests: HTTPS on the listening
socket the harness hands over as descriptor $PEER_LISTEN_FD (tests/src/port.rs;
certificate in $WEBHOOK_DIR/cert.pem, key.pem),
verifying every delivery with the reference Standard Webhooks library
against the secret in $WEBHOOK_SECRET. Each delivery is appended to
$WEBHOOK_DIR/received.jsonl: verified or not, its webhook-id, content type
and CloudEvent. While $WEBHOOK_DIR/down exists it answers 503 with
Retry-After: 1.
"""

import json
import os
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

DIR = os.environ["WEBHOOK_DIR"]
VERIFIER = Webhook(os.environ["WEBHOOK_SECRET"])


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if os.path.exists(os.path.join(DIR, "down")):
            self.send_response(503)
            self.send_header("retry-after", "1")
            self.end_headers()
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {
            "webhook_id": headers.get("webhook-id"),
            "content_type": headers.get("content-type"),
            "signatures": len(headers.get("webhook-signature", "").split(" ")),
        }
        try:
            record["event"] = VERIFIER.verify(body, headers)
            record["verified"] = True
            status = 204
        except WebhookVerificationError as e:
            record["verified"] = False
            record["error"] = str(e)
            status = 400
        with open(os.path.join(DIR, "received.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.end_headers()

    def log_message(self, format, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=int(os.environ["PEER_LISTEN_FD"]))
    port = server.socket.getsockname()[1]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(DIR, "cert.pem"), os.path.join(DIR, "key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"webhook listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
