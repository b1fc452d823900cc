//! `broker import org-units` and `broker import staff` through the real binary, on SQLite and on
//! PostgreSQL: the fixtures load whole, a re-run changes nothing, bad rows are refused by line
//! without their personal data, the tree is checked, one person holds two posts, `--prune`
//! removes what the roster lost, and no ID number is stored in clear.

use std::path::PathBuf;
use std::process::Command;

use broker::crypto::MasterKey;
use broker::directory::import::PostSealer;
use broker::directory::DirectoryStore;
use broker::store::Db;

use crate::support::{fresh_postgres_database, TestDatabase};

const ORG_UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/org-units.csv");
const STAFF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/staff.csv");
/// fixtures/README.md: the one person with two posts (kiêm nhiệm).
const TWO_POSTS: &str = "045183937643";

struct Directory {
    dir: tempfile::TempDir,
    url: String,
    master: String,
    _database: Option<TestDatabase>,
}

struct Run {
    status: i32,
    stdout: String,
}

impl Run {
    fn rejected(&self) -> Vec<u64> {
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

impl Directory {
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
            let url = format!("sqlite://{}/directory.db?mode=rwc", dir.path().display());
            (url, None)
        };
        Some(Self {
            dir,
            url,
            master: MasterKey::generate_encoded(),
            _database: database,
        })
    }

    fn import(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_broker"))
            .arg("import")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BROKER_DATABASE__URL", &self.url)
            .env("BROKER_KEYS__MASTER_KEY", &self.master)
            .output()
            .expect("run broker");
        let run = Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        };
        assert!(
            run.status != 1,
            "the import failed: {}{}",
            run.stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        run
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    async fn db(&self) -> Db {
        broker::startup::install_crypto_provider();
        Db::connect(&self.url, 2).await.expect("db")
    }

    fn sealer(&self) -> PostSealer {
        let secret = broker::config::Secret::new(self.master.clone());
        PostSealer::new(MasterKey::from_secret(&secret).expect("master"))
    }
}

macro_rules! on_both_databases {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let directory = Directory::on(false).await.expect("sqlite");
                ($body)(directory).await;
            }
            #[tokio::test]
            async fn postgres() {
                let Some(directory) = Directory::on(true).await else {
                    return;
                };
                ($body)(directory).await;
            }
        }
    };
}

on_both_databases!(
    the_fixture_directory_loads_whole_and_a_rerun_changes_nothing,
    |d: Directory| async move {
        let run = d.import(&["org-units", ORG_UNITS]);
        assert_eq!(run.status, 0, "{}", run.stdout);
        assert_eq!(
            run.summary(),
            "read 182, inserted 182, updated 0, unchanged 0, removed 0, rejected 0"
        );
        let run = d.import(&["staff", STAFF]);
        assert_eq!(run.status, 0, "{}", run.stdout);
        assert_eq!(
            run.summary(),
            "read 400, inserted 400, updated 0, unchanged 0, removed 0, rejected 0"
        );
        let db = d.db().await;
        let units = db.org_units().await.unwrap();
        let roots: Vec<_> = units.iter().filter(|u| u.parent_code.is_none()).collect();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].name, "UBND tỉnh Thừa Thiên Huế");
        // Kiêm nhiệm: two posts of one person, found by the ID's lookup hash and opened.
        let sealer = d.sealer();
        let posts = db.posts_of(&sealer.lookup(TWO_POSTS)).await.unwrap();
        let mut held: Vec<(String, String)> = posts
            .iter()
            .map(|p| sealer.open(p).unwrap())
            .map(|p| (p.org_code, p.position))
            .collect();
        held.sort();
        assert_eq!(
            held,
            vec![
                ("000.00.06.H57".to_string(), "Phó Giám đốc".to_string()),
                ("000.05.06.H57".to_string(), "Giám đốc".to_string()),
            ]
        );
        // No ID number in clear anywhere in the table.
        let rows = sqlx::query("SELECT personal_id_lookup, sealed, digest FROM staff_posts")
            .fetch_all(&db.pool())
            .await
            .unwrap();
        use sqlx::Row;
        assert!(rows.iter().all(|r| {
            let text: String = format!(
                "{}{}{}",
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2)
            );
            !text.contains(TWO_POSTS) && !text.contains("Trần Thị Hoài Châu")
        }));
        // Idempotent.
        let run = d.import(&["org-units", ORG_UNITS]);
        assert_eq!(
            run.summary(),
            "read 182, inserted 0, updated 0, unchanged 182, removed 0, rejected 0"
        );
        let run = d.import(&["staff", STAFF]);
        assert_eq!(
            run.summary(),
            "read 400, inserted 0, updated 0, unchanged 400, removed 0, rejected 0"
        );
    }
);

