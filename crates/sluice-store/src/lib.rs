//! Metadata (SQLite) and artifact (object_store) stores
