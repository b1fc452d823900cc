//! `DirectoryStore` in SQL.

use std::collections::HashMap;

use sqlx::Row;

use super::{opt_text, Db};
use crate::directory::{Category, DirectoryStore, OrgUnit, PostKey, SealedPost, Written};

#[async_trait::async_trait]
impl DirectoryStore for Db {
    async fn org_units(&self) -> anyhow::Result<Vec<OrgUnit>> {
        let rows =
            sqlx::query("SELECT code, name, parent_code, level FROM org_units ORDER BY code")
                .fetch_all(&self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                Ok(OrgUnit {
                    code: row.try_get("code")?,
                    name: row.try_get("name")?,
                    parent_code: opt_text(row, "parent_code")?,
                    level: row.try_get("level")?,
                })
            })
            .collect()
    }

    async fn upsert_org_units(&self, units: &[OrgUnit], now: i64) -> anyhow::Result<Written> {
        let stored: HashMap<String, OrgUnit> = self
            .org_units()
            .await?
            .into_iter()
            .map(|u| (u.code.clone(), u))
            .collect();
        let mut written = Written::default();
        let mut tx = self.pool().begin().await?;
        for unit in units {
            match stored.get(&unit.code) {
                Some(old) if old == unit => {
                    written.unchanged += 1;
                    continue;
                }
                Some(_) => written.updated += 1,
                None => written.inserted += 1,
            }
            sqlx::query(
                "INSERT INTO org_units (code, name, parent_code, level, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (code) DO UPDATE SET \
                 name = excluded.name, parent_code = excluded.parent_code, \
                 level = excluded.level, updated_at = excluded.updated_at",
            )
            .bind(&unit.code)
            .bind(&unit.name)
            .bind(&unit.parent_code)
            .bind(unit.level)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if written.updated > 0 {
            // An org unit's name is part of the role claims of everyone who holds a post there.
            self.all_accounts_changed();
        }
        Ok(written)
    }

    async fn post_digests(&self) -> anyhow::Result<HashMap<PostKey, String>> {
        let rows =
            sqlx::query("SELECT personal_id_lookup, org_code, position, digest FROM staff_posts")
                .fetch_all(&self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    (
                        row.try_get("personal_id_lookup")?,
                        row.try_get("org_code")?,
                        row.try_get("position")?,
                    ),
                    row.try_get("digest")?,
                ))
            })
            .collect()
    }

    async fn write_posts(
        &self,
        posts: &[SealedPost],
        remove: &[PostKey],
        now: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool().begin().await?;
        for post in posts {
            sqlx::query(
                "INSERT INTO staff_posts (personal_id_lookup, org_code, position, category, sealed, \
                 digest, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (personal_id_lookup, org_code, position) DO UPDATE SET \
                 category = excluded.category, sealed = excluded.sealed, digest = excluded.digest, \
                 imported_at = excluded.imported_at",
            )
            .bind(&post.personal_id_lookup)
            .bind(&post.org_code)
            .bind(&post.position)
            .bind(post.category.as_str())
            .bind(&post.sealed)
            .bind(&post.digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for (lookup, org, position) in remove {
            sqlx::query(
                "DELETE FROM staff_posts WHERE personal_id_lookup = $1 AND org_code = $2 \
                 AND position = $3",
            )
            .bind(lookup)
            .bind(org)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn posts_of(&self, personal_id_lookup: &str) -> anyhow::Result<Vec<SealedPost>> {
        let rows = sqlx::query(
            "SELECT personal_id_lookup, org_code, position, category, sealed, digest \
             FROM staff_posts WHERE personal_id_lookup = $1 ORDER BY org_code, position",
        )
        .bind(personal_id_lookup)
        .fetch_all(&self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let category: String = row.try_get("category")?;
                Ok(SealedPost {
                    personal_id_lookup: row.try_get("personal_id_lookup")?,
                    org_code: row.try_get("org_code")?,
                    position: row.try_get("position")?,
                    category: Category::parse(&category)
                        .ok_or_else(|| anyhow::anyhow!("unknown category in staff_posts"))?,
                    sealed: row.try_get("sealed")?,
                    digest: row.try_get("digest")?,
                })
            })
            .collect()
    }
}
