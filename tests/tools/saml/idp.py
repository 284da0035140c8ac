"""A SAML 2.0 identity provider (pysaml2, signing with xmlsec1) for jitgate's
sign-in tests, started by the test harness (tests/src/saml.rs).

Nothing about SAML is faked: AuthnRequests (redirect binding) are parsed and
responses built and signed by pysaml2. What the tests control, through files
in IDP_DIR and query parameters:

  sp.xml         the service providers' metadata (written by the harness)
  accounts.json  accounts by id: {"email": ..., "name": ..., "role": ..., "groups": [...]}
  ?who=ID        the account that signs in (default: the first)
  ?trick=NAME    how the response is wrong, for the negative tests:
                 unsigned, other_key, wrapping, wrong_audience, expired,
                 other_sp, missing_email

Endpoints: GET /metadata, GET /sso (SP-initiated), GET /idp-initiated.
The answer is the HTML form a browser posts to the SP's ACS.

Usage: IDP_PORT=... IDP_DIR=... [PEER_LISTEN_FD=3] python idp.py
(prints "idp listening on URL"). With PEER_LISTEN_FD it serves on that
already listening socket, which the test harness bound to IDP_PORT and holds
(tests/src/port.rs), instead of binding the port itself.
"""

import base64
import datetime
import html
import json
import os
import re
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server

PORT = int(os.environ["IDP_PORT"])
DIR = os.environ["IDP_DIR"]
BASE = f"http://127.0.0.1:{PORT}"
OTHER_SP = "urn:jitgate-test:other-sp"


def keypair(name):
    key_file, cert_file = os.path.join(DIR, f"{name}.key"), os.path.join(DIR, f"{name}.crt")
    if not os.path.exists(key_file):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test idp {name}")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        with open(key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def server(keyname, lifetime_minutes=15):
    key_file, cert_file = keypair(keyname)
    conf = IdPConfig()
    conf.load({
        "entityid": f"{BASE}/metadata",
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [(f"{BASE}/sso", BINDING_HTTP_REDIRECT)]},
            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
            "want_authn_requests_signed": False,
            "policy": {"default": {"lifetime": {"minutes": lifetime_minutes}, "name_form": NAME_FORMAT_BASIC}},
        }},
        "key_file": key_file,
        "cert_file": cert_file,
        "metadata": {"local": [os.path.join(DIR, "sp.xml")]},
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "allow_unknown_attributes": True,
    })
    return Server(config=conf)


IDP = server("idp")
OTHER_KEY = server("other")
EXPIRED = server("idp", lifetime_minutes=-10)
METADATA = str(entity_descriptor(IDP.config))


def first_sp():
    sp_xml = open(os.path.join(DIR, "sp.xml")).read()
    entity = re.search(r'entityID="([^"]+)"', sp_xml).group(1)
    acs = re.search(r'AssertionConsumerService[^>]*Location="([^"]+)"', sp_xml).group(1)
    return entity, acs


def wrap(xml, account):
    """Puts an unsigned assertion for someone else before the signed one."""
    signed = re.search(r"<(\w+:)?Assertion[ >].*?</(\w+:)?Assertion>", xml, re.S).group(0)
    evil = re.sub(r"<(\w+:)?Signature[ >].*?</(\w+:)?Signature>", "", signed, flags=re.S)
    evil = evil.replace(account["email"], "mallory@example.com")
    evil = re.sub(r'ID="[^"]+"', 'ID="evil-assertion"', evil, count=1)
    return xml.replace(signed, evil + signed, 1)


def respond(query, in_response_to, acs, sp, relay_state):
    accounts = json.load(open(os.path.join(DIR, "accounts.json")))
    who = query.get("who", [next(iter(accounts))])[0]
    trick = query.get("trick", [""])[0]
    account = accounts[who]
    identity = {k: (v if isinstance(v, list) else [v]) for k, v in account.items()}
    if trick == "missing_email":
        identity.pop("email", None)
    srv = {"other_key": OTHER_KEY, "expired": EXPIRED}.get(trick, IDP)
    destination = "https://other.example/saml/acs" if trick == "other_sp" else acs
    audience = OTHER_SP if trick == "wrong_audience" else sp
    response = srv.create_authn_response(
        identity,
        in_response_to=in_response_to,
        destination=destination,
        sp_entity_id=audience,
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=account.get("email", who)),
        sign_assertion=trick != "unsigned",
        sign_response=trick not in ("unsigned", "wrapping"),
    )
    xml = str(response)
    if trick == "wrapping":
        xml = wrap(xml, account)
    encoded = base64.b64encode(xml.encode()).decode()
    fields = f'<input type="hidden" name="SAMLResponse" value="{encoded}"/>'
    if relay_state:
        fields += f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}"/>'
    return (f'<!DOCTYPE html><html><body onload="document.forms[0].submit()">'
            f'<form method="post" action="{html.escape(acs)}">{fields}</form></body></html>')


class Handler(BaseHTTPRequestHandler):
    def send(self, status, body, content_type="text/html"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/metadata":
                return self.send(200, METADATA, "application/samlmetadata+xml")
            if url.path == "/sso":
                request = IDP.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message
                sp = request.issuer.text
                acs = request.assertion_consumer_service_url
                relay = query.get("RelayState", [""])[0]
                return self.send(200, respond(query, request.id, acs, sp, relay))
            if url.path == "/idp-initiated":
                sp, acs = first_sp()
                return self.send(200, respond(query, None, acs, sp, ""))
            return self.send(404, "not found", "text/plain")
        except Exception as e:  # a test reads the log
            return self.send(500, f"{type(e).__name__}: {e}", "text/plain")

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


if __name__ == "__main__":  # fuzz/seeds/saml.py imports it to build seeds
    if "PEER_LISTEN_FD" in os.environ:
        httpd = ThreadingHTTPServer(("127.0.0.1", PORT), Handler, bind_and_activate=False)
        httpd.socket.close()
        httpd.socket = socket.socket(fileno=int(os.environ["PEER_LISTEN_FD"]))
    else:
        httpd = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"idp listening on {BASE}", flush=True)
    httpd.serve_forever()
