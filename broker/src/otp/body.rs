//! The JSON body of the HTTP gateway: a template whose placeholders are found once at start-up
//! and filled in JSON-escaped, so a message or a name can never break out of its string.

use anyhow::Context;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Phone,
    PhoneNational,
    PhoneDigits,
    Message,
    Secret,
}

const FIELDS: &[(&str, Field)] = &[
    ("{phone}", Field::Phone),
    ("{phone_national}", Field::PhoneNational),
    ("{phone_digits}", Field::PhoneDigits),
    ("{message}", Field::Message),
    ("{secret}", Field::Secret),
];

enum Part {
    Text(String),
    Field(Field),
}

pub(super) struct Values<'a> {
    pub phone: &'a str,
    pub phone_national: &'a str,
    pub message: &'a str,
    pub secret: &'a str,
}

/// The JSON body with its placeholders found once; any other `{` is JSON's own.
pub(super) struct BodyTemplate(Vec<Part>);

impl BodyTemplate {
    pub(super) fn parse(template: &str) -> anyhow::Result<Self> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            match FIELDS.iter().find(|(name, _)| rest.starts_with(name)) {
                Some((name, field)) => {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                    parts.push(Part::Field(*field));
                    rest = &rest[name.len()..];
                }
                None => {
                    text.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        parts.push(Part::Text(text));
        let template = Self(parts);
        anyhow::ensure!(
            template.uses(Field::Message),
            "sms.body_template must contain {{message}}"
        );
        anyhow::ensure!(
            [Field::Phone, Field::PhoneNational, Field::PhoneDigits]
                .into_iter()
                .any(|f| template.uses(f)),
            "sms.body_template must contain {{phone}}, {{phone_national}} or {{phone_digits}}"
        );
        Ok(template)
    }

    pub(super) fn uses(&self, field: Field) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, Part::Field(f) if *f == field))
    }

    /// Renders with values that need escaping; the result must be JSON.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        let body = self.render(&Values {
            phone: "+84900000000",
            phone_national: "0900000000",
            message: "Mã \"xác thực\" \\ 123456\n",
            secret: "s\"e\\c",
        });
        serde_json::from_str::<serde_json::Value>(&body)
            .context("sms.body_template is not JSON once its placeholders are filled in")?;
        Ok(())
    }

    pub(super) fn render(&self, values: &Values) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(field) => {
                    let value = match field {
                        Field::Phone => values.phone,
                        Field::PhoneNational => values.phone_national,
                        Field::PhoneDigits => values.phone.trim_start_matches('+'),
                        Field::Message => values.message,
                        Field::Secret => values.secret,
                    };
                    out.push_str(&json_escaped(value));
                }
            }
        }
        out
    }
}

/// `value` as the inside of a JSON string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_string()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(message: &'a str) -> Values<'a> {
        Values {
            phone: "+84905123456",
            phone_national: "0905123456",
            message,
            secret: "k3y",
        }
    }

    #[test]
    fn placeholders_are_filled_json_escaped() {
        let template = BodyTemplate::parse(
            r#"{"Phone": "{phone_national}", "To": "{phone_digits}", "E164": "{phone}", "Content": "{message}", "ApiKey": "{secret}", "Opts": {"x": 1}}"#,
        )
        .unwrap();
        let body = template.render(&values("Mã \"123456\"\n\\ {phone}"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["Phone"], "0905123456");
        assert_eq!(json["To"], "84905123456");
        assert_eq!(json["E164"], "+84905123456");
        // A value is never read as a placeholder again.
        assert_eq!(json["Content"], "Mã \"123456\"\n\\ {phone}");
        assert_eq!(json["ApiKey"], "k3y");
        assert_eq!(json["Opts"]["x"], 1);
    }

    #[test]
    fn a_template_that_is_not_json_once_filled_is_refused() {
        // The phone outside a string: fine as text, not as JSON.
        let template = BodyTemplate::parse(r#"{"to": {phone}, "text": "{message}"}"#).unwrap();
        assert!(template.check().is_err());
        let template = BodyTemplate::parse(r#"{"to": "{phone}", "text": "{message}"}"#).unwrap();
        assert!(template.check().is_ok());
    }

    #[test]
    fn a_template_needs_the_message_and_a_phone() {
        assert!(BodyTemplate::parse(r#"{"to": "{phone}"}"#).is_err());
        assert!(BodyTemplate::parse(r#"{"text": "{message}"}"#).is_err());
        assert!(BodyTemplate::parse(r#"{"to": "{phone_digits}", "t": "{message}"}"#).is_ok());
    }
}
