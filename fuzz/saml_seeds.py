"""Writes the saml_response fuzz target's seeds: responses built and signed
by pysaml2 (the test IdP, tests/tools/saml/idp.py) with the fuzz IdP key
(fuzz/keys/idp.key), for the SP the target plays, each way the sign-in
tests send them (valid, unsigned, another key, signature wrapping, wrong
audience, expired, unsolicited). Also writes the IdP's metadata, which
the target trusts, to fuzz/keys/idp-metadata.xml.

Run with the test peers' Python (scripts/test-tools installs pysaml2):
  target/test-tools/venv/bin/python fuzz/saml_seeds.py
"""

import base64
import html
import os
import re
import shutil
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
# What fuzz/src/sign_in.rs expects.
SP = "https://broker.example/auth/saml/corp/metadata"
ACS = "https://broker.example/auth/saml/corp/acs"
REQUEST = "id-fuzz-request"
FORTY_YEARS = 60 * 24 * 365 * 40

work = tempfile.mkdtemp()
for name in ("idp.key", "idp.crt"):
    shutil.copy(os.path.join(FUZZ, "keys", name), os.path.join(work, name))


def sp(entity, acs):
    return (f'<md:EntityDescriptor entityID="{entity}">'
            '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" '
            'AuthnRequestsSigned="false" WantAssertionsSigned="true">'
            '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
            f'Location="{acs}" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>')


# The target's SP, and another the IdP knows (for the wrong-audience seed).
with open(os.path.join(work, "sp.xml"), "w") as f:
    f.write('<?xml version="1.0"?><md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
            f'{sp(SP, ACS)}{sp("urn:jitgate-test:other-sp", "https://other.example/saml/acs")}'
            '</md:EntitiesDescriptor>')
with open(os.path.join(work, "accounts.json"), "w") as f:
    f.write('{"alice": {"email": "alice@example.com", "name": "Alice Example", '
            '"role": "approver", "groups": ["sre", "people"]}}')
os.environ.update({"IDP_PORT": "9", "IDP_DIR": work})
sys.path.insert(0, os.path.join(ROOT, "tests", "tools", "saml"))
import idp  # noqa: E402  (reads IDP_PORT and IDP_DIR when imported)

# Valid for forty years, so the seeds reach past the signature check.
idp.IDP = idp.server("idp", lifetime_minutes=FORTY_YEARS)
with open(os.path.join(FUZZ, "keys", "idp-metadata.xml"), "w") as f:
    f.write(idp.METADATA)

out = os.path.join(FUZZ, "seeds", "saml_response")
os.makedirs(out, exist_ok=True)
for trick in ("", "unsigned", "other_key", "wrapping", "wrong_audience", "expired", "other_sp", "missing_email"):
    for solicited in (True, False):
        page = idp.respond({"trick": [trick]} if trick else {}, REQUEST if solicited else None, ACS, SP, None)
        encoded = html.unescape(re.search(r'name="SAMLResponse" value="([^"]+)"', page).group(1))
        name = f"{trick or 'valid'}{'' if solicited else '-unsolicited'}"
        with open(os.path.join(out, name), "wb") as f:
            f.write(base64.b64decode(encoded))
shutil.rmtree(work)
print(f"wrote SAML seeds to {out}")
