//! The broker's standardisation pages, answered the way a citizen does: the phone form, the code
//! form (the code read from the dev SMS gateway's page, `/dev/sms`, or its log line), and
//! "continue" on a failure page. Each page posts to its step's address with its CSRF token.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use url::Url;

use crate::failure::Failure;

/// What a citizen answers: their phone, and where the dev SMS gateway shows the codes it sent.
pub struct Answers<'a> {
    pub phone: &'a str,
    pub codes: &'a Codes,
}

/// Where the dev SMS gateway's codes are read.
pub enum Codes {
    /// The broker's `/dev/sms` page (its rendering is charged to the broker).
    Page(Url),
    /// The broker's log file, where the gateway writes one line per message.
    Log(SmsLog),
}

/// The dev gateway's lines in the broker's log, read as the log grows: each read takes only
/// the bytes written since the last one. (Reading the log's last 256 KiB for every code, as
/// the driver once did, cost the shared two cores a quarter of a megabyte of copying and
/// scanning per login, which the broker's caches paid for too: the linking scenarios' CPU
/// per login rose with the driver's, not the broker's, work.)
pub struct SmsLog {
    path: PathBuf,
    tail: Mutex<Tail>,
}

#[derive(Default)]
struct Tail {
    /// How far the log has been read.
    offset: u64,
    /// The end of the last read when it stopped inside a line.
    partial: Vec<u8>,
    /// The newest code not yet taken, by masked phone (as the line shows it).
    codes: HashMap<String, String>,
}

impl SmsLog {
    /// Reads `path` from its present end: what was logged before belongs to earlier logins.
    pub fn new(path: PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        Self {
            path,
            tail: Mutex::new(Tail {
                offset,
                ..Tail::default()
            }),
        }
    }

    /// The newest code for the masked phone, read from what the log gained since the last
    /// read; taken, so that a later login of the same number waits for its own line.
    fn take(&self, masked: &str) -> std::io::Result<Option<String>> {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(tail.offset))?;
        let mut bytes = std::mem::take(&mut tail.partial);
        let read = file.read_to_end(&mut bytes)?;
        tail.offset += read as u64;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        tail.partial = bytes.split_off(complete);
        for line in String::from_utf8_lossy(&bytes).lines() {
            if let Some((to, code)) = sms_line(&plain(line)) {
                tail.codes.insert(to, code);
            }
        }
        Ok(tail.codes.remove(masked))
    }
}

/// A log line without its terminal colours (`ESC [ … m`). Builds before `1c40940` wrote them
/// into log files too, and the driver still measures such builds (`BIN=… instructions.sh`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// The masked phone and the 6-digit code of a dev gateway's log line, as text
/// (`… to=0971***567 text="Mã xác thực là 123456. …"`) or JSON (`"to":"0971***567"`).
fn sms_line(line: &str) -> Option<(String, String)> {
    let (head, text) = line.split_once("text")?;
    let to = match head.split_once("to=") {
        Some((_, rest)) => rest.split_whitespace().next()?,
        None => head.split_once(r#""to":""#)?.1.split('"').next()?,
    };
    let code = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|word| word.len() == 6)?;
    Some((to.to_owned(), code.to_owned()))
}

/// The form to post back to the step page `html`.
pub async fn answer(
    http: &reqwest::Client,
    html: &str,
    answers: &Answers<'_>,
    step: &str,
) -> Result<Vec<(&'static str, String)>, Failure> {
    let csrf = form_value(html, "csrf")
        .ok_or_else(|| Failure::bad(step, "page without a login link or a CSRF token", html))?;
    let mut form = vec![("csrf", csrf)];
    if html.contains(r#"id="send-code""#) {
        form.extend([("action", "phone".into()), ("phone", answers.phone.into())]);
    } else if html.contains(r#"id="verify-code""#) {
        let code = sms_code(http, answers).await?;
        form.extend([("action", "code".into()), ("code", code)]);
    } else if html.contains(r#"id="continue""#) {
        form.push(("action", "continue".into()));
    } else {
        return Err(Failure::bad(step, "a step page without a known form", html));
    }
    Ok(form)
}

/// The newest code the dev gateway sent to `answers.phone` (newest first on the page).
async fn sms_code(http: &reqwest::Client, answers: &Answers<'_>) -> Result<String, Failure> {
    const STEP: &str = "GET /dev/sms";
    let page = match answers.codes {
        Codes::Page(page) => page,
        Codes::Log(log) => return code_from_log(log, answers.phone).await,
    };
    let response = http
        .get(page.clone())
        .send()
        .await
        .map_err(|e| Failure::transport(STEP, &e))?;
    let status = response.status();
    let html = response
        .text()
        .await
        .map_err(|e| Failure::transport(STEP, &e))?;
    if !status.is_success() {
        return Err(Failure::status(STEP, status.as_u16(), &html));
    }
    code_for(&html, answers.phone).ok_or_else(|| Failure::bad(STEP, "no code for the phone", ""))
}

