//! Probes: requests written by hand for the documented answers generated
//! requests do not reach, each naming the status it must get. Most need
//! state a generator does not build (a grant to extend, an enrolled agent,
//! a queued revoke, a signed-in session), a client over its quota, a body
//! past the limit, or a sign-in provider that does not answer; some are
//! refusals every operation of a kind gives (no token, no role, a body
//! that is not JSON), sent to each such operation.
//!
//! Every answer is also checked as the document describes it: a status
//! the operation lists, an error as an `ErrorBody` in JSON, `Retry-After`
//! with a 429 or 503.

use std::collections::{BTreeMap, BTreeSet};

use jitgate_shared::v1::ErrorBody;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::oidc::{pkce, provider_toml, query, Browser, TestIdp, CLIENT_SECRET};
use jitgate_tests::port::{free_port, ReservedPort};
use reqwest::Method;
use serde_json::{json, Value};

use super::coverage::{self, Answered, Operation};

/// Sends probes to one broker and keeps what they were answered.
struct Prober {
    http: reqwest::Client,
    url: String,
    documented: BTreeMap<Operation, BTreeSet<u16>>,
    answered: Answered,
    /// Probes answered with another status than theirs, or an answer
    /// other than the document describes.
    wrong: Vec<String>,
}

/// What a probe sends as its body.
#[derive(Clone)]
enum Payload {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// One request of a probe.
#[derive(Clone)]
struct Request {
    method: Method,
    template: String,
    path: String,
    token: Option<String>,
    payload: Payload,
}

/// One probe, built up and then sent with [`Call::expect`] or
/// [`Call::until`].
struct Call<'p> {
    prober: &'p mut Prober,
    request: Request,
}

impl Prober {
    fn new(b: &TestBroker) -> Self {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(b.ca()).unwrap()).unwrap();
        Prober {
            http: reqwest::Client::builder()
                .tls_certs_only([ca])
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            url: b.url.clone(),
            documented: coverage::documented(),
            answered: Answered::default(),
            wrong: Vec::new(),
        }
    }

    /// A probe of `operation` ("METHOD /path/{param}"), its parameters
    /// filled from `args` in order.
    fn call(&mut self, operation: &str, args: &[&str]) -> Call<'_> {
        let (method, template) = operation.split_once(' ').unwrap();
        let mut path = String::new();
        let mut args = args.iter();
        for segment in template.split('/').skip(1) {
            path.push('/');
            if segment.starts_with('{') {
                path.push_str(
                    args.next()
                        .unwrap_or_else(|| panic!("{operation}: too few arguments")),
                );
            } else {
                path.push_str(segment);
            }
        }
        assert!(args.next().is_none(), "{operation}: too many arguments");
        Call {
            prober: self,
            request: Request {
                method: method.parse().unwrap(),
                template: template.to_owned(),
                path,
                token: None,
                payload: Payload::None,
            },
        }
    }

    /// Sends `request` and checks the answer against the document; gives
    /// its status and body.
    async fn send(&mut self, request: Request) -> (u16, Value) {
        let Request {
            method,
            template,
            path,
            token,
            payload,
        } = request;
        let mut builder = self.http.request(method.clone(), format!("{}{path}", self.url));
        if let Some(token) = &token {
            builder = builder.bearer_auth(token);
        }
        builder = match payload {
            Payload::None => builder,
            Payload::Json(v) => builder.json(&v),
            Payload::Raw(content_type, bytes) => builder.header("content-type", content_type).body(bytes),
        };
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let operation = (method.as_str().to_owned(), template);
        let what = format!("{method} {path}");
        match self.documented.get(&operation) {
            None => self
                .wrong
                .push(format!("{what}: no such operation in the document")),
            Some(statuses) if !statuses.contains(&status) => self.wrong.push(format!(
                "{what}: answered {status}, which the document does not list: {text}"
            )),
            Some(_) => {}
        }
        if status >= 400 {
            let json = headers
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("application/json"));
            if !json || serde_json::from_str::<ErrorBody>(&text).is_err() {
                self.wrong
                    .push(format!("{what}: {status} without an ErrorBody in JSON: {text}"));
            }
        }
        if matches!(status, 429 | 503) && !headers.contains_key("retry-after") {
            self.wrong.push(format!("{what}: {status} without Retry-After"));
        }
        self.answered.insert(operation, status);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Call<'_> {
    fn by(mut self, token: &str) -> Self {
        self.request.token = Some(token.to_owned());
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.request.payload = Payload::Json(body);
        self
    }

    fn raw(mut self, content_type: &'static str, body: Vec<u8>) -> Self {
        self.request.payload = Payload::Raw(content_type, body);
        self
    }

    fn query(mut self, query: &str) -> Self {
        self.request.path = format!("{}?{query}", self.request.path);
        self
    }

    /// Sends the probe; it must be answered `status`. Gives the body.
    async fn expect(self, status: u16) -> Value {
        let what = format!("{} {}", self.request.method, self.request.path);
        let (got, body) = self.prober.send(self.request).await;
        if got != status {
            self.prober
                .wrong
                .push(format!("{what}: wanted {status}, answered {got}: {body}"));
        }
        body
    }

    /// Sends the probe again until it is answered `status` (a quota that
    /// runs out), at most `tries` times.
    async fn until(self, status: u16, tries: usize) {
        for _ in 0..tries {
            if self.prober.send(self.request.clone()).await.0 == status {
                return;
            }
        }
        let Request { method, path, .. } = self.request;
        self.prober
            .wrong
            .push(format!("{method} {path}: not answered {status} in {tries} tries"));
    }
}

