//! Administration: configurations, resources, users and tokens, policies,
//! a look into the outbox, and force-closing a revoke that keeps failing.

use jitgate_shared::v1::api::{
    CommandOp, Configuration, ForceCloseBody, GrantView, IssuedToken, PolicyStatus, Resource, Role,
    TokenView, UserBody, UserView,
};
use jitgate_shared::v1::{ConfigId, UserId};

use super::auth::new_token;
use super::{require_role, retry_conflicts, Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::catalog::{
    check_configuration, check_mappings, check_resource, StoredConfiguration, StoredResource,
};
use crate::domain::grant::Grant;
use crate::domain::user::{ApiToken, User, TOKEN_ID_LEN};
use crate::store::{Change, GrantFilter, TokenFilter};

impl Broker {
    #[tracing::instrument(skip(self, actor, config), fields(user = %actor.id, configuration = %config.id))]
    pub async fn put_configuration(
        &self,
        actor: &User,
        config: Configuration,
    ) -> Result<Configuration, ServiceError> {
        require_role(actor, Role::Admin)?;
        self.save_configuration(Actor::User(actor.id.clone()), config)
            .await
    }

    /// Creates or replaces a configuration (admin checked by the caller).
    pub async fn save_configuration(
        &self,
        actor: Actor,
        config: Configuration,
    ) -> Result<Configuration, ServiceError> {
        let existing = self.store.configurations().await?;
        check_configuration(&config, |id| existing.iter().any(|c| &c.config.id == id))?;
        self.check_chains_after(&config).await?;
        let version = existing
            .iter()
            .find(|c| c.config.id == config.id)
            .map_or(0, |c| c.version);
        let now = self.clock.now();
        let mut change = Change::default();
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::ConfigurationSaved {
                configuration: config.id.clone(),
            },
        });
        change.configurations.push(StoredConfiguration {
            version,
            config: config.clone(),
        });
        self.commit(change).await?;
        Ok(config)
    }

    pub async fn list_configurations(&self, actor: &User) -> Result<Vec<Configuration>, ServiceError> {
        require_any(actor)?;
        Ok(self
            .store
            .configurations()
            .await?
            .into_iter()
            .map(|c| c.config)
            .collect())
    }

    #[tracing::instrument(skip(self, actor, resource), fields(user = %actor.id, resource = %resource.id))]
    pub async fn put_resource(&self, actor: &User, resource: Resource) -> Result<Resource, ServiceError> {
        require_role(actor, Role::Admin)?;
        self.save_resource(Actor::User(actor.id.clone()), resource).await
    }

    /// Creates or replaces a resource (admin checked by the caller).
    pub async fn save_resource(&self, actor: Actor, resource: Resource) -> Result<Resource, ServiceError> {
        let config = self.store.configuration(&resource.configuration).await?;
        check_resource(&resource, config.as_ref().map(|c| &c.config))?;
        if !resource.realized_by.is_empty() {
            let all = self.store.configurations().await?;
            check_mappings(&resource, |id| {
                all.iter().find(|c| &c.config.id == id).map(|c| &c.config)
            })?;
        }
        let version = self.store.resource(&resource.id).await?.map_or(0, |r| r.version);
        let now = self.clock.now();
        let mut change = Change::default();
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::ResourceSaved {
                resource: resource.id.clone(),
            },
        });
        change.resources.push(StoredResource {
            version,
            resource: resource.clone(),
        });
        self.commit(change).await?;
        Ok(resource)
    }

    pub async fn list_resources(&self, actor: &User) -> Result<Vec<Resource>, ServiceError> {
        require_any(actor)?;
        Ok(self
            .store
            .resources()
            .await?
            .into_iter()
            .map(|r| r.resource)
            .collect())
    }

    /// Creates a local account and issues its first token, or updates one.
    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, target = %body.id))]
    pub async fn put_user(&self, actor: &User, body: UserBody) -> Result<UserOutcome, ServiceError> {
        require_role(actor, Role::Admin)?;
        self.save_user(Actor::User(actor.id.clone()), body).await
    }

    /// Creating users without an acting admin: first start and `user add`.
    pub async fn save_user(&self, actor: Actor, body: UserBody) -> Result<UserOutcome, ServiceError> {
        if let Some(email) = &body.email {
            if !email.contains('@') || email.trim() != email {
                return Err(ServiceError::invalid(
                    "email",
                    format!("`{email}` is not an email address"),
                ));
            }
        }
        let now = self.clock.now();
        let existing = self.store.user(&body.id).await?;
        let created = existing.is_none();
        // An update keeps the account's link unless the admin names another
        // person; a new account joins the person of its verified email.
        let person = match (body.person.clone(), &existing) {
            (Some(person), _) => person,
            (None, Some(u)) => u.person.clone(),
            (None, None) => {
                self.person_for_new_account(&body.id, body.email.as_deref())
                    .await?
            }
        };
        let user = User {
            id: body.id.clone(),
            version: existing.as_ref().map_or(0, |u| u.version),
            display_name: if body.display_name.is_empty() {
                body.id.to_string()
            } else {
                body.display_name
            },
            email: body.email,
            // An admin vouches for the email they set.
            email_verified: true,
            roles: body.roles,
            groups: body.groups,
            person,
            disabled: existing.as_ref().is_some_and(|u| u.disabled),
            created_at: existing.as_ref().map_or(now, |u| u.created_at),
            provisioned_by: existing.as_ref().and_then(|u| u.provisioned_by.clone()),
            identities: existing
                .as_ref()
                .map(|u| u.identities.clone())
                .unwrap_or_default(),
            language: existing.as_ref().and_then(|u| u.language.clone()),
        };
        let mut change = Change::default();
        change.audit.push(AuditEntry {
            at: now,
            actor: actor.clone(),
            event: AuditEvent::UserSaved {
                user: user.id.clone(),
            },
        });
        let token = if created {
            let (token, stored) = new_token(&user, now, self.settings.token_ttl);
            change.audit.push(AuditEntry {
                at: now,
                actor,
                event: AuditEvent::TokenIssued {
                    user: user.id.clone(),
                    expires_at: stored.expires_at,
                },
            });
            let expires_at = stored.expires_at;
            change.tokens.push(stored);
            Some((token, expires_at))
        } else {
            None
        };
        let view = user.view();
        change.users.push(user);
        self.commit(change).await?;
        Ok(match token {
            Some((token, expires_at)) => UserOutcome::Created(IssuedToken {
                user: view,
                token,
                expires_at,
            }),
            None => UserOutcome::Updated(view),
        })
    }

    /// A new token for an existing user; old tokens stay valid until they
    /// expire.
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id, target = %id))]
    pub async fn issue_token(&self, actor: &User, id: &UserId) -> Result<IssuedToken, ServiceError> {
        require_role(actor, Role::Admin)?;
        self.issue_token_as(Actor::User(actor.id.clone()), id).await
    }

    pub async fn issue_token_as(&self, actor: Actor, id: &UserId) -> Result<IssuedToken, ServiceError> {
        let user = self
            .store
            .user(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", id))?;
        let now = self.clock.now();
        let (token, stored) = new_token(&user, now, self.settings.token_ttl);
        let expires_at = stored.expires_at;
        let mut change = Change::default();
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::TokenIssued {
                user: user.id.clone(),
                expires_at,
            },
        });
        change.tokens.push(stored);
        self.commit(change).await?;
        Ok(IssuedToken {
            user: user.view(),
            token,
            expires_at,
        })
    }

    /// Accounts, with their roles and links: for admins and auditors only.
    /// Keeps the language `caller` chose for the console (a BCP 47 tag;
    /// `None`: the browser's). A display preference of one's own, so not
    /// audited.
    pub async fn set_language(&self, caller: &User, language: Option<&str>) -> Result<(), ServiceError> {
        if let Some(tag) = language {
            let well_formed = !tag.is_empty()
                && tag.len() <= 35
                && tag
                    .split('-')
                    .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
            if !well_formed {
                return Err(ServiceError::invalid(
                    "language",
                    format!("`{tag}` is not a language tag, like en or ja"),
                ));
            }
        }
        retry_conflicts(|| async {
            let mut user = self
                .store
                .user(&caller.id)
                .await?
                .ok_or_else(|| ServiceError::not_found("user", &caller.id))?;
            if user.language.as_deref() == language {
                return Ok(());
            }
            user.language = language.map(str::to_owned);
            let mut change = Change::default();
            change.users.push(user);
            self.commit(change).await.map(|_| ())
        })
        .await
    }

    pub async fn list_users(&self, actor: &User) -> Result<Vec<UserView>, ServiceError> {
        require_privileged(actor)?;
        Ok(self.store.users().await?.iter().map(User::view).collect())
    }

    /// Re-reads the policy directory; an invalid set is refused and the old
    /// one stays in force. Both outcomes are audited.
    #[tracing::instrument(skip(self), fields(actor = ?actor))]
    pub async fn reload_policies(&self, actor: Actor) -> Result<PolicyStatus, ServiceError> {
        let catalog = self.catalog().await?;
        let now = self.clock.now();
        let result = self.policies.reload(&catalog, now);
        let event = match &result {
            Ok(p) => AuditEvent::PoliciesLoaded {
                files: p.files().to_vec(),
                policies: p.policy_count(),
            },
            Err(e) => AuditEvent::PoliciesRejected { error: e.to_string() },
        };
        let mut change = Change::default();
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event,
        });
        self.commit(change).await?;
        match result {
            Ok(_) => {
                tracing::info!("policies reloaded");
                Ok(self.policies.status())
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy reload refused; previous policies stay in force");
                Err(ServiceError::Invalid {
                    field: None,
                    message: format!("policies not reloaded; the previous set stays in force:\n{e}"),
                })
            }
        }
    }

    pub async fn policy_status(&self, actor: &User) -> Result<PolicyStatus, ServiceError> {
        require_any(actor)?;
        Ok(self.policies.status())
    }

    pub async fn outbox(
        &self,
        actor: &User,
        config: &ConfigId,
        limit: usize,
    ) -> Result<Vec<crate::outbox::Command>, ServiceError> {
        require_privileged(actor)?;
        if self.store.configuration(config).await?.is_none() {
            return Err(ServiceError::not_found("configuration", config));
        }
        Ok(self.store.outbox(config, limit).await?)
    }
}

