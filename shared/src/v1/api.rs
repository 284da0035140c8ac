//! REST API v1 bodies and views. Input bodies reject unknown fields so a typo
//! in a client is an error rather than a silently ignored setting.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::entitlement::{Entitlement, Target};
use super::ids::{ConfigId, GrantId, RequestId, ResourceId, UserId};

/// What a person may do in jitgate, independent of per-resource policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Requester,
    Approver,
    Admin,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Requester, Role::Approver, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

// ---- requests ---------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestBody {
    pub resource: ResourceId,
    /// Length of the window; the policy's default when absent.
    #[serde(default)]
    pub duration_seconds: Option<u64>,
    #[serde(default)]
    pub justification: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Start of the window; as soon as approved when absent.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// Skip approval where a policy allows break-glass. Loud: audited and
    /// flagged for review.
    #[serde(default)]
    pub break_glass: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Active,
    Ended,
    Denied,
    PendingExpired,
    Cancelled,
}

impl RequestState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Ended
                | RequestState::Denied
                | RequestState::PendingExpired
                | RequestState::Cancelled
        )
    }
}

/// Why a grant (and its request) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The window closed.
    Expired,
    /// Ended before its window closed by the requester or an admin.
    Revoked,
    /// Cancelled before its window opened.
    Cancelled,
    /// The user was deprovisioned or disabled.
    Deprovisioned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RequestKind {
    /// Ask for a new grant.
    Access,
    /// Ask to extend an existing grant.
    Extension { grant: GrantId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    pub reviewer: UserId,
    /// The reviewer's person: one vote per person, whatever the account.
    #[serde(default)]
    pub person: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// How a resource would be elevated for a user, without acting: the chain
/// of configurations, the entitlement applied and by which agents, and
/// where an agent can confirm it took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExplainView {
    pub resource: ResourceId,
    pub user: UserId,
    /// From the resource's configuration to the one it is applied in.
    pub chain: Vec<ConfigId>,
    pub apply: PlanStep,
    /// Downstream checks once the directory has synced; empty for a direct
    /// resource.
    pub confirm: Vec<PlanStep>,
}

/// One entitlement of a plan and the active agents of its configuration
/// (empty: commands wait in the outbox until one enrols).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanStep {
    pub entitlement: Entitlement,
    #[schema(value_type = Vec<String>)]
    pub agents: Vec<super::ids::AgentId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: RequestId,
    pub kind: RequestKind,
    pub requester: UserId,
    /// Who the grant names in the tenant (the requester's verified email,
    /// else the account id), fixed when the request was made: what
    /// approvers approve is what is granted and revoked.
    #[serde(default)]
    pub principal: String,
    pub resource: ResourceId,
    pub duration_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    pub state: RequestState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    pub created_at: DateTime<Utc>,
    /// After this instant a pending request can no longer be approved.
    pub pending_expires_at: DateTime<Utc>,
    pub approvals_required: u32,
    pub reviews: Vec<ReviewView>,
    pub break_glass: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantId>,
}

/// A resource the caller may request (`GET /api/v1/catalogue`): the
/// policies' decision for this caller, and the workflow it would go
/// through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogueEntry {
    pub resource: Resource,
    /// The configuration's display name (its id when it has none).
    pub configuration_name: String,
    pub workflow: WorkflowView,
    /// Accounts that could approve a request of this caller's for it (the
    /// caller and their other accounts never count).
    pub approvers: Vec<UserId>,
}

/// The workflow settings in force for one resource, as a requester sees
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
    /// Distinct people who must approve (0: granted at once).
    pub approvals_required: u32,
    pub default_duration_seconds: u64,
    pub max_duration_seconds: u64,
    pub justification_required: bool,
    /// A ticket must match this regular expression (anchored), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_pattern: Option<String>,
    /// How long a request may wait for its approvals.
    pub pending_ttl_seconds: u64,
    /// This caller may skip approval here (the workflow allows break-glass
    /// and a policy permits it to them).
    pub break_glass: bool,
    pub extension_allowed: bool,
}

/// A pending request the caller may review (`GET /api/v1/inbox`), oldest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxEntry {
    pub request: RequestView,
    pub requester_name: String,
    /// The policies that let the caller approve it.
    pub approving_policies: Vec<String>,
    /// The caller (or another account of theirs) already reviewed it.
    pub reviewed: bool,
    /// Configurations from the resource's to where it will be applied, when
    /// that is a federated chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ConfigId>,
    /// The requester's latest earlier requests for the same resource,
    /// newest first.
    pub history: Vec<RequestView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    #[serde(default)]
    pub comment: Option<String>,
}

