//! Email over SMTP (lettre): one plain-text + HTML message to the people a build concerns.
//!
//! Configured by `report.email.smtp` (`smtp://host:port`), `report.email.from` and
//! `report.email.tls` (`none`, `starttls`, `tls`); the login comes from `KILN_SMTP_USER` /
//! `KILN_SMTP_PASSWORD` so it never sits in a file. The password never reaches a log or an error.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::settings::file::{EmailConfig, SmtpTls};
use crate::settings::names;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("report.email.{key}: {message}")]
    Config { key: &'static str, message: String },
    #[error("cannot build the email: {0}")]
    Build(String),
    #[error("sending email through {server}: {message}")]
    Send { server: String, message: String },
}

/// How long the server may take to accept the connection and to answer each command.
const SMTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole conversation of one message, whatever the server does (lettre's own timeout does
/// not cover a server that accepts the connection and never greets).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A ready SMTP transport.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for messages.
    server: String,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mailer {
    /// The mailer `report.email` describes; `None` when no SMTP server is configured.
    pub fn from_config(
        cfg: &EmailConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Result<Mailer, EmailError>> {
        let smtp = cfg.smtp.as_deref().filter(|s| !s.trim().is_empty())?;
        Some(Mailer::new(
            smtp,
            cfg.from.as_deref(),
            cfg.tls,
            env(names::SMTP_USER).filter(|u| !u.is_empty()),
            env(names::SMTP_PASSWORD),
        ))
    }

    pub fn new(
        smtp: &str,
        from: Option<&str>,
        tls: SmtpTls,
        user: Option<String>,
        password: Option<String>,
    ) -> Result<Mailer, EmailError> {
        let bad = |key: &'static str, message: String| EmailError::Config { key, message };
        let url = url::Url::parse(smtp.trim()).map_err(|e| {
            bad(
                "smtp",
                format!("{smtp:?} is not a URL like smtp://host:587 ({e})"),
            )
        })?;
        if url.scheme() != "smtp" {
            return Err(bad(
                "smtp",
                format!(
                    "unsupported scheme {:?}: use smtp://host:port and report.email.tls",
                    url.scheme()
                ),
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("smtp", "the URL names no host".into()))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port().unwrap_or(match tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        let from_text = from.ok_or_else(|| {
            bad(
                "from",
                "is required when report.email.smtp is set (e.g. \"Kiln CI <ci@example.com>\")"
                    .into(),
            )
        })?;
        let from: Mailbox = from_text
            .parse()
            .map_err(|e| bad("from", format!("{from_text:?} is not an address: {e}")))?;
        let builder = match tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(|e| bad("tls", e.to_string()))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                .map_err(|e| bad("tls", e.to_string()))?,
        };
        let mut builder = builder.port(port).timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = user {
            builder = builder.credentials(Credentials::new(user, password.unwrap_or_default()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            server: format!("{host}:{port}"),
        })
    }

    /// Send one multipart/alternative message to every address in `mail.to`.
    pub async fn send(&self, mail: &Mail) -> Result<(), EmailError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone());
        for to in &mail.to {
            let mbox: Mailbox = to
                .parse()
                .map_err(|e| EmailError::Build(format!("recipient {to:?}: {e}")))?;
            b = b.to(mbox);
        }
        let message = b
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| EmailError::Build(e.to_string()))?;
        let failed = |message: String| EmailError::Send {
            server: self.server.clone(),
            message,
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(sent) => sent.map(|_| ()).map_err(|e| failed(e.to_string())),
            Err(_) => Err(failed(format!(
                "no answer within {}s",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let e = Mailer::new("mail.example.com", Some("a@b.c"), SmtpTls::None, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("report.email.smtp"), "{e}");
        let e = Mailer::new("smtp://mail.example.com", None, SmtpTls::None, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("report.email.from"), "{e}");
        let m = Mailer::new(
            "smtp://mail.example.com",
            Some("Kiln <ci@example.com>"),
            SmtpTls::Starttls,
            Some("u".into()),
            Some("hunter2".into()),
        )
        .unwrap();
        assert_eq!(m.server, "mail.example.com:587");
    }
}
