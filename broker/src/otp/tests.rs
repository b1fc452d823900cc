use std::sync::Mutex;

use async_trait::async_trait;

use super::gateway::SmsError;
use super::*;
use crate::accounts::phone::normalise;
use crate::clock::Clock;
use crate::secret::Secret;
use crate::sessions::memory::MemoryStore;
use crate::sessions::redis::RedisStore;

// 2026-01-01 00:00 in Vietnam: every limit window starts here.
const T: i64 = 1_767_200_400;

/// Records what it would send; fails while `failing` is set.
#[derive(Default)]
struct Gateway {
    sent: Mutex<Vec<(String, String)>>,
    failing: std::sync::atomic::AtomicBool,
}

impl Gateway {
    /// The code in the last message to `to`.
    fn code_to(&self, to: &Phone) -> String {
        let sent = self.sent.lock().unwrap();
        let (_, text) = sent.iter().rev().find(|(p, _)| p == to.e164()).unwrap();
        let code: String = text
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .unwrap()
            .to_string();
        code
    }

    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

#[async_trait]
impl SmsGateway for Gateway {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        self.sent
            .lock()
            .unwrap()
            .push((to.e164().to_string(), text.to_string()));
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SmsError::NotConfigured);
        }
        Ok(())
    }
}

fn master() -> MasterKey {
    MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap()
}

fn phone(number: &str) -> Phone {
    normalise(number).unwrap()
}

/// Settings with every cap off, so that a test turns on only the one it is about.
fn no_caps() -> OtpSettings {
    OtpSettings {
        per_phone_per_15_min: 0,
        per_phone_per_day: 0,
        per_account_per_day: 0,
        per_address_per_hour: 0,
        per_prefix_per_day: 0,
        per_country_per_day: 0,
        global_per_day: 0,
        ..Default::default()
    }
}

fn otp_with(settings: OtpSettings) -> (Otp, Arc<Gateway>, Arc<MemoryStore>) {
    let gateway = Arc::new(Gateway::default());
    let store = Arc::new(MemoryStore::new());
    let otp = Otp::new(&settings, store.clone(), gateway.clone(), master()).unwrap();
    (otp, gateway, store)
}

fn address(ip: &str) -> Option<ClientKey> {
    Some(ClientKey::from_ip(ip.parse().unwrap()))
}

async fn send(otp: &Otp, challenge: &str, to: &Phone, now: i64) -> Result<Sent, OtpRefused> {
    otp.send(challenge, to, "account-1", address("10.0.0.1"), now)
        .await
}

// ---- codes -----------------------------------------------------------------------------------

#[test]
fn codes_are_six_digits_and_the_biased_tail_is_drawn_again() {
    let mut draws = vec![4_293_999_999, 4_294_000_000, u32::MAX]
        .into_iter()
        .rev();
    assert_eq!(code_from(|| draws.next().unwrap()), "999999");
    assert_eq!(code_from(|| 5), "000005");
}

#[test]
fn codes_are_uniform_over_every_digit() {
    const N: usize = 200_000;
    let mut counts = [[0usize; 10]; 6];
    for _ in 0..N {
        let code = new_code();
        assert_eq!(code.len(), 6);
        for (i, b) in code.bytes().enumerate() {
            counts[i][(b - b'0') as usize] += 1;
        }
    }
    // Each count is about N/10 = 20,000 with a standard deviation near 134: ±1,000 is 7 of them.
    for (position, digits) in counts.iter().enumerate() {
        for (digit, &n) in digits.iter().enumerate() {
            assert!(
                n.abs_diff(N / 10) < 1_000,
                "digit {digit} at {position}: {n}"
            );
        }
    }
}

