//! The dev SMS gateway: messages go to the log and to a small ring that `broker dev` shows at
//! `/dev/sms`. Configuration refuses it in production.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::gateway::{SmsError, SmsGateway};
use crate::accounts::phone::Phone;
use crate::clock::SharedClock;

/// One message the dev gateway did not send.
#[derive(Clone, Debug)]
pub struct DevSms {
    pub at: i64,
    pub to_masked: String,
    pub text: String,
    pub(super) to: String,
}

/// The last messages of the dev gateway, newest first, for `/dev/sms` and tests.
#[derive(Clone, Default)]
pub struct DevOutbox {
    messages: Arc<Mutex<VecDeque<DevSms>>>,
}

const DEV_OUTBOX_LEN: usize = 50;

impl DevOutbox {
    pub fn messages(&self) -> Vec<DevSms> {
        self.lock().iter().cloned().collect()
    }

    /// The text of the last message to `phone`.
    pub fn last_to(&self, phone: &Phone) -> Option<String> {
        self.lock()
            .iter()
            .find(|m| m.to == phone.e164())
            .map(|m| m.text.clone())
    }

    fn push(&self, message: DevSms) {
        let mut messages = self.lock();
        messages.push_front(message);
        messages.truncate(DEV_OUTBOX_LEN);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<DevSms>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct DevGateway {
    pub(super) outbox: DevOutbox,
    pub(super) clock: SharedClock,
}

#[async_trait]
impl SmsGateway for DevGateway {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        // The one log line that shows a code: this gateway exists to show it, and production
        // refuses it.
        tracing::info!(to = %to.masked(), text, "dev SMS gateway: not sent, shown at /dev/sms");
        self.outbox.push(DevSms {
            at: self.clock.now(),
            to_masked: to.masked(),
            text: text.to_string(),
            to: to.e164().to_string(),
        });
        Ok(())
    }
}
