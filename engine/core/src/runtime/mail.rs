//! Sending e-mail: SMTP through lettre (server from `TALE_SMTP_URL`, sender
//! from `TALE_SMTP_FROM`), or the recording mailer of dry runs and tests.

use std::sync::Mutex;

use futures_util::future::BoxFuture;
use lettre::message::{Attachment as MimeAttachment, Mailbox, Message, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// One message, rendered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Email {
    pub sender_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<Attachment>,
}

/// A file sent with a message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type such as `text/csv`.
    pub content_type: String,
    pub contents: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MailError {
    #[error(
        "no SMTP server is configured: set TALE_SMTP_URL (such as smtps://user:password@smtp.example.com) and TALE_SMTP_FROM"
    )]
    NotConfigured,
    #[error("invalid address `{0}`")]
    Address(String),
    #[error("invalid mail configuration: {0}")]
    Config(String),
    #[error("cannot build the message: {0}")]
    Message(String),
    #[error("the SMTP server refused or failed: {0}")]
    Send(String),
}

pub trait Mailer: Send + Sync {
    /// Sends; the message id.
    fn send(&self, email: Email) -> BoxFuture<'_, Result<String, MailError>>;
}

/// Refuses: no server is configured.
#[derive(Debug, Default)]
pub struct NoMailer;

impl Mailer for NoMailer {
    fn send(&self, _email: Email) -> BoxFuture<'_, Result<String, MailError>> {
        Box::pin(std::future::ready(Err(MailError::NotConfigured)))
    }
}

/// Keeps the messages (dry runs, tests).
#[derive(Debug, Default)]
pub struct RecordingMailer {
    pub sent: Mutex<Vec<Email>>,
}

impl Mailer for RecordingMailer {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<String, MailError>> {
        // The same addresses a real send would refuse.
        let addresses = email
            .to
            .iter()
            .chain(&email.cc)
            .chain(&email.bcc)
            .chain(email.reply_to.iter());
        if let Some(bad) = addresses.into_iter().find(|a| mailbox(a).is_err()) {
            return Box::pin(std::future::ready(Err(MailError::Address(bad.trim().to_owned()))));
        }
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.push(email);
        let id = format!("<dry-run-{}@tale>", sent.len());
        Box::pin(std::future::ready(Ok(id)))
    }
}

/// SMTP with lettre.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// `url` as lettre reads it: `smtp://host:port` (plain), `smtp://host?tls=required`
    /// (STARTTLS), `smtps://user:password@host` (TLS).
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Config(format!("TALE_SMTP_URL: {e}")))?
            .build();
        let from = from.parse().map_err(|_| MailError::Address(from.to_owned()))?;
        Ok(Self { transport, from })
    }

    /// From `TALE_SMTP_URL` and `TALE_SMTP_FROM`, when both are set.
    pub fn from_env() -> Option<Result<Self, MailError>> {
        let url = std::env::var("TALE_SMTP_URL").ok()?;
        let from = std::env::var("TALE_SMTP_FROM").unwrap_or_else(|_| "tale@localhost".into());
        Some(Self::new(&url, &from))
    }
}

fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address
        .trim()
        .parse()
        .map_err(|_| MailError::Address(address.trim().to_owned()))
}

impl Mailer for SmtpMailer {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<String, MailError>> {
        Box::pin(async move {
            let mut from = self.from.clone();
            if let Some(name) = &email.sender_name {
                from.name = Some(name.clone());
            }
            let id = format!("<{}@tale>", super::event::new_id());
            let mut builder = Message::builder()
                .from(from)
                .subject(email.subject.clone())
                .message_id(Some(id.clone()));
            for a in &email.to {
                builder = builder.to(mailbox(a)?);
            }
            for a in &email.cc {
                builder = builder.cc(mailbox(a)?);
            }
            for a in &email.bcc {
                builder = builder.bcc(mailbox(a)?);
            }
            if let Some(r) = &email.reply_to {
                builder = builder.reply_to(mailbox(r)?);
            }
            // Tines sends bodies as HTML; plain text stays plain.
            let html = email.body.contains("</") || email.body.contains("<br");
            let content_type = if html {
                ContentType::TEXT_HTML
            } else {
                ContentType::TEXT_PLAIN
            };
            let message = if email.attachments.is_empty() {
                builder.header(content_type).body(email.body.clone())
            } else {
                let mut parts =
                    MultiPart::mixed().singlepart(SinglePart::builder().header(content_type).body(email.body.clone()));
                for a in &email.attachments {
                    let kind = ContentType::parse(&a.content_type)
                        .unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("a valid type"));
                    parts = parts.singlepart(MimeAttachment::new(a.filename.clone()).body(a.contents.clone(), kind));
                }
                builder.multipart(parts)
            }
            .map_err(|e| MailError::Message(e.to_string()))?;
            self.transport
                .send(message)
                .await
                .map_err(|e| MailError::Send(e.to_string()))?;
            Ok(id)
        })
    }
}
