//! Account standardisation end to end: the VNeID test citizens of fixtures/citizens-vneid.json
//! log in against the legacy accounts of fixtures/legacy-accounts.csv, through the failure page,
//! the phone step and the SMS code, on both storage pairs.

use std::path::Path;
use std::sync::Arc;

use broker::accounts::import::{Importer, Observer, Rejection, Summary};
use broker::accounts::legacy::LegacySealer;
use broker::clock::Clock;
use serde_json::Value;

use crate::on_both_backends;
use crate::support::browser::{
    code_request, last_code, location, query_of, step_page, test_phone, Browser, Pkce, StepPage,
};
use crate::support::{Client, TestApp};

/// The PKCE pair of RFC 7636 Appendix B: every login here uses it.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/legacy-accounts.csv"
);

struct Quiet;

impl Observer for Quiet {
    fn rejected(&mut self, _: &Rejection) {}
    fn progress(&mut self, _: u64, _: &Summary) {}
}

/// Imports a legacy file into the app's database as `broker import legacy-accounts` does.
async fn import(app: &TestApp, path: &Path) -> Summary {
    let importer = Importer::new(
        Arc::new(app.app_db.clone()),
        LegacySealer::new(app.master.clone()),
    );
    let format = broker::accounts::import::Format::of_path(path).expect("a known format");
    importer
        .run(path, format, app.clock.now(), &mut Quiet)
        .await
        .expect("import")
}

