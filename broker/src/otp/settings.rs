//! The `[sms]` settings (which gateway carries the messages) and the `[otp]` settings (the code's
//! rules and the limits against abuse). Their own file, like the upstream profile, so that
//! `config` only names them.

use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::config::Environment;
use crate::secret::Secret;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    /// No SMS at all: every send is answered "unavailable" (and logged).
    #[default]
    None,
    /// The message goes to the log and to `/dev/sms`; refused in production.
    Dev,
    /// A JSON POST to an SMS provider (`url`, `auth_header`, `body_template`).
    Http,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    pub gateway: GatewayKind,
    /// The provider's send endpoint (https in production).
    pub url: Option<Url>,
    /// The name of the one header that carries the provider credential, e.g. `Authorization`.
    pub auth_header: Option<String>,
    /// Its value (e.g. `Bearer …`, `Basic …`), inline or, better, from a file.
    pub auth_value: Option<Secret>,
    pub auth_value_file: Option<PathBuf>,
    /// The JSON body, with `{phone}` (E.164), `{phone_national}` (0…), `{phone_digits}` (E.164
    /// without `+`), `{message}` and `{secret}` (the auth value, for providers that want the key
    /// in the body) substituted JSON-escaped; meant to sit inside JSON strings. A TOML table (or
    /// an environment value that parses as one) is taken as that JSON object.
    #[serde(deserialize_with = "text_or_json")]
    pub body_template: String,
    /// A 2xx answer counts as sent only if its body contains this (providers that answer 200
    /// with an error code, e.g. eSMS's `"CodeResult":"100"`). Unset: any 2xx is success.
    pub success_body_contains: Option<String>,
    /// The whole request, connecting included, seconds.
    pub timeout_secs: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            gateway: GatewayKind::None,
            url: None,
            auth_header: None,
            auth_value: None,
            auth_value_file: None,
            body_template: r#"{"to": "{phone}", "text": "{message}"}"#.into(),
            success_body_contains: None,
            timeout_secs: 5,
        }
    }
}

// The template may hold a provider account id; settings are never logged, but be sure.
impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("gateway", &self.gateway)
            .field("url", &self.url.as_ref().map(Url::origin))
            .field("auth_header", &self.auth_header)
            .field("auth_value", &self.auth_value)
            .field("auth_value_file", &self.auth_value_file)
            .field("body_template", &"***")
            .field("success_body_contains", &self.success_body_contains)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl SmsSettings {
    /// What can be checked without reading secret files; `gateway::build` checks the rest
    /// (the template rendered with dummy values, the secret present).
    pub fn validate(&self, environment: Environment) -> anyhow::Result<()> {
        match self.gateway {
            GatewayKind::None => Ok(()),
            GatewayKind::Dev => {
                anyhow::ensure!(
                    environment != Environment::Production,
                    "the dev SMS gateway is refused in production: it writes one-time codes to \
                     the log (set sms.gateway = \"http\" with the provider's settings, or \
                     environment = \"development\")"
                );
                Ok(())
            }
            GatewayKind::Http => {
                let url = self.url.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("sms.gateway = \"http\" needs sms.url (BROKER_SMS__URL)")
                })?;
                anyhow::ensure!(
                    url.scheme() == "https"
                        || (environment != Environment::Production && url.scheme() == "http"),
                    "sms.url must be https in production"
                );
                anyhow::ensure!(
                    self.auth_header.is_none()
                        || self.auth_value.is_some()
                        || self.auth_value_file.is_some(),
                    "sms.auth_header is set without a value: set sms.auth_value_file"
                );
                anyhow::ensure!(
                    (1..=30).contains(&self.timeout_secs),
                    "sms.timeout_secs must be between 1 and 30"
                );
                Ok(())
            }
        }
    }
}

