//! `broker import legacy-accounts` through the real binary, on SQLite and on PostgreSQL: the
//! fixture's 20 malformed lines are refused and its hard cases stored as fixtures/README.md
//! says; a re-run changes nothing; a changed row updates without touching its link; a generated
//! JSON Lines file is refused exactly on its manifest's malformed lines; no ID number appears in
//! clear in the output or the database.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use broker::accounts::legacy::{IdKind, LegacyRecord, LegacySealer, LegacyStore};
use broker::accounts::names::names_agree;
use broker::crypto::MasterKey;
use broker::store::Db;
use broker::transaction::Transactions;
use sqlx::Row;

use crate::support::{fresh_postgres_database, TestDatabase};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/legacy-accounts.csv"
);
const GENERATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/gen_legacy.py");

/// The malformed lines of fixtures/README.md.
const MALFORMED: [u64; 20] = [
    43, 382, 485, 581, 663, 670, 673, 910, 1001, 1089, 1117, 1223, 1332, 1337, 1394, 1602, 1618,
    1620, 1847, 1908,
];

struct Import {
    dir: tempfile::TempDir,
    url: String,
    master: String,
    _database: Option<TestDatabase>,
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn rejected_lines(&self) -> BTreeSet<u64> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.split(':').next()?.parse().ok())
            .collect()
    }

    fn summary(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("read "))
            .unwrap_or_default()
    }
}

impl Import {
    async fn on(postgres: bool) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, database) = if postgres {
            if std::env::var("BROKER_TEST_DATABASE_URL").is_err() {
                assert!(
                    std::env::var("CI").is_err(),
                    "CI must test PostgreSQL: set BROKER_TEST_DATABASE_URL"
                );
                eprintln!("NOT RUN: PostgreSQL (set BROKER_TEST_DATABASE_URL)");
                return None;
            }
            let database = fresh_postgres_database().await;
            (database.url(), Some(database))
        } else {
            let url = format!("sqlite://{}/legacy.db?mode=rwc", dir.path().display());
            (url, None)
        };
        Some(Self {
            dir,
            url,
            master: MasterKey::generate_encoded(),
            _database: database,
        })
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_broker"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BROKER_DATABASE__URL", &self.url)
            .env("BROKER_KEYS__MASTER_KEY", &self.master)
            .output()
            .expect("run broker");
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn import(&self, file: &Path) -> Run {
        self.run(&["import", "legacy-accounts", file.to_str().expect("path")])
    }

    async fn db(&self) -> Db {
        broker::startup::install_crypto_provider();
        Db::connect(&self.url, 2).await.expect("db")
    }

    fn sealer(&self) -> LegacySealer {
        let secret = broker::config::Secret::new(self.master.clone());
        LegacySealer::new(MasterKey::from_secret(&secret).expect("master"))
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    async fn record(&self, db: &Db, source: &str, legacy_id: &str) -> LegacyRecord {
        let sealed = db
            .find(source, legacy_id)
            .await
            .expect("find")
            .unwrap_or_else(|| panic!("{source}/{legacy_id} was not imported"));
        self.sealer().open(sealed).expect("open")
    }
}

/// Every row of the table as text, for "nothing changed" and "no ID in clear".
async fn dump(db: &Db) -> Vec<String> {
    let rows = sqlx::query(
        "SELECT source, legacy_id, full_name, birthdate, phone, id_kind, personal_id_enc, \
         personal_id_lookup, email, row_digest, account_id, linked_at, imported_at, updated_at \
         FROM legacy_accounts ORDER BY source, legacy_id",
    )
    .fetch_all(&db.pool())
    .await
    .expect("dump");
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for i in 0..14 {
                let cell = row
                    .try_get::<Option<String>, _>(i)
                    .ok()
                    .flatten()
                    .or_else(|| {
                        row.try_get::<Option<i64>, _>(i)
                            .ok()
                            .flatten()
                            .map(|n| n.to_string())
                    });
                line.push_str(&cell.unwrap_or_else(|| "NULL".into()));
                line.push('|');
            }
            line
        })
        .collect()
}