/// Imports legacy records given as CSV rows (after the fixture's header) from a file of their own.
async fn import_rows(app: &TestApp, rows: &str) -> Summary {
    let dir = std::env::temp_dir().join(format!("broker-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rows.csv");
    std::fs::write(
        &file,
        format!("source,legacy_id,full_name,birthdate,phone,personal_id,email\n{rows}"),
    )
    .unwrap();
    let summary = import(app, &file).await;
    std::fs::remove_dir_all(&dir).ok();
    summary
}

async fn import_fixture(app: &TestApp) {
    let summary = import(app, Path::new(FIXTURE)).await;
    // The harness seeded the records of the citizens who link by ID.
    assert_eq!(summary.inserted + summary.unchanged, 1980, "{summary:?}");
}

/// Where the browser stands after the VNeID login of `hint`, before any step.
async fn after_vneid(
    app: &TestApp,
    browser: &Browser,
    client: &Client,
    hint: &str,
) -> reqwest::Response {
    let pkce = Pkce {
        verifier: VERIFIER.into(),
        challenge: broker::crypto::sha256_b64url(VERIFIER),
    };
    let params = crate::support::browser::code_request(
        client,
        &pkce,
        &[
            ("scope", "openid profile phone"),
            ("state", "st"),
            ("login_hint", hint),
        ],
    );
    let first = browser.authorize(app, &params).await;
    browser.through_upstream(first).await
}

/// The step page the browser was sent to: its URL and HTML.
async fn page(app: &TestApp, browser: &Browser, response: reqwest::Response) -> (String, String) {
    match browser.step_page(app, response).await {
        Ok(page) => page,
        Err(elsewhere) => panic!(
            "expected a step page, got {} {}",
            elsewhere.status(),
            location(&elsewhere)
        ),
    }
}

fn is_client_redirect(response: &reqwest::Response, client: &Client) -> bool {
    response.status() == 303 && location(response).starts_with(&client.redirect_uri)
}

async fn phone_client(app: &TestApp) -> Client {
    app.client_with(serde_json::json!({
        "client_name": "hue-s",
        "redirect_uris": ["https://app.example/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "openid profile phone personal_id",
    }))
    .await
}

/// The account id behind a finished login (its ID token's `sub`) and its userinfo.
async fn finish(app: &TestApp, client: &Client, response: &reqwest::Response) -> (String, Value) {
    assert!(
        is_client_redirect(response, client),
        "to the client: {}",
        location(response)
    );
    let params = query_of(&location(response));
    let code = params.get("code").expect("a code");
    let (status, tokens) = app
        .token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &client.redirect_uri),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let (_, userinfo) = app
        .userinfo(tokens["access_token"].as_str().expect("access token"))
        .await;
    (userinfo["sub"].as_str().expect("sub").to_string(), userinfo)
}

async fn linked(app: &TestApp, account: &str) -> Vec<String> {
    let mut ids: Vec<String> = app
        .broker
        .provider
        .accounts
        .linked_records(account)
        .await
        .expect("links")
        .into_iter()
        .map(|r| r.legacy_id)
        .collect();
    ids.sort();
    ids
}

async fn event_types(app: &TestApp, account: &str) -> Vec<String> {
    let events = app
        .broker
        .provider
        .accounts
        .outbox()
        .of_subject(account)
        .await
        .expect("events");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "numbered per subject, no gap"
    );
    events
        .into_iter()
        .map(|e| {
            e.event_type
                .rsplit(':')
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

/// Gives a phone and types the code the dev gateway got.
async fn prove_phone(
    app: &TestApp,
    browser: &Browser,
    response: reqwest::Response,
    phone: &str,
) -> reqwest::Response {
    let (url, html) = page(app, browser, response).await;
    assert_eq!(step_page(&html), StepPage::Phone, "{html}");
    let sent = browser
        .post_step(&url, &html, &[("action", "phone"), ("phone", phone)])
        .await;
    let (url, html) = page(app, browser, sent).await;
    assert_eq!(step_page(&html), StepPage::Code, "{html}");
    let code = last_code(app, phone).expect("a code was sent");
    browser
        .post_step(&url, &html, &[("action", "code"), ("code", &code)])
        .await
}

on_both_backends!(
    legacy_records_link_by_id_number_with_name_and_birthdate,
    |app: TestApp| async move {
        import_fixture(&app).await;
        let client = phone_client(&app).await;
        // C01: ID, name and date agree; C02: the tone mark sits the old way in the record.
        for (hint, legacy) in [("C01", "HS1004606"), ("C02", "HS1004105")] {
            let browser = Browser::new();
            let back = after_vneid(&app, &browser, &client, hint).await;
            let (account, _) = finish(&app, &client, &back).await;
            assert_eq!(
                linked(&app, &account).await,
                vec![legacy.to_string()],
                "{hint}"
            );
            assert_eq!(
                event_types(&app, &account).await,
                ["account:created", "account:linked"],
                "{hint}"
            );
        }
        // C11: the record holds the old CMND VNeID also sends.
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C11").await;
        let (account, _) = finish(&app, &client, &back).await;
        assert_eq!(linked(&app, &account).await, ["HS1003711"]);
        // C12: one person, two apps: both records, one account.
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C12").await;
        let (account, _) = finish(&app, &client, &back).await;
        assert_eq!(
            linked(&app, &account).await,
            ["DVC-2024-000003", "HS1003700"]
        );
        assert_eq!(
            event_types(&app, &account).await,
            ["account:created", "account:linked", "account:linked"]
        );
        // C08: a child's pupil record shares the father's phone; only the child's is linked.
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C08").await;
        let (account, _) = finish(&app, &client, &back).await;
        assert_eq!(linked(&app, &account).await, ["EDU101500"]);
        // A second login changes nothing and asks nothing.
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C01").await;
        assert!(
            is_client_redirect(&back, &client),
            "no step on a later login"
        );
        assert_eq!(app.count("standardisation_failures").await, 0);
        // What an operator unlinks stays unlinked: the next login does not link it again.
        let (c01, _) = finish(&app, &client, &back).await;
        let unlink = app
            .http
            .delete(app.endpoint(&format!("/admin/accounts/{c01}/links/hue-s/HS1004606")))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap();
        assert_eq!(unlink.status(), 204);
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C01").await;
        assert!(is_client_redirect(&back, &client));
        assert!(
            linked(&app, &c01).await.is_empty(),
            "the operator's unlink holds"
        );
    }
);

on_both_backends!(
    a_record_imported_after_the_account_links_at_the_next_login,
    |app: TestApp| async move {
        import_fixture(&app).await;
        let client = phone_client(&app).await;
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C01").await;
        let (account, _) = finish(&app, &client, &back).await;
        assert_eq!(linked(&app, &account).await, ["HS1004606"]);
        // A returning login whose records are all the account's reads none (one statement
        // fewer); one imported since, with C01's ID number, name and date, must still link.
        let later = "dvc-hue,DVC-LATER-1,Võ Hữu Tài,1985-03-12,,046085690467,\n";
        assert_eq!(import_rows(&app, later).await.inserted, 1);
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C01").await;
        assert!(is_client_redirect(&back, &client), "no step");
        assert_eq!(
            linked(&app, &account).await,
            ["DVC-LATER-1", "HS1004606"],
            "the later record is linked"
        );
        // And one of someone else's with the number (another date) is a doubt again.
        let other = "dvc-hue,DVC-LATER-2,Võ Hữu Tài,1990-01-01,,046085690467,\n";
        assert_eq!(import_rows(&app, other).await.inserted, 1);
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C01").await;
        assert!(
            is_client_redirect(&back, &client),
            "a standardised account is not stopped"
        );
        assert_eq!(
            app.count("standardisation_failures").await,
            1,
            "support hears of it"
        );
        assert_eq!(linked(&app, &account).await, ["DVC-LATER-1", "HS1004606"]);
    }
);

on_both_backends!(
    an_id_match_with_another_birthdate_shows_the_failure_page_and_links_nothing,
    |app: TestApp| async move {
        import_fixture(&app).await;
        let client = phone_client(&app).await;
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C03").await;
        let (url, html) = page(&app, &browser, back).await;
        assert_eq!(step_page(&html), StepPage::Failure { can_continue: true });
        assert!(html.contains("Chuẩn hoá không thành công"), "{html}");
        assert!(
            html.contains("<li>Ngày sinh</li>"),
            "names the birth date: {html}"
        );
        assert!(!html.contains("<li>Họ và tên</li>"), "the name agrees");
        assert!(!html.contains("1979"), "never the other record's data");
        assert!(html.contains("href=\"tel:19000368\"") && html.contains("href=\"tel:19001075\""));
        let english = browser
            .get(&format!("{url}?lang=en"))
            .await
            .text()
            .await
            .unwrap();
        assert!(english.contains("Date of birth") && english.contains("lang=\"en\""));
        // Abandoned and tried again: the same case for support, under the same reference.
        let again = Browser::new();
        let back = after_vneid(&app, &again, &client, "C03").await;
        let (_, html_again) = page(&app, &again, back).await;
        let reference = |h: &str| {
            h.split("Mã tham chiếu khi liên hệ hỗ trợ: ")
                .nth(1)
                .map(|r| r.chars().take(8).collect::<String>())
        };
        assert!(reference(&html).is_some(), "{html}");
        assert_eq!(reference(&html), reference(&html_again));
        // Recorded for support, masked.
        let failures: Value = app
            .http
            .get(app.endpoint("/admin/standardisation-failures"))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(failures.as_array().map(Vec::len), Some(1), "{failures}");
        let failure = &failures[0];
        // The support desk finds it by the reference the citizen reads out.
        let reference = reference(&html).unwrap();
        let found: Value = app
            .http
            .get(app.endpoint(&format!(
                "/admin/standardisation-failures?reference={reference}"
            )))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found[0]["id"], failure["id"], "{found}");
        let malformed = app
            .http
            .get(app.endpoint("/admin/standardisation-failures?reference=%25"))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), 400, "a LIKE wildcard is no reference");
        assert_eq!(failure["reason"], "id_mismatch");
        assert_eq!(failure["fields"], serde_json::json!(["birthdate"]));
        assert_eq!(
            failure["compared"]["records"][0]["legacy_id"],
            "DVC-2019-000054"
        );
        let text = failure.to_string();
        assert!(
            !text.contains("046079379289") && !text.contains("Trần Văn Vinh"),
            "masked: {text}"
        );
        // Continue: the phone step, then an account of its own, unlinked.
        let next = browser
            .post_step(&url, &html, &[("action", "continue")])
            .await;
        let back = prove_phone(&app, &browser, next, "0905123456").await;
        let (account, userinfo) = finish(&app, &client, &back).await;
        assert!(linked(&app, &account).await.is_empty());
        assert_eq!(userinfo["phone_number"], "+84905123456");
        assert_eq!(userinfo["phone_number_verified"], true);
        // Support resolves it, naming the operator.
        let id = failure["id"].as_str().unwrap();
        let resolved = app
            .http
            .post(app.endpoint(&format!("/admin/standardisation-failures/{id}/resolve")))
            .bearer_auth(&app.operator_token)
            .json(&serde_json::json!({"resolution": "record has a typo; linked by hand"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resolved.status(), 204);
        let open: Value = app
            .http
            .get(app.endpoint("/admin/standardisation-failures?open=true"))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(open, serde_json::json!([]));
        // ...and links the record by hand; the account's events say so, in order.
        let link = app
            .http
            .post(app.endpoint(&format!("/admin/accounts/{account}/links")))
            .bearer_auth(&app.operator_token)
            .json(&serde_json::json!({"source": "dvc-hue", "legacy_id": "DVC-2019-000054"}))
            .send()
            .await
            .unwrap();
        assert_eq!(link.status(), 201);
        assert_eq!(linked(&app, &account).await, ["DVC-2019-000054"]);
        let unlink = app
            .http
            .delete(app.endpoint(&format!(
                "/admin/accounts/{account}/links/dvc-hue/DVC-2019-000054"
            )))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap();
        assert_eq!(unlink.status(), 204);
        assert_eq!(
            event_types(&app, &account).await,
            ["account:created", "account:linked", "account:unlinked"]
        );
    }
);

on_both_backends!(
    a_new_citizen_proves_a_phone_and_gets_an_account,
    |app: TestApp| async move {
        import_fixture(&app).await;
        let client = phone_client(&app).await;
        // C04: nobody by ID; C09: a foreigner without a 12-digit number; C10: an ID that fails
        // the structure check (kept, flagged, never a refusal).
        for hint in ["C04", "C09", "C10"] {
            let browser = Browser::new();
            let back = after_vneid(&app, &browser, &client, hint).await;
            let phone = test_phone(&app, hint);
            let back = prove_phone(&app, &browser, back, &phone).await;
            let (account, userinfo) = finish(&app, &client, &back).await;
            assert!(linked(&app, &account).await.is_empty(), "{hint}");
            assert_eq!(userinfo["phone_number_verified"], true, "{hint}");
            assert_eq!(
                event_types(&app, &account).await,
                ["account:created"],
                "{hint}"
            );
        }
        // C05: the record without an ID is reached through its proven phone.
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C05").await;
        let back = prove_phone(&app, &browser, back, "0819 282 851").await;
        let (account, _) = finish(&app, &client, &back).await;
        assert_eq!(linked(&app, &account).await, ["HS1003456"]);
        // Created and linked at once (one statement on PostgreSQL), numbered in order.
        assert_eq!(
            event_types(&app, &account).await,
            ["account:created", "account:linked"]
        );
    }
);

on_both_backends!(
    two_first_logins_at_the_code_step_end_in_one_account,
    |app: TestApp| async move {
        // A new citizen's login in two browsers (the phone's browser and the app's in-app
        // one), both at the code step before either finishes: neither looks for the account
        // again, so the second one's link is refused by the first's, and it logs in to that
        // account instead of creating a second or failing.
        import_fixture(&app).await;
        let client = phone_client(&app).await;
        let phone = test_phone(&app, "C04");
        let mut at_code = Vec::new();
        for _ in 0..2 {
            let browser = Browser::new();
            let back = after_vneid(&app, &browser, &client, "C04").await;
            let (url, html) = page(&app, &browser, back).await;
            let sent = browser
                .post_step(&url, &html, &[("action", "phone"), ("phone", &phone)])
                .await;
            let (url, html) = page(&app, &browser, sent).await;
            assert_eq!(step_page(&html), StepPage::Code, "{html}");
            let code = last_code(&app, &phone).expect("a code was sent");
            at_code.push((browser, url, html, code));
        }
        let mut accounts = Vec::new();
        for (browser, url, html, code) in &at_code {
            let back = browser
                .post_step(url, html, &[("action", "code"), ("code", code)])
                .await;
            accounts.push(finish(&app, &client, &back).await.0);
        }
        assert_eq!(
            accounts[0], accounts[1],
            "both logins reach the same account"
        );
        assert_eq!(app.count("accounts").await, 1);
        assert_eq!(event_types(&app, &accounts[0]).await, ["account:created"]);
    }
);

on_both_backends!(
    the_callback_answers_with_the_first_step_and_its_address_leads_back_to_it,
    |app: TestApp| async move {
        import_fixture(&app).await;
        let client = phone_client(&app).await;
        let phone = test_phone(&app, "C04");
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C04").await;
        // The phone page itself, at the callback's address: no redirect to it.
        assert_eq!(back.status(), 200);
        let callback = back.url().to_string();
        assert!(callback.contains("/callback/vneid?"), "{callback}");
        let (url, html) = page(&app, &browser, back).await;
        assert_eq!(step_page(&html), StepPage::Phone, "{html}");
        assert!(url.contains("/login/"), "its forms post to the step: {url}");
        // Loaded again (a reload, the back button), the callback's address leads to the step,
        // without a second exchange with VNeID (its code was used once).
        let again = browser.get(&callback).await;
        assert_eq!(again.status(), 303);
        assert_eq!(app.endpoint(&location(&again)), url);
        let (_, html) = page(&app, &browser, again).await;
        assert_eq!(step_page(&html), StepPage::Phone, "{html}");
        // Another browser with the address learns where the step is, and is refused there:
        // the step asks for its own binding cookie.
        let stranger = Browser::new();
        let theirs = stranger.get(&callback).await;
        assert_eq!(theirs.status(), 303);
        let refused = stranger.get(&app.endpoint(&location(&theirs))).await;
        assert_eq!(refused.status(), 400);
        let body = refused.text().await.unwrap();
        assert!(!body.contains("send-code"), "no step page for it: {body}");
        // An address whose state was never answered: the expired-login page, as before.
        let unknown = callback.replace("state=", "state=x");
        assert_eq!(browser.get(&unknown).await.status(), 400);
        // The first browser goes on from the step's address.
        let done = prove_phone(&app, &browser, browser.get(&url).await, &phone).await;
        let (account, _) = finish(&app, &client, &done).await;
        assert_eq!(event_types(&app, &account).await, ["account:created"]);
    }
);

on_both_backends!(
    a_proven_phone_never_links_a_record_that_disagrees,
    |app: TestApp| async move {
        import_fixture(&app).await;
        let client = phone_client(&app).await;
        // C04 proves the phone of a mother (her own ID: not C04) and her son (no ID, another
        // name and date): nothing links, the failure page names name and date.
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C04").await;
        let back = prove_phone(&app, &browser, back, "0962572669").await;
        let (url, html) = page(&app, &browser, back).await;
        assert_eq!(step_page(&html), StepPage::Failure { can_continue: true });
        assert!(
            html.contains("<li>Họ và tên</li>") && html.contains("<li>Ngày sinh</li>"),
            "{html}"
        );
        assert!(
            !html.contains("Lê Minh Khôi") && !html.contains("2012"),
            "never their data"
        );
        let back = browser
            .post_step(&url, &html, &[("action", "continue")])
            .await;
        let (account, userinfo) = finish(&app, &client, &back).await;
        assert!(linked(&app, &account).await.is_empty());
        assert_eq!(
            userinfo["phone_number"], "+84962572669",
            "the proven phone is kept"
        );
        assert_eq!(app.count("standardisation_failures").await, 1);
    }
);

on_both_backends!(
    two_records_that_both_agree_are_never_guessed_between,
    |app: TestApp| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.csv");
        std::fs::write(
            &path,
            "source,legacy_id,full_name,birthdate,phone,personal_id,email\n\
             hue-s,HS9000001,Huỳnh Tấn Lộc,1993-07-11,0905111222,,\n\
             hue-s,HS9000002,HUỲNH TẤN LỘC,1993,0905 111 222,,\n",
        )
        .unwrap();
        assert_eq!(import(&app, &path).await.inserted, 2);
        let client = phone_client(&app).await;
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C04").await;
        let back = prove_phone(&app, &browser, back, "0905111222").await;
        let (url, html) = page(&app, &browser, back).await;
        assert_eq!(step_page(&html), StepPage::Failure { can_continue: true });
        // A double tap: two requests at once, and only one of them gets the code.
        let (first, second) = tokio::join!(
            browser.post_step(&url, &html, &[("action", "continue")]),
            browser.post_step(&url, &html, &[("action", "continue")]),
        );
        let (back, other) = if is_client_redirect(&first, &client) {
            (first, second)
        } else {
            (second, first)
        };
        assert!(!is_client_redirect(&other, &client), "one code per login");
        let (account, _) = finish(&app, &client, &back).await;
        assert!(linked(&app, &account).await.is_empty(), "no guess");
        let failures = app
            .broker
            .provider
            .accounts
            .failures()
            .failures(true, 10)
            .await
            .unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].reason, "ambiguous");
        assert_eq!(failures[0].account_id.as_deref(), Some(account.as_str()));
    }
);