// ---- grants -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Approved; the window has not opened yet.
    Scheduled,
    /// The window is open; the entitlement is held.
    Active,
    Ended,
}

/// What an id names (`GET /api/v1/ids/{id}`): a request or a grant, as
/// the caller may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "item", rename_all = "snake_case")]
pub enum Identified {
    Request(RequestView),
    Grant(GrantView),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub id: GrantId,
    pub request: RequestId,
    pub user: UserId,
    pub resource: ResourceId,
    pub entitlement: Entitlement,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub state: GrantState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<UserId>,
    pub extensions: u32,
    pub break_glass: bool,
    /// When an agent confirmed the entitlement is in place (for a federated
    /// resource: in the directory, not yet where it is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
    /// When the elevation was known to be in effect where it is used. Never
    /// set before it is: for a federated resource, only once an agent of
    /// the downstream configuration confirms it after the directory synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
    /// For a federated resource: when an agent where it is used confirmed
    /// it gone after the revoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal_confirmed_at: Option<DateTime<Utc>>,
    /// Configurations from the resource's to where it was applied, when
    /// that is a federated chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ConfigId>,
    /// When an agent confirmed the entitlement is gone (after the last lease
    /// on it ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<DateTime<Utc>>,
    /// The last failure an agent reported for this grant's commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_error: Option<String>,
    /// The revoke that ends this grant's entitlement was refused or failed
    /// for good: it stays queued, is tried again (backing off up to 15
    /// minutes) and leaves only when it succeeds or an admin force-closes
    /// it. Shown as the state `revoke_failing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_failing: Option<RevokeFailing>,
}

/// A revoke that keeps failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokeFailing {
    /// The queued revoke command.
    pub command: String,
    pub since: DateTime<Utc>,
    pub attempts: u32,
    /// What the agent said the last time.
    pub reason: String,
}

/// An admin closes a revoke that keeps failing: the entitlement was
/// removed by hand (`POST /api/v1/admin/revokes/{command}/force-close`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceCloseBody {
    /// How the entitlement was removed, for the audit log. Required.
    #[schema(pattern = "\\S")]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer the window should stay open.
    pub duration_seconds: u64,
    #[serde(default)]
    pub justification: Option<String>,
    /// Required where the resource's workflow has a `ticket_pattern`, as
    /// for the request.
    #[serde(default)]
    pub ticket: Option<String>,
}

/// Either the grant was extended at once, or an extension request awaits
/// approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ExtendOutcome {
    Extended { grant: GrantView },
    PendingApproval { request: RequestView },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default)]
    pub reason: Option<String>,
}

// ---- admin ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    AwsIdentityCenter,
    AwsIam,
    EntraId,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::AwsIdentityCenter => "aws_identity_center",
            ConfigKind::AwsIam => "aws_iam",
            ConfigKind::EntraId => "entra_id",
        }
    }
}