/// Every operation of the document: method, path template, and what the
/// document says of it.
fn operations() -> Vec<(String, String, &'static Value)> {
    let document = jitgate_broker::api::openapi::document_json();
    coverage::documented()
        .into_keys()
        .map(|(method, template)| {
            let op = &document["paths"][template.as_str()][method.to_lowercase()];
            (method, template, op)
        })
        .collect()
}

/// A request `alice` may make, needing one approval.
fn dev_request() -> Value {
    json!({"resource": "dev-admin", "duration_seconds": 600, "justification": "probe"})
}

/// Where the CLI would listen for a sign-in's code; the browser stops there.
const LOOPBACK: &str = "http://127.0.0.1:9/callback";

/// A body of valid shape for each operation that takes one: what an
/// operation is refused for must be what the probe is about, not its body.
fn valid_body(method: &str, template: &str, known: &Known) -> Value {
    match (method, template) {
        ("POST", "/api/v1/requests") => dev_request(),
        ("POST", "/api/v1/grants/{id}/extend") => json!({"duration_seconds": 60}),
        ("PUT", "/api/v1/admin/configurations/{id}") => known.configuration.clone(),
        ("PUT", "/api/v1/admin/resources/{id}") => known.resource.clone(),
        ("PUT", "/api/v1/admin/users/{id}") => {
            json!({"id": "dave", "roles": ["approver"], "groups": ["sre"]})
        }
        ("POST", "/api/v1/admin/join-tokens") => json!({"configuration": "aws-test"}),
        ("POST", "/api/v1/admin/revokes/{command}/force-close") => json!({"reason": "probe"}),
        ("POST", "/api/v1/admin/scim/connections") => json!({"name": "probe"}),
        ("POST", "/api/v1/agents/enroll") => json!({"token": "not-a-join-token", "csr_pem": "x"}),
        _ => json!({}),
    }
}

/// A query of valid shape for each operation that requires one.
fn valid_query(template: &str) -> Option<&'static str> {
    (template == "/api/v1/admin/explain").then_some("resource=dev-admin&user=alice")
}

/// Ids of things the scenarios made, for the probes every operation of a
/// kind gets.
struct Known {
    request: String,
    grant: String,
    agent: String,
    token: String,
    session: String,
    command: String,
    configuration: Value,
    resource: Value,
}