on_both_databases!(
    bad_rows_are_refused_by_line_the_tree_is_checked_and_prune_removes_lost_posts,
    |d: Directory| async move {
        let units = d.file(
            "units.csv",
            "code,name,parent_code,level\n\
             R,UBND tỉnh,,1\n\
             A,Sở A,R,2\n\
             A,Sở A again,R,2\n\
             B,Phòng B,NOWHERE,3\n\
             C,Phòng C,B,3\n\
             X,Cycle X,Y,3\n\
             Y,Cycle Y,X,3\n\
             has space,Bad code,R,2\n\
             D,Level,R,eleven\n\
             E,Văn phòng   Sở,A,3\n",
        );
        let run = d.import(&["org-units", units.to_str().unwrap()]);
        assert_eq!(run.status, 3, "some rows refused: {}", run.stdout);
        assert_eq!(run.rejected(), vec![4, 5, 6, 7, 8, 9, 10], "{}", run.stdout);
        assert!(run.summary().ends_with("rejected 7"), "{}", run.summary());
        let db = d.db().await;
        let codes: Vec<String> = db
            .org_units()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.code)
            .collect();
        assert_eq!(codes, vec!["A", "E", "R"]);
        let e = db
            .org_units()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.code == "E")
            .unwrap();
        assert_eq!(e.name, "Văn phòng Sở", "spaces collapsed");

        // 046079963831: born 1979, male (the fixture's first row).
        let staff = d.file(
            "staff.csv",
            "personal_id,full_name,birthdate,gender,category,org_code,position\n\
             046079963831,Phan Văn Thắng,1979-03-14,male,can_bo,R,Chủ tịch\n\
             046079963831,Phan Văn Thắng,1979-03-14,male,can_bo,A,Giám đốc\n\
             046079963831,Phan Văn Thắng,1979-03-14,male,can_bo,A,Giám đốc\n\
             046079963831,Phan Văn Thắng,1980-03-14,male,can_bo,E,Trưởng phòng\n\
             046079963831,Phan Văn Thắng,1979-03-14,male,can_bo,NOWHERE,Chủ tịch\n\
             046079963831,Phan Văn Thắng,1979-03-14,male,boss,E,Chủ tịch\n\
             046079963831,Phan Văn Thắng,1979-03-14,other,can_bo,E,Chủ tịch\n\
             046079963831,,1979-03-14,male,can_bo,E,Chủ tịch\n",
        );
        let run = d.import(&["staff", staff.to_str().unwrap()]);
        assert_eq!(run.status, 3);
        assert_eq!(run.rejected(), vec![4, 5, 6, 7, 8, 9], "{}", run.stdout);
        assert!(
            !run.stdout.contains("046079963831") && !run.stdout.contains("Phan Văn Thắng"),
            "no personal data in the report: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("birth year does not match"),
            "{}",
            run.stdout
        );

        // The roster loses a post: kept without --prune, removed with it.
        let smaller = d.file(
            "smaller.csv",
            "personal_id,full_name,birthdate,gender,category,org_code,position\n\
             046079963831,Phan Văn Thắng,1979-03-14,male,can_bo,R,Chủ tịch\n",
        );
        let run = d.import(&["staff", smaller.to_str().unwrap()]);
        assert_eq!(
            run.summary(),
            "read 1, inserted 0, updated 0, unchanged 1, removed 0, rejected 0"
        );
        let run = d.import(&["staff", "--prune", smaller.to_str().unwrap()]);
        assert_eq!(
            run.summary(),
            "read 1, inserted 0, updated 0, unchanged 1, removed 1, rejected 0"
        );
        let posts = db
            .posts_of(&d.sealer().lookup("046079963831"))
            .await
            .unwrap();
        assert_eq!(posts.len(), 1);
    }
);