on_both_backends!(
    a_half_agreeing_record_beside_the_link_goes_to_support,
    |app: TestApp| async move {
        // C04 (Huỳnh Tấn Lộc, 1993-07-11) proves a phone that three records hold: hers, one with
        // her name and another date (perhaps hers, mistyped), and her mother's.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("family.csv");
        std::fs::write(
            &path,
            "source,legacy_id,full_name,birthdate,phone,personal_id,email\n\
             hue-s,HS9100001,Huỳnh Tấn Lộc,1993-07-11,0905333444,,\n\
             dvc-hue,DVC-9100002,Huỳnh Tấn Lộc,1993-11-07,0905333444,,\n\
             dvc-hue,DVC-9100003,Trương Thị Mai,1965-02-02,0905333444,,\n",
        )
        .unwrap();
        assert_eq!(import(&app, &path).await.inserted, 3);
        let client = phone_client(&app).await;
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C04").await;
        let back = prove_phone(&app, &browser, back, "0905333444").await;
        let (url, html) = page(&app, &browser, back).await;
        assert_eq!(step_page(&html), StepPage::Failure { can_continue: true });
        assert!(html.contains("<li>Ngày sinh</li>"), "{html}");
        assert!(!html.contains("<li>Họ và tên</li>"), "{html}");
        let back = browser
            .post_step(&url, &html, &[("action", "continue")])
            .await;
        let (account, _) = finish(&app, &client, &back).await;
        assert_eq!(
            linked(&app, &account).await,
            vec!["HS9100001".to_string()],
            "hers is linked; the doubt is not"
        );
        let failures = app
            .broker
            .provider
            .accounts
            .failures()
            .failures(true, 10)
            .await
            .unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].reason, "phone_mismatch");
        let compared = failures[0].compared.to_string();
        assert!(
            compared.contains("DVC-9100002") && !compared.contains("DVC-9100003"),
            "only the doubt, not the mother's record: {compared}"
        );
    }
);