fn fixture_ids() -> HashSet<String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(FIXTURE)
        .expect("fixture");
    reader
        .records()
        .filter_map(|r| r.ok()?.get(5).map(str::to_string))
        .filter(|id| id.len() >= 9)
        .collect()
}

async fn fixture_import(postgres: bool) {
    let Some(import) = Import::on(postgres).await else {
        return;
    };
    let first = import.import(Path::new(FIXTURE));
    assert_eq!(first.status, 3, "some rows rejected: {}", first.stderr);
    assert_eq!(
        first.rejected_lines(),
        BTreeSet::from(MALFORMED),
        "{}",
        first.stdout
    );
    assert_eq!(
        first.summary(),
        "read 2000, inserted 1980, updated 0, unchanged 0, rejected 20"
    );
    assert!(first
        .stdout
        .contains("line 1089: legacy_id: duplicate of line 204"));
    assert!(first.stdout.contains("line 670: personal_id: 11 digits"));
    assert!(first.stdout.contains("line 910: 6 fields instead of 7"));
    let ids = fixture_ids();
    for id in &ids {
        assert!(
            !first.stdout.contains(id.as_str()) && !first.stderr.contains(id.as_str()),
            "an ID number in clear in the output"
        );
    }
    let db = import.db().await;
    let before = dump(&db).await;
    assert_eq!(before.len(), 1980);
    for line in &before {
        for id in &ids {
            assert!(
                !line.contains(id.as_str()),
                "an ID number in clear in the database"
            );
        }
    }
    hard_cases(&import, &db).await;

    let again = import.import(Path::new(FIXTURE));
    assert_eq!(again.status, 3);
    assert_eq!(again.rejected_lines(), BTreeSet::from(MALFORMED));
    assert_eq!(
        again.summary(),
        "read 2000, inserted 0, updated 0, unchanged 1980, rejected 20"
    );
    assert_eq!(dump(&db).await, before, "a re-run changes nothing");

    changed_row_keeps_its_link(&import, &db).await;
}

