//! The province's directories for civil servants' roles: the agency tree (đơn vị) and the staff
//! roster (cán bộ, công chức, viên chức, người lao động: who holds which post where). Both are
//! loaded from the province's files by `broker import org-units` and `broker import staff`
//! (`import.rs`); role registration (issue 8) reads them to offer the tree and to pre-fill a
//! person's request from the roster.
//!
//! Agency codes are opaque strings (the province issues them): the tree is built from
//! `parent_code` only, and names repeat (each Sở has a "Văn phòng Sở"), so a unit is shown with
//! its path. A person may hold several posts (kiêm nhiệm): a post is keyed by the person, the unit
//! and the position. The roster holds personal ID numbers, so a post is stored sealed under the
//! master key and found through the same keyed lookup hash as accounts and legacy records.

pub mod import;

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One agency (đơn vị).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrgUnit {
    pub code: String,
    pub name: String,
    /// `None` only for the root (UBND tỉnh).
    pub parent_code: Option<String>,
    /// The province's level (1 UBND tỉnh, 2 provincial agencies and districts, ...), if given.
    pub level: Option<i64>,
}

/// The kind of public servant (đối tượng).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Cán bộ: elected or appointed leaders.
    CanBo,
    /// Công chức: civil servants of state agencies.
    CongChuc,
    /// Viên chức: staff of public service units (schools, hospitals, centres).
    VienChuc,
    /// Người lao động: contract workers.
    NguoiLaoDong,
}

impl Category {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "can_bo" => Some(Self::CanBo),
            "cong_chuc" => Some(Self::CongChuc),
            "vien_chuc" => Some(Self::VienChuc),
            "nguoi_lao_dong" => Some(Self::NguoiLaoDong),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CanBo => "can_bo",
            Self::CongChuc => "cong_chuc",
            Self::VienChuc => "vien_chuc",
            Self::NguoiLaoDong => "nguoi_lao_dong",
        }
    }

    /// The Vietnamese and English names.
    pub fn label(self) -> (&'static str, &'static str) {
        match self {
            Self::CanBo => ("Cán bộ", "Elected or appointed official"),
            Self::CongChuc => ("Công chức", "Civil servant"),
            Self::VienChuc => ("Viên chức", "Public service employee"),
            Self::NguoiLaoDong => ("Người lao động", "Contract worker"),
        }
    }
}

/// One post of the roster, as read from the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffPost {
    pub personal_id: String,
    pub full_name: String,
    pub birthdate: String,
    pub gender: String,
    pub category: Category,
    pub org_code: String,
    pub position: String,
}

/// A post as stored: the person sealed, found by the ID's lookup hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedPost {
    pub personal_id_lookup: String,
    pub org_code: String,
    pub position: String,
    pub category: Category,
    /// The whole post, sealed under the master key.
    pub sealed: String,
    /// A keyed digest of the row: a re-import of the same row changes nothing.
    pub digest: String,
}

impl SealedPost {
    pub fn key(&self) -> PostKey {
        (
            self.personal_id_lookup.clone(),
            self.org_code.clone(),
            self.position.clone(),
        )
    }
}

/// A post's identity: the person (lookup hash), the unit and the position.
pub type PostKey = (String, String, String);

/// How many rows an import wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Written {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Posts of an earlier import absent from this file, removed (`--prune`).
    pub removed: u64,
}

#[async_trait]
pub trait DirectoryStore: Send + Sync {
    async fn org_units(&self) -> anyhow::Result<Vec<OrgUnit>>;
    /// Inserts new units and updates changed ones, in one transaction.
    async fn upsert_org_units(&self, units: &[OrgUnit], now: i64) -> anyhow::Result<Written>;
    /// The digest of every stored post, by key.
    async fn post_digests(&self) -> anyhow::Result<HashMap<PostKey, String>>;
    /// Writes the posts (new and changed) and removes `remove`, in one transaction.
    async fn write_posts(
        &self,
        posts: &[SealedPost],
        remove: &[PostKey],
        now: i64,
    ) -> anyhow::Result<()>;
    /// The posts of the person whose ID has this lookup hash.
    async fn posts_of(&self, personal_id_lookup: &str) -> anyhow::Result<Vec<SealedPost>>;
}