#[tokio::test]
async fn the_store_holds_a_mac_not_the_code() {
    let (otp, gateway, store) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    let raw = store.get(&Keys::of("ch").record).await.unwrap().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let mut fields: Vec<&String> = json.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, ["expires_at", "mac", "sent_at", "state"]);
    let mac = json["mac"].as_str().unwrap();
    assert_eq!(b64url_decode(mac).unwrap().len(), 32);
    assert_ne!(mac, sha256_b64url(&code));
    assert_ne!(
        mac,
        b64url(&crate::crypto::sha256(&mac_input("ch", &to, &code)))
    );
    // Keyed: the same input under another master key gives another MAC.
    assert_ne!(mac, b64url(&master().otp_mac(&mac_input("ch", &to, &code))));
    assert!(otp
        .master
        .otp_mac_matches(&mac_input("ch", &to, &code), &b64url_decode(mac).unwrap()));
}

#[tokio::test]
async fn the_message_is_vietnamese_and_carries_the_code() {
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    let text = gateway.sent.lock().unwrap()[0].1.clone();
    assert_eq!(
        text,
        format!(
            "Mã xác thực Hue-S của bạn là {code}. Mã có hiệu lực 5 phút. Không chia sẻ mã này \
             cho bất kỳ ai."
        )
    );
}

// ---- verification ----------------------------------------------------------------------------

#[tokio::test]
async fn the_right_code_verifies_once() {
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    let sent = send(&otp, "ch", &to, T).await.unwrap();
    assert_eq!(
        sent,
        Sent {
            expires_at: T + 300,
            resend_at: T + 60
        }
    );
    let code = gateway.code_to(&to);
    otp.verify("ch", &to, &code, T + 10).await.unwrap();
    assert!(matches!(
        otp.verify("ch", &to, &code, T + 11).await,
        Err(OtpFailure::Expired)
    ));
}

/// The caller's write rides on the code's use: a write whose key changed meanwhile leaves the
/// code unused (the login that moved on may still use it), and the right code with a write that
/// holds makes both at once.
#[tokio::test]
async fn a_right_code_and_the_callers_write_happen_together_or_not_at_all() {
    let (otp, gateway, store) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    let ttl = Duration::from_secs(60);
    store.put("login", b"moved on", ttl).await.unwrap();
    let stale = Swap {
        key: "login",
        expected: Some(b"as read"),
        value: b"proven",
        ttl,
    };
    assert_eq!(
        otp.verify_with("ch", &to, &code, T + 10, Some(stale))
            .await
            .unwrap(),
        Verified::Superseded
    );
    assert_eq!(
        store.get("login").await.unwrap().as_deref(),
        Some(&b"moved on"[..])
    );
    let fresh = Swap {
        expected: Some(b"moved on"),
        ..stale
    };
    assert_eq!(
        otp.verify_with("ch", &to, &code, T + 11, Some(fresh))
            .await
            .unwrap(),
        Verified::Used
    );
    assert_eq!(
        store.get("login").await.unwrap().as_deref(),
        Some(&b"proven"[..])
    );
    // Used: the same code again is refused, and the write is not made again.
    store.put("login", b"moved on", ttl).await.unwrap();
    assert!(matches!(
        otp.verify_with("ch", &to, &code, T + 12, Some(fresh)).await,
        Err(OtpFailure::Expired)
    ));
    assert_eq!(
        store.get("login").await.unwrap().as_deref(),
        Some(&b"moved on"[..])
    );
}

#[tokio::test]
async fn a_code_typed_with_spaces_verifies() {
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    let typed = format!(" {} {} ", &code[..3], &code[3..]);
    otp.verify("ch", &to, &typed, T + 10).await.unwrap();
}

#[tokio::test]
async fn a_code_expires_after_its_lifetime() {
    let clock = crate::clock::ManualClock::new(T);
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, clock.now()).await.unwrap();
    let code = gateway.code_to(&to);
    clock.advance(300);
    assert!(matches!(
        otp.verify("ch", &to, &code, clock.now()).await,
        Err(OtpFailure::Expired)
    ));
    assert!(matches!(
        otp.verify("unknown", &to, &code, clock.now()).await,
        Err(OtpFailure::Expired)
    ));
}

