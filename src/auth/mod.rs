//! Authentication's primitives: password hashing ([`password`]) and JWTs
//! compatible with the Django backend's SimpleJWT ([`jwt`]). Reading a
//! request's credentials is [`crate::app::access`]'s job.

pub mod jwt;
pub mod password;
