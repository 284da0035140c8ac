//! Notification mail: a plain-text and an HTML part rendered from one
//! [`Mail`] in the reader's language (the console's strings), with a link
//! to the request's page in the console. Approvals are made there, with
//! a form: no link in a mail acts on a GET.

use askama::Template;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};

use super::event::Event;
use super::queue::DeliveryError;
use super::shown::Shown;
use crate::config::{EmailConfig, SmtpTls};
use crate::console::text::Lang;

/// What a notification mail says, in one language.
#[derive(Debug, Clone)]
pub struct Mail {
    pub lang: Lang,
    pub subject: String,
    pub headline: String,
    /// Label and value, in order.
    pub rows: Vec<(&'static str, String)>,
    pub link: String,
    pub open_label: &'static str,
    pub footer: &'static str,
}

#[derive(Template)]
#[template(path = "mail/notification.txt")]
struct PlainPart<'a> {
    mail: &'a Mail,
}

#[derive(Template)]
#[template(path = "mail/notification.html")]
struct HtmlPart<'a> {
    mail: &'a Mail,
}

impl Mail {
    /// The mail for `event` in `lang`; `public_url` is the console's base.
    pub fn of(event: &Event, lang: Lang, public_url: &str) -> Mail {
        let t = lang.texts();
        let shown = Shown::of(event, lang, public_url);
        Mail {
            lang,
            subject: format!("[jitgate] {}", shown.headline),
            headline: shown.headline,
            rows: shown.facts,
            link: shown.link,
            open_label: shown.link_label,
            footer: t.mail_footer,
        }
    }

    /// Both parts, rendered.
    pub fn render(&self) -> Result<(String, String), askama::Error> {
        Ok((
            PlainPart { mail: self }.render()?,
            HtmlPart { mail: self }.render()?,
        ))
    }
}

/// The `Message-ID` of a notification: the same on every retry, so a
/// mailbox that got it twice (a broker died after sending) can tell.
pub fn message_id(notification_id: &str) -> String {
    let digest = Sha256::digest(notification_id.as_bytes());
    format!("<{}@jitgate.notify>", hex::encode(&digest[..16]))
}

/// Sends notification mail through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mailer(from {})", self.from)
    }
}

impl Mailer {
    /// From `[notify.email]` and the password (read by the caller).
    pub fn new(config: &EmailConfig, password: Option<String>) -> Result<Mailer, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("from `{}`: {e}", config.from))?;
        let host = config.smtp_host.clone();
        let tls = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                let cert =
                    Certificate::from_pem(&pem).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|e| format!("TLS for {host}: {e}"))
        };
        let tls = match config.tls {
            SmtpTls::Starttls => Tls::Required(tls()?),
            SmtpTls::Implicit => Tls::Wrapper(tls()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
            .port(config.port())
            .tls(tls)
            .timeout(Some(config.timeout));
        if !config.username.is_empty() {
            let password = password
                .ok_or("a username is set but no password (password_file or JITGATE_SMTP_PASSWORD)")?;
            builder = builder.credentials(Credentials::new(config.username.clone(), password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends `mail` to `to` as the message of notification `id`.
    /// Mailbox errors (5xx about the recipient) refuse it for good;
    /// everything else is tried again.
    pub async fn send(&self, id: &str, to: &str, name: &str, mail: &Mail) -> Result<(), DeliveryError> {
        let to: Mailbox = match format!("{name} <{to}>").parse().or_else(|_| to.parse()) {
            Ok(m) => m,
            Err(e) => return Err(DeliveryError::refused(format!("`{to}` is not a mailbox: {e}"))),
        };
        let (plain, html) = mail
            .render()
            .map_err(|e| DeliveryError::refused(format!("rendering the mail: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .message_id(Some(message_id(id)))
            .multipart(MultiPart::alternative_plain_html(plain, html))
            .map_err(|e| DeliveryError::refused(format!("building the mail: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.status().map(u16::from);
                let mailbox_refused = e.is_permanent() && matches!(code, Some(550..=553));
                let message = format!("SMTP: {e}");
                Err(if mailbox_refused {
                    DeliveryError::refused(message)
                } else {
                    DeliveryError::retryable(message)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{EventKind, GrantFacts, PersonFacts, ReviewFacts};
    use jitgate_shared::v1::{GrantId, UserId};

    fn event(kind: EventKind) -> Event {
        let mut e = crate::notify::event::sample();
        e.kind = kind;
        let r = e.request.as_mut().unwrap();
        r.requester.name = "Alice <b>".into();
        r.requester.email = Some("alice@example.com".into());
        r.duration_seconds = 5400;
        r.justification = Some("INC-7 <script>".into());
        r.ticket = Some("OPS-12".into());
        (r.approvals, r.approvals_required) = (1, 2);
        e.grant = Some(GrantFacts {
            id: GrantId::generate(),
            starts_at: e.at,
            ends_at: e.at + chrono::Duration::minutes(90),
        });
        e.review = Some(ReviewFacts {
            reviewer: PersonFacts {
                id: UserId::new("bob").unwrap(),
                name: "Bob".into(),
                email: None,
            },
            decision: jitgate_shared::v1::api::Decision::Approve,
            comment: Some("ok".into()),
        });
        e
    }

    #[test]
    fn both_parts_carry_the_facts_and_the_link() {
        let e = event(EventKind::RequestReviewed);
        let mail = Mail::of(&e, Lang::En, "https://jitgate.example/");
        let (plain, html) = mail.render().unwrap();
        let link = format!(
            "https://jitgate.example/console/requests/{}",
            e.request_id().unwrap()
        );
        for part in [&plain, &html] {
            assert!(part.contains(&link), "{part}");
            assert!(part.contains("OPS-12") && part.contains("1 / 2") && part.contains("1 h 30 min"));
        }
        assert!(plain.contains("Justification: INC-7 <script>"), "{plain}");
        // The HTML part escapes what people typed.
        assert!(
            html.contains("INC-7 &#60;script&#62;") || html.contains("INC-7 &lt;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(mail.subject.starts_with("[jitgate] "));
    }

    #[test]
    fn agents_offline_name_the_configuration_and_its_last_contact() {
        let e = crate::notify::event::sample_agent_offline();
        let (plain, html) = Mail::of(&e, Lang::En, "https://j").render().unwrap();
        for part in [&plain, &html] {
            assert!(part.contains("AWS prod (aws-prod)"), "{part}");
            assert!(part.contains("2027-01-15 07:55 UTC"), "{part}");
            assert!(part.contains("https://j/console/admin/agents"), "{part}");
        }
        let ja = Mail::of(&e, Lang::Ja, "https://j").render().unwrap().0;
        assert!(ja.contains("最終接続"), "{ja}");
    }

    #[test]
    fn speaks_the_reader_s_language() {
        let e = event(EventKind::RequestCreated);
        let ja = Mail::of(&e, Lang::Ja, "https://j").render().unwrap().0;
        assert!(ja.contains("申請者") && ja.contains("1時間30分"), "{ja}");
        let en = Mail::of(&e, Lang::En, "https://j").render().unwrap().0;
        assert!(en.contains("Requester"), "{en}");
    }

    #[test]
    fn message_ids_are_stable_per_notification() {
        assert_eq!(message_id("audit-1/email:a@b"), message_id("audit-1/email:a@b"));
        assert_ne!(message_id("audit-1/email:a@b"), message_id("audit-2/email:a@b"));
    }
}
