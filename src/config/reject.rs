//! Keys the config file refuses on sight, with a message saying where the setting
//! belongs instead: secrets, which live in the environment or a mounted file.
//!
//! Each is a field deserialised with a visitor that fails on every kind of value.
//! Failing inside the deserializer, rather than after it, lets the YAML parser attach
//! the key's path, line and column. The visitor never quotes the value: it may be a key.

use std::convert::Infallible;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why `llm.api_key` is refused.
pub(crate) const API_KEY: &str = "the LLM API key never goes in the config file: set the \
    environment variable named by llm_api_key_env_var (OPENAI_API_KEY by default), or that \
    name with _FILE appended pointing at a mounted secret file";
/// Why `git.token` is refused.
pub(crate) const GIT_TOKEN: &str = "the git token never goes in the config file: set the \
    environment variable named by git_token_env_var (GIT_TOKEN by default), or that name \
    with _FILE appended pointing at a mounted secret file";
macro_rules! refuse_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _value: $ty) -> Result<Self::Value, E> {
            Err(E::custom(self.0))
        })*
    };
}

struct Refuse(&'static str);

impl<'de> Visitor<'de> for Refuse {
    type Value = Option<Infallible>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    refuse_scalars!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64),
        visit_u128(u128),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_bytes(&[u8]),
    );

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(self.0))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(self.0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(self.0))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(self.0))
    }
}

fn refuse<'de, D: Deserializer<'de>>(d: D, why: &'static str) -> Result<Option<Infallible>, D::Error> {
    d.deserialize_any(Refuse(why))
}

pub(crate) fn api_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Infallible>, D::Error> {
    refuse(d, API_KEY)
}

pub(crate) fn git_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Infallible>, D::Error> {
    refuse(d, GIT_TOKEN)
}