on_both_backends!(
    one_time_codes_are_limited_and_expire,
    |app: TestApp| async move {
        let client = phone_client(&app).await;
        // The per-phone limit: three codes to one number in 15 minutes, whatever the login.
        let mut sent = 0;
        let mut refused = false;
        for _ in 0..4 {
            let browser = Browser::new();
            let back = after_vneid(&app, &browser, &client, "C09").await;
            let (url, html) = page(&app, &browser, back).await;
            browser
                .post_step(&url, &html, &[("action", "phone"), ("phone", "0781139069")])
                .await;
            let html = browser.get(&url).await.text().await.unwrap();
            if html.contains("quá nhiều mã") {
                refused = true;
                assert_eq!(
                    step_page(&html),
                    StepPage::Phone,
                    "still asking for a phone"
                );
                break;
            }
            assert_eq!(step_page(&html), StepPage::Code);
            sent += 1;
        }
        assert!(refused && sent == 3, "the per-phone limit ({sent} sent)");

        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C04").await;
        let (url, html) = page(&app, &browser, back).await;
        // A landline never gets a code.
        browser
            .post_step(
                &url,
                &html,
                &[("action", "phone"), ("phone", "0234 3822 222")],
            )
            .await;
        let html = browser.get(&url).await.text().await.unwrap();
        assert_eq!(step_page(&html), StepPage::Phone);
        assert!(html.contains("di động"), "{html}");
        // The phone moves the login on: the answer is the code page itself, not a redirect
        // to it, uncached, with the binding cookie renewed.
        let sent = browser
            .post_step(&url, &html, &[("action", "phone"), ("phone", "0781139068")])
            .await;
        assert_eq!(sent.status(), 200);
        assert_eq!(sent.url().as_str(), url);
        assert_eq!(sent.headers()["cache-control"], "no-store");
        assert!(sent
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("broker_login_")));
        let html = sent.text().await.unwrap();
        assert_eq!(step_page(&html), StepPage::Code);
        assert_eq!(
            step_page(&browser.get(&url).await.text().await.unwrap()),
            StepPage::Code,
            "the page's own address shows it too"
        );
        let first = last_code(&app, "0781139068").unwrap();
        // A resend too early is refused.
        browser
            .post_step(&url, &html, &[("action", "resend")])
            .await;
        let html = browser.get(&url).await.text().await.unwrap();
        assert!(html.contains("Vui lòng đợi"), "{html}");
        assert_eq!(last_code(&app, "0781139068").unwrap(), first);
        // An expired code is refused.
        app.clock.advance(301);
        browser
            .post_step(&url, &html, &[("action", "code"), ("code", &first)])
            .await;
        let html = browser.get(&url).await.text().await.unwrap();
        assert!(html.contains("hết hạn"), "{html}");
        // After the cooldown a new code comes. The challenge's attempts are not reset by it: the
        // expired code sent above counted one (the test clock moved, the stored code had not
        // yet reached its TTL), so three wrong ones count down and the fourth ends it.
        browser
            .post_step(&url, &html, &[("action", "resend")])
            .await;
        let mut html = browser.get(&url).await.text().await.unwrap();
        let code = last_code(&app, "0781139068").unwrap();
        assert_ne!(code, first, "a new code replaces the old one");
        let wrong = if code == "000000" { "111111" } else { "000000" };
        for left in (1..=3).rev() {
            // A wrong code leaves the login where it was: a redirect to the page, so that
            // reloading what the browser shows never sends the guess again.
            let answer = browser
                .post_step(&url, &html, &[("action", "code"), ("code", wrong)])
                .await;
            assert_eq!(answer.status(), 303);
            assert_eq!(
                Browser::step_url(&app, &answer).as_deref(),
                Some(url.as_str())
            );
            html = browser.get(&url).await.text().await.unwrap();
            assert!(html.contains(&format!("còn {left} lần")), "{left}: {html}");
        }
        browser
            .post_step(&url, &html, &[("action", "code"), ("code", wrong)])
            .await;
        let code_page = html;
        let html = browser.get(&url).await.text().await.unwrap();
        assert_eq!(
            step_page(&html),
            StepPage::Failure {
                can_continue: false
            },
            "{html}"
        );
        // The right code no longer helps (the code page's form, sent again).
        let after = browser
            .post_step(&url, &code_page, &[("action", "code"), ("code", &code)])
            .await;
        assert_eq!(
            Browser::step_url(&app, &after).as_deref(),
            Some(url.as_str())
        );
        assert_eq!(
            app.count("accounts").await,
            0,
            "no account without a proven phone"
        );
        let failures = app
            .broker
            .provider
            .accounts
            .failures()
            .failures(true, 10)
            .await
            .unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].reason, "otp_exhausted");
    }
);

