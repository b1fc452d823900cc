//! The revocation set and the released-claims cache across `broker serve` processes on one
//! PostgreSQL database (issue 9): a revocation committed through one instance is refused by the
//! others within the bound, a notification lost on the way is caught up when the listener
//! reconnects, losing Redis brings nothing back, and userinfo follows account changes made
//! elsewhere. Every instance's periodic catch-up read is set to an hour, so that only the
//! notification (or the catch-up after a reconnect) can make a test pass in time.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;

use crate::multi_instance::{claims, field, Cluster, NOTIFIED_WITHIN};
use crate::support::{jwt_parts, production_backends, Client};

async fn cluster(redis_url: &str) -> Cluster {
    Cluster::start(
        redis_url,
        2,
        &[("BROKER_TOKENS__REVOCATION_SWEEP_SECS", "3600".into())],
    )
    .await
}

/// A web client (with a secret, so it may introspect too) for `scope`.
async fn web_client(cluster: &Cluster, scope: &str) -> Client {
    let created: Value = cluster
        .http
        .post(cluster.url(0, "/admin/clients"))
        .bearer_auth(&cluster.operator_token)
        .json(&json!({
            "client_name": "Cổng dịch vụ công",
            "redirect_uris": ["https://rp.example/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_post",
            "scope": scope,
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("client json");
    Client {
        id: field(&created, "client_id").to_string(),
        secret: Some(field(&created, "client_secret").to_string()),
        redirect_uri: "https://rp.example/cb".into(),
    }
}

async fn revoke(cluster: &Cluster, instance: usize, client: &Client, token: &str) {
    let status = cluster
        .http
        .post(cluster.url(instance, "/revoke"))
        .form(&[
            ("token", token),
            ("client_id", client.id.as_str()),
            (
                "client_secret",
                client.secret.as_deref().unwrap_or_default(),
            ),
        ])
        .send()
        .await
        .expect("revoke")
        .status();
    assert_eq!(status, 200);
}

async fn userinfo_json(cluster: &Cluster, instance: usize, access_token: &str) -> Value {
    let response = cluster
        .http
        .get(cluster.url(instance, "/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(response.status(), 200);
    response.json().await.expect("userinfo json")
}

/// Polls userinfo at `instance` until `check` holds, for `within` at most.
async fn userinfo_becomes(
    cluster: &Cluster,
    instance: usize,
    access_token: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let body = userinfo_json(cluster, instance, access_token).await;
        if check(&body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "instance {} still answers {body} after {within:?}",
            instance + 1
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn sql(cluster: &Cluster) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&cluster.database.url())
        .await
        .expect("test database")
}

/// Deletes this cluster's Redis keys (never `FLUSHALL`: other tests share the server).
async fn lose_redis_keys(cluster: &Cluster, redis_url: &str) -> usize {
    let client = redis::Client::open(redis_url).expect("redis client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", cluster.key_prefix))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    for key in &keys {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_instance_is_refused_by_the_other_within_the_bound() {
    let Some((_, redis_url)) = production_backends() else {
        return;
    };
    let cluster = cluster(&redis_url).await;
    let client = web_client(&cluster, "openid profile").await;
    let tokens = cluster
        .login_with(&client, "", "openid profile", 0, 0)
        .await;
    let first = field(&tokens, "access_token").to_string();
    let (status, refreshed) = cluster
        .refresh(0, &client, field(&tokens, "refresh_token"))
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let second = field(&refreshed, "access_token").to_string();
    for i in 0..2 {
        for at in [&first, &second] {
            assert_eq!(cluster.userinfo(i, at).await, 200, "{}", cluster.logs());
        }
    }

    // One access token denied through the first instance: refused there at once, by the second
    // within the bound; its sibling of the same grant lives on.
    revoke(&cluster, 0, &client, &first).await;
    cluster.refused_within(0, &first, Duration::ZERO).await;
    let started = Instant::now();
    cluster.refused_within(1, &first, NOTIFIED_WITHIN).await;
    eprintln!(
        "access token denial reached instance 2 in {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.userinfo(1, &second).await, 200);

    // The grant revoked through the second instance (its refresh token): every access token of
    // it goes, at once there, within the bound at the first.
    revoke(&cluster, 1, &client, field(&refreshed, "refresh_token")).await;
    cluster.refused_within(1, &second, Duration::ZERO).await;
    let started = Instant::now();
    cluster.refused_within(0, &second, NOTIFIED_WITHIN).await;
    eprintln!(
        "grant revocation reached instance 1 in {:?}",
        started.elapsed()
    );

    // Redis loses everything of this cluster: nothing revoked comes back, anywhere.
    assert!(lose_redis_keys(&cluster, &redis_url).await > 0);
    for i in 0..2 {
        for at in [&first, &second] {
            cluster.refused_within(i, at, Duration::ZERO).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_caught_up_when_the_listener_reconnects() {
    let Some((_, redis_url)) = production_backends() else {
        return;
    };
    let cluster = cluster(&redis_url).await;
    let client = web_client(&cluster, "openid profile").await;
    let gid = |at: &str| jwt_parts(at).1["gid"].as_str().expect("gid").to_string();
    let tokens = cluster
        .login_with(&client, "", "openid profile", 0, 0)
        .await;
    let at = field(&tokens, "access_token").to_string();
    let probe = field(
        &cluster
            .login_with(&client, "", "openid profile", 0, 0)
            .await,
        "access_token",
    )
    .to_string();
    for token in [&at, &probe] {
        assert_eq!(cluster.userinfo(1, token).await, 200);
    }

    // The grant is revoked in SQL with triggers off: its notification is lost, as one would be
    // on a connection that broke. The second instance has no way to know yet.
    let mut conn = sql(&cluster).await;
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("triggers off");
    sqlx::query(
        "UPDATE grants SET revoked_at = EXTRACT(EPOCH FROM now())::BIGINT, \
         revoked_reason = 'test' WHERE id = $1",
    )
    .bind(gid(&at))
    .execute(&mut *tx)
    .await
    .expect("revoke in SQL");
    tx.commit().await.expect("commit");
    assert_eq!(
        cluster.userinfo(1, &at).await,
        200,
        "nothing told the instance (this test would prove nothing otherwise)"
    );

    // Every listener's connection ends; each instance reconnects and catches up.
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'broker-listener'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("terminate listeners");
    assert_eq!(ended, 2, "one listener per instance");

    // While it reconnects the instance reads SQL, which refuses the token too: wait until it
    // trusts its set again. It applies notifications only once it has caught up, so a
    // notification of its own (the probe's grant, live in SQL) reaching it says it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let payload = format!("g {} {}", jwt_parts(&probe).1["iat"], gid(&probe));
        sqlx::query("SELECT pg_notify('broker_revocations', $1)")
            .bind(&payload)
            .execute(&mut conn)
            .await
            .expect("notify");
        if cluster.userinfo(1, &probe).await == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "the listener did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Back on its set, the instance refuses the token whose notification was lost.
    cluster.refused_within(1, &at, Duration::ZERO).await;

    // The listener is back: a revocation through the first instance reaches the second again
    // by notification.
    let tokens = cluster
        .login_with(&client, "", "openid profile", 0, 0)
        .await;
    let at = field(&tokens, "access_token").to_string();
    assert_eq!(cluster.userinfo(1, &at).await, 200);
    revoke(&cluster, 0, &client, field(&tokens, "refresh_token")).await;
    cluster.refused_within(1, &at, NOTIFIED_WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_follows_a_phone_and_a_role_changed_elsewhere() {
    let Some((_, redis_url)) = production_backends() else {
        return;
    };
    let cluster = cluster(&redis_url).await;
    let client = web_client(&cluster, "openid profile phone roles").await;
    let tokens = cluster
        .login_with(&client, "", "openid profile phone roles", 0, 0)
        .await;
    let at = field(&tokens, "access_token").to_string();
    let account = claims(&tokens)["sub"].as_str().expect("sub").to_string();
    let before = userinfo_json(&cluster, 1, &at).await;
    assert_eq!(before["roles"], json!([]), "{before}");

    // Another writer (an instance, the CLI, an operator) changes the phone and approves a role.
    let mut conn = sql(&cluster).await;
    sqlx::query("UPDATE accounts SET phone = '+84905000111', phone_verified_at = 1 WHERE id = $1")
        .bind(&account)
        .execute(&mut conn)
        .await
        .expect("phone");
    userinfo_becomes(&cluster, 1, &at, NOTIFIED_WITHIN, |b| {
        b["phone_number"] == "+84905000111"
    })
    .await;

    sqlx::query(
        "INSERT INTO org_units (code, name, parent_code, level, updated_at) \
         VALUES ('000.00.01', 'Sở Y tế', NULL, 1, 0)",
    )
    .execute(&mut conn)
    .await
    .expect("org unit");
    sqlx::query(
        "INSERT INTO roles (id, account_id, category, org_code, position, app_roles, state, \
         created_at, updated_at) VALUES ('r1', $1, 'cong_chuc', '000.00.01', 'Chuyên viên', \
         '{}', 'approved', 0, 0)",
    )
    .bind(&account)
    .execute(&mut conn)
    .await
    .expect("role");
    userinfo_becomes(&cluster, 1, &at, NOTIFIED_WITHIN, |b| {
        b["roles"][0]["org_unit"]["name"] == "Sở Y tế"
    })
    .await;

    // The unit is renamed: every account's cached claims go.
    sqlx::query("UPDATE org_units SET name = 'Sở Y tế tỉnh' WHERE code = '000.00.01'")
        .execute(&mut conn)
        .await
        .expect("rename");
    userinfo_becomes(&cluster, 1, &at, NOTIFIED_WITHIN, |b| {
        b["roles"][0]["org_unit"]["name"] == "Sở Y tế tỉnh"
    })
    .await;
}
