pub mod issuer;
pub mod mapping;