impl Known {
    /// The path arguments of `template`, naming things that exist.
    fn args(&self, template: &str) -> Vec<String> {
        let mut args = Vec::new();
        let mut previous = "";
        for segment in template.split('/') {
            if segment.starts_with('{') {
                args.push(match previous {
                    "requests" | "ids" => self.request.clone(),
                    "grants" => self.grant.clone(),
                    "agents" => self.agent.clone(),
                    "users" => "dave".to_owned(),
                    "tokens" => self.token.clone(),
                    "sessions" => self.session.clone(),
                    "revokes" => self.command.clone(),
                    "configurations" | "outbox" => "aws-test".to_owned(),
                    "resources" => "dev-admin".to_owned(),
                    "connections" => "probe".to_owned(),
                    other => panic!("{template}: no argument known after `{other}`"),
                });
            }
            previous = segment;
        }
        args
    }
}

/// Runs every probe against a broker of its own (the test catalogue, and
/// two sign-in providers: `corp`, a real one, and `gone`, whose issuer
/// nobody answers at); gives what they were answered, and fails naming
/// every probe answered otherwise than it must be.
pub async fn run() -> Answered {
    let corp = ReservedPort::new();
    let corp_port = corp.port();
    // Nobody listens here: sign-in through `gone` finds its issuer out of
    // reach.
    let gone_port = free_port();
    let config = tempfile::tempdir().unwrap();
    let secret = config.path().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let extra = format!("client_secret_file = \"{}\"", secret.display());
    let mut toml = String::from("[sso]\naccess_ttl = \"10m\"\nsession_ttl = \"1h\"\n");
    for (name, port, domain) in [
        ("corp", corp_port, "example.com"),
        ("gone", gone_port, "gone.example"),
    ] {
        toml.push_str(&provider_toml(
            name,
            &format!("http://127.0.0.1:{port}"),
            &[domain],
            "requester",
            &extra,
        ));
    }
    let broker_toml = config.path().join("broker.toml");
    std::fs::write(&broker_toml, toml).unwrap();
    // New agents wait for approval, so approving one can be probed.
    let b = TestBroker::start_with(
        CATALOG,
        &policies(),
        &["--config", broker_toml.to_str().unwrap(), "--agent-approval"],
    )
    .await;
    let mut idp = TestIdp::start(
        corp,
        &format!("{}/auth/oidc/callback", b.url),
        json!({"ann": {"email": "ann@example.com", "email_verified": true, "name": "Ann Lee"}}),
    )
    .await;
    let mut p = Prober::new(&b);
    let who = Callers::of(&b);

    let nobody = someone_without_roles(&mut p, &who).await;
    let (request, grant) = requests_reviews_and_grants(&mut p, &who).await;
    let (configuration, resource) = configurations(&mut p, &who).await;
    let command = a_queued_revoke(&mut p, &who, &grant).await;
    let agent = agents(&mut p, &who).await;
    let token = people_and_tokens(&mut p, &who).await;
    directories_and_policies(&mut p, &who, &b).await;
    let session = sign_in_and_sessions(&mut p, &b, &mut idp).await;
    let known = Known {
        request,
        grant,
        agent,
        token,
        session,
        command,
        configuration,
        resource,
    };
    refusals_of_every_kind(&mut p, &who, &nobody, &known).await;
    quotas(&mut p, &known).await;

    let wrong = std::mem::take(&mut p.wrong);
    assert!(
        wrong.is_empty(),
        "{} probes were not answered as they must be:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
    drop(config);
    p.answered
}

/// The callers the probes act as: their API tokens.
struct Callers {
    admin: String,
    alice: String,
    carol: String,
    dave: String,
}

impl Callers {
    fn of(b: &TestBroker) -> Self {
        let [admin, alice, carol, dave] = ["admin", "alice", "carol", "dave"].map(|u| b.token(u).to_owned());
        Callers {
            admin,
            alice,
            carol,
            dave,
        }
    }
}

/// A person with no role, made by an admin; gives their token.
async fn someone_without_roles(p: &mut Prober, who: &Callers) -> String {
    let created = p
        .call("PUT /api/v1/admin/users/{id}", &["nobody"])
        .by(&who.admin)
        .json(json!({"id": "nobody", "roles": []}))
        .expect(201)
        .await;
    created["token"].as_str().unwrap_or_default().to_owned()
}

/// Requests made, reviewed (by the requester too), denied, cancelled; a
/// grant read, extended and revoked by its holder and by someone else.
/// Gives the reviewed request and its grant.
async fn requests_reviews_and_grants(p: &mut Prober, who: &Callers) -> (String, String) {
    let dev = dev_request();
    let reviewed = p
        .call("POST /api/v1/requests", &[])
        .by(&who.alice)
        .json(dev.clone())
        .expect(201)
        .await;
    let reviewed = reviewed["id"].as_str().unwrap().to_owned();
    p.call("POST /api/v1/requests/{id}/approve", &[&reviewed])
        .by(&who.alice)
        .expect(403)
        .await;
    p.call("POST /api/v1/requests/{id}/cancel", &[&reviewed])
        .by(&who.carol)
        .expect(403)
        .await;
    p.call("POST /api/v1/requests/{id}/approve", &[&reviewed])
        .by(&who.carol)
        .expect(200)
        .await;
    p.call("POST /api/v1/requests/{id}/approve", &[&reviewed])
        .by(&who.dave)
        .expect(409)
        .await;
    p.call("POST /api/v1/requests/{id}/deny", &[&reviewed])
        .by(&who.dave)
        .expect(409)
        .await;
    let approved = p
        .call("GET /api/v1/requests/{id}", &[&reviewed])
        .by(&who.alice)
        .expect(200)
        .await;
    let grant = approved["grant"].as_str().unwrap_or_default().to_owned();
    p.call("GET /api/v1/grants/{id}", &[&grant])
        .by(&who.alice)
        .expect(200)
        .await;
    p.call("GET /api/v1/ids/{id}", &[&grant])
        .by(&who.alice)
        .expect(200)
        .await;
    p.call("GET /api/v1/ids/{id}", &[&reviewed])
        .by(&who.alice)
        .expect(200)
        .await;
    let extend = json!({"duration_seconds": 60});
    p.call("POST /api/v1/grants/{id}/extend", &[&grant])
        .by(&who.carol)
        .json(extend.clone())
        .expect(403)
        .await;
    p.call("POST /api/v1/grants/{id}/extend", &[&grant])
        .by(&who.alice)
        .json(extend.clone())
        .expect(200)
        .await;
    p.call("POST /api/v1/grants/{id}/revoke", &[&grant])
        .by(&who.carol)
        .expect(403)
        .await;
    p.call("POST /api/v1/grants/{id}/revoke", &[&grant])
        .by(&who.alice)
        .expect(200)
        .await;
    p.call("POST /api/v1/grants/{id}/revoke", &[&grant])
        .by(&who.alice)
        .expect(409)
        .await;
    p.call("POST /api/v1/grants/{id}/extend", &[&grant])
        .by(&who.alice)
        .json(extend)
        .expect(409)
        .await;
    let denied = p
        .call("POST /api/v1/requests", &[])
        .by(&who.alice)
        .json(dev.clone())
        .expect(201)
        .await;
    let denied = denied["id"].as_str().unwrap().to_owned();
    p.call("POST /api/v1/requests/{id}/deny", &[&denied])
        .by(&who.carol)
        .expect(200)
        .await;
    p.call("POST /api/v1/requests/{id}/cancel", &[&denied])
        .by(&who.alice)
        .expect(409)
        .await;
    let cancelled = p
        .call("POST /api/v1/requests", &[])
        .by(&who.alice)
        .json(dev.clone())
        .expect(201)
        .await;
    let cancelled = cancelled["id"].as_str().unwrap().to_owned();
    p.call("POST /api/v1/requests/{id}/cancel", &[&cancelled])
        .by(&who.alice)
        .expect(200)
        .await;
    (reviewed, grant)
}

/// What the broker would do for a request (explain), and a configuration
/// turned off and on again. Gives the configuration and a resource as
/// the broker lists them.
async fn configurations(p: &mut Prober, who: &Callers) -> (Value, Value) {
    p.call("GET /api/v1/admin/explain", &[])
        .by(&who.admin)
        .query("resource=dev-admin&user=alice")
        .expect(200)
        .await;
    p.call("GET /api/v1/admin/explain", &[])
        .by(&who.admin)
        .query("resource=no-such-resource&user=alice")
        .expect(404)
        .await;
    let configurations = p
        .call("GET /api/v1/admin/configurations", &[])
        .by(&who.admin)
        .expect(200)
        .await;
    let configuration = configurations
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "aws-test")
        .unwrap()
        .clone();
    let resources = p
        .call("GET /api/v1/admin/resources", &[])
        .by(&who.admin)
        .expect(200)
        .await;
    let resource = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "dev-admin")
        .unwrap()
        .clone();
    let mut off = configuration.clone();
    off["enabled"] = json!(false);
    p.call("PUT /api/v1/admin/configurations/{id}", &["aws-test"])
        .by(&who.admin)
        .json(off)
        .expect(200)
        .await;
    p.call("POST /api/v1/requests", &[])
        .by(&who.alice)
        .json(dev_request())
        .expect(409)
        .await;
    p.call("GET /api/v1/admin/explain", &[])
        .by(&who.admin)
        .query("resource=dev-admin&user=alice")
        .expect(409)
        .await;
    p.call("PUT /api/v1/admin/configurations/{id}", &["aws-test"])
        .by(&who.admin)
        .json(configuration.clone())
        .expect(200)
        .await;
    p.call("PUT /api/v1/admin/resources/{id}", &["dev-admin"])
        .by(&who.admin)
        .json(resource.clone())
        .expect(200)
        .await;
    (configuration, resource)
}

