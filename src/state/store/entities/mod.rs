//! sea-orm entities, one per table. Private to the store: every row leaves it converted to its
//! domain type (`crate::domain`), or not at all.
pub mod api_key;
pub mod browser_key_settings;
pub mod event;
pub mod instance;
pub mod namespace;
pub mod node;
pub mod organization;
pub mod policy;
pub mod preauth_key;
pub mod server_state;
pub mod spent_token_id;
