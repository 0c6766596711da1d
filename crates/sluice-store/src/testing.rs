//! Test support: a scratch PostgreSQL schema, so tests of the shared store do not see each
//! other's rows. Not part of the API.

/// The server the tests use: `SLUICE_TEST_POSTGRES`, else the local one (trust auth).
pub fn postgres_server() -> String {
    std::env::var("SLUICE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new, empty schema; [`PgScratch::url`] connects with it as the search path. Dropped (with
/// everything in it) on drop.
pub struct PgScratch {
    pub url: String,
    schema: String,
}

impl PgScratch {
    pub fn new() -> Self {
        let server = postgres_server();
        let schema = format!("sluice_it_{}", uuid::Uuid::new_v4().simple());
        let mut admin = postgres::Client::connect(&server, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL at {server} (SLUICE_TEST_POSTGRES) is needed: {e}"));
        admin.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create the test schema");
        let sep = if server.contains('?') { '&' } else { '?' };
        Self { url: format!("{server}{sep}options=-csearch_path%3D{schema}"), schema }
    }
}

impl Default for PgScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&postgres_server(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}