#[tokio::test]
async fn five_wrong_guesses_kill_the_challenge() {
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (1..=4).rev() {
        match otp.verify("ch", &to, wrong, T + 1).await {
            Err(OtpFailure::Wrong { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        otp.verify("ch", &to, wrong, T + 1).await,
        Err(OtpFailure::Exhausted)
    ));
    // Dead: the right code no longer works, and no new code is sent for this challenge.
    assert!(matches!(
        otp.verify("ch", &to, &code, T + 2).await,
        Err(OtpFailure::Exhausted)
    ));
    assert!(matches!(
        send(&otp, "ch", &to, T + 120).await,
        Err(OtpRefused::Exhausted)
    ));
    // A new challenge (a new login) gets a code.
    send(&otp, "ch2", &to, T + 120).await.unwrap();
}

#[tokio::test]
async fn malformed_codes_count_as_guesses() {
    let (otp, _, _) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    for (typed, left) in [("12345", 4), ("12a456", 3), ("", 2), ("1234567", 1)] {
        match otp.verify("ch", &to, typed, T + 1).await {
            Err(OtpFailure::Wrong { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("{typed:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn parallel_guesses_cannot_exceed_the_attempts() {
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let guesses: Vec<_> = (0..30)
        .map(|_| {
            let (otp, to) = (otp.clone(), to.clone());
            tokio::spawn(async move { otp.verify("ch", &to, wrong, T + 1).await })
        })
        .collect();
    let mut wrong_answers = 0;
    for guess in guesses {
        if let Err(OtpFailure::Wrong { .. }) = guess.await.unwrap() {
            wrong_answers += 1;
        }
    }
    assert_eq!(wrong_answers, 4);
    assert!(matches!(
        otp.verify("ch", &to, &code, T + 2).await,
        Err(OtpFailure::Exhausted)
    ));
}

#[tokio::test]
async fn a_code_sent_to_one_phone_never_verifies_another() {
    let (otp, gateway, _) = otp_with(no_caps());
    let (a, b) = (phone("0905123456"), phone("0987654321"));
    send(&otp, "ch", &a, T).await.unwrap();
    let code = gateway.code_to(&a);
    assert!(matches!(
        otp.verify("ch", &b, &code, T + 1).await,
        Err(OtpFailure::Wrong { attempts_left: 4 })
    ));
    // Nor another challenge's.
    send(&otp, "other", &a, T).await.unwrap();
    let other = gateway.code_to(&a);
    if other != code {
        assert!(matches!(
            otp.verify("ch", &a, &other, T + 1).await,
            Err(OtpFailure::Wrong { attempts_left: 3 })
        ));
    }
    otp.verify("ch", &a, &code, T + 2).await.unwrap();
}

// ---- resending -------------------------------------------------------------------------------

#[tokio::test]
async fn a_resend_waits_for_the_cooldown_and_keeps_the_attempts() {
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    send(&otp, "ch", &to, T).await.unwrap();
    let first = gateway.code_to(&to);
    let wrong = if first == "000000" {
        "000001"
    } else {
        "000000"
    };
    assert!(matches!(
        otp.verify("ch", &to, wrong, T + 5).await,
        Err(OtpFailure::Wrong { attempts_left: 4 })
    ));
    match send(&otp, "ch", &to, T + 45).await {
        Err(OtpRefused::TooSoon { retry_after }) => assert_eq!(retry_after, 15),
        other => panic!("{other:?}"),
    }
    assert_eq!(gateway.count(), 1);
    let sent = send(&otp, "ch", &to, T + 60).await.unwrap();
    assert_eq!(sent.resend_at, T + 120);
    let second = gateway.code_to(&to);
    if second != first {
        // The new code replaced the old one; the guess before the resend still counts.
        assert!(matches!(
            otp.verify("ch", &to, &first, T + 61).await,
            Err(OtpFailure::Wrong { attempts_left: 3 })
        ));
    }
    otp.verify("ch", &to, &second, T + 62).await.unwrap();
}

#[tokio::test]
async fn parallel_resends_send_one_code() {
    let (otp, gateway, _) = otp_with(no_caps());
    let to = phone("0905123456");
    let sends: Vec<_> = (0..10)
        .map(|_| {
            let (otp, to) = (otp.clone(), to.clone());
            tokio::spawn(async move { send(&otp, "ch", &to, T).await })
        })
        .collect();
    let mut sent = 0;
    for s in sends {
        match s.await.unwrap() {
            Ok(_) => sent += 1,
            Err(OtpRefused::TooSoon { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((sent, gateway.count()), (1, 1));
}

// ---- who may receive codes -------------------------------------------------------------------

#[tokio::test]
async fn only_vietnamese_mobiles_unless_foreign_numbers_are_allowed() {
    let (otp, gateway, _) = otp_with(no_caps());
    let landline = phone("02343822222");
    let foreign = phone("+33612345678");
    assert!(matches!(
        send(&otp, "a", &landline, T).await,
        Err(OtpRefused::NotMobile)
    ));
    assert!(matches!(
        send(&otp, "b", &foreign, T).await,
        Err(OtpRefused::NotMobile)
    ));
    assert_eq!(gateway.count(), 0);

    let (otp, _, _) = otp_with(OtpSettings {
        allow_foreign_numbers: true,
        ..no_caps()
    });
    send(&otp, "b", &foreign, T).await.unwrap();
    assert!(matches!(
        send(&otp, "a", &landline, T).await,
        Err(OtpRefused::NotMobile)
    ));
}

// ---- gateway failures ------------------------------------------------------------------------

#[tokio::test]
async fn a_gateway_failure_is_unavailable_and_spends_the_quota() {
    let (otp, gateway, _) = otp_with(OtpSettings {
        per_phone_per_15_min: 2,
        ..no_caps()
    });
    let to = phone("0905123456");
    gateway
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        send(&otp, "ch", &to, T).await,
        Err(OtpRefused::Unavailable(_))
    ));
    // A late delivery still works: the code was kept.
    let late = gateway.code_to(&to);
    otp.verify("ch", &to, &late, T + 1).await.unwrap();
    // And the failure counted against the phone.
    gateway
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    send(&otp, "ch2", &to, T + 2).await.unwrap();
    assert!(matches!(
        send(&otp, "ch3", &to, T + 3).await,
        Err(OtpRefused::Limited { .. })
    ));
}

// ---- caps ------------------------------------------------------------------------------------

/// Sends to `phones` from `accounts` at `addresses` (cycled) until one is refused; returns
/// how many were sent and the refusal.
async fn send_until_refused(
    otp: &Otp,
    phones: &[&str],
    accounts: &[&str],
    addresses: &[&str],
    now: i64,
) -> (usize, OtpRefused) {
    for i in 0..1_000 {
        let to = phone(phones[i % phones.len()]);
        let result = otp
            .send(
                &format!("ch-{now}-{i}"),
                &to,
                accounts[i % accounts.len()],
                address(addresses[i % addresses.len()]),
                now,
            )
            .await;
        if let Err(e) = result {
            return (i, e);
        }
    }
    panic!("nothing was refused");
}

fn limited(refusal: &OtpRefused) -> u64 {
    match refusal {
        OtpRefused::Limited { retry_after } => *retry_after,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn per_phone_cap_per_quarter_hour() {
    let (otp, _, _) = otp_with(OtpSettings {
        per_phone_per_15_min: 3,
        ..no_caps()
    });
    let (sent, refusal) =
        send_until_refused(&otp, &["0905123456"], &["a"], &["10.0.0.1"], T + 100).await;
    assert_eq!((sent, limited(&refusal)), (3, 800));
    // Another phone is not affected; the next window is open again.
    send(&otp, "x", &phone("0905123457"), T + 100)
        .await
        .unwrap();
    send(&otp, "y", &phone("0905123456"), T + 900)
        .await
        .unwrap();
}

#[tokio::test]
async fn per_phone_cap_per_day() {
    let (otp, _, _) = otp_with(OtpSettings {
        per_phone_per_day: 5,
        ..no_caps()
    });
    let (sent, refusal) =
        send_until_refused(&otp, &["0905123456"], &["a"], &["10.0.0.1"], T + 3600).await;
    assert_eq!((sent, limited(&refusal)), (5, 86_400 - 3600));
    send(&otp, "next-day", &phone("0905123456"), T + 86_400)
        .await
        .unwrap();
}

#[tokio::test]
async fn per_account_cap() {
    let (otp, _, _) = otp_with(OtpSettings {
        per_account_per_day: 10,
        ..no_caps()
    });
    let phones = ["0905123451", "0905123452", "0905123453"];
    let (sent, refusal) =
        send_until_refused(&otp, &phones, &["acct"], &["10.0.0.1", "10.0.0.2"], T).await;
    assert_eq!((sent, limited(&refusal)), (10, 86_400));
    otp.send("other", &phone(phones[0]), "another", None, T)
        .await
        .unwrap();
}

#[tokio::test]
async fn per_address_cap_counts_ipv6_by_its_64() {
    let (otp, _, _) = otp_with(OtpSettings {
        per_address_per_hour: 4,
        ..no_caps()
    });
    let phones = ["0905123451", "0905123452"];
    let addresses = ["2001:db8:1:2::1", "2001:db8:1:2::ffff"];
    let (sent, refusal) =
        send_until_refused(&otp, &phones, &["a", "b", "c"], &addresses, T + 60).await;
    assert_eq!((sent, limited(&refusal)), (4, 3540));
    otp.send(
        "x",
        &phone(phones[0]),
        "a",
        address("2001:db8:1:3::1"),
        T + 60,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn per_prefix_cap() {
    let (otp, _, _) = otp_with(OtpSettings {
        per_prefix_per_day: 3,
        ..no_caps()
    });
    let phones = ["0905000001", "0905000002", "0906000003", "0907000004"];
    let (sent, refusal) = send_until_refused(&otp, &phones, &["a", "b"], &["10.0.0.1"], T).await;
    assert_eq!((sent, limited(&refusal)), (3, 86_400));
    send(&otp, "x", &phone("0987000001"), T).await.unwrap();
}

#[tokio::test]
async fn per_country_cap_for_foreign_numbers() {
    let (otp, _, _) = otp_with(OtpSettings {
        allow_foreign_numbers: true,
        per_country_per_day: 2,
        ..no_caps()
    });
    let phones = ["+33612345671", "+33612345672", "+33612345673"];
    let (sent, refusal) = send_until_refused(&otp, &phones, &["a"], &["10.0.0.1"], T).await;
    assert_eq!((sent, limited(&refusal)), (2, 86_400));
    send(&otp, "vn", &phone("0905123456"), T).await.unwrap();
}

#[tokio::test]
async fn global_cap() {
    let (otp, _, _) = otp_with(OtpSettings {
        global_per_day: 6,
        ..no_caps()
    });
    let phones = ["0905000001", "0987000002", "0333000003"];
    let (sent, refusal) =
        send_until_refused(&otp, &phones, &["a", "b"], &["10.0.0.1", "10.0.0.2"], T).await;
    assert_eq!((sent, limited(&refusal)), (6, 86_400));
}

#[tokio::test]
async fn hammering_one_phone_does_not_spend_the_global_cap() {
    let (otp, _, _) = otp_with(OtpSettings {
        per_phone_per_15_min: 1,
        global_per_day: 2,
        ..no_caps()
    });
    let victim = phone("0905123456");
    send(&otp, "a", &victim, T).await.unwrap();
    for i in 0..20 {
        assert!(matches!(
            send(&otp, &format!("b{i}"), &victim, T).await,
            Err(OtpRefused::Limited { .. })
        ));
    }
    send(&otp, "c", &phone("0987654321"), T).await.unwrap();
}

#[tokio::test]
async fn the_default_caps_hold() {
    let (otp, _, _) = otp_with(OtpSettings::default());
    let (sent, _) = send_until_refused(&otp, &["0905123456"], &["a"], &["10.0.0.1"], T).await;
    assert_eq!(sent, 3);
}

// ---- two instances on one Redis --------------------------------------------------------------

async fn redis_pair() -> Option<(Otp, Otp, Arc<Gateway>)> {
    let Ok(url) = std::env::var("BROKER_TEST_REDIS_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must test Redis: set BROKER_TEST_REDIS_URL"
        );
        eprintln!("NOT RUN: two OTP instances on Redis (set BROKER_TEST_REDIS_URL)");
        return None;
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let master = master();
    let gateway = Arc::new(Gateway::default());
    let settings = OtpSettings {
        per_phone_per_15_min: 3,
        ..no_caps()
    };
    let mut pair = Vec::new();
    for _ in 0..2 {
        let store = Arc::new(RedisStore::connect(&url, &prefix).await.unwrap());
        pair.push(Otp::new(&settings, store, gateway.clone(), master.clone()).unwrap());
    }
    let b = pair.pop()?;
    let a = pair.pop()?;
    Some((a, b, gateway))
}

#[tokio::test]
async fn two_instances_on_redis_share_codes_attempts_and_caps() {
    let Some((a, b, gateway)) = redis_pair().await else {
        return;
    };
    let to = phone("0905123456");
    // Sent by one, verified by the other.
    send(&a, "ch1", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    b.verify("ch1", &to, &code, T + 1).await.unwrap();
    assert!(matches!(
        a.verify("ch1", &to, &code, T + 2).await,
        Err(OtpFailure::Expired)
    ));
    // The resend cooldown is shared, and still counts from the send after the code was used.
    assert!(matches!(
        send(&b, "ch1", &to, T + 1).await,
        Err(OtpRefused::TooSoon { retry_after: 59 })
    ));
    send(&b, "ch1", &to, T + 60).await.unwrap();
    assert!(matches!(
        send(&a, "ch1", &to, T + 61).await,
        Err(OtpRefused::TooSoon { .. })
    ));
    // The per-phone cap is shared: 2 sent so far, one more on either, then refused on both.
    send(&a, "ch2", &to, T + 62).await.unwrap();
    assert!(matches!(
        send(&b, "ch3", &to, T + 63).await,
        Err(OtpRefused::Limited { .. })
    ));
    assert!(matches!(
        send(&a, "ch4", &to, T + 63).await,
        Err(OtpRefused::Limited { .. })
    ));
}

#[tokio::test]
async fn parallel_guesses_on_two_instances_cannot_exceed_the_attempts() {
    let Some((a, b, gateway)) = redis_pair().await else {
        return;
    };
    let to = phone("0905123456");
    send(&a, "ch", &to, T).await.unwrap();
    let code = gateway.code_to(&to);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let otp = if i % 2 == 0 { a.clone() } else { b.clone() };
            let to = to.clone();
            tokio::spawn(async move { otp.verify("ch", &to, wrong, T + 1).await })
        })
        .collect();
    let mut wrong_answers = 0;
    for guess in guesses {
        if let Err(OtpFailure::Wrong { .. }) = guess.await.unwrap() {
            wrong_answers += 1;
        }
    }
    assert_eq!(wrong_answers, 4);
    assert!(matches!(
        b.verify("ch", &to, &code, T + 2).await,
        Err(OtpFailure::Exhausted)
    ));
}
