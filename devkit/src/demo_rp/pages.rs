//! The demo app's HTML pages (askama escapes every interpolated value, JSON included).

use askama::Template;

#[derive(Template)]
#[template(path = "demo_rp/home.html")]
pub(crate) struct HomePage;

#[derive(Template)]
#[template(path = "demo_rp/result.html")]
pub(crate) struct ResultPage {
    pub(crate) id_token_claims: String,
    pub(crate) userinfo: String,
}

#[derive(Template)]
#[template(path = "demo_rp/error.html")]
pub(crate) struct ErrorPage {
    pub(crate) message: String,
}