impl Broker {
    /// Grants whose revoke keeps failing (admins and auditors).
    pub async fn failing_revokes(&self, actor: &User) -> Result<Vec<GrantView>, ServiceError> {
        require_privileged(actor)?;
        let filter = crate::store::GrantFilter {
            revoke_failing: true,
            ..crate::store::GrantFilter::default()
        };
        Ok(self
            .grants_where(&filter)
            .await?
            .iter()
            .map(crate::domain::grant::Grant::view)
            .collect())
    }

    /// Closes a queued revoke: an admin says the entitlement was removed by
    /// hand (the tenant is gone, the agent cannot be mended). Audited with
    /// the reason; the grant counts as removed. The only way a revoke
    /// leaves the outbox without an agent's success.
    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, command = %command_id))]
    pub async fn force_close_revoke(
        &self,
        actor: &User,
        command_id: &str,
        body: ForceCloseBody,
    ) -> Result<Option<GrantView>, ServiceError> {
        require_role(actor, Role::Admin)?;
        let reason = body.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ServiceError::invalid(
                "reason",
                "say how the entitlement was removed (for the audit log)",
            ));
        }
        let (command, grant, was_failing) = retry_conflicts(|| async {
            let command = self
                .store
                .queued_command(command_id)
                .await?
                .ok_or_else(|| ServiceError::not_found("queued command", command_id))?;
            if command.op != CommandOp::Revoke {
                return Err(ServiceError::invalid(
                    "command",
                    format!("`{command_id}` is a grant command; only revokes are force-closed"),
                ));
            }
            let now = self.clock.now();
            let mut change = Change::default();
            change.delivered.push(command.id.clone());
            let grant = self.store.grant(command.grant).await?;
            let was_failing = grant.as_ref().is_some_and(|g| g.revoke_failing.is_some());
            let closed = grant.map(|g| g.revoke_force_closed(now));
            change.audit.push(AuditEntry {
                at: now,
                actor: Actor::User(actor.id.clone()),
                event: AuditEvent::RevokeForceClosed {
                    command: command.id.clone(),
                    grant: command.grant,
                    entitlement: command.entitlement.target.describe(),
                    principal: command.entitlement.principal.clone(),
                    reason: reason.clone(),
                },
            });
            let view = closed.as_ref().map(Grant::view);
            change.grants.extend(closed);
            self.commit(change).await?;
            Ok((command, view, was_failing))
        })
        .await?;
        self.live
            .outbox(&command.entitlement.configuration)
            .release(&command, true);
        if was_failing {
            self.metrics.revokes_failing.dec();
        }
        tracing::warn!(%reason, "revoke force-closed by an admin");
        Ok(grant)
    }

    /// Live API tokens (access and refresh), a user's or everyone's.
    pub async fn list_tokens(
        &self,
        actor: &User,
        user: Option<&UserId>,
    ) -> Result<Vec<TokenView>, ServiceError> {
        require_role(actor, Role::Admin)?;
        let now = self.clock.now();
        let mut tokens = self
            .store
            .tokens(&TokenFilter {
                user: user.cloned(),
                valid_at: Some(now),
                ..TokenFilter::default()
            })
            .await?;
        tokens.sort_by(|a, b| (&a.user, a.created_at).cmp(&(&b.user, b.created_at)));
        Ok(tokens.iter().map(ApiToken::view).collect())
    }

    /// Revokes one API token by its id (the start of its hash): it stops
    /// working at once.
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id, token = %id))]
    pub async fn revoke_token(&self, actor: &User, id: &str) -> Result<TokenView, ServiceError> {
        require_role(actor, Role::Admin)?;
        let well_formed = id.len() == TOKEN_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Err(ServiceError::invalid(
                "id",
                format!(
                    "`{id}` is not a token id ({TOKEN_ID_LEN} hex digits, as `jitgate admin tokens` lists)"
                ),
            ));
        }
        let id = id.to_ascii_lowercase();
        let token = self
            .store
            .tokens(&TokenFilter {
                id: Some(id.clone()),
                ..TokenFilter::default()
            })
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::not_found("token", &id))?;
        let now = self.clock.now();
        let mut change = Change::default();
        change.delete_tokens.push(token.hash.clone());
        change.audit.push(AuditEntry {
            at: now,
            actor: Actor::User(actor.id.clone()),
            event: AuditEvent::TokenRevoked {
                user: token.user.clone(),
                token: id.clone(),
            },
        });
        self.commit(change).await?;
        Ok(token.view())
    }

    /// Signs the audit chain's head, when it moved since the last anchor.
    /// Returns the new anchor, if one was made.
    #[tracing::instrument(skip(self))]
    pub async fn anchor_audit(&self) -> Result<Option<crate::audit::anchor::AuditAnchor>, ServiceError> {
        let head = self.store.audit_head().await?;
        let last = self.store.audit_anchor().await?;
        if head.seq == 0 || last.is_some_and(|a| a.seq >= head.seq) {
            return Ok(None);
        }
        let anchor = self.keys()?.audit.sign(&head, self.clock.now());
        self.store
            .commit(Change {
                audit_anchor: Some(anchor.clone()),
                ..Change::default()
            })
            .await?;
        tracing::debug!(seq = anchor.seq, "audit chain anchored");
        Ok(Some(anchor))
    }

    /// Sets the `revokes_failing` gauge from the store (at start).
    pub async fn count_failing_revokes(&self) -> Result<usize, ServiceError> {
        let failing = self
            .grants_where(&GrantFilter {
                revoke_failing: true,
                ..GrantFilter::default()
            })
            .await?
            .len();
        self.metrics
            .revokes_failing
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
        Ok(failing)
    }
}

/// A user was created (with a first token) or updated.
#[derive(Debug)]
pub enum UserOutcome {
    Created(IssuedToken),
    Updated(UserView),
}

/// Reading the catalogue needs any role at all (every provisioned person).
fn require_any(actor: &User) -> Result<(), ServiceError> {
    if actor.roles.is_empty() {
        return Err(ServiceError::Forbidden(format!("{} has no role", actor.id)));
    }
    Ok(())
}

/// Whether `user` is an admin or an auditor (who see the whole broker).
pub(crate) fn is_privileged(user: &User) -> bool {
    user.has_role(Role::Admin) || user.has_role(Role::Auditor)
}

/// Admins and auditors.
pub(crate) fn require_privileged(actor: &User) -> Result<(), ServiceError> {
    if is_privileged(actor) {
        Ok(())
    } else {
        require_role(actor, Role::Admin)
    }
}
