//! The attributes the store keeps of a CPM message: who, to whom, what about, when, in which
//! conversation, and what is attached.
//!
//! Messages arrive as RFC 5322 MIME or wrapped in a CPIM envelope (RFC 3862, `message/cpim`),
//! the form CPM uses on the wire. Parsing is done by `mail-parser`; this module only decides
//! which header means what.

use jiff::Timestamp;
use mail_parser::{Address, MessageParser, MimeHeaders};
use serde::{Deserialize, Serialize};

/// Content type recorded for a plain RFC 5322 message.
pub const RFC822: &str = "message/rfc822";
/// Content type recorded for a CPIM-wrapped message.
pub const CPIM: &str = "message/cpim";

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageInfo {
    pub content_type: String,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: Option<String>,
    pub date: Option<Timestamp>,
    pub message_id: Option<String>,
    /// The CPM Conversation-ID when the message carries one; otherwise the Message-ID of the
    /// thread's first message (from References / In-Reply-To), so that replies group together.
    pub conversation_id: Option<String>,
    pub attachments: Vec<AttachmentSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentSummary {
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
}

/// Why bytes could not be taken as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MIME message: {0}")]
pub struct MessageError(String);

/// Reads the attributes of a message from its raw bytes.
pub fn parse_message(raw: &[u8]) -> Result<MessageInfo, MessageError> {
    match split_cpim(raw) {
        Some((envelope, inner)) => parse_cpim(envelope, inner),
        None => parse_mime(raw),
    }
}

fn parse_mime(raw: &[u8]) -> Result<MessageInfo, MessageError> {
    let message =
        MessageParser::default().parse(raw).ok_or_else(|| MessageError("no header block could be read".into()))?;
    let identified = message.from().is_some()
        || message.to().is_some()
        || message.subject().is_some()
        || message.date().is_some()
        || message.message_id().is_some();
    if !identified {
        return Err(MessageError("no From, To, Subject, Date or Message-ID header".into()));
    }
    let message_id = message.message_id().map(str::to_owned);
    let thread_root = first_text(message.references()).or_else(|| first_text(message.in_reply_to()));
    let conversation_id = message
        .header_raw("Conversation-ID")
        .map(|raw| raw.trim().to_owned())
        .or(thread_root)
        .or_else(|| message_id.clone());
    Ok(MessageInfo {
        content_type: RFC822.to_owned(),
        from: message.from().and_then(|from| addresses(from).into_iter().next()),
        to: message.to().map(addresses).unwrap_or_default(),
        cc: message.cc().map(addresses).unwrap_or_default(),
        subject: message.subject().map(str::to_owned),
        date: message.date().and_then(|date| Timestamp::from_second(date.to_timestamp()).ok()),
        message_id,
        conversation_id,
        attachments: message
            .attachments()
            .map(|part| AttachmentSummary {
                name: part.attachment_name().map(str::to_owned),
                content_type: part
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_owned(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
                size: part.len() as u64,
            })
            .collect(),
    })
}

/// A CPIM message: its envelope headers give the addressing and the date (`DateTime`), and the
/// encapsulated MIME entity gives the content (and may carry its own Subject or Message-ID).
fn parse_cpim(envelope: &[u8], inner: &[u8]) -> Result<MessageInfo, MessageError> {
    let mut info = parse_mime(envelope)?;
    let headers = String::from_utf8_lossy(envelope);
    if let Some(datetime) = header_line(&headers, "DateTime") {
        info.date = datetime.parse::<Timestamp>().ok().or(info.date);
    }
    if let Ok(content) = parse_mime(inner) {
        info.subject = info.subject.or(content.subject);
        info.message_id = info.message_id.or(content.message_id);
        info.attachments = content.attachments;
    }
    if let Some(conversation) = header_line(&headers, "Conversation-ID") {
        info.conversation_id = Some(conversation.to_owned());
    }
    info.content_type = CPIM.to_owned();
    Ok(info)
}

/// Finds the CPIM envelope, possibly behind an outer `Content-Type: message/cpim` header block,
/// and returns (envelope headers, encapsulated MIME entity).
fn split_cpim(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let (first, rest) = split_header_block(raw)?;
    let first_text = String::from_utf8_lossy(first);
    let outer_is_cpim =
        header_line(&first_text, "Content-Type").is_some_and(|ct| ct.to_ascii_lowercase().starts_with(CPIM));
    let (envelope, inner) = if outer_is_cpim { split_header_block(rest)? } else { (first, rest) };
    let envelope_text = String::from_utf8_lossy(envelope);
    let looks_like_cpim =
        header_line(&envelope_text, "DateTime").is_some() || header_line(&envelope_text, "NS").is_some();
    (outer_is_cpim || looks_like_cpim).then_some((envelope, inner))
}

/// Splits at the first empty line; the header block keeps its line ends.
fn split_header_block(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|at| (at + 2, at + 4));
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|at| (at + 1, at + 2));
    let (end, body) = match (crlf, lf) {
        (Some(a), Some(b)) => std::cmp::min_by_key(a, b, |(end, _)| *end),
        (a, b) => a.or(b)?,
    };
    Some((&raw[..end], &raw[body..]))
}

