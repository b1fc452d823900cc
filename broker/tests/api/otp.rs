//! SMS one-time codes inside the app: the dev gateway's page, and the app's session store
//! holding codes and caps (the login steps that use them are tested with those steps).

use broker::accounts::phone::normalise;
use broker::clock::Clock;
use broker::config::Settings;
use broker::otp::settings::GatewayKind;
use broker::otp::OtpRefused;

use crate::on_both_backends_with;
use crate::support::TestApp;

on_both_backends_with!(
    the_dev_gateway_shows_codes_at_dev_sms,
    |s: &mut Settings| s.sms.gateway = GatewayKind::Dev,
    |app: TestApp| async move {
        let empty = app.http.get(app.endpoint("/dev/sms")).send().await.unwrap();
        assert_eq!(empty.status(), 200);
        assert!(empty.text().await.unwrap().contains("id=\"no-sms\""));

        let to = normalise("0905123456").unwrap();
        let now = app.clock.now();
        app.broker
            .otp
            .send("login-1", &to, "account-1", None, now)
            .await
            .unwrap();
        let text = app.broker.dev_sms.as_ref().unwrap().last_to(&to).unwrap();
        let code: String = text
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .unwrap()
            .into();

        let page = app.http.get(app.endpoint("/dev/sms")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["cache-control"], "no-store");
        let page = page.text().await.unwrap();
        assert!(page.contains(&code), "{page}");
        assert!(page.contains(&to.masked()), "{page}");
        assert!(!page.contains("905123456"), "the full number: {page}");

        app.broker
            .otp
            .verify("login-1", &to, &code, now + 1)
            .await
            .unwrap();
        // The app's caps: the default 3 codes per phone per 15 minutes.
        for i in 2..=3 {
            app.broker
                .otp
                .send(&format!("login-{i}"), &to, "account-1", None, now)
                .await
                .unwrap();
        }
        assert!(matches!(
            app.broker
                .otp
                .send("login-4", &to, "account-1", None, now)
                .await,
            Err(OtpRefused::Limited { .. })
        ));
    }
);

on_both_backends_with!(
    without_the_dev_gateway_there_is_no_page_and_no_sms,
    |s: &mut Settings| s.sms.gateway = GatewayKind::None,
    |app: TestApp| async move {
        let page = app.http.get(app.endpoint("/dev/sms")).send().await.unwrap();
        assert_eq!(page.status(), 404);
        assert!(app.broker.dev_sms.is_none());
        let to = normalise("0905123456").unwrap();
        let now = app.clock.now();
        assert!(matches!(
            app.broker
                .otp
                .send("login-1", &to, "account-1", None, now)
                .await,
            Err(OtpRefused::Unavailable(_))
        ));
    }
);
