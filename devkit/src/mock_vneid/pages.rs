//! The mock's HTML pages (askama escapes every interpolated value).

use askama::Template;

use super::authorize::{ValidRequest, DENY_HINT};
use super::citizens::Citizen;

#[derive(Template)]
#[template(path = "mock_vneid/choose.html")]
pub(crate) struct ChoosePage<'a> {
    action: String,
    client_id: &'a str,
    scope: &'a str,
    acr_values: Option<&'a str>,
    hidden: Vec<(&'static str, String)>,
    citizens: &'a [Citizen],
    deny: &'static str,
}

impl<'a> ChoosePage<'a> {
    pub(crate) fn new(action: String, request: &'a ValidRequest, citizens: &'a [Citizen]) -> Self {
        Self {
            action,
            client_id: &request.client_id,
            scope: &request.scope,
            acr_values: request.acr_values.as_deref(),
            hidden: request.hidden_fields(),
            citizens,
            deny: DENY_HINT,
        }
    }
}

#[derive(Template)]
#[template(path = "mock_vneid/error.html")]
pub(crate) struct ErrorPage<'a> {
    pub(crate) message: &'a str,
}
