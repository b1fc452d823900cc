//! The public JSON view of a client registration (RFC 7591 names), as the admin API and the
//! `broker clients` commands show it: never the secret hash, the secret only when just issued.

use serde_json::{json, Value};

use super::Client;

/// The registration as JSON; `secret` is the newly issued secret, shown this once.
pub fn client_view(client: &Client, secret: Option<&str>) -> Value {
    let mut out = serde_json::to_value(&client.metadata).unwrap_or_else(|_| json!({}));
    if let Some(obj) = out.as_object_mut() {
        obj.insert("client_id".into(), json!(client.client_id));
        obj.insert("client_id_issued_at".into(), json!(client.created_at));
        if let Some(s) = secret {
            obj.insert("client_secret".into(), json!(s));
            obj.insert("client_secret_expires_at".into(), json!(0));
        }
    }
    out
}
