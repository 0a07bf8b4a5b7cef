//! sea-orm entities, one per table. Only `store` uses them; other planes get store functions.
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
