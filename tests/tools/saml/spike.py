import sys, base64
from saml2 import BINDING_HTTP_REDIRECT, BINDING_HTTP_POST
from saml2.config import IdPConfig
from saml2.server import Server
from saml2.saml import NameID, NAMEID_FORMAT_EMAILADDRESS
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_BASIC

SP_ENTITY = "https://127.0.0.1:8443/auth/saml/corp/metadata"
ACS = "https://127.0.0.1:8443/auth/saml/corp/acs"
sp_md = f'''<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{SP_ENTITY}">
<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" AuthnRequestsSigned="false" WantAssertionsSigned="true">
<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{ACS}" index="0"/>
</md:SPSSODescriptor></md:EntityDescriptor>'''
open("sp.xml","w").write(sp_md)
conf = IdPConfig()
conf.load({
  "entityid": "http://127.0.0.1:9999/idp",
  "service": {"idp": {"endpoints": {"single_sign_on_service": [("http://127.0.0.1:9999/sso", BINDING_HTTP_REDIRECT)]},
     "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
     "policy": {"default": {"lifetime": {"minutes": 15}, "name_form": NAME_FORMAT_BASIC}}}},
  "key_file": "idp.key", "cert_file": "idp.crt",
  "metadata": {"local": ["sp.xml"]},
  "xmlsec_binary": "/usr/bin/xmlsec1",
  "allow_unknown_attributes": True,
})
idp = Server(config=conf)
open("idp.xml","w").write(str(entity_descriptor(conf)))
identity = {"email": ["ann@example.com"], "name": ["Ann Lee"], "role": ["approver"]}
resp = idp.create_authn_response(identity, in_response_to=sys.argv[1] if len(sys.argv) > 1 else None,
    destination=ACS, sp_entity_id=SP_ENTITY,
    name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="ann@example.com"),
    sign_assertion=True, sign_response=True)
open("resp.b64","w").write(base64.b64encode(str(resp).encode()).decode())
print(str(resp)[:1500])
