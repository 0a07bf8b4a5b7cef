//! Schema migrations for tenscale, identical on SQLite and PostgreSQL.
//!
//! One file per change, named by date. Applied at server start and by `tenscale migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261202_000001_browser_keys;
mod m20261202_000002_events;
mod m20261202_000003_audit_in_outbox;
mod m20261202_000004_instances;
mod m20261206_000001_secret_prefixes;
mod m20261208_000001_api_key_expiry;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261202_000001_browser_keys::Migration),
            Box::new(m20261202_000002_events::Migration),
            Box::new(m20261202_000003_audit_in_outbox::Migration),
            Box::new(m20261202_000004_instances::Migration),
            Box::new(m20261206_000001_secret_prefixes::Migration),
            Box::new(m20261208_000001_api_key_expiry::Migration),
        ]
    }
}