async fn hard_cases(import: &Import, db: &Db) {
    // phone_format: the README's canonical numbers; the pre-2018 0168 number moves to 038.
    for (source, legacy_id, phone) in [
        ("hue-s", "HS1003315", "+84915264438"),
        ("hue-s", "HS1003443", "+84985213799"),
        ("hue-s", "HS1003526", "+84380140082"),
        ("hue-s", "HS1003703", "+84364590390"),
        ("hue-s", "HS1003881", "+84963449658"),
        ("hue-s", "HS1003891", "+84934154650"),
        ("dvc-hue", "DVC-2020-000092", "+84394733700"),
        ("dvc-hue", "DVC-2022-000075", "+84363995160"),
        ("dvc-hue", "DVC-2023-000037", "+84882070521"),
        ("dvc-hue", "DVC-2023-000051", "+84860806619"),
        ("hue-eduportal", "EDU101379", "+84343039587"),
    ] {
        let r = import.record(db, source, legacy_id).await;
        assert_eq!(r.phone.as_deref(), Some(phone), "{legacy_id}");
    }
    // cmnd_9_digit: kept, as a CMND, found through the same lookup hash.
    for (source, legacy_id, cmnd) in [
        ("hue-s", "HS1003350", "192072747"),
        ("hue-s", "HS1003471", "192787416"),
        ("hue-s", "HS1003711", "191549651"),
        ("dvc-hue", "DVC-2020-000017", "191745787"),
        ("dvc-hue", "DVC-2020-000027", "201635587"),
        ("dvc-hue", "DVC-2021-000024", "197305158"),
    ] {
        let r = import.record(db, source, legacy_id).await;
        assert_eq!(r.personal_id, Some((IdKind::Cmnd, cmnd.to_string())));
        let found = db
            .find_by_personal_id_lookup(&import.sealer().lookup(cmnd))
            .await
            .expect("lookup");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].legacy_id, legacy_id);
    }
    let c01 = import.record(db, "hue-s", "HS1004606").await;
    assert_eq!(c01.personal_id.map(|(kind, _)| kind), Some(IdKind::Cccd));
    // no_personal_id
    for (source, legacy_id) in [
        ("hue-s", "HS1003456"),
        ("hue-s", "HS1003727"),
        ("hue-s", "HS1003857"),
        ("hue-s", "HS1004277"),
        ("hue-s", "HS1004375"),
        ("dvc-hue", "DVC-2020-000094"),
        ("hue-eduportal", "EDU101617"),
        ("hue-eduportal", "EDU101643"),
    ] {
        let sealed = db
            .find(source, legacy_id)
            .await
            .expect("find")
            .expect("row");
        assert_eq!(
            (
                sealed.id_kind,
                sealed.personal_id_enc,
                sealed.personal_id_lookup
            ),
            (None, None, None),
            "{legacy_id}"
        );
    }
    // year_only_birthdate: the year is kept as the year.
    for (legacy_id, year) in [
        ("HS1003724", "1948"),
        ("HS1003857", "1944"),
        ("HS1004653", "1939"),
    ] {
        let r = import.record(db, "hue-s", legacy_id).await;
        assert_eq!(r.birthdate.as_deref(), Some(year));
    }
    for (legacy_id, year) in [("DVC-2019-000062", "1961"), ("DVC-2023-000101", "1952")] {
        let r = import.record(db, "dvc-hue", legacy_id).await;
        assert_eq!(r.birthdate.as_deref(), Some(year));
    }
    // nfd_name is stored NFC, extra_spaces collapsed; names keep their spelling otherwise.
    let nfd = import.record(db, "hue-eduportal", "EDU101376").await;
    assert_eq!(nfd.full_name, "H\u{1ed3} Th\u{1ecb} Ng\u{1ecd}c \u{c1}nh");
    let spaces = import.record(db, "hue-s", "HS1004621").await;
    assert_eq!(spaces.full_name, "Nguyễn Hữu Phước");
    let eth = import.record(db, "dvc-hue", "DVC-2021-000015").await;
    assert_eq!(eth.full_name, "\u{d0}\u{1eb7}ng V\u{103}n \u{d0}\u{1ee9}c");
    let twin = import.record(db, "hue-s", "HS1004031").await;
    assert!(names_agree(&eth.full_name, &twin.full_name));
    let old_style = import.record(db, "hue-s", "HS1004105").await;
    assert!(names_agree(&old_style.full_name, "Đoàn Thị Ngọc Hòa"));
    // two_sources: one lookup finds both records; shared_phone: one phone finds both people.
    let c12 = import.record(db, "hue-s", "HS1003700").await;
    let (_, number) = c12.personal_id.expect("id");
    let both = db
        .find_by_personal_id_lookup(&import.sealer().lookup(&number))
        .await
        .expect("lookup");
    let ids: Vec<&str> = both.iter().map(|r| r.legacy_id.as_str()).collect();
    assert_eq!(ids, ["DVC-2024-000003", "HS1003700"]);
    let parent = import.record(db, "hue-s", "HS1004607").await;
    let shared = db
        .find_by_phone(parent.phone.as_deref().expect("phone"))
        .await
        .expect("phone");
    let ids: Vec<&str> = shared.iter().map(|r| r.legacy_id.as_str()).collect();
    assert_eq!(ids, ["EDU101500", "HS1004607"]);
    // no_email
    let r = import.record(db, "hue-s", "HS1003922").await;
    assert_eq!(r.email, None);
}

