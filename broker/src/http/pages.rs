//! Server-rendered pages (askama): the login page and the error page, Vietnamese first.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub lang: &'a str,
    pub title: &'a str,
    pub subtitle: &'a str,
    /// One per upstream offered, in the configured order.
    pub buttons: Vec<LoginButton>,
    pub help: &'a str,
    pub other_lang: &'a str,
    pub other_lang_url: &'a str,
}

/// A button of the login page: to an upstream, or to the choice of one.
pub struct LoginButton {
    pub id: String,
    pub label: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub lang: &'a str,
    pub title: &'a str,
    pub question: &'a str,
    pub button: &'a str,
    pub action: &'a str,
    pub fields: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub lang: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub code: &'a str,
    pub hotline_text: &'a str,
}

pub fn html(status: StatusCode, body: Result<String, askama::Error>) -> HttpResponse {
    match body {
        Ok(body) => HttpResponseBuilder::new(status)
            .insert_header(("Content-Type", "text/html; charset=utf-8"))
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("X-Frame-Options", "DENY"))
            .insert_header((
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::ServiceUnavailable().body("temporarily unavailable")
        }
    }
}

/// The Vietnamese or the English text.
pub fn t(english: bool, vi: &'static str, en: &'static str) -> &'static str {
    if english {
        en
    } else {
        vi
    }
}

/// A page with a title and a message, each given as (Vietnamese, English).
pub fn message_page(
    status: StatusCode,
    english: bool,
    code: &str,
    title: (&str, &str),
    message: (&str, &str),
) -> HttpResponse {
    let page = if english {
        ErrorPage {
            lang: "en",
            title: title.1,
            message: message.1,
            code,
            hotline_text: "Need help? Call",
        }
    } else {
        ErrorPage {
            lang: "vi",
            title: title.0,
            message: message.0,
            code,
            hotline_text: "Cần hỗ trợ, vui lòng gọi",
        }
    };
    html(status, page.render())
}
