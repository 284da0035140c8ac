"""Schemathesis hooks for the conformance test (tests/tests/it/conformance.rs).

What the OpenAPI document cannot say is checked against the broker's state:
a request for access must name a resource of the catalogue, a body saved
under an id must carry that id. Requests made up without knowing that are
refused with 400, and every sequence of the stateful phase that starts
with one stops there. In positive cases (what the document allows) these
hooks fill in what the broker's state asks for; negative cases are left as
made.

And a run must not saw off the branch it sits on: ids found in earlier
answers (the tokens listed, the users listed) would let it revoke the
callers' own tokens, disable them or take their roles away, after which
every call is a 401 or 403. Such calls are pointed at a spare account and
token instead (JITGATE_KEEP_USERS, JITGATE_KEEP_TOKENS, JITGATE_SPARE_USER,
JITGATE_SPARE_TOKEN_ID, set by the test).
"""

import os
import random

import schemathesis
from schemathesis.core.parameters import ParameterLocation

# Of the test catalogue (tests/src/fixtures.rs).
RESOURCES = ["dev-admin", "prod-admin", "auto-admin"]
CONFIGURATION = "aws-test"

SAVED_UNDER_AN_ID = {
    "/api/v1/admin/users/{id}",
    "/api/v1/admin/configurations/{id}",
    "/api/v1/admin/resources/{id}",
}
ACTING_ON_A_USER = {
    "/api/v1/admin/users/{id}",
    "/api/v1/admin/users/{id}/disable",
}


def _keep(name):
    return {item for item in os.environ.get(name, "").split(",") if item}


def _spare_the_callers(case, method, path):
    params = case.path_parameters
    if not params or not isinstance(params.get("id"), str):
        return
    if method == "DELETE" and path == "/api/v1/admin/tokens/{id}":
        if params["id"].lower() in _keep("JITGATE_KEEP_TOKENS"):
            params["id"] = os.environ["JITGATE_SPARE_TOKEN_ID"]
    elif path in ACTING_ON_A_USER and params["id"] in _keep("JITGATE_KEEP_USERS"):
        params["id"] = os.environ["JITGATE_SPARE_USER"]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    operation = case.operation
    method, path = operation.method.upper(), operation.path
    _spare_the_callers(case, method, path)
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY):
        return
    if method == "POST" and path == "/api/v1/requests":
        case.body = {
            "resource": random.choice(RESOURCES),
            "duration_seconds": 600,
            "justification": "schemathesis conformance run",
        }
    elif method == "PUT" and path in SAVED_UNDER_AN_ID and isinstance(case.body, dict):
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH):
            return
        ident = (case.path_parameters or {}).get("id")
        if ident is not None:
            case.body["id"] = ident
        if path.endswith("/resources/{id}"):
            case.body["configuration"] = CONFIGURATION