/// The 6-digit code in the first row of `/dev/sms` addressed to `phone` (shown masked there:
/// its first 4 and last 3 digits).
fn code_for(html: &str, phone: &str) -> Option<String> {
    let masked = mask(phone)?;
    let row = html
        .split("<tr>")
        .find(|row| row.contains(&format!(">{masked}<")))?;
    let text = row.split(r#"class="sms-text">"#).nth(1)?;
    text.split(|c: char| !c.is_ascii_digit())
        .find(|word| word.len() == 6)
        .map(str::to_owned)
}

/// The code of the gateway's newest log line for `phone` (the line is written before the broker
/// answers the phone form, but the file may lag a moment behind).
async fn code_from_log(log: &SmsLog, phone: &str) -> Result<String, Failure> {
    const STEP: &str = "read the SMS log";
    let masked = mask(phone).ok_or_else(|| Failure::bad(STEP, "not a phone", phone))?;
    for _ in 0..50 {
        let code = log
            .take(&masked)
            .map_err(|e| Failure::bad(STEP, "unreadable", &e.to_string()))?;
        if let Some(code) = code {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(Failure::bad(STEP, "no code for the phone", ""))
}

/// `0971234567` → `0971***567`, as the broker masks a national number.
fn mask(phone: &str) -> Option<String> {
    let (head, tail) = (phone.get(..4)?, phone.get(phone.len().checked_sub(3)?..)?);
    let hidden = phone.len().checked_sub(7)?;
    Some(format!("{head}{}{tail}", "*".repeat(hidden)))
}

/// Where a step page's forms post (the first form's `action`).
pub fn form_action(html: &str) -> Option<String> {
    let marker = r#"<form method="post" action=""#;
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// A form field's value on a page (`name="x" value="..."`).
fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_code_of_the_phone() {
        let html = r#"<tbody>
<tr><td>10:00:02</td><td>0971***568</td><td class="sms-text">Mã xác thực là 111111. Mã có hiệu lực 5 phút.</td></tr>
<tr><td>10:00:01</td><td>0971***567</td><td class="sms-text">Mã xác thực là 123456. Mã có hiệu lực 5 phút.</td></tr>
<tr><td>10:00:00</td><td>0971***567</td><td class="sms-text">Mã xác thực là 999999.</td></tr>"#;
        assert_eq!(code_for(html, "0971234567").as_deref(), Some("123456"));
        assert_eq!(code_for(html, "0971234569"), None);
    }

    #[test]
    fn reads_the_codes_as_the_log_grows_and_each_once() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("loadgen-sms-{}.log", std::process::id()));
        let line = |to: &str, code: &str| {
            format!("2026-12-03T10:00:00Z  INFO broker::otp::dev: dev SMS gateway: not sent, shown at /dev/sms to={to} text=\"Mã xác thực là {code}. Mã có hiệu lực 5 phút.\"\n")
        };
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(line("0971***999", "000000").as_bytes())
            .unwrap();
        // What was logged before the reader started is not read.
        let log = SmsLog::new(path.clone());
        assert_eq!(log.take("0971***999").unwrap(), None);
        file.write_all(line("0971***567", "123456").as_bytes())
            .unwrap();
        // A line cut short by a write in progress is read once it is whole.
        let half = line("0971***568", "654321");
        file.write_all(&half.as_bytes()[..40]).unwrap();
        assert_eq!(log.take("0971***567").unwrap().as_deref(), Some("123456"));
        assert_eq!(
            log.take("0971***567").unwrap(),
            None,
            "a code is taken once"
        );
        assert_eq!(log.take("0971***568").unwrap(), None);
        file.write_all(&half.as_bytes()[40..]).unwrap();
        file.write_all(line("0971***567", "111111").as_bytes())
            .unwrap();
        file.write_all(line("0971***567", "222222").as_bytes())
            .unwrap();
        assert_eq!(log.take("0971***568").unwrap().as_deref(), Some("654321"));
        assert_eq!(
            log.take("0971***567").unwrap().as_deref(),
            Some("222222"),
            "the newest"
        );
        let coloured = "\x1b[2mbroker::otp::dev\x1b[0m: dev SMS gateway \x1b[3mto\x1b[0m\x1b[2m=\x1b[0m0971***570 \x1b[3mtext\x1b[0m\x1b[2m=\x1b[0m\"Mã xác thực là 444444.\"";
        assert_eq!(
            sms_line(&plain(coloured)),
            Some(("0971***570".to_owned(), "444444".to_owned()))
        );
        let json = r#"{"level":"INFO","fields":{"message":"dev SMS gateway","to":"0971***569","text":"Mã xác thực là 333333."}}"#;
        assert_eq!(
            sms_line(json),
            Some(("0971***569".to_owned(), "333333".to_owned()))
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn reads_the_csrf_token() {
        let html = r#"<form method="post"><input type="hidden" name="csrf" value="abc-1">"#;
        assert_eq!(form_value(html, "csrf").as_deref(), Some("abc-1"));
        assert_eq!(form_value(html, "phone"), None);
    }
}
