pub mod wire;
pub mod store;
pub mod api;