/// A string as it is; anything else (a table, a map parsed from an environment value that looks
/// like JSON) as its JSON text.
fn text_or_json<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrJson {
        Text(String),
        Json(serde_json::Value),
    }
    Ok(match TextOrJson::deserialize(deserializer)? {
        TextOrJson::Text(text) => text,
        TextOrJson::Json(value) => value.to_string(),
    })
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpSettings {
    /// The SMS text: `{code}` is the code, `{minutes}` its lifetime.
    pub message: String,
    pub code_ttl_secs: u64,
    /// Guesses per challenge, right or wrong, before it is dead.
    pub max_attempts: u32,
    /// How long a challenge waits before another code may be sent to it.
    pub resend_cooldown_secs: u64,
    /// Numbers outside Vietnam may receive codes (Vietnamese numbers must be mobile always).
    pub allow_foreign_numbers: bool,
    // Caps, counted in fixed windows shared by every instance; 0 switches one off.
    pub per_phone_per_15_min: u32,
    pub per_phone_per_day: u32,
    pub per_account_per_day: u32,
    pub per_address_per_hour: u32,
    /// Per 3-digit Vietnamese carrier prefix (090, 098, 032, …).
    pub per_prefix_per_day: u32,
    /// Per foreign country code, when foreign numbers are allowed.
    pub per_country_per_day: u32,
    pub global_per_day: u32,
}

impl Default for OtpSettings {
    fn default() -> Self {
        Self {
            message: "Mã xác thực Hue-S của bạn là {code}. Mã có hiệu lực {minutes} phút. \
                      Không chia sẻ mã này cho bất kỳ ai."
                .into(),
            code_ttl_secs: 300,
            max_attempts: 5,
            resend_cooldown_secs: 60,
            allow_foreign_numbers: false,
            per_phone_per_15_min: 3,
            per_phone_per_day: 5,
            per_account_per_day: 10,
            per_address_per_hour: 300,
            per_prefix_per_day: 3_000,
            per_country_per_day: 50,
            global_per_day: 20_000,
        }
    }
}

impl OtpSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.message.contains("{code}"),
            "otp.message must contain {{code}}"
        );
        anyhow::ensure!(
            (60..=900).contains(&self.code_ttl_secs),
            "otp.code_ttl_secs must be between 60 and 900"
        );
        anyhow::ensure!(
            (1..=10).contains(&self.max_attempts),
            "otp.max_attempts must be between 1 and 10"
        );
        anyhow::ensure!(
            self.resend_cooldown_secs >= 1 && self.resend_cooldown_secs < self.code_ttl_secs,
            "otp.resend_cooldown_secs must be at least 1 and shorter than otp.code_ttl_secs"
        );
        Ok(())
    }

    /// The SMS text for `code`.
    pub fn text(&self, code: &str) -> String {
        self.message
            .replace("{minutes}", &(self.code_ttl_secs / 60).to_string())
            .replace("{code}", code)
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Env, Format, Toml};
    use figment::Figment;

    use super::*;

    #[test]
    fn a_body_template_reads_from_toml_and_from_the_environment() {
        let template = r#"{"to": "{phone}", "text": "{message}", "n": 2}"#;
        let from_toml: SmsSettings = Figment::new()
            .merge(Toml::string(&format!("body_template = '{template}'")))
            .extract()
            .unwrap();
        assert_eq!(from_toml.body_template, template);
        // A unique prefix: no other test reads these variables.
        std::env::set_var("OTPSETTINGSTEST_BODY_TEMPLATE", template);
        let from_env: SmsSettings = Figment::new()
            .merge(Env::prefixed("OTPSETTINGSTEST_"))
            .extract()
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&from_env.body_template).unwrap();
        assert_eq!(
            parsed,
            serde_json::from_str::<serde_json::Value>(template).unwrap()
        );
    }

    #[test]
    fn defaults_are_valid() {
        OtpSettings::default().validate().unwrap();
        SmsSettings::default()
            .validate(Environment::Production)
            .unwrap();
        assert_eq!(
            OtpSettings::default().text("012345"),
            "Mã xác thực Hue-S của bạn là 012345. Mã có hiệu lực 5 phút. Không chia sẻ mã này \
             cho bất kỳ ai."
        );
    }

    #[test]
    fn impossible_code_rules_are_refused() {
        for bad in [
            OtpSettings {
                message: "no code here".into(),
                ..Default::default()
            },
            OtpSettings {
                max_attempts: 0,
                ..Default::default()
            },
            OtpSettings {
                resend_cooldown_secs: 300,
                ..Default::default()
            },
            OtpSettings {
                code_ttl_secs: 10,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