/// The revoke `grant`'s end queued (no agent is connected), closed by an
/// admin; gives its id.
async fn a_queued_revoke(p: &mut Prober, who: &Callers, grant: &str) -> String {
    let outbox = p
        .call("GET /api/v1/admin/outbox/{configuration}", &["aws-test"])
        .by(&who.admin)
        .expect(200)
        .await;
    let command = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["op"] == "revoke" && c["grant"] == grant)
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .unwrap_or_default();
    p.call("POST /api/v1/admin/revokes/{command}/force-close", &[&command])
        .by(&who.admin)
        .json(json!({"reason": "probe: the tenant was checked by hand"}))
        .expect(200)
        .await;
    command
}

/// A join token, an agent enrolled with it (waiting for approval),
/// approved and revoked, twice each; gives the agent's id.
async fn agents(p: &mut Prober, who: &Callers) -> String {
    let join = p
        .call("POST /api/v1/admin/join-tokens", &[])
        .by(&who.admin)
        .json(json!({"configuration": "aws-test"}))
        .expect(201)
        .await;
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["agent.local".to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let enrolled = p
        .call("POST /api/v1/agents/enroll", &[])
        .json(json!({"token": join["token"], "csr_pem": csr}))
        .expect(201)
        .await;
    let agent = enrolled["agent"]["id"].as_str().unwrap_or_default().to_owned();
    p.call("GET /api/v1/admin/agents", &[])
        .by(&who.admin)
        .expect(200)
        .await;
    p.call("POST /api/v1/admin/agents/{id}/approve", &[&agent])
        .by(&who.admin)
        .expect(200)
        .await;
    p.call("POST /api/v1/admin/agents/{id}/approve", &[&agent])
        .by(&who.admin)
        .expect(409)
        .await;
    p.call("POST /api/v1/admin/agents/{id}/revoke", &[&agent])
        .by(&who.admin)
        .expect(200)
        .await;
    p.call("POST /api/v1/admin/agents/{id}/revoke", &[&agent])
        .by(&who.admin)
        .expect(409)
        .await;
    agent
}

/// Accounts made, changed and disabled, tokens and sign-in links issued;
/// gives the id of a token.
async fn people_and_tokens(p: &mut Prober, who: &Callers) -> String {
    p.call("PUT /api/v1/admin/users/{id}", &["dave"])
        .by(&who.admin)
        .json(json!({"id": "dave", "roles": ["approver"], "groups": ["sre"]}))
        .expect(200)
        .await;
    p.call("POST /api/v1/admin/users/{id}/tokens", &["dave"])
        .by(&who.admin)
        .expect(201)
        .await;
    p.call("POST /api/v1/admin/users/{id}/sign-in-link", &["dave"])
        .by(&who.admin)
        .expect(201)
        .await;
    let tokens = p
        .call("GET /api/v1/admin/tokens", &[])
        .by(&who.admin)
        .query("user=nobody")
        .expect(200)
        .await;
    let token = tokens[0]["id"].as_str().unwrap_or_default().to_owned();
    p.call("PUT /api/v1/admin/users/{id}", &["spare"])
        .by(&who.admin)
        .json(json!({"id": "spare", "roles": ["requester"]}))
        .expect(201)
        .await;
    p.call("POST /api/v1/admin/users/{id}/disable", &["spare"])
        .by(&who.admin)
        .expect(200)
        .await;
    p.call("POST /api/v1/admin/users/{id}/sign-in-link", &["spare"])
        .by(&who.admin)
        .expect(409)
        .await;
    token
}

/// SCIM connections made and deleted; policies reloaded, good and bad.
async fn directories_and_policies(p: &mut Prober, who: &Callers, b: &TestBroker) {
    p.call("POST /api/v1/admin/scim/connections", &[])
        .by(&who.admin)
        .json(json!({"name": "probe"}))
        .expect(201)
        .await;
    p.call("POST /api/v1/admin/scim/connections", &[])
        .by(&who.admin)
        .json(json!({"name": "probe"}))
        .expect(409)
        .await;
    p.call("DELETE /api/v1/admin/scim/connections/{name}", &["probe"])
        .by(&who.admin)
        .expect(204)
        .await;
    p.call("DELETE /api/v1/admin/scim/connections/{name}", &["probe"])
        .by(&who.admin)
        .expect(404)
        .await;
    // A path segment that is not UTF-8 once decoded.
    p.call("DELETE /api/v1/admin/scim/connections/{name}", &["%FF"])
        .by(&who.admin)
        .expect(400)
        .await;

    // Policies.
    p.call("POST /api/v1/admin/policies/reload", &[])
        .by(&who.admin)
        .expect(200)
        .await;
    b.write_policy("broken.cedar", "permit (principal, action, resource");
    p.call("POST /api/v1/admin/policies/reload", &[])
        .by(&who.admin)
        .expect(400)
        .await;
    b.write_policy("broken.cedar", "");
}

/// Sign-ins through `corp` (the CLI's and the device flow), refresh,
/// sign-out, sessions ended by an admin; then `corp` goes away, and what
/// needs a provider is refused as out of reach. Gives a session's id.
async fn sign_in_and_sessions(p: &mut Prober, b: &TestBroker, idp: &mut TestIdp) -> String {
    let admin = b.token("admin");
    let mut browser = Browser::new(&b.ca());
    let first = sign_in(p, &mut browser).await;
    let refreshed = p
        .call("POST /api/v1/auth/refresh", &[])
        .json(json!({"refresh_token": first["refresh_token"]}))
        .expect(200)
        .await;
    p.call("GET /api/v1/admin/sessions", &[])
        .by(admin)
        .expect(200)
        .await;
    let session = refreshed["session"].as_str().unwrap_or_default().to_owned();
    p.call("POST /api/v1/admin/sessions/{id}/revoke", &[&session])
        .by(admin)
        .expect(200)
        .await;
    p.call("POST /api/v1/admin/sessions/{id}/revoke", &["%FF"])
        .by(admin)
        .expect(400)
        .await;
    let second = sign_in(p, &mut browser).await;
    p.call("POST /api/v1/auth/logout", &[])
        .by(second["access_token"].as_str().unwrap_or_default())
        .expect(204)
        .await;
    p.call("POST /api/v1/auth/logout", &[])
        .by(admin)
        .expect(400)
        .await;
    p.call("POST /api/v1/admin/users/{id}/sign-in-link", &["ann@example.com"])
        .by(admin)
        .expect(409)
        .await;
    let device = p
        .call("POST /api/v1/auth/device", &[])
        .json(json!({"provider": "corp"}))
        .expect(200)
        .await;
    p.call("POST /api/v1/auth/device/token", &[])
        .json(json!({"handle": device["handle"]}))
        .expect(200)
        .await;
    let third = sign_in(p, &mut browser).await;
    // The provider goes away: what needs it cannot be done now.
    idp.stop().await;
    p.call("POST /api/v1/auth/refresh", &[])
        .json(json!({"refresh_token": third["refresh_token"]}))
        .expect(503)
        .await;
    let (_, challenge) = pkce();
    for (provider, status) in [("gone", 503), ("no-such-provider", 404)] {
        p.call("POST /api/v1/auth/login", &[])
            .json(json!({"provider": provider, "redirect_uri": LOOPBACK, "code_challenge": challenge}))
            .expect(status)
            .await;
        p.call("POST /api/v1/auth/device", &[])
            .json(json!({"provider": provider}))
            .expect(status)
            .await;
    }
    session
}

/// What every operation of a kind refuses: no token (401), a caller
/// with no role on an admin operation (403), a body past the limit (413)
/// or not JSON (415).
async fn refusals_of_every_kind(p: &mut Prober, who: &Callers, nobody: &str, known: &Known) {
    for (method, template, op) in operations() {
        let (method, template) = (method.as_str(), template.as_str());
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let takes_body = op.get("requestBody").is_some();
        let args = known.args(template);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let operation = format!("{method} {template}");
        if secured {
            let mut call = p.call(&operation, &args);
            if takes_body {
                call = call.json(valid_body(method, template, known));
            }
            call.expect(401).await;
        }
        if secured && template.starts_with("/api/v1/admin/") {
            let mut call = p.call(&operation, &args).by(nobody);
            if takes_body {
                call = call.json(valid_body(method, template, known));
            }
            if let Some(query) = valid_query(template) {
                call = call.query(query);
            }
            call.expect(403).await;
        }
        if takes_body {
            let padding = "a".repeat(70_000);
            p.call(&operation, &args)
                .by(&who.admin)
                .json(json!({ "padding": padding }))
                .expect(413)
                .await;
            p.call(&operation, &args)
                .by(&who.admin)
                .raw("text/plain", b"{}".to_vec())
                .expect(415)
                .await;
        }
    }
}

/// Every operation over its client quota (429), last: from then on this
/// client is refused everything.
async fn quotas(p: &mut Prober, known: &Known) {
    for (method, template, op) in operations() {
        let (method, template) = (method.as_str(), template.as_str());
        let args = known.args(template);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let operation = format!("{method} {template}");
        let mut call = p.call(&operation, &args);
        if template.starts_with("/api/v1/auth/") {
            // The sign-in quota, whatever is sent.
        } else if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            // Guessed tokens.
            call = call.by("jg_a-guessed-token");
        } else {
            // Guessed join tokens.
            call = call.json(valid_body(method, template, known));
        }
        call.until(429, 200).await;
    }
}

/// Signs `ann@example.com` in through `corp` as the CLI does, with
/// `browser` playing the person; gives the token set.
async fn sign_in(p: &mut Prober, browser: &mut Browser) -> Value {
    let (verifier, challenge) = pkce();
    let started = p
        .call("POST /api/v1/auth/login", &[])
        .json(json!({"email": "ann@example.com", "redirect_uri": LOOPBACK, "code_challenge": challenge}))
        .expect(200)
        .await;
    let url = started["authorization_url"].as_str().unwrap_or_default();
    let stop = browser.follow(url, |u| u.starts_with(LOOPBACK)).await;
    let q = query(&stop.url);
    p.call("POST /api/v1/auth/token", &[])
        .json(json!({"state": q.get("state"), "code": q.get("code"), "code_verifier": verifier}))
        .expect(200)
        .await
}