async fn changed_row_keeps_its_link(import: &Import, db: &Db) {
    sqlx::query(
        "INSERT INTO accounts (id, full_name, account_type, loa, created_at, updated_at) \
         VALUES ('acc-c02', 'Đoàn Thị Ngọc Hòa', '1', 2, 1, 1)",
    )
    .execute(&db.pool())
    .await
    .expect("account");
    let mut tx = db.begin().await.expect("tx");
    assert!(db
        .link(&mut tx, "hue-s", "HS1004105", "acc-c02", 100)
        .await
        .expect("link"));
    assert!(
        !db.link(&mut tx, "hue-s", "HS1004105", "acc-other", 101)
            .await
            .expect("link"),
        "a linked record is not linked again"
    );
    tx.commit().await.expect("commit");
    let linked = import.record(db, "hue-s", "HS1004105").await;

    let text = std::fs::read_to_string(FIXTURE).expect("fixture");
    let changed = text.replacen(
        ",HS1004105,Đoàn Thị Ngọc Hoà,",
        ",HS1004105,Đoàn Thị Ngọc Hòa,",
        1,
    );
    assert_ne!(changed, text);
    let file = import.file("changed.csv", &changed);
    let run = import.import(&file);
    assert_eq!(
        run.summary(),
        "read 2000, inserted 0, updated 1, unchanged 1979, rejected 20"
    );
    let updated = import.record(db, "hue-s", "HS1004105").await;
    assert_eq!(updated.full_name, "Đoàn Thị Ngọc Hòa");
    assert_eq!(updated.account_id.as_deref(), Some("acc-c02"));
    assert_eq!(updated.linked_at, Some(100));
    assert_eq!(updated.imported_at, linked.imported_at);
    assert_eq!(updated.personal_id, linked.personal_id);
    assert_eq!(db.linked_to("acc-c02").await.expect("linked").len(), 1);

    let mut tx = db.begin().await.expect("tx");
    let was = db
        .unlink(&mut tx, "hue-s", "HS1004105", 200)
        .await
        .expect("unlink");
    assert_eq!(was.as_deref(), Some("acc-c02"));
    let again = db
        .unlink(&mut tx, "hue-s", "HS1004105", 201)
        .await
        .expect("unlink");
    assert_eq!(again, None);
    tx.commit().await.expect("commit");
    assert!(db.linked_to("acc-c02").await.expect("linked").is_empty());
}

async fn generated_jsonl(postgres: bool) {
    let Some(import) = Import::on(postgres).await else {
        return;
    };
    let manifest = import.dir.path().join("m.csv");
    let out = Command::new("python3")
        .arg(GENERATOR)
        .args([
            "--rows",
            "5000",
            "--seed",
            "7",
            "--format",
            "jsonl",
            "--hard-cases",
        ])
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .expect("python3 runs the generator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not named .jsonl: the format comes from the flag.
    let file = import.dir.path().join("legacy.txt");
    std::fs::write(&file, &out.stdout).expect("write");
    let malformed: BTreeSet<u64> = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .lines()
        .skip(1)
        .filter(|l| l.contains("malformed_"))
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    assert!(malformed.len() > 10);
    let run = import.run(&[
        "import",
        "legacy-accounts",
        file.to_str().expect("path"),
        "--format",
        "jsonl",
    ]);
    assert_eq!(run.status, 3, "{}", run.stderr);
    assert_eq!(run.rejected_lines(), malformed, "{}", run.stdout);
    let loaded = 5000 - malformed.len();
    assert_eq!(
        run.summary(),
        format!(
            "read 5000, inserted {loaded}, updated 0, unchanged 0, rejected {}",
            malformed.len()
        )
    );
    let unknown = import.import(&file);
    assert_eq!(unknown.status, 1);
    assert!(unknown.stderr.contains("--format"), "{}", unknown.stderr);
}

async fn clean_file_exits_zero(postgres: bool) {
    let Some(import) = Import::on(postgres).await else {
        return;
    };
    let file = import.file(
        "clean.csv",
        "source,legacy_id,full_name,birthdate,phone,personal_id,email\n\
         hue-s,HS1,\"Tôn Nữ Thị Hà, con\",1990-01-02,0905123456,,\n\
         hue-s,HS2,Nguyễn Phước Bảo,1950,,046050123456,bao@example.com\n",
    );
    let run = import.import(&file);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.summary(),
        "read 2, inserted 2, updated 0, unchanged 0, rejected 0"
    );
    let db = import.db().await;
    let r = import.record(&db, "hue-s", "HS1").await;
    assert_eq!(r.full_name, "Tôn Nữ Thị Hà, con");
    let wrong = import.file("wrong.csv", "id,name\n1,A\n");
    let run = import.import(&wrong);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("header"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_on_sqlite() {
    fixture_import(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_on_postgres() {
    fixture_import(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_jsonl_on_sqlite() {
    generated_jsonl(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_jsonl_on_postgres() {
    generated_jsonl(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_file_on_sqlite() {
    clean_file_exits_zero(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_file_on_postgres() {
    clean_file_exits_zero(true).await;
}
