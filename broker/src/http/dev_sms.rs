//! `GET /dev/sms`: the last messages of the dev SMS gateway, so that whoever tries `broker dev`
//! can type the code. Registered only with that gateway, which production refuses.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::pages::html;
use super::Broker;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dev/sms", web::get().to(dev_sms_get));
}

#[derive(Template)]
#[template(path = "dev_sms.html")]
struct DevSmsPage {
    messages: Vec<(String, String, String)>,
}

async fn dev_sms_get(broker: web::Data<Broker>) -> HttpResponse {
    let Some(outbox) = &broker.dev_sms else {
        return HttpResponse::NotFound().finish();
    };
    let messages = outbox
        .messages()
        .into_iter()
        .map(|m| (time_of(m.at), m.to_masked, m.text))
        .collect();
    html(StatusCode::OK, DevSmsPage { messages }.render())
}

/// `hh:mm:ss` in Vietnam (UTC+7), the only time zone the people trying it live in.
fn time_of(at: i64) -> String {
    let seconds = (at + 7 * 3600).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}