on_both_backends!(
    a_failure_after_the_code_loses_nothing_and_the_retry_finishes,
    |app: TestApp| async move {
        let client = phone_client(&app).await;
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C04").await;
        let (url, html) = page(&app, &browser, back).await;
        browser
            .post_step(&url, &html, &[("action", "phone"), ("phone", "0781139068")])
            .await;
        let html = browser.get(&url).await.text().await.unwrap();
        let code = last_code(&app, "0781139068").unwrap();
        // The database loses its accounts table between "code verified" and "account created".
        sqlx::query("ALTER TABLE accounts RENAME TO accounts_away")
            .execute(&app.app_db.pool())
            .await
            .unwrap();
        let failed = browser
            .post_step(&url, &html, &[("action", "code"), ("code", &code)])
            .await;
        assert_eq!(failed.status(), 503, "a backend failure, not a wrong code");
        sqlx::query("ALTER TABLE accounts_away RENAME TO accounts")
            .execute(&app.app_db.pool())
            .await
            .unwrap();
        // The retry (the same form again) finishes without a new code.
        let back = browser
            .post_step(&url, &html, &[("action", "code"), ("code", &code)])
            .await;
        let (account, userinfo) = finish(&app, &client, &back).await;
        assert_eq!(userinfo["phone_number"], "+84781139068");
        assert_eq!(event_types(&app, &account).await, ["account:created"]);
    }
);

