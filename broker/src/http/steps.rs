//! The pages of the standardisation steps, `/login/{interaction}`: GET shows the step the login
//! stands at, POST applies a form. A form that moves the login on (the phone: the code is sent)
//! is answered with the next page itself; one that leaves it where it was (a wrong code, a
//! message) with a redirect to the page, so that reloading it never sends a guess twice; the
//! last step with the redirect to the client.

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use serde::Deserialize;

use super::errors::HttpError;
use super::front::{cookie_name, flow_error, next_response, wants_english};
use super::limits::rate_limit;
use super::pages::{html, t};
use super::Broker;
use crate::accounts::failures::{Field, Reason};
use crate::login::standardise::{
    interaction_cookie, InteractionStep, Message, StepInput, StepRequest, StepView,
};
use crate::login::Next;
use crate::sessions::sso::COOKIE as SSO_COOKIE;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/login/{interaction}")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(show))
            .route(web::post().to(submit)),
    );
}

#[derive(Deserialize)]
struct ShowQuery {
    lang: Option<String>,
}

#[derive(Deserialize)]
struct StepForm {
    csrf: Option<String>,
    action: Option<String>,
    phone: Option<String>,
    code: Option<String>,
}

async fn show(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, HttpError> {
    let id = path.into_inner();
    let secret = req.cookie(&cookie_name(&broker, &interaction_cookie(&id)));
    let view = broker
        .login_flow()
        .show_step(
            &id,
            secret.as_ref().map(|c| c.value()),
            broker.provider.now(),
        )
        .await;
    let english_default = wants_english(&req, None);
    match view {
        Ok(view) => {
            let english = match query.lang.as_deref() {
                Some("en") => true,
                Some("vi") => false,
                _ => view.english,
            };
            Ok(render(&view, english))
        }
        Err(e) => Err(flow_error(e, english_default)),
    }
}

async fn submit(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<StepForm>,
) -> Result<HttpResponse, HttpError> {
    let id = path.into_inner();
    let english = wants_english(&req, None);
    let form = form.into_inner();
    let input = match form.action.as_deref() {
        Some("phone") => StepInput::Phone(form.phone.unwrap_or_default()),
        Some("code") => StepInput::Code(form.code.unwrap_or_default()),
        Some("resend") => StepInput::Resend,
        Some("change_phone") => StepInput::ChangePhone,
        Some("continue") => StepInput::Continue,
        _ => {
            return Err(HttpError::BadSignIn {
                error: crate::oidc::error::OAuthError::invalid_request("unknown action"),
                english,
            })
        }
    };
    let binding_name = cookie_name(&broker, &interaction_cookie(&id));
    let secret = req.cookie(&binding_name);
    let sso = req.cookie(&cookie_name(&broker, SSO_COOKIE));
    let result = broker
        .login_flow()
        .step(
            StepRequest {
                interaction_id: &id,
                binding_secret: secret.as_ref().map(|c| c.value()),
                csrf: form.csrf.as_deref(),
                sso_secret: sso.as_ref().map(|c| c.value()),
                client: broker.limits.client_key(&req),
            },
            input,
            broker.provider.now(),
        )
        .await;
    match result {
        Ok(next @ Next::Interaction(_)) => {
            // The next page itself, or a redirect to it (`next_response`).
            let mut response = next_response(&broker, next);
            // Every step renews the binding cookie, as every save renews the stored login.
            if let Some(secret) = &secret {
                let _ = response.add_cookie(&super::front::cookie(
                    &broker,
                    &interaction_cookie(&id),
                    secret.value().to_string(),
                    broker.pending.ttl().as_secs() as i64,
                ));
            }
            Ok(response)
        }
        Ok(next) => {
            let mut response = next_response(&broker, next);
            // The interaction is over: its binding cookie goes.
            let mut removal =
                super::front::cookie(&broker, &interaction_cookie(&id), String::new(), 0);
            removal.make_removal();
            let _ = response.add_cookie(&removal);
            Ok(response)
        }
        Err(e) => Ok(flow_error(e, english).error_response()),
    }
}

fn message_text(english: bool, message: Message) -> (&'static str, String) {
    let text = match message {
        Message::InvalidPhone => t(english, "Số điện thoại không hợp lệ. Vui lòng nhập số di động Việt Nam, ví dụ 0905 123 456.", "That is not a valid phone number. Enter a Vietnamese mobile number, for example 0905 123 456.").to_string(),
        Message::NotMobile => t(english, "Chỉ nhận số điện thoại di động Việt Nam.", "Only Vietnamese mobile numbers can receive the code.").to_string(),
        Message::Sent => t(english, "Mã xác thực đã được gửi.", "The code has been sent.").to_string(),
        Message::TooSoon { seconds } => if english {
            format!("Please wait {seconds} seconds before asking for another code.")
        } else {
            format!("Vui lòng đợi {seconds} giây trước khi yêu cầu gửi lại mã.")
        },
        Message::Limited { seconds } => if english {
            format!("Too many codes were requested. Please try again in {} minutes.", seconds.div_ceil(60))
        } else {
            format!("Đã yêu cầu quá nhiều mã. Vui lòng thử lại sau {} phút.", seconds.div_ceil(60))
        },
        Message::SmsUnavailable => t(english, "Hiện không gửi được tin nhắn. Vui lòng thử lại sau ít phút.", "The text message could not be sent. Please try again in a few minutes.").to_string(),
        Message::WrongCode { attempts_left } => if english {
            format!("The code is not correct. {attempts_left} attempts left.")
        } else {
            format!("Mã xác thực không đúng. Bạn còn {attempts_left} lần thử.")
        },
        Message::CodeExpired => t(english, "Mã xác thực đã hết hạn. Vui lòng chọn Gửi lại mã.", "The code has expired. Please choose Send a new code.").to_string(),
        Message::Unavailable => t(english, "Hệ thống đang bận. Vui lòng thử lại.", "The service is busy. Please try again.").to_string(),
    };
    let kind = if matches!(message, Message::Sent) {
        "info"
    } else {
        "error"
    };
    (kind, text)
}

#[derive(Template)]
#[template(path = "phone.html")]
struct PhonePage<'a> {
    lang: &'a str,
    title: &'a str,
    intro: &'a str,
    message: Option<(&'a str, String)>,
    action: String,
    csrf: &'a str,
    phone_label: &'a str,
    phone_hint: &'a str,
    button: &'a str,
    other_lang: &'a str,
    other_lang_code: &'a str,
    other_lang_url: String,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage<'a> {
    lang: &'a str,
    title: &'a str,
    intro: String,
    message: Option<(&'a str, String)>,
    action: String,
    csrf: &'a str,
    code_label: &'a str,
    button: &'a str,
    resend: &'a str,
    change: &'a str,
    other_lang: &'a str,
    other_lang_code: &'a str,
    other_lang_url: String,
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailurePage<'a> {
    lang: &'a str,
    title: &'a str,
    intro: &'a str,
    fields_intro: &'a str,
    fields: Vec<&'a str>,
    check: &'a str,
    hotline_intro: &'a str,
    reference: String,
    continue_label: Option<&'a str>,
    action: String,
    csrf: &'a str,
    other_lang: &'a str,
    other_lang_code: &'a str,
    other_lang_url: String,
}

pub(super) fn render(view: &StepView, english: bool) -> HttpResponse {
    let lang = if english { "en" } else { "vi" };
    let action = format!("/login/{}", view.interaction_id);
    let (other_lang, other_lang_code) = if english {
        ("Tiếng Việt", "vi")
    } else {
        ("English", "en")
    };
    let other_lang_url = format!("{action}?lang={other_lang_code}");
    let message = view.message.map(|m| message_text(english, m));
    let body = match &view.step {
        InteractionStep::Phone => PhonePage {
            lang,
            title: t(english, "Cập nhật số điện thoại", "Your phone number"),
            intro: t(english, "Vui lòng cung cấp số điện thoại chính chủ. Hệ thống sẽ gửi mã xác thực (OTP) qua tin nhắn.", "Please give the mobile number registered in your own name. We will text you a one-time code."),
            message,
            action,
            csrf: &view.csrf,
            phone_label: t(english, "Số điện thoại", "Phone number"),
            phone_hint: t(english, "Ví dụ: 0905 123 456", "For example: 0905 123 456"),
            button: t(english, "Cập nhật", "Send the code"),
            other_lang,
            other_lang_code,
            other_lang_url,
        }
        .render(),
        InteractionStep::Code { phone, resend_in } => {
            let mut intro = if english {
                format!("Enter the 6-digit code we texted to {phone}. It is valid for 5 minutes.")
            } else {
                format!("Nhập mã OTP gồm 6 chữ số đã gửi tới số {phone}. Mã có hiệu lực trong 5 phút.")
            };
            if *resend_in > 0 {
                intro.push(' ');
                intro.push_str(&if english {
                    format!("You can ask for a new code in {resend_in} seconds.")
                } else {
                    format!("Bạn có thể yêu cầu gửi lại mã sau {resend_in} giây.")
                });
            }
            CodePage {
                lang,
                title: t(english, "Nhập mã xác thực", "Enter the code"),
                intro,
                message,
                action,
                csrf: &view.csrf,
                code_label: t(english, "Mã OTP", "One-time code"),
                button: t(english, "Gửi", "Confirm"),
                resend: t(english, "Gửi lại mã", "Send a new code"),
                change: t(english, "Đổi số điện thoại", "Use another number"),
                other_lang,
                other_lang_code,
                other_lang_url,
            }
            .render()
        }
        InteractionStep::Failure {
            reason,
            fields,
            can_continue,
        } => FailurePage {
            lang,
            title: t(english, "Chuẩn hoá không thành công", "Account standardisation did not succeed"),
            intro: failure_intro(english, *reason),
            fields_intro: t(english, "Thông tin chưa khớp:", "What did not match:"),
            fields: fields.iter().map(|f| label(english, *f)).collect(),
            check: t(english, "Vui lòng kiểm tra lại thông tin tài khoản đảm bảo chính xác: họ tên, số căn cước công dân, ngày sinh, số điện thoại. Thông tin cá nhân được thay đổi qua ứng dụng VNeID.", "Please check that your account details are correct: full name, citizen ID number, date of birth, phone number. Personal details are changed in the VNeID app."),
            hotline_intro: t(english, "Nếu vẫn không chuẩn hoá được, vui lòng liên hệ đường dây nóng:", "If it still does not work, please call a hotline:"),
            reference: if english {
                format!("Reference for the support desk: {}", short_ref(view))
            } else {
                format!("Mã tham chiếu khi liên hệ hỗ trợ: {}", short_ref(view))
            },
            continue_label: can_continue.then(|| t(english, "Tiếp tục", "Continue")),
            action,
            csrf: &view.csrf,
            other_lang,
            other_lang_code,
            other_lang_url,
        }
        .render(),
    };
    html(StatusCode::OK, body)
}

/// A short reference the citizen can read out to the support desk: the failure id's tail.
fn short_ref(view: &StepView) -> String {
    view.failure_ref.clone().unwrap_or_default()
}

fn failure_intro(english: bool, reason: Reason) -> &'static str {
    match reason {
        Reason::IdMismatch => t(english, "Tìm thấy tài khoản cũ có cùng số định danh của bạn, nhưng một số thông tin không khớp với thông tin trên VNeID, nên chưa thể liên kết.", "We found an earlier account with your ID number, but some details differ from your VNeID data, so it was not linked."),
        Reason::PhoneMismatch => t(english, "Tài khoản cũ đăng ký với số điện thoại bạn vừa xác thực có thông tin không khớp với thông tin trên VNeID, nên chưa thể liên kết.", "The earlier account registered with the phone you just confirmed has details that differ from your VNeID data, so it was not linked."),
        Reason::Ambiguous => t(english, "Có nhiều tài khoản cũ có thể là của bạn. Hệ thống không tự chọn; bộ phận hỗ trợ sẽ kiểm tra.", "Several earlier accounts could be yours. We do not guess; the support desk will check."),
        Reason::AppLinkRefused => t(english, "Không thể liên kết tài khoản ứng dụng với tài khoản định danh điện tử VNeID của bạn.", "Your app account could not be linked to your VNeID identity."),
        Reason::OtpExhausted => t(english, "Bạn đã nhập sai mã xác thực quá 5 lần. Vui lòng đăng nhập lại từ ứng dụng.", "The code was entered wrongly 5 times. Please sign in again from the application."),
    }
}

fn label(english: bool, field: Field) -> &'static str {
    let (vi, en) = field.label();
    t(english, vi, en)
}
