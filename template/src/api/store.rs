//! The item table and every statement on it. Each function is one store
//! operation under the database timeout ([`Database::run`]), named by its
//! `db.operation`.

use serde::Serialize;
use sqlx::{Row, any::AnyRow};
use uuid::Uuid;

use nebula_runtime::database::{Database, DbError, now_ms};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub id: Uuid,
    pub name: String,
}

/// One page of a list, in id order (creation order within one process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Whether items follow the last one of this page.
    pub more: bool,
}

/// Items in the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    database: Database,
}

impl Store {
    #[must_use]
    pub const fn new(database: Database) -> Self {
        Self { database }
    }

    /// Inserts a new item named `name`, with a fresh time-ordered id.
    ///
    /// # Errors
    /// [`DbError`]; a name in use is a constraint violation.
    pub async fn insert(&self, name: &str) -> Result<Item, DbError> {
        let item = Item {
            id: Uuid::now_v7(),
            name: name.to_owned(),
        };
        self.database
            .run("insert_item", async {
                sqlx::query("INSERT INTO items (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(item.id.to_string())
                    .bind(&item.name)
                    .bind(now_ms())
                    .execute(self.database.pool())
                    .await
            })
            .await?;
        Ok(item)
    }

    /// # Errors
    /// [`DbError`].
    pub async fn get(&self, id: Uuid) -> Result<Option<Item>, DbError> {
        self.database
            .run("get_item", async {
                sqlx::query("SELECT id, name FROM items WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(self.database.pool())
                    .await?
                    .map(|row| item(&row))
                    .transpose()
            })
            .await
    }

    /// Deletes an item; `false` when there was none.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn delete(&self, id: Uuid) -> Result<bool, DbError> {
        self.database
            .run("delete_item", async {
                let deleted = sqlx::query("DELETE FROM items WHERE id = $1")
                    .bind(id.to_string())
                    .execute(self.database.pool())
                    .await?;
                Ok(deleted.rows_affected() == 1)
            })
            .await
    }

    /// Up to `limit` items whose id sorts after `after` (from the first item
    /// without it), in id order. One more row is read than returned,
    /// to tell whether the list goes on.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn list(&self, after: Option<Uuid>, limit: usize) -> Result<Page, DbError> {
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut rows =
            self.database
                .run("list_items", async {
                    let query = match after {
                        Some(after) => sqlx::query(
                            "SELECT id, name FROM items WHERE id > $1 ORDER BY id LIMIT $2",
                        )
                        .bind(after.to_string())
                        .bind(fetch),
                        None => sqlx::query("SELECT id, name FROM items ORDER BY id LIMIT $1")
                            .bind(fetch),
                    };
                    query
                        .fetch_all(self.database.pool())
                        .await?
                        .iter()
                        .map(item)
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok(Page { items: rows, more })
    }
}

fn item(row: &AnyRow) -> Result<Item, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(Item {
        id: id.parse().map_err(|error| sqlx::Error::ColumnDecode {
            index: "id".to_owned(),
            source: Box::new(error),
        })?,
        name: row.try_get("name")?,
    })
}
