"""Tries TLS handshakes with a server the way old and weak clients would,
for the broker's TLS settings test (tests/tests/it/headers.rs).

Usage: python probe.py HOST PORT CA_FILE
Prints one JSON object: for each attempt, "ok VERSION CIPHER" or
"refused: REASON" (the OpenSSL error; a refusal by the server names the
alert it sent, like TLSV1_ALERT_PROTOCOL_VERSION or
SSLV3_ALERT_HANDSHAKE_FAILURE).
"""

import json
import socket
import ssl
import sys

host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
V = ssl.TLSVersion

# name: (lowest version, highest version, OpenSSL cipher list for TLS <= 1.2)
ATTEMPTS = {
    "tls1.3": (V.TLSv1_3, V.TLSv1_3, None),
    "tls1.2-ecdhe-gcm": (V.TLSv1_2, V.TLSv1_2, "ECDHE+AESGCM"),
    "tls1.2-ecdhe-chacha20": (V.TLSv1_2, V.TLSv1_2, "ECDHE+CHACHA20"),
    "tls1.0": (V.TLSv1, V.TLSv1, "ALL:@SECLEVEL=0"),
    "tls1.1": (V.TLSv1_1, V.TLSv1_1, "ALL:@SECLEVEL=0"),
    "tls1.2-rsa-key-exchange": (V.TLSv1_2, V.TLSv1_2, "kRSA:@SECLEVEL=0"),
    "tls1.2-cbc": (V.TLSv1_2, V.TLSv1_2, "ECDHE+AES+SHA1:ECDHE+AES+SHA256:ECDHE+AES+SHA384:!AESGCM:@SECLEVEL=0"),
    "tls1.2-dhe": (V.TLSv1_2, V.TLSv1_2, "kDHE:@SECLEVEL=0"),
}

out = {}
for name, (low, high, ciphers) in ATTEMPTS.items():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    try:
        if ciphers:
            ctx.set_ciphers(ciphers)
        ctx.minimum_version = low
        ctx.maximum_version = high
        with socket.create_connection((host, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                out[name] = f"ok {tls.version()} {tls.cipher()[0]}"
    except (ssl.SSLError, OSError) as e:
        out[name] = f"refused: {e}"
print(json.dumps(out))