/// The value of a header in a raw header block; CPIM namespaced names (`cpm.Conversation-ID`)
/// match their plain name.
fn header_line<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        let key = key.trim();
        let plain = key.rsplit_once('.').map_or(key, |(_, plain)| plain);
        plain.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn addresses(address: &Address<'_>) -> Vec<String> {
    address
        .iter()
        .filter_map(|addr| match (addr.name(), addr.address()) {
            (Some(name), Some(email)) => Some(format!("{name} <{email}>")),
            (None, Some(email)) => Some(email.to_owned()),
            (Some(name), None) => Some(name.to_owned()),
            (None, None) => None,
        })
        .collect()
}

fn first_text(value: &mail_parser::HeaderValue<'_>) -> Option<String> {
    value
        .as_text()
        .map(str::to_owned)
        .or_else(|| value.as_text_list().and_then(|list| list.first()).map(|id| id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>, carol@example.com\r\n\
Subject: Lunch?\r\nDate: Wed, 25 Nov 2026 12:00:00 +0100\r\nMessage-ID: <m1@example.com>\r\n\
Conversation-ID: c-42\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nAt noon?\r\n--b\r\nContent-Type: image/jpeg\r\n\
Content-Disposition: attachment; filename=\"menu.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
/9j/4AAQ\r\n--b--\r\n";

    #[test]
    fn reads_addressing_subject_date_ids_and_attachments() {
        let info = parse_message(PLAIN.as_bytes()).expect("parses");
        assert_eq!(info.content_type, RFC822);
        assert_eq!(info.from.as_deref(), Some("Alice <alice@example.com>"));
        assert_eq!(info.to, vec!["Bob <bob@example.com>".to_owned(), "carol@example.com".to_owned()]);
        assert_eq!(info.subject.as_deref(), Some("Lunch?"));
        assert_eq!(info.date.map(|d| d.to_string()).as_deref(), Some("2026-11-25T11:00:00Z"));
        assert_eq!(info.message_id.as_deref(), Some("m1@example.com"));
        assert_eq!(info.conversation_id.as_deref(), Some("c-42"));
        assert_eq!(info.attachments.len(), 1);
        assert_eq!(info.attachments[0].name.as_deref(), Some("menu.jpg"));
        assert_eq!(info.attachments[0].content_type, "image/jpeg");
    }

    #[test]
    fn a_reply_without_conversation_id_joins_its_thread_root() {
        let reply = "From: bob@example.com\nSubject: Re: Lunch?\nMessage-ID: <m2@example.com>\n\
References: <m1@example.com>\nIn-Reply-To: <m1@example.com>\n\nYes.\n";
        let info = parse_message(reply.as_bytes()).expect("parses");
        assert_eq!(info.conversation_id.as_deref(), Some("m1@example.com"));
        let lone = parse_message(b"From: a@b.c\nMessage-ID: <x@b.c>\n\nhi\n").expect("parses");
        assert_eq!(lone.conversation_id.as_deref(), Some("x@b.c"));
    }

    #[test]
    fn reads_a_cpim_envelope_with_and_without_outer_headers() {
        let cpim = "From: Alice <im:alice@example.com>\r\nTo: Bob <im:bob@example.com>\r\n\
DateTime: 2026-11-25T23:00:00+01:00\r\nSubject: the weather\r\nNS: cpm <urn:oma:cpm>\r\n\
cpm.Conversation-ID: conv-7\r\n\r\nContent-Type: text/plain\r\nMessage-ID: <c1@example.com>\r\n\r\nSunny.\r\n";
        for raw in [cpim.to_owned(), format!("Content-Type: message/cpim\r\n\r\n{cpim}")] {
            let info = parse_message(raw.as_bytes()).expect("parses");
            assert_eq!(info.content_type, CPIM);
            assert_eq!(info.from.as_deref(), Some("Alice <im:alice@example.com>"));
            assert_eq!(info.subject.as_deref(), Some("the weather"));
            assert_eq!(info.date.map(|d| d.to_string()).as_deref(), Some("2026-11-25T22:00:00Z"));
            assert_eq!(info.message_id.as_deref(), Some("c1@example.com"));
            assert_eq!(info.conversation_id.as_deref(), Some("conv-7"));
        }
    }

    #[test]
    fn refuses_bytes_that_are_not_a_message() {
        assert!(parse_message(b"").is_err());
        assert!(parse_message(&[0xff, 0xfe, 0x00]).is_err());
    }
}
