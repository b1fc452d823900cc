//! The broker's standardisation pages, answered the way a citizen does: the phone form, the code
//! form (the code read from the dev SMS gateway's page, `/dev/sms`, or its log line), and
//! "continue" on a failure page. Each page posts to its step's address with its CSRF token.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
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
    Log(PathBuf),
}

/// How much of the end of the log is searched: far more than 32 logins in flight write.
const LOG_TAIL: u64 = 256 * 1024;

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
        Codes::Log(path) => return code_from_log(path, answers.phone).await,
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
async fn code_from_log(path: &PathBuf, phone: &str) -> Result<String, Failure> {
    const STEP: &str = "read the SMS log";
    let masked = mask(phone).ok_or_else(|| Failure::bad(STEP, "not a phone", phone))?;
    for _ in 0..50 {
        let tail = read_tail(path).map_err(|e| Failure::bad(STEP, "unreadable", &e.to_string()))?;
        let code = tail
            .lines()
            .rev()
            .find(|l| l.contains(&masked))
            .and_then(|line| {
                let text = line.split("text").nth(1)?;
                text.split(|c: char| !c.is_ascii_digit())
                    .find(|word| word.len() == 6)
                    .map(str::to_owned)
            });
        if let Some(code) = code {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(Failure::bad(STEP, "no code for the phone", ""))
}

fn read_tail(path: &PathBuf) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
    fn reads_the_csrf_token() {
        let html = r#"<form method="post"><input type="hidden" name="csrf" value="abc-1">"#;
        assert_eq!(form_value(html, "csrf").as_deref(), Some("abc-1"));
        assert_eq!(form_value(html, "phone"), None);
    }
}