/// Where a configuration's identities live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum IdentityMode {
    /// The tenant's own directory holds the users; elevation happens there.
    Direct,
    /// The tenant trusts another configuration's directory; elevation is
    /// applied there.
    Federated { directory: ConfigId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Configuration {
    pub id: ConfigId,
    pub kind: ConfigKind,
    #[serde(default)]
    pub display_name: String,
    /// Tenant identifiers: `account_id`, `instance_arn`, `identity_store_id`,
    /// `tenant_id`, ... as the kind needs.
    #[serde(default)]
    pub tenant: BTreeMap<String, String>,
    pub identity_mode: IdentityMode,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub id: ResourceId,
    pub configuration: ConfigId,
    #[serde(default)]
    pub display_name: String,
    /// Resource group, for policies and workflow settings shared by several
    /// resources.
    #[serde(default)]
    pub group: Option<String>,
    pub target: Target,
    /// For a resource of a federated configuration: the entitlement that
    /// realises it in the directories along its chain, by configuration
    /// (at least the root's, where jitgate applies it; others are where an
    /// agent can confirm it took effect). Like
    /// `realized_by = { entra = { kind = "entra_group_membership", group_id = "..." } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub realized_by: BTreeMap<ConfigId, Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    pub id: UserId,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// A role named twice counts once.
    #[schema(value_type = Vec<Role>)]
    pub roles: BTreeSet<Role>,
    /// Directory groups, usable in policies (`Jitgate::Group`); a group
    /// named twice counts once.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub groups: BTreeSet<String>,
    /// Accounts with the same person id belong to one person: none of them
    /// may approve another's request.
    #[serde(default)]
    pub person: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Someone vouches for the email (an admin, a directory, a SAML IdP, an
    /// OIDC provider's `email_verified`): only then does it link accounts
    /// of one person or name the user in a cloud.
    #[serde(default)]
    pub email_verified: bool,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<String>,
    pub person: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// The SCIM connection that provisioned this user, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_by: Option<String>,
    /// Who this user is at each identity provider they signed in with
    /// (provider -> key claim).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, String>,
}

/// Starts a sign-in for the CLI (`POST /api/v1/auth/login`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Routes to the provider that serves its domain.
    #[serde(default)]
    pub email: Option<String>,
    /// Or name the provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// The CLI's loopback listener (`http://127.0.0.1:PORT/...`, or
    /// `[::1]`, or `localhost`), without a fragment.
    #[schema(
        pattern = "^http://(127\\.0\\.0\\.1|\\[::1\\]|localhost)(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[^#]*)?$"
    )]
    pub redirect_uri: String,
    /// S256 challenge of a verifier the CLI keeps (RFC 7636).
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    pub code_challenge: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginStarted {
    /// Open this in a browser.
    pub authorization_url: String,
    pub provider: String,
}

/// Starts a device sign-in (`POST /api/v1/auth/device`), for a machine
/// without a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceLoginBody {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
}

/// What to tell the person: open `verification_uri` anywhere and enter
/// `user_code`; then poll with `handle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceStarted {
    pub handle: String,
    pub provider: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    pub interval_seconds: u64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePollBody {
    pub handle: String,
}

/// A device sign-in: still waiting for the person, or done (once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DevicePoll {
    Pending { interval_seconds: u64 },
    SignedIn { tokens: Box<TokenSet> },
}

/// Exchanges the one-time code the browser brought to the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeBody {
    pub state: String,
    pub code: String,
    pub code_verifier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// What a sign-in or a refresh gives: a short-lived API token and the
/// token to renew it with (both shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenSet {
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    pub refresh_token: String,
    /// When the session ends; refreshing stops then.
    pub session_expires_at: DateTime<Utc>,
    pub session: String,
    pub user: UserView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub user: UserId,
    pub provider: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

/// A sign-in provider as configured, with what to register at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SsoProviderView {
    pub name: String,
    /// `oidc` or `saml`.
    pub kind: String,
    pub email_domains: Vec<String>,
    /// OIDC: the redirect URI to register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// SAML: our entity id, ACS URL and metadata URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acs_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
}

/// Creates a SCIM provisioning connection (`POST /api/v1/admin/scim/connections`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimConnectionBody {
    /// Names the directory: letters, digits, `-`, `_` and `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// Roles the users it provisions start with (default: requester); a
    /// role named twice counts once.
    #[serde(default = "default_scim_roles")]
    #[schema(value_type = Vec<Role>)]
    pub default_roles: BTreeSet<Role>,
}

fn default_scim_roles() -> BTreeSet<Role> {
    BTreeSet::from([Role::Requester])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScimConnectionView {
    pub name: String,
    pub default_roles: BTreeSet<Role>,
    pub created_at: DateTime<Utc>,
    /// Users and groups it provisioned.
    pub users: usize,
    pub groups: usize,
}

/// A new connection and its bearer token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScimConnectionCreated {
    pub connection: ScimConnectionView,
    pub token: String,
    /// The SCIM base URL to give the directory (`…/scim/v2`).
    pub base_url: String,
}

/// An API token as admins see it; never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The first 16 hex digits of the token's SHA-256: names it for
    /// `DELETE /api/v1/admin/tokens/{id}`.
    pub id: String,
    pub user: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `access` or `refresh`.
    pub kind: String,
    /// The sign-in session it belongs to; none for tokens an admin issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// A user just created or given a new token. The token is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    pub user: UserView,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A one-time sign-in link for a local account
