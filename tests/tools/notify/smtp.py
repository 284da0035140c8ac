"""A real SMTP server (aiosmtpd) for the notification mail tests.

Serves on the listening socket the harness hands over as descriptor
$PEER_LISTEN_FD (tests/src/port.rs), with the certificate in $SMTP_DIR/cert.pem
and key.pem: STARTTLS required ($SMTP_TLS=starttls) or TLS from the first
byte ($SMTP_TLS=implicit), AUTH required as `jitgate` with the password in
$SMTP_PASSWORD. Each message accepted is appended to $SMTP_DIR/mail.jsonl
with its envelope, headers and both parts. While $SMTP_DIR/down exists,
messages are answered 451 (try again later).
"""

import asyncio
import email
import email.policy
import json
import os
import socket
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

DIR = os.environ["SMTP_DIR"]
MODE = os.environ.get("SMTP_TLS", "starttls")
PASSWORD = os.environ["SMTP_PASSWORD"].encode()


class Handler:
    async def handle_DATA(self, server, session, envelope):
        if os.path.exists(os.path.join(DIR, "down")):
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = {}
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_type()] = part.get_content()
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "message_id": str(message["message-id"]),
            "content_type": message.get_content_type(),
            "parts": parts,
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
        }
        with open(os.path.join(DIR, "mail.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"jitgate"
        and auth_data.password == PASSWORD
    )
    return AuthResult(success=ok)


async def serve():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(DIR, "cert.pem"), os.path.join(DIR, "key.pem"))
    common = dict(authenticator=authenticator, auth_required=True)
    if MODE == "implicit":
        # The whole connection is TLS; aiosmtpd only counts STARTTLS as
        # TLS for AUTH, so it is told not to ask for it again.
        smtp = dict(auth_require_tls=False, **common)
        wrap = context
    else:
        smtp = dict(tls_context=context, require_starttls=True, **common)
        wrap = None
    sock = socket.socket(fileno=int(os.environ["PEER_LISTEN_FD"]))
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(Handler(), **smtp), sock=sock, ssl=wrap
    )
    print(f"smtp listening on {sock.getsockname()[1]} ({MODE})", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve())