on_both_backends!(
    step_forms_need_their_csrf_token_and_their_browser,
    |app: TestApp| async move {
        let client = phone_client(&app).await;
        let browser = Browser::new();
        let back = after_vneid(&app, &browser, &client, "C04").await;
        let (url, _) = page(&app, &browser, back).await;
        let forged = browser
            .http
            .post(&url)
            .form(&[
                ("csrf", "x".repeat(43).as_str()),
                ("action", "phone"),
                ("phone", "0781139068"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
        assert!(
            last_code(&app, "0781139068").is_none(),
            "no code for a forged form"
        );
        // Another browser does not hold the binding cookie.
        let other = Browser::new();
        assert_eq!(other.get(&url).await.status(), 400);
    }
);

on_both_backends!(
    the_account_page_shows_the_profile_and_changes_the_phone_with_a_code,
    |app: TestApp| async move {
        // Without a session the page logs the person in through /authorize, as its own client.
        let browser = Browser::new();
        let first = browser.get(&app.endpoint("/account")).await;
        assert_eq!(first.status(), 303);
        let to = location(&first);
        assert!(
            to.contains("/authorize?") && to.contains("client_id=broker-account"),
            "{to}"
        );
        // The mock picks the citizen named by login_hint at once (a person would choose).
        let at_authorize = browser.get(&format!("{to}&login_hint=C01")).await;
        let back = browser.through_upstream(at_authorize).await;
        let back = browser.through_steps(&app, back, "0905000111").await;
        assert!(
            location(&back).contains("/account/callback?"),
            "{}",
            location(&back)
        );
        let done = browser.get(&location(&back)).await;
        assert_eq!(location(&done), "/account");
        let html = browser
            .get(&app.endpoint("/account"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("Võ Hữu Tài") && html.contains("HS1004606"),
            "{html}"
        );
        assert!(
            !html.contains("046085690467"),
            "the ID number is masked: {html}"
        );
        // A forged form changes nothing.
        let forged = browser
            .http
            .post(app.endpoint("/account/phone"))
            .form(&[
                ("csrf", "forged"),
                ("action", "send"),
                ("phone", "0905000222"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
        assert!(last_code(&app, "0905000222").is_none());
        // A new number, proven by a code.
        let csrf = crate::support::browser::form_value(&html, "csrf").unwrap();
        let sent = browser
            .http
            .post(app.endpoint("/account/phone"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("action", "send"),
                ("phone", "0905 000 222"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 200);
        let code = last_code(&app, "0905000222").expect("a code to the new number");
        let changed = browser
            .http
            .post(app.endpoint("/account/phone"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("action", "verify"),
                ("code", code.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200);
        let html = changed.text().await.unwrap();
        assert!(html.contains("0905000222 (đã xác thực)"), "{html}");
        use sqlx::Row;
        let account: String = sqlx::query("SELECT id FROM accounts WHERE phone = $1")
            .bind("+84905000222")
            .fetch_one(&app.app_db.pool())
            .await
            .unwrap()
            .get("id");
        let events = event_types(&app, &account).await;
        assert_eq!(
            events.last().map(String::as_str),
            Some("account:updated"),
            "{events:?}"
        );

        // Five wrong codes drop the change; the next code starts afresh (it is not dead for
        // the rest of the session), and a resend never buys more guesses.
        let post = |fields: Vec<(&'static str, String)>| {
            let browser = &browser;
            let app = &app;
            async move {
                let response = browser
                    .http
                    .post(app.endpoint("/account/phone"))
                    .form(&fields)
                    .send()
                    .await
                    .unwrap();
                response.text().await.unwrap()
            }
        };
        let send = || {
            post(vec![
                ("csrf", csrf.clone()),
                ("action", "send".into()),
                ("phone", "0905000333".into()),
            ])
        };
        let verify = |code: String| {
            post(vec![
                ("csrf", csrf.clone()),
                ("action", "verify".into()),
                ("code", code),
            ])
        };
        send().await;
        let right = last_code(&app, "0905000333").expect("a code to the third number");
        let wrong: String = right
            .chars()
            .map(|c| if c == '9' { '0' } else { (c as u8 + 1) as char })
            .collect();
        for _ in 0..4 {
            let html = verify(wrong.clone()).await;
            assert!(html.contains("Mã xác thực không đúng"), "{html}");
        }
        let html = verify(wrong.clone()).await;
        assert!(html.contains("Vui lòng yêu cầu mã mới"), "{html}");
        let html = verify(right).await;
        assert!(
            html.contains("Vui lòng nhập số điện thoại mới trước"),
            "a killed challenge's code does nothing: {html}"
        );
        let html = send().await;
        assert!(html.contains("Mã xác thực đã được gửi"), "{html}");
        let fresh = last_code(&app, "0905000333").expect("a new code after five wrong ones");
        let html = verify(fresh).await;
        assert!(html.contains("0905000333 (đã xác thực)"), "{html}");
    }
);

on_both_backends!(
    only_a_client_that_authenticates_may_name_a_legacy_source,
    |app: TestApp| async move {
        let response = app
            .http
            .post(app.endpoint("/admin/clients"))
            .bearer_auth(&app.operator_token)
            .json(&serde_json::json!({
                "client_name": "Hue-S (mobile)",
                "application_type": "native",
                "redirect_uris": ["vn.hue.s:/oauth"],
                "token_endpoint_auth_method": "none",
                "legacy_source": "hue-s",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            400,
            "a public client could name anyone's legacy account"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client_metadata");
    }
);

on_both_backends!(
    first_logins_of_one_identity_at_once_all_reach_the_client,
    |app: TestApp| async move {
        // A double tap, an app retrying: several first logins of C01 (whose legacy record holds
        // her ID number) racing. The one that finds the record linked by another must log in to
        // that account, not show the failure page.
        let client = app.confidential_client().await;
        let logins = (0..6).map(|_| {
            let (app, client) = (&app, &client);
            async move {
                let browser = Browser::new();
                let pkce = Pkce::new();
                let params = code_request(
                    client,
                    &pkce,
                    &[("scope", "openid"), ("state", "s"), ("login_hint", "C01")],
                );
                let first = browser.authorize(app, &params).await;
                let back = browser.through_upstream(first).await;
                location(&back)
            }
        });
        for target in futures_util::future::join_all(logins).await {
            assert!(
                target.starts_with(&client.redirect_uri),
                "a first login ended at {target}"
            );
        }
        assert_eq!(app.count("accounts").await, 1, "one account for C01");
    }
);