/// (`POST /api/v1/admin/users/{id}/sign-in-link`): opened in a browser
/// before `expires_at`, once, it signs that account in to the console.
/// Shown once; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignInLinkIssued {
    pub user: UserView,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A page of the audit log, newest first (`GET /api/v1/admin/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditLogPage {
    /// Records as logged (`seq`, `at`, `actor`, `event` with its `type`,
    /// `prev_hash`, `hash`), as `jitgate-broker audit export` writes them.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
    /// Older matching records may remain: ask again with `before` set to
    /// this.
    pub next_before: Option<u64>,
    /// The oldest record this read looked at (a rare filter stops after
    /// 10,000 records and says how far it got).
    pub searched_to: u64,
    /// The log's newest record when read.
    pub head: u64,
}

/// The broker's latest check of its audit chain
/// (`GET /api/v1/admin/audit/chain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditChainView {
    /// When the last check finished (absent: none yet since start).
    pub checked_at: Option<DateTime<Utc>>,
    /// Records that verified as a chain, from the first.
    pub records_verified: u64,
    /// The signed head the chain was checked against.
    pub signed_head: Option<u64>,
    /// The first thing wrong, naming the record; absent: intact.
    pub broken: Option<String>,
    /// A check under way: `[records verified so far, of about how many]`.
    #[schema(value_type = Option<Vec<u64>>, min_items = 2, max_items = 2)]
    pub running: Option<(u64, u64)>,
}

/// How notifications to one address are getting on
/// (`GET /api/v1/admin/notifications`), over those kept (settled ones for
/// seven days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationEndpointView {
    /// `email:ADDRESS` or `webhook:NAME`.
    pub address: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// Not settled yet (to be tried, or being tried again).
    pub queued: u64,
    /// Of those queued, how many failed at least once.
    pub failing: u64,
    pub delivered: u64,
    /// Refused by the receiver, or failing for a day.
    pub given_up: u64,
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// The latest failure's message, of a notification still queued or
    /// given up.
    pub last_error: Option<String>,
    /// When the oldest notification still queued was queued.
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyStatus {
    pub directory: String,
    pub files: Vec<String>,
    pub policies: usize,
    pub loaded_at: DateTime<Utc>,
    /// Why the last reload was refused, if it was; the previous set stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandOp {
    Grant,
    Revoke,
}

/// A page of a list; pass `next` as `after` to get the following page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

// ---- agents -----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinTokenBody {
    pub configuration: ConfigId,
    /// How long the token can be used; default one hour.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A one-time join token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenIssued {
    pub token: String,
    pub configuration: ConfigId,
    pub expires_at: DateTime<Utc>,
    /// SHA-256 of the broker CA certificate, hex: the agent pins it before
    /// sending anything.
    pub ca_fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    /// The one-time join token.
    pub token: String,
    /// PKCS#10 certificate signing request, PEM; the key stays on the agent.
    pub csr_pem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Enrolled, waiting for an admin's approval before it may connect.
    Pending,
    Active,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    #[schema(value_type = String, format = Uuid)]
    pub id: super::ids::AgentId,
    pub configuration: ConfigId,
    pub state: AgentState,
    pub enrolled_at: DateTime<Utc>,
    /// When the current client certificate expires.
    pub certificate_not_after: DateTime<Utc>,
    /// Whether a session is live now (heartbeats arriving).
    #[serde(default)]
    pub online: bool,
    /// The last frame heard from the agent, while this broker has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// What the last reconciliation found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
}

/// The difference between what the broker granted and what the tenant has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DriftReport {
    pub checked_at: DateTime<Utc>,
    /// Present in the tenant, not granted by jitgate.
    pub unexpected: Vec<Entitlement>,
    /// Granted by jitgate (and applied), missing from the tenant.
    pub missing: Vec<Entitlement>,
    /// Whether revokes were queued for the unexpected ones.
    pub removing_unexpected: bool,
}

/// What an enrolled agent receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Enrolled {
    pub agent: AgentView,
    /// The agent's client certificate, PEM.
    pub certificate_pem: String,
    /// The broker CA, PEM.
    pub ca_pem: String,
    /// The broker's Ed25519 command-signing public key, base64: the agent
    /// acts only on commands that verify against it.
    pub command_public_key: String,
    pub command_key_id: String,
    /// Where the agent connects: `wss://host:port`, the broker's agent hub.
    pub hub_url: String,
}
